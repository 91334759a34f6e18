"""properties.shard: `fimtheory verify --shard I/N` then `--merge` gives the report of the same
tasks run serially (field for field, wall-clock seconds aside), whatever N; bad input exits 2.

Every run goes through the CLI in a fresh process. Hypothesis draws some values from the numeric
constants of the local (non-site-packages) modules loaded in ``sys.modules``
(``hypothesis.internal.conjecture.providers._get_local_constants``), so a seeded run's examples
depend on which project modules were imported before it — measured: importing
``torch_checks.eq1_commands`` between two runs of claim W changes the 9th instance drawn. Every
``fimtheory`` process imports the same modules (all command plugins), so fresh CLI processes
agree bit for bit, which is what shards on other machines are.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from fimtheory.cli import main
from fimtheory.errors import InputError
from properties import shard as S

CLAIMS = ["W", "SIGN"]  # two quick claims (< 1 s each at the quick profile)
SEED = 3


def _cli(*argv) -> subprocess.CompletedProcess:
    exe = shutil.which("fimtheory")
    cmd = [exe] if exe else [sys.executable, "-c", "import sys; from fimtheory.cli import main; sys.exit(main())"]
    claims = [a for c in CLAIMS for a in ("--claim", c)]
    return subprocess.run([*cmd, "verify", *claims, *argv], capture_output=True, text=True, timeout=300)


def _shards(tmp_path, count, k=2):
    paths = []
    for i in range(1, count + 1):
        p = tmp_path / f"shard{i}-of-{count}-k{k}.json"
        run = _cli("--profile", "quick", "--seed", str(SEED), "--shard", f"{i}/{count}", "--seeds-per-claim", str(k),
                   "--json", str(p))  # fmt: skip
        assert run.returncode == 0, run.stderr
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The serial run: every task in one process (shard 1 of 1), merged."""
    d = tmp_path_factory.mktemp("serial")
    (path,) = _shards(d, 1)
    return S.merge_documents([json.loads(open(path).read())])


@pytest.mark.parametrize("count", [2, 3])
def test_merged_shards_equal_the_serial_report(tmp_path, serial, count, capsys):
    paths = _shards(tmp_path, count)
    out = tmp_path / "merged.json"
    assert main(["verify", "--merge", *paths[::-1], "--json", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert S.without_timings(merged) == S.without_timings(serial)
    assert [c["id"] for c in merged["claims"]] == CLAIMS
    for c in merged["claims"]:
        assert c["status"] == "verified" and c["examples"] == c["examples_requested"] == 100
        assert [r["seed"] for r in c["runs"]] == [SEED, S.task_seed(SEED, c["id"], 1)]
    assert "W" in capsys.readouterr().out


def test_one_seed_per_claim_is_plain_verify(tmp_path):
    (path,) = _shards(tmp_path, 1, k=1)
    doc = S.merge_documents([json.loads(open(path).read())])
    plain_path = tmp_path / "plain.json"
    assert _cli("--profile", "quick", "--seed", str(SEED), "--json", str(plain_path)).returncode == 0
    plain = json.loads(plain_path.read_text())["claims"]
    for m, p in zip(doc["claims"], plain):
        for key in ("status", "examples", "examples_requested", "rejected", "worst_margin", "adjudicated", "ties",
                    "undecided", "max_dps", "adjudications", "not_met_reasons", "counterexample"):  # fmt: skip
            assert m[key] == p[key], key


def test_task_seeds_and_split_are_deterministic_and_independent_of_the_shard_count():
    tasks = S.plan_tasks(CLAIMS, profile="thorough", run_seed=7, seeds_per_claim=3)
    assert [t["max_examples"] for t in tasks[:3]] == [3334, 3333, 3333]
    assert tasks == S.plan_tasks(CLAIMS, profile="thorough", run_seed=7, seeds_per_claim=3)
    for cid in CLAIMS:  # run 0 of each claim uses the run seed, as plain `verify --seed 7` does
        seeds = [t["seed"] for t in tasks if t["claim"] == cid]
        assert seeds[0] == 7 and len(set(seeds)) == 3
    for n in (1, 2, 4, 7):
        dealt = [t for i in range(1, n + 1) for t in S.shard_of(tasks, i, n)]
        assert sorted(dealt, key=lambda t: (t["claim"], t["j"])) == sorted(tasks, key=lambda t: (t["claim"], t["j"]))
    assert S.task_seed(7, "W", 1) != S.task_seed(8, "W", 1)


def _run(status, **kw):
    rep = {"status": status, "examples_requested": 50, "examples": 50, "rejected": 0, "worst_margin": 1.0,
           "adjudicated": 0, "ties": 0, "undecided": 0, "max_dps": 50, "adjudications": [],
           "undecided_instances": [], "counterexample": None, "seconds": 0.1, "not_met_reasons": {},
           "targeting": True, "stop_reason": "", "hypothesis_statistics": {}, "error": ""}  # fmt: skip
    rep.update(kw)
    return {"claim": "W", "j": 0, "seed": 1, "max_examples": 50, "report": rep}


@pytest.mark.parametrize(
    "statuses, expected",
    [
        (["verified", "verified"], "verified"),
        (["verified", "inconclusive"], "inconclusive"),
        (["inconclusive", "falsified"], "falsified"),
        (["error", "falsified"], "falsified"),
        (["error", "verified"], "error"),
        (["hypotheses not met", "hypotheses not met"], "hypotheses not met"),
        (["hypotheses not met", "verified"], "inconclusive"),
    ],
)
def test_merge_verdicts(statuses, expected):
    runs = [_run(s, worst_margin=float(i), counterexample={"i": i} if s == "falsified" else None)
            for i, s in enumerate(statuses)]  # fmt: skip
    m = S._merge_claim("W", runs)
    assert m["status"] == expected and m["examples"] == 100 and m["worst_margin"] == 0.0
    if expected == "falsified":
        assert m["counterexample"] == {"i": statuses.index("falsified")}
    if expected == "inconclusive":
        assert m["stop_reason"]


def test_merge_refuses_incomplete_or_foreign_shards(tmp_path):
    a, b = _shards(tmp_path, 2, k=1)
    docs = [json.loads(open(p).read()) for p in (a, b)]
    with pytest.raises(InputError, match="exactly once"):
        S.merge_documents([docs[0]])
    with pytest.raises(InputError, match="exactly once"):
        S.merge_documents([docs[0], docs[0]])
    other = dict(docs[1], seed=SEED + 1)
    with pytest.raises(InputError, match="another run"):
        S.merge_documents([docs[0], other])
    forged = json.loads(json.dumps(docs[1]))
    forged["tasks"][0]["seed"] += 1
    with pytest.raises(InputError, match="not as planned"):
        S.merge_documents([docs[0], forged])
    with pytest.raises(InputError, match="shard report"):
        S.merge_documents([{"claims": []}])


@pytest.mark.parametrize(
    "extra",
    [
        ["--shard", "0/2", "--json", "x.json"],
        ["--shard", "3/2", "--json", "x.json"],
        ["--shard", "1-2", "--json", "x.json"],
        ["--shard", "1/2"],  # no --json
        ["--shard", "1/2", "--json", "x.json", "--profile", "ci", "--seeds-per-claim", "2"],
        ["--merge", "does-not-exist.json"],
        ["--seeds-per-claim", "2"],  # without --shard
        ["--shard", "1/2", "--json", "x.json", "--merge", "a.json"],
    ],
)
def test_bad_shard_options_exit_2(tmp_path, monkeypatch, extra, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--claim", "W", *extra]) == 2
    assert capsys.readouterr().err.strip()
