"""The companion data of the paper, recomputed from its raw rows (fimtheory.paper_data).

The published values below are typed in from the companion's own text (its README headline
table, ``calibration_244x_recovered_summary.json``, ``calibration_244x.csv`` and
``docs/known_limitations.md``), independently of the module under test; the module must
recompute each from the raw CSV rows to the printed rounding.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys

import pytest

from fimtheory import paper_data
from fimtheory.errors import InputError

# (key, published as printed, decimals)
PUBLISHED = [
    ("calibration.original.drift_p95", 244, 0),
    ("calibration.llama3.2:latest.drift_p95", 236.8, 1),
    ("calibration.gemma3:27b.drift_p95", 64.3, 1),
    ("calibration.qwen2.5-coder:7b.drift_p95", 287.4, 1),
    ("calibration.coney_/gpt-oss_claude-sonnet4.6:latest.drift_p95", 283.8, 1),
    ("calibration.alibayram/hunyuan:latest.drift_p95", 138.8, 1),
    ("calibration.gemma3:latest.drift_p95", 104.0, 1),
    ("calibration.phi4-mini:latest.drift_p95", 70.0, 1),
    ("calibration.qwen:latest.drift_p95", 132.4, 1),
    ("calibration.pooled.n", 397, 0),
    ("calibration.pooled.n_models", 8, 0),
    ("calibration.pooled.kl_mean", 2.3676, 4),
    ("calibration.pooled.kl_std", 3.7601, 4),
    ("calibration.pooled.kl_p50", 1.0818, 4),
    ("calibration.pooled.kl_p95", 8.4441, 4),
    ("calibration.pooled.kl_p99", 18.4296, 4),
    ("calibration.pooled.drift_factor_p95", 129.9, 1),
    ("calibration.csv.drift_factor", 129.9, 1),
    ("stability.passing", 10, 0),
    ("stability.models", 12, 0),
    ("correlation.max", 0.962, 3),
    ("correlation.median", 0.479, 3),
    ("leadtime.detection_pct", 85.6, 1),
    ("leadtime.median", 27, 0),
    ("leadtime.t", 33.2, 1),
    ("intervention.reduction_pct", 66, 0),
    ("intervention.cohens_d", 1.95, 2),
]


@pytest.fixture(scope="module")
def figures():
    return {f.key: f for f in paper_data.recompute()}


def test_every_published_figure_is_reproduced(figures):
    assert len(figures) >= 60
    bad = [k for k, f in figures.items() if not f.reproduced]
    assert bad == []


@pytest.mark.parametrize("key,published,decimals", PUBLISHED)
def test_published_value_as_printed_by_the_companion(figures, key, published, decimals):
    f = figures[key]
    assert f.published == published and f.decimals == decimals
    if f.rounding == "floor":
        assert math.floor(f.recomputed) == published
    else:
        assert round(f.recomputed, decimals) == pytest.approx(published, abs=1e-12)


def _linear_percentile(values, q):
    """Percentile by linear interpolation between order statistics (numpy's default), in plain
    Python: an independent reference for the module's numpy call."""
    xs = sorted(values)
    h = (len(xs) - 1) * q / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def test_pooled_percentiles_against_a_plain_python_reference(figures):
    with open(paper_data.DATA_DIR / "calibration_kl_raw_recovered.csv") as f:
        vals = [float(r["kl_divergence"]) for r in csv.DictReader(f) if r["excluded_artifact"] == "False"]
    assert len(vals) == 397
    for q in (50, 95, 99):
        assert figures[f"calibration.pooled.kl_p{q}"].recomputed == pytest.approx(
            _linear_percentile(vals, q), rel=1e-12
        )
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    assert figures["calibration.pooled.kl_std"].recomputed == pytest.approx(std, rel=1e-12)
    assert figures["calibration.pooled.drift_factor_p95"].recomputed == pytest.approx(
        _linear_percentile(vals, 95) / 0.065, rel=1e-12
    )


def test_original_gap_is_a_ratio_of_two_published_aggregates(figures):
    f = figures["calibration.original.drift_p95"]
    assert f.recomputed == pytest.approx(15.9037 / 0.065, rel=1e-15)
    assert "not retained" in f.statistic


def test_each_drift_figure_says_what_it_is_not(figures):
    drift = [f for k, f in figures.items() if "drift" in k]
    assert len(drift) >= 10
    for f in drift:
        assert "not a λ_max" in f.is_not and "no full-precision arm" in f.is_not and "visual inspection" in f.is_not


def test_the_lead_time_t_test_is_flagged_as_significant_by_construction(figures):
    assert "significant by construction" in figures["leadtime.t"].is_not
    assert figures["leadtime.p_times_1e114"].reproduced


def test_a_changed_data_file_is_refused(tmp_path):
    data = tmp_path / "companion"
    shutil.copytree(paper_data.DATA_DIR, data)
    paper_data.recompute(data)  # the untouched copy passes
    raw = data / "calibration_kl_raw_recovered.csv"
    text = raw.read_text()
    raw.write_text(text.replace("2.82033", "2.82034", 1))
    with pytest.raises(InputError, match="sha256 mismatch"):
        paper_data.recompute(data)


def test_a_missing_data_file_is_refused(tmp_path):
    data = tmp_path / "companion"
    shutil.copytree(paper_data.DATA_DIR, data)
    (data / "e6_leadtime_events.csv").unlink()
    with pytest.raises(InputError, match="missing"):
        paper_data.recompute(data)


def test_vendored_with_licence_and_attribution():
    assert "CC BY 4.0" in (paper_data.DATA_DIR / "LICENSE-DATA").read_text()
    att = (paper_data.DATA_DIR / "ATTRIBUTION.md").read_text()
    assert "10.5281/zenodo.21134196" in att and "61c05151bcc83a6cb1cb1cdfdadcd07db9904a90" in att


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fimtheory", "paper-data", *args], capture_output=True, text=True)


def test_cli_writes_json_and_exits_0(tmp_path):
    out = tmp_path / "pd.json"
    r = _cli("--json", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["reproduced"] == doc["total"] and doc["not_reproduced"] == []
    assert "published figures reproduced" in r.stdout


@pytest.mark.parametrize("bad", ["missing-dir/x.json", "."])
def test_cli_bad_output_path_is_one_line_exit_2(tmp_path, bad):
    r = _cli("--json", str(tmp_path / bad))
    assert r.returncode == 2
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
