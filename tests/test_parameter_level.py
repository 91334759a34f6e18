"""Parameter-level Theorem 4.3 (docs/theory.md §3(d)): c2, its checks, the counterexamples and the
restoring hypothesis. See docs/parameter_level.md."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import special

from fimtheory.errors import HypothesesNotMet, InputError, UnknownIdError
from properties import parameter_level as pl

HSET = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
STORED = ("logistic", "softmax", "logistic-mle")


def _instance(model, seed, n=6, d=3, k=3, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if model == "softmax":
        return X, rng.integers(0, k, size=n), rng.normal(size=k * d) * scale
    if model == "logistic":
        return X, rng.integers(0, 2, size=n).astype(float), rng.normal(size=d) * scale
    return X, rng.normal(size=n), rng.normal(size=d) * scale


# --------------------------------------------------------------------------------------
# The pieces and c2 against independent numerics
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", pl.MODELS)
def test_pieces_match_finite_differences(model):
    X, y, th = _instance(model, 1, d=2)
    var = np.random.default_rng(2).random(th.size)
    G, J, Et = pl._glm_pieces(model, X, y if model == "softmax" else y.astype(float), th, var, np.exp)
    eps = 1e-5
    for k in range(th.size):
        e = np.zeros(th.size)
        e[k] = eps
        Gp = pl._glm_pieces(model, X, y, th + e, var, np.exp)[0]
        Gm = pl._glm_pieces(model, X, y, th - e, var, np.exp)[0]
        np.testing.assert_allclose(J[:, :, k], (Gp - Gm) / (2 * eps), atol=1e-9)
    # E[t_i] = Σ_k σ_k² ∂²g_i/∂θ_k², second differences (step 1e-4: truncation ~1e-8)
    h = 1e-4
    t = np.zeros_like(Et)
    for k in range(th.size):
        e = np.zeros(th.size)
        e[k] = h
        t += (
            var[k]
            * (
                pl._glm_pieces(model, X, y, th + e, var, np.exp)[0]
                - 2 * G
                + pl._glm_pieces(model, X, y, th - e, var, np.exp)[0]
            )
            / h**2
        )
    np.testing.assert_allclose(Et, t, atol=1e-6)


@pytest.mark.parametrize(("model", "seed"), [("linear", 3), ("logistic", 3), ("logistic", 7), ("softmax", 3)])
def test_c2_matches_richardson_quadrature(model, seed):
    """Deterministic finite differences in s (Gauss–Legendre, Richardson) agree with c2."""
    d = 2 if model == "softmax" else 3
    k = 2
    X, y, th = _instance(model, seed, d=d, k=k)
    fd = pl.finite_difference_c2(model, X, y, th, 1.0, (0.02, 0.01))
    parts = pl.second_order_parts(model, X, y, th, 1 / 12)
    scale = abs(parts.curvature) + abs(parts.cross) + abs(parts.eigvec)  # c2 may be a near-cancellation
    assert abs(fd["richardson"] - fd["c2"]) <= 1e-5 * scale


@pytest.mark.parametrize(("model", "seed"), [("logistic", 11), ("softmax", 12), ("linear", 13)])
def test_c2_within_monte_carlo_ci(model, seed):
    X, y, th = _instance(model, seed, d=2)
    s = 0.05
    c2 = pl.second_order_coefficient(model, X, y, th, np.full(th.size, s**2 / 12))
    mean, lo, hi = pl.monte_carlo_shift(model, X, y, th, s, draws=20_000, seed=seed)
    slack = 0.02 * abs(c2)  # O(s⁴) remainder, relative ≈ s²·|c4/c2|
    assert lo - slack <= c2 <= hi + slack, (c2, mean, lo, hi)


def test_mp_evaluation_agrees_with_float():
    for model in pl.MODELS:
        X, y, th = _instance(model, 5, d=2)
        cert = pl.second_order_coefficient_mp(model, X, y, th, steps=1.0)
        c2 = pl.second_order_coefficient(model, X, y, th, 1 / 12)
        assert float(cert["c2"]) == pytest.approx(c2, rel=1e-10, abs=1e-14)
        assert float(cert["error_bound"]) < 1e-30


@pytest.mark.skipif(
    importlib.util.find_spec("fimtheory._generated.fim_expansion") is None,
    reason="generated module fimtheory/_generated/fim_expansion.py not present yet",
)
@pytest.mark.parametrize("model", pl.MODELS)
def test_generated_backend_agrees_with_closed_forms(model):
    X, y, th = _instance(model, 21, d=2)
    var = np.random.default_rng(0).random(th.size)
    a = pl.second_order_parts(model, X, y, th, var, backend="closed")
    b = pl.second_order_parts(model, X, y, th, var, backend="generated")
    for key in ("curvature", "cross", "eigvec", "c2"):
        assert getattr(b, key) == pytest.approx(getattr(a, key), rel=1e-9, abs=1e-12)
    from fimtheory import models

    # vᵀ E[½D²F[δ,δ]] v from the generated expected_fim_second_order is the mean term A + B
    M = models.expected_fim_second_order(model, X, y, th, var)
    assert a.v @ M @ a.v == pytest.approx(a.mean_term, rel=1e-9, abs=1e-12)


def test_sr_variances_match_draws():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 5))
    var, mean = pl.sr_variances(w, "sr-int4-sym-channel")
    assert np.max(np.abs(mean)) < 1e-15
    X = np.eye(5)
    theta = w.ravel()
    delta, v2, _ = pl._noise("softmax", X, theta, "sr-int4-sym-channel", 40_000, rng)
    np.testing.assert_allclose(delta.var(axis=0), var.ravel(), rtol=0.05, atol=1e-6)
    np.testing.assert_allclose(v2, var.ravel())


def test_input_errors():
    X, y, th = _instance("logistic", 0)
    with pytest.raises(UnknownIdError):
        pl.second_order_coefficient("probit", X, y, th, 1.0)
    with pytest.raises(InputError):
        pl.second_order_coefficient("logistic", X, y + 2, th, 1.0)
    with pytest.raises(InputError):
        pl.second_order_coefficient("logistic", X, y, th, -np.ones(th.size))
    with pytest.raises(InputError):
        pl.monte_carlo_shift("logistic", X, y, th, "rtn-int4-sym-channel", draws=10)
    with pytest.raises(HypothesesNotMet):  # repeated top eigenvalue: F = I/2
        pl.second_order_coefficient("linear", np.eye(2), np.ones(2), np.zeros(2), 1.0)


# --------------------------------------------------------------------------------------
# Linear-Gaussian: t_i = 0, so c2 = A + C ≥ 0
# --------------------------------------------------------------------------------------

_floats = st.floats(-3, 3, allow_nan=False, allow_infinity=False, width=64)


@HSET
@given(
    n=st.integers(1, 6),
    d=st.integers(1, 4),
    data=st.data(),
)
def test_linear_gaussian_c2_nonnegative(n, d, data):
    X = np.array(data.draw(st.lists(_floats, min_size=n * d, max_size=n * d))).reshape(n, d)
    y = np.array(data.draw(st.lists(_floats, min_size=n, max_size=n)))
    th = np.array(data.draw(st.lists(_floats, min_size=d, max_size=d)))
    var = np.array(data.draw(st.lists(st.floats(0, 1), min_size=d, max_size=d)))
    try:
        s = pl.second_order_parts("linear", X, y, th, var)
    except HypothesesNotMet:
        return
    assert s.cross == 0.0
    assert s.curvature >= 0 and s.eigvec >= 0 and s.c2 >= 0


# --------------------------------------------------------------------------------------
# The stored counterexamples replay
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STORED)
def test_stored_counterexample_replays(name):
    path = pl.counterexample_path(name)
    ce = pl.load_counterexample(path)
    cert = pl.replay_counterexample(path)
    rec = ce["record"]
    assert cert["sign"] == -1
    assert float(cert["c2_hi"]) < 0
    assert cert["c2"] == rec["c2_certificate"]["c2"]
    parts = pl.second_order_parts(ce["model"], ce["X"], ce["y"], ce["theta"], 1 / 12)
    assert parts.c2 == pytest.approx(float(cert["c2"]), rel=1e-10)
    assert parts.cross < 0 < parts.curvature
    # the stored tables: every control-variate 99 % CI is below 0, slope ≈ 2
    for key in ("widrow_table", "sr_table"):
        assert all(r["cv"][2] < 0 for r in rec[key]["rows"])
    assert abs(rec["widrow_table"]["slope_cv"] - 2) < 0.1
    # a fresh Monte Carlo (different seed, fewer draws) agrees
    s = 0.1
    mean, lo, hi = pl.monte_carlo_shift(ce["model"], ce["X"], ce["y"], ce["theta"], s, draws=10_000, seed=123)
    assert hi < 0
    assert lo - 0.02 * abs(parts.c2) * s**2 <= parts.c2 * s**2 <= hi + 0.02 * abs(parts.c2) * s**2


def test_stored_counterexample_records_reproducibility_data():
    for name in STORED:
        rec = json.loads(pl.counterexample_path(name).read_text())
        assert {"seed", "versions", "X", "theta", "y", "c2_certificate", "widrow_table", "sr_table"} <= set(rec)
        assert rec["versions"]["numpy"]


# --------------------------------------------------------------------------------------
# The restoring hypothesis: labels distributed as the model's predictive at θ
# --------------------------------------------------------------------------------------


@st.composite
def glm_instances(draw):
    model = draw(st.sampled_from(["logistic", "softmax"]))
    n = draw(st.integers(1, 6))
    d = draw(st.integers(1, 3))
    k = draw(st.integers(2, 3)) if model == "softmax" else 1
    X = np.array(draw(st.lists(_floats, min_size=n * d, max_size=n * d))).reshape(n, d)
    th = np.array(draw(st.lists(st.floats(-4, 4), min_size=k * d, max_size=k * d)))
    dl = np.array(draw(st.lists(st.floats(-2, 2), min_size=k * d, max_size=k * d)))
    return model, X, th, dl


@HSET
@given(glm_instances())
def test_model_labels_exact_psd_increment(inst):
    """F_π(θ+δ) − F_π(θ) = (1/n)Σ(Δμ⊗x)(Δμ⊗x)ᵀ ⪰ 0 for every δ (not only small, zero-mean)."""
    model, X, th, dl = inst
    Xa, ya, wa = pl.model_label_expansion(model, X, th)
    F0 = pl.weighted_fim(model, Xa, ya, th, wa)
    F1 = pl.weighted_fim(model, Xa, ya, th + dl, wa)
    inc = pl.mean_shift_increment(model, X, th, th + dl)
    scale = max(1.0, np.abs(F0).max(), np.abs(F1).max())
    np.testing.assert_allclose(F1 - F0, inc, atol=1e-13 * scale)
    w0, w1 = np.linalg.eigvalsh(F0)[-1], np.linalg.eigvalsh(F1)[-1]
    assert w1 >= w0 - 1e-13 * scale


@HSET
@given(glm_instances())
def test_model_labels_c2_nonnegative(inst):
    model, X, th, _ = inst
    Xa, ya, wa = pl.model_label_expansion(model, X, th)
    try:
        s = pl.second_order_parts(model, Xa, ya, th, np.full(th.size, 1 / 12), wa)
    except HypothesesNotMet:
        return
    tol = 1e-12 * max(1.0, s.lambda1) * max(1.0, np.abs(X).max()) ** 4
    assert abs(s.cross) <= tol and abs(s.eigvec) <= tol  # B = 0 and DF[δ] = 0
    assert s.c2 >= -tol


@HSET
@given(
    n=st.integers(1, 6),
    d=st.integers(1, 3),
    data=st.data(),
)
def test_logistic_alignment_condition_gives_c2_nonnegative(n, d, data):
    """Every sample on its label's side ((y−p)(1−2p) ≤ 0) ⇒ B ≥ 0 ⇒ c2 ≥ 0."""
    X = np.array(data.draw(st.lists(_floats, min_size=n * d, max_size=n * d))).reshape(n, d)
    th = np.array(data.draw(st.lists(st.floats(-4, 4), min_size=d, max_size=d)))
    y = (special.expit(X @ th) >= 0.5).astype(float)
    try:
        b = pl.alignment_condition("logistic", X, y, th, np.full(d, 1 / 12))
        s = pl.second_order_parts("logistic", X, y, th, np.full(d, 1 / 12))
    except HypothesesNotMet:
        return
    assert np.all(b >= -1e-15)
    assert s.cross >= -1e-15 and s.c2 >= -1e-15


def test_expected_fisher_redrawn_labels_is_not_enough():
    """Labels re-drawn from the *perturbed* model (expected Fisher at θ+δ) at θ = 0:
    c2 = −(1/16n) Σ (xᵀΣx)(vᵀx)² < 0 (σ'''(0) = −1/8), checked by quadrature."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6, 3))
    w, V = np.linalg.eigh(X.T @ X / 24)
    v = V[:, -1]
    pred = -np.sum(((X * X) @ np.full(3, 1 / 12)) * (X @ v) ** 2) / (16 * 6)
    x, wq = np.polynomial.legendre.leggauss(10)
    x, wq = x / 2, wq / 2
    grid = np.stack(np.meshgrid(x, x, x, indexing="ij"), -1).reshape(-1, 3)
    ww = np.prod(np.stack(np.meshgrid(wq, wq, wq, indexing="ij"), -1).reshape(-1, 3), axis=1)
    est = [(ww @ pl.expected_fisher_lambda_max_batch(X, grid * s) - w[-1]) / s**2 for s in (0.2, 0.1)]
    rich = (4 * est[1] - est[0]) / 3
    assert pred < 0
    assert rich == pytest.approx(pred, rel=1e-3)


def test_mle_is_not_enough():
    """At the maximum-likelihood fit (ḡ ≈ 0) c2 < 0 still occurs (stored: param-logistic-mle)."""
    rec = json.loads(pl.counterexample_path("logistic-mle").read_text())
    assert rec["mean_score_norm"] < 1e-6
    assert rec["c2_certificate"]["sign"] == -1


# --------------------------------------------------------------------------------------
# The interval-arithmetic c2 certificate
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["linear", "logistic", "softmax"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_c2_encloses_the_80_digit_value(model, seed):
    """The rigorous enclosure contains the independent mp evaluation (mpmath.eigsy + closed
    forms at 80 digits) and is narrow; the float64 c2 agrees to rounding."""
    import mpmath

    from properties.certify import parse_exact

    rng = np.random.default_rng(100 + seed)
    n, d = 6, 2
    X = rng.standard_normal((n, d))
    theta = rng.standard_normal(3 * d if model == "softmax" else d)
    y = (
        rng.standard_normal(n)
        if model == "linear"
        else (rng.integers(0, 3, n) if model == "softmax" else rng.integers(0, 2, n).astype(float))
    )
    step = 0.5
    cert = pl.second_order_coefficient_iv(model, X, y, theta, step, dps=50)
    ref = pl.second_order_coefficient_mp(model, X, y, theta, steps=step, dps=80)
    assert cert["method"] == "interval"
    with mpmath.workdps(90):
        lo, hi = parse_exact(cert["c2_lo_exact"]), parse_exact(cert["c2_hi_exact"])
        c2 = mpmath.mpf(ref["c2"])
        tol = mpmath.mpf(10) ** -28 * (1 + abs(c2))  # ref["c2"] is a 30-digit string
        assert lo - tol <= c2 <= hi + tol
        assert hi - lo < mpmath.mpf(10) ** -40 * (1 + abs(c2))
    flt = pl.second_order_parts(model, X, y, theta, np.full(theta.size, step**2 / 12)).c2
    assert flt == pytest.approx(float(ref["c2"]), rel=1e-9, abs=1e-14)
    assert cert["sign"] == (-1 if float(cert["c2_hi"]) < 0 else (1 if float(cert["c2_lo"]) > 0 else 0))


def test_interval_c2_refuses_a_repeated_top_eigenvalue():
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(HypothesesNotMet):
        pl.second_order_coefficient_iv("linear", X, np.array([1.0, 1.0]), np.zeros(2), 1.0)


def test_stored_parameter_level_certificates_are_interval_enclosures():
    for name in STORED:
        rec = json.loads(pl.counterexample_path(name).read_text())
        c = rec["c2_certificate"]
        assert c["method"] == "interval" and c["sign"] == -1 and float(c["c2_hi"]) < 0
        assert abs(float(rec["c2_mp"]) - float(c["c2"])) <= 1e-25
