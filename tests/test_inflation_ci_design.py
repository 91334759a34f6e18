"""The two-stage CI design of the inflation study (torch_checks.monitor_study.ci_profile).

Stage 1 (a pilot report) estimates each cell's CI half-width; per model the second stage's
n = max(min_n, ⌈margin · n_pilot · (hw/target)²⌉) over its cells at the target bit width;
stage 2 is a fresh sample (independent prompts and sampling seeds, the same quantized models)
and its CIs are computed from it alone. Checked here: the sizing arithmetic on hand cells,
that stream 0 reproduces the existing trajectories bit for bit while a fresh stream shares no
trajectory with them, that the quantizer's draws do not depend on the stream, and a tiny
pilot → second stage run end to end (report recomputes from JSON, met flags equal hw ≤ target,
bad input refused before any work).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")
pytest.importorskip("matplotlib", reason="the study plots with matplotlib")

from fimtheory.errors import InputError  # noqa: E402
from torch_checks import models as M  # noqa: E402
from torch_checks import monitor_study as S  # noqa: E402

pytestmark = pytest.mark.torch


def _tiny_profile(n=8):
    spec = S.ModelSpec(
        "byte-lm-ci",
        "byte-lm",
        M.ByteLMConfig.tiny(d_model=16, n_heads=2, d_ff=32, steps=30, eval_bytes=512, context=16),
    )
    return S.Profile(
        "test",
        (spec,),
        n_trajectories=n,
        prompt_len=4,
        gen_len=6,
        bits=(8, 4),
        families=("rtn-channel", "sr-channel"),
        configs=("rtn-channel/8", "rtn-channel/4", "sr-channel/4"),
        n_boot=1000,
        mc_draws=1,
        n_traces=1,
        quantile=0.9,
    )


# ---------------------------------------------------------------- sizing arithmetic


def test_required_n_is_the_inverse_square_scaling():
    assert S.required_n(90, 0.10, 0.05) == pytest.approx(360.0)
    assert S.required_n(90, 0.05, 0.05) == pytest.approx(90.0)
    assert S.required_n(24, 0.275, 0.05) == pytest.approx(24 * 5.5**2)
    assert S.required_n(10, 0.0, 0.05) == 0.0
    for bad in [dict(n_pilot=0, hw_pilot=0.1, target=0.05), dict(n_pilot=90, hw_pilot=-0.1, target=0.05),
                dict(n_pilot=90, hw_pilot=float("nan"), target=0.05), dict(n_pilot=90, hw_pilot=0.1, target=0.0),
                dict(n_pilot=9.5, hw_pilot=0.1, target=0.05)]:  # fmt: skip
        with pytest.raises(InputError):
            S.required_n(**bad)


def _pilot(cells: dict, n=90, target=0.05, bits=4):
    configs = {k: {"bits": int(k.split("/")[1]), "rho_fixed": 1.0, "halfwidth_fixed": hw} for k, hw in cells.items()}
    return {
        "raw": {"profile": "paper", "seed": 0, "quantile": 0.95, "ci_target": target, "ci_target_bits": bits},
        "summary": {
            "models": {
                "a": {"n_trajectories": n, "configs": configs},
                "b": {"n_trajectories": n, "configs": {"rtn-channel/4": configs["rtn-channel/4"]}},
                "c": {"skipped": "no package"},
            }
        },
    }


def test_ci_design_takes_the_largest_cell_with_the_margin_and_the_floor():
    p = _pilot({"rtn-channel/8": 0.5, "rtn-channel/4": 0.08, "sr-channel/4": 0.12})
    d = S.ci_design(p, source="x", margin=1.5)
    a = d["models"]["a"]
    assert set(a["cells"]) == {"rtn-channel/4", "sr-channel/4"}  # the 8-bit cell does not size anything
    assert a["limiting_cell"] == "sr-channel/4"
    assert a["cells"]["sr-channel/4"]["n_for_target"] == pytest.approx(90 * (0.12 / 0.05) ** 2)
    assert a["n"] == math.ceil(1.5 * 90 * (0.12 / 0.05) ** 2) == 778
    assert d["models"]["b"]["n"] == math.ceil(1.5 * 90 * (0.08 / 0.05) ** 2)
    assert "c" not in d["models"]
    # a cell already narrow gets the floor, not fewer
    d2 = S.ci_design(_pilot({"rtn-channel/4": 0.01, "sr-channel/4": 0.01}), margin=1.0)
    assert d2["models"]["a"]["n"] == S.CI_MIN_N
    with pytest.raises(InputError):
        S.ci_design(p, margin=0.9)
    with pytest.raises(InputError):
        S.ci_design(p, stream=0)
    with pytest.raises(InputError, match="no cell at 3 bits"):
        S.ci_design(_pilot({"rtn-channel/4": 0.1}, bits=3))


# ---------------------------------------------------------------- the fresh stream


def test_stream_zero_keeps_the_seeds_and_a_fresh_stream_shares_none(tmp_path, monkeypatch):
    monkeypatch.setenv("FIMTHEORY_CACHE", str(tmp_path / "cache"))
    prof0 = _tiny_profile()
    prof1 = replace(prof0, sample_stream=1)
    assert S.sample_seed(prof0, 3) == 3
    assert S.sample_seed(prof1, 3) not in (0, 3) and S.sample_seed(prof1, 3) != S.sample_seed(
        replace(prof0, sample_stream=2), 3
    )
    spec = prof0.models[0]
    # stream 0 reproduces the earlier fingerprint (shards of earlier runs stay valid); stream 1 does not
    assert S.fingerprint(spec, prof0, 0) == S.fingerprint(spec, replace(prof0, sample_stream=0), 0)
    assert S.fingerprint(spec, prof1, 0) != S.fingerprint(spec, prof0, 0)
    ld0 = S.load_spec(spec, prof0, torch.device("cpu"), 0)
    ld1 = S.load_spec(spec, prof1, torch.device("cpu"), 0)
    t0 = [S.make_trajectory(ld0, ld0.module, i, prof0, 0).tolist() for i in range(8)]
    t1 = [S.make_trajectory(ld1, ld1.module, i, prof1, 0).tolist() for i in range(8)]
    # stream 0 is the sampling the study always used: seed·100003 + i
    manual = S.generate(ld0.module, ld0.prompts[5], prof0.gen_len, 0 * 100_003 + 5, ld0.max_context)
    assert t0[5] == manual.tolist()
    assert not set(map(tuple, t0)) & set(map(tuple, t1))
    assert not torch.equal(ld0.prompts, ld1.prompts)
    # the quantized model does not depend on the stream (SR draws seeded by (seed, label, scheme))
    w0 = S.quantize_copy(ld0.module, "sr-channel", 4, prof0, S._cfg_seed(0, spec.label, "sr-channel/4"))[0]
    w1 = S.quantize_copy(ld1.module, "sr-channel", 4, prof1, S._cfg_seed(0, spec.label, "sr-channel/4"))[0]
    for (k, a), (_, b) in zip(S._weights(w0), S._weights(w1)):
        assert torch.equal(a, b), k


# ---------------------------------------------------------------- end to end


def test_pilot_then_fresh_second_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("FIMTHEORY_CACHE", str(tmp_path / "cache"))
    pilot_dir = tmp_path / "pilot"
    S.run_study(_tiny_profile(), str(pilot_dir), seed=0, progress=False)
    pilot = json.loads((pilot_dir / "report.json").read_text())
    base = _tiny_profile()
    prof = S.ci_profile(str(pilot_dir), base=base, margin=1.0)
    d = prof.extra["design"]
    hws = {
        k: pilot["summary"]["models"]["byte-lm-ci"]["configs"][k]["halfwidth_fixed"]
        for k in ("rtn-channel/4", "sr-channel/4")
    }
    n_expect = max(S.CI_MIN_N, math.ceil(max(8 * (h / 0.05) ** 2 for h in hws.values())))
    assert d["models"]["byte-lm-ci"]["n"] == n_expect
    spec = prof.models[0]
    assert spec.get(prof, "n_trajectories") == n_expect
    assert S.config_keys(spec, prof) == ["rtn-channel/4", "sr-channel/4"]
    assert prof.sample_stream == 1 and prof.name == "test-ci4-s1" and spec.predict is False
    assert len(d["pilot_sha256"]) == 64
    with pytest.raises(InputError, match="pilot's seed"):
        S.run_study(prof, str(tmp_path / "bad"), seed=1, progress=False)
    out = tmp_path / "stage2"
    S.run_study(prof, str(out), seed=0, progress=False)
    rep = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert S.recompute_from_json(str(out / "report.json")) == md
    assert "## Two-stage design" in md and "sample stream 1" in md
    raw = rep["raw"]["models"]["byte-lm-ci"]
    assert len(raw["fp"]["lam"]) == n_expect
    # the fresh sample shares no trajectory with the pilot's
    pil = {tuple(t) for t in pilot["raw"]["models"]["byte-lm-ci"]["trajectories"]}
    assert not pil & {tuple(t) for t in raw["trajectories"]}
    # the quantized models are the pilot's: same ‖δ‖/‖θ‖, SR included
    for k in ("rtn-channel/4", "sr-channel/4"):
        assert raw["configs"][k]["rel_delta"] == pilot["raw"]["models"]["byte-lm-ci"]["configs"][k]["rel_delta"]
        assert raw["configs"][k]["pred"] is None and np.all(np.isfinite(raw["configs"][k]["first_order"]))
    chk = rep["summary"]["design_check"]["byte-lm-ci"]
    summ = rep["summary"]["models"]["byte-lm-ci"]["configs"]
    for k, c in chk["cells"].items():
        assert c["halfwidth"] == summ[k]["halfwidth_fixed"]
        assert c["met"] == (summ[k]["halfwidth_fixed"] <= 0.05)
        assert summ[k]["ci_target_missed"] == (not c["met"])
    assert chk["n_run"] == n_expect and chk["n_planned"] == n_expect
    # the self-generated ρ is not measured in a stage; ρ_fixed and first order are
    assert "self" not in raw["configs"]["sr-channel/4"]
    assert summ["sr-channel/4"]["rho_self"] is None and summ["sr-channel/4"]["halfwidth_self"] is None
    assert rep["summary"]["ci"]["by_bits"]["4"]["self_median"] is None
    # a stage can size the next one: a fresh stream above it, n from its own half-widths
    nxt = S.ci_profile(str(out), base=base, margin=1.2, first_order=False)
    dn = nxt.extra["design"]
    assert nxt.sample_stream == 2 and dn["pilot_sample_stream"] == 1 and dn["base_profile"] == "test"
    hw2 = max(summ[k]["halfwidth_fixed"] for k in ("rtn-channel/4", "sr-channel/4"))
    assert dn["models"]["byte-lm-ci"]["n"] == max(S.CI_MIN_N, math.ceil(1.2 * n_expect * (hw2 / 0.05) ** 2))
    assert nxt.models[0].measures("first_order") is False and nxt.models[0].measures("measure_self") is False
    assert S.sample_seed(nxt, 0) != S.sample_seed(prof, 0)
    with pytest.raises(InputError, match="above the pilot's"):
        S.ci_profile(str(out), base=base, stream=1)
    # a directory without a report is refused
    with pytest.raises(InputError, match="no report.json"):
        S.ci_profile(str(tmp_path / "nothing"))
    with pytest.raises(InputError, match="not 'quick'"):
        S.ci_profile(str(pilot_dir), base=replace(base, name="quick"))


def test_cli_ci_pilot_without_a_report_exits_2(tmp_path, capsys):
    from fimtheory.cli import main

    rc = main(["inflation", "--ci-pilot", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no report.json" in err[0]
    assert not (tmp_path / "o" / "shards").exists()
