"""benchmarks.verify_throughput: the tasks mode measures one seed-task per claim with the outcome
digest (equal on a rerun, different for another seed), compare projects the shards from two records
and flags a changed digest, and GNU time's report is parsed."""

from __future__ import annotations

import json

from benchmarks import verify_throughput as VT


def _tasks(tmp_path, name, seed):
    out = tmp_path / f"{name}.json"
    argv = ["tasks", "--claim", "KL-SORTED", "--claim", "W", "--profile", "quick", "--seeds-per-claim", "4",
            "--seed", str(seed), "--out", str(out)]  # fmt: skip
    assert VT.main(argv) == 0
    return out, json.loads(out.read_text())


def test_tasks_digests_are_reproducible_and_compare_projects(tmp_path):
    a_path, a = _tasks(tmp_path, "a", 5)
    b_path, b = _tasks(tmp_path, "b", 5)
    c_path, _ = _tasks(tmp_path, "c", 6)
    assert [t["claim"] for t in a["tasks"]] == ["KL-SORTED", "W"]
    for ta, tb in zip(a["tasks"], b["tasks"]):
        assert ta["max_examples"] == 25 and ta["cpu_seconds"] > 0 and ta["recorded"]["targets"] >= 25
        assert (ta["outcome_digest"], ta["report_digest"]) == (tb["outcome_digest"], tb["report_digest"])
    out = tmp_path / "cmp.json"
    assert VT.main(["compare", "--before", str(a_path), "--after", str(b_path), "--after-gmpy2", str(c_path),
                    "--out", str(out)]) == 0  # fmt: skip
    doc = json.loads(out.read_text())
    assert [r["identical_after"] for r in doc["per_claim"]] == [True, True]
    assert not doc["per_claim"][0]["identical_after_gmpy2"]  # another seed draws other examples
    proj = doc["projection"]["before"]
    assert len(proj["cpu_seconds_per_shard"]) == 2
    assert abs(sum(proj["cpu_seconds_per_shard"]) - proj["cpu_seconds_total"]) < 0.5


def test_gnu_time_report_is_parsed():
    text = """\tUser time (seconds): 769.22
\tSystem time (seconds): 1.73
\tPercent of CPU this job got: 14%
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:29:00
\tMaximum resident set size (kbytes): 107620
\tExit status: 0
"""
    assert VT._parse_gnu_time(text) == {"user_s": "769.22", "system_s": "1.73", "wall": "1:29:00",
                                        "max_rss_kb": "107620", "cpu_percent": "14", "exit_status": "0"}  # fmt: skip
