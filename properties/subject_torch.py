"""Torch-model subjects: claims checked on the per-sample FIM of a user's ``nn.Module``.

Imported only when a subject of kind ``torch_model`` is bound (:func:`properties.subjects.bind`),
so neither fimtheory nor :mod:`properties.subjects` imports torch.

Protocol
    The subject is an ``nn.Module`` instance, or a callable with no arguments that returns one
    (called under ``torch.manual_seed(0)``, so a factory that draws its initial weights is
    reproducible). The module maps a float batch ``(m, d)`` to logits ``(m, K)``, K ≥ 2, and
    does not mix samples (no batch statistics). The suite copies it to float64 in eval mode.
    Declared on the module or the factory (else the defaults):

    * ``fimtheory_input_dim`` — d (default: ``in_features`` of the first ``nn.Linear``);
    * ``fimtheory_params`` — the parameter names θ (default: those of the last ``nn.Linear``),
      at most :data:`MAX_PARAMS` entries in all for T4.3a.

    The suite draws n ≤ 8 Gaussian inputs and uniform labels, and builds the empirical FIM
    F(θ) = GᵀG/n from its own per-sample scores (:func:`torch_checks.scores.per_sample_scores`,
    ``vmap`` of ``grad`` in float64). Each instance records the SHA-256 of the model's float64
    weights: an instance whose model has other weights is "hypotheses not met", so a stored
    counterexample replays only against the model it was found on.

T4.3a[torch_model]
    A = F(θ), E = F(Q(θ)) − F(θ) with Q one of the suite's quantizers (:data:`SCHEMES`, applied
    to every 2-D tensor of θ; biases stay): the built-in T4.3a, λ_max(A + E) ≥ λ1 + v1ᵀEv1, with
    its own float, mp and interval evaluators on (A, E). It holds for every model — a failure
    is a defect of the suite — and checks the theorem on the user's architecture.
ENGINE[torch_model]
    The suite's λ_max engines on the model — the Gram path and Lanczos on the ``vmap`` scores
    (:func:`torch_checks.engines.lambda_max`) and the structured Gram that never forms G
    (:func:`torch_checks.engines.lambda_max_structured`, where the layers are supported) —
    agree with λ_ref = λ_max(G_ref G_refᵀ/n) of the scores of an independent float64
    autograd loop (:func:`torch_checks.scores.per_sample_scores_loop`, one backward pass per
    sample) to within τ·λ_ref, τ = :data:`ENGINE_RTOL` + 64·(n + P)·eps. Margin
    (τλ_ref − w)/(τλ_ref + w) ∈ (−1, 1], w = max_e |e − λ_ref| (positive iff w < τλ_ref);
    λ_ref is enclosed in interval arithmetic from the loop's float scores.

Replays are bit-exact on the torch build and thread settings that stored the file (the FIM
entries are torch float64 reductions).
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict

import mpmath
import numpy as np
import torch
from hypothesis import strategies as st
from mpmath import iv

from fimtheory.claims import Outcome, get_claim
from fimtheory.errors import HypothesesNotMet
from fimtheory.highprec import working_precision
from fimtheory.instances import MatrixPerturbation
from fimtheory.validation import EPS64
from properties.subjects import (
    ENGINE_TOLERANCE,
    SCORE_BAND,
    SubjectError,
    TorchModelInstance,
    _iv,
    _iv_divide,
)

#: The suite's quantizers applied to θ's weight matrices in T4.3a[torch_model].
SCHEMES = ("rtn-int4-sym-channel", "rtn-int3-sym-channel", "rtn-int8-sym-channel", "nf4-tensor")
#: Largest θ for T4.3a (its instance is P × P, adjudicated in mpmath).
MAX_PARAMS = 64
#: Relative allowance of an engine beyond rounding (Lanczos runs to a residual of 1e-12).
ENGINE_RTOL = 1e-9
LANCZOS_TOL = 1e-12

_MODELS: dict = {}
_CACHE: OrderedDict = OrderedDict()


class PreparedModel:
    """The subject's module in float64 eval mode, with θ's names, d, K and weights digest."""

    def __init__(self, subject):
        module = _instantiate(subject)
        self.module = copy.deepcopy(module).double().eval()
        for p in self.module.parameters():
            p.requires_grad_(True)
        self.names = _param_names(subject, self.module)
        self.input_dim = _input_dim(subject, self.module)
        self.P = sum(int(dict(self.module.named_parameters())[n].numel()) for n in self.names)
        self.classes = _probe(self.module, self.input_dim)
        self.digest = weights_digest(self.module)


def _instantiate(subject) -> torch.nn.Module:
    if isinstance(subject, torch.nn.Module):
        return subject
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = subject()
    except TypeError as exc:
        raise SubjectError(
            f"a torch-model subject is an nn.Module or a factory called with no arguments: {exc}"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise SubjectError(f"the torch-model factory returned {type(module).__name__}, expected an nn.Module")
    return module


def _declared(subject, module, name):
    value = getattr(module, name, None)
    return getattr(subject, name, None) if value is None else value


def _param_names(subject, module) -> tuple[str, ...]:
    params = dict(module.named_parameters())
    names = _declared(subject, module, "fimtheory_params")
    if names is None:
        linears = [n for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise SubjectError("the model has no nn.Linear; declare fimtheory_params (parameter names)")
        last = linears[-1]
        names = [
            f"{last}.{p}" if last else p
            for p in ("weight", "bias")
            if getattr(module.get_submodule(last), p, None) is not None
        ]
    names = tuple(str(n) for n in names)
    missing = [n for n in names if n not in params]
    if not names or missing:
        raise SubjectError(f"fimtheory_params names no parameter of the model: {missing or names}")
    return names


def _input_dim(subject, module) -> int:
    d = _declared(subject, module, "fimtheory_input_dim")
    if d is None:
        first = next((m for m in module.modules() if isinstance(m, torch.nn.Linear)), None)
        if first is None:
            raise SubjectError("the model has no nn.Linear; declare fimtheory_input_dim")
        d = first.in_features
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise SubjectError(f"fimtheory_input_dim must be a positive integer, got {d!r}")
    return d


def _probe(module, d: int) -> int:
    x = torch.linspace(-1.0, 1.0, 2 * d, dtype=torch.float64).reshape(2, d)
    try:
        with torch.no_grad():
            out = module(x)
        out = getattr(out, "logits", out)
        if isinstance(out, torch.Tensor):
            out = out.detach()
    except (RuntimeError, TypeError, ValueError) as exc:
        raise SubjectError(f"the model failed on a (2, {d}) float64 batch: {type(exc).__name__}: {exc}") from None
    out = getattr(out, "logits", out)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2 or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SubjectError(f"the model maps a (2, {d}) batch to {shape}; expected logits of shape (2, K), K ≥ 2")
    if out.dtype != torch.float64:
        raise SubjectError(f"the model returned {out.dtype} logits after .double(); expected float64")
    if not bool(torch.isfinite(out).all()):
        raise SubjectError("the model returned NaN or inf logits for finite input")
    return int(out.shape[1])


def weights_digest(module) -> str:
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().to(torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()


def prepared(subject) -> PreparedModel:
    key = id(subject)
    hit = _MODELS.get(key)
    if hit is None or hit[0] is not subject:
        hit = (subject, PreparedModel(subject))
        _MODELS[key] = hit
    return hit[1]


# --------------------------------------------------------------------------------------
# the FIMs of an instance
# --------------------------------------------------------------------------------------


def _inputs(pm: PreparedModel, inst: TorchModelInstance) -> str:
    """'' when the instance fits the model, else why not."""
    if inst.weights_sha256 != pm.digest:
        return "the instance was drawn for a model with other weights (weights digest differs)"
    if inst.X.ndim != 2 or inst.X.shape[1] != pm.input_dim or inst.X.shape[0] < 1:
        return f"X has shape {inst.X.shape}, the model takes (n, {pm.input_dim})"
    if inst.y.shape != (inst.X.shape[0],) or inst.y.min() < 0 or inst.y.max() >= pm.classes:
        return f"labels must be n integers in 0..{pm.classes - 1}"
    return ""


def _scores(module, names, X, y) -> np.ndarray:
    from torch_checks.scores import per_sample_scores

    return per_sample_scores(module, names, torch.from_numpy(X), torch.from_numpy(y), dtype=torch.float64).G.numpy()


def _quantized(pm: PreparedModel, scheme: str):
    from torch_checks.quantizers import quantize_tensor

    q = copy.deepcopy(pm.module)
    params = dict(q.named_parameters())
    with torch.no_grad():
        for n in pm.names:
            if params[n].dim() == 2:
                params[n].copy_(quantize_tensor(params[n], scheme))
    return q


def _cached(kind, pm, inst, build):
    key = (kind, pm.digest, inst.X.tobytes(), inst.y.tobytes(), inst.scheme)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = build()
    _CACHE[key] = value
    while len(_CACHE) > 32:
        _CACHE.popitem(last=False)
    return value


def perturbation(pm: PreparedModel, inst: TorchModelInstance) -> MatrixPerturbation:
    """(A, E) = (F(θ), F(Q(θ)) − F(θ)) from the suite's per-sample scores."""

    def build():
        G = _scores(pm.module, pm.names, inst.X, inst.y)
        Gq = _scores(_quantized(pm, inst.scheme), pm.names, inst.X, inst.y)
        n = G.shape[0]
        A = G.T @ G / n
        B = Gq.T @ Gq / n
        A = 0.5 * (A + A.T)
        E = B - A
        return MatrixPerturbation(A, 0.5 * (E + E.T), origin=f"torch model, {inst.scheme}")

    return _cached("pert", pm, inst, build)


def _reference_scores(pm: PreparedModel, inst: TorchModelInstance) -> np.ndarray:
    from torch_checks.scores import per_sample_scores_loop

    def build():
        X, y = torch.from_numpy(inst.X), torch.from_numpy(inst.y)
        return per_sample_scores_loop(pm.module, pm.names, X, y, dtype=torch.float64).G.numpy()

    return _cached("ref", pm, inst, build)


def engine_values(pm: PreparedModel, inst: TorchModelInstance) -> dict:
    """The suite's engines' λ_max(F) on the instance: {engine name: value}."""
    from torch_checks.engines import lambda_max, lambda_max_structured
    from torch_checks.scores import per_sample_scores

    def build():
        X, y = torch.from_numpy(inst.X), torch.from_numpy(inst.y)
        G = per_sample_scores(pm.module, pm.names, X, y, dtype=torch.float64).G
        out = {
            "gram": float(lambda_max(G, method="gram").value),
            "lanczos": float(lambda_max(G, method="lanczos", tol=LANCZOS_TOL, seed=0).value),
        }

        def logp():
            return torch.log_softmax(pm.module(X), -1).gather(-1, y[:, None]).reshape(-1)

        try:
            out["structured-gram"] = float(lambda_max_structured(pm.module, logp, list(pm.names)).value)
        except HypothesesNotMet:
            pass  # layers the structured path does not support: the other engines still run
        return out

    return _cached("engines", pm, inst, build)


# --------------------------------------------------------------------------------------
# T4.3a[torch_model]
# --------------------------------------------------------------------------------------


def _t43a_float(subject, inst) -> Outcome:
    pm = prepared(subject)
    why = _inputs(pm, inst)
    if why:
        return Outcome.not_met(why)
    if pm.P > MAX_PARAMS:
        return Outcome.not_met(f"θ has {pm.P} > {MAX_PARAMS} entries (declare a smaller fimtheory_params)")
    return get_claim("T4.3a").evaluate(perturbation(pm, inst))


def _t43a_mp(subject, inst, dps):
    pm = prepared(subject)
    return get_claim("T4.3a").evaluate_mp(perturbation(pm, inst), dps)


def _t43a_iv(subject, inst, dps):
    from fimtheory import enclosures

    pm = prepared(subject)
    if _inputs(pm, inst):
        raise enclosures.HypothesisFails("the instance does not fit the model")
    return enclosures.margin_enclosure(get_claim("T4.3a"), perturbation(pm, inst), dps)


# --------------------------------------------------------------------------------------
# ENGINE[torch_model]
# --------------------------------------------------------------------------------------


def _engine_tau(inst, P: int) -> float:
    return ENGINE_RTOL + ENGINE_TOLERANCE * (inst.X.shape[0] + P) * EPS64


def _engine_float(subject, inst) -> Outcome:
    pm = prepared(subject)
    why = _inputs(pm, inst)
    if why:
        return Outcome.not_met(why)
    G = _reference_scores(pm, inst)
    K = G @ G.T / G.shape[0]
    lam = float(np.linalg.eigvalsh(0.5 * (K + K.T))[-1])
    if not lam > 0:
        return Outcome.not_met("F = 0 on the batch")
    values = engine_values(pm, inst)
    worst = max(abs(v - lam) for v in values.values())
    allowed = _engine_tau(inst, pm.P) * lam
    m = (allowed - worst) / (allowed + worst)
    return Outcome(True, float(m), not m > SCORE_BAND, "", {"lambda_ref": lam, **values})


def _mp_gram(G: np.ndarray):
    M = mpmath.matrix(G.tolist())
    return (M * M.T) * (mpmath.mpf(1) / G.shape[0])


def _engine_mp(subject, inst, dps):
    pm = prepared(subject)
    G = _reference_scores(pm, inst)
    values = engine_values(pm, inst)
    with working_precision(dps):
        lam = max(mpmath.eigsy(_mp_gram(G), eigvals_only=True))
        worst = max(abs(mpmath.mpf(v) - lam) for v in values.values())
        allowed = mpmath.mpf(_engine_tau(inst, pm.P)) * lam
        return (allowed - worst) / (allowed + worst)


def _engine_iv_margin(subject, inst):
    from properties.certify import iv_abs, iv_lambda_max, iv_matrix, iv_max

    pm = prepared(subject)
    if _inputs(pm, inst):
        raise SubjectError("the instance does not fit the model")
    G = iv_matrix(_reference_scores(pm, inst))
    lam = iv_lambda_max((G * G.T) * (iv.mpf(1) / G.rows))
    values = engine_values(pm, inst)
    worst = iv_max([iv_abs(iv.mpf(v) - lam) for v in values.values()])
    allowed = iv.mpf(_engine_tau(inst, pm.P)) * lam
    return _iv_divide(allowed - worst, allowed + worst)


# --------------------------------------------------------------------------------------
# strategy and table
# --------------------------------------------------------------------------------------


def torch_model_instances(pm: PreparedModel):
    """n ≤ 8 seeded Gaussian inputs (scale 0.3, 1 or 3), uniform labels, one of :data:`SCHEMES`."""

    @st.composite
    def build(draw):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        n = draw(st.integers(1, 8))
        X = rng.standard_normal((n, pm.input_dim)) * float(draw(st.sampled_from([1.0, 0.3, 3.0])))
        y = rng.integers(0, pm.classes, n).astype(np.int64)
        scheme = draw(st.sampled_from(SCHEMES))
        return TorchModelInstance(X, y, scheme, pm.digest, origin="torch model")

    return build()


def table_entry(claim_id: str, subject, **options):
    if options:
        raise SubjectError(f"a torch-model subject takes no options, got {sorted(options)}")
    pm = prepared(subject)  # a subject that is not a usable model fails here, before any work

    def strategy(subj):
        return torch_model_instances(prepared(subj))

    if claim_id == "T4.3a":
        if pm.P > MAX_PARAMS:
            raise SubjectError(
                f"T4.3a on a torch model takes θ of at most {MAX_PARAMS} entries, got {pm.P} "
                f"({', '.join(pm.names)}); declare fimtheory_params"
            )
        return (
            _t43a_float,
            _t43a_mp,
            _t43a_iv,
            strategy,
            "per draw, the directional bound on the model's FIM under the suite's quantizers",
            "λ_max(F(Q(θ))) ≥ λ_max(F(θ)) + v1ᵀ(F(Q(θ)) − F(θ))v1, F from the suite's per-sample scores",
        )
    return (
        _engine_float,
        _engine_mp,
        _iv(_engine_iv_margin),
        strategy,
        "the suite's λ_max engines agree with dense float64 on the model's FIM",
        "|engine − λ_max(G_ref G_refᵀ/n)| ≤ τ·λ_ref for the Gram, Lanczos and structured-Gram engines",
    )
