"""The stored counterexample corpus replays bit-exactly and stays certified; replay detects
tampered and malformed files; the certifier's enclosures contain the mp margins; the
optimiser falls back correctly; the hunt CLI writes replayable files."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from fimtheory.claims import REGISTRY, get_claim
from fimtheory.instances import DepartureInstance, MatrixPerturbation
from properties import counterexamples as cx
from properties.certify import (
    Certificate,
    _hi,
    _lo,
    _m_p32,
    certify,
    iv_scores,
    outward_str,
    supported,
    top_pair_enclosure,
    working_precision,
)
from properties.claim_strategies import strategy_for

CORPUS = Path(__file__).parent / "counterexamples"
WEAKENINGS = {w.id: (c, w) for c in REGISTRY.values() for w in c.weakenings}
# The corpus directory is shared with other stored findings (e.g. param-*.json of the
# parameter-level study); this suite replays the files named after a registry weakening.
FILES = sorted(p for p in CORPUS.glob("*.json") if p.stem in WEAKENINGS)


class _Args:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_corpus_is_not_empty():
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_corpus_replays_and_is_certified(path):
    rec = json.loads(path.read_text())
    assert rec["weakening"] == path.stem
    assert rec["certificate"]["certified"] is True
    for key in ("instance", "float_margin", "float_margin_hex", "dps", "seed", "profile", "versions", "timestamp"):
        assert key in rec
    assert rec["dps"] >= 50
    assert set(rec["versions"]) >= {"numpy", "scipy", "mpmath", "hypothesis", "python", "fimtheory"}
    r = cx.replay_file(path)
    assert r.status == "reproduced", r.message
    # the stored decimal endpoints were rounded outward: they still enclose the exact ones
    c = rec["certificate"]
    with mpmath.workdps(60):
        assert mpmath.mpf(c["lo"]) <= _exact(c["lo_exact"]) <= _exact(c["hi_exact"]) <= mpmath.mpf(c["hi"])
        assert _exact(c["hi_exact"]) < 0 or c["exact_zero"]


def _exact(s):
    if s == "0":
        return mpmath.mpf(0)
    man, exp = s.split("*2^")
    return mpmath.ldexp(mpmath.mpf(int(man)), int(exp))


def test_replay_detects_tampered_file(tmp_path):
    src = CORPUS / "W-no-lambda-min.json"
    rec = json.loads(src.read_text())
    entries = rec["instance"]["fields"]["A"]["ndarray"]
    k = next(j for j, h in enumerate(entries) if "0x1." in h)  # first normal entry of A
    hx = entries[k]
    # change the first hex digit of its mantissa
    i = hx.index("0x1.") + 4
    entries[k] = hx[:i] + ("8" if hx[i] != "8" else "9") + hx[i + 1 :]
    bad = tmp_path / "W-no-lambda-min.json"
    bad.write_text(json.dumps(rec))
    assert cx.replay_command(_Args(files=[str(src)])) == 0
    assert cx.replay_command(_Args(files=[str(bad)])) == 1
    assert cx.replay_command(_Args(files=[str(src), str(bad)])) == 1


def test_replay_detects_tampered_margin(tmp_path):
    src = CORPUS / "R-any-vector.json"
    rec = json.loads(src.read_text())
    m = float.fromhex(rec["float_margin_hex"])
    rec["float_margin_hex"] = np.nextafter(m, 0.0).hex()
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps(rec))
    assert cx.replay_command(_Args(files=[str(bad)])) == 1


def test_replay_malformed_files_exit_2(tmp_path, capsys):
    a = tmp_path / "a.json"
    a.write_text("{not json")
    b = tmp_path / "b.json"
    rec = json.loads((CORPUS / "W-no-lambda-min.json").read_text())
    del rec["instance"]
    b.write_text(json.dumps(rec))
    c = tmp_path / "c.json"
    rec = json.loads((CORPUS / "W-no-lambda-min.json").read_text())
    rec["weakening"] = "W-nonexistent"
    c.write_text(json.dumps(rec))
    d = tmp_path / "missing.json"
    for f in (a, b, c, d):
        assert cx.replay_command(_Args(files=[str(f)])) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 4 and all(line.startswith("malformed") for line in out)
    # malformed outranks not-reproduced
    assert cx.replay_command(_Args(files=[str(CORPUS / "W-no-lambda-min.json"), str(a)])) == 2


def test_every_weakening_has_a_certifier():
    for wid in WEAKENINGS:
        assert supported(wid), wid


# ---------------------------------------------------------------- soundness of enclosures

_SOUND = [
    "W-no-lambda-min",
    "R-any-vector",
    "S2-repeated-top",
    "SIGN-lambda1-denominator",
    "T4.3a-per-draw",
    "T4.3b-nonzero-mean",
    "AH-accurate",
]


@pytest.mark.parametrize("wid", _SOUND)
def test_enclosure_contains_mp_margin(wid):
    """On arbitrary instances (mostly *not* counterexamples) the certified interval contains
    the 60-digit mp margin of the weakening."""
    _, w = WEAKENINGS[wid]
    seen = []

    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(strategy_for(w.strategy))
    def prop(inst):
        out = w.evaluate(inst)
        if not out.hypotheses_met:
            return
        cert = certify(w, inst, 50, ladder=(50,))
        if cert.hi is None:
            return
        m = w.evaluate_mp(inst, 60)
        with mpmath.workdps(60):
            tol = mpmath.mpf(10) ** -40 * (1 + abs(m))
            assert cert.lo - tol <= m <= cert.hi + tol, (cert.short(), m)
        seen.append(cert)

    prop()
    assert seen, f"no instance of {wid} met the hypotheses"


def test_top_pair_a2_on_non_diagonal_matrix():
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    A = Q @ np.diag([3.0, 1.5, 1.0, 0.2, -0.7]) @ Q.T
    A = 0.5 * (A + A.T)
    E = rng.standard_normal((5, 5))
    E = 0.5 * (E + E.T)
    from fimtheory.claims import _mp_coefficients
    from fimtheory.highprec import mp_eigh, mp_matrix

    with working_precision(60):
        tp = top_pair_enclosure(A, E)
        eig = mp_eigh(A, 60)
        a2 = _mp_coefficients(eig, mp_matrix(E), 2)[1]
        v = eig.vector(0)
        e11 = (v.T * mp_matrix(E) * v)[0, 0]
        assert _lo(tp.a2) <= a2 <= _hi(tp.a2)
        assert _lo(tp.e11) <= e11 <= _hi(tp.e11)
        assert _hi(tp.a2) - _lo(tp.a2) < mpmath.mpf(10) ** -30
        assert 0 < _hi(tp.sin_bound) < mpmath.mpf(10) ** -30


def test_t43c_exact_zero_proof():
    c, w = WEAKENINGS["T4.3c-no-genericity"]
    from fimtheory.instances import NoiseEnsemble

    E = np.diag([0.3, -0.1, 0.2])
    inst = NoiseEnsemble(np.diag([2.0, 1.0, 0.5]), (E, -E), t=1.0)
    cert = certify(w, inst)
    assert cert.exact_zero and cert.certified and cert.method == "exact"


def test_certificate_not_certified_for_positive_margin():
    _, w = WEAKENINGS["W-no-lambda-min"]
    inst = MatrixPerturbation(np.diag([2.0, 1.0]), np.diag([0.1, 0.05]))
    cert = certify(w, inst)
    assert cert.sign == 1 and not cert.certified


def test_outward_rounding():
    with mpmath.workdps(50):
        x = mpmath.mpf(1) / 3
        lo, hi = outward_str(x, "down", 5), outward_str(x, "up", 5)
        assert lo == "3.3333e-1" and hi == "3.3334e-1"
        assert outward_str(-x, "down", 5) == "-3.3334e-1"
        assert outward_str(mpmath.mpf("9.99999"), "up", 3) == "1e+1"
    assert Certificate(mpmath.mpf(-2), mpmath.mpf(-1), 50, "x").certified


# ---------------------------------------------------------------- P3.2 in interval arithmetic


def test_iv_scores_match_numpy_models():
    from properties.strategies import _scores_linear, _scores_logistic, _scores_softmax

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 2))
    for model, fn, theta, y in [
        ("linear", _scores_linear, rng.standard_normal(2), rng.standard_normal(3)),
        ("logistic", _scores_logistic, rng.standard_normal(2), np.array([0.0, 1.0, 1.0])),
        ("softmax", _scores_softmax, rng.standard_normal(6), np.array([0, 2, 1])),
    ]:
        ref = fn(X, y, theta)
        with working_precision(50):
            G = iv_scores(model, X, y, theta)
            got = np.array([[float(G[i, j].mid) for j in range(G.cols)] for i in range(G.rows)])
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)


def test_p32_saturation_certified_negative():
    """docs/theory.md §4: logistic regression pushed along its own weight vector saturates."""
    theta = np.array([2.0, 0.5])
    U = (theta / np.linalg.norm(theta)).reshape(1, -1)
    inst = DepartureInstance("logistic", theta, (np.array([[1.0, 0.3]]),), (np.array([1.0]),), (U,), 8.0, steps=8)
    with working_precision(50):
        m = _m_p32(inst)
        assert _hi(m) < 0


# ---------------------------------------------------------------- hunt, optimiser, CLI


def test_optimiser_finds_violation_from_non_violating_seed():
    _, w = WEAKENINGS["W-no-lambda-min"]
    seed_inst = MatrixPerturbation(np.diag([2.0, 1.0, 0.5]), np.diag([0.1, 0.2, 0.05]))
    assert w.evaluate(seed_inst).margin > 0
    inst, m = cx.optimise(w, seed_inst, evals=200, seed=0)
    assert inst is not None and m < 0
    assert certify(w, inst).certified


def test_optimiser_keeps_ensemble_structure():
    from fimtheory.instances import NoiseEnsemble

    E = np.diag([0.3, -0.1, 0.2])
    inst = NoiseEnsemble(np.diag([2.0, 1.0, 0.5]), (E, -E), t=1.0)
    make, k = cx.parametrise(inst, np.random.default_rng(0))
    new = make(np.full(k, 0.1))
    assert new.exact_mean_is_zero()
    assert all(not np.count_nonzero(e - np.diag(np.diag(e))) for e in new.perturbations)


def test_hunt_cli_writes_replayable_files(tmp_path, capsys):
    code = cx.hunt_command(_Args(claim=["T4.3c", "S2"], profile="quick", seed=0, out=str(tmp_path), json=None))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "T4.3c-no-genericity" in out and "S2-repeated-top" in out
    files = sorted(tmp_path.glob("*.json"))
    assert [f.stem for f in files] == ["S2-repeated-top", "T4.3c-no-genericity"]
    assert cx.replay_command(_Args(files=[str(f) for f in files])) == 0


def test_unfalsified_weakening_is_reported_and_fails(monkeypatch, tmp_path, capsys):
    """A weakening that is in fact true must come out 'inconclusive' with its reason, exit 3,
    and the JSON report says so."""
    claim = get_claim("W")
    true_w = type(claim.weakenings[0])(
        "W-no-lambda-min", "(test) Weyl upper bound", "nothing", claim.evaluate, claim.evaluate_mp, claim.strategy
    )
    monkeypatch.setattr(cx, "all_weakenings", lambda ids=None: [(claim, true_w)])
    monkeypatch.setitem(cx.BUDGETS, "quick", {"max_examples": 10, "opt_evals": 30, "extra_seeds": 0})
    report = tmp_path / "report" / "hunt.json"
    report.parent.mkdir()
    code = cx.hunt_command(_Args(claim=["W"], profile="quick", seed=0, out=str(tmp_path), json=str(report)))
    out = capsys.readouterr().out
    assert code == cx.EXIT_UNSETTLED == 3
    assert "inconclusive: no counterexample within the quick budget" in out
    assert "NOT falsified/certified (inconclusive or error, exit 3): W-no-lambda-min" in out
    assert not list(tmp_path.glob("*.json"))
    doc = json.loads(report.read_text())
    assert doc["exit_status"] == 3 and doc["statuses"] == {"inconclusive": 1} and not doc["all_falsified"]
    (row,) = doc["weakenings"]
    assert row["status"] == "inconclusive" and row["reason"].startswith("no counterexample") and row["examples"] > 0


def test_stronger_readings_smoke(monkeypatch):
    monkeypatch.setitem(cx.READING_PROFILES, "quick", 12)
    rep = cx.stronger_readings("quick", seed=0)
    assert len(rep["readings"]) == 3
    for e in rep["readings"]:
        for s in e["models"].values():
            assert s["draws"] == s["lowered"] + s["raised"] + s["ties"]
            assert math.isnan(s["share_lowered"]) or 0 <= s["share_lowered"] <= 1
    assert "σ" in cx.format_readings(rep)


def test_copy_of_corpus_file_replays(tmp_path):
    dst = tmp_path / "copy.json"
    shutil.copy(CORPUS / "C-open-top.json", dst)
    assert cx.replay_command(_Args(files=[str(dst)])) == 0


def test_iv_scores_match_generated_models():
    # Both are part of the package (never skipped: a missing module is a broken install).
    from fimtheory import models

    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 2))
    for model, theta, y in [
        ("linear", rng.standard_normal(2), rng.standard_normal(3)),
        ("logistic", rng.standard_normal(2), np.array([0.0, 1.0, 1.0])),
        ("softmax", rng.standard_normal(6), np.array([0, 2, 1])),
    ]:
        ref = models.scores(model, X, y, theta)
        with working_precision(50):
            G = iv_scores(model, X, y, theta)
            got = np.array([[float(G[i, j].mid) for j in range(G.cols)] for i in range(G.rows)])
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)


def test_endpoint_strings_keep_full_precision():
    """Regression: re-wrapping a 50-digit mpf at the default precision rounded it to 53 bits."""
    from properties.certify import exact_str

    with mpmath.workdps(50):
        x = mpmath.mpf(1) / 3
    lo = outward_str(x, "down", 40)
    assert lo.startswith("3.333333333333333333333333333333333333333")
    man, _ = exact_str(x).split("*2^")
    assert int(man).bit_length() > 100


def test_undecided_adjudication_is_not_a_counterexample(monkeypatch):
    """An adjudication that cannot decide (holds None: "undecided" in the adjudication
    contract) must not be taken for a violation; only holds False is."""
    _, w = WEAKENINGS["W-no-lambda-min"]
    inst = MatrixPerturbation(np.diag([2.0, 1.0]), np.diag([-0.5, 0.1]))  # float margin < 0
    assert w.evaluate(inst).margin < 0
    for holds, violated in ((None, False), (True, False), (False, True)):
        monkeypatch.setattr(cx, "adjudicate", lambda *a, holds=holds, **k: (holds, mpmath.mpf(0)))
        assert cx._confirm(w, inst, 50) == (violated, w.evaluate(inst).margin), holds
