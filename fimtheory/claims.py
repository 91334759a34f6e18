"""The claim registry: every result of docs/theory.md as an object that can be checked per instance.

A :class:`Claim` states its hypotheses and conclusion. ``evaluate(instance)`` returns an
:class:`Outcome`: whether the instance meets the hypotheses (if not, it is never counted as
verified) and a *relative* signed margin of the conclusion (≥ 0 holds; > 0 for strict
claims), plus whether float64 cannot settle the sign (``needs_adjudication``). Then
``evaluate_mp(instance, dps)`` recomputes the margin from the exact float inputs at ``dps``
digits, and :func:`adjudicate` (:mod:`fimtheory.adjudication`) raises the precision until
successive values agree; a counterexample needs more: a rigorous interval enclosure of the
margin below zero (:mod:`fimtheory.enclosures`, or the claim's own ``evaluate_iv``).

Each claim also lists its :class:`Weakening` s — the statement with a hypothesis dropped or
the conclusion strengthened — which the counterexample search must falsify.

Claims are declared with the public API :mod:`fimtheory.claim_api` (``declare_claim``,
``declare_weakening``, ``register_claim``; guide: ``docs/claim_api.md``), re-exported here.
The built-in claims are declared with it too, one theorem family per module, registered in
this order:

=====================================  ======================================================
:mod:`fimtheory.claims_weyl`           W, R
:mod:`fimtheory.claims_series`         S, S2, SIGN
:mod:`fimtheory.claims_quantization`   T4.3a, T4.3b, T4.3c, T4.3d (critical_scale)
:mod:`fimtheory.claims_departure`      P3.2
:mod:`fimtheory.claims_approx`         AH, AB
:mod:`fimtheory.claims_partition`      C
:mod:`fimtheory.claims_sharp`          KT, LL, S3, S3L, T4.3b-S, T4.3c-S (and S-no-disc of S)
:mod:`fimtheory.claims_eq1`            EQ1-M-BOUNDS, EQ1-RATIO, KL-SORTED
=====================================  ======================================================

Their rigorous enclosures stay in :mod:`fimtheory.enclosures`, linked by claim id
(:data:`fimtheory.enclosures.ENCLOSURES`). Claims of installed packages are registered
through the entry-point group ``fimtheory.claims`` when :data:`REGISTRY` is first read.

Instances are drawn by Hypothesis strategies named in ``strategy`` (resolved by the
``properties`` package; fimtheory never imports it).

The helpers of the families (``critical_scale``, ``numerical_rank``, ``_series_order``, …)
remain reachable as attributes of this module, as before the families had modules of their own.
"""

from __future__ import annotations

import importlib

from fimtheory import claim_api as _api
from fimtheory.adjudication import (
    ADJUDICATION_GUARD_DIGITS,
    ADJUDICATION_MAX_DPS,
    ADJUDICATION_MAX_START_DPS,
    ADJUDICATION_RTOL,
    HYPOTHESIS_BAND,
    REFERENCE_DISAGREEMENT,
    VERDICTS,
    Adjudication,
    ReferenceDisagreement,
    adjudicate,
    disagrees,
    start_dps,
)
from fimtheory.claim_api import (
    _CLAIMS,
    ENTRY_POINT_GROUP,
    REGISTRY,
    Claim,
    ClaimDeclarationError,
    ClaimPluginError,
    Hypothesis,
    Outcome,
    Weakening,
    _exact_mp,
    _outcome,
    _with_hypothesis_margins,
    add_weakenings,
    declare_claim,
    declare_weakening,
    exact_mp,
    get_claim,
    instance_types,
    load_plugins,
    outcome,
    register_claim,
    unregister_claim,
)
from fimtheory.claim_support import TINY

#: The modules of the built-in families whose ``claims()`` are registered, in order; the sharp
#: bounds (:mod:`fimtheory.claims_sharp`) and Eq. 1 (:mod:`fimtheory.claims_eq1`) follow.
FAMILIES = (
    "fimtheory.claims_weyl",
    "fimtheory.claims_series",
    "fimtheory.claims_quantization",
    "fimtheory.claims_departure",
    "fimtheory.claims_approx",
    "fimtheory.claims_partition",
)


def _register_builtins() -> None:
    _api._mark_builtins("loading")
    _api.BUILTIN_ORDER[:] = [*FAMILIES, "fimtheory.claims_sharp", "fimtheory.claims_eq1"]
    try:
        for name in FAMILIES:
            for claim in importlib.import_module(name).claims():
                register_claim(claim, source=name)
        # The sharp bounds (KT, LL, S3, S3L, T4.3b-S, T4.3c-S) and the weakening S-no-disc of S:
        # the module registers them (register_claim, add_weakenings) when imported.
        importlib.import_module("fimtheory.claims_sharp")
        from fimtheory import claims_eq1

        for claim in claims_eq1.claims():
            register_claim(claim, source="fimtheory.claims_eq1")
    finally:
        _api._mark_builtins("loaded")


def __getattr__(name: str):
    """The families' module-level names (``critical_scale``, ``_t43c_core``, ``_series``, …)
    as attributes of this module."""
    if not name.startswith("__"):
        for module in ("fimtheory.claim_support", *FAMILIES):
            mod = importlib.import_module(module)
            if name in vars(mod):
                return vars(mod)[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_register_builtins()


__all__ = [
    "ADJUDICATION_GUARD_DIGITS",
    "ADJUDICATION_MAX_DPS",
    "ADJUDICATION_MAX_START_DPS",
    "ADJUDICATION_RTOL",
    "ENTRY_POINT_GROUP",
    "FAMILIES",
    "HYPOTHESIS_BAND",
    "REFERENCE_DISAGREEMENT",
    "REGISTRY",
    "TINY",
    "VERDICTS",
    "Adjudication",
    "Claim",
    "ClaimDeclarationError",
    "ClaimPluginError",
    "Hypothesis",
    "Outcome",
    "ReferenceDisagreement",
    "Weakening",
    "_CLAIMS",
    "_exact_mp",
    "_outcome",
    "_with_hypothesis_margins",
    "add_weakenings",
    "adjudicate",
    "declare_claim",
    "declare_weakening",
    "disagrees",
    "exact_mp",
    "get_claim",
    "instance_types",
    "load_plugins",
    "outcome",
    "register_claim",
    "start_dps",
    "unregister_claim",
]
