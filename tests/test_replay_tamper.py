"""A stored counterexample is tamper-evident: replay rejects any change of any input.

For every file of ``tests/counterexamples`` (weakening counterexamples and the parameter-level
``param-*.json``):

* the untampered file reproduces;
* each input array with one entry moved by one ulp (``np.nextafter``; integer arrays by one)
  — for every entry in turn — and each scalar input likewise, does not reproduce: the digest
  of the exact inputs no longer matches;
* the same changes with the digest *recomputed* (a forger who edits inputs and digest) are
  still rejected wherever the change moves the exact margin — checked against the weakening's
  own 60-digit mp evaluation, independent of the certifier — by the bit-exact float margin
  and the re-certification's agreement with the stored enclosure;
* an edited stored enclosure (hi > 0, or shifted away from the true margin) is rejected.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import mpmath
import numpy as np
import pytest

from fimtheory.errors import FimTheoryError
from properties import counterexamples as cx
from properties import parameter_level as pl
from properties.certify import exact_str, outward_str
from properties.serialize import counterexample_inputs, inputs_digest, instance_from_json

CORPUS = Path(__file__).parent / "counterexamples"
FILES = sorted(CORPUS.glob("*.json"))
WEAKENING_FILES = [p for p in FILES if not p.stem.startswith("param-")]
PARAM_FILES = [p for p in FILES if p.stem.startswith("param-")]
DIGEST_MISMATCH = "does not reproduce: inputs changed (digest mismatch"


def _bump(h: str) -> str:
    """One ulp up of a float.hex string (±inf one ulp toward 0; NaN, which has no
    neighbour, becomes 0.0)."""
    x = float.fromhex(h)
    if np.isnan(x):
        return (0.0).hex()
    with np.errstate(over="ignore"):  # the largest float moves to +inf: still a change
        return float(np.nextafter(x, 0.0 if np.isinf(x) else np.inf)).hex()


def _replay(tmp_path, rec, name):
    f = tmp_path / name
    f.write_text(json.dumps(rec))
    return cx.replay_file(f)


# --------------------------------------------------------------------------------------
# tamper generators: (label, mutate(record) -> None)
# --------------------------------------------------------------------------------------


def _weakening_tampers(rec, *, every_entry: bool = False):
    """One-ulp (or +1) change of one entry of every input array and of every scalar input
    of a weakening counterexample. For symmetric matrices the diagonal entry of largest
    magnitude is moved (the instance stays valid, so the forged-digest test reaches the
    margin); other arrays move their entry of largest magnitude. ``every_entry``: one tamper
    per entry of every array instead."""
    out = []

    def visit(node_get, label):
        node = node_get(rec)
        if isinstance(node, dict) and "ndarray" in node:
            shape = node["shape"]
            if node["dtype"] == "float64":
                vals = np.array([float.fromhex(h) for h in node["ndarray"]])
                if not vals.size:
                    return
                if every_entry:
                    ks = range(vals.size)
                elif len(shape) == 2 and shape[0] == shape[1]:
                    n = shape[0]
                    ks = [max(range(n), key=lambda i: abs(vals[i * n + i])) * (n + 1)]
                else:
                    ks = [int(np.argmax(np.abs(vals)))]
                for k in ks:

                    def mut(r, node_get=node_get, k=k):
                        nd = node_get(r)
                        nd["ndarray"][k] = _bump(nd["ndarray"][k])

                    out.append((f"{label}[{k}]+ulp", mut))
            elif node["ndarray"]:
                for k in range(len(node["ndarray"])) if every_entry else [0]:

                    def mut(r, node_get=node_get, k=k):
                        node_get(r)["ndarray"][k] += 1

                    out.append((f"{label}[{k}]+1", mut))
        elif isinstance(node, dict) and "float" in node:

            def mut(r, node_get=node_get):
                nd = node_get(r)
                nd["float"] = _bump(nd["float"])

            out.append((f"{label}+ulp", mut))
        elif isinstance(node, dict) and "seq" in node:
            for i in range(len(node["seq"])):
                visit(lambda r, g=node_get, i=i: g(r)["seq"][i], f"{label}[{i}]")

    fields = rec["instance"]["fields"]
    for key in fields:
        value = fields[key]
        getter = lambda r, key=key: r["instance"]["fields"][key]  # noqa: E731
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):

            def mut(r, key=key):
                r["instance"]["fields"][key] += 1

            out.append((f"{key}+1", mut))
        elif isinstance(value, str):

            def mut(r, key=key):
                r["instance"]["fields"][key] += "x"

            out.append((f"{key}+'x'", mut))
        else:
            visit(getter, key)
    return out


def _param_tampers(rec, *, every_entry: bool = False):
    """One ulp of the largest entry of X and θ (``every_entry``: of each entry), one label
    changed (each label), one ulp of step_unit."""
    out = []
    for key in ("X", "theta"):
        vals = np.abs([float.fromhex(h) for h in rec[key]["hex"]])
        for k in range(vals.size) if every_entry else [int(np.argmax(vals))]:

            def mut(r, key=key, k=k):
                r[key]["hex"][k] = _bump(r[key]["hex"][k])

            out.append((f"{key}[{k}]+ulp", mut))

    for k in range(len(rec["y"])) if every_entry else [0]:

        def flip(r, k=k):
            r["y"][k] = 1 - r["y"][k] if r["model"] != "softmax" else (r["y"][k] + 1) % 2

        out.append((f"y[{k}] changed", flip))

    def step(r):
        r["step_unit"] = _bump(r["step_unit"])

    out.append(("step_unit+ulp", step))
    return out


def _forge_digest(rec):
    if str(rec.get("format", "")).startswith("fimtheory.parameter_level/"):
        rec["inputs_sha256"] = pl.param_inputs_digest(rec)
    else:
        rec["inputs_sha256"] = inputs_digest(counterexample_inputs(rec["claim"], rec["weakening"], rec["instance"]))


# --------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------


def test_corpus_covers_weakenings_and_parameter_level():
    assert len(WEAKENING_FILES) >= 15 and len(PARAM_FILES) == 3


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_untampered_file_reproduces(path):
    r = cx.replay_file(path)
    assert r.status == "reproduced" and r.message.startswith("reproduces:"), r.message
    rec = json.loads(path.read_text())
    assert len(rec["inputs_sha256"]) == 64 and rec["inputs_digest"] == "sha256"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_one_ulp_input_change_does_not_reproduce(path, tmp_path):
    rec = json.loads(path.read_text())
    tampers = (_param_tampers if path in PARAM_FILES else _weakening_tampers)(rec, every_entry=True)
    assert tampers
    for label, mut in tampers:
        bad = copy.deepcopy(rec)
        mut(bad)
        assert bad != rec, label
        r = _replay(tmp_path, bad, path.name)
        assert r.status == "not reproduced" and r.message.startswith(DIGEST_MISMATCH), (label, r.message)
        assert r.code == cx.EXIT_FAILED


def _mp_margin(w, inst):
    try:
        out = w.evaluate(inst)
        if not out.hypotheses_met:
            return None
        return w.evaluate_mp(inst, 60)
    except (FimTheoryError, ValueError, ZeroDivisionError):
        return None


@pytest.mark.parametrize("path", WEAKENING_FILES, ids=[p.stem for p in WEAKENING_FILES])
def test_forged_digest_caught_where_the_margin_moves(path, tmp_path):
    """Inputs and digest both edited: wherever the exact margin moves (by the weakening's own
    60-digit evaluation, not the certifier), replay still says "does not reproduce"."""
    rec = json.loads(path.read_text())
    w, inst, _ = cx.load_counterexample(path)
    m0 = w.evaluate_mp(inst, 60)
    moved = 0
    for label, mut in _weakening_tampers(rec):
        bad = copy.deepcopy(rec)
        mut(bad)
        _forge_digest(bad)
        r = _replay(tmp_path, bad, path.name)
        try:
            new_inst = instance_from_json(bad["instance"])
        except (FimTheoryError, TypeError, ValueError):
            assert r.status != "reproduced", (label, r.message)
            continue
        m1 = _mp_margin(w, new_inst)
        with mpmath.workdps(60):
            if m1 is None or abs(m1 - m0) > mpmath.mpf(10) ** -40 * (1 + abs(m0)):
                moved += 1
                assert r.status != "reproduced", (label, r.message)
            elif r.status == "reproduced":
                # the edit did not move the margin: the forged file is itself a certified
                # counterexample with the same margin, and replay says exactly that
                assert "reproduces:" in r.message
    # every corpus file has an input whose one-ulp change moves the margin (so this test
    # exercises the re-certification on every file, not only the digest)
    assert moved > 0, "no tamper moved the margin"


@pytest.mark.parametrize("path", PARAM_FILES, ids=[p.stem for p in PARAM_FILES])
def test_forged_digest_parameter_level(path, tmp_path):
    rec = json.loads(path.read_text())
    for label, mut in _param_tampers(rec):
        bad = copy.deepcopy(rec)
        mut(bad)
        _forge_digest(bad)
        r = _replay(tmp_path, bad, path.name)
        assert r.status == "not reproduced", (label, r.message)
        assert "digest" not in r.message, (label, r.message)


def test_param_logistic_with_x0_doubled_does_not_reproduce(tmp_path):
    path = CORPUS / "param-logistic.json"
    rec = json.loads(path.read_text())
    for forge in (False, True):
        bad = copy.deepcopy(rec)
        bad["X"]["hex"][0] = (2 * float.fromhex(bad["X"]["hex"][0])).hex()
        if forge:
            _forge_digest(bad)
        r = _replay(tmp_path, bad, path.name)
        assert r.status == "not reproduced", r.message
        assert r.message.startswith(DIGEST_MISMATCH) != forge, r.message


def _set_interval(cert: dict, lo, hi):
    with mpmath.workdps(80):
        lo, hi = mpmath.mpf(lo), mpmath.mpf(hi)
        cert["lo_exact"], cert["hi_exact"] = exact_str(lo), exact_str(hi)
        cert["lo"], cert["hi"] = outward_str(lo, "down"), outward_str(hi, "up")


@pytest.mark.parametrize("path", WEAKENING_FILES, ids=[p.stem for p in WEAKENING_FILES])
def test_edited_enclosure_is_rejected(path, tmp_path):
    rec = json.loads(path.read_text())
    # hi moved above 0: the stored enclosure no longer certifies
    bad = copy.deepcopy(rec)
    _set_interval(bad["certificate"], "-1", "0.5")
    bad["certificate"]["exact_zero"] = False
    r = _replay(tmp_path, bad, path.name)
    assert r.status == "not reproduced" and "stored enclosure" in r.message, r.message
    # a negative enclosure far from the true margin: certifies on its own, disagrees with
    # the re-certification
    bad = copy.deepcopy(rec)
    _set_interval(bad["certificate"], "-1e6", "-9e5")
    bad["certificate"]["exact_zero"] = False
    r = _replay(tmp_path, bad, path.name)
    assert r.status == "not reproduced" and "disagrees" in r.message, r.message
    # decimal endpoints that no longer enclose the exact ones: malformed
    bad = copy.deepcopy(rec)
    bad["certificate"]["hi"] = "-1e6"
    r = _replay(tmp_path, bad, path.name)
    assert r.status == "malformed" and "do not enclose" in r.message, r.message


@pytest.mark.parametrize("path", PARAM_FILES, ids=[p.stem for p in PARAM_FILES])
def test_edited_parameter_level_enclosure_is_rejected(path, tmp_path):
    rec = json.loads(path.read_text())
    bad = copy.deepcopy(rec)
    c = bad["c2_certificate"]
    with mpmath.workdps(80):
        c["c2_hi_exact"] = exact_str(mpmath.mpf("0.5"))
        c["c2_hi"] = "0.5"
    r = _replay(tmp_path, bad, path.name)
    assert r.status == "not reproduced" and "stored c2 enclosure" in r.message, r.message
    bad = copy.deepcopy(rec)
    c = bad["c2_certificate"]
    with mpmath.workdps(80):
        c["c2_lo_exact"], c["c2_hi_exact"] = exact_str(mpmath.mpf(-7)), exact_str(mpmath.mpf(-6))
        c["c2_lo"], c["c2_hi"] = "-7", "-6"
    r = _replay(tmp_path, bad, path.name)
    assert r.status == "not reproduced" and "disagrees" in r.message, r.message


def test_float_margin_edit_is_rejected(tmp_path):
    path = CORPUS / "R-any-vector.json"
    rec = json.loads(path.read_text())
    rec["float_margin_hex"] = _bump(rec["float_margin_hex"])
    r = _replay(tmp_path, rec, path.name)
    assert r.status == "not reproduced" and "float margin" in r.message, r.message


def test_old_format_without_digest_is_malformed(tmp_path):
    rec = json.loads((CORPUS / "W-no-lambda-min.json").read_text())
    del rec["inputs_sha256"]
    assert _replay(tmp_path, rec, "W-no-lambda-min.json").status == "malformed"
    rec = json.loads((CORPUS / "param-softmax.json").read_text())
    rec["format"] = "fimtheory.parameter_level/1 (replay: properties.parameter_level.replay_counterexample)"
    assert _replay(tmp_path, rec, "param-softmax.json").status == "malformed"


class _Adj:
    def __init__(self, holds, enclosure, reason="stub"):
        self.holds, self.enclosure, self.reason = holds, enclosure, reason

    def __iter__(self):
        yield self.holds
        yield mpmath.mpf(0)


@pytest.mark.parametrize(
    "adj, why",
    [
        (_Adj(True, None, "holds"), "does not certify"),
        (_Adj(None, None, "undecided"), "does not certify"),
        (_Adj(False, (mpmath.mpf(-9), mpmath.mpf(-8))), "disagrees"),
    ],
)
def test_replay_requires_the_independent_adjudicator(monkeypatch, adj, why):
    """Step 5: the adjudicator's own interval evaluators must confirm the violation, with an
    enclosure that meets the stored one (a certifier bug alone cannot make a file replay)."""
    path = CORPUS / "R-any-vector.json"
    assert cx.replay_file(path).status == "reproduced"
    monkeypatch.setattr(cx, "adjudicate", lambda *a, **k: adj)
    r = cx.replay_file(path)
    assert r.status == "not reproduced" and why in r.message, r.message
