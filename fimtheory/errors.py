"""Exceptions raised by fimtheory. Every public entry point raises one of these on bad input."""

from __future__ import annotations


class FimTheoryError(Exception):
    """Base class of every error fimtheory raises on purpose."""


class InputError(FimTheoryError, ValueError):
    """An argument is malformed: wrong shape, dtype, NaN/inf, not symmetric, not PSD, empty..."""


class UnknownIdError(FimTheoryError, KeyError):
    """An identifier (claim id, weakening, scheme, model name) is not known."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(FimTheoryError, ImportError):
    """An optional package needed for this feature is not installed."""

    def __init__(self, package: str, feature: str, extra: str | None = None):
        hint = f"pip install 'fimtheory[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the optional package '{package}' ({hint})")
        self.package = package
        self.feature = feature


class HypothesesNotMet(FimTheoryError):
    """A result was asked of an instance that does not satisfy the result's hypotheses."""


def require(module: str, feature: str, extra: str | None = None):
    """Import an optional module or raise :class:`MissingDependencyError` naming it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised by the missing-package tests
        raise MissingDependencyError(module.split(".")[0], feature, extra) from exc
