"""mpmath's symmetric eigensolver (``mpmath.eigsy``) on raw mpf tuples: the same numbers, faster.

``mpmath.eigsy`` is EISPACK's tred2 (Householder tridiagonalisation, :func:`mpmath.eigsy`'s
``r_sy_tridiag``) followed by imtql2 (implicit QL, ``tridiag_eigen``), written on
``mpmath.matrix`` objects, so every arithmetic step pays for the matrix's indexing and the
``mpf`` operator dispatch. :func:`eigsy_raw` performs the very same sequence of operations —
each one a call of the libmp function that the ``mpf`` operator would call (``mpf_add``,
``mpf_mul``, ``mpf_mul_int``, ``mpf_div``, ``mpf_rdiv_int``, ``mpf_sqrt``, ``mpf_hypot``,
``mpf_abs``, ``mpf_neg``) with the same precision and rounding — on lists of raw tuples.
Every basic operation of libmp is correctly rounded, so the results are bit for bit those of
``mpmath.eigsy`` at the same working precision (tested against it on random, graded,
clustered, diagonal and rank-deficient matrices at several precisions); only the time differs.

Reference: mpmath 1.3, ``mpmath/matrices/eigen_symmetric.py`` (``r_sy_tridiag``,
``tridiag_eigen``, ``eigsy``). If the installed mpmath is of another major version,
:data:`MATCHES_MPMATH` is False and :mod:`fimtheory.highprec` calls ``mpmath.eigsy`` itself.
"""

from __future__ import annotations

import mpmath
from mpmath import libmp

_add, _sub, _mul, _div = libmp.mpf_add, libmp.mpf_sub, libmp.mpf_mul, libmp.mpf_div
_mul_int, _rdiv_int = libmp.mpf_mul_int, libmp.mpf_rdiv_int
_sqrt, _hypot, _abs, _neg = libmp.mpf_sqrt, libmp.mpf_hypot, libmp.mpf_abs, libmp.mpf_neg
_gt, _lt, _le, _ge = libmp.mpf_gt, libmp.mpf_lt, libmp.mpf_le, libmp.mpf_ge
_ZERO, _ONE = libmp.fzero, libmp.fone
_INFS = (libmp.finf, libmp.fninf)

#: The transcription follows mpmath 1.x's eigen_symmetric.py; another major version is not assumed.
MATCHES_MPMATH = mpmath.__version__.split(".")[0] == "1"


def _tridiag(A: list, n: int, prec: int, rnd: str, calc_ev: bool):
    """``r_sy_tridiag`` on the raw n×n array ``A`` (modified in place); returns (D, E)."""
    D = [_ZERO] * n
    E = [_ZERO] * n
    for i in range(n - 1, 0, -1):
        Ai = [A[k][i] for k in range(i)]  # column i above the diagonal (A[k][i], k < i)
        scale = _ZERO
        for x in Ai:
            scale = _add(scale, _abs(x, prec, rnd), prec, rnd)
        scale_inv = _ZERO
        if scale != _ZERO:
            scale_inv = _rdiv_int(1, scale, prec, rnd)
        if i == 1 or scale == _ZERO or scale_inv in _INFS:
            E[i] = A[i - 1][i]
            D[i] = _ZERO
            continue
        H = _ZERO
        for k in range(i):
            x = _mul(Ai[k], scale_inv, prec, rnd)
            A[k][i] = Ai[k] = x
            H = _add(H, _mul(x, x, prec, rnd), prec, rnd)
        F = Ai[i - 1]
        G = _sqrt(H, prec, rnd)
        if _gt(F, _ZERO):
            G = _neg(G, prec, rnd)
        E[i] = _mul(scale, G, prec, rnd)
        H = _sub(H, _mul(F, G, prec, rnd), prec, rnd)
        A[i - 1][i] = Ai[i - 1] = _sub(F, G, prec, rnd)
        F = _ZERO
        for j in range(i):
            if calc_ev:
                A[i][j] = _div(Ai[j], H, prec, rnd)
            G = _ZERO
            for k in range(j + 1):
                G = _add(G, _mul(A[k][j], Ai[k], prec, rnd), prec, rnd)
            Aj = A[j]
            for k in range(j + 1, i):
                G = _add(G, _mul(Aj[k], Ai[k], prec, rnd), prec, rnd)
            E[j] = _div(G, H, prec, rnd)
            F = _add(F, _mul(E[j], Ai[j], prec, rnd), prec, rnd)
        HH = _div(F, _mul_int(H, 2, prec, rnd), prec, rnd)
        for j in range(i):
            F = Ai[j]
            G = _sub(E[j], _mul(HH, F, prec, rnd), prec, rnd)
            E[j] = G
            for k in range(j + 1):
                t = _add(_mul(F, E[k], prec, rnd), _mul(G, Ai[k], prec, rnd), prec, rnd)
                A[k][j] = _sub(A[k][j], t, prec, rnd)
        D[i] = H
    for i in range(1, n):
        E[i - 1] = E[i]
    E[n - 1] = _ZERO
    if calc_ev:
        D[0] = _ZERO
        for i in range(n):
            if D[i] != _ZERO:
                Ai = A[i]
                for j in range(i):
                    G = _ZERO
                    for k in range(i):
                        G = _add(G, _mul(Ai[k], A[k][j], prec, rnd), prec, rnd)
                    for k in range(i):
                        A[k][j] = _sub(A[k][j], _mul(G, A[k][i], prec, rnd), prec, rnd)
            D[i] = A[i][i]
            A[i][i] = _ONE
            for j in range(i):
                A[j][i] = A[i][j] = _ZERO
    else:
        for i in range(n):
            D[i] = A[i][i]
    return D, E


def _ql(d: list, e: list, z, prec: int, rnd: str, dps: int) -> None:
    """``tridiag_eigen`` (implicit QL) on raw lists; ``z`` a raw n×n array or None."""
    n = len(d)
    e[n - 1] = _ZERO
    iterlim = 2 * dps
    eps = (0, libmp.MPZ_ONE, 1 - prec, 1)
    rows = len(z) if z is not None else 0
    for l in range(n):  # noqa: E741 - the reference's name
        j = 0
        while True:
            m = l
            while True:
                if m + 1 == n:
                    break
                bound = _mul(eps, _add(_abs(d[m], prec, rnd), _abs(d[m + 1], prec, rnd), prec, rnd), prec, rnd)
                if _le(_abs(e[m], prec, rnd), bound):
                    break
                m = m + 1
            if m == l:
                break
            if j >= iterlim:
                raise RuntimeError(f"tridiag_eigen: no convergence to an eigenvalue after {iterlim} iterations")
            j += 1
            p = d[l]
            g = _div(_sub(d[l + 1], p, prec, rnd), _mul_int(e[l], 2, prec, rnd), prec, rnd)
            r = _hypot(g, _ONE, prec, rnd)
            s = _sub(g, r, prec, rnd) if _lt(g, _ZERO) else _add(g, r, prec, rnd)
            g = _add(_sub(d[m], p, prec, rnd), _div(e[l], s, prec, rnd), prec, rnd)
            s = c = None  # the reference's integers 1, 1 and 0 (first pass below)
            p = None
            for i in range(m - 1, l - 1, -1):
                ei = e[i]
                f = _mul_int(ei, 1, prec, rnd) if s is None else _mul(s, ei, prec, rnd)
                b = _mul_int(ei, 1, prec, rnd) if c is None else _mul(c, ei, prec, rnd)
                if _gt(_abs(f, prec, rnd), _abs(g, prec, rnd)):
                    c = _div(g, f, prec, rnd)
                    r = _hypot(c, _ONE, prec, rnd)
                    e[i + 1] = _mul(f, r, prec, rnd)
                    s = _rdiv_int(1, r, prec, rnd)
                    c = _mul(c, s, prec, rnd)
                else:
                    s = _div(f, g, prec, rnd)
                    r = _hypot(s, _ONE, prec, rnd)
                    e[i + 1] = _mul(g, r, prec, rnd)
                    c = _rdiv_int(1, r, prec, rnd)
                    s = _mul(s, c, prec, rnd)
                g = _sub(d[i + 1], _ZERO if p is None else p, prec, rnd)
                r = _add(
                    _mul(_sub(d[i], g, prec, rnd), s, prec, rnd),
                    _mul(_mul_int(c, 2, prec, rnd), b, prec, rnd),
                    prec,
                    rnd,
                )
                p = _mul(s, r, prec, rnd)
                d[i + 1] = _add(g, p, prec, rnd)
                g = _sub(_mul(c, r, prec, rnd), b, prec, rnd)
                if z is not None:
                    for w in range(rows):
                        zw = z[w]
                        f = zw[i + 1]
                        zi = zw[i]
                        zw[i + 1] = _add(_mul(s, zi, prec, rnd), _mul(c, f, prec, rnd), prec, rnd)
                        zw[i] = _sub(_mul(c, zi, prec, rnd), _mul(s, f, prec, rnd), prec, rnd)
            d[l] = _sub(d[l], p, prec, rnd)
            e[l] = g
            e[m] = _ZERO
    for ii in range(1, n):
        i = ii - 1
        k = i
        p = d[i]
        for j in range(ii, n):
            if _ge(d[j], p):
                continue
            k = j
            p = d[k]
        if k == i:
            continue
        d[k] = d[i]
        d[i] = p
        if z is not None:
            for w in range(rows):
                zw = z[w]
                zw[i], zw[k] = zw[k], zw[i]


def eigsy_raw(A: list, *, vectors: bool, prec: int, dps: int, rnd: str = "n"):
    """``mpmath.eigsy`` of the symmetric raw n×n array ``A`` (lists of raw mpf tuples; not
    modified) at ``prec`` bits / ``dps`` digits (``dps`` sets the QL iteration limit, as
    mpmath's ``2·ctx.dps``).

    Returns ``(d, Q)``: the eigenvalues ascending (raw) and, with ``vectors``, the raw n×n
    array whose columns are the eigenvectors (else None) — bit for bit ``mpmath.eigsy``'s.
    """
    n = len(A)
    work = [list(row) for row in A]
    d, e = _tridiag(work, n, prec, rnd, vectors)
    _ql(d, e, work if vectors else None, prec, rnd, dps)
    return d, (work if vectors else None)
