"""fimtheory.highprec against mpmath's own routines, bit for bit where the code claims it: the
``mpmath.eigsy`` fallback, the LRU of decompositions, the raw-entry readers/writers on matrices
without mpmath's sparse dict, the exact float conversion at any precision, the lazy
eigenvectors. Explicit cases only (no Hypothesis), so the instances are the same in every process.
"""

from __future__ import annotations

import contextlib
import types

import mpmath
import numpy as np
import pytest

from fimtheory import highprec as H
from fimtheory import highprec_eigsy


def _raw(m):
    return [[m[i, j]._mpf_ for j in range(m.cols)] for i in range(m.rows)]


@contextlib.contextmanager
def _rounding(rnd):
    """mpmath's rounding mode (``mp._prec_rounding[1]``: what every mpf operation reads)."""
    old = mpmath.mp._prec_rounding[1]
    mpmath.mp._prec_rounding[1] = rnd
    try:
        yield
    finally:
        mpmath.mp._prec_rounding[1] = old


def _sym(n, seed):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, n))
    return b + b.T


def _ref_sorted(m, vectors):
    """mpmath.eigsy, columns reordered by descending eigenvalue (a stable sort of the indices)."""
    if not vectors:
        w = mpmath.eigsy(m, eigvals_only=True)
        return sorted([w[k] for k in range(len(w))], reverse=True)
    w, V = mpmath.eigsy(m)
    order = sorted(range(len(w)), key=lambda k: -w[k])
    return [w[k] for k in order], [[V[r, k] for k in order] for r in range(m.rows)]


# ---------------------------------------------------------------------------- mpmath.eigsy fallback


@pytest.mark.parametrize("n", [2, 3, 5])
def test_sorted_eigsy_mpmath_is_mpmath_eigsy_sorted(n):
    with H.working_precision(40):
        m = H.mp_matrix(_sym(n, n))
        w, none = H._sorted_eigsy_mpmath(m, False)
        assert none is None
        assert [x._mpf_ for x in w] == [x._mpf_ for x in _ref_sorted(m, False)]
        w2, V = H._sorted_eigsy_mpmath(m, True)
        rw, rV = _ref_sorted(m, True)
        assert [x._mpf_ for x in w2] == [x._mpf_ for x in rw]
        assert isinstance(V, mpmath.matrix) and (V.rows, V.cols) == (n, n)
        assert _raw(V) == [[x._mpf_ for x in row] for row in rV]
        assert all(w2[k] >= w2[k + 1] for k in range(n - 1))


def test_mp_eigh_through_the_fallback_has_vectors(monkeypatch):
    monkeypatch.setattr(highprec_eigsy, "MATCHES_MPMATH", False)
    A = _sym(3, 1)
    e = H.mp_eigh(A, 40, vectors=True)
    assert e._vectors is not None
    with H.working_precision(40):
        rw, rV = _ref_sorted(H.mp_matrix(A), True)
    assert _raw(e.eigenvectors) == [[x._mpf_ for x in row] for row in rV]
    lazy = H.mp_eigh(A, 40)
    assert lazy._vectors is None
    assert _raw(lazy.eigenvectors) == _raw(e.eigenvectors)


def test_complex_entries_and_another_mpmath_take_the_mpmath_path(monkeypatch):
    calls = []

    def spy(m, vectors):
        calls.append(vectors)
        return ["fallback"], None

    monkeypatch.setattr(H, "_sorted_eigsy_mpmath", spy)
    with H.working_precision(30):
        m = mpmath.matrix([[2, mpmath.mpc(0, 1)], [mpmath.mpc(0, -1), 1]])
        assert H._sorted_eigsy(m, True) == (["fallback"], None) and calls == [True]
        real = H.mp_matrix(_sym(2, 0))
        assert H._sorted_eigsy(real, False)[0] != ["fallback"] and calls == [True]
        monkeypatch.setattr(highprec_eigsy, "MATCHES_MPMATH", False)
        assert H._sorted_eigsy(real, False) == (["fallback"], None) and calls == [True, False]


# ---------------------------------------------------------------------------- the LRU


@pytest.fixture
def empty_cache():
    H._EIGSY_CACHE.clear()
    yield
    H._EIGSY_CACHE.clear()


def test_eigenvalues_only_entry_does_not_answer_a_vectors_request(empty_cache):
    A = _sym(4, 2)
    with H.working_precision(40):
        m = H.mp_matrix(A)
        w, none = H._sorted_eigsy(m, False)
        assert none is None and len(H._EIGSY_CACHE) == 1
        (entry,) = H._EIGSY_CACHE.values()
        assert entry[1] is None
        w2, V = H._sorted_eigsy(m, True)
        assert V is not None and (V.rows, V.cols) == (4, 4)
        rw, rV = _ref_sorted(m, True)
        assert _raw(V) == [[x._mpf_ for x in row] for row in rV]
        assert [x._mpf_ for x in w] == [x._mpf_ for x in w2] == [x._mpf_ for x in rw]
        # the full entry replaced the eigenvalues-only one and now answers both requests
        assert len(H._EIGSY_CACHE) == 1 and next(iter(H._EIGSY_CACHE.values()))[1] is not None
        w3, none3 = H._sorted_eigsy(m, False)
        assert none3 is None and [x._mpf_ for x in w3] == [x._mpf_ for x in rw]


def test_cache_hits_return_fresh_objects(empty_cache):
    A = _sym(3, 3)
    with H.working_precision(40):
        m = H.mp_matrix(A)
        w1, V1 = H._sorted_eigsy(m, True)
        w1.append("scribble")
        V1[0, 0] = 99
        w2, V2 = H._sorted_eigsy(m, True)
        assert len(w2) == 3 and V2[0, 0] != 99
        assert w2 is not w1 and V2 is not V1
        w3, _ = H._sorted_eigsy(m, True)
        assert w3 is not w2
        rw, rV = _ref_sorted(m, True)
        assert _raw(V2) == [[x._mpf_ for x in row] for row in rV]


def test_cache_key_separates_precision_rounding_and_entries(empty_cache):
    A = _sym(3, 4)
    with H.working_precision(40):
        m = H.mp_matrix(A)
        w40, _ = H._sorted_eigsy(m, False)
        m2 = m.copy()
        m2[2, 2] = m2[2, 2] + 1
        w_other, _ = H._sorted_eigsy(m2, False)
        assert [x._mpf_ for x in w_other] == [x._mpf_ for x in _ref_sorted(m2, False)]
        with _rounding("u"):
            w_up, _ = H._sorted_eigsy(m, False)
            assert [x._mpf_ for x in w_up] == [x._mpf_ for x in _ref_sorted(m, False)]
        assert [x._mpf_ for x in w_up] != [x._mpf_ for x in w40]
        assert len(H._EIGSY_CACHE) == 3
    with H.working_precision(41):
        w41, _ = H._sorted_eigsy(m, False)
        assert [x._mpf_ for x in w41] == [x._mpf_ for x in _ref_sorted(m, False)]
    assert len(H._EIGSY_CACHE) == 4
    assert [x._mpf_ for x in w41] != [x._mpf_ for x in w40]


def test_cache_key_separates_shapes(empty_cache):
    # the same entries row by row, another shape: a 1×4 and a 2×2 give other keys (m.rows)
    with H.working_precision(30):
        a = H.mp_matrix(np.array([[1.0, 0.5], [0.5, 2.0]]))
        H._sorted_eigsy(a, False)
        b = H.mp_matrix(np.diag([1.0, 0.5, 0.5, 2.0]))
        wb, _ = H._sorted_eigsy(b, False)
        assert len(wb) == 4 and len(H._EIGSY_CACHE) == 2


def test_cache_is_least_recently_used(monkeypatch, empty_cache):
    monkeypatch.setattr(H, "EIGSY_CACHE_SIZE", 3)
    with H.working_precision(30):
        ms = [H.mp_matrix(np.diag([float(k), -1.0])) for k in range(5)]
        calls = []
        real = highprec_eigsy.eigsy_raw

        def counting(*args, **kw):
            calls.append(1)
            return real(*args, **kw)

        monkeypatch.setattr(highprec_eigsy, "eigsy_raw", counting)
        for m in ms[:3]:
            H._sorted_eigsy(m, False)
        assert len(calls) == 3
        H._sorted_eigsy(ms[0], False)  # a hit: ms[0] becomes the most recently used
        assert len(calls) == 3
        H._sorted_eigsy(ms[3], False)  # evicts ms[1], the least recently used
        assert len(H._EIGSY_CACHE) == 3
        H._sorted_eigsy(ms[0], False)
        H._sorted_eigsy(ms[2], False)
        assert len(calls) == 4
        H._sorted_eigsy(ms[1], False)  # was evicted: computed again
        assert len(calls) == 5
        assert len(H._EIGSY_CACHE) == 3
        # a computed full decomposition becomes the most recent entry too
        H._sorted_eigsy(ms[4], True)
        assert list(H._EIGSY_CACHE.values())[-1][1] is not None


def test_cache_size_is_bounded_at_its_size(empty_cache):
    rng = np.random.default_rng(5)
    with H.working_precision(20):
        for _ in range(H.EIGSY_CACHE_SIZE + 2):
            H._sorted_eigsy(H.mp_matrix(np.diag(rng.standard_normal(2))), False)
    assert len(H._EIGSY_CACHE) == H.EIGSY_CACHE_SIZE == 1024


@pytest.mark.parametrize("vectors", [False, True])
def test_sorted_eigsy_is_the_fallback_bit_for_bit(vectors, empty_cache):
    for seed, n in ((7, 2), (8, 4), (9, 6)):
        with H.working_precision(45):
            m = H.mp_matrix(_sym(n, seed))
            w, V = H._sorted_eigsy(m, vectors)
            rw, rV = H._sorted_eigsy_mpmath(m, vectors)
            assert [x._mpf_ for x in w] == [x._mpf_ for x in rw]
            assert all(isinstance(x, mpmath.mpf) for x in w)
            if vectors:
                assert _raw(V) == _raw(rV)
            else:
                assert V is None
            # and again from the cache
            w, V = H._sorted_eigsy(m, vectors)
            assert [x._mpf_ for x in w] == [x._mpf_ for x in rw]
            assert (V is None) is (not vectors)


def test_sorted_eigsy_passes_the_rounding_mode(monkeypatch, empty_cache):
    seen = {}
    real = highprec_eigsy.eigsy_raw

    def spy(raw, *, vectors, prec, dps, rnd):
        seen.update(prec=prec, dps=dps, rnd=rnd, vectors=vectors)
        return real(raw, vectors=vectors, prec=prec, dps=dps, rnd=rnd)

    monkeypatch.setattr(highprec_eigsy, "eigsy_raw", spy)
    with H.working_precision(33):
        H._sorted_eigsy(H.mp_matrix(_sym(3, 10)), True)
    with H.working_precision(33):
        prec = mpmath.mp.prec
    assert seen == {"prec": prec, "dps": 33, "rnd": "n", "vectors": True}


# ---------------------------------------------------------------------------- raw readers/writers


class _DuckMatrix:
    """A matrix without mpmath's sparse dict (what another mpmath might store)."""

    def __init__(self, rows):
        self._rows = rows
        self.rows, self.cols = len(rows), len(rows[0])

    def __getitem__(self, ij):
        return self._rows[ij[0]][ij[1]]


def test_raw_entries_without_the_sparse_dict():
    with H.working_precision(30):
        third = mpmath.mpf(1) / 3
        m = _DuckMatrix([[third, mpmath.mpf(0)], [mpmath.mpf(-2), mpmath.mpf("1e-300")]])
        assert H._raw_entries(m) == [
            [third._mpf_, mpmath.mpf(0)._mpf_],
            [mpmath.mpf(-2)._mpf_, mpmath.mpf("1e-300")._mpf_],
        ]
        assert H._raw_entries(_DuckMatrix([[third, mpmath.mpc(1, 1)]])) is None
        assert H._raw_entries(_DuckMatrix([[mpmath.mpc(1, 1), third]])) is None


def test_raw_entries_of_a_complex_entry_in_the_dict():
    m = mpmath.matrix([[1, 2], [3, mpmath.mpc(0, 1)]])
    assert H._raw_entries(m) is None
    m2 = mpmath.matrix([[mpmath.mpc(0, 1), 2], [3, 4]])
    assert H._raw_entries(m2) is None


def test_raw_entries_of_a_zero_matrix_and_of_rectangles():
    z = mpmath.matrix(2, 3)
    assert H._raw_entries(z) == [[mpmath.libmp.fzero] * 3 for _ in range(2)]
    m = mpmath.matrix([[0, 5, 0]])
    assert H._raw_entries(m) == [[mpmath.libmp.fzero, mpmath.mpf(5)._mpf_, mpmath.libmp.fzero]]


class _PlainMatrix:
    """An mp matrix stand-in storing every entry through __setitem__ (no sparse dict)."""

    def __init__(self, rows, cols):
        self.rows, self.cols = rows, cols
        self.cells = {}

    def __setitem__(self, ij, x):
        self.cells[ij] = x

    def __getitem__(self, ij):
        return self.cells.get(ij, mpmath.mpf(0))


def test_matrix_from_raw_without_the_sparse_dict(monkeypatch):
    proxy = types.SimpleNamespace(matrix=_PlainMatrix, mp=mpmath.mp, libmp=mpmath.libmp)
    monkeypatch.setattr(H, "mpmath", proxy)
    with mpmath.workdps(30):
        third = (mpmath.mpf(1) / 3)._mpf_
        raw = [[third, mpmath.libmp.fzero, mpmath.mpf(-7)._mpf_], [mpmath.libmp.fone, mpmath.mpf(2)._mpf_, third]]
        out = H._matrix_from_raw(2, 3, raw)
    assert isinstance(out, _PlainMatrix) and (out.rows, out.cols) == (2, 3)
    assert set(out.cells) == {(i, j) for i in range(2) for j in range(3)}
    assert [[out.cells[i, j]._mpf_ for j in range(3)] for i in range(2)] == raw
    assert all(isinstance(x, mpmath.mpf) for x in out.cells.values())


def test_matrix_from_raw_stores_only_nonzero_entries_and_mpf():
    with H.working_precision(30):
        third = (mpmath.mpf(1) / 3)._mpf_
        raw = [[third, mpmath.libmp.fzero], [mpmath.libmp.fzero, mpmath.libmp.fone], [mpmath.mpf(-3)._mpf_, third]]
        out = H._matrix_from_raw(3, 2, raw)
        assert (out.rows, out.cols) == (3, 2)
        data = out._matrix__data
        assert set(data) == {(0, 0), (1, 1), (2, 0), (2, 1)}
        assert all(type(x) is mpmath.mpf for x in data.values())
        assert _raw(out) == raw
        ref = mpmath.matrix(3, 2)
        for i in range(3):
            for j in range(2):
                ref[i, j] = mpmath.mp.make_mpf(raw[i][j])
        assert out == ref and out._matrix__data == ref._matrix__data


# ---------------------------------------------------------------------------- conversion, products


@pytest.mark.parametrize("prec, rounding", [(24, "n"), (10, "n"), (24, "u"), (24, "d"), (53, "n"), (200, "n")])
def test_mp_matrix_is_mpf_of_each_double_at_any_precision_and_rounding(prec, rounding):
    a = np.array([[0.1, 1 / 3, -2.5e-300], [np.pi, -np.e, 5e-324]])
    with mpmath.workprec(prec), _rounding(rounding):
        m = H.mp_matrix(a)
        ref = [[mpmath.mpf(float(x))._mpf_ for x in row] for row in a]
    assert _raw(m) == ref
    assert (m.rows, m.cols) == (2, 3)


def test_mp_matrix_of_integer_and_float32_input_is_their_double():
    a = np.array([[1, 2], [3, 2**60 + 1]], dtype=np.int64)
    with H.working_precision(40):
        m = H.mp_matrix(a)
        assert _raw(m) == [[mpmath.mpf(float(x))._mpf_ for x in row] for row in a]
        f = np.array([[np.float32(0.1)]])
        assert H.mp_matrix(f)[0, 0] == mpmath.mpf(float(np.float32(0.1)))


def test_mp_matmul_at_another_rounding_is_mpmaths_product():
    rng = np.random.default_rng(3)
    with H.working_precision(25):
        A, B = H.mp_matrix(rng.standard_normal((3, 4))) / 3, H.mp_matrix(rng.standard_normal((4, 2))) / 7
        for rnd in ("u", "d"):
            with _rounding(rnd):
                assert _raw(H.mp_matmul(A, B)) == _raw(A * B)
                assert _raw(H.mp_matmul(A.T, B, transpose_a=True)) == _raw(A * B)


def test_mp_matpow_refusals_and_identity():
    with H.working_precision(30):
        K = H.mp_matrix(_sym(3, 12))
        for q in (-1, True, 1.0, 2.5):
            with pytest.raises(ValueError, match="only non-negative integer exponents are supported"):
                H.mp_matpow(K, q)
        with pytest.raises(ValueError, match="^only powers of square matrices are defined$"):
            H.mp_matpow(mpmath.matrix(2, 3), 2)
        eye = H.mp_matpow(K, 0)
        assert eye == mpmath.eye(3)
        one = H.mp_matpow(K, 1)
        assert _raw(one) == _raw(K) and one is not K
        for q in (2, 3, 6, 7, 16):
            assert _raw(H.mp_matpow(K / 3, q)) == _raw((K / 3) ** q)


# ---------------------------------------------------------------------------- MpEigen, enclosures


def test_mp_eigen_lazy_vectors_use_their_precision():
    A = _sym(3, 13)
    e = H.mp_eigh(A, 60)
    with H.working_precision(25):  # the caller's precision does not matter
        V = e.eigenvectors
    full = H.mp_eigh(A, 60, vectors=True)
    assert _raw(V) == _raw(full.eigenvectors)
    assert e.eigenvectors is V  # computed once
    with H.working_precision(60):
        col = e.vector(1)
        assert _raw(col) == [[V[i, 1]._mpf_] for i in range(3)]
    assert e.lambda_max is e.eigenvalues[0]
    assert e.gap == e.eigenvalues[0] - e.eigenvalues[1]


def test_mp_eigen_gap_of_a_1x1_is_infinite():
    e = H.mp_eigh(np.array([[3.0]]), 30)
    assert e.gap == mpmath.inf and e.eigenvalues == [3] and e.dps == 30
    assert e.eigenvectors == mpmath.matrix([[1]])


def test_iv_from_mp_is_exact_point_intervals():
    with H.working_precision(40):
        m = mpmath.matrix([[mpmath.mpf(1) / 3, -2], [0, mpmath.mpf("1e-300")]])
        out = H.iv_from_mp(m)
        assert (out.rows, out.cols) == (2, 2)
        for i in range(2):
            for j in range(2):
                assert out[i, j].a == out[i, j].b == m[i, j]


def test_frobenius_upper_bounds_every_member():
    with H.working_precision(30):
        M = mpmath.iv.matrix(2, 2)
        M[0, 0] = mpmath.iv.mpf([-3, 1])
        M[0, 1] = mpmath.iv.mpf([2, 2])
        M[1, 0] = mpmath.iv.mpf([-1, 0.5])
        M[1, 1] = mpmath.iv.mpf([0, 0])
        u = H._frobenius_upper(M)
        assert u >= mpmath.sqrt(14) and u - mpmath.sqrt(14) < mpmath.mpf(10) ** -25


def test_lambda_enclosures_pick_the_extreme_ends():
    A = np.diag([3.0, -1.0, 2.0]) + 1e-3 * _sym(3, 14)
    with mpmath.workdps(100):
        w = sorted(mpmath.eigsy(mpmath.matrix(A.tolist()), eigvals_only=True))
    lo, hi = H.lambda_max_enclosure(A, 40)
    assert lo <= w[-1] <= hi and hi - lo < mpmath.mpf(10) ** -35
    lo, hi = H.lambda_min_enclosure(A, 40)
    assert lo <= w[0] <= hi and hi - lo < mpmath.mpf(10) ** -35


@pytest.mark.parametrize(
    "A",
    [np.diag([2.0, 2.0, 1.0]), np.diag([1.0, 3.0, 3.0, 3.0]), np.diag([-1.0, 0.5, -1.0]), np.eye(3)],
    ids=["top-pair", "top-triple", "bottom-pair", "identity"],
)
def test_repeated_eigenvalues_same_columns_in_both_paths(A, empty_cache):
    # equal eigenvalues: both paths order the columns by a stable descending sort of eigsy's
    # (ascending) output, so the fast path and the fallback agree bit for bit here too
    with H.working_precision(30):
        m = H.mp_matrix(A)
        w, V = H._sorted_eigsy(m, True)
        rw, rV = H._sorted_eigsy_mpmath(m, True)
        assert [x._mpf_ for x in w] == [x._mpf_ for x in rw]
        assert _raw(V) == _raw(rV)
        ref_w, ref_V = _ref_sorted(m, True)
        assert _raw(rV) == [[x._mpf_ for x in row] for row in ref_V]


@pytest.mark.parametrize("A", [np.array([[1 + 2j]]), [[1.0, 2j], [2j, 1.0]], np.array([[1 + 0j]])])
def test_mp_matrix_refuses_complex_input(A):
    # np.asarray(complex, dtype=float) would drop the imaginary part (with only a warning)
    from fimtheory.errors import InputError

    with pytest.raises(InputError, match="^mp_matrix needs real entries, got a complex array$"):
        H.mp_matrix(A)


def test_mp_matrix_converts_like_numpys_float_cast():
    # whatever np.asarray(·, dtype=float) accepts (numeric strings, bools, object arrays) is
    # converted to that double
    for a in (np.array([["0.1", "-1e-300"]]), np.array([[True, False]]), np.array([[1, 0.5]], dtype=object)):
        with H.working_precision(30):
            m = H.mp_matrix(a)
            assert _raw(m) == [[mpmath.mpf(float(x))._mpf_ for x in np.asarray(a, dtype=float)[0]]]
