"""The inflation study (torch_checks.monitor_study): bootstrap CI, second-order prediction
algebra, a tiny end-to-end run whose report.json recomputes to report.md, bad input."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")
pytest.importorskip("matplotlib", reason="the study plots with matplotlib")
pytest.importorskip("tqdm", reason="the study shows a tqdm progress bar")

from fimtheory.errors import InputError  # noqa: E402
from torch_checks import models as M  # noqa: E402
from torch_checks import monitor_study as S  # noqa: E402

pytestmark = pytest.mark.torch


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_ci_covers_point_and_is_seeded():
    rng = np.random.default_rng(0)
    den = rng.lognormal(size=40)
    num = den * rng.lognormal(1.0, 0.3, size=40)
    rho, lo, hi = S.ratio_ci(num, den, 0.9, 2000, seed=7)
    assert lo <= rho <= hi
    assert rho == pytest.approx(np.quantile(num, 0.9) / np.quantile(den, 0.9), rel=1e-15)
    assert S.ratio_ci(num, den, 0.9, 2000, seed=7) == (rho, lo, hi)
    assert S.ratio_ci(num, den, 0.9, 2000, seed=8) != (rho, lo, hi)
    # identical samples: ρ = 1 with a degenerate interval
    assert S.ratio_ci(den, den, 0.9, 1000, seed=1) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("kw", [dict(n_boot=10), dict(num=[1.0])])
def test_bootstrap_bad_input(kw):
    num = kw.pop("num", [1.0, 2.0, 3.0])
    with pytest.raises(InputError):
        S.ratio_ci(num, num[:1] * len(num), 0.5, kw.get("n_boot", 1000), seed=0)


# ---------------------------------------------------------------- prediction algebra


def test_predicted_lambdas_equals_dense_formula():
    gen = torch.Generator().manual_seed(0)
    n, P = 5, 40
    G = torch.randn(n, P, generator=gen, dtype=torch.float64)
    Hs = [torch.randn(n, P, generator=gen, dtype=torch.float64) * 0.1 for _ in range(2)]
    Ts = [torch.randn(n, P, generator=gen, dtype=torch.float64) * 0.1 for _ in range(2)]
    F = G.T @ G / n
    Dm = sum(H.T @ H + 0.5 * (G.T @ T + T.T @ G) for H, T in zip(Hs, Ts)) / (2 * n)
    got = S.predicted_lambdas(G, Hs, Ts, [0.0, 1.0, 3.0])
    for c, v in zip([0.0, 1.0, 3.0], got):
        assert v == pytest.approx(float(torch.linalg.eigvalsh(F + c * Dm)[-1]), rel=1e-10)


def test_variance_scale_and_group_divisor():
    assert S.variance_scale("rtn-channel", 4) == 1.0
    assert S.variance_scale("rtn-channel", 2) == pytest.approx(49.0)
    assert S.variance_scale("rtn-group", 8) == pytest.approx((7 / 127) ** 2)
    prof = S.get_profile("quick")
    assert S.scheme_for("rtn-group", 3, 48, prof).group_size == 24
    assert S.scheme_for("nf4", 4, 32, prof).group_size == 32


def test_second_order_terms_match_finite_difference_taylor(tmp_path, monkeypatch):
    """h and t from central differences reproduce G(θ+δ) to third order."""
    monkeypatch.setenv("FIMTHEORY_CACHE", str(tmp_path))
    prof = S.get_profile("test")
    ld = S.load_spec(prof.models[0], prof, torch.device("cpu"), 0)
    traj = S.make_trajectory(ld, ld.module, 0, prof, 0)
    steps = S.widrow_steps(ld.module, "rtn-channel", prof)
    G0, Hs, Ts = S.second_order_terms(ld, traj, steps, 1, 1e-2, seed=3)
    # rebuild δ with the same seed and compare with the actual perturbed scores
    gen = torch.Generator().manual_seed(3)
    delta = {k: (torch.rand(s.shape, generator=gen, dtype=torch.float64) - 0.5) * s for k, s in steps.items()}
    params = dict(ld.module.named_parameters())
    with torch.no_grad():
        for k, d in delta.items():
            params[k].add_(0.1 * d)
    G1 = S.scores_of(ld, ld.module, traj)
    with torch.no_grad():
        for k, d in delta.items():
            params[k].sub_(0.1 * d)
    taylor1 = G0 + 0.1 * Hs[0]
    taylor2 = taylor1 + 0.5 * 0.01 * Ts[0]
    e1 = float((G1 - taylor1).norm())
    e2 = float((G1 - taylor2).norm())
    assert e2 < 0.2 * e1


# ---------------------------------------------------------------- end to end


def _tiny_profile():
    spec = S.ModelSpec(
        "byte-lm-e2e",
        "byte-lm",
        M.ByteLMConfig.tiny(d_model=16, n_heads=2, d_ff=32, steps=30, eval_bytes=512, context=16),
    )
    return S.Profile(
        "test",
        (spec,),
        n_trajectories=4,
        prompt_len=4,
        gen_len=6,
        bits=(8, 2),
        families=("rtn-channel",),
        n_boot=1000,
        mc_draws=1,
        n_traces=2,
    )


def test_end_to_end_tiny_study_recomputes(tmp_path, monkeypatch):
    monkeypatch.setenv("FIMTHEORY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rep = S.run_study(_tiny_profile(), str(out), seed=1, progress=False)
    for f in ("report.json", "report.md", "sigma_traces.png", "rho_vs_bits.png", "rho_pred_vs_measured.png"):
        assert (out / f).is_file() and os.path.getsize(out / f) > 0, f
    md = (out / "report.md").read_text()
    assert S.recompute_from_json(str(out / "report.json")) == md
    data = json.loads((out / "report.json").read_text())
    m = data["summary"]["models"]["byte-lm-e2e"]
    assert set(m["configs"]) == {"rtn-channel/8", "rtn-channel/2"}
    c = m["configs"]["rtn-channel/2"]
    assert c["rho_self_lo"] <= c["rho_self"] <= c["rho_self_hi"]
    assert c["rho_pred"] is not None and np.isfinite(c["rho_pred"])
    raw = data["raw"]["models"]["byte-lm-e2e"]
    assert len(raw["fp"]["lam"]) == 4 and len(raw["configs"]["rtn-channel/2"]["self"]["lam"]) == 4
    # 8-bit RTN barely moves the threshold on the same trajectories
    assert abs(m["configs"]["rtn-channel/8"]["rho_fixed"] - 1.0) < 0.05
    assert rep["wall_seconds"] > 0
    # tampering with a raw sample changes the recomputed report
    raw["configs"]["rtn-channel/2"]["self"]["lam"] = [x * 3 for x in raw["configs"]["rtn-channel/2"]["self"]["lam"]]
    (out / "tampered.json").write_text(json.dumps(data))
    assert S.recompute_from_json(str(out / "tampered.json")) != md


@pytest.mark.parametrize("profile", ["fast", "", "PAPER", "test"])
def test_bad_profile_is_input_error(profile, tmp_path):
    args = argparse.Namespace(profile=profile, out=str(tmp_path), device="cpu", seed=0)
    if profile == "":
        args.profile = "nope"
    with pytest.raises(InputError):
        S.inflation_command(args)


def test_bad_seed_and_unknown_profile_name():
    with pytest.raises(InputError):
        S.get_profile("huge")
    with pytest.raises(InputError):
        S.run_study("quick", "/nonexistent/never", seed=-1)
