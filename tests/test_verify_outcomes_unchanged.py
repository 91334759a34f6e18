"""The verifier's speed-ups change no outcome: for every claim, a seeded run draws the same
instances and reaches the same float margins, adjudicated verdicts, mp margins, enclosures, dps
and reasons (one SHA-256 over all of them in call order, benchmarks.verify_throughput's outcome
digest) and the same report as the code before them (tests/data/verify_outcomes_before_speedups.json,
written by ``python -m benchmarks.verify_throughput fingerprints`` on the tree before the raw-tuple
eigensolver, the raw matrix product and the composite cache).

S2's entry was re-recorded (``outcome_fingerprints(["S2"])``) when S2's strategy began to draw
around its hypothesis 2η < γ (properties.claim_strategies.s2_hypothesis_band): new draws, one of
them "hypotheses not met", every adjudicated outcome still "holds"; no other entry changed.

A different Hypothesis / numpy / mpmath version draws or rounds differently: the record is then
not a reference, and the test says so (skip) instead of comparing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.verify_throughput import library_versions, outcome_fingerprints
from fimtheory.claims import REGISTRY

RECORD = json.loads((Path(__file__).parent / "data" / "verify_outcomes_before_speedups.json").read_text())


def test_the_record_covers_every_registered_claim():
    assert sorted(RECORD["claims"]) == sorted(REGISTRY)


@pytest.mark.parametrize("claim_id", sorted(RECORD["claims"]))
def test_outcomes_equal_the_record(claim_id):
    if library_versions() != RECORD["versions"]:
        pytest.skip(f"record made with {RECORD['versions']}, running {library_versions()}")
    from properties import hypothesis_speed

    hypothesis_speed.install()  # what `fimtheory verify --shard` runs with
    got = outcome_fingerprints([claim_id], seed=RECORD["seed"], max_examples=RECORD["max_examples"])[claim_id]
    want = RECORD["claims"][claim_id]
    assert got["report"] == want["report"]
    assert got["recorded"] == want["recorded"]
    assert got["outcome_digest"] == want["outcome_digest"]
