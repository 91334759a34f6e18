"""The inflation study (torch_checks.monitor_study): bootstrap CI, second-order prediction
algebra, a tiny end-to-end run whose report.json recomputes to report.md (progress lines,
checkpoints, resume, partial reports), bad input. The mathematics against independent
references: tests/test_inflation_theory.py."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")
pytest.importorskip("matplotlib", reason="the study plots with matplotlib")

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


def test_directional_differences_match_taylor_on_the_byte_lm(tmp_path, monkeypatch):
    """h and t from central differences reproduce G(θ+δ) to third order."""
    monkeypatch.setenv("FIMTHEORY_CACHE", str(tmp_path))
    prof = S.get_profile("test")
    ld = S.load_spec(prof.models[0], prof, torch.device("cpu"), 0)
    pert = S.Perturbed(ld.module)
    traj = S.make_trajectory(ld, pert.set(None), 0, prof, 0)
    G0 = S.scores_of(ld, pert.set(None), traj)
    _, v, _ = S.top_pair(G0)
    var = S.expectation_variances(ld.module, "rtn-channel", 4, prof)
    delta = S.rademacher_delta({k: x.sqrt() for k, x in var.items()}, 3)
    hv, tv, H, T = S.directional(ld, pert, traj, delta, 1e-2, G0, v, G0 @ v)
    assert torch.allclose(hv, H @ v, rtol=1e-9, atol=1e-12) and torch.allclose(tv, T @ v, rtol=1e-6, atol=1e-9)
    G1 = S.scores_of(ld, pert.set(delta, 0.1), traj)
    e1 = float((G1 - (G0 + 0.1 * H)).norm())
    e2 = float((G1 - (G0 + 0.1 * H + 0.5 * 0.01 * T)).norm())
    assert e2 < 0.2 * e1
    # the scratch copy returns to θ exactly; the base model is never touched
    assert torch.equal(S.scores_of(ld, pert.set(None), traj), G0)


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
        families=("rtn-channel", "sr-channel"),
        configs=("rtn-channel/8", "rtn-channel/2", "sr-channel/2"),
        n_boot=1000,
        mc_draws=1,
        n_traces=2,
    )


def test_end_to_end_tiny_study_recomputes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FIMTHEORY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rep = S.run_study(_tiny_profile(), str(out), seed=1)
    # off a terminal the progress is plain lines on stderr (no tqdm carriage returns)
    err = capsys.readouterr().err
    assert "inflation[test] [1/" in err and "\r" not in err
    assert err.count("\n") >= 4
    for f in ("report.json", "report.md", "sigma_traces.png", "rho_vs_bits.png", "rho_pred_vs_measured.png"):
        assert (out / f).is_file() and os.path.getsize(out / f) > 0, f
    md = (out / "report.md").read_text()
    assert S.recompute_from_json(str(out / "report.json")) == md
    assert "Run status: complete." in md
    data = json.loads((out / "report.json").read_text())
    assert data["complete"] is True
    m = data["summary"]["models"]["byte-lm-e2e"]
    assert set(m["configs"]) == {"rtn-channel/8", "rtn-channel/2", "sr-channel/2"}
    c = m["configs"]["rtn-channel/2"]
    assert c["rho_self_lo"] <= c["rho_self"] <= c["rho_self_hi"]
    for p in S.PREDICTIONS:
        assert c[f"rho_{p}"] is not None and np.isfinite(c[f"rho_{p}"]), p
    assert c["halfwidth_fixed"] == pytest.approx((c["rho_fixed_hi"] - c["rho_fixed_lo"]) / (2 * c["rho_fixed"]))
    raw = data["raw"]["models"]["byte-lm-e2e"]
    assert len(raw["fp"]["lam"]) == 4 and len(raw["configs"]["rtn-channel/2"]["self"]["lam"]) == 4
    # 8-bit RTN barely moves the threshold on the same trajectories, and first order tracks it
    c8 = m["configs"]["rtn-channel/8"]
    assert abs(c8["rho_fixed"] - 1.0) < 0.05
    assert abs(c8["err_first_order"]) < 0.01
    # SR's ‖δ‖ is √2 RTN's and its exact expectation matches what was drawn
    d = data["summary"]["delta_ratio_sr_rtn"]["byte-lm-e2e"]["2"]
    assert d["measured"] == pytest.approx(np.sqrt(2), rel=0.1)
    assert d["sr_measured_over_expected"] == pytest.approx(1.0, rel=0.1)
    assert set(data["summary"]["skill"]) == {"8", "2"}
    assert rep["wall_seconds"] > 0
    # tampering with a raw sample changes the recomputed report
    raw["configs"]["rtn-channel/2"]["self"]["lam"] = [x * 3 for x in raw["configs"]["rtn-channel/2"]["self"]["lam"]]
    (out / "tampered.json").write_text(json.dumps(data))
    assert S.recompute_from_json(str(out / "tampered.json")) != md
    # resume: every shard is reused (nothing recomputed), the report is the same
    rep2 = S.run_study(_tiny_profile(), str(out), seed=1, resume=True, progress=False)
    assert (out / "report.md").read_text() == md and rep2["model_seconds_this_run"]["byte-lm-e2e"] < rep[
        "model_seconds_this_run"
    ]["byte-lm-e2e"]
    # a scheme missing from a shard is recomputed to the same numbers on resume
    sh_path = out / "shards" / "byte-lm-e2e.json"
    sh = json.loads(sh_path.read_text())
    del sh["result"]["configs"]["sr-channel/2"]
    sh_path.write_text(json.dumps(sh))
    S.run_study(_tiny_profile(), str(out), seed=1, report_only=True, progress=False)
    part = (out / "report.md").read_text()
    assert "**PARTIAL**" in part and "byte-lm-e2e sr-channel/2" in part
    assert json.loads((out / "report.json").read_text())["complete"] is False
    S.run_study(_tiny_profile(), str(out), seed=1, resume=True, progress=False)
    assert (out / "report.md").read_text() == md


def test_a_model_not_run_makes_the_report_partial(tmp_path, monkeypatch):
    monkeypatch.setenv("FIMTHEORY_CACHE", str(tmp_path / "cache"))
    prof = _tiny_profile()
    other = S.ModelSpec("byte-lm-other", "byte-lm", prof.models[0].config)
    prof2 = S.Profile(**{**{k: getattr(prof, k) for k in prof.__dataclass_fields__}, "models": (prof.models[0], other)})
    rep = S.run_study(prof2, str(tmp_path / "o"), seed=1, models=["byte-lm-e2e"], progress=False)
    assert rep["complete"] is False and rep["summary"]["missing"]["models"] == ["byte-lm-other"]
    assert "Missing: byte-lm-other" in (tmp_path / "o" / "report.md").read_text()
    with pytest.raises(InputError):
        S.run_study(prof2, str(tmp_path / "o"), seed=1, models=["nope"], progress=False)


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
