"""The public Claim API: declare a claim once, and every checker runs it.

A *claim* is a mathematical statement checked per instance. It is declared with
:func:`declare_claim` (its falsifiable variants with :func:`declare_weakening`) and registered
with :func:`register_claim` — or, from an installed package, through the entry-point group
``fimtheory.claims`` (:data:`ENTRY_POINT_GROUP`). After that ``fimtheory verify``,
``fimtheory counterexamples``, ``fimtheory replay``, certification
(:func:`properties.certify.certify`) and the pytest plugin (``@check("MY-ID")``) treat it as
they treat the built-in claims, which are declared with the same functions
(:mod:`fimtheory.claims_weyl`, :mod:`fimtheory.claims_series`, …). The guide with a complete
example is ``docs/claim_api.md``.

What a declaration holds
------------------------
hypotheses
    Their statements (strings, for reports), and optionally per-instance checks
    (:class:`Hypothesis`): an instance that fails one is "hypotheses not met", never counted
    as verified; a hypothesis whose float margin lies within :data:`HYPOTHESIS_BAND` of its
    boundary sends the instance to adjudication, where the rigorous enclosure re-decides it.
float margin — ``evaluate(instance) -> Outcome``
    The relative signed margin of the conclusion in float64 (≥ 0 holds; > 0 for a strict
    claim), built with :func:`outcome` (or :meth:`Outcome.not_met`).
high-precision margin — ``evaluate_mp(instance, dps) -> mpmath.mpf``
    The same margin recomputed from the exact float inputs at ``dps`` digits;
    :func:`fimtheory.adjudication.adjudicate` raises the precision until successive values
    agree.
enclosure — ``enclosure(instance) -> mpmath.iv interval`` (optional)
    A rigorous interval containing the exact margin, evaluated inside
    :func:`fimtheory.highprec.working_precision`; it may raise
    :class:`fimtheory.enclosures.HypothesisFails` (a hypothesis certainly false) or
    :class:`fimtheory.enclosures.EnclosureError` (undecided at this precision: retry higher).
    Without one a violation is never confirmed (the verdict stays "undecided") — unless
    :data:`fimtheory.enclosures.ENCLOSURES` holds an evaluator under the claim's id, which is
    how the built-in claims link theirs.
weakenings
    The statement with a hypothesis dropped or the conclusion strengthened
    (:func:`declare_weakening`): the counterexample search must falsify each, with a certified
    enclosure (so a weakening needs an ``enclosure``).
strategy
    ``"module:name"`` of a Hypothesis strategy (or of a zero-argument function returning
    one) that draws the instances; resolved by :func:`properties.claim_strategies.strategy_for`
    (fimtheory itself never imports Hypothesis).
instance_type
    The instance class, when it is not one of :mod:`fimtheory.instances`: a dataclass whose
    fields are numpy arrays, floats, ints, strings, None or tuples of those, so that a stored
    counterexample serialises it bit-exactly (:mod:`properties.serialize`).

fimtheory imports neither Hypothesis nor torch here; nothing in this module imports a claim
family.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import mpmath

from fimtheory.adjudication import ADJUDICATION_RTOL, HYPOTHESIS_BAND
from fimtheory.errors import FimTheoryError, InputError, UnknownIdError
from fimtheory.highprec import working_precision

#: Entry-point group through which installed packages register claims. Each entry point names
#: a :class:`Claim`, an iterable of claims, or a zero-argument callable returning either.
ENTRY_POINT_GROUP = "fimtheory.claims"
#: Set this environment variable to ``0`` to skip the claim plugins (the built-ins only).
PLUGINS_ENV = "FIMTHEORY_CLAIM_PLUGINS"


class ClaimDeclarationError(InputError):
    """A claim or weakening is declared with a missing or malformed part."""


class ClaimPluginError(FimTheoryError):
    """A claim plugin (entry point of :data:`ENTRY_POINT_GROUP`) cannot be loaded or
    registers a claim id that is already taken. The message names the entry point."""


# --------------------------------------------------------------------------------------
# outcomes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Result of evaluating a claim (or weakening) on one instance in float64.

    Attributes
    ----------
    hypotheses_met : bool
    reason : str — the hypothesis that failed, when not met.
    margin : float — relative signed margin of the conclusion (dimensionless).
    needs_adjudication : bool — the margin is to be re-decided at high precision (it is near
        or below zero, or float64 cannot resolve it at all).
    details : dict — named intermediate quantities (all floats), for reports.
    float_resolved : bool — float64 resolves this margin to well within ADJUDICATION_RTOL, so a
        float margin below −ADJUDICATION_RTOL that the high-precision reference calls "holds"
        is a disagreement between the implementation and the reference (an error), not a
        rounding effect.
    hypothesis_margins : dict — name → float margin (> 0 when met, relative to n × the scale of
        its terms) of each hypothesis whose boundary float64 can approach (2η < γ, γ > 0,
        ḡ ≠ 0); an entry at or below HYPOTHESIS_BAND marks the instance for adjudication, which
        re-decides the hypothesis in interval arithmetic.
    """

    hypotheses_met: bool
    margin: float = float("nan")
    needs_adjudication: bool = False
    reason: str = ""
    details: dict = field(default_factory=dict)
    float_resolved: bool = True
    hypothesis_margins: dict = field(default_factory=dict)

    @staticmethod
    def not_met(reason: str, **details) -> Outcome:
        return Outcome(False, float("nan"), False, reason, details)


def outcome(margin: float, resolved: bool = True, **details) -> Outcome:
    """The :class:`Outcome` of an instance that meets the hypotheses.

    Parameters
    ----------
    margin : float
        Relative signed margin of the conclusion (dimensionless; ≥ 0 holds, > 0 for a strict
        claim).
    resolved : bool
        Whether float64 resolves the margin to well within ``ADJUDICATION_RTOL`` (1e-6). When
        False the instance is always adjudicated at high precision, and a float violation the
        reference overrules is not called a disagreement.
    **details
        Named intermediate floats, shown in reports.

    Returns
    -------
    Outcome
        Marked for adjudication when ``resolved`` is False or ``margin`` ≤ ADJUDICATION_RTOL.
    """
    adj = (not resolved) or not (margin > ADJUDICATION_RTOL)
    return Outcome(True, float(margin), adj, "", details, float_resolved=resolved)


def _outcome(margin: float, scale_ok: bool = True, **details) -> Outcome:
    """:func:`outcome` under its historical name (the claim families and plugins of the
    sharp-bound and Eq. 1 modules call it)."""
    return outcome(margin, scale_ok, **details)


# --------------------------------------------------------------------------------------
# claims and weakenings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Weakening:
    """A claim with a hypothesis dropped or its conclusion strengthened: must be falsifiable.

    Declare one with :func:`declare_weakening`."""

    id: str
    title: str
    dropped: str
    evaluate: Callable[[object], Outcome]
    evaluate_mp: Callable[[object, int], object]
    strategy: str
    strict: bool = False
    #: Optional rigorous evaluator (instance, dps) -> (lo, hi) enclosing the exact margin;
    #: when None, :data:`fimtheory.enclosures.ENCLOSURES` is used (by id).
    evaluate_iv: Callable[[object, int], tuple] | None = None
    #: The instance class when it is not one of fimtheory.instances (for serialisation).
    instance_type: type | None = None


@dataclass(frozen=True)
class Claim:
    """A checked result: see the module docstring. Declare one with :func:`declare_claim`."""

    id: str
    title: str
    statement: str
    hypotheses: tuple
    evaluate: Callable[[object], Outcome]
    evaluate_mp: Callable[[object, int], object] | None
    strategy: str
    paper_label: str = ""
    strict: bool = False
    weakenings: tuple = ()
    note: str = ""
    #: Optional rigorous evaluator (instance, dps) -> (lo, hi) enclosing the exact margin;
    #: when None, :data:`fimtheory.enclosures.ENCLOSURES` is used (by id).
    evaluate_iv: Callable[[object, int], tuple] | None = None
    #: The instance class when it is not one of fimtheory.instances (for serialisation).
    instance_type: type | None = None
    #: Where the claim was declared: a module name, or ``entry point NAME = VALUE (dist)``.
    source: str = ""

    def holds(self, margin) -> bool:
        return margin > 0 if self.strict else margin >= 0

    def weakening(self, wid: str) -> Weakening:
        for w in self.weakenings:
            if w.id == wid:
                return w
        known = ", ".join(w.id for w in self.weakenings) or "none"
        raise UnknownIdError(f"claim {self.id} has no weakening {wid!r}; known: {known}")

    def describe(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "paper_label": self.paper_label,
            "statement": self.statement,
            "hypotheses": list(self.hypotheses),
            "strict": self.strict,
            "weakenings": [{"id": w.id, "title": w.title, "dropped": w.dropped} for w in self.weakenings],
            "note": self.note,
        }


@dataclass(frozen=True)
class Hypothesis:
    """One hypothesis of a claim, checked on every instance.

    Attributes
    ----------
    statement : str
        The hypothesis in words (shown in reports; the reason of "hypotheses not met").
    holds : callable or None
        ``holds(instance) -> bool``: decides the hypothesis exactly (no rounding doubt).
    margin : callable or None
        ``margin(instance) -> float``: > 0 when the hypothesis holds, relative to the scale of
        its terms. A margin ≤ 0 makes the instance "hypotheses not met"; one within
        :data:`HYPOTHESIS_BAND` of 0 sends the instance to adjudication, where the claim's
        enclosure must re-decide the hypothesis (raising
        :class:`fimtheory.enclosures.HypothesisFails` when it fails).

    A hypothesis with neither is stated but checked inside ``evaluate`` (which then returns
    :meth:`Outcome.not_met`).
    """

    statement: str
    holds: Callable[[object], bool] | None = None
    margin: Callable[[object], float] | None = None


def exact_mp(evaluate):
    """The high-precision evaluator of a claim whose float evaluation is exact (a finite
    sequence of exact float comparisons, or values that float arithmetic represents
    exactly): the mp margin is the float margin."""

    def mp(inst, dps):
        return mpmath.mpf(evaluate(inst).margin)

    return mp


_exact_mp = exact_mp


def _wraps(run, evaluate):
    """``run`` under the name, module and docstring of the evaluator it wraps (as
    :func:`functools.wraps`), so reports and docs name the family's function."""
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        value = getattr(evaluate, attr, None)
        if value is not None or attr == "__doc__":
            setattr(run, attr, value)
    run.__wrapped__ = evaluate
    return run


def _with_hypothesis_margins(evaluate, margins_of):
    """Wrap a float evaluator: attach the hypothesis margins to a met Outcome and mark it for
    adjudication when one lies within HYPOTHESIS_BAND of its boundary (or return the exact
    'not met' that ``margins_of`` may decide)."""

    def run(inst):
        out = evaluate(inst)
        if not out.hypotheses_met:
            return out
        margins = margins_of(inst)
        if isinstance(margins, Outcome):
            return margins
        near = any(not v > HYPOTHESIS_BAND for v in margins.values())
        return replace(out, hypothesis_margins=margins, needs_adjudication=out.needs_adjudication or near)

    return _wraps(run, evaluate)


def _with_hypothesis_checks(evaluate, checks):
    """Wrap a float evaluator: check each :class:`Hypothesis` with ``holds`` or ``margin`` on
    the instance first (the first that fails makes it "not met"), and attach the margins."""

    def run(inst):
        margins = {}
        for h in checks:
            if h.holds is not None and not h.holds(inst):
                return Outcome.not_met(f"hypothesis not met: {h.statement}")
            if h.margin is not None:
                m = float(h.margin(inst))
                if not m > 0:
                    return Outcome.not_met(f"hypothesis not met: {h.statement} (margin {m:.3g})")
                margins[h.statement] = m
        out = evaluate(inst)
        if not out.hypotheses_met or not margins:
            return out
        near = any(not v > HYPOTHESIS_BAND for v in margins.values())
        merged = {**out.hypothesis_margins, **margins}
        return replace(out, hypothesis_margins=merged, needs_adjudication=out.needs_adjudication or near)

    return _wraps(run, evaluate)


def _interval_evaluator(enclosure, subject_id: str):
    """``evaluate_iv(instance, dps) -> (lo, hi)`` from ``enclosure(instance) -> iv interval``,
    with the checks :func:`fimtheory.enclosures.margin_enclosure` applies to its own table."""

    def evaluate_iv(inst, dps):
        from fimtheory import enclosures

        with working_precision(dps):
            try:
                x = enclosure(inst)
            except ZeroDivisionError as exc:
                raise enclosures.EnclosureError(f"division by an interval containing 0 at {dps} digits") from exc
            if not isinstance(x, mpmath.ctx_iv.ivmpf):
                raise enclosures.EnclosureError(f"the enclosure of {subject_id} did not return an mpmath.iv interval")
            a, b = enclosures.lo(x), enclosures.hi(x)
        if mpmath.isnan(a) or mpmath.isnan(b):
            raise enclosures.EnclosureError(f"the enclosure of {subject_id} is not finite at {dps} digits")
        return a, b

    evaluate_iv.__name__ = getattr(enclosure, "__name__", "enclosure")
    evaluate_iv.__wrapped__ = enclosure
    return evaluate_iv


#: ``"module:qualname" → class`` of every ``instance_type`` declared so far.
_DECLARED_TYPES: dict = {}


def _declare_type(instance_type, what: str) -> None:
    if instance_type is None:
        return
    if not isinstance(instance_type, type) or not dataclasses.is_dataclass(instance_type):
        raise ClaimDeclarationError(f"{what}: instance_type must be a dataclass, got {instance_type!r}")
    qual = instance_type.__qualname__
    if "<" in qual or instance_type.__module__ == "__main__":
        raise ClaimDeclarationError(
            f"{what}: instance_type {qual} must be defined at module level of an importable module"
        )
    _DECLARED_TYPES[f"{instance_type.__module__}:{qual}"] = instance_type


def _strategy_ref(strategy, what: str) -> str:
    if isinstance(strategy, str):
        mod, sep, name = strategy.partition(":")
        if not sep or not mod or not name:
            raise ClaimDeclarationError(f"{what}: strategy {strategy!r} is not 'module:name'")
        return strategy
    mod, qual = getattr(strategy, "__module__", None), getattr(strategy, "__qualname__", None)
    if callable(strategy) and mod and qual and "<" not in qual and mod != "__main__":
        return f"{mod}:{qual}"
    raise ClaimDeclarationError(
        f"{what}: strategy must be 'module:name' of a Hypothesis strategy (or of a module-level "
        f"function returning one), got {strategy!r}"
    )


def _prepare(what: str, ident, evaluate, evaluate_mp, strategy, enclosure, hypotheses, hypothesis_margins):
    if not isinstance(ident, str) or not ident or any(c.isspace() for c in ident) or "@" in ident:
        raise ClaimDeclarationError(f"{what} id must be a non-empty string without spaces or '@', got {ident!r}")
    label = f"{what} {ident}"
    for name, fn in (("evaluate", evaluate), ("evaluate_mp", evaluate_mp)):
        if not callable(fn):
            raise ClaimDeclarationError(f"{label}: {name} must be callable, got {fn!r}")
    if enclosure is not None and not callable(enclosure):
        raise ClaimDeclarationError(f"{label}: enclosure must be callable or None, got {enclosure!r}")
    if hypothesis_margins is not None and not callable(hypothesis_margins):
        raise ClaimDeclarationError(f"{label}: hypothesis_margins must be callable or None")
    statements, checks = [], []
    for h in hypotheses:
        if isinstance(h, str):
            statements.append(h)
        elif isinstance(h, Hypothesis):
            statements.append(h.statement)
            if h.holds is not None or h.margin is not None:
                checks.append(h)
        else:
            raise ClaimDeclarationError(f"{label}: a hypothesis must be a str or a Hypothesis, got {h!r}")
    run = evaluate
    if hypothesis_margins is not None:
        run = _with_hypothesis_margins(run, hypothesis_margins)
    if checks:
        run = _with_hypothesis_checks(run, tuple(checks))
    evaluate_iv = _interval_evaluator(enclosure, ident) if enclosure is not None else None
    return run, _strategy_ref(strategy, label), evaluate_iv, tuple(statements)


def declare_weakening(
    id: str,
    *,
    title: str,
    dropped: str,
    evaluate: Callable[[object], Outcome],
    evaluate_mp: Callable[[object, int], object],
    strategy,
    enclosure: Callable[[object], object] | None = None,
    hypotheses: Iterable = (),
    hypothesis_margins: Callable[[object], dict] | None = None,
    strict: bool = False,
    instance_type: type | None = None,
) -> Weakening:
    """Declare a weakening: the claim with a hypothesis dropped (or its conclusion
    strengthened), which the counterexample search must falsify with a certified enclosure.

    Parameters
    ----------
    id : str
        Unique among the weakenings of all claims (the stored counterexample is ``ID.json``).
    title, dropped : str
        The weakened statement, and what was dropped or strengthened.
    evaluate, evaluate_mp, strategy, enclosure, hypothesis_margins, strict, instance_type
        As for :func:`declare_claim`.
    hypotheses : iterable of :class:`Hypothesis`
        Per-instance checks of the weakening's remaining hypotheses (optional).

    Returns
    -------
    Weakening

    Raises
    ------
    ClaimDeclarationError
        For a malformed id, a non-callable evaluator or a strategy that is not ``module:name``.
    """
    run, ref, evaluate_iv, _ = _prepare(
        "weakening", id, evaluate, evaluate_mp, strategy, enclosure, hypotheses, hypothesis_margins
    )
    _declare_type(instance_type, f"weakening {id}")
    return Weakening(
        id,
        title,
        dropped,
        run,
        evaluate_mp,
        ref,
        strict=bool(strict),
        evaluate_iv=evaluate_iv,
        instance_type=instance_type,
    )


def declare_claim(
    id: str,
    *,
    title: str,
    statement: str,
    hypotheses: Iterable,
    evaluate: Callable[[object], Outcome],
    evaluate_mp: Callable[[object, int], object],
    strategy,
    enclosure: Callable[[object], object] | None = None,
    hypothesis_margins: Callable[[object], dict] | None = None,
    weakenings: Iterable[Weakening] = (),
    strict: bool = False,
    paper_label: str = "",
    note: str = "",
    instance_type: type | None = None,
) -> Claim:
    """Declare a claim (it is checked once registered: :func:`register_claim` or the
    ``fimtheory.claims`` entry point).

    Parameters
    ----------
    id : str
        The claim id (``fimtheory verify --claim ID``); no spaces, no ``@``.
    title, statement : str
        One line, and the full mathematical statement.
    hypotheses : iterable of str or :class:`Hypothesis`
        Each hypothesis in words; a :class:`Hypothesis` with ``holds`` or ``margin`` is also
        checked on every instance before ``evaluate`` runs.
    evaluate : callable
        ``evaluate(instance) -> Outcome``: the float64 margin (:func:`outcome`), or
        :meth:`Outcome.not_met` naming the hypothesis that fails.
    evaluate_mp : callable
        ``evaluate_mp(instance, dps) -> mpmath.mpf``: the same margin at ``dps`` digits from the
        exact float inputs (:func:`exact_mp` when the float margin is exact).
    strategy : str or callable
        ``"module:name"`` of the Hypothesis strategy drawing the instances (or of a
        zero-argument function returning it); a module-level function is taken by its name.
    enclosure : callable, optional
        ``enclosure(instance) -> mpmath.iv interval`` containing the exact margin, run at the
        working precision; needed to confirm a violation (see the module docstring).
    hypothesis_margins : callable, optional
        ``hypothesis_margins(instance) -> dict`` name → float margin of the hypotheses float64
        can approach (or an :class:`Outcome` "not met" decided exactly); used as
        :class:`Hypothesis` margins are.
    weakenings : iterable of Weakening
        From :func:`declare_weakening`.
    strict : bool
        The conclusion is margin > 0 (else margin ≥ 0).
    paper_label, note : str
        Where the statement comes from; a remark for reports.
    instance_type : type, optional
        The instance dataclass, when not one of :mod:`fimtheory.instances`.

    Returns
    -------
    Claim

    Raises
    ------
    ClaimDeclarationError
        For a malformed id, a non-callable evaluator, a strategy that is not ``module:name``,
        a weakening that is not a :class:`Weakening`, or two weakenings with one id.
    """
    run, ref, evaluate_iv, statements = _prepare(
        "claim", id, evaluate, evaluate_mp, strategy, enclosure, hypotheses, hypothesis_margins
    )
    _declare_type(instance_type, f"claim {id}")
    weakenings = tuple(weakenings)
    seen = set()
    for w in weakenings:
        if not isinstance(w, Weakening):
            raise ClaimDeclarationError(f"claim {id}: weakenings must be declare_weakening(...) results, got {w!r}")
        if w.id in seen or w.id == id:
            raise ClaimDeclarationError(f"claim {id}: weakening id {w.id!r} used twice")
        seen.add(w.id)
    return Claim(
        id,
        title,
        statement,
        statements,
        run,
        evaluate_mp,
        ref,
        paper_label,
        strict=bool(strict),
        weakenings=weakenings,
        note=note,
        evaluate_iv=evaluate_iv,
        instance_type=instance_type,
        source=_caller_module(),
    )


def _caller_module() -> str:
    """The module that called :func:`declare_claim` (the claim's ``source``)."""
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", ""))


# --------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------

#: Registered claims in registration order (kept in step with REGISTRY).
_CLAIMS: list = []
_STATE = {"builtins": "absent", "plugins": "absent"}  # absent → loading → loaded


class _Registry(dict):
    """``id → Claim``. Reading it first loads the built-in claims (:mod:`fimtheory.claims`)
    and then the claim plugins of :data:`ENTRY_POINT_GROUP`; while either is loading it reads
    as a plain dict."""

    def _ensure(self):
        if _STATE["builtins"] == "absent":
            importlib.import_module("fimtheory.claims")
        if _STATE["builtins"] == "loaded" and _STATE["plugins"] == "absent":
            load_plugins()

    def __getitem__(self, key):
        self._ensure()
        return dict.__getitem__(self, key)

    def __contains__(self, key):
        self._ensure()
        return dict.__contains__(self, key)

    def __iter__(self):
        self._ensure()
        return dict.__iter__(self)

    def __len__(self):
        self._ensure()
        return dict.__len__(self)

    def get(self, key, default=None):
        self._ensure()
        return dict.get(self, key, default)

    def keys(self):
        self._ensure()
        return dict.keys(self)

    def values(self):
        self._ensure()
        return dict.values(self)

    def items(self):
        self._ensure()
        return dict.items(self)

    def copy(self):
        self._ensure()
        return dict(dict.items(self))

    def __repr__(self):
        self._ensure()
        return dict.__repr__(self)


#: ``id → Claim`` of every registered claim: the built-ins, then the plugins'.
REGISTRY: dict = _Registry()


def _all_weakening_ids() -> dict:
    return {w.id: c.id for c in dict.values(REGISTRY) for w in c.weakenings}


def register_claim(claim: Claim, *, source: str = "") -> Claim:
    """Add ``claim`` to :data:`REGISTRY` (after the claims already there).

    Parameters
    ----------
    claim : Claim
        From :func:`declare_claim`.
    source : str
        Where it comes from (a module, an entry point), for error messages.

    Returns
    -------
    Claim
        The registered claim (with ``source`` recorded).

    Raises
    ------
    ClaimDeclarationError
        When ``claim`` is not a :class:`Claim`, or its id or one of its weakening ids is taken
        (the message names the claim that holds it and where it came from).
    """
    if not isinstance(claim, Claim):
        raise ClaimDeclarationError(f"{source or 'register_claim'}: expected a Claim, got {type(claim).__name__}")
    if source and not claim.source:
        claim = replace(claim, source=source)
    origin = f" (from {claim.source})" if claim.source else ""
    if dict.__contains__(REGISTRY, claim.id):
        held = dict.__getitem__(REGISTRY, claim.id)
        if held is claim:
            return claim
        where = f" from {held.source}" if held.source else ""
        raise ClaimDeclarationError(f"claim id {claim.id!r}{origin} is already registered{where}")
    taken = _all_weakening_ids()
    for w in claim.weakenings:
        if w.id in taken or dict.__contains__(REGISTRY, w.id):
            raise ClaimDeclarationError(
                f"claim {claim.id}{origin}: weakening id {w.id!r} is already taken (by claim {taken.get(w.id, w.id)})"
            )
    dict.__setitem__(REGISTRY, claim.id, claim)
    _CLAIMS.append(claim)
    _keep_family_order()
    return claim


#: Modules of the built-in families in registry order (set by :mod:`fimtheory.claims`); claims
#: of other modules (plugins) follow them.
BUILTIN_ORDER: list = []


def _rank(claim: Claim) -> int:
    module = claim.source or getattr(claim.evaluate, "__module__", "") or ""
    return BUILTIN_ORDER.index(module) if module in BUILTIN_ORDER else len(BUILTIN_ORDER)


def _keep_family_order() -> None:
    """Keep the registry in family order whatever the import order: a family imported on its
    own before :mod:`fimtheory.claims` registers after families that come later in the list
    (a stable sort by family; plugins keep their own order at the end)."""
    claims = list(dict.values(REGISTRY))
    ranks = [_rank(c) for c in claims]
    if ranks == sorted(ranks):
        return
    ordered = [c for _, c in sorted(zip(ranks, claims), key=lambda pair: pair[0])]
    dict.clear(REGISTRY)
    for c in ordered:
        dict.__setitem__(REGISTRY, c.id, c)
    _CLAIMS[:] = ordered


def add_weakenings(claim_id: str, *weakenings: Weakening) -> Claim:
    """Append weakenings to a registered claim (a family module may weaken another family's
    claim, e.g. S-no-disc of S in :mod:`fimtheory.claims_sharp`). Idempotent per id."""
    if not dict.__contains__(REGISTRY, claim_id):
        raise UnknownIdError(f"unknown claim id {claim_id!r}: register it before adding weakenings")
    claim = dict.__getitem__(REGISTRY, claim_id)
    have = {w.id for w in claim.weakenings}
    taken = _all_weakening_ids()
    new = []
    for w in weakenings:
        if not isinstance(w, Weakening):
            raise ClaimDeclarationError(f"claim {claim_id}: expected a Weakening, got {type(w).__name__}")
        if w.id in have:
            continue
        if w.id in taken:
            raise ClaimDeclarationError(f"weakening id {w.id!r} is already taken (by claim {taken[w.id]})")
        new.append(w)
        have.add(w.id)
    if not new:
        return claim
    updated = replace(claim, weakenings=(*claim.weakenings, *new))
    dict.__setitem__(REGISTRY, claim_id, updated)
    _CLAIMS[:] = [updated if c.id == claim_id else c for c in _CLAIMS]
    return updated


def unregister_claim(claim_id: str) -> Claim:
    """Remove a claim registered with :func:`register_claim` (not a built-in one); returns it.
    For notebooks and tests that register a claim for a while.

    Raises
    ------
    UnknownIdError
        When no claim has this id.
    ClaimDeclarationError
        For a built-in claim (declared in a ``fimtheory`` module).
    """
    if not dict.__contains__(REGISTRY, claim_id):
        raise UnknownIdError(f"unknown claim id {claim_id!r}")
    claim = dict.__getitem__(REGISTRY, claim_id)
    if claim_id in _BUILTIN_IDS or claim.source.startswith("fimtheory."):
        raise ClaimDeclarationError(f"claim {claim_id} is built in ({claim.source}) and cannot be unregistered")
    dict.pop(REGISTRY, claim_id)
    _CLAIMS[:] = [c for c in _CLAIMS if c.id != claim_id]
    return claim


def get_claim(claim_id: str) -> Claim:
    """The claim with this id, or :class:`UnknownIdError` listing the known ids."""
    try:
        return REGISTRY[claim_id]
    except KeyError:
        raise UnknownIdError(f"unknown claim id {claim_id!r}; known: {', '.join(REGISTRY)}") from None


def instance_types() -> dict:
    """``"module:qualname" → class`` of the instance types declared with ``instance_type=``
    (by the registered claims, the plugins' included, and by any other declaration made so
    far), for :mod:`properties.serialize`."""
    REGISTRY._ensure()
    out = dict(_DECLARED_TYPES)
    for c in dict.values(REGISTRY):
        for s in (c, *c.weakenings):
            t = getattr(s, "instance_type", None)
            if t is not None:
                out.setdefault(f"{t.__module__}:{t.__qualname__}", t)
    return out


def _entry_points():
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value))


def _describe_ep(ep) -> str:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) or (dist.metadata["Name"] if dist is not None else None)
    return f"entry point {ep.name} = {ep.value}" + (f" (distribution {name})" if name else "")


def _claims_of(obj, where: str) -> list:
    if isinstance(obj, Claim):
        return [obj]
    if callable(obj) and not isinstance(obj, type):
        try:
            obj = obj()
        except FimTheoryError as exc:
            raise ClaimPluginError(f"claim plugin {where}: {exc}") from exc
        except Exception as exc:
            raise ClaimPluginError(f"claim plugin {where} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(obj, Claim):
            return [obj]
    if isinstance(obj, Iterable) and not isinstance(obj, str | bytes | dict):
        items = list(obj)
        bad = [x for x in items if not isinstance(x, Claim)]
        if not bad:
            return items
        obj = bad[0]
    raise ClaimPluginError(
        f"claim plugin {where} is not a fimtheory Claim, an iterable of Claims or a callable "
        f"returning them (got {type(obj).__name__})"
    )


def load_plugins() -> list:
    """Register the claims of every entry point in :data:`ENTRY_POINT_GROUP` (sorted by
    entry-point name), once; returns the ids registered. Skipped when the environment
    variable ``FIMTHEORY_CLAIM_PLUGINS`` is ``0``.

    Raises
    ------
    ClaimPluginError
        Naming the entry point (and its distribution) that cannot be imported, does not give
        claims, or registers an id already taken. The registry then holds the built-ins and the
        plugins loaded before it; the error is raised again on the next read.
    """
    if _STATE["plugins"] != "absent":
        return []
    if os.environ.get(PLUGINS_ENV, "").strip() == "0":
        _STATE["plugins"] = "loaded"
        return []
    _STATE["plugins"] = "loading"
    added = []
    try:
        for ep in _entry_points():
            where = _describe_ep(ep)
            try:
                obj = ep.load()
            except Exception as exc:  # an import error, or any error the plugin's module raises
                raise ClaimPluginError(f"claim plugin {where} cannot be loaded: {type(exc).__name__}: {exc}") from exc
            for claim in _claims_of(obj, where):
                try:
                    register_claim(claim, source=where)
                except ClaimDeclarationError as exc:
                    raise ClaimPluginError(f"claim plugin {where}: {exc}") from exc
                added.append(claim.id)
    except ClaimPluginError:
        # Roll back so the next read retries (and raises again) instead of running without it.
        for cid in added:
            dict.pop(REGISTRY, cid, None)
        _CLAIMS[:] = [c for c in _CLAIMS if c.id not in set(added)]
        _STATE["plugins"] = "absent"
        raise
    _STATE["plugins"] = "loaded"
    return added


#: Ids of the built-in claims (registered by :mod:`fimtheory.claims` before any plugin).
_BUILTIN_IDS: set = set()


def _mark_builtins(state: str) -> None:
    """Called by :mod:`fimtheory.claims` around the registration of the built-in families."""
    _STATE["builtins"] = state
    if state == "loaded":
        _BUILTIN_IDS.update(dict.keys(REGISTRY))


__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "REGISTRY",
    "Claim",
    "ClaimDeclarationError",
    "ClaimPluginError",
    "Hypothesis",
    "Outcome",
    "Weakening",
    "add_weakenings",
    "declare_claim",
    "declare_weakening",
    "exact_mp",
    "get_claim",
    "instance_types",
    "load_plugins",
    "outcome",
    "register_claim",
    "unregister_claim",
]
