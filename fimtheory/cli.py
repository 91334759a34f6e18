"""The ``fimtheory`` command line.

Built-in commands (``claims``) use fimtheory alone. The others are plugins registered by the
packages built on fimtheory (properties, symbolic, torch_checks) through the entry-point
group ``fimtheory.commands``; each entry point names a :class:`Command`. fimtheory therefore
never imports those packages itself, and a plugin whose optional dependencies are missing
fails with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from fimtheory.errors import FimTheoryError

EXIT_OK = 0
EXIT_FAILED = 1  # a check ran and found a violation / a replay did not reproduce
EXIT_USAGE = 2  # bad input, unknown id, missing optional package


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
    parser = _Parser(prog="fimtheory", description=__doc__.splitlines()[0] if __doc__ else None)
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
            p.add_argument("rest", nargs=argparse.REMAINDER)
            handlers[ep.name] = exc
            continue
        p = sub.add_parser(cmd.name, help=cmd.help)
        cmd.add_arguments(p)
        handlers[cmd.name] = cmd
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
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
        return int(handler.run(args))
    except FimTheoryError as exc:
        msg = " ".join(str(exc).split())
        print(f"fimtheory: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fimtheory: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
