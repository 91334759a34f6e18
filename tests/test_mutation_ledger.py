"""The mutation ledger (``scripts/mutation_ledger.py``): scores only from recorded evidence.

Two parts: ``collect`` on synthetic run directories laid out as ``scripts/mutation.sh`` leaves
them (counts worked out by hand below), and the committed ledger ``results/mutation/*.json``,
whose counts must follow from its own per-mutant records and whose kill checks must name test
files that exist.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("mutation_ledger", os.path.join(ROOT, "scripts", "mutation_ledger.py"))
L = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(L)

MOD = "pkg/mod.py"


def _run_dir(tmp_path, name, codes, *, source="def f():\n    return 1\n", checks=(), head="abc1234"):
    d = tmp_path / name
    (d / "pkg").mkdir(parents=True)
    (d / "pkg" / "mod.py").write_text(source)
    (d / "mutants" / "pkg").mkdir(parents=True)
    (d / "mutants" / "pkg" / "mod.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    (d / "run-info.txt").write_text(
        f"group=g head={head} start=2026-12-01T10:00:00Z end=2026-12-01T10:10:00Z wall_s=600 children=1 filter=all\n"
    )
    if checks:
        with open(d / "kill-checks.jsonl", "w") as fh:
            for mutant, result in checks:
                rec = {"mutant": mutant, "result": result, "selection": "tests/test_k.py -k x", "fresh": False}
                fh.write(json.dumps({**rec, "utc": "2026-12-01T11:00:00Z", "killers_sha256": {}}) + "\n")
    return str(d)


def _m(i):
    return f"pkg.mod.x_f__mutmut_{i}"


CODES = {_m(1): 1, _m(2): 0, _m(3): 0, _m(4): 0, _m(5): 36, _m(6): None, _m(7): 33, _m(8): 3}


def test_a_segfault_counts_as_killed_only_through_a_recorded_check(tmp_path):
    codes = {_m(1): -11, _m(2): -11}
    checks = [("", "original-passes"), (_m(1), "killed")]
    e = L.collect(MOD, [_run_dir(tmp_path, "r", codes, checks=checks)])
    assert e["survivors"][_m(1)]["disposition"] == "killed" and e["survivors"][_m(2)]["disposition"] == "open"
    assert e["counts"]["killed_by_run"] == 0 and e["counts"]["score"] == pytest.approx(1 / 2)


def test_counts_from_run_checks_and_equivalents(tmp_path):
    checks = [("", "original-passes"), (_m(2), "killed"), (_m(3), "survived")]
    d = _run_dir(tmp_path, "r", CODES, checks=checks)
    eq = tmp_path / "eq.json"
    eq.write_text(json.dumps({_m(4): "reads the same value"}))
    e = L.collect(MOD, [d], str(eq))
    c = e["counts"]
    # 8 mutants; _6 not checked -> 7 checked; run kills _1, _8 and the timeout _5 -> 3;
    # survivors _2 (checked kill), _3 (check survived: open), _4 (equivalent), _7 (no tests: open).
    assert (c["mutants"], c["checked"], c["not_reached"]) == (8, 7, 1)
    assert (c["killed_by_run"], c["killed_by_checked_tests"], c["equivalent"], c["open"]) == (3, 1, 1, 2)
    assert c["score"] == pytest.approx(4 / 7)
    assert c["score_excluding_equivalent"] == pytest.approx(4 / 6)
    assert e["survivors"][_m(2)]["disposition"] == "killed"
    assert e["survivors"][_m(3)]["disposition"] == "open"
    assert e["survivors"][_m(7)] == {"run": "no tests", "disposition": "open"}
    assert e["survivors"][_m(4)]["argument"] == "reads the same value"


def test_a_kill_after_a_failing_original_does_not_count(tmp_path):
    checks = [("", "original-fails"), (_m(2), "killed"), ("", "original-passes"), (_m(3), "killed")]
    e = L.collect(MOD, [_run_dir(tmp_path, "r", CODES, checks=checks)])
    assert e["survivors"][_m(2)]["disposition"] == "open"
    assert e["survivors"][_m(3)]["disposition"] == "killed"


def test_later_runs_fill_in_mutants_not_reached(tmp_path):
    a = _run_dir(tmp_path, "a", {_m(1): 1, _m(2): None, _m(3): None})
    b = _run_dir(tmp_path, "b", {_m(1): None, _m(2): 0, _m(3): 1})
    c = L.collect(MOD, [a, b])["counts"]
    assert (c["checked"], c["killed_by_run"], c["open"], c["not_reached"]) == (3, 2, 1, 0)


@pytest.mark.parametrize(
    "case",
    [
        "no-run-info",
        "equivalent-not-a-survivor",
        "equivalent-unknown",
        "equivalent-without-argument",
        "no-mutants",
    ],
)
def test_bad_input_is_refused(tmp_path, case):
    d = _run_dir(tmp_path, "r", CODES)
    eq = None
    runs = [d]
    if case == "no-run-info":  # and no mutants/: not a run at all
        import shutil

        os.remove(os.path.join(d, "run-info.txt"))
        shutil.rmtree(os.path.join(d, "mutants"))
    elif case.startswith("equivalent"):
        eq = tmp_path / "eq.json"
        arg = {"equivalent-not-a-survivor": {_m(1): "x"}, "equivalent-unknown": {_m(99): "x"}}
        eq.write_text(json.dumps(arg.get(case, {_m(2): " "})))
    elif case == "no-mutants":
        runs = [_run_dir(tmp_path, "r3", {"other.mod.x_g__mutmut_1": 1})]
    with pytest.raises(L.LedgerError):
        L.collect(MOD, runs, str(eq) if eq else None)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert L.main(["collect", MOD, str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mutation_ledger: ")
    d = _run_dir(tmp_path, "r", CODES)
    assert L.main(["collect", MOD, d, "--out", str(tmp_path / "no" / "such" / "dir" / "x.json")]) == 2


# ----------------------------------------------------------------------------- committed ledger

LEDGER = sorted(f for f in os.listdir(L.LEDGER_DIR) if f.endswith(".json")) if os.path.isdir(L.LEDGER_DIR) else []


@pytest.mark.parametrize("name", LEDGER)
def test_committed_ledger_counts_follow_from_its_records(name):
    with open(os.path.join(L.LEDGER_DIR, name), encoding="utf-8") as fh:
        e = json.load(fh)
    assert e["counts"] == L.counts(e)
    rs = e["run_status_counts"]
    assert sum(rs.values()) == e["counts"]["mutants"]
    assert e["runs"][-1]["mutants_of_module"] == e["counts"]["mutants"]  # the scored version's count
    assert len(e["survivors"]) == sum(rs.get(s, 0) for s in L.SURVIVING)
    for m, s in e["survivors"].items():
        assert m.startswith(L.module_name(e["module"]) + ".x")
        assert s["disposition"] in ("killed", "equivalent", "open")
        if s["disposition"] == "killed":
            files = L._selection_files(s["selection"])
            assert files, f"{m}: the kill check names no test file: {s['selection']!r}"
            for f in files:
                assert os.path.exists(os.path.join(ROOT, f)), f"{m}: killer file {f} is not in the repository"
        if s["disposition"] == "equivalent":
            assert s["argument"].strip()
    current = L._sha256(os.path.join(ROOT, e["module"]))
    if current != e["source_sha256"]:
        assert e["changed_since_run"], f"{e['module']} differs from the version its runs mutated: mark it changed"


def test_committed_ledger_has_one_file_per_module():
    modules = []
    for name in LEDGER:
        with open(os.path.join(L.LEDGER_DIR, name), encoding="utf-8") as fh:
            modules.append(json.load(fh)["module"])
    assert len(modules) == len(set(modules))


def test_recheck_refuses_a_missing_run_directory(tmp_path):
    checks = [("", "original-passes"), (_m(2), "killed")]
    e = L.collect(MOD, [_run_dir(tmp_path, "r", CODES, checks=checks)])
    assert e["survivors"][_m(2)]["check_dir"] == "r"
    with pytest.raises(L.LedgerError, match="no such run directory"):
        L.recheck(e, str(tmp_path / "elsewhere"))


def test_a_mutant_the_run_did_not_reach_counts_once_a_recorded_check_ran_it(tmp_path):
    codes = {_m(1): 1, _m(2): None, _m(3): None, _m(4): None}
    checks = [("", "original-passes"), (_m(2), "killed"), (_m(3), "survived")]
    e = L.collect(MOD, [_run_dir(tmp_path, "r", codes, checks=checks)])
    c = e["counts"]
    # _2 checked and killed, _3 checked and open, _4 never run anywhere: not reached.
    assert (c["checked"], c["killed_by_checked_tests"], c["open"], c["not_reached"]) == (3, 1, 1, 1)
    assert e["survivors"][_m(2)]["run"] == "not reached by the run; checked"
    assert c["score"] == pytest.approx(2 / 3)


def test_an_earlier_run_counts_only_for_functions_unchanged_since(tmp_path):
    """Two runs of two versions: g is the same in both, f changed. The earlier run's results and
    recorded checks are used for g only; f's come from the run of the scored (last) version."""
    old_src = "def f():\n    return 1\n\n\ndef g():\n    return 3\n"
    new_src = "def f():\n    return 2\n\n\ndef g():\n    return 3\n"
    g = "pkg.mod.x_g__mutmut_{}".format
    first = {_m(1): 1, _m(2): 1, g(1): 1, g(2): 0}
    second = {_m(1): 0, _m(2): None, g(1): None, g(2): None}
    checks_old = [("", "original-passes"), (g(2), "killed"), (_m(1), "killed")]
    a = _run_dir(tmp_path, "a", first, source=old_src, checks=checks_old)
    b = _run_dir(tmp_path, "b", second, source=new_src)
    e = L.collect(MOD, [a, b])
    c = e["counts"]
    # g: 1 killed by run a, 2 killed by a's recorded check; f: 1 survived in b (a's kill of f_1 is
    # for the old f), 2 not reached in b (a's result for the old f_2 is not used).
    assert (c["mutants"], c["checked"], c["not_reached"]) == (4, 3, 1)
    assert (c["killed_by_run"], c["killed_by_checked_tests"], c["open"]) == (1, 1, 1)
    assert e["survivors"][_m(1)]["disposition"] == "open"
    assert e["runs"][0]["functions_not_used"] == ["x_f"] and e["runs"][1]["functions_not_used"] == []
    assert e["source_sha256"] == e["runs"][1]["source_sha256"] != e["runs"][0]["source_sha256"]


def test_function_sources_keys_follow_mutmut_names(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def a():\n    pass\n\n\nclass K:\n    def b(self):\n        return 1\n")
    assert set(L.function_sources(str(f))) == {"x_a", "xǁKǁb"}


def test_checks_made_in_a_copy_of_the_run_count_for_that_run(tmp_path):
    import shutil

    d = _run_dir(tmp_path, "r", CODES)
    (tmp_path / "r" / "mutants" / "pkg" / "mod.py").write_text("mutated\n")
    copy = tmp_path / "r-check"
    shutil.copytree(d, copy)
    os.remove(copy / "run-info.txt")
    with open(copy / "kill-checks.jsonl", "w") as fh:
        for mutant, result in [("", "original-passes"), (_m(2), "killed")]:
            rec = {"mutant": mutant, "result": result, "selection": "tests/test_k.py", "fresh": False, "utc": "x"}
            fh.write(json.dumps({**rec, "killers_sha256": {}}) + "\n")
    e = L.collect(MOD, [d], check_dirs=[str(copy)])
    assert e["survivors"][_m(2)] == {**e["survivors"][_m(2)], "disposition": "killed", "check_dir": "r-check"}
    (copy / "mutants" / "pkg" / "mod.py").write_text("another mutated copy\n")
    with pytest.raises(L.LedgerError, match="not that of any of the runs"):
        L.collect(MOD, [d], check_dirs=[str(copy)])


def test_a_run_stopped_before_its_status_files_is_enumerated_from_its_mutated_copy(tmp_path):
    d = tmp_path / "r"
    (d / "pkg").mkdir(parents=True)
    (d / "pkg" / "mod.py").write_text("def f():\n    return 1\n\n\nclass K:\n    def g(self):\n        pass\n")
    (d / "mutants" / "pkg").mkdir(parents=True)
    (d / "mutants" / "pkg" / "mod.py").write_text(
        "def x_f__mutmut_1():\n    return 2\n\n\nclass K:\n    def xǁKǁg__mutmut_1(self):\n        pass\n"
    )
    with open(d / "kill-checks.jsonl", "w") as fh:
        for mutant, result in [("", "original-passes"), (_m(1), "killed")]:
            rec = {"mutant": mutant, "result": result, "selection": "tests/test_k.py", "fresh": False, "utc": "x"}
            fh.write(json.dumps({**rec, "killers_sha256": {}}) + "\n")
    e = L.collect(MOD, [str(d)])
    c = e["counts"]
    assert (c["mutants"], c["checked"], c["killed_by_checked_tests"], c["not_reached"]) == (2, 1, 1, 1)
    assert e["runs"][0]["filter"].startswith("run stopped")
