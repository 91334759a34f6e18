"""The paper profile of the inflation study and its committed report (results/inflation-paper/).

The profile carries the three pretrained LMs (SmolLM2, Gemma 3, textgenrnn) at 90 trajectories
each beside the 11 small models; every committed checkpoint must have the fingerprint of the
profile's current settings (otherwise ``--report-only`` silently drops it), and the committed
report.md must be what its report.json's raw samples give.
"""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")

from torch_checks import monitor_study as S  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = os.path.join(ROOT, "results", "inflation-paper")
REAL = ("smollm2", "gemma3", "textgenrnn")


def _profile():
    return S.get_profile("paper")


def _committed_profile(monkeypatch):
    """The paper profile the committed results were made with: SmolLM2 present (without the
    ``[lm]`` extra the profile puts a third MLP in its place, which the committed run did not
    have). Building the profile and its fingerprints loads no model."""
    import torch_checks.smollm as smollm

    monkeypatch.setattr(smollm, "smollm_available", lambda: True)
    return S.get_profile("paper")


def test_paper_profile_has_the_three_pretrained_lms_at_90_trajectories():
    prof = _profile()
    by = {sp.label: sp for sp in prof.models}
    from torch_checks.smollm import smollm_available

    expected = REAL if smollm_available() else REAL[1:]
    for label in expected:
        assert by[label].get(prof, "n_trajectories") == 90, label
        assert by[label].predict and by[label].measures("measure_self") and by[label].measures("first_order")
        assert dict(by[label].overrides).get("shared_draws", label == "smollm2")  # SmolLM2: shared as a big model
    small = [sp for sp in prof.models if sp.label not in REAL]
    assert len(small) == (11 if smollm_available() else 12)
    assert all(sp.get(prof, "n_trajectories") == 90 for sp in small)
    # the pretrained LMs at the three 4-bit schemes and RTN/SR per channel at 8 bits
    assert S.config_keys(by["gemma3"], prof) == list(S.PAPER_REAL_CONFIGS)
    assert S.config_keys(by["textgenrnn"], prof) == list(S.PAPER_REAL_CONFIGS)


def _committed_shards():
    d = os.path.join(PAPER, "shards")
    if not os.path.isdir(d):
        pytest.skip("results/inflation-paper/shards not committed")
    return {f[: -len(".json")]: os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".json")}


def test_committed_paper_shards_match_the_profile_settings(monkeypatch):
    prof = _committed_profile(monkeypatch)
    by = {sp.label: sp for sp in prof.models}
    shards = _committed_shards()
    assert set(shards) == set(by), "a committed checkpoint per model of the profile"
    for label, path in shards.items():
        with open(path) as fh:
            sh = json.load(fh)
        assert "skipped" not in sh, (label, sh.get("skipped"))
        assert sh["fingerprint"] == S.fingerprint(by[label], prof, 0), label
        assert sh["complete"], label
        assert len(sh["result"]["fp"]["lam"]) == 90, label
        assert set(sh["result"]["configs"]) == set(S.config_keys(by[label], prof)), label


def test_committed_paper_report_is_complete_and_recomputes_from_its_json(monkeypatch):
    path = os.path.join(PAPER, "report.json")
    if not os.path.isfile(path):
        pytest.skip("results/inflation-paper/report.json not committed")
    with open(path) as fh:
        rep = json.load(fh)
    planned = [sp.label for sp in _committed_profile(monkeypatch).models]
    assert rep["complete"] and rep["raw"]["models_planned"] == planned
    for label in REAL:
        ms = rep["summary"]["models"][label]
        assert ms["n_trajectories"] == 90, label
        for key, c in ms["configs"].items():  # every real-LM cell has self, fixed, first order and E
            for name in ("rho_self", "rho_fixed", "rho_first_order", "rho_pred"):
                assert c[name] is not None and c[name] > 0, (label, key, name)
    with open(os.path.join(PAPER, "report.md")) as fh:
        assert S.recompute_from_json(path) == fh.read()
