"""The inflation study's mathematics against independent references: stochastic rounding's
per-weight variance against Monte Carlo over the real quantizer, the first-order and
expectation terms against finite differences of a dense closed-form FIM, the Lanczos
eigenvalue against a dense eigh, the last-linear score shortcut against torch.func, and the
skill / coverage / half-width arithmetic on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from fimtheory.errors import InputError  # noqa: E402
from fimtheory.quantize import QuantScheme  # noqa: E402
from torch_checks import monitor_study as S  # noqa: E402
from torch_checks.quantizers import quantize_tensor  # noqa: E402

pytestmark = pytest.mark.torch


# ---------------------------------------------------------------- SR variance


@pytest.mark.parametrize(
    "scheme",
    [
        QuantScheme("sr", 4, "channel", None, True),
        QuantScheme("sr", 3, "group", 8, True),
        QuantScheme("sr", 2, "channel", None, False),
    ],
    ids=["int4-sym-channel", "int3-sym-g8", "int2-asym-channel"],
)
def test_sr_variance_matches_monte_carlo_of_the_quantizer(scheme):
    gen = torch.Generator().manual_seed(11)
    w = torch.randn(4, 16, generator=gen, dtype=torch.float64)
    draws = 4000
    qgen = torch.Generator().manual_seed(12)
    d = torch.stack([quantize_tensor(w, scheme, generator=qgen) - w for _ in range(draws)])
    var = S.sr_variance(w, scheme)
    emp_mean, emp_var = d.mean(0), d.var(0)
    # standard errors of a Bernoulli-scaled two-point law: Var(δ²) ≤ E δ⁴ ≤ s² E δ²
    s = torch.as_tensor(torch_steps(w, scheme))
    se_var = torch.sqrt((s * s * var).clamp_min(0) / draws) + 1e-15
    se_mean = torch.sqrt(var / draws) + 1e-15
    assert float(((emp_mean).abs() / se_mean).max()) < 5.0
    assert float(((emp_var - var).abs() / se_var).max()) < 5.0
    # grid points (the absmax weight of each channel / group) have variance 0
    assert float(var.min()) == 0.0
    assert float((var - s * s / 4).max()) <= 1e-15  # r(1 − r) ≤ 1/4


def torch_steps(w, scheme):
    from torch_checks.quantizers import step_sizes_tensor

    return step_sizes_tensor(w, scheme)


def test_sr_variance_averages_s2_over_6_and_sr_over_rtn_is_sqrt2():
    gen = torch.Generator().manual_seed(3)
    w = torch.rand(256, 512, generator=gen, dtype=torch.float64) * 2 - 1
    sr = QuantScheme("sr", 4, "channel", None, True)
    rtn = QuantScheme("rtn", 4, "channel", None, True)
    s = torch_steps(w, sr)
    ratio = float(S.sr_variance(w, sr).sum() / (s * s).sum())
    assert ratio == pytest.approx(1 / 6, rel=0.01)  # uniform r: E r(1 − r) = 1/6
    d_sr = quantize_tensor(w, sr, generator=torch.Generator().manual_seed(4)) - w
    d_rtn = quantize_tensor(w, rtn) - w
    assert float(d_sr.norm() / d_rtn.norm()) == pytest.approx(math.sqrt(2), rel=0.01)
    assert float(d_rtn.pow(2).sum() / (s * s / 12).sum()) == pytest.approx(1.0, rel=0.01)  # Widrow


def test_sr_variance_closed_form_on_a_hand_case_and_bad_input():
    # row (0.25, 1.0) at 2 bits symmetric: q_max = 1, s = 1; y = 0.25 → r = 0.25, Var = 0.1875
    w = torch.tensor([[0.25, 1.0]], dtype=torch.float64)
    v = S.sr_variance(w, QuantScheme("sr", 2, "channel", None, True))
    assert v.tolist() == [[0.25 * 0.75, 0.0]]
    with pytest.raises(InputError):
        S.sr_variance(w, QuantScheme("rtn", 2, "channel", None, True))


def test_rademacher_draws_have_the_exact_second_moments():
    sd = {"a": torch.tensor([0.5, 2.0, 0.0], dtype=torch.float64)}
    d1 = S.rademacher_delta(sd, 7)["a"]
    assert torch.equal(d1.abs(), sd["a"])
    assert torch.equal(S.rademacher_delta(sd, 7)["a"], d1)
    signs = torch.stack([S.rademacher_delta({"a": torch.ones(64, dtype=torch.float64)}, k)["a"] for k in range(50)])
    assert abs(float(signs.mean())) < 0.05


# ---------------------------------------------------------------- perturbative terms


class _Softmax(torch.nn.Module):
    """p(y | x) = softmax(Wx): the score of (x, y) is (e_y − p) xᵀ in closed form."""

    def __init__(self, W):
        super().__init__()
        self.lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.lin.weight.copy_(W)

    def forward(self, x):
        return self.lin(x)


def _closed_form_F(W, X, y):
    p = torch.softmax(X @ W.T, dim=-1)
    E = torch.nn.functional.one_hot(y, W.shape[0]).double()
    G = ((E - p)[:, :, None] * X[:, None, :]).reshape(X.shape[0], -1)
    return G.T @ G / X.shape[0]


@pytest.fixture
def softmax_case():
    gen = torch.Generator().manual_seed(5)
    W = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    X = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (9,), generator=gen)
    dW = torch.randn(3, 4, generator=gen, dtype=torch.float64) * 0.3
    model = _Softmax(W)
    ld = S.Loaded(S.ModelSpec("softmax", "mlp-digits"), model, ("lin.weight",), "classifier", None, None, {})
    return W, X, y, dW, model, ld


def test_first_order_and_expectation_terms_match_finite_differences_of_a_dense_fim(softmax_case):
    W, X, y, dW, model, ld = softmax_case
    pert = S.Perturbed(model)
    G = S.scores_of(ld, pert.set(None), (X, y))
    F0 = _closed_form_F(W, X, y)
    assert torch.allclose(G.T @ G / 9, F0, rtol=1e-12, atol=1e-14)
    lam1, v, _ = S.top_pair(G)
    assert lam1 == pytest.approx(float(torch.linalg.eigvalsh(F0)[-1]), rel=1e-12)
    gv = G @ v
    hv, tv, H, T = S.directional(ld, pert, (X, y), {"lin.weight": dW}, 1e-3, G, v, gv)

    def lam(t):
        return float(torch.linalg.eigvalsh(_closed_form_F(W + t * dW, X, y))[-1])

    # d/dt λ_max(F(θ + tδ)) at 0 by Richardson-extrapolated central differences of dense eigh
    h = 1e-3
    d1 = (8 * (lam(h) - lam(-h)) - (lam(2 * h) - lam(-2 * h))) / (12 * h)
    assert S.first_order_lambda(lam1, gv, hv) - lam1 == pytest.approx(d1, rel=1e-6)
    # vᵀ ½D²F[δ,δ] v from the dense F: (vᵀ(F(+t) − 2F + F(−t))v)/(2t²)
    vv = v.double()
    t = 1e-3
    d2 = float(vv @ (_closed_form_F(W + t * dW, X, y) - 2 * F0 + _closed_form_F(W - t * dW, X, y)) @ vv) / (2 * t * t)
    assert S.expectation_term(gv, [hv], [tv]) == pytest.approx(d2, rel=1e-5)
    # first order's error is O(t²): the residual shrinks ×4 when the step halves
    r1 = abs(lam(0.1) - S.first_order_lambda(lam1, gv, 0.1 * hv))
    r2 = abs(lam(0.05) - S.first_order_lambda(lam1, gv, 0.05 * hv))
    assert 3.0 < r1 / r2 < 5.0
    # the realised second-order truncation is exact to O(t³) and Lanczos agrees with dense eigh
    A = (G + H).T @ (G + H) / 9 + 0.5 * (G.T @ T + T.T @ G) / 9
    dense = float(torch.linalg.eigvalsh(0.5 * (A + A.T))[-1])
    assert S.second_order_realised(G, H, T) == pytest.approx(dense, rel=1e-10)
    op = S.lambda_max_operator([(1 / 9, G + H, G + H), (1 / 9, G, T)], v)
    assert op == pytest.approx(dense, rel=1e-9)
    assert abs(dense - lam(1.0)) < abs(S.first_order_lambda(lam1, gv, hv) - lam(1.0))
    # the base weights are restored exactly after the differences
    assert torch.equal(model.lin.weight, W)


def test_lambda_max_span_equals_dense_eigh_of_the_expectation_matrix():
    """λ_max(F + c·mean_j(H_jᵀH_j + ½(GᵀT_j + T_jᵀG))/n) from the Gram route of the study equals
    dense eigh in R^{P×P} and the QR-span route."""
    gen = torch.Generator().manual_seed(2)
    n, P, d, c = 6, 30, 3, 2.5
    G = torch.randn(n, P, generator=gen, dtype=torch.float64)
    Hs = [0.3 * torch.randn(n, P, generator=gen, dtype=torch.float64) for _ in range(d)]
    Ts = [0.1 * torch.randn(n, P, generator=gen, dtype=torch.float64) for _ in range(d)]
    D = sum(H.T @ H + 0.5 * (G.T @ T + T.T @ G) for H, T in zip(Hs, Ts)) / (d * n)
    dense = float(torch.linalg.eigvalsh(G.T @ G / n + c * D)[-1])
    coef = {(0, 0): 1 / n, (0, 1): 0.5 * c / n, **{(2 + j, 2 + j): c / (n * d) for j in range(d)}}
    assert S.lambda_max_span([G, sum(Ts) / d, *Hs], coef) == pytest.approx(dense, rel=1e-11)
    assert S.predicted_lambdas(G, Hs, Ts, [c])[0] == pytest.approx(dense, rel=1e-11)
    # negative on the span of 6 rows in R^30: λ_max is the 0 of the complement, not −λ_min(GᵀG)
    assert S.lambda_max_span([G], {(0, 0): -1.0}) == 0.0
    assert S.predicted_lambdas(-G, [G], [2 * G], [10.0])[0] == pytest.approx(0.0, abs=1e-12)  # F + 10·D = −9F
    # ... while with as many independent rows as P the span is everything and the value is negative
    Gf = torch.randn(P, P, generator=gen, dtype=torch.float64)
    full = float(torch.linalg.eigvalsh(-Gf.T @ Gf)[-1])
    assert full < 0 and S.lambda_max_span([Gf], {(0, 0): -1.0}) == pytest.approx(full, rel=1e-8)


def test_expectation_prediction_is_linear_in_the_variance(softmax_case):
    """E[½D²F] is linear in Σ: the RTN rescaling across bit widths by (q_max(4)/q_max(b))²."""
    W, X, y, dW, model, ld = softmax_case
    pert = S.Perturbed(model)
    G = S.scores_of(ld, pert.set(None), (X, y))
    _, v, _ = S.top_pair(G)
    gv = G @ v
    sd = {"lin.weight": torch.full_like(W, 0.05)}
    out = []
    for c in (1.0, 3.0):
        delta = S.rademacher_delta({k: math.sqrt(c) * s for k, s in sd.items()}, 1)
        hv, tv, _, _ = S.directional(ld, pert, (X, y), delta, 1e-2, None, v, gv)
        out.append(S.expectation_term(gv, [hv], [tv]))
    assert out[1] == pytest.approx(3.0 * out[0], rel=1e-4)  # central differences: O(ε²) truncation
    assert S.variance_scale("rtn-channel", 3) == pytest.approx((7 / 3) ** 2)


def test_last_linear_scores_equal_torch_func_on_a_tiny_llama():
    from torch_checks.scores import per_token_scores
    from torch_checks.smollm import Llama, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        max_position_embeddings=64,
    )
    model = Llama(cfg, tied=True).double().eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    tok = torch.randint(0, 50, (13,), generator=torch.Generator().manual_seed(1))
    name = "model.layers.1.mlp.down_proj"
    fast = S.last_linear_scores(model, name, tok[:-1], tok[1:])
    ref = per_token_scores(model, (f"{name}.weight",), tok[:-1], tok[1:], dtype=torch.float64).G
    assert fast.shape == ref.shape == (12, 16 * 24)
    assert torch.allclose(fast, ref, rtol=1e-10, atol=1e-13)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(InputError):
        S.last_linear_scores(model, "model.norm", tok[:-1], tok[1:])


# ---------------------------------------------------------------- skill, coverage, half-width


def _cell(bits, rho, lo, hi, **preds):
    c = {"bits": bits, "rho_fixed": rho, "rho_fixed_lo": lo, "rho_fixed_hi": hi}
    for p in S.PREDICTIONS:
        c[f"rho_{p}"] = preds.get(p)
    return c


def test_skill_table_on_hand_computed_cells():
    cells = [
        _cell(4, 1.25, 1.10, 1.40, first_order=1.20, pred=1.00),  # const |0.8 − 1| = 0.2
        _cell(4, 0.80, 0.70, 0.95, first_order=0.84, pred=0.90),  # const |1.25 − 1| = 0.25
        _cell(4, 1.00, 0.90, 1.10, first_order=1.05, pred=1.02),  # const 0
        _cell(8, 1.00, 0.99, 1.01, first_order=1.0, pred=None),
    ]
    t = S.skill_table(cells)
    r4 = t["4"]
    assert r4["cells"] == 3
    assert r4["constant"]["median_abs_error"] == pytest.approx(0.2)
    assert r4["constant"]["coverage"] == [1, 3]
    f = r4["first_order"]
    # |1.2/1.25 − 1| = 0.04, |0.84/0.8 − 1| = 0.05, |1.05 − 1| = 0.05 → median 0.05
    assert f["median_abs_error"] == pytest.approx(0.05)
    assert f["ratio_to_constant"] == pytest.approx(0.25)
    assert f["coverage"] == [3, 3] and f["constant_coverage"] == [1, 3]
    e = r4["pred"]
    # |1/1.25 − 1| = 0.2, |0.9/0.8 − 1| = 0.125, 0.02 → median 0.125; 1.00 is outside [1.1, 1.4]
    assert e["median_abs_error"] == pytest.approx(0.125)
    assert e["ratio_to_constant"] == pytest.approx(0.625)
    assert e["coverage"] == [2, 3]
    assert t["8"]["pred"] is None
    assert t["8"]["first_order"]["ratio_to_constant"] is None  # the constant's error is 0
    assert list(t) == ["8", "4"]


def test_half_width_and_ci_flags_on_hand_cells():
    assert S.half_width(1.0, 0.95, 1.07) == pytest.approx(0.06)
    cells = [
        {"model": "a", "key": "rtn-channel/4", "bits": 4, "halfwidth_fixed": 0.06, "halfwidth_self": 0.2,
         "ci_target_missed": True},
        {"model": "b", "key": "nf4/4", "bits": 4, "halfwidth_fixed": 0.02, "halfwidth_self": 0.04,
         "ci_target_missed": False},
        {"model": "a", "key": "rtn-channel/2", "bits": 2, "halfwidth_fixed": 0.5, "halfwidth_self": 0.5,
         "ci_target_missed": False},
    ]  # fmt: skip
    t = S.ci_table(cells, 0.05, 4)
    assert t["missed"] == ["a rtn-channel/4"]
    assert t["by_bits"]["4"]["fixed_max"] == 0.06 and t["by_bits"]["4"]["fixed_over_target"] == 1
    assert t["by_bits"]["4"]["self_over_target"] == 1
    assert t["by_bits"]["4"]["fixed_median"] == pytest.approx(0.04)


def test_estimate_keys_share_rtn_and_split_sr():
    keys = ["rtn-channel/8", "rtn-channel/4", "sr-channel/4", "sr-channel/2", "nf4/4", "rtn-group/3"]
    assert S.estimate_keys(keys) == [("rtn-channel", 4), ("sr-channel", 4), ("sr-channel", 2), ("nf4", 4),
                                     ("rtn-group", 4)]  # fmt: skip
    with pytest.raises(InputError):
        S.config_keys(S.ModelSpec("x", "byte-lm", overrides=(("configs", ("nf4/3",)),)), S.get_profile("test"))


def test_quantile_ratio_of_identical_samples_is_one():
    x = np.linspace(1, 2, 11)
    assert S.ratio_ci(x, x, 0.95, 1000, 0) == (1.0, 1.0, 1.0)
