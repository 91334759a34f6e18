"""fimtheory.monitor: the threshold partition on every kind of float64 and the streaming λ_max."""

from __future__ import annotations

import numpy as np
import pytest

from fimtheory.errors import InputError
from fimtheory.monitor import ProductPartition, StreamingLambdaMax, ThresholdPartition, calibration_threshold

EPS = np.finfo(np.float64).eps
MAX = np.finfo(np.float64).max
SUB = np.nextafter(0.0, 1.0)  # smallest subnormal

THRESHOLDS = {
    "none": [],
    "zero": [0.0],
    "minus zero": [-0.0],
    "one": [1.0],
    "mixed": [-1e300, -1.0, -SUB, 0.0, SUB, 1e-310, 1.0, 1.5, 1e300],
    "adjacent": [1.0, np.nextafter(1.0, 2.0), np.nextafter(np.nextafter(1.0, 2.0), 2.0)],
    "extremes": [-MAX, MAX],
}


def _probe_values(t):
    vals = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, SUB, -SUB, 2.2250738585072014e-308, MAX, -MAX, 1.0, -1.0]
    for x in t:
        vals += [x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf), -x]
    return np.array(vals, dtype=np.float64)


@pytest.mark.parametrize("name", list(THRESHOLDS))
def test_every_value_in_exactly_one_cell(name):
    p = ThresholdPartition(THRESHOLDS[name])
    assert p.n_cells == len(THRESHOLDS[name]) + 2 and p.nan_cell == p.n_cells - 1
    vals = _probe_values(p.thresholds)
    for s in vals:
        owners = [k for k in range(p.n_cells) if p.contains(k, s)]
        assert len(owners) == 1, (s, owners)
        assert p.cell(s) == owners[0], s
        assert isinstance(p.cell(s), int)
    vec = p.cell(vals)
    assert vec.dtype == np.int64 and vec.tolist() == [p.cell(s) for s in vals]
    assert p.cell(vals.reshape(-1, 1)).shape == (len(vals), 1)
    # monotone in σ, NaN in the NaN cell, top cell holds +inf, cell 0 holds −inf
    ordered = np.sort(vals[~np.isnan(vals)])
    assert np.all(np.diff(p.cell(ordered)) >= 0)
    assert p.cell(np.nan) == p.nan_cell
    assert p.cell(np.inf) == p.nan_cell - 1 and p.contains(p.nan_cell - 1, np.inf)
    assert p.cell(-np.inf) == 0


def test_threshold_boundaries_with_adjacent_floats():
    p = ThresholdPartition([1.0])
    below, above = np.nextafter(1.0, 0.0), np.nextafter(1.0, 2.0)
    assert (p.cell(below), p.cell(1.0), p.cell(above)) == (0, 1, 1)  # [τ0, τ1) is half-open
    q = ThresholdPartition([0.0])
    assert p.cell(-0.0) == q.cell(-0.0) - 1 == 0
    assert q.cell(-0.0) == q.cell(0.0) == 1 and q.cell(-SUB) == 0 and q.cell(SUB) == 1
    # −0.0 as threshold behaves exactly like +0.0
    r = ThresholdPartition([-0.0])
    assert [r.cell(x) for x in (-SUB, -0.0, 0.0, SUB)] == [0, 1, 1, 1]
    assert r.bounds(1) == (0.0, np.inf, True) and r.bounds(0) == (-np.inf, 0.0, False)


@pytest.mark.parametrize(
    ("thresholds", "match"),
    [
        ([2.0, 1.0], r"strictly increasing: τ\[0\] = (np\.float64\()?2\.0\)? >= τ\[1\] = (np\.float64\()?1\.0"),
        ([1.0, 1.0], r"strictly increasing: τ\[0\] = (np\.float64\()?1\.0\)? >= τ\[1\] = (np\.float64\()?1\.0"),
        ([0.0, -0.0], r"strictly increasing"),
        ([0.0, np.nan], r"must be finite .*nan"),
        ([np.inf], r"must be finite \(±inf are implicit\), got \[inf\]"),
        ([-np.inf, 0.0], r"must be finite"),
        ([[0.0, 1.0]], r"must be 1-D, got shape \(1, 2\)"),
        (1.0, r"must be 1-D, got shape \(\)"),
        (["a", "b"], r"real numbers, got dtype <U1"),
        ([True, False], r"got dtype bool"),
        ([1j], r"got dtype complex128"),
    ],
    ids=["unsorted", "repeated", "±0 repeated", "NaN", "inf", "-inf", "2-D", "0-D", "strings", "bool", "complex"],
)
def test_bad_thresholds_raise_naming_the_problem(thresholds, match):
    with pytest.raises(InputError, match=match):
        ThresholdPartition(thresholds)


def test_bounds_index_validation():
    p = ThresholdPartition([1.0])
    with pytest.raises(InputError, match=r"cell index must be in 0\.\.1, got 2"):
        p.bounds(2)


@pytest.mark.parametrize("bad", [None, "x"])
def test_cell_rejects_non_numbers(bad):
    with pytest.raises(InputError):
        ThresholdPartition([1.0]).cell(bad)


def test_product_partition():
    a, b = ThresholdPartition([0.0, 1.0]), ThresholdPartition([])
    pp = ProductPartition([a, b])
    vals = _probe_values([0.0, 1.0])
    for x in vals:
        for y in vals[:6]:
            assert pp.cell([x, y]) == (a.cell(x), b.cell(y))
    with pytest.raises(InputError, match=r"expected 2 statistics, got shape \(3,\)"):
        pp.cell([1.0, 2.0, 3.0])
    with pytest.raises(InputError, match=r"one or more ThresholdPartition"):
        ProductPartition([])
    with pytest.raises(InputError, match=r"one or more ThresholdPartition"):
        ProductPartition([a, [0.0]])


@pytest.mark.parametrize(("q", "expected"), [(0.0, 1.0), (1.0, 4.0), (0.5, 2.5), (0.9, 3.7)])
def test_calibration_threshold(q, expected):
    assert calibration_threshold([4.0, 1.0, 3.0, 2.0], q) == pytest.approx(expected, rel=4 * EPS, abs=0)


_r = np.random.default_rng(9)
_v = _r.standard_normal(4)
STREAMS = {
    "random n>P": _r.standard_normal((15, 3)),
    "random n<P": _r.standard_normal((5, 9)),
    "duplicate rows": np.vstack([_v, _v, _v, 2 * _v]),
    "zeros then data": np.vstack([np.zeros((3, 4)), _r.standard_normal((4, 4))]),
    "P = 1": _r.standard_normal((8, 1)),
    "growing scale": _r.standard_normal((10, 3)) * np.logspace(-6, 6, 10)[:, None],
    "tiny 1e-150": 1e-150 * _r.standard_normal((6, 3)),
    "huge 1e150": 1e150 * _r.standard_normal((6, 3)),
    # the top Gram eigenvector is antisymmetric in two rows ±e2 that the start vector weights
    # equally: found by a randomized search over structured streams
    "antithetic pair": np.array(
        [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5], [0.0, -1.0, 0.0]]
    ),
}


def _check_stream(G, window):
    s = StreamingLambdaMax(G.shape[1], window=window)
    assert np.isnan(s.value)
    for t in range(G.shape[0]):
        got = s.push(G[t])
        W = G[: t + 1] if window is None else G[max(0, t + 1 - window) : t + 1]
        K = W @ W.T / W.shape[0]
        ref = np.linalg.eigvalsh(0.5 * (K + K.T))[-1]
        scale = max(float(np.max(np.abs(K))) * W.shape[0], np.finfo(float).tiny)
        assert abs(got - ref) <= 1e-9 * scale + 64 * W.shape[0] * EPS * scale, (t, got, ref)
        assert got == s.value


def _xfail(reason):
    return pytest.mark.xfail(strict=True, reason="BUG: " + reason)


# Fixed: warm start ⟂ top Gram eigenvector (antithetic pair) and under/overflow at 1e∓150.
_STREAM_BUGS: dict = {}


@pytest.mark.parametrize(
    ("name", "window"),
    [
        pytest.param(n, w, marks=_xfail(_STREAM_BUGS[n, w])) if (n, w) in _STREAM_BUGS else (n, w)
        for n in STREAMS
        for w in (None, 1, 3)
    ],
)
def test_streaming_lambda_max_equals_dense_after_every_push(name, window):
    _check_stream(STREAMS[name], window)


def test_streaming_validation():
    s = StreamingLambdaMax(2, window=2)
    assert s.push([3.0, 4.0]) == pytest.approx(25.0, rel=4 * EPS, abs=0)
    with pytest.raises(InputError, match=r"score has length 3, expected 2"):
        s.push([1.0, 2.0, 3.0])
    assert s.value == pytest.approx(25.0, rel=4 * EPS, abs=0), "a rejected push leaves the state alone"


# --------------------------------------------------------------------------------------
# streaming λ_max against a 50-digit reference at every push; clustered and rank-deficient
# --------------------------------------------------------------------------------------

_c = np.random.default_rng(21)
_base = _c.standard_normal((3, 6))
REFERENCE_STREAMS = {
    # rows from a 2-dimensional space: the Gram matrix has rank 2 from the third push on
    "rank-deficient (rank 2)": _c.standard_normal((12, 2)) @ _c.standard_normal((2, 6)),
    # the top two Gram eigenvalues agree to ~1e-8 relative: a clustered top
    "clustered top": np.vstack([_base[0], _base[0] @ np.linalg.qr(_c.standard_normal((6, 6)))[0]] * 3)
    + 1e-9 * _c.standard_normal((6, 6)),
    "repeated rows": np.vstack([_base] * 4),
    "orthogonal unit rows": np.eye(6),
}


@pytest.mark.parametrize("name", list(REFERENCE_STREAMS))
@pytest.mark.parametrize("window", [None, 4])
def test_streaming_lambda_max_against_mp_after_every_push(name, window):
    from fimtheory.highprec import mp_eigh, working_precision

    G = REFERENCE_STREAMS[name]
    s = StreamingLambdaMax(G.shape[1], window=window)
    for t in range(G.shape[0]):
        got = s.push(G[t])
        W = G[: t + 1] if window is None else G[max(0, t + 1 - window) : t + 1]
        with working_precision(50):
            ref = float(mp_eigh(W @ W.T / W.shape[0], 50).lambda_max)
        # residual-checked Lanczos (tol 1e-10) or dense: within tol·λ plus rounding of the Gram entries
        assert abs(got - ref) <= (s.tol + 64 * W.shape[0] * EPS) * ref, (t, got, ref)


@pytest.mark.parametrize("tol", [1.0, 2.5, float("nan"), float("inf"), "1e-10", True, None])
def test_streaming_rejects_bad_tol(tol):
    with pytest.raises(InputError, match=r"tol must be a finite number < 1"):
        StreamingLambdaMax(2, tol=tol)


def test_streaming_refuses_overflowing_scores_and_keeps_its_state():
    s = StreamingLambdaMax(2)
    first = s.push([3.0, 4.0])
    with pytest.raises(InputError, match=r"score inner products overflow float64"):
        s.push([1e160, 1e160])
    assert s.value == first and len(s._scores) == 1
    assert s.push([0.0, 1.0]) == pytest.approx(
        np.linalg.eigvalsh(np.array([[25.0, 4.0], [4.0, 1.0]]) / 2)[-1], rel=1e-12
    )
