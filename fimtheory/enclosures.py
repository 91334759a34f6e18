"""Rigorous interval enclosures of every claim's margin (``mpmath.iv``), for adjudication.

A margin computed in plain mpmath at ``dps`` digits is accurate but not rigorous; a
violation is confirmed only when an *enclosure* — an interval proved to contain the exact
margin of the exact float inputs — lies below zero. This module provides one evaluator per
claim and weakening of the registry (:data:`ENCLOSURES`), and the interval primitives they
are built from. Each evaluator runs inside :func:`fimtheory.highprec.working_precision` and
returns an ``mpmath.iv`` interval, or raises

- :class:`HypothesisFails` when a hypothesis of the claim is *certainly* false on the
  instance (the instance is then "hypotheses not met", never a violation);
- :class:`EnclosureError` when the enclosure cannot be computed at this precision (a
  hypothesis or a certified separation undecided; retry at higher precision);
- :class:`NoEnclosure` (a subclass) when no precision would help (e.g. a repeated top
  eigenvalue, whose eigenvector the margin needs).

Methods
-------
eigenvalues
    Matrices are formed in interval arithmetic from the exact floats; every eigenvalue of
    every symmetric matrix in an interval matrix ``M`` is enclosed by the Ostrowski + Weyl
    argument (:func:`iv_eigenvalue_enclosures`): for the mp eigenvector matrix X of the
    midpoint, XᵀSX = D + Δ with ‖Δ‖₂ ≤ ‖XᵀMX − D‖_F (Weyl), and Ostrowski's theorem,
    λ_k(XᵀSX) = θ_k λ_k(S) with θ_k ∈ [λ_min(XᵀX), λ_max(XᵀX)], carries them back to S.
top eigenvector
    For a certified simple λ1, the mp top eigenvector u (normalised in interval arithmetic)
    satisfies sin∠(u, v1) ≤ ε = ‖Su − μu‖/(μ − λ2) (μ = uᵀSu; the Davis–Kahan / Parlett gap
    bound ‖r‖² = Σ_j c_j²(λ_j − μ)² ≥ sin²∠ · min_{j≥2}(λ_j − μ)²), so for the right sign
    v1 lies in the ball of radius √2·ε around u (2 sin(θ/2) ≤ √2 sin θ for θ ≤ π/2), hence
    in the box u ± √2·ε. Every margin below is invariant under v1 → −v1.
reduced resolvent and the series
    R = Σ_{j≥2} v_j v_jᵀ/(λ1 − λj) = N⁻¹ − v1v1ᵀ with N = λ1I − A + v1v1ᵀ, whose smallest
    eigenvalue is exactly min(1, γ). N⁻¹x is enclosed by an mp solve ẑ and the residual
    bound ‖N⁻¹x − ẑ‖ ≤ ‖x − Nẑ‖/min(1, γ), the residual evaluated over the interval box of
    N (λ1 and v1 enclosed). The coefficients a_k of λ_max(A + tE) follow from the
    Rayleigh–Schrödinger recursion (intermediate normalisation vᵀψ_k = 0):
    ψ_0 = v, a_{k+1} = (Ev)ᵀψ_k, ψ_k = R(Eψ_{k−1} − Σ_{m=1}^{k−1} a_m ψ_{k−m}) — the same
    quantities as the generated eigenbasis formulas (a2 = Σ E_1j²/(λ1−λj), …), but basis-free,
    so clustered or repeated *lower* eigenvalues are no obstacle.
exact
    C-* (a finite sequence of exact float comparisons) and the diagonal case of T4.3c
    (eigenvalues of a diagonal matrix are its entries; the mean in :class:`fractions.Fraction`).

Interval arithmetic is ``mpmath.iv`` (outward rounding at ``iv.dps``), a dependency already.
python-flint's arb balls would be faster, but the matrices adjudicated here are small (n ≲ 10)
and each enclosure is computed only to confirm a violation, so no optional dependency is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np

from fimtheory._generated import series as _series
from fimtheory.errors import FimTheoryError, InputError, UnknownIdError
from fimtheory.highprec import iv_from_mp, mp_eigh, working_precision
from fimtheory.validation import EPS64

iv = mpmath.iv
TINY = np.finfo(float).tiny


class EnclosureError(FimTheoryError):
    """The enclosure could not be computed at this precision (a higher one may succeed)."""


class NoEnclosure(EnclosureError):
    """No rigorous enclosure is available for this claim or instance at any precision."""


class HypothesisFails(FimTheoryError):
    """A hypothesis of the claim is certainly false on the instance (proved in interval
    arithmetic): the instance does not meet the hypotheses."""


# --------------------------------------------------------------------------------------
# interval building blocks (call inside working_precision)
# --------------------------------------------------------------------------------------


def lo(x) -> mpmath.mpf:
    """Lower end of an interval, as an mpf."""
    return mpmath.mpf(x.a)


def hi(x) -> mpmath.mpf:
    """Upper end of an interval, as an mpf."""
    return mpmath.mpf(x.b)


def ivf(x):
    """Exact point interval of a float (an interval is returned as is)."""
    if isinstance(x, mpmath.ctx_iv.ivmpf):
        return x
    if isinstance(x, float | int | np.floating | np.integer):
        return iv.mpf(float(x))
    return iv.mpf(x)


def _real_array(a, what: str) -> np.ndarray:
    """``np.asarray(a, dtype=float)``, refusing complex input (the cast would drop the imaginary part)."""
    a = np.asarray(a)
    if np.iscomplexobj(a):
        raise InputError(f"{what} needs real entries, got a complex array")
    return np.asarray(a, dtype=float)


def iv_matrix(a) -> mpmath.matrix:
    """Exact interval copy of a 2-D float array, or of a list of lists of intervals."""
    if isinstance(a, list):
        rows, cols = len(a), (len(a[0]) if a else 0)
        m = iv.matrix(rows, cols)
        for i in range(rows):
            for j in range(cols):
                m[i, j] = ivf(a[i][j])
        return m
    a = _real_array(a, "iv_matrix")
    m = iv.matrix(a.shape[0], a.shape[1])
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            m[i, j] = iv.mpf(float(a[i, j]))
    return m


def iv_column(v) -> mpmath.matrix:
    """Exact interval column of a float vector."""
    v = _real_array(v, "iv_column").reshape(-1)
    m = iv.matrix(v.shape[0], 1)
    for i, x in enumerate(v):
        m[i, 0] = iv.mpf(float(x))
    return m


def mid_matrix(M) -> mpmath.matrix:
    """The mp matrix of midpoints of an interval matrix."""
    out = mpmath.matrix(M.rows, M.cols)
    for i in range(M.rows):
        for j in range(M.cols):
            out[i, j] = mpmath.mpf(M[i, j].mid)
    return out


def frobenius_upper(M) -> mpmath.mpf:
    """Upper bound on the Frobenius norm of every matrix in an interval matrix."""
    s = iv.mpf(0)
    for i in range(M.rows):
        for j in range(M.cols):
            x = M[i, j]
            s += iv.mpf(max(abs(lo(x)), abs(hi(x)))) ** 2
    return hi(iv.sqrt(s))


def iv_abs(x):
    """|x| as an interval (tight: [0, max] when x contains 0)."""
    a, b = lo(x), hi(x)
    if a >= 0:
        return x
    if b <= 0:
        return -x
    return iv.mpf([0, max(-a, b)])


def iv_sq(x):
    """x² as a non-negative interval (x·x in interval arithmetic may dip below 0)."""
    return iv_abs(x) ** 2


def iv_dot(x, y):
    """xᵀy for interval column vectors."""
    s = iv.mpf(0)
    for i in range(x.rows):
        s += x[i, 0] * y[i, 0]
    return s


def iv_norm_sq(x):
    """‖x‖² of an interval column vector, as a non-negative interval."""
    s = iv.mpf(0)
    for i in range(x.rows):
        s += iv_sq(x[i, 0])
    return s


def iv_norm(x):
    return iv.sqrt(iv_norm_sq(x))


def iv_max(values):
    """Enclosure of the maximum of enclosed numbers."""
    return iv.mpf([max(lo(v) for v in values), max(hi(v) for v in values)])


def iv_min(values):
    """Enclosure of the minimum of enclosed numbers."""
    return iv.mpf([min(lo(v) for v in values), min(hi(v) for v in values)])


def iv_hull(values):
    """The smallest interval containing all ``values``."""
    return iv.mpf([min(lo(v) for v in values), max(hi(v) for v in values)])


def iv_div(x, y, what: str = "a denominator"):
    """x / y, refusing a denominator interval that contains 0."""
    if not (lo(y) > 0 or hi(y) < 0):
        raise EnclosureError(f"{what} is not bounded away from 0 at {mpmath.mp.dps} digits")
    return x / y


def iv_rel(x, scale):
    """The registry's ``_rel``: x/scale when scale > 0, x when scale = 0."""
    if hi(scale) == 0:
        return x
    return iv_div(x, scale, "the margin's scale")


def require_positive(name: str, value) -> None:
    """A hypothesis ``value > 0``: return if certain, raise :class:`HypothesisFails` if
    certainly false, :class:`EnclosureError` if the enclosure straddles 0."""
    if lo(value) > 0:
        return
    if hi(value) <= 0:
        raise HypothesisFails(
            f"{name} fails at {mpmath.mp.dps} digits (enclosure upper end {mpmath.nstr(hi(value), 5)})"
        )
    raise EnclosureError(f"hypothesis {name} undecided at {mpmath.mp.dps} digits")


def series_iv(fn, *args):
    """Call a generated formula on intervals, refusing any float fallback (which would
    silently lose rigour)."""
    out = fn(*args)
    if not isinstance(out, mpmath.ctx_iv.ivmpf):
        raise EnclosureError(f"{fn.__name__} did not evaluate in interval arithmetic (got {type(out).__name__})")
    return out


def iv_eigenvalue_enclosures(M) -> list:
    """Rigorous enclosures (intervals, descending) of the eigenvalues of every symmetric
    matrix inside the symmetric interval matrix ``M`` (see the module docstring)."""
    n = M.rows
    mid = mid_matrix(M)
    for i in range(n):
        for j in range(i + 1, n):
            mid[i, j] = mid[j, i] = (mid[i, j] + mid[j, i]) / 2
    eig = mp_eigh(mid, mpmath.mp.dps)
    X = iv_from_mp(eig.eigenvectors)
    B = X.T * M * X
    for k in range(n):
        B[k, k] = B[k, k] - iv.mpf(eig.eigenvalues[k])
    delta = frobenius_upper(B)
    N = X.T * X
    for k in range(n):
        N[k, k] = N[k, k] - 1
    nu = frobenius_upper(N)
    if nu >= mpmath.mpf("0.5"):
        raise EnclosureError("eigenvector matrix too far from orthogonal for a certified enclosure")
    th_lo, th_hi = iv.mpf(1) - iv.mpf(nu), iv.mpf(1) + iv.mpf(nu)
    out = []
    for k in range(n):
        lo_b = iv.mpf(eig.eigenvalues[k]) - iv.mpf(delta)
        hi_b = iv.mpf(eig.eigenvalues[k]) + iv.mpf(delta)
        cands = [lo_b / th_lo, lo_b / th_hi, hi_b / th_lo, hi_b / th_hi]
        out.append(iv.mpf([min(lo(c) for c in cands), max(hi(c) for c in cands)]))
    return out


def float_eigenvalue_enclosures(A) -> list:
    """:func:`iv_eigenvalue_enclosures` of an exact float matrix."""
    return iv_eigenvalue_enclosures(iv_matrix(A))


def iv_lambda_max(M):
    return iv_max(iv_eigenvalue_enclosures(M))


def iv_sym_norm(encl):
    """‖S‖₂ = max(|λ_max|, |λ_min|) from eigenvalue enclosures."""
    return iv_max([iv_abs(encl[0]), iv_abs(encl[-1])])


def iv_sum(A, E):
    """The interval matrix containing the exact sum of two float matrices."""
    return iv_matrix(A) + iv_matrix(E)


# --------------------------------------------------------------------------------------
# top eigenpair, reduced resolvent, perturbation series
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopEigen:
    """Enclosures for the simple top eigenpair of a symmetric matrix S (exact in ``S_iv``).

    Attributes
    ----------
    eigenvalues : list of intervals, descending (all eigenvalues of S).
    v : interval column containing a unit top eigenvector v1 (one sign of it).
    sin_bound : mpf, the bound ε on sin∠(u, v1) for the mp vector u.
    """

    S: object
    eigenvalues: list
    v: object
    sin_bound: object
    _N: object
    _N_mid: object
    _m0: object

    @property
    def lam1(self):
        return self.eigenvalues[0]

    @property
    def gap(self):
        return self.eigenvalues[0] - self.eigenvalues[1]

    def resolve(self, x):
        """Interval enclosure of R x (R the reduced resolvent of S at λ1) for every x in
        the interval column ``x``."""
        xm = mid_matrix(x)
        zhat = mpmath.lu_solve(self._N_mid, xm)
        z = iv_from_mp(zhat)
        res = x - self._N * z
        err = hi(iv.mpf(hi(iv_norm(res))) / iv.mpf(self._m0))
        box = iv.mpf([-err, err])
        for i in range(z.rows):
            z[i, 0] = z[i, 0] + box
        return z - self.v * iv_dot(self.v, x)


def top_eigen(S_iv, eigenvalues=None) -> TopEigen:
    """Enclose the top eigenpair of the symmetric interval matrix ``S_iv`` (exact floats).

    Raises :class:`NoEnclosure` when λ1 is not certified simple (no top eigenvector to
    enclose) and :class:`EnclosureError` when the mp vector is too poor at this precision.
    """
    n = S_iv.rows
    if n < 2:
        raise NoEnclosure("n = 1: no second eigenvalue")
    enc = eigenvalues if eigenvalues is not None else iv_eigenvalue_enclosures(S_iv)
    if not lo(enc[0]) > hi(enc[1]):
        if hi(enc[0]) - lo(enc[1]) < mpmath.mpf(10) ** (-(mpmath.mp.dps // 2)) * (1 + abs(hi(enc[0]))):
            raise NoEnclosure("top eigenvalue not certified simple (repeated within the enclosure)")
        raise EnclosureError(f"top eigenvalue not certified simple at {mpmath.mp.dps} digits")
    eig = mp_eigh(mid_matrix(S_iv), mpmath.mp.dps)
    x = iv_from_mp(eig.vector(0))
    u = x * (iv.mpf(1) / iv_norm(x))
    Su = S_iv * u
    mu = iv_dot(u, Su)
    rho = hi(iv_norm(Su - u * mu))
    delta = lo(mu) - hi(enc[1])
    if not delta > 0:
        raise EnclosureError("Rayleigh quotient not separated from λ2")
    eps = hi(iv.mpf(rho) / iv.mpf(delta))
    if not eps < mpmath.mpf("0.25"):
        raise EnclosureError("top eigenvector angle bound too large")
    radius = hi(iv.sqrt(iv.mpf(2)) * iv.mpf(eps))
    v = iv.matrix(n, 1)
    for i in range(n):
        v[i, 0] = u[i, 0] + iv.mpf([-radius, radius])
    # N = λ1 I − S + v vᵀ over the boxes of λ1 and v; λ_min(N) = min(1, γ) exactly.
    N = S_iv * iv.mpf(-1) + v * v.T
    for i in range(n):
        N[i, i] = N[i, i] + enc[0]
    m0 = min(mpmath.mpf(1), lo(enc[0] - enc[1]))
    return TopEigen(S_iv, enc, v, eps, N, mid_matrix(N), m0)


def series_coefficients_iv(top: TopEigen, E_iv, order: int) -> list:
    """Enclosures of a_1..a_order of λ_max(S + tE) (Rayleigh–Schrödinger recursion)."""
    v = top.v
    w = E_iv * v
    a = [iv_dot(v, w)]
    psis = [v]
    for k in range(1, order):
        x = E_iv * psis[k - 1]
        for m in range(1, k):
            x = x - psis[k - m] * a[m - 1]
        psi = top.resolve(x)
        psis.append(psi)
        a.append(iv_dot(w, psi))
    return a


def off_top_residual_sq(top: TopEigen, E_iv):
    """‖P⊥Ev1‖² as a non-negative interval."""
    w = E_iv * top.v
    return iv_norm_sq(w - top.v * iv_dot(top.v, w))


def _gap_and_eta(A, E, encA=None):
    encA = encA if encA is not None else float_eigenvalue_enclosures(A)
    eta = iv_sym_norm(float_eigenvalue_enclosures(E))
    return encA, eta


def _require_series_hypotheses(encA, eta):
    require_positive("γ > 0", encA[0] - encA[1])
    require_positive("2η < γ", encA[0] - encA[1] - 2 * eta)


# --------------------------------------------------------------------------------------
# per-claim margins (each returns an interval; call inside working_precision)
# --------------------------------------------------------------------------------------


def _m_weyl(inst):
    la = float_eigenvalue_enclosures(inst.A)
    le = float_eigenvalue_enclosures(inst.E)
    ls = iv_eigenvalue_enclosures(iv_sum(inst.A, inst.E))
    n = len(la)
    ms = [la[i] + le[j] - ls[i + j] for i in range(n) for j in range(n) if i + j < n]
    ms.append(ls[0] - la[0] - le[-1])
    scale = iv_sym_norm(la) + iv_sym_norm(le)
    return iv_rel(iv_min(ms), scale)


def _m_weyl_no_lambda_min(inst):
    top = iv_lambda_max(iv_sum(inst.A, inst.E))
    la = float_eigenvalue_enclosures(inst.A)[0]
    scale = iv_abs(la) + iv_sym_norm(float_eigenvalue_enclosures(inst.E))
    return iv_rel(top - la, scale)


def _rayleigh(M_iv, v):
    x = iv_column(v)
    return iv_div(iv_dot(x, M_iv * x), iv_norm_sq(x), "vᵀv")


def _top_cluster_size(A) -> int:
    """Size of the top eigenvalue cluster as the float evaluation of R sees it."""
    from fimtheory import spectral

    w = spectral.eigen_data(A).eigenvalues
    tol = 16.0 * w.shape[0] * EPS64 * max(abs(w[0]), abs(w[-1]), TINY)
    return int(np.count_nonzero(w >= w[0] - tol))


def _m_directional(inst):
    """R and T4.3a: (λ_max(A+E) − ρ)/(|λ1| + η), ρ = vᵀ(A+E)v/vᵀv for a given v, else
    λ1 + v1ᵀEv1."""
    A_iv, E_iv = iv_matrix(inst.A), iv_matrix(inst.E)
    top = iv_lambda_max(A_iv + E_iv)
    encA = iv_eigenvalue_enclosures(A_iv)
    eta = iv_sym_norm(iv_eigenvalue_enclosures(E_iv))
    if inst.v is None:
        if inst.n > 1 and _top_cluster_size(inst.A) > 1:
            raise NoEnclosure("repeated top eigenvalue: the top eigenspace is not enclosed")
        if inst.n == 1:
            rq = encA[0] + E_iv[0, 0]
        else:
            te = top_eigen(A_iv, encA)
            rq = te.lam1 + iv_dot(te.v, E_iv * te.v)
    else:
        rq = _rayleigh(A_iv + E_iv, inst.v)
    return iv_rel(top - rq, iv_abs(encA[0]) + eta)


def _m_quant_directional(inst):
    encA = float_eigenvalue_enclosures(inst.A)
    if inst.n > 1:
        require_positive("γ > 0", encA[0] - encA[1])
    return _m_directional(inst)


def _m_r_any_vector(inst):
    top = iv_lambda_max(iv_sum(inst.A, inst.E))
    la = float_eigenvalue_enclosures(inst.A)[0]
    E_iv = iv_matrix(inst.E)
    scale = iv_abs(la) + iv_sym_norm(iv_eigenvalue_enclosures(E_iv))
    return iv_rel(top - la - _rayleigh(E_iv, inst.v), scale)


def _m_per_draw(inst):
    encA, eta = _gap_and_eta(inst.A, inst.E)
    _require_series_hypotheses(encA, eta)
    gap = encA[0] - encA[1]
    top = iv_lambda_max(iv_sum(inst.A, inst.E))
    rem = series_iv(_series.remainder_bound_second, eta, gap)
    return iv_div(top - encA[0] + rem, iv_abs(encA[0]) + eta)


def _series_order() -> int:
    from fimtheory.claims import _series_order

    return _series_order()


def _m_series(inst):
    """S: min over the Cauchy terms 1 − |a_k|/b_k (b_k = η(2η/γ)^(k−1)) and the tail term.

    Only the terms k = 1, 2 of the coefficient bounds are enclosed (the tail still sums every
    generated a_k): those of k ≥ 3 are never below the k = 2 one, exactly, so the claim's
    margin is unchanged. Proof: let v be A's top eigenvector, w = P⊥Ev, R the reduced
    resolvent (0 ≤ R ≤ 1/γ on v⊥), z = Rw, s = |a1|/η ≤ 1, F = P⊥EP⊥ − a1 on v⊥
    (‖F‖ ≤ η(1 + s)). The Rayleigh–Schrödinger recursion gives a2 = wᵀRw ≥ 0, a3 = zᵀFz and
    a4 = zᵀFRFz − a2‖z‖² (two terms of one sign each), with ‖z‖² = wᵀR²w ≤ a2/γ and
    a2 ≤ ‖w‖²/γ ≤ η²(1 − s²)/γ ≤ η²(1 + s)²/γ. So |a3| ≤ η(1 + s)a2/γ and
    |a4| ≤ max(η²(1 + s)²/γ, a2)·a2/γ ≤ η²(1 + s)²a2/γ², i.e. with x = 2η/γ
    |a3|/b3 ≤ ((1 + s)/2)·a2/b2 ≤ a2/b2 and |a4|/b4 ≤ ((1 + s)/2)²·a2/b2 ≤ a2/b2. Enclosing
    the larger terms too could only lower the enclosure's lower end by their own rounding.
    """
    A_iv, E_iv = iv_matrix(inst.A), iv_matrix(inst.E)
    encA = iv_eigenvalue_enclosures(A_iv)
    eta = iv_sym_norm(iv_eigenvalue_enclosures(E_iv))
    _require_series_hypotheses(encA, eta)
    order = _series_order()
    te = top_eigen(A_iv, encA)
    gap = te.gap
    a = series_coefficients_iv(te, E_iv, order)
    cb = [series_iv(_series.coefficient_bound, k, eta, gap) for k in (1, 2)]
    ms = [iv_div(b - iv_abs(x), b) for x, b in zip(a, cb)]
    top = iv_lambda_max(A_iv + E_iv)
    tail = series_iv(_series.coefficient_bound, order + 1, eta, gap) / (1 - 2 * eta / gap)
    ms.append(iv_div(tail - iv_abs(top - te.lam1 - sum(a, iv.mpf(0))), tail))
    return iv_min(ms)


def _m_s2(inst):
    """S2: 1 − r1/b1, r1 = |λ' − λ1 − a1|, b1 = 2η²/(γ − 2η), the first-order term.

    The claim's margin is min(1 − r1/b1, 1 − r2/b2) (r2 = |λ' − λ1 − a1 − a2|,
    b2 = 4η³/(γ(γ − 2η))); the second term is never below the first, exactly, so only the
    first is enclosed. Proof: b2 = x·b1 with x = 2η/γ < 1. In the basis (v, v⊥) of A's top
    eigenvector, A + E = [[λ1 + a1, wᵀ], [w, Â]] (w = P⊥Ev, Â = P⊥(A + E)P⊥ on v⊥, whose
    eigenvalues are ≤ λ2 + η < λ1 − η ≤ λ'), so the Schur complement gives
    λ' − λ1 − a1 = wᵀGw = r1 with G = (λ' − Â)⁻¹ > 0, and a2 = wᵀRw with R = (λ1 − A⊥)⁻¹,
    R⁻¹ ≥ γ. Now λ' − Â = R⁻¹ + (δ − Ê) (δ = λ' − λ1 ∈ [−η, η], Ê = P⊥EP⊥), ‖δ − Ê‖ ≤ 2η
    ≤ x·R⁻¹, so (1 − x)R⁻¹ ≤ λ' − Â ≤ (1 + x)R⁻¹, hence (1 − x)G ≤ R ≤ (1 + x)G and
    r2 = |wᵀ(G − R)w| ≤ x·r1: r2/b2 ≤ r1/b1. Enclosing the second term too could only lower
    the enclosure's lower end by its own rounding (its width ∝ (γ/η)³ relative).
    """
    A_iv, E_iv = iv_matrix(inst.A), iv_matrix(inst.E)
    encA = iv_eigenvalue_enclosures(A_iv)
    eta = iv_sym_norm(iv_eigenvalue_enclosures(E_iv))
    _require_series_hypotheses(encA, eta)
    te = top_eigen(A_iv, encA)
    (a1,) = series_coefficients_iv(te, E_iv, 1)
    top = iv_lambda_max(A_iv + E_iv)
    b1 = series_iv(_series.remainder_bound_first, eta, te.gap)
    r1 = iv_abs(top - te.lam1 - a1)
    return iv_div(b1 - r1, b1)


def _m_s2_repeated_top(inst):
    encA = float_eigenvalue_enclosures(inst.A)
    w = np.linalg.eigvalsh(inst.A)[::-1]
    k = int(np.argmax(w < w[0]))  # the distinct gap index, as the weakening defines it
    gap = encA[0] - encA[k]
    eta = iv_sym_norm(float_eigenvalue_enclosures(inst.E))
    require_positive("2η < (distinct) gap", gap - 2 * eta)
    b1 = series_iv(_series.remainder_bound_first, eta, gap)
    top = iv_lambda_max(iv_sum(inst.A, inst.E))
    return iv_div(b1 - iv_abs(top - encA[0] - _rayleigh(iv_matrix(inst.E), inst.v)), b1)


def _sign_parts(inst):
    A_iv, E_iv = iv_matrix(inst.A), iv_matrix(inst.E)
    encA = iv_eigenvalue_enclosures(A_iv)
    require_positive("γ > 0", encA[0] - encA[1])
    te = top_eigen(A_iv, encA)
    a2 = series_coefficients_iv(te, E_iv, 2)[1]
    r2 = off_top_residual_sq(te, E_iv)
    eta = iv_sym_norm(iv_eigenvalue_enclosures(E_iv))
    return te, a2, r2, eta


def _m_sign(inst):
    te, a2, r2, eta = _sign_parts(inst)
    if hi(eta) == 0:  # E = 0: a2 = 0 = both bounds
        return iv.mpf(0)
    lower, upper = _series.sign_bounds(te.eigenvalues[0], te.eigenvalues[1], te.eigenvalues[-1], r2)
    scale = eta**2 / te.gap
    return iv_div(iv_min([a2 - lower, upper - a2]), scale)


def _m_sign_lambda1(inst):
    te, a2, r2, _ = _sign_parts(inst)
    require_positive("λ1 > 0", te.lam1)
    if hi(r2) == 0:
        return iv.mpf(0)
    upper = r2 / te.gap
    return iv_div(a2 - r2 / te.lam1, upper, "‖P⊥Ev‖²/γ")


def _m_t43b(inst):
    Es = inst.scaled()
    F_iv = iv_matrix(inst.F)
    encF = iv_eigenvalue_enclosures(F_iv)
    lam = encF[0]
    E_ivs = [iv_matrix(E) for E in Es]
    tops = [iv_lambda_max(F_iv + E) for E in E_ivs]
    etas = [iv_sym_norm(iv_eigenvalue_enclosures(E)) for E in E_ivs]
    mean_top = sum(tops, iv.mpf(0)) / len(tops)
    eta_bar = iv_max(etas)
    scale = iv_abs(lam) + eta_bar
    jensen = iv_div(mean_top - lam, scale)
    n = F_iv.rows
    if n == 1:
        return jensen
    gap = encF[0] - encF[1]
    slack = gap - 2 * eta_bar
    if hi(gap) <= 0 or hi(slack) <= 0:
        return jensen  # the second part's hypotheses certainly fail: Jensen alone
    if not (lo(gap) > 0 and lo(slack) > 0):
        # whether the second part applies is undecided: the margin is jensen or min(jensen, ·)
        return iv.mpf([mpmath.mpf("-inf"), hi(jensen)])
    te = top_eigen(F_iv, encF)
    a2 = sum((series_coefficients_iv(te, E, 2)[1] for E in E_ivs), iv.mpf(0)) / len(E_ivs)
    eta3 = sum((e**3 for e in etas), iv.mpf(0)) / len(etas)
    lower = lam + a2 - 4 * eta3 / (gap * slack)
    return iv_min([jensen, iv_div(mean_top - lower, scale)])


def _m_nonzero_mean(inst):
    Es = inst.scaled()
    lam = float_eigenvalue_enclosures(inst.F)[0]
    tops = [iv_lambda_max(iv_sum(inst.F, E)) for E in Es]
    scale = iv_abs(lam) + iv_max([iv_sym_norm(float_eigenvalue_enclosures(E)) for E in Es])
    return iv_div(sum(tops, iv.mpf(0)) / len(tops) - lam, scale)


def _t43c_matrices(inst, require_generic: bool):
    """The float matrices s·(tE_k) the T4.3c margin is evaluated on (s from the float
    evaluation, the product rounded to float exactly as the mp evaluation does)."""
    from fimtheory.claims import _t43c_core

    out = _t43c_core(inst, require_generic)
    if not out.hypotheses_met:
        raise HypothesisFails(out.reason)
    s = float(out.details["s"])
    return [s * E for E in inst.scaled()]


def _exact_diagonal_t43c(F, Es):
    """Exact margin (Fraction) when F and every s·E_k are diagonal, else None."""
    for M in [F, *Es]:
        if np.count_nonzero(M - np.diag(np.diag(M))):
            return None
    f = [Fraction(float(x)) for x in np.diag(F)]
    lam = max(f)
    if lam == 0:
        return None
    tops = [max(a + Fraction(float(b)) for a, b in zip(f, np.diag(E))) for E in Es]
    return (sum(tops, Fraction(0)) / len(tops) - lam) / abs(lam)


def fraction_interval(f: Fraction):
    """The tightest interval (at the working precision) containing a rational number."""
    return iv.mpf(f.numerator) / iv.mpf(f.denominator)


def _m_t43c_factory(require_generic: bool):
    def margin(inst):
        Es = _t43c_matrices(inst, require_generic)
        exact = _exact_diagonal_t43c(inst.F, Es)
        encF = float_eigenvalue_enclosures(inst.F)
        require_positive("γ > 0", encF[0] - encF[1])
        if exact is not None:
            return fraction_interval(exact)
        lam = encF[0]
        tops = [iv_lambda_max(iv_sum(inst.F, E)) for E in Es]
        return iv_div(sum(tops, iv.mpf(0)) / len(tops) - lam, iv_abs(lam))

    return margin


# ---- models in interval arithmetic ---------------------------------------------------------


def _iv_logits(model, X, theta):
    X = np.asarray(X, dtype=float)
    theta = np.asarray(theta, dtype=float).reshape(-1)
    n, d = X.shape
    W = theta.reshape(-1, d)
    out = []
    for i in range(n):
        x = [ivf(float(v)) for v in X[i]]
        out.append((x, [sum((ivf(float(W[c, j])) * x[j] for j in range(d)), iv.mpf(0)) for c in range(W.shape[0])]))
    return out


def _iv_mean(model, zs):
    """μ(z): the sigmoid (one output) or the softmax."""
    if model == "logistic":
        return [iv.mpf(1) / (iv.mpf(1) + iv.exp(-zs[0]))]
    zmax = iv.mpf(max(hi(z) for z in zs))
    ex = [iv.exp(z - zmax) for z in zs]
    tot = sum(ex, iv.mpf(0))
    return [e / tot for e in ex]


def iv_scores(model: str, X, y, theta) -> mpmath.matrix:
    """Per-sample scores g_i = ∇_θ log p(y_i | x_i; θ) in interval arithmetic from the exact
    floats: linear-Gaussian (y − θᵀx)x, logistic (y − σ(θᵀx))x, softmax (e_y − softmax(Wx)) ⊗ x
    with θ = W.reshape(-1)."""
    if model not in ("linear", "logistic", "softmax"):
        raise UnknownIdError(f"unknown model {model!r}")
    rows = []
    for i, (x, zs) in enumerate(_iv_logits(model, X, theta)):
        if model == "linear":
            rows.append([(ivf(float(y[i])) - zs[0]) * xj for xj in x])
        elif model == "logistic":
            rows.append([(ivf(float(y[i])) - _iv_mean(model, zs)[0]) * xj for xj in x])
        else:
            mu = _iv_mean(model, zs)
            yi = int(y[i])
            row = []
            for c in range(len(zs)):
                r = (iv.mpf(1) if c == yi else iv.mpf(0)) - mu[c]
                row += [r * xj for xj in x]
            rows.append(row)
    return iv_matrix(rows)


def iv_batch_lambda_max(model, X, y, theta):
    """Enclosure of Λ = λ_max of the empirical FIM of the batch, via the smaller of
    GGᵀ/n and GᵀG/n."""
    G = iv_scores(model, X, y, theta)
    n, p = G.rows, G.cols
    small = (G * G.T) if n <= p else (G.T * G)
    return iv_lambda_max(small * (iv.mpf(1) / n))


def iv_model_label_fim(model, X, theta_labels, theta):
    """F_π(θ) = (1/n) Σ_i Σ_c π_i(c) g(θ; x_i, c) g(θ; x_i, c)ᵀ, π = p(·|x; θ_labels)."""
    X = np.asarray(X, dtype=float)
    n = X.shape[0]
    pis = [_iv_mean(model, zs) for _, zs in _iv_logits(model, X, theta_labels)]
    if model == "logistic":
        pis = [[1 - p[0], p[0]] for p in pis]
    F = None
    for c in range(len(pis[0])):
        yc = np.full(n, c, dtype=int) if model == "softmax" else np.full(n, float(c))
        G = iv_scores(model, X, yc, theta)
        Gw = G.copy()
        for i in range(n):
            for j in range(G.cols):
                Gw[i, j] = G[i, j] * pis[i][c]
        term = Gw.T * G * (iv.mpf(1) / n)
        F = term if F is None else F + term
    for i in range(F.rows):  # symmetric box (the two products agree up to rounding)
        for j in range(i + 1, F.cols):
            F[i, j] = F[j, i] = iv_hull([F[i, j], F[j, i]])
    return F


def _m_t43d(inst):
    base = iv_lambda_max(iv_model_label_fim(inst.model, inst.X, inst.theta, inst.theta))
    require_positive("F_π(θ) ≠ 0", base)
    tops = [iv_lambda_max(iv_model_label_fim(inst.model, inst.X, inst.theta, inst.theta + d)) for d in inst.deltas]
    return iv_min([t - base for t in tops]) / base


def _m_t43d_empirical(inst):
    lam = iv_batch_lambda_max(inst.model, inst.X, inst.y, inst.theta)
    require_positive("F(θ) ≠ 0", lam)
    tops = [iv_batch_lambda_max(inst.model, inst.X, inst.y, inst.theta + d) for d in inst.deltas]
    return (sum(tops, iv.mpf(0)) / len(tops) - lam) / lam


def _m_p32(inst):
    """P3.2 (with or without LCM): the worst elevation margin over the grid points, on the
    float grid inputs X + t_k U the float evaluation used, relative to max |Λ|.

    The claim's margin at grid point t_k is the minimum of three differences of
    d_i = Λ(x_i + t_k u_i) and b_i = Λ(x_i): pointwise min_i (d_i − b_i), mean(d) − mean(b)
    and q(d) − q(b) (q the linear-interpolation quantile at the instance's level in [0, 1]).
    Only the pointwise term is enclosed, because it *is* that minimum, exactly: with
    c = min_i (d_i − b_i), d_i ≥ b_i + c for every i, so mean(d) − mean(b) ≥ c (a mean is ≥ its
    smallest term), and q, monotone in every value and translation-equivariant (a convex
    combination of two order statistics, and d_i ≥ b_i + c for all i orders the sorted values
    the same way), gives q(d) ≥ q(b + c) = q(b) + c. Enclosing the two larger terms too could
    only lower the enclosure's lower end (their intervals reach below c by their own rounding).
    """
    t = np.linspace(0.0, inst.T, inst.steps + 1)
    vals = [
        [iv_batch_lambda_max(inst.model, X + tk * U, y, inst.theta) for tk in t]
        for X, y, U in zip(inst.inputs, inst.labels, inst.directions)
    ]
    worst = iv_min([row[k] - row[0] for row in vals for k in range(1, len(t))])
    scale = iv_max([iv_abs(v) for row in vals for v in row])
    return iv_rel(worst, scale)


def _iv_power_rayleigh(inst):
    """(F, λ_max, ‖ḡ‖², Rayleigh quotient of F at F^k ḡ) for a score instance."""
    G = iv_matrix(inst.G)
    n, p = G.rows, G.cols
    F = (G.T * G) * (iv.mpf(1) / n)
    gbar = iv.matrix(p, 1)
    for j in range(p):
        gbar[j, 0] = sum((G[i, j] for i in range(n)), iv.mpf(0)) / n
    gn2 = iv_norm_sq(gbar)
    require_positive("ḡ ≠ 0", gn2)
    x = gbar
    for _ in range(inst.power_steps):
        x = F * x  # normalisation does not change the Rayleigh quotient
    rq = iv_div(iv_dot(x, F * x), iv_norm_sq(x), "‖F^k ḡ‖²")
    small = (G * G.T) * (iv.mpf(1) / n) if n <= p else F
    lam = iv_lambda_max(small)
    return lam, gn2, rq


def _m_ah(inst):
    lam, gn2, rq = _iv_power_rayleigh(inst)
    return iv_div(iv_min([rq - gn2, lam - rq]), lam)


def _m_ah_accurate(inst):
    lam, _, rq = _iv_power_rayleigh(inst)
    return iv_div(rq, lam) - iv.mpf("0.99")


def _iv_root(x, q: int):
    """x^(1/q) for an interval x ≥ 0."""
    if hi(x) <= 0:
        return iv.mpf(0)
    if lo(x) <= 0:
        return iv.mpf([0, hi(iv.exp(iv.log(iv.mpf(hi(x))) / q))])
    return iv.exp(iv.log(x) / q)


def _m_ab(inst):
    from fimtheory import approx
    from fimtheory.claims import _lanczos_start

    G = iv_matrix(inst.G)
    n, p = G.rows, G.cols
    _, ritz_vec = approx.lanczos_ritz(inst.G @ inst.G.T / n, inst.lanczos_steps, _lanczos_start(inst.G))
    K = (G * G.T) * (iv.mpf(1) / n)
    F = (G.T * G) * (iv.mpf(1) / n)
    lam = iv_lambda_max(K if n <= p else F)
    require_positive("F ≠ 0", lam)
    row = [sum((iv_sq(G[i, j]) for j in range(p)), iv.mpf(0)) for i in range(n)]
    gbar = iv.matrix(p, 1)
    for j in range(p):
        gbar[j, 0] = sum((G[i, j] for i in range(n)), iv.mpf(0)) / n
    y = iv_column(ritz_vec)
    ritz = iv_div(iv_dot(y, K * y), iv_norm_sq(y), "‖Ritz vector‖²")
    Kq = K
    for _ in range(inst.q - 1):
        Kq = Kq * K
    trq = sum((Kq[i, i] for i in range(n)), iv.mpf(0))
    rank = approx.structural_rank_bound(inst.G)
    lows = [iv_max(row) / n, iv_norm_sq(gbar), iv_max([F[j, j] for j in range(p)]), ritz, _iv_root(trq / rank, inst.q)]
    ups = [
        sum((K[i, i] for i in range(n)), iv.mpf(0)),
        iv_max([sum((iv_abs(K[i, j]) for j in range(n)), iv.mpf(0)) for i in range(n)]),
        _iv_root(trq, inst.q),
    ]
    return iv_div(iv_min([iv_min([lam - x for x in lows]), iv_min([u - lam for u in ups])]), lam)


def _m_ab_numerical_rank(inst):
    from fimtheory.claims import numerical_rank

    r = numerical_rank(inst.G)
    if r == 0:
        raise HypothesisFails("G = 0")
    G = iv_matrix(inst.G)
    n = G.rows
    K = (G * G.T) * (iv.mpf(1) / n)
    Kq = K
    for _ in range(inst.q - 1):
        Kq = Kq * K
    trq = sum((Kq[i, i] for i in range(n)), iv.mpf(0))
    lam = iv_lambda_max(K)
    return iv_div(lam - _iv_root(trq / r, inst.q), lam)


def _exact_float_margin(subject_id: str):
    """C and its weakenings: the float evaluation is a finite sequence of exact float
    comparisons, so its margin (±1) is exact."""

    def margin(inst):
        from fimtheory.claims import REGISTRY

        claim = REGISTRY[subject_id.split("-")[0]]
        subject = claim if subject_id == claim.id else claim.weakening(subject_id)
        out = subject.evaluate(inst)
        if not out.hypotheses_met:
            raise HypothesisFails(out.reason)
        return iv.mpf(float(out.margin))

    return margin


#: Rigorous margin evaluators by claim / weakening id (intervals; call in working_precision).
# ---- sharp one-sided bounds (KT, LL) and S-no-disc: fimtheory.claims_sharp ------------------


def _sharp_parts(inst):
    """(λ' enclosure, TopEigen of A, a = vᵀEv, ‖P⊥Ev‖², η, E as an interval matrix)."""
    A_iv, E_iv = iv_matrix(inst.A), iv_matrix(inst.E)
    encA = iv_eigenvalue_enclosures(A_iv)
    require_positive("γ > 0", encA[0] - encA[1])
    te = top_eigen(A_iv, encA)
    a = iv_dot(te.v, E_iv * te.v)
    w2 = off_top_residual_sq(te, E_iv)
    eta = iv_sym_norm(iv_eigenvalue_enclosures(E_iv))
    top = iv_lambda_max(A_iv + E_iv)
    return top, te, a, w2, eta, A_iv, E_iv


def _compression_top(te, A_iv, E_iv, eta):
    """μ = λ_max of A + E compressed to v⊥ (= λ_max(Λ₂ + D)): the top eigenvalue of
    S = P⊥(A+E)P⊥ − c·vvᵀ, P⊥ = I − vvᵀ over the box of v, with c = 1 + ‖A‖₂ + 2η bounding
    |every eigenvalue of the compression| + 1 (they lie in [λn − η, λ1 + η]; v is then an
    eigenvector of S for −c, below all). ‖A‖₂ = max(|λ1|, |λn|), not |λ1|: for an A that is not
    PSD, λn can be the larger in magnitude."""
    n = A_iv.rows
    v = te.v
    P = v * v.T * iv.mpf(-1)
    for i in range(n):
        P[i, i] = P[i, i] + 1
    norm_a = iv_max([iv_abs(te.lam1), iv_abs(te.eigenvalues[-1])])
    c = iv.mpf(hi(iv.mpf(1) + norm_a + 2 * eta))
    S = P * (A_iv + E_iv) * P - v * v.T * c
    for i in range(n):  # symmetric box (the exact matrix is symmetric)
        for j in range(i + 1, n):
            S[i, j] = S[j, i] = iv.mpf([min(lo(S[i, j]), lo(S[j, i])), max(hi(S[i, j]), hi(S[j, i]))])
    mu = iv_lambda_max(S)
    if not lo(mu) > -lo(c):
        raise EnclosureError("compression eigenvalue not separated from the shifted v direction")
    return mu


def _li_li_iv(g, w2):
    if lo(g) > 0:
        return 2 * w2 / (g + iv.sqrt(g * g + 4 * w2))
    return (iv.sqrt(iv_sq(g) + 4 * w2) - g) / 2


def _sharp_margin(parts, bound, two_sided: bool):
    top, te, a, w2, eta, _, _ = parts
    if hi(eta) == 0:
        return iv.mpf(0)
    r = top - te.lam1 - a
    scale = eta**2 / te.gap
    m = iv_min([r, bound - r]) if two_sided else bound - r
    return iv_div(m, scale, "η²/γ")


def _m_kt(inst):
    parts = _sharp_parts(inst)
    _, te, a, w2, eta, _, _ = parts
    gkt = te.gap + a - eta
    require_positive("γ + a − η > 0", gkt)
    return _sharp_margin(parts, w2 / gkt, True)


def _m_kt_unperturbed_gap(inst):
    parts = _sharp_parts(inst)
    return _sharp_margin(parts, parts[3] / parts[1].gap, False)


def _m_ll(inst):
    parts = _sharp_parts(inst)
    top, te, a, w2, eta, A_iv, E_iv = parts
    if hi(eta) == 0:
        return iv.mpf(0)
    g = te.lam1 + a - _compression_top(te, A_iv, E_iv, eta)
    return _sharp_margin(parts, _li_li_iv(g, w2), True)


def _m_ll_unperturbed_gap(inst):
    parts = _sharp_parts(inst)
    return _sharp_margin(parts, _li_li_iv(parts[1].gap, parts[3]), False)


def _s3_iv(inst, with_tail: bool):
    A_iv, E_iv = iv_matrix(inst.A), iv_matrix(inst.E)
    encA = iv_eigenvalue_enclosures(A_iv)
    eta = iv_sym_norm(iv_eigenvalue_enclosures(E_iv))
    _require_series_hypotheses(encA, eta)
    te = top_eigen(A_iv, encA)
    a1, a2 = series_coefficients_iv(te, E_iv, 2)
    top = iv_lambda_max(A_iv + E_iv)
    gap = te.gap
    k = iv.mpf(4) / (3 * iv.sqrt(3))
    b = k * eta**3 / gap**2
    if with_tail:
        b = b + 8 * eta**4 / (gap**2 * (gap - 2 * eta))
    return iv_div(b - iv_abs(top - te.lam1 - a1 - a2), b)


def _m_s3(inst):
    return _s3_iv(inst, True)


def _m_s3_leading_only(inst):
    return _s3_iv(inst, False)


def _s3l_parts_iv(inst):
    A_iv, E_iv = iv_matrix(inst.A), iv_matrix(inst.E)
    encA = iv_eigenvalue_enclosures(A_iv)
    require_positive("γ > 0", encA[0] - encA[1])
    eta = iv_sym_norm(iv_eigenvalue_enclosures(E_iv))
    te = top_eigen(A_iv, encA)
    a1, a2 = series_coefficients_iv(te, E_iv, 2)
    rem = iv_lambda_max(A_iv + E_iv) - te.lam1 - a1 - a2
    return te, eta, rem, off_top_residual_sq(te, E_iv)


def _m_s3l(inst):
    te, eta, rem, w2 = _s3l_parts_iv(inst)
    if hi(eta) == 0:
        return iv.mpf(0)
    b = iv.mpf(4) / (3 * iv.sqrt(3)) * eta**3 / te.gap**2 + w2 * w2 / te.gap**3
    return iv_div(rem + b, b, "the S3L bound")


def _m_s3l_second_order(inst):
    te, eta, rem, _ = _s3l_parts_iv(inst)
    if hi(eta) == 0:
        return iv.mpf(0)
    return iv_div(rem, eta**3 / te.gap**2, "η³/γ²")


def _m_s_no_disc(inst):
    """Exact (Fraction) on diagonal pairs: eigenvalues of a diagonal matrix are its entries."""
    for M in (inst.A, inst.E):
        if np.count_nonzero(M - np.diag(np.diag(M))):
            raise HypothesisFails("S-no-disc is checked on diagonal pairs only")
    d = [Fraction(float(x)) for x in np.diag(inst.A)]
    e = [Fraction(float(x)) for x in np.diag(inst.E)]
    order = sorted(range(len(d)), key=lambda i: -d[i])
    if len(d) < 2 or not d[order[0]] > d[order[1]]:
        raise HypothesisFails("γ = 0 (top diagonal entry of A repeated)")
    k = order[0]
    top = max(x + y for x, y in zip(d, e))
    scale = abs(d[k]) + max(abs(y) for y in e)
    if scale == 0:
        return iv.mpf(0)
    return fraction_interval(-abs(top - d[k] - e[k]) / scale)


ENCLOSURES = {
    "W": _m_weyl,
    "W-no-lambda-min": _m_weyl_no_lambda_min,
    "R": _m_directional,
    "R-any-vector": _m_r_any_vector,
    "S": _m_series,
    "S2": _m_s2,
    "S2-repeated-top": _m_s2_repeated_top,
    "SIGN": _m_sign,
    "SIGN-lambda1-denominator": _m_sign_lambda1,
    "T4.3a": _m_quant_directional,
    "T4.3a-per-draw": _m_per_draw,
    "T4.3b": _m_t43b,
    "T4.3b-nonzero-mean": _m_nonzero_mean,
    "T4.3c": _m_t43c_factory(True),
    "T4.3c-no-genericity": _m_t43c_factory(False),
    "T4.3d": _m_t43d,
    "T4.3d-empirical-labels": _m_t43d_empirical,
    "P3.2": _m_p32,
    "P3.2-no-LCM": _m_p32,
    "AH": _m_ah,
    "AH-accurate": _m_ah_accurate,
    "AB": _m_ab,
    "AB-numerical-rank": _m_ab_numerical_rank,
    "C": _exact_float_margin("C"),
    "C-repeated-thresholds": _exact_float_margin("C-repeated-thresholds"),
    "C-no-nan-cell": _exact_float_margin("C-no-nan-cell"),
    "C-open-top": _exact_float_margin("C-open-top"),
    "C-closed-cells": _exact_float_margin("C-closed-cells"),
    "KT": _m_kt,
    "KT-unperturbed-gap": _m_kt_unperturbed_gap,
    "LL": _m_ll,
    "LL-unperturbed-gap": _m_ll_unperturbed_gap,
    "S-no-disc": _m_s_no_disc,
    "S3": _m_s3,
    "S3-leading-only": _m_s3_leading_only,
    "S3L": _m_s3l,
    "S3L-second-order": _m_s3l_second_order,
}


def has_enclosure(subject) -> bool:
    """Whether a rigorous evaluator exists for this claim or weakening."""
    return getattr(subject, "evaluate_iv", None) is not None or subject.id in ENCLOSURES


def margin_enclosure(subject, instance, dps: int) -> tuple:
    """(lo, hi) mpf with lo ≤ exact margin ≤ hi, at ``dps`` digits.

    Uses ``subject.evaluate_iv(instance, dps)`` when the claim defines one, else
    :data:`ENCLOSURES`. Raises :class:`NoEnclosure`, :class:`EnclosureError` or
    :class:`HypothesisFails` (see the module docstring).
    """
    own = getattr(subject, "evaluate_iv", None)
    if own is not None:
        a, b = own(instance, dps)
        # mpf endpoints as they are: mpmath.mpf(x) would round them to the caller's precision
        # (15 digits by default), which can move an endpoint past the exact margin.
        return tuple(x if isinstance(x, mpmath.mpf) else mpmath.mpf(x) for x in (a, b))
    fn = ENCLOSURES.get(subject.id)
    if fn is None:
        raise NoEnclosure(f"no rigorous evaluator for {subject.id}")
    with working_precision(dps):
        try:
            x = fn(instance)
        except ZeroDivisionError as exc:
            raise EnclosureError(f"division by an interval containing 0 at {dps} digits") from exc
        if not isinstance(x, mpmath.ctx_iv.ivmpf):
            raise EnclosureError(f"the evaluator for {subject.id} did not return an interval")
        a, b = lo(x), hi(x)
    if mpmath.isnan(a) or mpmath.isnan(b):
        raise EnclosureError(f"the enclosure for {subject.id} is not finite at {dps} digits")
    return a, b


# ---- Eq. 1 and the companion's KL statistic: fimtheory.claims_eq1 -------------------------
#
# λ_max(diag(q) − qqᵀ) for q₁ > q₂ > 0 is the unique root in (q₂, q₁) of the secular function
# f(λ) = 1 − Σ q_i²/(q_i − λ), which decreases there; g(λ) = (q₁ − λ)f(λ) has its sign. The mp
# root λ* is enclosed by evaluating g in interval arithmetic at the two points λ*(1 ∓ 10^(10−dps)):
# g > 0 at the left one and g < 0 at the right one prove the root lies between (a side that
# would cross the pole q₂ or q₁ is replaced by that pole, which bounds the root anyway).


def iv_secular_top(q1, head, rest, lam_mp):
    """Enclosure of λ_max(diag(q) − qqᵀ) from intervals q₁, head = q₁(1 − q₁), rest = (q₂, …)
    (q₁ > q₂ > 0 for the exact values) and an mp approximation ``lam_mp`` of the root."""

    def g(x):
        x = iv.mpf(x)
        return head - x - (q1 - x) * sum((r * r / (r - x) for r in rest), iv.mpf(0))

    rel = mpmath.mpf(10) ** (10 - mpmath.mp.dps)
    a, b = lam_mp * (1 - rel), lam_mp * (1 + rel)
    if a > hi(rest[0]):
        ga = g(a)
        if not lo(ga) > 0:
            raise EnclosureError("the secular function's sign left of the root is not certain")
        left = a
    else:
        left = lo(rest[0])
    if b < lo(q1):
        gb = g(b)
        if not hi(gb) < 0:
            raise EnclosureError("the secular function's sign right of the root is not certain")
        right = b
    else:
        right = hi(q1)
    return iv.mpf([left, right])


def _eq1_lambda_m(p):
    """λ_max(M(p)) of the exact float vector p."""
    from fimtheory import claims_eq1 as ce

    x = np.sort(np.asarray(p, dtype=float))[::-1]
    pos = x[x > 0]
    q1 = ivf(float(pos[0]))
    head = q1 * (1 - q1)
    if pos.size == 1:
        return head if x.size == 1 else iv_max([head, iv.mpf(0)])
    if pos[0] == pos[1]:
        return q1
    return iv_secular_top(q1, head, [ivf(float(v)) for v in pos[1:]], ce.mp_lambda_max_m(np.asarray(p, dtype=float)))


def _eq1_renormalised(a):
    """(q intervals, head, λ_max(M(q))) for q = a/Σa exactly (a positive, descending)."""
    from fimtheory import claims_eq1 as ce

    xs = [ivf(float(v)) for v in a]
    total = sum(xs, iv.mpf(0))
    q = [x / total for x in xs]
    head = q[0] * (sum(xs[1:], iv.mpf(0)) / total)
    if a[0] == a[1]:
        return q, head, q[0]
    _, _, lam_mp = ce.mp_renormalised(a)
    return q, head, iv_secular_top(q[0], head, q[1:], lam_mp)


def _eq1_hat(q, head):
    h = -sum((x * iv.log(x) for x in q), iv.mpf(0))
    return head * (1 + h / iv.log(iv.mpf(len(q))) / 2)


def _eq1_require(inst, *, distribution: bool):
    from fimtheory import claims_eq1 as ce

    if distribution and not ce._is_distribution(inst.p):
        raise HypothesisFails("p does not sum to 1 to 64·n·eps")
    a = ce.top_entries(inst)
    if a.size < 2:
        raise HypothesisFails("the top-k distribution has fewer than 2 positive entries")
    return a


def _m_eq1_m_bounds(inst):
    from fimtheory import claims_eq1 as ce

    if not ce._is_distribution(inst.p):
        raise HypothesisFails("p does not sum to 1 to 64·n·eps")
    x = np.sort(inst.p)[::-1]
    xs = [ivf(float(v)) for v in x]
    p1 = xs[0]
    if len(xs) == 1:  # M(p) is the 1×1 matrix p₁(1 − p₁): λ = L* = U*, the margin is 0
        return iv.mpf(0)
    p2 = xs[1]
    a, b, c = p1 * (1 - p1), p2 * (1 - p2), -p1 * p2
    mu2 = (a + b) / 2 + iv.sqrt(iv_sq((a - b) / 2) + iv_sq(c))
    lows, ups = [p2, mu2], [p1]
    if sum((Fraction(float(v)) for v in x), Fraction(0)) <= 1:
        ups.append(sum((v * (1 - v) for v in xs), iv.mpf(0)))
    pos = [ivf(float(v)) for v in x if v > 0]
    m = len(pos)
    if m >= 2:
        s = sum(pos[1:], iv.mpf(0))
        total = p1 + s
        n1 = m - 1
        lows.append((p1 * (1 - p1) + 2 * p1 * s / n1 + s * (1 - s) / n1**2) * n1 / m)
        ups.append(iv_max([v * (1 + total - 2 * v) for v in pos]))
    lower = iv_max(lows)
    upper = iv_max([lower, iv_min(ups)])
    lam = _eq1_lambda_m(inst.p)
    if hi(upper) <= 0:
        return iv.mpf(0)
    return iv_div(iv_min([lam - lower, upper - lam]), upper, "U*")


def _eq1_ratio(inst):
    a = _eq1_require(inst, distribution=False)
    q, head, lam = _eq1_renormalised(a)
    return _eq1_hat(q, head) / lam, len(q)


def _m_eq1_ratio(inst):
    r, m = _eq1_ratio(inst)
    return iv_min([r - iv.mpf(0.5), iv.mpf(3) / 2 * (1 - iv.mpf(1) / m) - r])


def _m_eq1_within(tol: float):
    def fn(inst):
        r, _ = _eq1_ratio(inst)
        return iv.mpf(tol) - iv_abs(r - 1)

    return fn


def _m_eq1_full(inst):
    from fimtheory import claims_eq1 as ce

    a = _eq1_require(inst, distribution=True)
    q, head, _ = _eq1_renormalised(a)
    r = _eq1_hat(q, head) / _eq1_lambda_m(inst.p)
    return iv.mpf(ce.WITHIN_50) - iv_abs(r - 1)


def _m_eq1_empirical(inst):
    from fimtheory import claims_eq1 as ce

    a = _eq1_require(inst, distribution=True)
    q, head, _ = _eq1_renormalised(a)
    xs = [ivf(float(v)) for v in inst.p]
    emp = iv_sq(1 - xs[inst.y]) + sum((iv_sq(v) for i, v in enumerate(xs) if i != inst.y), iv.mpf(0))
    if not lo(emp) > 0:
        raise HypothesisFails("‖e_y − p‖² = 0")
    r = _eq1_hat(q, head) / emp
    return iv.log(iv.mpf(ce.EMPIRICAL_FACTOR)) - iv_abs(iv.log(r))


def iv_padded_kl(a, b, eps):
    """Σ â_i log((â_i + ε)/(b̂_i + ε)) with â, b̂ the exact renormalisations of float vectors."""
    x = [ivf(float(v)) for v in a]
    y = [ivf(float(v)) for v in b]
    sx, sy, e = sum(x, iv.mpf(0)), sum(y, iv.mpf(0)), ivf(float(eps))
    return sum(((u / sx) * iv.log((u / sx + e) / (v / sy + e)) for u, v in zip(x, y)), iv.mpf(0))


def _sorted_kl(inst, eps):
    """The companion's statistic; exactly 0 when the sorted padded vectors are equal floats
    (every logarithm is log 1)."""
    from fimtheory import claims_eq1 as ce

    a, b = ce.sorted_padded(inst.p, inst.q, eps)
    if np.array_equal(a, b):
        return iv.mpf(0)
    return iv_padded_kl(a, b, eps)


def _m_kl_sorted(inst):
    if inst.p.shape != inst.q.shape:
        raise HypothesisFails("p and q are not over the same tokens")
    return iv_padded_kl(inst.p, inst.q, inst.eps) - _sorted_kl(inst, inst.eps)


def _m_kl_zero(inst):
    from fimtheory import claims_eq1 as ce

    if inst.p.shape != inst.q.shape:
        raise HypothesisFails("p and q are not over the same tokens")
    if not ce.distributions_differ(inst.p, inst.q):
        raise HypothesisFails("the two distributions are equal")
    return _sorted_kl(inst, inst.eps)


def _m_kl_nonnegative(inst):
    if inst.p.shape != inst.q.shape:
        raise HypothesisFails("p and q are not over the same tokens")
    return _sorted_kl(inst, inst.eps)


def _m_kl_eps(inst):
    from fimtheory import claims_eq1 as ce

    s1, s2 = _sorted_kl(inst, inst.eps), _sorted_kl(inst, inst.eps_alt)
    return iv.mpf(ce.EPS_RTOL) * iv_max([iv_abs(s1), iv_abs(s2)]) - iv_abs(s1 - s2)


ENCLOSURES.update(
    {
        "EQ1-M-BOUNDS": _m_eq1_m_bounds,
        "EQ1-RATIO": _m_eq1_ratio,
        "EQ1-RATIO-within-10pct": _m_eq1_within(0.10),  # claims_eq1.WITHIN_10
        "EQ1-RATIO-within-25pct": _m_eq1_within(0.25),  # claims_eq1.WITHIN_25
        "EQ1-FULL-within-50pct": _m_eq1_full,
        "EQ1-EMPIRICAL-within-10x": _m_eq1_empirical,
        "KL-SORTED": _m_kl_sorted,
        "KL-zero-iff-equal": _m_kl_zero,
        "KL-nonnegative": _m_kl_nonnegative,
        "KL-eps-insensitive": _m_kl_eps,
    }
)
