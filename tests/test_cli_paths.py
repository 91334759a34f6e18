"""Command-line conventions shared by every sub-command: output paths and seeds are checked
before any work (one line, exit 2), every option has help, a closed pipe ends quietly,
progress shows when stderr is not a terminal, and verify's exit statuses."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import pytest

from fimtheory import cli

PATH_OPTIONS = [  # (command, option, needs a file (True) or a directory (False))
    ("verify", "--json", True),
    ("check-models", "--json", True),
    ("counterexamples", "--out", False),
    ("inflation", "--out", False),
    ("eq1-study", "--json", True),
    ("paper-data", "--json", True),
]


def _run(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "fimtheory", *args], capture_output=True, text=True, timeout=timeout)


def _bad_paths(tmp_path, needs_file: bool):
    regular = tmp_path / "regular-file"
    regular.write_text("keep me\n")
    cases = {
        "missing parent directory": str(tmp_path / "no-such-dir" / "x.json"),
        "parent is a regular file": str(regular / "x.json"),
    }
    if needs_file:
        cases["a directory where a file is needed"] = str(tmp_path)
    else:
        cases["a regular file where a directory is needed"] = str(regular)
    if os.path.isdir("/proc"):  # unwritable even for root
        cases["unwritable location"] = "/proc/fimtheory-test-output"
    return cases


@pytest.mark.parametrize(("command", "option", "needs_file"), PATH_OPTIONS)
def test_bad_output_paths_exit_2_in_one_line_before_any_work(command, option, needs_file, tmp_path, capsys):
    for what, path in _bad_paths(tmp_path, needs_file).items():
        t0 = time.perf_counter()
        with pytest.raises(SystemExit) as exc:
            cli.main([command, option, path])
        assert exc.value.code == 2, what
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1, (what, err)
        assert err[0].startswith(f"fimtheory: error: argument {option}: "), (what, err)
        assert time.perf_counter() - t0 < 5, f"{what}: the check must come before the work"
    assert (tmp_path / "regular-file").read_text() == "keep me\n"  # nothing was overwritten


def test_verify_json_in_missing_directory_subprocess_is_fast_one_line_no_traceback():
    t0 = time.perf_counter()
    r = _run("verify", "--claim", "W", "--json", "/nonexistent/dir/x.json")
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "/nonexistent/dir" in lines[0] and "does not exist" in lines[0]
    assert r.stdout == ""  # no table: nothing ran
    assert time.perf_counter() - t0 < 30


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a mode-0500 directory")
def test_read_only_directory_is_rejected(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(SystemExit):
            cli.main(["verify", "--json", str(ro / "x.json")])
        assert "not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_path_checks_accept_good_paths_and_modify_nothing(tmp_path):
    existing = tmp_path / "old.json"
    existing.write_text("old")
    assert cli.check_output_file(str(existing)) == str(existing)
    assert existing.read_text() == "old"
    assert cli.check_output_file(str(tmp_path / "new.json")) == str(tmp_path / "new.json")
    assert not (tmp_path / "new.json").exists()
    assert cli.check_output_file(os.devnull) == os.devnull
    assert cli.check_output_dir(str(tmp_path)) == str(tmp_path)
    assert cli.check_output_dir(str(tmp_path / "fresh")) == str(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]  # no probe file left behind
    with pytest.raises(cli.InputError, match="empty path"):
        cli.check_output_file("")


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError("no sub-commands")


def test_every_option_of_every_command_has_help():
    parser, handlers = cli.build_parser()
    subs = _subparsers(parser)
    assert {"claims", "verify", "counterexamples", "replay", "derive", "check-models", "inflation"} <= set(subs)
    missing = []
    for name, sub in subs.items():
        for action in sub._actions:
            if not (action.help and str(action.help).strip()) or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help: {missing}"


SEED_COMMANDS = ["verify", "counterexamples", "check-models", "inflation", "eq1-study", "sharp-study"]


def test_every_command_with_a_seed_validates_it_the_same_way():
    parser, _ = cli.build_parser()
    with_seed = sorted(
        name for name, sub in _subparsers(parser).items() if any("--seed" in a.option_strings for a in sub._actions)
    )
    assert with_seed == sorted(SEED_COMMANDS)
    for name in with_seed:
        (seed,) = [a for a in _subparsers(parser)[name]._actions if "--seed" in a.option_strings]
        assert seed.type is cli.seed_value and seed.default == 0, name


@pytest.mark.parametrize("command", SEED_COMMANDS)
@pytest.mark.parametrize("bad", ["-1", str(2**31), "1.5", "abc"])
def test_bad_seed_exits_2_with_one_line(command, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--seed", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fimtheory: error: argument --seed: must be an integer in 0..")


def test_seed_limits():
    assert cli.check_seed(0) == 0 and cli.check_seed(cli.MAX_SEED) == cli.MAX_SEED and cli.check_seed("7") == 7
    for bad in (-1, cli.MAX_SEED + 1, True, 2.0, None):
        with pytest.raises(cli.InputError):
            cli.check_seed(bad)


def test_closed_pipe_ends_quietly_with_141():
    proc = subprocess.Popen(
        [sys.executable, "-m", "fimtheory", "claims", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the first write (like `| head -0`)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == cli.EXIT_BROKEN_PIPE == 141
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()


def test_broken_pipe_in_process_returns_141(monkeypatch):
    class ClosedPipe:
        def write(self, _text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            raise OSError("not a real file")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["claims"]) == 141


def test_verify_reports_progress_on_stderr_when_it_is_not_a_terminal(tmp_path):
    out = tmp_path / "v.json"
    r = _run("verify", "--claim", "W", "--claim", "R", "--json", str(out), "--progress-interval", "0.001")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert any("[1/2] W" in x for x in lines) and any("[2/2] R" in x for x in lines), r.stderr
    assert any("W: verified, 100/100 examples" in x for x in lines), r.stderr
    assert all(x.startswith("verify [") for x in lines), r.stderr  # plain lines, no \r bar
    assert "\r" not in r.stderr


def _report(cid, status):
    from properties.verify import ClaimReport

    return ClaimReport(cid, status=status, examples_requested=150, examples=10, stop_reason="stub")


@pytest.mark.parametrize(
    ("statuses", "profile", "code"),
    [
        (["verified", "inconclusive"], "ci", 3),
        (["verified", "error"], "thorough", 3),
        (["verified", "inconclusive"], "quick", 0),
        (["falsified", "inconclusive"], "ci", 1),
        (["verified", "hypotheses not met"], "ci", 0),
    ],
)
def test_verify_exit_status_and_json(statuses, profile, code, tmp_path, monkeypatch, capsys):
    pytest.importorskip("hypothesis", reason="verify needs hypothesis (the [properties] extra)")
    import properties.verify as V

    def fake_verify(claim_ids, *, on_report=None, **kw):
        reps = [_report(f"X{i}", s) for i, s in enumerate(statuses)]
        for rep in reps:
            on_report(rep)
        return reps

    monkeypatch.setattr(V, "verify", fake_verify)
    out = tmp_path / "v.json"
    assert cli.main(["verify", "--profile", profile, "--json", str(out)]) == code
    doc = json.loads(out.read_text())
    assert doc["exit_status"] == code and doc["complete"] is True
    assert [c["status"] for c in doc["claims"]] == statuses
    assert doc["all_verified"] is False
    table = capsys.readouterr().out
    if "inconclusive" in statuses:
        assert "X1: stub" in table  # the stop reason is printed under the table


def test_counterexamples_reports_progress_on_stderr_when_it_is_not_a_terminal(tmp_path):
    r = _run("counterexamples", "--claim", "W", "--out", str(tmp_path / "cx"), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert lines and all(x.startswith("counterexamples [") for x in lines), r.stderr
    assert any("[1/1] W-no-lambda-min" in x for x in lines) and lines[-1].endswith("done")
