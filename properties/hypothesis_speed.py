"""Hypothesis' ``@st.composite`` re-reads its function's source on every decoration; remember it.

``st.composite`` asks :func:`hypothesis.internal.reflection.is_first_param_referenced_in_function`
whether the decorated function uses its ``draw`` argument (only to warn when it does not); that
parses the function's source with ``inspect`` and ``ast`` (≈ 10 ms). Strategy factories that
define a composite inside (``properties.strategies``) and are called inside another composite's
draw pay it on every example: measured 18 % of the CPU time of T4.3b's verification.

:func:`install` wraps the function Hypothesis' composite calls with a cache keyed by the code
object (the same code has the same source and the same answer), so nothing Hypothesis draws,
labels or reports changes. It does nothing where that internal name does not exist.
"""

from __future__ import annotations

_CACHE: dict = {}


def install() -> bool:
    """Wrap Hypothesis' first-parameter check with the cache; True when installed."""
    try:
        from hypothesis.strategies._internal import core
    except ImportError:  # pragma: no cover - another Hypothesis layout
        return False
    original = getattr(core, "is_first_param_referenced_in_function", None)
    if original is None:  # pragma: no cover - another Hypothesis version
        return False
    if getattr(original, "_fimtheory_cached", False):
        return True

    def cached(f):
        code = getattr(f, "__code__", None)
        if code is None:
            return original(f)
        if code not in _CACHE:
            _CACHE[code] = original(f)
        return _CACHE[code]

    cached._fimtheory_cached = True
    cached.__wrapped__ = original
    core.is_first_param_referenced_in_function = cached
    return True
