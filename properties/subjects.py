"""Claims evaluated on an implementation the user brings: a λ_max engine, a quantizer, a score
function or a torch model.

A *subject* is a user's callable; :func:`bind` turns a claim id and a subject into a
:class:`SubjectClaim`, an object with the protocol of a claim (``id``, ``strict``,
``evaluate``, ``evaluate_mp``, ``evaluate_iv``, ``strategy``), so that
:func:`properties.verify.check_property`, the adjudicator, :func:`properties.certify.certify`
and ``fimtheory replay`` treat it exactly as a built-in claim. Its id is
``CLAIM@module:callable``: a stored counterexample names the subject, the digest covers the
name, and replay imports the subject again and re-runs it.

λ_max engines (claims W, R, AB)
    ``engine(M) -> float``: the largest eigenvalue of the symmetric float64 matrix ``M``.
    The engine computes the quantity under test — λ_max of the perturbed matrix A + E (W,
    R) or of the empirical FIM F = GᵀG/n (AB) — and the other side of each inequality comes
    from the reference (float64 for the float margin, mpmath for the high-precision one,
    interval arithmetic for the certificate). An engine is allowed the error of a backward
    stable symmetric eigensolver, :data:`ENGINE_TOLERANCE`·n·eps·scale; beyond that, a
    violated inequality is a certified defect of the engine.

    W[engine]   λ_max(A) + λ_min(E) − τ ≤ engine(A + E) ≤ λ_max(A) + λ_max(E) + τ,
                τ = ENGINE_TOLERANCE·n·eps·(‖A‖₂ + ‖E‖₂); margin relative to ‖A‖₂ + ‖E‖₂.
    R[engine]   engine(A + E) ≥ λ1 + v1ᵀEv1 − τ for A with a simple top eigenvalue
                (τ relative to |λ1| + ‖E‖₂).
    AB[engine]  max(max_k F_kk, ḡᵀFḡ/ḡᵀḡ) − τ ≤ engine(F) ≤ min(Gershgorin, ‖F‖_F) + τ for
                F = GᵀG/n as formed in float64 (τ relative to ‖F‖_F): the closed-form terms
                of AB, on the matrix the engine is given.

Quantizers (claims T4.3a, T4.3b)
    ``round_to_grid(x, u) -> array``: a rounding rule in grid units. ``x`` is a float64
    array (the values divided by the grid step), ``u`` an array of the same shape of
    uniform [0, 1) variates — the quantizer's only randomness (a deterministic quantizer
    ignores it); the result must be integers (as floats), the grid points. The claims
    quantize a symmetric matrix F entrywise, Q(F) = Δ·round_to_grid(F/Δ, u) (Δ a power of
    two, upper triangle mirrored), so the noise is E = Q(F) − F. F's entries sit on the
    lattice Δ·Z/N (N = 2^k) and u runs over the N points (k + ½)/N, shared by all entries:
    then the noise distribution is an explicit finite ensemble, and an *unbiased* rule
    (E_u[round(x, u)] = x, e.g. floor(x + u)) gives an ensemble whose mean is exactly 0.

    T4.3a[q]    per draw, λ_max(F + E) ≥ λ_max(F) + v1ᵀEv1 (R on the quantizer's noise; it
                holds for any rule, and checks that the rule runs and stays on the grid).
    T4.3b[q]    E_u λ_max(F + E) ≥ λ_max(F) over the N-point ensemble: T4.3b(i) (Jensen),
                whose zero-mean hypothesis is the rule's unbiasedness. Every unbiased rule
                satisfies it; a certified violation proves the rule biased on the instance
                (the mean noise is reported).

Score functions (claims EF, W; kind ``score``)
    ``score(theta, X, y) -> G``: the per-sample scores of one of :data:`SCORE_MODELS`, float64
    of shape (n, P) — row i = ∇_θ log p(y_i | x_i; θ) (the gradient of the per-sample loss,
    −row i, gives the same FIM: both claims consume G only through F = GᵀG/n). ``theta`` is
    the float64 parameter vector (softmax: W.reshape(-1), W of shape (K, d)), ``X`` the (n, d)
    inputs, ``y`` the labels (logistic: floats 0/1; softmax: ints 0..K−1). The subject names its
    model with ``@score_function(model=...)`` (attribute ``fimtheory_model``), ``model=`` or
    ``--score-model``. Instances are :class:`fimtheory.instances.ParameterEnsemble` with one δ =
    Q(θ) − θ from one of the suite's quantizers (:data:`SCORE_SCHEMES`).

    EF[score]   the empirical-FIM identity: at θ and at θ + δ, every entry of the user's
                GᵀG/n equals the suite's F = (1/n)Σ g_i g_iᵀ (float64 from the symbolic
                derivation's code, mpmath, interval arithmetic: three independent references)
                to within the float64 allowance a (:func:`score_allowance`); margin
                (a − D)/(a + D) ∈ (−1, 1], D = max|ΔF| (positive iff D < a). A wrong score
                function (a missing sigmoid, the batch mean in every row, parameters in the
                wrong order) has D ≫ a: margin near −1, with a certified enclosure.
    W[score]    Weyl's bounds at the quantized parameters, λ_max from the user's scores and
                the bracket from the reference: λ1(A) + λ_min(E) − τ ≤ λ_max(GᵤᵀGᵤ/n at θ + δ)
                ≤ λ1(A) + λ_max(E) + τ, A = F(θ), E = F(θ + δ) − F(θ); τ = P·a +
                ENGINE_TOLERANCE·P·eps·scale, margin relative to scale = ‖A‖₂ + ‖E‖₂. Weaker
                than EF (a permutation of the parameters keeps every eigenvalue), it checks the
                quantity a λ_max monitor consumes.

Torch models (claims T4.3a, ENGINE; kind ``torch_model``)
    An ``nn.Module`` or a factory returning one; see :mod:`properties.subject_torch` for the
    protocol and the two claims (T4.3a on the model's FIM under the suite's quantizers; the
    suite's λ_max engines against a float64 autograd loop). torch is imported only then.

Kinds are never guessed from the callable: ``kind=`` (``--subject-kind``), else the subject's
``fimtheory_subject_kind`` attribute (set by :func:`score_function` and :func:`torch_model`),
else the claim's first kind in :data:`CLAIM_KINDS` (lambda_max for W, R, AB; quantizer for
T4.3a, T4.3b). A claim checked on a kind other than its first is named ``CLAIM[kind]``
(``W[score]@module:fn``), so replay binds the same kind again. :func:`probe_subject` calls a
subject once on a small valid input and rejects a wrong signature, shape, dtype or a NaN.

Every evaluation re-runs the subject on the instance (a stored instance whose noise is not
the subject's output is "hypotheses not met"), so a counterexample replays against the code
as it is now: a fixed engine no longer reproduces it.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import numpy as np
from hypothesis import strategies as st
from mpmath import iv

from fimtheory import spectral
from fimtheory.claims import ADJUDICATION_RTOL, Outcome, get_claim
from fimtheory.errors import InputError, UnknownIdError
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision
from fimtheory.instances import MatrixPerturbation, NoiseEnsemble, ParameterEnsemble, ScoreInstance
from fimtheory.validation import EPS64

#: An engine may err by ENGINE_TOLERANCE·n·eps·scale (a backward-stable solver's bound is
#: O(n·eps·‖M‖); numpy's eigvalsh is measured well inside it).
ENGINE_TOLERANCE = 64

LAMBDA_MAX_CLAIMS = ("W", "R", "AB")
QUANTIZER_CLAIMS = ("T4.3a", "T4.3b")
SCORE_CLAIMS = ("EF", "W")
TORCH_MODEL_CLAIMS = ("T4.3a", "ENGINE")
#: The subject kinds: what the user's callable is.
KINDS = ("lambda_max", "quantizer", "score", "torch_model")
#: The kinds of subject each claim accepts; the first is the claim's default kind, used when
#: neither ``kind=`` (``--subject-kind``) nor the subject's ``fimtheory_subject_kind``
#: attribute names one.
CLAIM_KINDS = {
    "W": ("lambda_max", "score"),
    "R": ("lambda_max",),
    "AB": ("lambda_max",),
    "T4.3a": ("quantizer", "torch_model"),
    "T4.3b": ("quantizer",),
    "EF": ("score",),
    "ENGINE": ("torch_model",),
}
#: Default subject kind of each claim that accepts one.
SUBJECT_KINDS = {c: kinds[0] for c, kinds in CLAIM_KINDS.items()}
#: Attribute a subject may carry to declare its kind (set by :func:`score_function` and
#: :func:`torch_model`).
KIND_ATTRIBUTE = "fimtheory_subject_kind"


class SubjectError(InputError):
    """The subject cannot be loaded, or returned something that is not an answer (wrong
    shape, NaN/inf, off the grid). Raised during a check, it makes the claim an error."""


# --------------------------------------------------------------------------------------
# loading and naming subjects
# --------------------------------------------------------------------------------------


def subject_ref(fn) -> str | None:
    """``module:qualname`` of a module-level callable, or None when it cannot be imported
    back by that name (a lambda, a closure, a function defined in ``__main__``)."""
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not mod or not qual or "<" in qual or mod == "__main__":
        return None
    try:
        if _import_ref(f"{mod}:{qual}") is not fn:
            return None
    except SubjectError:
        return None
    return f"{mod}:{qual}"


def _import_ref(ref: str):
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise SubjectError(f"subject {ref!r}: expected MODULE:CALLABLE")
    mod_name, qual = ref.split(":")
    if not mod_name or not qual:
        raise SubjectError(f"subject {ref!r}: expected MODULE:CALLABLE")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != mod_name.split(".")[0] or cwd in sys.path:
            raise SubjectError(f"subject {ref!r}: cannot import {mod_name!r} ({exc})") from None
        sys.path.insert(0, cwd)  # `fimtheory` is a console script: the current directory is not on the path
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as exc2:
            raise SubjectError(f"subject {ref!r}: cannot import {mod_name!r} ({exc2})") from None
    except ImportError as exc:
        raise SubjectError(f"subject {ref!r}: cannot import {mod_name!r} ({exc})") from None
    obj = mod
    for part in qual.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SubjectError(f"subject {ref!r}: {mod_name} has no attribute {qual!r}") from None
    if not callable(obj):
        raise SubjectError(f"subject {ref!r} is not callable")
    return obj


def load_subject(ref: str) -> Callable:
    """Import the callable named ``module:callable`` (the current directory is tried too).
    An ``nn.Module`` instance is callable, so a torch-model subject may name one."""
    return _import_ref(ref)


# --------------------------------------------------------------------------------------
# the bound claim
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SubjectClaim:
    """A claim evaluated on a user's subject; quacks like :class:`fimtheory.claims.Claim`."""

    id: str
    claim_id: str
    kind: str
    title: str
    statement: str
    subject: Callable
    ref: str | None
    _evaluate: Callable
    _evaluate_mp: Callable
    _evaluate_iv: Callable
    _strategy: Callable
    strict: bool = False

    @property
    def replayable(self) -> bool:
        """Whether ``fimtheory replay`` can import the subject by its name."""
        return self.ref is not None

    def evaluate(self, inst) -> Outcome:
        return self._evaluate(self.subject, inst)

    def evaluate_mp(self, inst, dps: int):
        return self._evaluate_mp(self.subject, inst, dps)

    def evaluate_iv(self, inst, dps: int):
        return self._evaluate_iv(self.subject, inst, dps)

    def strategy(self):
        """The Hypothesis strategy of this claim's instances (built with the subject)."""
        return self._strategy(self.subject)

    def holds(self, margin) -> bool:
        return margin > 0 if self.strict else margin >= 0

    def describe(self) -> dict:
        return {"id": self.id, "claim": self.claim_id, "subject": self.ref, "kind": self.kind, "title": self.title}


def _split_claim(claim_id: str) -> tuple[str, str | None]:
    """``'W[score]'`` → ('W', 'score'); ``'W'`` → ('W', None)."""
    m = re.fullmatch(r"([^\[\]@]+)(?:\[([a-z_]+)\])?", str(claim_id))
    if not m:
        raise UnknownIdError(f"claim {claim_id!r}: expected CLAIM or CLAIM[kind]")
    return m.group(1), m.group(2)


def subject_kind(claim_id: str, subject, kind: str | None = None) -> str:
    """The kind the subject is checked as: ``kind`` when given, else the subject's declared
    ``fimtheory_subject_kind``, else the claim's default kind (:data:`CLAIM_KINDS`). Both
    given and different, or a kind the claim does not take, is an error — never a guess."""
    if claim_id not in CLAIM_KINDS:
        raise UnknownIdError(
            f"claim {claim_id!r} takes no subject; claims with subjects: "
            + ", ".join(f"{c} ({'/'.join(k)})" for c, k in CLAIM_KINDS.items())
        )
    declared = getattr(subject, KIND_ATTRIBUTE, None) if not isinstance(subject, str) else None
    for name, value in (("kind", kind), (KIND_ATTRIBUTE, declared)):
        if value is not None and value not in KINDS:
            raise SubjectError(f"subject {name} {value!r} is not one of {', '.join(KINDS)}")
    if kind is not None and declared is not None and kind != declared:
        raise SubjectError(f"--subject-kind {kind} but the subject declares {KIND_ATTRIBUTE} = {declared!r}")
    chosen = kind or declared or CLAIM_KINDS[claim_id][0]
    if chosen not in CLAIM_KINDS[claim_id]:
        takes = [c for c, k in CLAIM_KINDS.items() if chosen in k]
        raise UnknownIdError(
            f"claim {claim_id!r} takes a subject of kind {'/'.join(CLAIM_KINDS[claim_id])}, not {chosen!r}"
            + (f"; {chosen} subjects are checked by {', '.join(takes)}" if takes else "")
        )
    return chosen


def bind(claim_id: str, subject, *, ref: str | None = None, kind: str | None = None, **options) -> SubjectClaim:
    """The claim ``claim_id`` (one of :data:`CLAIM_KINDS`) evaluated on ``subject``.

    ``subject`` is a callable (see the module docstring for the protocol of each kind; a torch
    model may also be an ``nn.Module``) or a ``module:callable`` string. ``kind`` selects the
    subject kind where the claim takes several (see :func:`subject_kind`); ``claim_id`` may
    also spell it, ``'W[score]'``. ``ref`` overrides the name stored in counterexamples.
    ``options``: ``model=`` for a score subject (else its ``fimtheory_model`` attribute).
    """
    base, spelled = _split_claim(claim_id)
    if spelled is not None and kind is not None and spelled != kind:
        raise SubjectError(f"claim {claim_id!r} names kind {spelled!r} but kind={kind!r} was given")
    if base not in CLAIM_KINDS:
        subject_kind(base, None)  # raises the listing of claims with subjects
    if isinstance(subject, str):
        ref = ref or subject
        subject = load_subject(subject)
    elif not callable(subject):
        raise SubjectError(f"subject must be a callable or 'module:callable', got {type(subject).__name__}")
    kind = subject_kind(base, subject, kind or spelled)
    ref = ref or subject_ref(subject)
    name = ref or f"<unimportable {getattr(subject, '__qualname__', type(subject).__name__)}>"
    if kind == "torch_model":
        from properties import subject_torch

        entry = subject_torch.table_entry(base, subject, **options)
    elif kind == "score":
        entry = _score_entry(base, subject, **options)
    else:
        if options:
            raise SubjectError(f"a {kind} subject takes no options, got {sorted(options)}")
        entry = _TABLE[base]
    ev, ev_mp, ev_iv, strat, title, statement = entry
    shown = base if kind == CLAIM_KINDS[base][0] else f"{base}[{kind}]"
    return SubjectClaim(
        id=f"{shown}@{name}",
        claim_id=base,
        kind=kind,
        title=title,
        statement=statement,
        subject=subject,
        ref=ref,
        _evaluate=ev,
        _evaluate_mp=ev_mp,
        _evaluate_iv=ev_iv,
        _strategy=strat,
    )


def resolve(claim_id: str, bound_id: str) -> SubjectClaim:
    """The :class:`SubjectClaim` a stored id ``CLAIM@module:callable`` (or
    ``CLAIM[kind]@module:callable``) names (imports it)."""
    shown, _, ref = str(bound_id).partition("@")
    try:
        base, kind = _split_claim(shown)
    except UnknownIdError:
        base, kind = None, None
    if base != claim_id or not ref:
        raise SubjectError(f"{bound_id!r} is not a subject-bound id of claim {claim_id!r}")
    if ref.startswith("<"):
        raise SubjectError(f"{bound_id!r}: the subject was not importable by name, so it cannot be replayed")
    kind = kind or CLAIM_KINDS.get(base, ("",))[0]
    return bind(base, ref, ref=ref, kind=kind, **({"replay": True} if kind == "score" else {}))


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _engine_value(engine, M: np.ndarray) -> float:
    try:
        raw = engine(np.array(M, dtype=np.float64, copy=True))
        value = float(np.asarray(raw, dtype=np.float64).reshape(()))
    except SubjectError:
        raise
    except (TypeError, ValueError) as exc:
        raise SubjectError(f"the λ_max engine did not return one number: {type(exc).__name__}: {exc}") from None
    if not math.isfinite(value):
        raise SubjectError(f"the λ_max engine returned {value!r} for a finite {M.shape[0]}×{M.shape[0]} matrix")
    return value


def _outcome(margin: float, **details) -> Outcome:
    needs = not (margin > ADJUDICATION_RTOL)
    return Outcome(True, float(margin), needs, "", {k: float(v) for k, v in details.items()})


def _iv_lo(x):
    return mpmath.mpf(x.a)


def _iv_hi(x):
    return mpmath.mpf(x.b)


def _iv_result(fn, inst, dps: int):
    """Run an interval margin ``fn(inst)`` at ``dps`` digits; (lo, hi) mpf. Failures to
    enclose become :class:`fimtheory.enclosures.EnclosureError` (retried at higher precision)."""
    from fimtheory import enclosures

    with working_precision(dps):
        try:
            m = fn(inst)
        except (InputError, ZeroDivisionError) as exc:
            if isinstance(exc, SubjectError):
                raise
            raise enclosures.EnclosureError(str(exc)) from None
        return _iv_lo(m), _iv_hi(m)


def _iv_divide(num, scale):
    if _iv_lo(scale) > 0:
        return num / scale
    if _iv_hi(scale) == 0:
        return num
    raise InputError("the scale of the margin is not bounded away from 0")


def _tolerance(n: int) -> float:
    return ENGINE_TOLERANCE * max(n, 1) * EPS64


def _norm2(a: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvalsh(a)))) if a.size else 0.0


def _mp_norm(eigs) -> mpmath.mpf:
    return max(abs(eigs[0]), abs(eigs[-1]))


# --------------------------------------------------------------------------------------
# W[engine]
# --------------------------------------------------------------------------------------


def _w_float(engine, inst: MatrixPerturbation) -> Outcome:
    A, E = inst.A, inst.E
    u = _engine_value(engine, A + E)
    wa, we = np.linalg.eigvalsh(A), np.linalg.eigvalsh(E)
    scale = max(abs(wa[0]), abs(wa[-1])) + max(abs(we[0]), abs(we[-1]))
    lower, upper = wa[-1] + we[0], wa[-1] + we[-1]
    m = min(u - lower, upper - u) + _tolerance(inst.n) * scale
    return _outcome(m / scale if scale > 0 else m, engine_value=u, lower=lower, upper=upper)


def _w_mp(engine, inst: MatrixPerturbation, dps: int):
    u = _engine_value(engine, inst.A + inst.E)
    with working_precision(dps):
        la = mp_eigh(inst.A, dps).eigenvalues  # descending
        le = mp_eigh(inst.E, dps).eigenvalues
        scale = _mp_norm(la) + _mp_norm(le)
        um = mpmath.mpf(u)
        m = min(um - (la[0] + le[-1]), (la[0] + le[0]) - um) + mpmath.mpf(_tolerance(inst.n)) * scale
        return m / scale if scale > 0 else m


def _w_iv_margin(engine, inst: MatrixPerturbation):
    from properties.certify import float_eigenvalue_enclosures, iv_min, iv_sym_norm

    u = iv.mpf(_engine_value(engine, inst.A + inst.E))
    ea, ee = float_eigenvalue_enclosures(inst.A), float_eigenvalue_enclosures(inst.E)
    scale = iv_sym_norm(ea) + iv_sym_norm(ee)
    m = iv_min([u - (ea[0] + ee[-1]), (ea[0] + ee[0]) - u]) + iv.mpf(_tolerance(inst.n)) * scale
    return _iv_divide(m, scale)


# --------------------------------------------------------------------------------------
# R[engine]
# --------------------------------------------------------------------------------------


def _r_float(engine, inst: MatrixPerturbation) -> Outcome:
    eig = spectral.eigen_data(inst.A)
    if inst.n < 2:
        return Outcome.not_met("R[engine] is drawn for n ≥ 2")
    if not eig.gap_resolved():
        return Outcome.not_met("γ = 0 (top eigenvalue of A repeated within rounding)")
    v = eig.top_vector
    e11 = float(v @ inst.E @ v)
    u = _engine_value(engine, inst.A + inst.E)
    scale = abs(eig.lambda_max) + _norm2(inst.E)
    m = u - eig.lambda_max - e11 + _tolerance(inst.n) * scale
    return _outcome(m / scale if scale > 0 else m, engine_value=u, e11=e11)


def _r_mp(engine, inst: MatrixPerturbation, dps: int):
    u = _engine_value(engine, inst.A + inst.E)
    with working_precision(dps):
        eig = mp_eigh(inst.A, dps)
        E = mp_matrix(inst.E)
        v = eig.vector(0)
        rq = eig.lambda_max + (v.T * E * v)[0, 0] / (v.T * v)[0, 0]
        scale = abs(eig.lambda_max) + _mp_norm(mp_eigh(inst.E, dps).eigenvalues)
        m = mpmath.mpf(u) - rq + mpmath.mpf(_tolerance(inst.n)) * scale
        return m / scale if scale > 0 else m


def _r_iv_margin(engine, inst: MatrixPerturbation):
    from properties.certify import iv_abs, top_pair_enclosure

    u = iv.mpf(_engine_value(engine, inst.A + inst.E))
    tp = top_pair_enclosure(inst.A, inst.E)
    scale = iv_abs(tp.lam1) + tp.eta
    m = u - tp.lam1 - tp.e11 + iv.mpf(_tolerance(inst.n)) * scale
    return _iv_divide(m, scale)


# --------------------------------------------------------------------------------------
# AB[engine]
# --------------------------------------------------------------------------------------


def _fim_float(G: np.ndarray) -> np.ndarray:
    F = G.T @ G / G.shape[0]
    return 0.5 * (F + F.T)


def _mean_direction(G: np.ndarray):
    g = G.mean(axis=0)
    return g if np.any(g) else None


def _ab_float(engine, inst: ScoreInstance) -> Outcome:
    F = _fim_float(inst.G)
    fro = float(np.linalg.norm(F))
    if fro == 0.0:
        return Outcome.not_met("F = 0: every bound is trivially 0")
    u = _engine_value(engine, F)
    lows = [float(np.max(np.diag(F)))]
    g = _mean_direction(inst.G)
    if g is not None:
        lows.append(float(g @ F @ g) / float(g @ g))
    ups = [float(np.max(np.sum(np.abs(F), axis=1))), fro]
    m = min(u - max(lows), min(ups) - u) + _tolerance(F.shape[0]) * fro
    return _outcome(m / fro, engine_value=u, lower=max(lows), upper=min(ups))


def _ab_mp(engine, inst: ScoreInstance, dps: int):
    F = _fim_float(inst.G)
    u = _engine_value(engine, F)
    g = _mean_direction(inst.G)
    p = F.shape[0]
    with working_precision(dps):
        M = mp_matrix(F)
        fro = mpmath.sqrt(mpmath.fsum(M[i, j] ** 2 for i in range(p) for j in range(p)))
        lows = [max(M[i, i] for i in range(p))]
        if g is not None:
            x = mp_matrix(g.reshape(-1, 1))
            lows.append((x.T * M * x)[0, 0] / (x.T * x)[0, 0])
        ups = [max(mpmath.fsum(abs(M[i, j]) for j in range(p)) for i in range(p)), fro]
        um = mpmath.mpf(u)
        m = min(um - max(lows), min(ups) - um) + mpmath.mpf(_tolerance(p)) * fro
        return m / fro


def _ab_iv_margin(engine, inst: ScoreInstance):
    from properties.certify import iv_abs, iv_column, iv_dot, iv_matrix, iv_max, iv_min, iv_norm_sq

    F = _fim_float(inst.G)
    u = iv.mpf(_engine_value(engine, F))
    p = F.shape[0]
    M = iv_matrix(F)
    fro = iv.sqrt(sum((iv_abs(M[i, j]) ** 2 for i in range(p) for j in range(p)), iv.mpf(0)))
    lows = [iv_max([M[i, i] for i in range(p)])]
    g = _mean_direction(inst.G)
    if g is not None:
        x = iv_column(g)
        lows.append(iv_dot(x, M * x) / iv_norm_sq(x))
    ups = [iv_max([sum((iv_abs(M[i, j]) for j in range(p)), iv.mpf(0)) for i in range(p)]), fro]
    m = iv_min([u - iv_max(lows), iv_min(ups) - u]) + iv.mpf(_tolerance(p)) * fro
    return _iv_divide(m, fro)


# --------------------------------------------------------------------------------------
# quantizers: the lattice ensemble
# --------------------------------------------------------------------------------------

_LATTICE = re.compile(r"lattice N=(\d+) step=(\S+)(?: draw=(\d+))?")


def _round_on_grid(rule, X: np.ndarray, u: float) -> np.ndarray:
    try:
        out = rule(np.array(X, copy=True), np.full(X.shape, float(u)))
        q = np.asarray(out, dtype=np.float64)
    except SubjectError:
        raise
    except (TypeError, ValueError) as exc:
        raise SubjectError(f"the quantizer failed: {type(exc).__name__}: {exc}") from None
    if q.shape != X.shape:
        raise SubjectError(f"the quantizer returned shape {q.shape} for input of shape {X.shape}")
    if not np.all(np.isfinite(q)):
        raise SubjectError("the quantizer returned NaN or inf for finite input")
    if not np.array_equal(q, np.round(q)):
        raise SubjectError("the quantizer returned values off the integer grid (it must return grid units)")
    return q


def lattice_noise(rule, F: np.ndarray, N: int, step: float, draws=None) -> list[np.ndarray]:
    """E_k = Q_k(F) − F for u = (k + ½)/N, Q_k(F) = step·rule(F/step, u) with the upper
    triangle mirrored (exact in float64: F sits on the lattice step·Z/N)."""
    X = F / step
    ks = range(N) if draws is None else draws
    out = []
    for k in ks:
        q = _round_on_grid(rule, X, (k + 0.5) / N)
        upper = np.triu(q)
        Q = (upper + np.triu(q, 1).T) * step
        out.append(Q - F)
    return out


@st.composite
def lattice_matrices(draw, *, n=(2, 5)):
    """(F, N, step): a symmetric PSD F (an empirical FIM GᵀG/m of seeded Gaussian scores)
    rounded to the lattice step·Z/N, with N = 2^k (k ∈ 1..4) and step a power of two
    between 1/2 and 1/64 of F's largest entry."""
    size = draw(st.integers(*n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m = draw(st.integers(1, 8))
    G = rng.standard_normal((m, size)) * float(draw(st.sampled_from([1.0, 0.1, 10.0])))
    F = G.T @ G / m
    F = 0.5 * (F + F.T)
    N = 2 ** draw(st.integers(1, 4))
    top = float(np.max(np.abs(F))) or 1.0
    step = 2.0 ** (math.floor(math.log2(top)) - draw(st.integers(1, 6)))
    X = np.round(F / step * N) / N
    return X * step, N, step


def _ensemble_strategy(rule):
    def build(args):
        F, N, step = args
        return NoiseEnsemble(
            F, tuple(lattice_noise(rule, F, N, step)), t=1.0, origin=f"lattice N={N} step={step.hex()}"
        )

    return lattice_matrices().map(build)


def _single_draw_strategy(rule):
    @st.composite
    def build(draw):
        F, N, step = draw(lattice_matrices())
        k = draw(st.integers(0, N - 1))
        (E,) = lattice_noise(rule, F, N, step, draws=[k])
        return MatrixPerturbation(F, E, origin=f"lattice N={N} step={step.hex()} draw={k}")

    return build()


def _provenance(inst) -> tuple | None:
    m = _LATTICE.fullmatch(getattr(inst, "origin", "") or "")
    if not m:
        return None
    try:
        N, step = int(m.group(1)), float.fromhex(m.group(2))
    except ValueError:
        return None
    if N < 1 or not step > 0:
        return None
    return N, step, (None if m.group(3) is None else int(m.group(3)))


def _from_subject(rule, inst, single: bool) -> str:
    """'' when the instance's noise is exactly what the rule produces, else why not."""
    prov = _provenance(inst)
    if prov is None or (prov[2] is None) == single:
        return "the instance does not record a quantizer lattice (origin 'lattice N=… step=…')"
    N, step, k = prov
    F = inst.A if single else inst.F
    if not np.array_equal(np.round(F / step * N) / N * step, F):
        return "F is not on the lattice the instance records"
    if single:
        (E,) = lattice_noise(rule, F, N, step, draws=[k])
        same = np.array_equal(E, inst.E)
    else:
        Es = lattice_noise(rule, F, N, step)
        same = len(Es) == len(inst.perturbations) and all(np.array_equal(a, b) for a, b in zip(Es, inst.perturbations))
    return "" if same else "the noise is not the subject's quantization noise on this lattice"


def _t43b_base():
    return get_claim("T4.3b").weakening("T4.3b-nonzero-mean")


def _t43b_float(rule, inst: NoiseEnsemble) -> Outcome:
    why = _from_subject(rule, inst, single=False)
    if why:
        return Outcome.not_met(why)
    out = _t43b_base().evaluate(inst)
    mean = np.mean(np.stack(inst.perturbations), axis=0)
    details = dict(out.details)
    details["zero_mean_exact"] = float(inst.exact_mean_is_zero())
    details["max_abs_mean_noise"] = float(np.max(np.abs(mean)))
    return Outcome(
        out.hypotheses_met,
        out.margin,
        out.needs_adjudication,
        out.reason,
        details,
        out.float_resolved,
        dict(out.hypothesis_margins),
    )


def _t43b_mp(rule, inst, dps):
    return _t43b_base().evaluate_mp(inst, dps)


def _t43b_iv(rule, inst, dps):
    from fimtheory import enclosures

    if _from_subject(rule, inst, single=False):
        raise enclosures.HypothesisFails("the noise is not the subject's")
    return enclosures.margin_enclosure(_t43b_base(), inst, dps)


def _t43a_base():
    return get_claim("T4.3a")


def _t43a_float(rule, inst: MatrixPerturbation) -> Outcome:
    why = _from_subject(rule, inst, single=True)
    return Outcome.not_met(why) if why else _t43a_base().evaluate(inst)


def _t43a_mp(rule, inst, dps):
    return _t43a_base().evaluate_mp(inst, dps)


def _t43a_iv(rule, inst, dps):
    from fimtheory import enclosures

    if _from_subject(rule, inst, single=True):
        raise enclosures.HypothesisFails("the noise is not the subject's")
    return enclosures.margin_enclosure(_t43a_base(), inst, dps)


# --------------------------------------------------------------------------------------
# score functions: EF[score], W[score]
# --------------------------------------------------------------------------------------

#: Models whose per-sample scores the suite has three independent references for: float64
#: (the symbolic derivation's generated code), mpmath and interval arithmetic.
SCORE_MODELS = ("logistic", "softmax")
#: The suite's quantizers (:func:`fimtheory.quantize.quantize`) that move θ in W[score].
SCORE_SCHEMES = ("rtn-int4-sym-tensor", "rtn-int3-sym-tensor", "nf4-tensor", "rtn-int8-sym-tensor")
#: Float margins of the score claims at or below this (in units of the allowance) are
#: adjudicated at high precision.
SCORE_BAND = 0.05


def score_function(*, model: str):
    """Decorator: declare a function a score subject of ``model`` (one of :data:`SCORE_MODELS`).

    Sets ``fimtheory_subject_kind = 'score'`` and ``fimtheory_model = model`` on the function,
    so ``fimtheory verify --subject module:fn --claim EF`` needs no further option."""
    if model not in SCORE_MODELS:
        raise UnknownIdError(f"score model {model!r}; known: {', '.join(SCORE_MODELS)}")

    def mark(fn):
        setattr(fn, KIND_ATTRIBUTE, "score")
        fn.fimtheory_model = model
        return fn

    return mark


def _score_model(subject, model):
    declared = getattr(subject, "fimtheory_model", None)
    if model is not None and declared is not None and model != declared:
        raise SubjectError(f"--score-model {model} but the subject declares fimtheory_model = {declared!r}")
    model = model or declared
    if model is None:
        raise SubjectError(
            "a score subject must name its model: --score-model, model=, or the attribute fimtheory_model "
            f"(@properties.subjects.score_function(model=...)); one of {', '.join(SCORE_MODELS)}"
        )
    if model not in SCORE_MODELS:
        raise SubjectError(f"score model {model!r} is not one of {', '.join(SCORE_MODELS)}")
    return model


def score_value(score, model: str, X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The subject's G = score(θ, X, y), checked: float64, shape (n, P), finite."""
    n = X.shape[0]
    try:
        raw = score(np.array(theta, copy=True), np.array(X, copy=True), np.array(y, copy=True))
    except SubjectError:
        raise
    except (TypeError, ValueError, IndexError, ArithmeticError) as exc:
        raise SubjectError(f"the score function failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(raw, np.ndarray):
        raise SubjectError(f"the score function returned {type(raw).__name__}, expected a float64 numpy array")
    if raw.dtype != np.float64:
        raise SubjectError(f"the score function returned dtype {raw.dtype}, expected float64")
    if raw.shape != (n, theta.size):
        raise SubjectError(
            f"the score function returned shape {raw.shape}, expected (n, P) = ({n}, {theta.size}) for {model}"
        )
    if not np.all(np.isfinite(raw)):
        raise SubjectError("the score function returned NaN or inf for finite input")
    return raw


def _points(inst: ParameterEnsemble) -> list[np.ndarray]:
    """θ and each quantized θ + δ_k (as float64 sums: the instance's exact parameter points)."""
    return [inst.theta] + [inst.theta + d for d in inst.deltas]


def score_allowance(inst: ParameterEnsemble, theta: np.ndarray) -> float:
    """a = ENGINE_TOLERANCE·(n + P + d)·eps·M, M = (1/n)Σ_i max_j x_ij²·(1 + max_c Σ_j |W_cj x_ij|):
    the error a float64 implementation of the canonical-link score (e_y − μ(Wx)) ⊗ x may make in
    an entry of F = GᵀG/n (the residual's error is about eps·(1 + |Wx|), including saturated
    cases where F itself is tiny). A float64 number, used exactly by all three evaluators."""
    X = inst.X
    n, d = X.shape
    W = np.abs(theta.reshape(-1, d))
    rho = 1.0 + np.max(np.abs(X) @ W.T, axis=1)
    M = float(np.mean(np.max(X * X, axis=1) * rho))
    return ENGINE_TOLERANCE * (n + theta.size + d) * EPS64 * M


def _fim_user(G: np.ndarray) -> np.ndarray:
    return G.T @ G / G.shape[0]


def _ef_float(score, inst: ParameterEnsemble) -> Outcome:
    from fimtheory import models

    worst, where = math.inf, 0
    for k, t in enumerate(_points(inst)):
        a = score_allowance(inst, t)
        Fu = _fim_user(score_value(score, inst.model, inst.X, inst.y, t))
        Fr = models.fim(inst.model, inst.X, inst.y, t)
        D = float(np.max(np.abs(Fu - Fr)))
        m = (a - D) / (a + D)
        if m < worst:
            worst, where = m, k
    return Outcome(True, float(worst), not worst > SCORE_BAND, "", {"point": float(where)})


def _mp_fim_of(G) -> mpmath.matrix:
    n = G.rows
    return (G.T * G) * (mpmath.mpf(1) / n)


def _ef_mp(score, inst: ParameterEnsemble, dps: int):
    from fimtheory import models

    worst = None
    with working_precision(dps):
        for t in _points(inst):
            a = mpmath.mpf(score_allowance(inst, t))
            Fu = _mp_fim_of(mp_matrix(score_value(score, inst.model, inst.X, inst.y, t)))
            Fr = _mp_fim_of(models.mp_scores(inst.model, inst.X, inst.y, t))
            P = Fu.rows
            D = max(abs(Fu[i, j] - Fr[i, j]) for i in range(P) for j in range(P))
            m = (a - D) / (a + D)
            worst = m if worst is None else min(worst, m)
    return worst


def _iv_fim_of(G):
    n = G.rows
    return (G.T * G) * (iv.mpf(1) / n)


def _iv_user_scores(G: np.ndarray):
    from properties.certify import iv_matrix

    return iv_matrix(G)


def _ef_iv_margin(score, inst: ParameterEnsemble):
    from properties.certify import iv_abs, iv_max, iv_min, iv_scores

    ms = []
    for t in _points(inst):
        a = iv.mpf(score_allowance(inst, t))
        Fu = _iv_fim_of(_iv_user_scores(score_value(score, inst.model, inst.X, inst.y, t)))
        Fr = _iv_fim_of(iv_scores(inst.model, inst.X, inst.y, t))
        P = Fu.rows
        D = iv_max([iv_abs(Fu[i, j] - Fr[i, j]) for i in range(P) for j in range(P)])
        ms.append((a - D) / (a + D))
    return iv_min(ms)


def _w_score_parts_float(score, inst: ParameterEnsemble):
    from fimtheory import models

    t0, t1 = inst.theta, inst.theta + inst.deltas[0]
    A = models.fim(inst.model, inst.X, inst.y, t0)
    E = models.fim(inst.model, inst.X, inst.y, t1) - A
    lam_u = float(np.linalg.eigvalsh(_fim_user(score_value(score, inst.model, inst.X, inst.y, t1)))[-1])
    return A, E, lam_u


def _w_score_tolerance(inst: ParameterEnsemble, scale):
    """P·a(θ + δ) (the user's F may err by the allowance a in each entry, so its λ_max by
    P·a) plus a backward-stable eigensolver's ENGINE_TOLERANCE·P·eps·scale."""
    t1 = inst.theta + inst.deltas[0]
    P = inst.theta.size
    return P * score_allowance(inst, t1), ENGINE_TOLERANCE * P * EPS64


def _w_score_float(score, inst: ParameterEnsemble) -> Outcome:
    if len(inst.deltas) != 1:
        return Outcome.not_met("W[score] takes one quantization step δ")
    A, E, lam_u = _w_score_parts_float(score, inst)
    wa, we = np.linalg.eigvalsh(A), np.linalg.eigvalsh(E)
    scale = max(abs(wa[0]), abs(wa[-1])) + max(abs(we[0]), abs(we[-1]))
    if not scale > 0:
        return Outcome.not_met("F(θ) = F(θ + δ) = 0")
    lower, upper = wa[-1] + we[0], wa[-1] + we[-1]
    absolute, rel = _w_score_tolerance(inst, scale)
    m = (min(lam_u - lower, upper - lam_u) + absolute + rel * scale) / scale
    return _outcome(m, lambda_max_user=lam_u, lower=lower, upper=upper)


def _w_score_mp(score, inst: ParameterEnsemble, dps: int):
    from fimtheory import models

    t0, t1 = inst.theta, inst.theta + inst.deltas[0]
    with working_precision(dps):
        A = _mp_fim_of(models.mp_scores(inst.model, inst.X, inst.y, t0))
        E = _mp_fim_of(models.mp_scores(inst.model, inst.X, inst.y, t1)) - A
        Fu = _mp_fim_of(mp_matrix(score_value(score, inst.model, inst.X, inst.y, t1)))
        la = sorted(mpmath.eigsy(A, eigvals_only=True))
        le = sorted(mpmath.eigsy(E, eigvals_only=True))
        lam_u = max(mpmath.eigsy(Fu, eigvals_only=True))
        scale = max(abs(la[0]), abs(la[-1])) + max(abs(le[0]), abs(le[-1]))
        absolute, rel = _w_score_tolerance(inst, None)
        m = min(lam_u - (la[-1] + le[0]), (la[-1] + le[-1]) - lam_u) + mpmath.mpf(absolute)
        m = m + mpmath.mpf(rel) * scale
        return m / scale if scale > 0 else m


def _w_score_iv_margin(score, inst: ParameterEnsemble):
    from properties.certify import iv_eigenvalue_enclosures, iv_lambda_max, iv_min, iv_scores, iv_sym_norm

    t0, t1 = inst.theta, inst.theta + inst.deltas[0]
    A = _iv_fim_of(iv_scores(inst.model, inst.X, inst.y, t0))
    E = _iv_fim_of(iv_scores(inst.model, inst.X, inst.y, t1)) - A
    lam_u = iv_lambda_max(_iv_fim_of(_iv_user_scores(score_value(score, inst.model, inst.X, inst.y, t1))))
    ea, ee = iv_eigenvalue_enclosures(A), iv_eigenvalue_enclosures(E)  # descending
    scale = iv_sym_norm(ea) + iv_sym_norm(ee)
    absolute, rel = _w_score_tolerance(inst, None)
    m = iv_min([lam_u - (ea[0] + ee[-1]), (ea[0] + ee[0]) - lam_u]) + iv.mpf(absolute) + iv.mpf(rel) * scale
    return _iv_divide(m, scale)


@st.composite
def score_model_instances(draw, *, model: str):
    """A logistic or softmax model at θ with n ≤ 8 samples of d ≤ 3 features (seeded Gaussian X,
    θ, labels uniform) and δ = Q(θ) − θ for one of the suite's quantizers :data:`SCORE_SCHEMES`
    (per-tensor RTN at 3, 4 and 8 bits, NF4): a :class:`fimtheory.instances.ParameterEnsemble`
    with one δ, ``labels='empirical'``."""
    from fimtheory.quantize import quantize

    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 8))
    d = draw(st.integers(1, 3))
    k = 1 if model == "logistic" else draw(st.integers(2, 3))
    X = rng.standard_normal((n, d)) * float(draw(st.sampled_from([1.0, 0.3, 3.0])))
    theta = rng.standard_normal(k * d) * float(draw(st.sampled_from([0.5, 1.0, 2.0])))
    y = rng.integers(0, 2, n).astype(float) if model == "logistic" else rng.integers(0, k, n)
    scheme = draw(st.sampled_from(SCORE_SCHEMES))
    delta = quantize(theta, scheme) - theta
    return ParameterEnsemble(model, X, y, theta, (delta,), labels="empirical", origin=f"quantizer {scheme}")


def _score_entry(claim_id: str, subject, *, model: str | None = None, replay: bool = False):
    """``replay``: bound again for a stored instance, which names its model itself; then a
    subject without a declared model is accepted (only drawing new instances needs it)."""
    try:
        model = _score_model(subject, model)
    except SubjectError:
        if not replay:
            raise
        model = None

    def strategy(_subject):
        if model is None:
            _score_model(_subject, None)  # raises: drawing instances needs the model
        return score_model_instances(model=model)

    if claim_id == "EF":
        return (
            _ef_float,
            _ef_mp,
            _iv(_ef_iv_margin),
            strategy,
            f"the user's scores give the empirical FIM of the {model or 'stored'} model",
            "D = max_kl |(GᵀG/n)_kl − F_kl| ≤ a at θ and at Q(θ); margin (a − D)/(a + D), a the float64 allowance",
        )
    return (
        _w_score_float,
        _w_score_mp,
        _iv(_w_score_iv_margin),
        strategy,
        f"Weyl's bounds hold for λ_max of the user's FIM of the {model or 'stored'} model at the quantized θ",
        "λ1(F(θ)) + λ_min(E) − τ ≤ λ_max(GᵤᵀGᵤ/n at Q(θ)) ≤ λ1(F(θ)) + λ_max(E) + τ, E = F(Q(θ)) − F(θ)",
    )


# --------------------------------------------------------------------------------------
# torch models: T4.3a[torch_model], ENGINE[torch_model] (evaluators in properties.subject_torch)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchModelInstance:
    """Inputs drawn for a torch-model subject: X (n × d float64), labels y (n int64), the
    suite's quantizer ``scheme`` and the SHA-256 of the model's float64 weights."""

    X: np.ndarray
    y: np.ndarray
    scheme: str
    weights_sha256: str
    origin: str = ""

    def __post_init__(self):
        X = np.asarray(self.X, dtype=np.float64)
        y = np.asarray(self.y)
        if X.ndim != 2 or not np.all(np.isfinite(X)):
            raise InputError(f"X must be a finite 2-D float array, got shape {X.shape}")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise InputError("y must be a 1-D integer array")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y.astype(np.int64))


#: Instance types of subject-bound claims that stored counterexamples name ``module:qualname``.
INSTANCE_TYPES = {f"{__name__}:TorchModelInstance": TorchModelInstance}


def torch_model(fn=None, *, input_dim: int | None = None, params=None):
    """Decorator (on a model factory or an ``nn.Module`` class instance): declare a torch-model
    subject, optionally with ``fimtheory_input_dim`` and ``fimtheory_params``."""

    def mark(obj):
        setattr(obj, KIND_ATTRIBUTE, "torch_model")
        if input_dim is not None:
            obj.fimtheory_input_dim = input_dim
        if params is not None:
            obj.fimtheory_params = tuple(params)
        return obj

    return mark if fn is None else mark(fn)


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------


def _pairs(_engine):
    from properties.claim_strategies import _generic_pairs

    return _generic_pairs()


def _gapped_pairs(_engine):
    from properties.claim_strategies import _generic_pairs

    return _generic_pairs(min_gap=1e-3, n=(2, 8))


def _scores(_engine):
    from properties.claim_strategies import score_instances

    return score_instances()


def _iv(margin):
    return lambda subject, inst, dps: _iv_result(lambda i: margin(subject, i), inst, dps)


_TABLE = {
    "W": (
        _w_float,
        _w_mp,
        _iv(_w_iv_margin),
        _pairs,
        "Weyl's bounds hold for the engine's λ_max(A + E)",
        "λ_max(A) + λ_min(E) − τ ≤ engine(A + E) ≤ λ_max(A) + λ_max(E) + τ",
    ),
    "R": (
        _r_float,
        _r_mp,
        _iv(_r_iv_margin),
        _gapped_pairs,
        "the directional bound holds for the engine's λ_max(A + E)",
        "engine(A + E) ≥ λ1 + v1ᵀEv1 − τ (simple λ1)",
    ),
    "AB": (
        _ab_float,
        _ab_mp,
        _iv(_ab_iv_margin),
        _scores,
        "the engine's λ_max(F) lies within AB's closed-form bounds",
        "max(max F_kk, ḡᵀFḡ/ḡᵀḡ) − τ ≤ engine(F) ≤ min(Gershgorin, ‖F‖_F) + τ",
    ),
    "T4.3a": (
        _t43a_float,
        _t43a_mp,
        _t43a_iv,
        _single_draw_strategy,
        "per draw, the directional bound on the quantizer's noise",
        "λ_max(F + E) ≥ λ_max(F) + v1ᵀEv1, E = Q(F) − F one draw of the quantizer",
    ),
    "T4.3b": (
        _t43b_float,
        _t43b_mp,
        _t43b_iv,
        _ensemble_strategy,
        "quantization raises λ_max in expectation (Jensen) under the quantizer's noise",
        "E_u λ_max(F + E) ≥ λ_max(F), E = Q(F) − F over the quantizer's lattice ensemble",
    ),
}


# --------------------------------------------------------------------------------------
# `fimtheory verify --subject MODULE:CALLABLE --claim ID`
# --------------------------------------------------------------------------------------

#: Where `fimtheory verify --subject` writes certified counterexamples (relative to the
#: current directory), as the pytest plugin does by default.
COUNTEREXAMPLE_DIR = ".fimtheory/counterexamples"


_PROTOCOLS = {
    "lambda_max": "engine(M) -> float",
    "quantizer": "rule(x, u) -> array of grid units",
    "score": "score(theta, X, y) -> G of shape (n, P), float64",
    "torch_model": "an nn.Module, or factory() -> nn.Module",
}


def _check_signature(kind: str, subject, nargs: int) -> None:
    import inspect

    try:
        sig = inspect.signature(subject)
    except (TypeError, ValueError):  # builtins and ufuncs without a signature: the call decides
        return
    try:
        sig.bind(*([None] * nargs))
    except TypeError as exc:
        raise SubjectError(f"a {kind} subject is called as {_PROTOCOLS[kind]}: {exc}") from None


def probe_subject(kind: str, subject, *, model: str | None = None) -> None:
    """Call the subject once on a small valid input of its kind and check the answer's type,
    shape, dtype and finiteness; raises :class:`SubjectError` naming the problem (the CLI's one
    line and exit 2, before any work)."""
    if kind == "torch_model":
        from properties import subject_torch

        subject_torch.prepared(subject)
        return
    if kind == "lambda_max":
        _check_signature(kind, subject, 1)
        _engine_value(subject, np.diag([2.0, 1.0, 0.5]))
    elif kind == "quantizer":
        _check_signature(kind, subject, 2)
        _round_on_grid(subject, np.array([[0.25, -1.5], [-1.5, 3.0]]), 0.5)
    elif kind == "score":
        _check_signature(kind, subject, 3)
        model = _score_model(subject, model)
        X = np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 0.5]])
        if model == "logistic":
            score_value(subject, model, X, np.array([1.0, 0.0, 1.0]), np.array([0.3, -0.2]))
        else:
            score_value(subject, model, X, np.array([0, 2, 1]), np.linspace(-0.5, 0.5, 6))
    else:
        raise SubjectError(f"unknown subject kind {kind!r}")


def verify_subject_command(args) -> int:
    """CLI: check each ``--claim`` on the subject. Exit codes as ``fimtheory verify``."""
    from pathlib import Path

    from properties.pytest_plugin import FimtheoryConfig, format_result, run_check
    from properties.verify import exit_status, format_table

    known = ", ".join(f"{c} ({'/'.join(k)})" for c, k in CLAIM_KINDS.items())
    if not args.claim:
        raise InputError(f"--subject needs --claim (one of {known})")
    for cid in args.claim:
        if _split_claim(cid)[0] not in CLAIM_KINDS:
            raise UnknownIdError(f"claim {cid!r} takes no subject; known: {known}")
    if args.dps < 40:
        raise InputError(f"--dps must be >= 40 for adjudication, got {args.dps}")
    kind_arg = getattr(args, "subject_kind", None)
    model = getattr(args, "score_model", None)
    subject = load_subject(args.subject)  # an unimportable subject fails before any work
    bound, probed = [], set()
    for cid in args.claim:
        base, spelled = _split_claim(cid)
        if kind_arg and spelled and kind_arg != spelled:
            raise InputError(f"--subject-kind {kind_arg} but the claim {cid!r} names kind {spelled!r}")
        kind = subject_kind(base, subject, kind_arg or spelled)
        if kind not in probed:
            probe_subject(kind, subject, model=model)  # a wrong signature or answer fails before any work
            probed.add(kind)
        if model is not None and kind != "score":
            raise InputError(f"--score-model applies to score subjects, but {base} checks a {kind} subject")
        options = {"model": model} if kind == "score" else {}
        bound.append(bind(base, subject, ref=args.subject, kind=kind, **options))
    cfg = FimtheoryConfig(args.profile, args.seed, Path(COUNTEREXAMPLE_DIR), dps=args.dps)
    results = [run_check(b, cfg) for b in bound]
    reports = [r.report for r in results]
    if args.json:
        import json

        doc = {
            "subject": args.subject,
            "profile": args.profile,
            "seed": args.seed,
            "claims": [r.report.to_json() | {"counterexample_file": str(r.path) if r.path else None} for r in results],
            "exit_status": exit_status(reports, args.profile),
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(format_table(reports))
    for r in results:
        if r.report.status == "falsified":
            print(format_result(r, cfg))
    return exit_status(reports, args.profile)
