"""The raw-tuple paths of fimtheory.highprec give mpmath's own numbers bit for bit, at every precision:
eigsy (fimtheory.highprec_eigsy, eigenvalues and eigenvectors) on matrices of every structure the
claims meet, mp_eigh / eigenvalue_enclosures through it against the mpmath.eigsy path, and
mp_matmul against mpmath's matrix product."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from fimtheory import highprec as H
from fimtheory import highprec_eigsy


def _cases():
    rng = np.random.default_rng(20261201)
    out = []
    for n in (2, 3, 4, 5, 7, 9):
        B = rng.standard_normal((n, n))
        Q, _ = np.linalg.qr(B)
        out += [
            ("symmetric", B + B.T),
            ("psd", B @ B.T),
            ("diagonal", np.diag(rng.standard_normal(n))),
            ("rank one", np.outer(B[:, 0], B[:, 0])),
            ("clustered", Q @ np.diag(np.r_[1.0, 1.0 + 1e-12, np.arange(n - 2.0)]) @ Q.T),
            ("graded", np.diag(np.logspace(-8, 8, n)) + 1e-3 * (B + B.T)),
            ("zero column", np.pad(B[:-1, :-1] @ B[:-1, :-1].T, ((0, 1), (0, 1)))),
        ]
    out.append(("identity", np.eye(4)))
    out.append(("tridiagonal", np.diag(np.ones(5)) + np.diag(np.full(4, 0.5), 1) + np.diag(np.full(4, 0.5), -1)))
    return out


CASES = _cases()


def _raw(m):
    return [[m[i, j]._mpf_ for j in range(m.cols)] for i in range(m.rows)]


@pytest.mark.parametrize("dps", [20, 50, 67, 150])
@pytest.mark.parametrize("name, A", CASES, ids=[f"{c[0]}-{c[1].shape[0]}" for c in CASES])
def test_raw_eigsy_is_mpmath_eigsy_bit_for_bit(name, A, dps):
    A = (A + A.T) / 2
    with H.working_precision(dps):
        m = H.to_mp_symmetric(A)
        w_ref = mpmath.eigsy(m, eigvals_only=True)
        w_ref_v, Q_ref = mpmath.eigsy(m)
        d, none = highprec_eigsy.eigsy_raw(_raw(m), vectors=False, prec=mpmath.mp.prec, dps=mpmath.mp.dps)
        d_v, Q = highprec_eigsy.eigsy_raw(_raw(m), vectors=True, prec=mpmath.mp.prec, dps=mpmath.mp.dps)
    n = m.rows
    assert none is None
    assert d == [w_ref[k]._mpf_ for k in range(n)]
    assert d_v == [w_ref_v[k]._mpf_ for k in range(n)]
    assert d == d_v  # the eigenvalues do not depend on whether the vectors are accumulated
    assert Q == _raw(Q_ref)
    # and the decomposition is one: A Q ≈ Q diag(d) to the working precision
    with H.working_precision(dps):
        Qm = mpmath.matrix([[mpmath.mp.make_mpf(x) for x in row] for row in Q])
        R = m * Qm - Qm * mpmath.diag([mpmath.mp.make_mpf(x) for x in d_v])
        assert mpmath.mnorm(R, 1) <= mpmath.mpf(10) ** (5 - dps) * (1 + mpmath.mnorm(m, 1))


def test_input_array_is_not_modified():
    A = CASES[1][1]
    with H.working_precision(40):
        raw = _raw(H.to_mp_symmetric(A))
        copy = [list(r) for r in raw]
        highprec_eigsy.eigsy_raw(raw, vectors=True, prec=mpmath.mp.prec, dps=40)
    assert raw == copy


@pytest.mark.parametrize("dps", [30, 80])
def test_mp_eigh_equals_the_mpmath_eigsy_path(dps, monkeypatch):
    rng = np.random.default_rng(7)
    B = rng.standard_normal((6, 6))
    A = B @ B.T
    fast = H.mp_eigh(A, dps)
    fast_vecs = fast.eigenvectors
    fast_enc = H.eigenvalue_enclosures(A, dps)
    monkeypatch.setattr(highprec_eigsy, "MATCHES_MPMATH", False)  # forces mpmath.eigsy itself
    ref = H.mp_eigh(A, dps)
    assert [x._mpf_ for x in fast.eigenvalues] == [x._mpf_ for x in ref.eigenvalues]
    assert _raw(fast_vecs) == _raw(ref.eigenvectors)
    assert H.eigenvalue_enclosures(A, dps) == fast_enc


@pytest.mark.parametrize("dps", [20, 64])
@pytest.mark.parametrize("shape", [(3, 3, 3), (4, 2, 5), (1, 6, 1), (6, 1, 2)])
def test_mp_matmul_is_mpmath_product_bit_for_bit(shape, dps):
    rng = np.random.default_rng(sum(shape) + dps)
    r, k, c = shape
    a = rng.standard_normal((r, k)) * np.logspace(-30, 30, k)
    a[0, 0] = 0.0
    b = rng.standard_normal((k, c))
    with H.working_precision(dps):
        A, B = H.mp_matrix(a), H.mp_matrix(b)
        A = A * mpmath.mpf(1) / 3  # entries of the working precision, not just doubles
        ref = A * B
        got = H.mp_matmul(A, B)
        assert (got.rows, got.cols) == (r, c) and _raw(got) == _raw(ref)
        At = A.T
        assert _raw(H.mp_matmul(At, B, transpose_a=True)) == _raw(ref)
        with pytest.raises(ValueError, match="dimensions"):
            H.mp_matmul(mpmath.matrix(2, 3), mpmath.matrix(2, 3))


def test_remembered_decompositions_are_the_computed_ones_and_fresh_objects():
    rng = np.random.default_rng(11)
    B = rng.standard_normal((5, 5))
    A = B + B.T
    H._EIGSY_CACHE.clear()
    first = H.mp_eigh(A, 60)
    vals_then = [x._mpf_ for x in first.eigenvalues]
    vecs = first.eigenvectors  # a full decomposition, remembered
    vecs[0, 0] = 12345  # a caller scribbling on its matrix does not reach the cache
    again = H.mp_eigh(A, 60)
    assert [x._mpf_ for x in again.eigenvalues] == vals_then
    assert again.eigenvectors[0, 0] != 12345
    other = H.mp_eigh(A, 61)  # another precision is another decomposition
    assert len(H._EIGSY_CACHE) == 2 and [x._mpf_ for x in other.eigenvalues] != vals_then
    H._EIGSY_CACHE.clear()
    fresh = H.mp_eigh(A, 60)
    assert _raw(fresh.eigenvectors) == _raw(again.eigenvectors)
    for _ in range(H.EIGSY_CACHE_SIZE + 5):  # bounded
        H._sorted_eigsy(H.mp_matrix(np.diag(rng.standard_normal(2))), False)
    assert len(H._EIGSY_CACHE) == H.EIGSY_CACHE_SIZE


@pytest.mark.parametrize("q", [0, 1, 2, 3, 4, 5, 8])
def test_mp_matpow_is_mpmath_power_bit_for_bit(q):
    rng = np.random.default_rng(q)
    B = rng.standard_normal((4, 4))
    with H.working_precision(40):
        K = H.mp_matrix(B @ B.T) / 7  # entries rounded to the working precision
        assert _raw(H.mp_matpow(K, q)) == _raw(K**q)
    with pytest.raises(ValueError):
        H.mp_matpow(K, -1)


@pytest.mark.parametrize("dps", [None, 20, 100])
def test_mp_matrix_entries_are_mpmath_mpf_of_each_double(dps):
    a = np.array([[0.1, -2.5e-300, 5e-324], [np.finfo(float).max, 0.0, -0.0], [1 / 3, np.inf, -7.0]])
    with H.working_precision(dps) if dps else mpmath.workprec(53):
        m = H.mp_matrix(a)
        ref = [[mpmath.mpf(float(x)) for x in row] for row in a]
        assert _raw(m) == [[x._mpf_ for x in row] for row in ref]


def test_raw_entries_and_matrix_from_raw_are_mpmath_indexing():
    with H.working_precision(30):
        m = mpmath.matrix([[1, 0, mpmath.mpf(1) / 3], [0, 0, -2]])
        assert H._raw_entries(m) == [[m[i, j]._mpf_ for j in range(3)] for i in range(2)]
        back = H._matrix_from_raw(2, 3, H._raw_entries(m))
        assert back == m and back.tolist() == m.tolist()
        assert H._raw_entries(mpmath.matrix([[mpmath.mpc(1, 2)]])) is None  # complex: mpmath's own path


@pytest.mark.parametrize("dps", [30, 60])
def test_eq1_secular_root_raw_loop_is_the_mpf_loop_bit_for_bit(dps):
    from fimtheory import claims_eq1

    rng = np.random.default_rng(dps)
    with H.working_precision(dps):
        for trial in range(12):
            p = np.sort(rng.dirichlet(np.ones(2 + trial % 5)))[::-1]
            if trial % 3 == 0:
                p[1] = p[1] * 0.999999  # a close second entry
            q = [mpmath.mpf(float(x)) for x in p]
            head = q[0] * (1 - q[0])
            for guess in (None, float(p[0] * 0.99), float((p[0] + p[1]) / 2)):
                got = claims_eq1.mp_secular_root(q[0], head, q[1:], guess)
                ref = claims_eq1._mp_secular_root_mpf(q[0], head, q[1:], guess)
                assert got._mpf_ == ref._mpf_, (trial, guess)
