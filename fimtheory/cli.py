"""The ``fimtheory`` command line.

Built-in commands (``claims``) use fimtheory alone. The others are plugins registered by the
packages built on fimtheory (properties, symbolic, torch_checks) through the entry-point
group ``fimtheory.commands``; each entry point names a :class:`Command`. fimtheory therefore
never imports those packages itself, and a plugin whose optional dependencies are missing
fails with one line and exit status 2.

Conventions shared by every sub-command:

* Exit status: 0 success; 1 a check found a certified violation (or a replay did not
  reproduce); 2 bad input, reported in one line on stderr *before* any work starts;
  3 a run that was inconclusive or errored under a strict profile (``verify``); 130
  interrupted; 141 (128 + SIGPIPE, what a C tool killed by SIGPIPE reports) when stdout
  was closed by the reader, e.g. ``fimtheory claims | head -1`` — quietly, without a traceback.
* Output paths (``--json``, ``--out``) are checked at parse time by :func:`output_file` /
  :func:`output_dir`: the parent directory must exist, a file must not be a directory (and
  vice versa), and the location must be writable.
* Seeds are checked by :func:`seed_value`: an integer in ``0 .. MAX_SEED``.
* Long work reports progress on stderr: a self-overwriting line on a terminal, otherwise
  plain periodic lines (:class:`ProgressLines`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from fimtheory.errors import FimTheoryError, InputError

EXIT_OK = 0
EXIT_FAILED = 1  # a check ran and found a violation / a replay did not reproduce
EXIT_USAGE = 2  # bad input, unknown id, missing optional package
EXIT_INCONCLUSIVE = 3  # inconclusive or error under a strict profile, nothing falsified
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

MAX_SEED = 2**31 - 1  # a signed 32-bit int: every seeded library (numpy, torch, Hypothesis) accepts it


# --------------------------------------------------------------------------------------
# shared argument validation (used through argparse ``type=``, so it runs before any work)
# --------------------------------------------------------------------------------------


def _probe_directory(directory: str) -> str | None:
    """None if a file can be created in ``directory``; else why not (as root, os.access
    says yes to everything, so actually try: read-only filesystems, /proc, ...)."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return "is not writable"
    try:
        fd, probe = tempfile.mkstemp(prefix=".fimtheory-probe-", dir=directory)
    except OSError as exc:
        return f"is not writable ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def check_output_file(path: str, option: str = "output") -> str:
    """Validate that ``path`` can be written as a file; return it. Raises InputError.

    The parent directory must exist and be writable; an existing ``path`` must not be a
    directory and must be writable (a character device such as /dev/null is accepted).
    Nothing is created or modified.
    """
    if not isinstance(path, str) or not path.strip():
        raise InputError(f"{option}: empty path")
    if os.path.isdir(path):
        raise InputError(f"{option}: {path!r} is a directory, expected a file path")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        raise InputError(f"{option}: directory {parent!r} does not exist (create it first)")
    if not os.path.isdir(parent):
        raise InputError(f"{option}: {parent!r} is not a directory")
    if os.path.exists(path):
        try:
            with open(path, "a"):
                pass
        except OSError as exc:
            raise InputError(f"{option}: {path!r} is not writable ({exc.strerror or exc})") from None
        return path
    why = _probe_directory(parent)
    if why:
        raise InputError(f"{option}: directory {parent!r} {why}")
    return path


def check_output_dir(path: str, option: str = "output directory") -> str:
    """Validate that ``path`` is, or can be created as, a writable directory; return it.

    An existing ``path`` must be a directory and writable; a missing one needs an existing,
    writable parent (only the last component is created, by the command). Raises InputError.
    """
    if not isinstance(path, str) or not path.strip():
        raise InputError(f"{option}: empty path")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise InputError(f"{option}: {path!r} exists and is not a directory")
        why = _probe_directory(path)
        if why:
            raise InputError(f"{option}: directory {path!r} {why}")
        return path
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        raise InputError(f"{option}: parent directory {parent!r} does not exist (create it first)")
    if not os.path.isdir(parent):
        raise InputError(f"{option}: {parent!r} is not a directory")
    why = _probe_directory(parent)
    if why:
        raise InputError(f"{option}: parent directory {parent!r} {why}")
    return path


def check_seed(value, option: str = "seed") -> int:
    """A seed: an integer in 0 .. MAX_SEED (bools rejected). Raises InputError."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            text = str(value).strip()
            value = int(text, 10)
        except (TypeError, ValueError):
            raise InputError(f"{option} must be an integer in 0..{MAX_SEED}, got {value!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise InputError(f"{option} must be an integer in 0..{MAX_SEED}, got {value}")
    return value


def _argparse_type(check: Callable, name: str) -> Callable[[str], object]:
    def convert(text: str):
        try:
            return check(text, "value")
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value: ").removeprefix("value ")) from None

    convert.__name__ = name  # argparse names the type in its messages
    return convert


output_file = _argparse_type(check_output_file, "output file")
output_dir = _argparse_type(check_output_dir, "output directory")
seed_value = _argparse_type(check_seed, "seed")


def add_seed_argument(p: argparse.ArgumentParser, what: str = "seed of every random draw") -> None:
    """The ``--seed`` option every command uses (same type, range and default)."""
    p.add_argument(
        "--seed", type=seed_value, default=0, metavar="N", help=f"{what}: an integer in 0..{MAX_SEED} (default 0)"
    )


# --------------------------------------------------------------------------------------
# progress on stderr
# --------------------------------------------------------------------------------------


class ProgressLines:
    """Progress of long work on ``stream`` (stderr by default).

    On a terminal: one self-overwriting line. Otherwise (a log file, CI, a pipe): plain
    lines, one per :meth:`step` and at most one per ``interval`` seconds from :meth:`tick`,
    each prefixed with the elapsed time, so a long run is visibly alive.
    """

    def __init__(self, name: str, *, stream=None, interval: float = 30.0, enabled: bool = True):
        self.name = name
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self._last = self.t0

    def _write(self, text: str) -> None:
        if not self.enabled:
            return
        try:
            if self.tty:
                print(f"\r{text[:100]:<100}", end="", file=self.stream, flush=True)
            else:
                elapsed = time.perf_counter() - self.t0
                print(f"{self.name} [{elapsed:7.1f} s] {text}", file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed stderr must not end the run
            self.enabled = False

    def step(self, text: str) -> None:
        """A milestone (a claim started/finished): always shown."""
        self._last = time.perf_counter()
        self._write(text)

    def tick(self, text: str) -> None:
        """A heartbeat: shown at most once per ``interval`` seconds."""
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._write(text)

    def close(self, text: str = "done") -> None:
        if self.tty and self.enabled:
            self._write(text)
            print(file=self.stream, flush=True)
        else:
            self._write(text)


@dataclass(frozen=True)
class Command:
    """A sub-command. ``add_arguments`` must not import heavy packages; ``run`` may.

    ``run(args)`` returns the exit status. It raises :class:`FimTheoryError` for bad input.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line and exits 2."""

    def error(self, message: str):  # noqa: D401
        print(f"fimtheory: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _claims_add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``fimtheory claims``."""
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _claims_run(args: argparse.Namespace) -> int:
    import json

    from fimtheory.claims import REGISTRY

    if args.json:
        print(json.dumps([c.describe() for c in REGISTRY.values()], indent=2))
        return EXIT_OK
    width = max(len(c.id) for c in REGISTRY.values())
    for claim in REGISTRY.values():
        print(f"{claim.id:<{width}}  {claim.title}")
        for w in claim.weakenings:
            print(f"{'':<{width}}    weakening {w.id}: {w.title}")
    return EXIT_OK


BUILTIN = [Command("claims", "list the claims with one-line statements", _claims_add_arguments, _claims_run)]


def _plugin_entry_points():
    from importlib.metadata import entry_points

    return sorted(entry_points(group="fimtheory.commands"), key=lambda ep: ep.name)


def _load_plugin(ep) -> Command:
    try:
        cmd = ep.load()
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise FimTheoryError(
            f"command '{ep.name}' is unavailable: cannot import {missing} (install the extras: pip install -e '.[all]')"
        ) from exc
    if not isinstance(cmd, Command):
        raise FimTheoryError(f"plugin {ep.value} is not a fimtheory.cli.Command")
    return cmd


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = _Parser(
        prog="fimtheory",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=(
            "Exit status: 0 success; 1 a certified violation (or a replay that does not reproduce); "
            "2 bad input, one line on stderr, before any work; 3 inconclusive or error under a strict "
            "profile; 130 interrupted; 141 stdout closed by its reader."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    handlers: dict[str, object] = {}
    for cmd in BUILTIN:
        p = sub.add_parser(cmd.name, help=cmd.help)
        cmd.add_arguments(p)
        handlers[cmd.name] = cmd
    for ep in _plugin_entry_points():
        if ep.name in handlers:
            continue
        try:
            cmd = _load_plugin(ep)
        except FimTheoryError as exc:
            # Keep the command visible; running it reports why it is unavailable.
            p = sub.add_parser(ep.name, help=f"(unavailable: {exc})")
            p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the unavailable command")
            handlers[ep.name] = exc
            continue
        p = sub.add_parser(cmd.name, help=cmd.help)
        cmd.add_arguments(p)
        handlers[cmd.name] = cmd
    return parser, handlers


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush does
    not raise a second BrokenPipeError (the recipe of the Python signal docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests) or already closed
        pass


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader closed stdout (``fimtheory claims | head -1``): end quietly.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: list[str] | None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    handler = handlers[args.command]
    if isinstance(handler, Exception):
        print(f"fimtheory: error: {handler}", file=sys.stderr)
        return EXIT_USAGE
    try:
        status = int(handler.run(args))
        sys.stdout.flush()  # a closed pipe shows up here, inside the BrokenPipeError handler
        return status
    except FimTheoryError as exc:
        msg = " ".join(str(exc).split())
        print(f"fimtheory: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fimtheory: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
