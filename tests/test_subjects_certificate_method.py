"""``Certificate.method`` names the weakening's own rigorous evaluator ``declared-enclosure``;
replay accepts files written before that name existed, which say ``eigenvalues`` for it, and
still rejects any other change of method and any change of the inputs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import mpmath
import pytest

from properties import counterexamples as cx
from properties.certify import DECLARED_ENCLOSURE, LEGACY_METHODS, Certificate, certify

CORPUS = Path(__file__).parent / "counterexamples"
#: Files written before the name existed: certified by a declared claim's enclosure, stored as "eigenvalues".
LEGACY_FILES = [CORPUS / "T4.3b-S-no-cubic.json", CORPUS / "T4.3b-S-second-order.json"]
#: Files certified by a subject-bound claim's own enclosure, stored as "declared-enclosure".
DECLARED_FILES = [
    CORPUS / "EF_tests.subjects_planted_logistic_score_missing_sigmoid.json",
    CORPUS / "W_score_tests.subjects_planted_logistic_score_batch_mean.json",
]


def _cert(method, lo=-2, hi=-1):
    return Certificate(mpmath.mpf(lo), mpmath.mpf(hi), 50, method)


def test_the_agreement_rule_accepts_only_the_old_spelling_of_the_same_method():
    assert LEGACY_METHODS == {"eigenvalues": DECLARED_ENCLOSURE}
    assert cx.enclosures_agree(_cert("eigenvalues"), _cert(DECLARED_ENCLOSURE))  # an old file, a new certifier
    assert cx.enclosures_agree(_cert(DECLARED_ENCLOSURE), _cert(DECLARED_ENCLOSURE))
    assert cx.enclosures_agree(_cert("eigenvalues"), _cert("eigenvalues"))
    assert not cx.enclosures_agree(_cert(DECLARED_ENCLOSURE), _cert("eigenvalues"))  # no way back
    assert not cx.enclosures_agree(_cert("top-pair"), _cert(DECLARED_ENCLOSURE))
    assert not cx.enclosures_agree(_cert("interval"), _cert(DECLARED_ENCLOSURE))
    assert not cx.enclosures_agree(_cert("eigenvalues"), _cert(DECLARED_ENCLOSURE, -4, -3))  # disjoint


@pytest.mark.parametrize("path", LEGACY_FILES, ids=lambda p: p.stem)
def test_old_files_saying_eigenvalues_replay_and_are_recertified_as_declared(path):
    rec = json.loads(path.read_text())
    assert rec["certificate"]["method"] == "eigenvalues"
    w, inst, _ = cx.load_counterexample(path)
    assert certify(w, inst, 50).method == DECLARED_ENCLOSURE  # the declared claim's own enclosure
    r = cx.replay_file(path)
    assert r.status == "reproduced", r.message


@pytest.mark.parametrize("path", DECLARED_FILES, ids=lambda p: p.stem)
def test_declared_enclosure_files_replay_and_tampering_is_rejected(path, tmp_path):
    rec = json.loads(path.read_text())
    assert rec["certificate"]["method"] == DECLARED_ENCLOSURE and rec["certificate"]["certified"] is True
    assert "@tests.subjects_planted:" in rec["weakening"]
    assert cx.replay_file(path).status == "reproduced"

    def replay(edit):
        bad = copy.deepcopy(rec)
        edit(bad)
        f = tmp_path / path.name
        f.write_text(json.dumps(bad))
        return cx.replay_file(f)

    # the same file in the old spelling still reproduces; any other method does not
    def old(r):
        r["certificate"]["method"] = "eigenvalues"

    def other(r):
        r["certificate"]["method"] = "top-pair"

    assert replay(old).status == "reproduced"
    r = replay(other)
    assert r.status == "not reproduced" and "disagrees" in r.message, r.message

    # one ulp of θ: the digest no longer matches
    def ulp(r):
        h = r["instance"]["fields"]["theta"]["ndarray"]
        h[0] = float.fromhex(h[0]).__add__(abs(float.fromhex(h[0])) * 2.0**-52).hex()

    r = replay(ulp)
    assert r.status == "not reproduced" and "digest mismatch" in r.message, r.message

    # the subject moved to the correct score function: the digest covers the name
    def moved(r):
        r["weakening"] = r["weakening"].split("@")[0] + "@tests.subjects_planted:logistic_score"

    r = replay(moved)
    assert r.status == "not reproduced" and "digest mismatch" in r.message, r.message

    # a forger who also recomputes the digest is caught by the re-run of the correct subject
    from properties.serialize import counterexample_inputs, inputs_digest

    def forged(r):
        moved(r)
        r["inputs_sha256"] = inputs_digest(counterexample_inputs(r["claim"], r["weakening"], r["instance"]))

    r = replay(forged)
    assert r.status == "not reproduced", r.message


def test_builtin_certifiers_keep_their_method_names():
    for wid, method in (("W-no-lambda-min", "eigenvalues"), ("S3-leading-only", "top-pair"), ("C-open-top", "exact")):
        w, inst, rec = cx.load_counterexample(CORPUS / f"{wid}.json")
        assert rec["certificate"]["method"] == method
        assert certify(w, inst, 50).method == method
