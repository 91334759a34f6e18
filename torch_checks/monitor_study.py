"""The inflation study (docs/theory.md §7): how much does weight quantization inflate the
calibration threshold τ_q of the monitor σ = λ_max(F)/λ_base, and how well do perturbative
predictions account for it?

For each model of a profile:

1. **Trajectories.** LMs: prompts of ``prompt_len`` tokens drawn (seeded) from the held-out
   calibration corpus, continued by ``gen_len`` tokens sampled from the model with a seeded
   :class:`torch.Generator` (one seed per trajectory, the same for every model variant);
   all T = prompt_len + gen_len − 1 positions are scored. Digits MLP: a trajectory is a batch
   of ``batch`` held-out inputs (seeded draw) with labels sampled from the model.
2. **Full precision.** Per trajectory: Λ = λ_max(F) = λ1, F = GᵀG/n of the per-token scores
   of θ (the model's default parameter subset), its unit top eigenvector v, ‖ḡ‖² (mean-score
   part) and λ_max(F − ḡḡᵀ) (covariance part). λ_base = mean Λ; τ_q = q-quantile of Λ/λ_base.
3. **Quantized.** Every ``nn.Linear`` / ``nn.Embedding`` weight (a Hugging Face ``Conv1D``
   weight as its transpose, as ``check-models`` does) quantized by each scheme ×
   bit width (RTN per channel, RTN group-wise, SR per channel, NF4 at 4 bits; the group size
   is the largest divisor of the row length ≤ the nominal one). *self*: the quantized model
   scores trajectories it generated itself (same prompts and sampling seeds: the deployed
   situation); *fixed*: it scores the full-precision trajectories (same data: the object of
   the predictions). ρ = τ_q(quantized)/τ_q(full precision) (λ_base cancels), with paired
   percentile bootstrap CIs over trajectories.
4. **Predictions of the fixed-data Λ(θ+δ) = λ_max(F(θ+δ)), both reported:**

   * *first order, realised δ* (what each trajectory measures): δ = Q(θ) − θ is the one
     realised quantization error, and λ_max(F(θ+δ)) ≈ λ1 + vᵀ(DF[δ])v with
     vᵀDF[δ]v = (2/n) Σ_i (g_i·v)(h_i·v), h_i = ∇g_i·δ (Hellmann–Feynman for a simple λ1);
     error O(‖δ‖²). For small models also the exact second-order truncation
     λ_max(F + DF[δ] + ½D²F[δ,δ]) (``second_real``).
   * *expectation* E_δ (§3(d)): E[F(θ+δ)] ≈ F + E[½D²F[δ,δ]] for zero-mean δ with a
     diagonal covariance Σ (E[DF[δ]] = 0). Σ per weight: **stochastic rounding** — exactly
     r(1 − r)s², r the fractional position of the weight between its two grid points and s
     the step (:func:`sr_variance`; s²/6 on average over uniform r); **RTN and NF4** — Widrow's
     s²/12 (RTN's δ is deterministic given θ; Widrow is the model of it the expectation
     uses). Reported as λ1 + vᵀE[½D²F]v (``pred``, first order in the expectation term, for
     every model) and, where G fits in memory, λ_max(F + E[½D²F]) (``pred_exact``, exact eigh
     on the span of the rows of G, H, T). E[½D²F] = (1/n) Σ_i E[h_i h_iᵀ + ½(g_i t_iᵀ + t_i g_iᵀ)]
     by Monte Carlo over ``mc_draws`` Rademacher draws δ = ξ ⊙ √Σ (exact second moments; seeded
     per trajectory), t_i = D²g_i[δ, δ]. RTN's Σ ∝ s² ∝ 1/q_max² on a fixed grid, so one
     estimate at 4 bits serves every width of the RTN families (scaled by (q_max(4)/q_max(b))²);
     SR's Σ depends on r, so SR has one estimate per bit width.

   h_i and t_i are float64 central differences of the scores along δ at ±ε = ``fd_eps``:
   h = (G(θ+εδ) − G(θ−εδ))/2ε, t = (G(θ+εδ) − 2G(θ) + G(θ−εδ))/ε² (see the note below on
   why not torch.func's jvp-of-jvp). Predicted ρ = τ_q(predicted Λ)/τ_q(Λ). Each
   prediction's skill is measured against the constant ρ = 1 (:func:`skill_table`).

Note on derivatives: on the byte LM, torch.func's forward-over-forward (jvp of jvp) gave
second directional derivatives that disagree with converged float64 central differences
(by ~2% for D²G and ~45% for D²log p, independent of the difference step between 1e-1
and 1e-3), while first derivatives agreed to 1e-5; we therefore use central differences.
Root cause, isolated afterwards: forward-over-forward AD through ``layer_norm`` in torch 2.13
(CPU) is wrong, while forward-over-reverse and reverse-over-reverse agree with differences
(``python -m torch_checks.autodiff_note``; tests/test_torch_autodiff_routes.py).

SmolLM2's scored matrix is the last block's MLP down-projection: nothing after it mixes
positions, so the score of token t is the outer product u_t a_tᵀ of the gradient at the
projection's output and its input (:func:`last_linear_scores`, one forward and one small
backward instead of ``jacrev``'s T backward passes; equal to :func:`per_token_scores`).

Output (:func:`inflation_command`): ``report.json`` (every number and the raw per-trajectory
samples), ``report.md`` (tables, recomputable from the JSON by :func:`recompute_from_json`),
PNG plots, per-model checkpoints ``shards/<model>.json`` (``resume=True`` continues from
them), and progress on stderr (a tqdm bar on a terminal, plain lines otherwise).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from fimtheory.errors import FimTheoryError, InputError
from fimtheory.quantize import QuantScheme, group_shape

from . import data as D
from . import models as M
from .device import resolve_device
from .monitor import sigma_trace
from .quantizers import MODULE_KINDS, is_hf_conv1d, quantize_tensor, step_sizes_tensor
from .report import Progress
from .scores import _logits, per_sample_scores, per_token_scores

PROFILES = ("quick", "paper", "test")
SCHEME_FAMILIES = ("rtn-channel", "rtn-group", "sr-channel", "nf4")
PREDICTIONS = ("first_order", "pred", "pred_exact", "second_real")
PREDICTION_NAMES = {
    "first_order": "first order, realised δ: λ1 + vᵀDF[δ]v",
    "pred": "expectation: λ1 + vᵀE[½D²F]v",
    "pred_exact": "expectation, exact eigh: λ_max(F + E[½D²F])",
    "second_real": "realised δ, second order: λ_max(F + DF[δ] + ½D²F[δ,δ])",
}
ROUND = 4  # significant digits in report.md
DENSE_LIMIT = 50_000_000  # n·P·trajectories above which G is not kept (no exact-eigh predictions)


# ----------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class ModelSpec:
    """One model of a profile: ``kind`` in {"byte-lm", "mlp-digits", "smollm2", "gemma3", "textgenrnn"}.

    ``overrides``: (name, value) pairs replacing the profile's ``n_trajectories``,
    ``prompt_len``, ``gen_len``, ``mc_draws``, ``n_traces`` or ``configs`` (a tuple of
    "family/bits" keys) for this model; ``("measure_self", False)`` skips the self-generated
    ρ and ``("first_order", False)`` the first-order prediction (both measured by default);
    ``("shared_draws", True)`` shares the expectation's Monte Carlo draws between the
    trajectories; ``("factored_batch", B)`` and ``("factored_chunk", C)`` set the batch and
    the chunk of :func:`run_model_factored` (memory: Gemma 3's 262,144-token head costs 31 MB
    of float64 logits per sequence in a batch, its top vector v 15.7 MB per trajectory of a chunk).
    """

    label: str
    kind: str
    config: object = None
    predict: bool = True
    overrides: tuple = ()

    def get(self, prof: Profile, key: str):
        return dict(self.overrides).get(key, getattr(prof, key))

    def measures(self, part: str) -> bool:
        """Whether ``part`` ("measure_self" or "first_order") is measured (default yes)."""
        return bool(dict(self.overrides).get(part, True))


@dataclass(frozen=True)
class Profile:
    """Sizes of a study run. ``ci_target``: the largest relative half-width (hi − lo)/(2ρ) of
    the fixed-data 95% CI accepted at ``ci_target_bits``; cells above it are flagged.
    ``exact_expectation``: also compute λ_max(F + E[½D²F]) by Lanczos where G fits in memory
    (one eigensolve per trajectory, estimate and bit width). ``sample_stream``: which
    independent sample of trajectories (prompts and sampling seeds, :func:`sample_seed`) is
    drawn: 0 is the one every profile uses, k ≥ 1 a fresh one (the second stage of
    :func:`ci_profile`); the quantizers' draws (SR) do not depend on it."""

    name: str
    models: tuple[ModelSpec, ...]
    n_trajectories: int
    prompt_len: int = 8
    gen_len: int = 24
    batch: int = 32
    bits: tuple[int, ...] = (8, 4, 3, 2)
    families: tuple[str, ...] = SCHEME_FAMILIES
    configs: tuple[str, ...] | None = None
    group_size: int = 32
    nf4_block: int = 64
    quantile: float = 0.9
    n_boot: int = 2000
    mc_draws: int = 4
    fd_eps: float = 1e-2
    n_traces: int = 6
    ci_target: float = 0.05
    ci_target_bits: int = 4
    exact_expectation: bool = True
    sample_stream: int = 0
    extra: dict = field(default_factory=dict)


def _byte(size: str, seed: int, steps_scale: float = 1.0) -> ModelSpec:
    cfgs = {
        "d32": dict(d_model=32, n_heads=2, d_ff=64, n_layers=1, steps=300),
        "d48": dict(d_model=48, n_heads=2, d_ff=96, n_layers=1, steps=400),
        "d64": dict(d_model=64, n_heads=4, d_ff=128, n_layers=2, steps=500),
    }
    kw = dict(cfgs[size])
    kw["steps"] = max(20, int(kw["steps"] * steps_scale))
    return ModelSpec(f"byte-lm-{size}-s{seed}", "byte-lm", M.ByteLMConfig.tiny(seed=seed, **kw))


def _mlp(hidden: int, seed: int) -> ModelSpec:
    return ModelSpec(f"mlp-digits-h{hidden}-s{seed}", "mlp-digits", M.DigitsConfig(seed=seed, hidden=hidden))


#: The schemes of the pretrained LMs in the paper profile: the three 4-bit ones of
#: :data:`REAL_OVERRIDES` and RTN and SR per channel at 8 bits, where δ is 16× smaller: does the
#: first-order prediction hold there?
PAPER_REAL_CONFIGS = ("rtn-channel/4", "nf4/4", "sr-channel/4", "rtn-channel/8", "sr-channel/8")
#: SmolLM2 in the paper profile: 90 trajectories of 12 + 4 tokens, one Monte Carlo draw (shared by
#: the trajectories), :data:`PAPER_REAL_CONFIGS`, self-generated and fixed-data ρ, the first-order
#: and the expectation prediction, all on the factored path (:func:`run_model_factored`: the scores'
#: factors of the last down-projection; measured ≈ 1.4 CPU-s per trajectory for ρ_fixed and first
#: order at n = 1,093, docs/inflation.md). An earlier paper run had 24 trajectories on the dense path.
SMOLLM2_OVERRIDES = (
    ("n_trajectories", 90),
    ("prompt_len", 12),
    ("gen_len", 4),
    ("mc_draws", 1),
    ("n_traces", 3),
    ("configs", PAPER_REAL_CONFIGS),
)
#: Gemma 3 270M and the textgenrnn LSTM in the paper profile: as :data:`REAL_OVERRIDES` (4 bits,
#: three schemes, one shared Monte Carlo draw), at 90 trajectories each. Gemma takes the factored
#: path (its last MLP is a position-wise tail of three Linears), textgenrnn the dense one.
PAPER_REAL_N = 90
#: Gemma 3 on the factored path in batches of 8 and chunks of 30 (not 16 and 96), to stay under
#: 6 GB of RSS: its float64 logits over 262,144 tokens and their gradient are 31 MB per sequence of a
#: batch each, and the float32 top vectors v of a chunk 15.7 MB per trajectory (1.4 GB for 90;
#: measured 6.8 GB of RSS in chunks of 90, 3.6 GB of it the float32 reference and float64 copy).
PAPER_REAL_EXTRA = {"gemma3": (("factored_batch", 8), ("factored_chunk", 30))}
#: The schemes of Gemma 3 and textgenrnn in the paper profile (4 and 8 bits, as SmolLM2).
PAPER_REAL_SCHEMES = {"gemma3": PAPER_REAL_CONFIGS, "textgenrnn": PAPER_REAL_CONFIGS}


def get_profile(name: str) -> Profile:
    """The named profile.

    * ``"paper"``: 14 models × 90 trajectories, q = 0.95: byte LMs of 3 sizes × 3 seeds,
      digits MLPs with 32 and 64 hidden units (13 schemes each), and the pretrained LMs
      SmolLM2-135M (:data:`SMOLLM2_OVERRIDES`; when the ``[lm]`` extra is missing a third
      MLP, seed 1, takes its place), Gemma 3 270M and the textgenrnn LSTM
      (:data:`REAL_OVERRIDES` at :data:`PAPER_REAL_N` trajectories, textgenrnn with
      :data:`PAPER_REAL_SCHEMES`; a missing extra: a "skipped" checkpoint).
    * ``"quick"``: 3 models × 90 trajectories (2 byte LMs, 1 MLP), q = 0.9 (measured wall
      time from a cold cache: docs/inflation.md).
    * ``"test"``: 1 tiny byte LM (40 training steps) × 6 short trajectories, 2 families.

    Raises
    ------
    fimtheory.errors.InputError
        Unknown name.
    """
    if name == "paper":
        models = [_byte(s, seed) for s in ("d32", "d48", "d64") for seed in (0, 1, 2)]
        models += [_mlp(32, 0), _mlp(64, 0)]
        from .smollm import smollm_available

        if smollm_available():
            models.append(ModelSpec("smollm2", "smollm2", None, overrides=SMOLLM2_OVERRIDES))
        else:
            models.append(_mlp(32, 1))
        # the other pretrained LMs: a missing extra makes the run write a "skipped" checkpoint
        # naming the package (the report lists the model as skipped, never silently absent)
        for kind in REAL_KINDS:
            ov = tuple(
                (k, PAPER_REAL_SCHEMES.get(kind, v) if k == "configs" else v)
                for k, v in REAL_OVERRIDES[kind]
                if k != "n_trajectories"
            )
            ov = (("n_trajectories", PAPER_REAL_N), *ov, *PAPER_REAL_EXTRA.get(kind, ()))
            models.append(ModelSpec(kind, kind, None, overrides=ov))
        return Profile("paper", tuple(models), n_trajectories=90, quantile=0.95, mc_draws=2, exact_expectation=False)
    if name == "quick":
        return Profile(
            "quick",
            (_byte("d32", 0), _byte("d48", 1), _mlp(64, 0)),
            n_trajectories=90,
            gen_len=16,
            batch=24,
            mc_draws=2,
        )
    if name == "test":
        spec = ModelSpec(
            "byte-lm-test",
            "byte-lm",
            M.ByteLMConfig.tiny(d_model=16, n_heads=2, d_ff=32, steps=40, eval_bytes=1024, context=16),
        )
        return Profile(
            "test",
            (spec,),
            n_trajectories=6,
            prompt_len=4,
            gen_len=8,
            bits=(8, 4, 2),
            families=("rtn-channel", "sr-channel"),
            n_boot=1000,
            mc_draws=1,
            n_traces=2,
        )
    raise InputError(f"unknown profile {name!r}; expected one of {PROFILES[:2]}")


def config_keys(spec: ModelSpec, prof: Profile) -> list[str]:
    """The "family/bits" keys measured on ``spec`` (NF4 only at 4 bits)."""
    explicit = spec.get(prof, "configs")
    if explicit is not None:
        keys = list(explicit)
    else:
        keys = [f"{f}/{b}" for f in prof.families for b in ([4] if f == "nf4" else prof.bits)]
    for k in keys:
        fam, _, b = k.partition("/")
        if fam not in SCHEME_FAMILIES or not b.isdigit() or not 2 <= int(b) <= 8 or (fam == "nf4" and b != "4"):
            raise InputError(f"bad scheme key {k!r} (family/bits, family in {SCHEME_FAMILIES})")
    return keys


# ----------------------------------------------------------------------------- quantization


def _divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def scheme_for(family: str, bits: int, row_len: int, prof: Profile) -> QuantScheme:
    """The scheme of ``family`` at ``bits`` for a weight whose rows have ``row_len`` entries."""
    if family == "rtn-channel":
        return QuantScheme("rtn", bits, "channel", None, True)
    if family == "sr-channel":
        return QuantScheme("sr", bits, "channel", None, True)
    if family == "rtn-group":
        return QuantScheme("rtn", bits, "group", _divisor_at_most(row_len, prof.group_size), True)
    if family == "nf4":
        return QuantScheme("nf4", 4, "group", _divisor_at_most(row_len, prof.nf4_block), True)
    raise InputError(f"unknown scheme family {family!r}")


def _weights(module: nn.Module):
    """The quantized weights: every Linear/Embedding ``weight``, every Hugging Face ``Conv1D``
    ``weight`` (GPT-2) and every ``nn.LSTM``'s input and recurrent kernels (``weight_ih_l*``,
    ``weight_hh_l*``; biases are not), except the names listed in the root module's
    ``unquantized_weights`` attribute (if any); a weight shared by several modules once.

    A ``Conv1D`` weight is (in, out), the transpose of ``nn.Linear``'s, so it is yielded as its
    transpose ``weight.T`` (a view, rows = output channels): per-channel scales, groups and
    NF4 blocks then run along the input dimension, exactly as ``check-models`` quantizes it
    (:func:`torch_checks.checks.quantize_model`), and writes into the view land in the weight.
    Every consumer here (quantizer, Σ, δ, the perturbed copy) sees that same orientation."""
    types = tuple(MODULE_KINDS.values())
    skip = set(getattr(module, "unquantized_weights", ()))
    seen = set()
    for name, mod in module.named_modules():
        pre = f"{name}." if name else ""
        if isinstance(mod, nn.LSTM):
            items = [(f"{pre}{k}", getattr(mod, k), False) for k in mod._flat_weights_names if k.startswith("weight_")]
        else:
            w = getattr(mod, "weight", None)
            conv1d = is_hf_conv1d(mod)
            ok = (isinstance(mod, types) or conv1d) and isinstance(w, torch.Tensor)
            items = [(f"{pre}weight", w, conv1d)] if ok else []
        for key, w, transposed in items:
            if id(w) not in seen and key not in skip:
                seen.add(id(w))
                yield key, (w.T if transposed else w)


def weights_not_quantized(module: nn.Module) -> list[str]:
    """``"name (ModuleType)"`` of every parameter of ≥ 2 dimensions the study leaves in full
    precision (not reached by :func:`_weights`: a module type whose layout is not known, such
    as ``nn.Conv2d``, a bare ``nn.Parameter``, or a name in ``unquantized_weights``)."""
    done = set()
    for _, w in _weights(module):
        done.add(id(w._base) if w._base is not None else id(w))
    owner = {}
    for mname, mod in module.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            owner.setdefault(id(p), f"{mname}.{pname} ({type(mod).__name__})" if mname else f"{pname}")
    return [owner[id(p)] for p in module.parameters() if p.ndim >= 2 and id(p) not in done and id(p) in owner]


def quantize_into(work: nn.Module, base: nn.Module, family: str, bits: int, prof: Profile, seed: int) -> float:
    """Write Q(θ) into ``work`` (a copy of ``base`` with the same parameter names) for every
    weight of :func:`_weights` (Linear, Embedding, Conv1D as its transpose, LSTM kernels);
    return ‖δ‖/‖θ‖ over those weights. SR draws come from one
    seeded generator walking the weights in module order."""
    src = dict(_weights(base))
    gen = None
    dsq, wsq = 0.0, 0.0
    for name, w in _weights(work):
        w0 = src[name].detach()
        if gen is None:
            gen = torch.Generator(device=w0.device).manual_seed(int(seed))
        new = quantize_tensor(w0.double(), scheme_for(family, bits, w0.shape[-1], prof), generator=gen)
        with torch.no_grad():
            dsq += float(((new.double() - w0.double()) ** 2).sum())
            wsq += float((w0.double() ** 2).sum())
            w.copy_(new)
    return math.sqrt(dsq / max(wsq, 1e-300))


def quantize_copy(module: nn.Module, family: str, bits: int, prof: Profile, seed: int) -> tuple[nn.Module, float]:
    """A quantized deep copy of ``module`` and ‖δ‖/‖θ‖ over the quantized weights."""
    q = copy.deepcopy(module)
    return q, quantize_into(q, module, family, bits, prof, seed)


def sr_variance(w: torch.Tensor, scheme) -> torch.Tensor:
    """Per-weight variance of stochastic rounding's error δ = SR(w) − w, exactly.

    With y = (w + shift)/s on the integer grid (s the step of the weight's group) and
    r = y − ⌊y⌋ ∈ [0, 1), SR rounds up with probability r: δ = (1 − r)s w.p. r and −rs w.p.
    1 − r, so E δ = 0 and Var δ = r(1 − r)s² (0 on the grid, s²/4 midway; s²/6 on average
    over a uniform r, twice Widrow's s²/12 for round-to-nearest). Hypothesis: a symmetric or
    asymmetric integer scheme with the absmax / min–max scale of :mod:`torch_checks.quantizers`,
    so no weight is clipped.

    Returns
    -------
    torch.Tensor
        float64, the shape of ``w``.
    """
    from .quantizers import _check_tensor, _int_params, _scheme

    scheme = _scheme(scheme)
    if scheme.kind != "sr":
        raise InputError(f"sr_variance needs an 'sr' scheme, got {scheme.name!r}")
    x = _check_tensor(w)
    g = x.reshape(group_shape(tuple(x.shape), scheme))
    s, shift = _int_params(g, scheme)
    safe = torch.where(s == 0, torch.ones_like(s), s)
    y = (g + shift) / safe
    r = y - torch.floor(y)
    var = torch.where(s == 0, torch.zeros_like(y), r * (1.0 - r) * s * s)
    return var.reshape(x.shape)


def widrow_variance(w: torch.Tensor, scheme) -> torch.Tensor:
    """Widrow's model of a rounding error: s²/12 per weight, s the scheme's local step
    (grid spacing for RTN, the code-cell width for NF4)."""
    s = step_sizes_tensor(w.detach(), scheme)
    return s * s / 12.0


def variance_scale(family: str, bits: int) -> float:
    """(s_b / s_4)² for the family's grid (RTN/SR symmetric: q_max = 2^{b−1} − 1)."""
    if family == "nf4":
        return 1.0
    return ((2**3 - 1) / (2 ** (bits - 1) - 1)) ** 2


def estimate_keys(keys: list[str]) -> list[tuple[str, int]]:
    """The Monte Carlo estimates the expectation predictions of ``keys`` need: one per RTN
    family (at 4 bits, rescaled) and NF4, one per bit width for SR (Σ depends on r)."""
    out = []
    for k in keys:
        fam, b = k.split("/")[0], int(k.split("/")[1])
        e = (fam, b) if fam == "sr-channel" else (fam, 4)
        if e not in out:
            out.append(e)
    return out


def expectation_variances(module: nn.Module, family: str, bits: int, prof: Profile) -> dict[str, torch.Tensor]:
    """Σ of the expectation prediction on every quantized weight: SR exactly (:func:`sr_variance`
    at ``bits``), RTN and NF4 Widrow (:func:`widrow_variance`)."""
    out = {}
    for name, w in _weights(module):
        sch = scheme_for(family, bits, w.shape[-1], prof)
        out[name] = sr_variance(w, sch) if family == "sr-channel" else widrow_variance(w, sch)
    return out


def delta_norms(module: nn.Module, family: str, bits: int, prof: Profile) -> dict[str, float]:
    """‖θ‖ and the ‖δ‖ each error model gives over the quantized weights: ``widrow`` =
    √Σ s²/12, ``sr_expected`` = √E‖δ_SR‖² = √Σ r(1 − r)s², ``rtn_exact`` = ‖RTN(θ) − θ‖ (RTN
    families only; deterministic)."""
    wsq = wid = srv = 0.0
    for _, w in _weights(module):
        sch = scheme_for(family, bits, w.shape[-1], prof)
        wsq += float((w.detach().double() ** 2).sum())
        wid += float(widrow_variance(w, sch).sum())
        if family == "sr-channel":
            srv += float(sr_variance(w, sch).sum())
    out = {"theta": math.sqrt(wsq), "widrow": math.sqrt(wid)}
    if family == "sr-channel":
        out["sr_expected"] = math.sqrt(srv)
    return out


# ----------------------------------------------------------------------------- models & data


@dataclass
class Loaded:
    """A loaded model with what the study needs."""

    spec: ModelSpec
    module: nn.Module
    names: tuple[str, ...]
    kind: str  # "lm" or "classifier"
    prompts: object  # LM: int64 (m, prompt_len); classifier: float (m, batch, d)
    max_context: int | None
    info: dict
    last_linear: str | None = None  # module name for :func:`last_linear_scores`
    tail_linears: tuple[str, ...] | None = None  # module names for :func:`tail_linear_scores`
    position_core: str | None = None  # submodule scoring each position's input: :func:`position_core_scores`


def load_spec(spec: ModelSpec, prof: Profile, dev: torch.device, seed: int) -> Loaded:
    """Load (training and caching if needed) the model of ``spec`` and draw its prompts."""
    n = spec.get(prof, "n_trajectories")
    plen = spec.get(prof, "prompt_len")
    seed = sample_seed(prof, seed)  # prompts: from the profile's sample stream
    if spec.kind == "byte-lm":
        model, info = M.load_byte_lm(spec.config, device="cpu")
        model = model.double().to(dev).eval()
        prompts = D.calibration_contexts(
            n, plen, corpus=spec.config.corpus, seed=seed, held_out_fraction=spec.config.held_out_fraction
        )
        return Loaded(
            spec,
            model,
            model.default_param_names(),
            "lm",
            prompts,
            spec.config.context,
            {k: v for k, v in info.items() if k != "cache_path"},
        )
    if spec.kind == "mlp-digits":
        model, info, data = M.load_mlp_digits(spec.config)
        model = model.double().to(dev).eval()
        Xte = data[2]
        g = torch.Generator().manual_seed(seed)
        idx = torch.stack([torch.randperm(len(Xte), generator=g)[: prof.batch] for _ in range(n)])
        return Loaded(
            spec,
            model,
            tuple(k for k, _ in model.named_parameters()),
            "classifier",
            Xte[idx],
            None,
            {k: v for k, v in info.items() if k != "cache_path"},
        )
    if spec.kind == "smollm2":
        # float32 reference weights (the dequantized GGUF values are float32 numbers); every
        # score and difference is taken on a float64 working copy (:class:`Perturbed`)
        bundle = M.load_model("smollm2", device=dev, dtype=torch.float32, n_calibration=n, length=plen, seed=seed)
        names = tuple(bundle.param_names)
        last = names[0].rsplit(".", 1)[0] if len(names) == 1 else None
        return Loaded(
            spec,
            bundle.module.eval(),
            names,
            "lm",
            torch.as_tensor(bundle.calibration)[:, :plen].cpu(),
            None,
            dict(bundle.info),
            last_linear=last,
        )
    if spec.kind in REAL_KINDS:
        return _load_real(spec, prof, dev, seed, n, plen)
    raise InputError(f"unknown model kind {spec.kind!r}")


#: Pretrained models the study loads besides SmolLM2 (``fimtheory inflation --model LABEL``
#: adds them to any profile). Gemma 3 270M: θ = the last block's MLP (gate, up, down:
#: 3,932,160 weights), scored by :func:`tail_linear_scores` (nothing after that MLP mixes
#: positions, so the 262,144-token head enters only through one VJP, never a per-token
#: Jacobian); every block's Linear weight is quantized, the tied embedding/head (167,772,160
#: of the 268M weights) is kept at full precision, as the Q4_K_M file keeps it at 8 bits
#: (Q8_0). textgenrnn: θ = the whole model (462,717 parameters), every Linear, Embedding and
#: LSTM kernel quantized (biases, the attention vector: not). Both at 4 bits only (RTN per
#: channel, NF4, SR per channel), with one Monte Carlo draw shared by the trajectories; the
#: trajectory counts are what a 2-core CPU allows (measured: results/inflation-real/NOTES.md).
REAL_KINDS = ("gemma3", "textgenrnn")
#: The labels of the pretrained models (report.md gives their skill table separately too).
PRETRAINED_LABELS = ("smollm2", *REAL_KINDS)
REAL_OVERRIDES = {
    "gemma3": (
        ("n_trajectories", 24),
        ("prompt_len", 12),
        ("gen_len", 4),
        ("mc_draws", 1),
        ("n_traces", 3),
        ("shared_draws", True),
        ("configs", ("rtn-channel/4", "nf4/4", "sr-channel/4")),
    ),
    "textgenrnn": (
        ("n_trajectories", 32),
        ("prompt_len", 12),
        ("gen_len", 8),
        ("mc_draws", 1),
        ("n_traces", 3),
        ("shared_draws", True),
        ("configs", ("rtn-channel/4", "nf4/4", "sr-channel/4")),
    ),
}


def real_spec(label: str) -> ModelSpec:
    """The :class:`ModelSpec` of a pretrained model of :data:`REAL_KINDS` (label = kind)."""
    if label not in REAL_KINDS:
        raise InputError(f"unknown pretrained model {label!r}; known: {', '.join(REAL_KINDS)}")
    return ModelSpec(label, label, None, overrides=REAL_OVERRIDES[label])


def _real_bundle(kind: str, dev: torch.device, n: int, plen: int, seed: int):
    """The registry bundle of a pretrained model of :data:`REAL_KINDS` (tests replace it)."""
    if kind == "gemma3":
        from .gemma import load_gemma_bundle

        # float32 reference (1 GB); the study's working copy is float64 (:func:`run_model`)
        return load_gemma_bundle(device=dev, dtype=torch.float32, n_calibration=n, length=plen, seed=seed)
    from .textgenrnn_lstm import load_textgenrnn_bundle

    # float64 from the start (the float32 weights are exact in float64; 3.7 MB)
    return load_textgenrnn_bundle(device=dev, dtype=torch.float64, n_calibration=n, length=plen, seed=seed)


def _require_real(kind: str) -> None:
    """Raise :class:`MissingDependencyError` when the package of ``kind`` is not installed."""
    from fimtheory.errors import MissingDependencyError

    if kind == "gemma3":
        from .gemma import DIST, EXTRA, gemma_available

        if not gemma_available():
            raise MissingDependencyError(DIST, "the inflation study on Gemma 3 270M", extra=EXTRA)
    else:
        from .textgenrnn_lstm import EXTRA, PACKAGE, textgenrnn_available

        if not textgenrnn_available():
            raise MissingDependencyError(PACKAGE, "the inflation study on the textgenrnn LSTM", extra=EXTRA)


def real_loaded(spec: ModelSpec, bundle, plen: int) -> Loaded:
    """The study's view of a Gemma 3 / textgenrnn bundle (see :data:`REAL_OVERRIDES`):
    Gemma: the tied embedding not quantized, scores by :func:`tail_linear_scores` over the
    bundle's parameter group (Linear weights of a position-wise tail); textgenrnn: scores by
    :func:`position_core_scores` of its window classifier ``core``."""
    module = bundle.module.eval()
    names = tuple(bundle.param_names)
    prompts = torch.as_tensor(bundle.calibration)[:, :plen].cpu()
    info = dict(bundle.info)
    if spec.kind == "gemma3":
        module.unquantized_weights = ("model.embed_tokens.weight",)
        info["unquantized"] = list(module.unquantized_weights)
        tail = tuple(k.rsplit(".", 1)[0] for k in names)
        return Loaded(spec, module, names, "lm", prompts, None, info, tail_linears=tail)
    return Loaded(spec, module, names, "lm", prompts, None, info, position_core="core")


def _load_real(spec: ModelSpec, prof: Profile, dev: torch.device, seed: int, n: int, plen: int) -> Loaded:
    return real_loaded(spec, _real_bundle(spec.kind, dev, n, plen, seed), plen)


def sample_seed(prof: Profile, seed: int) -> int:
    """The seed of the trajectories (prompt draws, sampling) of ``prof``'s sample stream:
    ``seed`` itself for stream 0, a hash of (seed, stream) for a fresh stream k ≥ 1. The
    sampling seeds of stream 0 are i < n, those of a fresh stream h·100003 + i with h ≥ 1
    from the hash, so the streams share no seed; prompts are independent draws."""
    k = int(getattr(prof, "sample_stream", 0) or 0)
    return int(seed) if k == 0 else 1 + _cfg_seed(seed, "sample-stream", k)


@torch.no_grad()
def generate(module: nn.Module, prompt: torch.Tensor, n_new: int, seed: int, max_context: int | None) -> torch.Tensor:
    """Continue ``prompt`` (1-D int64) by ``n_new`` tokens sampled from the model (seeded,
    sampled on the CPU so that the draw does not depend on the device)."""
    dev = next(module.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    seq = prompt.clone().cpu()
    for _ in range(n_new):
        ctx = seq if max_context is None else seq[-max_context:]
        logits = _logits(module(ctx[None].to(dev)))[0, -1]
        p = torch.softmax(logits.double().cpu(), dim=-1)
        seq = torch.cat([seq, torch.multinomial(p, 1, generator=gen)])
    return seq


@torch.no_grad()
def sample_labels(module: nn.Module, X: torch.Tensor, seed: int) -> torch.Tensor:
    """Labels y_i ~ p(· | x_i) from the model (seeded, on the CPU)."""
    dev = next(module.parameters()).device
    p = torch.softmax(_logits(module(X.to(dev))).double().cpu(), dim=-1)
    return torch.multinomial(p, 1, generator=torch.Generator().manual_seed(int(seed)))[:, 0]


def make_trajectory(ld: Loaded, module: nn.Module, i: int, prof: Profile, seed: int):
    """Trajectory i generated by ``module`` (same prompt and sampling seed for every variant)."""
    s = sample_seed(prof, seed) * 100_003 + i
    if ld.kind == "lm":
        return generate(module, ld.prompts[i], ld.spec.get(prof, "gen_len"), s, ld.max_context)
    X = ld.prompts[i]
    return X, sample_labels(module, X, s)


def last_linear_scores(model: nn.Module, linear: str, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token scores w.r.t. the weight of the ``nn.Linear`` named ``linear`` when nothing
    after it mixes positions (the last block's MLP projection of a pre-norm transformer):
    log p_t depends on the projection's output o only through o_t, so the score of token t is
    u_t a_tᵀ with u_t = ∂ log p_t/∂o_t (all t from one backward of Σ_t log p_t) and a_t the
    projection's input. Row-major flattening, as :func:`per_token_scores`.

    Returns
    -------
    torch.Tensor
        ``(T, out·in)``, the dtype of the model.
    """
    mod = dict(model.named_modules()).get(linear)
    if not isinstance(mod, nn.Linear) or mod.bias is not None:
        raise InputError(f"{linear!r} is not a bias-free nn.Linear of the model")
    store = {}

    def hook(_mod, inp, out):
        store["a"] = inp[0].detach()
        o = out.detach().requires_grad_(True)
        store["o"] = o
        return o

    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    handle = mod.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            x = inputs.to(mod.weight.device).long()
            y = targets.to(mod.weight.device).long()
            lp = torch.log_softmax(_logits(model(x[None]))[0], dim=-1).gather(-1, y[:, None]).squeeze(-1)
            (u,) = torch.autograd.grad(lp.sum(), store["o"])
    finally:
        handle.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
    u, a = u[0], store["a"][0]
    return (u[:, :, None] * a[:, None, :]).reshape(u.shape[0], -1)


def tail_linear_scores(model: nn.Module, linears, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token scores w.r.t. the weights of several bias-free ``nn.Linear`` modules when
    nothing from their inputs on mixes positions (e.g. the last block's whole MLP): as
    :func:`last_linear_scores`, the score of token t for each is u_t a_tᵀ, u_t = ∂ log p_t/∂o_t
    from one backward of Σ_t log p_t (o_s does not reach log p_t for s ≠ t). Columns: the
    modules in the order given, each row-major (as :func:`per_token_scores` on their weights).
    The hypothesis (position-wise tail) is the caller's; a test checks it against a
    per-token autograd loop.

    Returns
    -------
    torch.Tensor
        ``(T, Σ out·in)``, the dtype of the model.
    """
    if inputs.ndim != 1 or inputs.shape != targets.shape:
        raise InputError(f"inputs and targets must both be (T,), got {tuple(inputs.shape)}, {tuple(targets.shape)}")
    blocks = linear_factors(model, linears, inputs[None], targets[None])  # one sequence of a batch
    return factor_dense([(u[0], a[0]) for u, a in blocks])


def position_core_scores(model: nn.Module, core: str, names, inputs: torch.Tensor, targets: torch.Tensor):
    """Per-token scores of an LM whose position t is ``core(model.position_inputs(inputs)[t])``
    (the textgenrnn LM: the core classifies the 40-character window ending at t), as
    per-sample scores of the core over the positions' inputs: one vmapped gradient per
    position instead of T backward passes through all T windows. ``names`` are the model's
    (prefixed ``core.``); columns in their order, as :func:`per_token_scores`.

    Returns
    -------
    torch.Tensor
        ``(T, P)`` float64.
    """
    pre = f"{core}."
    if any(not k.startswith(pre) for k in names):
        raise InputError(f"every scored parameter must belong to {core!r}")
    sub = getattr(model, core)
    X = model.position_inputs(inputs.to(next(sub.parameters()).device).long())
    return per_sample_scores(sub, [k[len(pre) :] for k in names], X, targets, dtype=torch.float64).G


def scores_of(ld: Loaded, module: nn.Module, traj) -> torch.Tensor:
    """G (n × P, float64) of a trajectory under ``module``."""
    if ld.kind == "lm":
        t = traj.to(next(module.parameters()).device)
        if ld.last_linear is not None:
            return last_linear_scores(module, ld.last_linear, t[:-1], t[1:]).double()
        if ld.tail_linears is not None:
            return tail_linear_scores(module, ld.tail_linears, t[:-1], t[1:]).double()
        if ld.position_core is not None:
            return position_core_scores(module, ld.position_core, ld.names, t[:-1], t[1:])
        return per_token_scores(module, ld.names, t[:-1], t[1:], dtype=torch.float64).G
    X, y = traj
    return per_sample_scores(module, ld.names, X, y, dtype=torch.float64).G


def split_stats(G: torch.Tensor) -> tuple[float, float, float]:
    """(λ_max(F), ‖ḡ‖², λ_max(F − ḡḡᵀ)) from the Gram matrices of G and of centred G."""
    n = G.shape[0]
    gbar = G.mean(0)
    lam = float(torch.linalg.eigvalsh((G @ G.T) / n)[-1])
    Gc = G - gbar
    cov = float(torch.linalg.eigvalsh((Gc @ Gc.T) / n)[-1])
    return lam, float(gbar @ gbar), max(cov, 0.0)


def top_pair(G: torch.Tensor) -> tuple[float, torch.Tensor, float]:
    """λ1 = λ_max(GᵀG/n), its unit eigenvector v = Gᵀw/‖Gᵀw‖ (w the top eigenvector of the
    Gram matrix GGᵀ/n) and the relative gap (λ1 − λ2)/λ1."""
    n = G.shape[0]
    evals, evecs = torch.linalg.eigh((G @ G.T) / n)
    v = G.T @ evecs[:, -1]
    v = v / torch.linalg.vector_norm(v)
    gap = float((evals[-1] - evals[-2]) / evals[-1]) if n > 1 and float(evals[-1]) > 0 else float("nan")
    return float(evals[-1]), v, gap


# ----------------------------------------------------------------------------- directions


class Perturbed:
    """A scratch copy of a model whose quantized weights are set to θ + c·δ from the
    untouched base θ (never by add-then-subtract, so θ does not drift)."""

    def __init__(self, base: nn.Module):
        self.base = base
        self.work = copy.deepcopy(base)
        self._src = dict(_weights(base))
        self._dst = dict(_weights(self.work))

    def set(self, delta: dict[str, torch.Tensor] | None, c: float = 0.0) -> nn.Module:
        with torch.no_grad():
            for k, w in self._dst.items():
                w.copy_(self._src[k])
                if delta is not None and c != 0.0 and k in delta:
                    w.add_(delta[k], alpha=c)
        return self.work


def directional(ld: Loaded, pert: Perturbed, traj, delta, eps: float, G0: torch.Tensor | None, v, gv):
    """Central differences of the scores along δ at ±ε.

    Returns ``(hv, tv, H, T)``: hv = H v and tv = T v (n-vectors, v the unit top eigenvector
    of F, gv = G v), and the dense H = ∇G·δ, T = D²G[δ, δ] when ``G0`` is given (else None).
    Tv is formed from G(θ ± εδ)v and gv, so it needs only v, not G. Leaves ``pert`` at θ − εδ.
    """
    Gp = scores_of(ld, pert.set(delta, eps), traj)
    Gm = scores_of(ld, pert.set(delta, -eps), traj)
    pv, mv = Gp @ v, Gm @ v
    hv = (pv - mv) / (2 * eps)
    tv = (pv - 2 * gv + mv) / eps**2
    if G0 is None:
        return hv, tv, None, None
    return hv, tv, (Gp - Gm) / (2 * eps), (Gp - 2 * G0 + Gm) / eps**2


def rademacher_delta(sd: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """δ = ξ ⊙ sd with independent ξ_j = ±1 (seeded, CPU generator): E δ = 0 and
    E[δδᵀ] = diag(sd²) exactly (δ_j² = sd_j² for every draw)."""
    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for k, s in sd.items():
        up = torch.randint(0, 2, s.shape, generator=gen, dtype=torch.int8).bool().to(s.device)
        out[k] = torch.where(up, s, -s)
    return out


def first_order_lambda(lam1: float, gv: torch.Tensor, hv: torch.Tensor) -> float:
    """λ1 + vᵀDF[δ]v with DF[δ] = (GᵀH + HᵀG)/n: λ1 + (2/n) Σ_i (g_i·v)(h_i·v)."""
    return lam1 + 2.0 * float(gv @ hv) / gv.shape[0]


def expectation_term(gv: torch.Tensor, hvs: list, tvs: list) -> float:
    """vᵀ E[½D²F[δ,δ]] v estimated by the mean over draws of (1/n)(|Hv|² + (Gv)·(Tv))."""
    n = gv.shape[0]
    return float(sum(float(hv @ hv) + float(gv @ tv) for hv, tv in zip(hvs, tvs))) / (n * len(hvs))


def predicted_lambdas(G: torch.Tensor, Hs: list, Ts: list, scales: list[float]) -> list[float]:
    """λ_max(F + c·D) for each c in ``scales``, D = mean_j (1/n) Σ_i (h h ᵀ + ½(g tᵀ + t gᵀ)).

    Exact symmetric eigh on the span of the rows of [G; H_j; T_j] (F and D are never formed
    in R^{P×P}; 0, the eigenvalue on the complement of the span, counts when the span is not
    all of R^P)."""
    n = G.shape[0]
    Z = torch.cat([G, *Hs, *Ts], dim=0)
    Q, _ = torch.linalg.qr(Z.T)  # P × m orthonormal basis of the row span
    Gp = G @ Q
    F = Gp.T @ Gp / n
    Dm = torch.zeros_like(F)
    for H, T in zip(Hs, Ts):
        Hp, Tp = H @ Q, T @ Q
        Dm += (Hp.T @ Hp + 0.5 * (Gp.T @ Tp + Tp.T @ Gp)) / n
    Dm /= len(Hs)
    out = []
    partial = Q.shape[1] < G.shape[1]
    for c in scales:
        A = F + c * Dm
        top = float(torch.linalg.eigvalsh(0.5 * (A + A.T))[-1])
        out.append(max(top, 0.0) if partial else top)
    return out


def second_order_realised(G: torch.Tensor, H: torch.Tensor, T: torch.Tensor) -> float:
    """λ_max(F + DF[δ] + ½D²F[δ,δ]) = λ_max((1/n)[GᵀG + GᵀH + HᵀG + HᵀH + ½(GᵀT + TᵀG)])
    (exact, :func:`lambda_max_span` on the blocks G, H, T)."""
    n = G.shape[0]
    return lambda_max_span([G, H, T], {(0, 0): 1 / n, (0, 1): 1 / n, (1, 1): 1 / n, (0, 2): 0.5 / n})


def lambda_max_span(blocks: list[torch.Tensor], coef: dict[tuple[int, int], float]) -> float:
    """λ_max of A = Σ_{k,l} c_kl Z_kᵀ Z_l (the Z_k row blocks of one height n, c symmetric:
    give each unordered pair once), exactly, without forming A in R^{P×P}.

    With Z = [Z_1; …; Z_m] and M the block matrix of the c_kl I_n, A = ZᵀMZ, whose nonzero
    eigenvalues are those of K^{1/2} M K^{1/2}, K = ZZᵀ (Sylvester); one Gram product
    (m n)² P and eigensolves of size m n.
    """
    n = blocks[0].shape[0]
    Z = torch.cat(blocks, dim=0)
    K = Z @ Z.T
    m = len(blocks)
    Mc = torch.zeros(m, m, dtype=K.dtype, device=K.device)
    for (k, l), c in coef.items():
        Mc[k, l] = c
        Mc[l, k] = c
    Mfull = torch.kron(Mc, torch.eye(n, dtype=K.dtype, device=K.device))
    w, U = torch.linalg.eigh(0.5 * (K + K.T))
    root = (U * w.clamp_min(0).sqrt()) @ U.T
    B = root @ Mfull @ root
    top = float(torch.linalg.eigvalsh(0.5 * (B + B.T))[-1])
    rank = int((w > w.max() * 1e-12 * w.numel()).sum())
    # A vanishes on the orthogonal complement of the span: 0 is an eigenvalue when rank < P
    return max(top, 0.0) if rank < Z.shape[1] else top


def lambda_max_operator(terms: list[tuple[float, torch.Tensor, torch.Tensor]], v0: torch.Tensor, *, tol=1e-12) -> float:
    """λ_max of A = Σ_k c_k · sym(X_kᵀ Y_k) (each X_k, Y_k an n_k × P matrix, sym(B) = ½(B + Bᵀ)),
    by Lanczos (ARPACK, ``tol`` relative) on matrix–vector products only, started at ``v0``
    (a reference for :func:`lambda_max_span`)."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    P = v0.shape[0]
    mats = [(c, X.double().cpu().numpy(), Y.double().cpu().numpy()) for c, X, Y in terms]

    def mv(x):
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        out = np.zeros(P)
        for c, X, Y in mats:
            out += 0.5 * c * (X.T @ (Y @ x) + Y.T @ (X @ x))
        return out

    op = LinearOperator((P, P), matvec=mv, dtype=np.float64)
    start = v0.double().cpu().numpy() + 1e-3 * np.random.default_rng(0).standard_normal(P) / math.sqrt(P)
    vals = eigsh(op, k=1, which="LA", v0=start, tol=tol, return_eigenvectors=False, maxiter=20 * P)
    return float(vals[0])


# ----------------------------------------------------------------------------- statistics


def quantile(x, q: float) -> float:
    """Linear-interpolation q-quantile (numpy's default), as τ_q uses."""
    return float(np.quantile(np.asarray(x, dtype=np.float64), q))


def ratio_ci(num, den, q: float, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """ρ = quantile(num, q) / quantile(den, q) with a paired percentile bootstrap CI.

    Trajectory i contributes (num[i], den[i]); resampling draws trajectory indices with
    replacement (seeded numpy Generator) and recomputes the ratio.

    Returns
    -------
    (rho, lo, hi)
    """
    a = np.asarray(num, dtype=np.float64)
    b = np.asarray(den, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise InputError("ratio_ci needs two 1-D arrays of the same length >= 2")
    if n_boot < 1000:
        raise InputError(f"n_boot must be >= 1000, got {n_boot}")
    rho = quantile(a, q) / quantile(b, q)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    r = np.quantile(a[idx], q, axis=1) / np.quantile(b[idx], q, axis=1)
    lo, hi = np.quantile(r, [(1 - level) / 2, 1 - (1 - level) / 2])
    return rho, float(lo), float(hi)


def half_width(rho: float, lo: float, hi: float) -> float:
    """Relative half-width (hi − lo)/(2ρ) of a CI."""
    return (hi - lo) / (2.0 * rho)


def skill_table(cells: list[dict], predictions=PREDICTIONS) -> dict:
    """Skill of each prediction against the constant ρ = 1, per bit width.

    ``cells``: dicts with ``bits``, ``rho_fixed``, ``rho_fixed_lo``, ``rho_fixed_hi`` and
    ``rho_<prediction>`` (None where not computed). For each bit width and prediction p:

    * ``median_abs_error[p]`` = median over the cells of |ρ_p/ρ_fixed − 1| (for the constant:
      |1/ρ_fixed − 1|), over the cells where p exists;
    * ``ratio_to_constant[p]`` = median_abs_error[p] / the constant's median |error| on the
      same cells (< 1: p beats ρ = 1); None when the constant's median is 0;
    * ``coverage[p]`` = [k, m]: p lies inside k of the m fixed-data 95% CIs (the constant's
      coverage on the same m cells in ``constant_coverage[p]``).
    """
    out = {}
    for b in sorted({c["bits"] for c in cells}, reverse=True):
        cs = [c for c in cells if c["bits"] == b]
        row = {
            "cells": len(cs),
            "constant": {
                "median_abs_error": float(np.median([abs(1.0 / c["rho_fixed"] - 1.0) for c in cs])),
                "coverage": [sum(c["rho_fixed_lo"] <= 1.0 <= c["rho_fixed_hi"] for c in cs), len(cs)],
            },
        }
        for p in predictions:
            sub = [c for c in cs if c.get(f"rho_{p}") is not None]
            if not sub:
                row[p] = None
                continue
            err = float(np.median([abs(c[f"rho_{p}"] / c["rho_fixed"] - 1.0) for c in sub]))
            base = float(np.median([abs(1.0 / c["rho_fixed"] - 1.0) for c in sub]))
            row[p] = {
                "cells": len(sub),
                "median_abs_error": err,
                "constant_median_abs_error": base,
                "ratio_to_constant": (err / base) if base > 0 else None,
                "coverage": [sum(c["rho_fixed_lo"] <= c[f"rho_{p}"] <= c["rho_fixed_hi"] for c in sub), len(sub)],
                "constant_coverage": [sum(c["rho_fixed_lo"] <= 1.0 <= c["rho_fixed_hi"] for c in sub), len(sub)],
            }
        out[str(b)] = row
    return out


def _cfg_seed(seed: int, *parts) -> int:
    h = 0
    for p in (seed, *parts):
        for ch in str(p):
            h = (h * 131 + ord(ch)) % 2_147_483_647
    return h


# ----------------------------------------------------------------------------- one model


STUDY_VERSION = 2  # bump when the raw samples of a shard change meaning


def fingerprint(spec: ModelSpec, prof: Profile, seed: int) -> str:
    """Hash of every setting that changes a model's raw samples (not q, n_boot or the CI
    target, which only change the summary)."""
    d = {
        "version": STUDY_VERSION,
        "spec": repr(spec),
        "seed": seed,
        "n": spec.get(prof, "n_trajectories"),
        "batch": prof.batch,
        "group": prof.group_size,
        "nf4": prof.nf4_block,
        "eps": prof.fd_eps,
        "exact_expectation": prof.exact_expectation,
        "configs": config_keys(spec, prof),
        **{k: spec.get(prof, k) for k in ("prompt_len", "gen_len", "mc_draws", "n_traces")},
    }
    if prof.sample_stream:  # stream 0 keeps the fingerprints of earlier shards
        d["sample_stream"] = prof.sample_stream
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_shard(path: str | None, shard: dict) -> None:
    if path is None:
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(shard, fh, default=str)
    os.replace(tmp, path)


def _traj_to_json(ld: Loaded, t):
    return t.tolist() if ld.kind == "lm" else t[1].tolist()


def _traj_from_json(ld: Loaded, i: int, x):
    if ld.kind == "lm":
        return torch.tensor(x, dtype=torch.int64)
    return ld.prompts[i], torch.tensor(x, dtype=torch.int64)


def _numel(module: nn.Module) -> int:
    return sum(w.numel() for _, w in _weights(module))


def run_model(
    ld: Loaded,
    prof: Profile,
    seed: int,
    progress,
    *,
    shard_path: str | None = None,
    resume=False,
    factored: bool | None = None,
) -> dict:
    """Raw samples of one model (see the module docstring), checkpointed to ``shard_path``
    after the full-precision stage, each Monte Carlo estimate and each scheme; with
    ``resume`` a shard of the same :func:`fingerprint` is continued. ``factored``: take
    :func:`run_model_factored` (same samples, cheaper; default: when
    :func:`uses_factored_path`), False forces the dense path."""
    if factored or (factored is None and uses_factored_path(ld, prof)):
        ov = dict(ld.spec.overrides)
        chunk, batch = int(ov.get("factored_chunk", FACTORED_CHUNK)), int(ov.get("factored_batch", FACTORED_BATCH))
        return run_model_factored(
            ld, prof, seed, progress, shard_path=shard_path, resume=resume, chunk=chunk, batch=batch
        )
    spec = ld.spec
    n = spec.get(prof, "n_trajectories")
    keys = config_keys(spec, prof)
    fpr = fingerprint(spec, prof, seed)
    shard = None
    if resume and shard_path and os.path.exists(shard_path):
        with open(shard_path) as fh:
            old = json.load(fh)
        if old.get("fingerprint") == fpr:
            shard = old
    if shard is None:
        shard = {"fingerprint": fpr, "label": spec.label, "complete": False, "result": None, "estimates": {}}
    big = _numel(ld.module) > 5_000_000
    ddtype = torch.float32 if big else torch.float64
    eps = prof.fd_eps
    draws = spec.get(prof, "mc_draws")
    t_start = time.perf_counter()
    pert = Perturbed(ld.module)
    if big:
        pert.work = pert.work.double()
        pert._dst = dict(_weights(pert.work))
    fp = pert.set(None)

    def note_every(label):
        last = [time.perf_counter()]

        def tick(i):
            if time.perf_counter() - last[0] > 60:
                last[0] = time.perf_counter()
                progress.note(f"{spec.label} {label}: trajectory {i + 1}/{n}")

        return tick

    # -- full precision
    res = shard["result"]
    t0 = time.perf_counter()
    if res is None:
        trajs = [make_trajectory(ld, fp, i, prof, seed) for i in range(n)]
    else:
        trajs = [_traj_from_json(ld, i, x) for i, x in enumerate(res["trajectories"])]
    tops, Gs, stats, traces = [], [], [], []
    tick = note_every("full precision")
    for i, t in enumerate(trajs):
        G = scores_of(ld, fp, t)
        lam1, v, gap = top_pair(G)
        v = v.to(ddtype).double()
        tops.append((lam1, v.to(ddtype), G @ v, gap))
        if res is None:
            stats.append(split_stats(G))
            if i < spec.get(prof, "n_traces"):
                traces.append(sigma_trace(G, 1.0).tolist())
        if Gs is not None:
            Gs.append(G)
            if G.numel() * n > DENSE_LIMIT:
                Gs = None
        tick(i)
    dense = Gs is not None and spec.predict
    exact_e = dense and prof.exact_expectation
    if res is None:
        res = {
            "info": ld.info,
            "param_names": list(ld.names),
            "P": int(tops[0][1].shape[0]),
            "n_scores": int(tops[0][2].shape[0]),
            "quantized_weights": _numel(ld.module),
            "weights_not_quantized": weights_not_quantized(ld.module),
            "settings": {k: spec.get(prof, k) for k in ("prompt_len", "gen_len", "mc_draws", "n_traces")},
            "configs_planned": keys,
            "trajectories": [_traj_to_json(ld, t) for t in trajs],
            "fp": {
                "lam": [s[0] for s in stats],
                "gbar2": [s[1] for s in stats],
                "cov": [s[2] for s in stats],
                "gap": [tp[3] for tp in tops],
                "traces": traces,
            },
            "configs": {},
            "seconds": {"fp": time.perf_counter() - t0},
        }
        shard["result"] = res
        _save_shard(shard_path, shard)
    progress(f"{spec.label}: full precision ({n} trajectories)")

    def vec(i):
        return tops[i][1].double()

    # -- expectation estimates (Monte Carlo over δ ~ Σ), run just before the first scheme needing them
    shared = dict(spec.overrides).get("shared_draws", big)

    def run_estimate(fam: str, b: int) -> None:
        ek = f"{fam}/{b}"
        if ek in shard["estimates"]:
            return
        t0 = time.perf_counter()
        var = expectation_variances(ld.module, fam, b, prof)
        sd = {k: v.sqrt().to(ddtype) for k, v in var.items()}
        del var
        widths = sorted({int(k.split("/")[1]) for k in keys if k.split("/")[0] == fam}, reverse=True)
        scales = [
            1.0 if fam in ("sr-channel", "nf4") else variance_scale(fam, w) / variance_scale(fam, b) for w in widths
        ]
        if fam == "sr-channel":
            widths, scales = [b], [1.0]
        common = (
            [rademacher_delta(sd, _cfg_seed(seed, spec.label, ek, "shared", j)) for j in range(draws)]
            if shared
            else None
        )
        term, exact = [], {str(w): [] for w in widths}
        tick = note_every(f"E[δ] {ek}")
        for i, t in enumerate(trajs):
            lam1, _, gv, _ = tops[i]
            hvs, tvs, Hs, Ts = [], [], [], []
            for j in range(draws):
                delta = common[j] if shared else rademacher_delta(sd, _cfg_seed(seed, spec.label, ek, i, j))
                hv, tv, H, T = directional(ld, pert, t, delta, eps, Gs[i] if exact_e else None, vec(i), gv)
                hvs.append(hv)
                tvs.append(tv)
                if exact_e:
                    Hs.append(H)
                    Ts.append(T)
            term.append(expectation_term(gv, hvs, tvs))
            if exact_e:
                G = Gs[i]
                nn_ = G.shape[0]
                Tbar = sum(Ts) / len(Ts)
                d = len(Hs)
                for w, c in zip(widths, scales):
                    # (1/n)[GᵀG + (c/d) Σ_j H_jᵀH_j + (c/2)(GᵀT̄ + T̄ᵀG)], blocks G, T̄, H_1..H_d
                    coef = {(0, 0): 1.0 / nn_, (0, 1): 0.5 * c / nn_}
                    coef.update({(2 + j, 2 + j): c / (nn_ * d) for j in range(d)})
                    exact[str(w)].append(lambda_max_span([G, Tbar, *Hs], coef))
            tick(i)
        shard["estimates"][ek] = {
            "family": fam,
            "bits": b,
            "term": term,
            "exact": exact if exact_e else None,
            "shared_draws": bool(shared),
            "seconds": time.perf_counter() - t0,
        }
        del sd, common
        _save_shard(shard_path, shard)
        progress(f"{spec.label}: E[½D²F] {ek} ({draws} draws per trajectory)")

    # -- quantized variants
    lam_fp = res["fp"]["lam"]
    base = float(np.mean(lam_fp))
    for key in keys:
        if key in res["configs"]:
            continue
        fam, b = key.split("/")[0], int(key.split("/")[1])
        if spec.predict:
            run_estimate(fam, b if fam == "sr-channel" else 4)
        t0 = time.perf_counter()
        qm = pert.work
        rel = quantize_into(qm, ld.module, fam, b, prof, _cfg_seed(seed, spec.label, key))
        norms = delta_norms(ld.module, fam, b, prof)
        entry = {
            "family": fam,
            "bits": b,
            "rel_delta": rel,
            "rel_delta_widrow": norms["widrow"] / norms["theta"],
            "rel_delta_sr_expected": norms["sr_expected"] / norms["theta"] if "sr_expected" in norms else None,
        }
        tick = note_every(f"{key} self/fixed")
        for which in ("self", "fixed") if spec.measures("measure_self") else ("fixed",):
            st, tr = [], []
            for i in range(n):
                t = trajs[i] if which == "fixed" else make_trajectory(ld, qm, i, prof, seed)
                G = scores_of(ld, qm, t)
                st.append(split_stats(G))
                if which == "self" and fam == "rtn-channel" and b == 4 and i < spec.get(prof, "n_traces"):
                    tr.append(sigma_trace(G, 1.0).tolist())
                tick(i)
            entry[which] = {"lam": [s[0] for s in st], "gbar2": [s[1] for s in st], "cov": [s[2] for s in st]}
            if tr:
                entry["traces"] = tr
        # the realised δ (float32 for big models: 1e-7 relative, far below the O(‖δ‖²) term)
        src = dict(_weights(ld.module))
        delta = {k: (w.detach().double() - src[k].detach().double()).to(ddtype) for k, w in _weights(qm)}
        first, second = [], []
        tick = note_every(f"{key} first order")
        for i, t in enumerate(trajs if spec.measures("first_order") else ()):
            lam1, _, gv, _ = tops[i]
            hv, _tv, H, T = directional(ld, pert, t, delta, eps, Gs[i] if dense else None, vec(i), gv)
            first.append(first_order_lambda(lam1, gv, hv))
            if dense:
                second.append(second_order_realised(Gs[i], H, T))
            tick(i)
        del delta
        entry["first_order"] = first if spec.measures("first_order") else None
        entry["second_real"] = second if dense and spec.measures("first_order") else None
        # expectation predictions of this scheme from its estimate
        ek = f"{fam}/{b}" if fam == "sr-channel" else f"{fam}/4"
        est = shard["estimates"].get(ek) if spec.predict else None
        if est is not None:
            c = 1.0 if fam in ("sr-channel", "nf4") else variance_scale(fam, b) / variance_scale(fam, 4)
            entry["pred"] = [lam_fp_i + c * d for lam_fp_i, d in zip((tp[0] for tp in tops), est["term"])]
            entry["pred_exact"] = est["exact"][str(b)] if est.get("exact") else None
        else:
            entry["pred"] = entry["pred_exact"] = None
        entry["seconds"] = time.perf_counter() - t0
        res["configs"][key] = entry
        _save_shard(shard_path, shard)
        progress(f"{spec.label}: {key}")
    pert.set(None)
    res["lambda_base"] = base
    res["complete"] = all(k in res["configs"] for k in keys)
    res["seconds"]["total_this_run"] = time.perf_counter() - t_start
    shard["complete"] = res["complete"]
    _save_shard(shard_path, shard)
    return res


# ----------------------------------------------------------------------------- fixed-data stages of big LMs

#: Trajectories per checkpoint of :func:`run_model_factored` (each chunk re-quantizes the
#: model once per scheme: ≈ 12 CPU-s for SmolLM2's three 4-bit schemes).
FACTORED_CHUNK = 96
#: Trajectories per batched forward/backward of :func:`run_model_factored`.
FACTORED_BATCH = 16


def linear_factors(model: nn.Module, linears, inputs: torch.Tensor, targets: torch.Tensor) -> list:
    """Batched factors of the per-token scores of bias-free ``nn.Linear`` weights of a
    position-wise tail (as :func:`tail_linear_scores`; one module = :func:`last_linear_scores`):
    the score of token t of sequence b w.r.t. module j is u_{b,t} a_{b,t}ᵀ, u = ∂ log p_{b,t}/∂o_{b,t}
    from one backward of Σ_{b,t} log p_{b,t} (sequences do not interact), a the module's input.
    ``inputs``/``targets``: int64 ``(B, T)``. The dense (T, out·in) block of sequence b is
    ``(u[b][:, :, None] * a[b][:, None, :]).reshape(T, -1)`` (:func:`factor_dense`).

    Returns
    -------
    list of (u, a)
        per module, ``u`` of shape (B, T, out) and ``a`` of shape (B, T, in), the model's dtype.
    """
    table = dict(model.named_modules())
    mods = [table.get(k) for k in linears]
    for k, mod in zip(linears, mods):
        if not isinstance(mod, nn.Linear) or mod.bias is not None:
            raise InputError(f"{k!r} is not a bias-free nn.Linear of the model")
    if inputs.ndim != 2 or inputs.shape != targets.shape:
        raise InputError(f"inputs and targets must both be (B, T), got {tuple(inputs.shape)}, {tuple(targets.shape)}")
    store: dict = {}

    def make_hook(j):
        def hook(_mod, inp, out):
            z = torch.zeros_like(out, requires_grad=True)  # ∂/∂z = ∂/∂o; o's graph stays intact
            store[j] = (inp[0].detach(), z)
            return out + z

        return hook

    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    handles = [mod.register_forward_hook(make_hook(j)) for j, mod in enumerate(mods)]
    try:
        with torch.enable_grad():
            dev = mods[0].weight.device
            x, y = inputs.to(dev).long(), targets.to(dev).long()
            lp = torch.log_softmax(_logits(model(x)), dim=-1).gather(-1, y[..., None]).squeeze(-1)
            grads = torch.autograd.grad(lp.sum(), [store[j][1] for j in range(len(mods))])
    finally:
        for h in handles:
            h.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
    return [(u, store[j][0]) for j, u in enumerate(grads)]


def factor_gram(blocks) -> torch.Tensor:
    """G Gᵀ (T × T) of G = [u_t ⊗ a_t]_j from its factors: Σ_j (U_j U_jᵀ) ∘ (A_j A_jᵀ)."""
    return sum((U @ U.T) * (A @ A.T) for U, A in blocks)


def factor_dense(blocks) -> torch.Tensor:
    """The dense G (T × Σ out·in, row-major per block, blocks in order) of its factors."""
    return torch.cat([(U[:, :, None] * A[:, None, :]).reshape(U.shape[0], -1) for U, A in blocks], dim=1)


def factor_matvec(blocks, Vs) -> torch.Tensor:
    """G v for v given per block as an (out × in) matrix V_j: (G v)_t = Σ_j u_tᵀ V_j a_t."""
    return sum(((U @ V) * A).sum(-1) for (U, A), V in zip(blocks, Vs))


def gram_split_top(K: torch.Tensor) -> tuple[float, float, float, float, torch.Tensor]:
    """From K = G Gᵀ (n × n): λ1 = λ_max(GᵀG/n), ‖ḡ‖² = 1ᵀK1/n², λ_max(F − ḡḡᵀ) (the top
    eigenvalue of C K C/n, C = I − 11ᵀ/n: the Gram matrix of the centred rows, clipped at 0),
    the relative gap (λ1 − λ2)/λ1 and the top unit eigenvector w of K/n (as
    :func:`split_stats` and :func:`top_pair`, without forming G)."""
    n = K.shape[0]
    evals, evecs = torch.linalg.eigh(K / n)
    C = torch.eye(n, dtype=K.dtype, device=K.device) - 1.0 / n
    cov = float(torch.linalg.eigvalsh(C @ K @ C / n)[-1])
    lam = float(evals[-1])
    gap = float((evals[-1] - evals[-2]) / evals[-1]) if n > 1 and lam > 0 else float("nan")
    return lam, float(K.sum()) / n**2, max(cov, 0.0), gap, evecs[:, -1]


def factor_top_vector(blocks, w: torch.Tensor, dtype) -> list:
    """v = Gᵀw/‖Gᵀw‖ per block as (out × in) matrices, rounded to ``dtype`` (as the dense
    path stores v) and returned in float64."""
    Vs = [(U * w[:, None]).T @ A for U, A in blocks]
    norm = torch.sqrt(sum((V * V).sum() for V in Vs))
    return [(V / norm).to(dtype).double() for V in Vs]


@torch.no_grad()
def generate_batch(module: nn.Module, prompts: torch.Tensor, n_new: int, seeds, max_context: int | None):
    """:func:`generate` for a batch of prompts of equal length (``(B, L)`` int64), one seeded
    generator per row (seed ``seeds[b]``): the same tokens as B calls of :func:`generate` up
    to the round-off of a batched forward (a draw changes only if its uniform variate lies
    within that round-off of a cumulative probability). Only the last position's logits are
    formed when the model has ``hidden``/``logits_from_hidden``."""
    dev = next(module.parameters()).device
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    seq = prompts.clone().cpu()
    split = hasattr(module, "hidden") and hasattr(module, "logits_from_hidden")
    for _ in range(n_new):
        ctx = (seq if max_context is None else seq[:, -max_context:]).to(dev)
        logits = module.logits_from_hidden(module.hidden(ctx)[:, -1:])[:, -1] if split else _logits(module(ctx))[:, -1]
        p = torch.softmax(logits.double().cpu(), dim=-1)
        nxt = torch.stack([torch.multinomial(p[b], 1, generator=g) for b, g in enumerate(gens)])
        seq = torch.cat([seq, nxt], dim=1)
    return seq


def uses_factored_path(ld: Loaded, prof: Profile | None = None) -> bool:
    """Whether :func:`run_model` takes :func:`run_model_factored` for ``ld``: an LM scored on a
    position-wise tail of Linear weights (SmolLM2, Gemma 3) that either measures only ρ_fixed
    and the first-order prediction (the stages of :func:`ci_profile`), or (given ``prof``)
    whose dense path would not keep G (n·T·P above :data:`DENSE_LIMIT`: no exact-eigh or
    second-order predictions, so the factored path loses nothing) and whose expectation, if
    predicted, uses Monte Carlo draws shared by the trajectories (``shared_draws``)."""
    spec = ld.spec
    tail = ld.last_linear is not None or ld.tail_linears is not None
    if not (ld.kind == "lm" and tail):
        return False
    if not spec.measures("measure_self") and not spec.predict:
        return True
    if prof is None:
        return False
    params = dict(ld.module.named_parameters())
    P = sum(params[k].numel() for k in ld.names)
    T = spec.get(prof, "prompt_len") + spec.get(prof, "gen_len") - 1
    shared = dict(spec.overrides).get("shared_draws", _numel(ld.module) > 5_000_000)
    return spec.get(prof, "n_trajectories") * T * P > DENSE_LIMIT and (shared or not spec.predict)


def run_model_factored(
    ld: Loaded,
    prof: Profile,
    seed: int,
    progress,
    *,
    shard_path: str | None = None,
    resume=False,
    chunk: int = FACTORED_CHUNK,
    batch: int = FACTORED_BATCH,
) -> dict:
    """:func:`run_model` for a big LM scored on a position-wise tail (:func:`uses_factored_path`):
    the same raw samples (full precision Λ, ‖ḡ‖², λ_cov, gap, σ traces; per scheme the fixed-data
    Λ, ‖ḡ‖², λ_cov and the first-order prediction λ1 + (2/n) Σ (g·v)(h·v) from central
    differences at ±ε; unless the spec turns them off, the self-generated Λ, ‖ḡ‖², λ_cov (the
    quantized model's own batched generations, σ traces for RTN per channel at 4 bits), and
    with ``spec.predict`` the expectation prediction λ1 + vᵀE[½D²F]v from Monte Carlo draws
    shared by the trajectories: the dense path's seeds, one perturbation θ ± εδ_j per draw and
    chunk), equal to the dense path to float64 round-off (a test checks it; self-generated
    trajectories up to the round-off of a batched forward, :func:`generate_batch`), at a
    fraction of its cost:

    * G is never formed: its Gram matrix is Σ_j (UUᵀ)∘(AAᵀ) and G v = Σ_j u_tᵀV a_t from the
      factors u_t, a_t of :func:`linear_factors` (λ, ‖ḡ‖², λ_cov, v from the Gram matrix);
    * trajectories are generated, scored and differenced in batches of ``batch``;
    * the perturbed copy is set to θ ± εδ once per chunk of ``chunk`` trajectories, not twice
      per trajectory, and v is kept for one chunk only (SmolLM2: 3.5 MB a trajectory).

    Checkpointed after every chunk (``shard["partial"]``; ``result`` is written when all n are
    done); ``resume`` continues a shard of the same :func:`fingerprint` from its last chunk.
    """
    spec = ld.spec
    n = spec.get(prof, "n_trajectories")
    keys = config_keys(spec, prof)
    fpr = fingerprint(spec, prof, seed)
    if not (isinstance(chunk, int) and chunk >= 1 and isinstance(batch, int) and batch >= 1):
        raise InputError(f"chunk and batch must be positive integers, got {chunk!r}, {batch!r}")
    shard = None
    if resume and shard_path and os.path.exists(shard_path):
        with open(shard_path) as fh:
            old = json.load(fh)
        if old.get("fingerprint") == fpr and (old.get("complete") or old.get("partial") is not None):
            shard = old
    if shard is not None and shard.get("complete"):
        for _ in range(1 + len(keys) + (len(estimate_keys(keys)) if spec.predict else 0)):
            progress(f"{spec.label}: complete in its checkpoint")
        return shard["result"]
    linears = (ld.last_linear,) if ld.last_linear is not None else tuple(ld.tail_linears)
    big = _numel(ld.module) > 5_000_000
    vdtype = torch.float32 if big else torch.float64
    measure_self = spec.measures("measure_self")
    predict = bool(spec.predict)
    draws = spec.get(prof, "mc_draws")
    if predict and not dict(spec.overrides).get("shared_draws", big):
        raise InputError(
            f"{spec.label}: the factored path estimates the expectation from Monte Carlo draws shared by "
            "the trajectories (shared_draws); per-trajectory draws take the dense path"
        )
    ests = [f"{f}/{b}" for f, b in estimate_keys(keys)] if predict else []
    eps = prof.fd_eps
    gen_len = spec.get(prof, "gen_len")
    n_traces = spec.get(prof, "n_traces")
    pert = Perturbed(ld.module)
    if big:
        pert.work = pert.work.double()
        pert._dst = dict(_weights(pert.work))
    src = dict(_weights(ld.module))
    if shard is None:
        part = {
            "done": 0,
            "trajectories": [],
            "fp": {"lam": [], "gbar2": [], "cov": [], "gap": [], "traces": []},
            "configs": {k: {"fixed": {"lam": [], "gbar2": [], "cov": []}, "first_order": []} for k in keys},
            "seconds": {"fp": 0.0, **{k: 0.0 for k in keys}},
            "cpu_seconds": 0.0,
            "norms": {},
        }
        if measure_self:
            for k in keys:
                part["configs"][k].update(self={"lam": [], "gbar2": [], "cov": []}, traces=[])
        if ests:
            part["estimates"] = {ek: {"term": [], "seconds": 0.0} for ek in ests}
        shard = {"fingerprint": fpr, "label": spec.label, "complete": False, "result": None, "partial": part}
    part = shard["partial"]
    if "meta" not in part:  # what the result needs besides the samples (a stopped run reports from it)
        part["meta"] = {
            "info": ld.info,
            "param_names": list(ld.names),
            "P": int(sum(dict(ld.module.named_parameters())[k].numel() for k in ld.names)),
            "quantized_weights": _numel(ld.module),
            "weights_not_quantized": weights_not_quantized(ld.module),
            "settings": {k: spec.get(prof, k) for k in ("prompt_len", "gen_len", "mc_draws", "n_traces")},
            "configs_planned": keys,
            "n_planned": n,
            "first_order": bool(spec.measures("first_order")),
            "measure_self": bool(measure_self),
            "predict": predict,
            "mc_draws_shared": draws if predict else None,
            "path": f"factored (chunks of {chunk}, batches of {batch})",
        }
    s0 = sample_seed(prof, seed) * 100_003
    first_order = spec.measures("first_order")

    def factors(module, X):
        out = []
        for b0 in range(0, X.shape[0], batch):
            xb = X[b0 : b0 + batch]
            fb = linear_factors(module, linears, xb[:, :-1], xb[:, 1:])
            out += [[(u[b].double(), a[b].double()) for u, a in fb] for b in range(xb.shape[0])]
        return out

    def matvecs(module, X, tops):  # G(module) v per trajectory of X, v its full-precision top vector
        return [factor_matvec(bl, [V.double() for V in tp[1]]) for bl, tp in zip(factors(module, X), tops)]

    last_note = [time.perf_counter()]

    def tick(what):  # a line at most once a minute inside a chunk (logs off a terminal)
        if time.perf_counter() - last_note[0] > 60:
            last_note[0] = time.perf_counter()
            progress.note(f"{spec.label}: {what} done")

    while part["done"] < n:
        lo, hi = part["done"], min(n, part["done"] + chunk)
        t_chunk, c_chunk = time.perf_counter(), time.process_time()
        t0 = time.perf_counter()
        fp = pert.set(None)
        X = generate_batch(fp, ld.prompts[lo:hi], gen_len, [s0 + i for i in range(lo, hi)], ld.max_context)
        tops = []
        for j, blocks in enumerate(factors(fp, X)):
            lam, gb, cov, gap, w = gram_split_top(factor_gram(blocks))
            Vs = factor_top_vector(blocks, w, vdtype)
            tops.append((lam, [V.to(vdtype) for V in Vs], factor_matvec(blocks, Vs)))
            for k, x in zip(("lam", "gbar2", "cov", "gap"), (lam, gb, cov, gap)):
                part["fp"][k].append(x)
            if lo + j < n_traces:
                part["fp"]["traces"].append(sigma_trace(factor_dense(blocks), 1.0).tolist())
        part["trajectories"] += X.tolist()
        part["seconds"]["fp"] += time.perf_counter() - t0
        tick(f"full precision of trajectories {lo + 1}-{hi}")
        for ek in ests:  # vᵀE[½D²F]v = mean_j (1/n)(|H_j v|² + (Gv)·(T_j v)), shared draws δ_j = ξ_j ⊙ √Σ
            t0 = time.perf_counter()
            fam, b = ek.split("/")[0], int(ek.split("/")[1])
            var = expectation_variances(ld.module, fam, b, prof)
            sd = {k: v.sqrt().to(vdtype) for k, v in var.items()}
            del var
            hvs, tvs = [[] for _ in tops], [[] for _ in tops]
            for j in range(draws):
                delta = rademacher_delta(sd, _cfg_seed(seed, spec.label, ek, "shared", j))
                if j == draws - 1:
                    sd = None  # one perturbation resident at a time (Gemma 3: 0.4 GB each)
                pv = matvecs(pert.set(delta, eps), X, tops)
                mv = matvecs(pert.set(delta, -eps), X, tops)
                del delta
                for i, (tp, p_, m_) in enumerate(zip(tops, pv, mv)):
                    hvs[i].append((p_ - m_) / (2 * eps))
                    tvs[i].append((p_ - 2 * tp[2] + m_) / eps**2)
            est = part["estimates"][ek]
            est["term"] += [expectation_term(tp[2], hv, tv) for tp, hv, tv in zip(tops, hvs, tvs)]
            est["seconds"] += time.perf_counter() - t0
            tick(f"E[½D²F] {ek} of trajectories {lo + 1}-{hi}")
        for key in keys:
            t0 = time.perf_counter()
            fam, b = key.split("/")[0], int(key.split("/")[1])
            qm = pert.work
            rel = quantize_into(qm, ld.module, fam, b, prof, _cfg_seed(seed, spec.label, key))
            if key not in part["norms"]:
                part["norms"][key] = {"rel": rel, **delta_norms(ld.module, fam, b, prof)}
            dest = part["configs"][key]
            for blocks in factors(qm, X):
                lam, gb, cov, _gap, _w = gram_split_top(factor_gram(blocks))
                for k, x in zip(("lam", "gbar2", "cov"), (lam, gb, cov)):
                    dest["fixed"][k].append(x)
            if measure_self:  # the quantized model's own trajectories: same prompts and sampling seeds
                Xs = generate_batch(qm, ld.prompts[lo:hi], gen_len, [s0 + i for i in range(lo, hi)], ld.max_context)
                for j, blocks in enumerate(factors(qm, Xs)):
                    lam, gb, cov, _gap, _w = gram_split_top(factor_gram(blocks))
                    for k, x in zip(("lam", "gbar2", "cov"), (lam, gb, cov)):
                        dest["self"][k].append(x)
                    if fam == "rtn-channel" and b == 4 and lo + j < n_traces:
                        dest["traces"].append(sigma_trace(factor_dense(blocks), 1.0).tolist())
                del Xs
            if first_order:
                delta = {k: (w.detach().double() - src[k].detach().double()).to(vdtype) for k, w in _weights(qm)}
                pv = matvecs(pert.set(delta, eps), X, tops)
                mv = matvecs(pert.set(delta, -eps), X, tops)
                del delta
                for (lam1, _Vs, gv), p_, m_ in zip(tops, pv, mv):
                    dest["first_order"].append(first_order_lambda(lam1, gv, (p_ - m_) / (2 * eps)))
            part["seconds"][key] += time.perf_counter() - t0
            tick(f"{key} of trajectories {lo + 1}-{hi}")
        part["done"] = hi
        part["cpu_seconds"] += time.process_time() - c_chunk
        del tops
        _save_shard(shard_path, shard)
        last_note[0] = time.perf_counter()
        dt = time.perf_counter() - t_chunk
        cpu = time.process_time() - c_chunk
        progress.note(
            f"{spec.label}: trajectories {hi}/{n} (chunk of {hi - lo}: {dt:.0f} s wall, "
            f"{cpu / (hi - lo):.2f} CPU-s per trajectory; {part['cpu_seconds']:.0f} CPU-s so far)"
        )
    pert.set(None)
    progress(f"{spec.label}: full precision ({n} trajectories)")
    for ek in ests:
        progress(f"{spec.label}: E[½D²F] {ek} ({draws} shared draws)")
    for key in keys:
        progress(f"{spec.label}: {key}")
    res = factored_result(shard)
    shard.update(result=res, complete=True, partial=None)
    _save_shard(shard_path, shard)
    return res


def factored_result(shard: dict) -> dict:
    """The raw result of a :func:`run_model_factored` checkpoint from its ``partial`` part:
    complete when all planned trajectories are done; a stopped run's result covers the
    trajectories of its finished chunks (``n_planned`` says how many were planned: its
    trajectory count did not depend on the samples, so its CIs are those of a smaller
    fresh sample).

    Raises
    ------
    InputError
        No partial part with finished trajectories and the run's metadata.
    """
    part = shard.get("partial") or {}
    meta = part.get("meta")
    if not meta or not part.get("done"):
        raise InputError(f"checkpoint of {shard.get('label')!r} has no finished chunk to report")
    first_order = meta["first_order"]
    ests = part.get("estimates") or {}  # absent in checkpoints without the expectation
    res = {k: meta[k] for k in ("info", "param_names", "P", "quantized_weights", "weights_not_quantized")}
    res.update(
        n_scores=len(part["trajectories"][0]) - 1,
        settings=meta["settings"],
        configs_planned=meta["configs_planned"],
        trajectories=part["trajectories"],
        fp=part["fp"],
        configs={},
        seconds={
            "fp": part["seconds"]["fp"],
            **({f"E {ek}": e["seconds"] for ek, e in ests.items()}),
            "total_this_run": sum(part["seconds"].values()) + sum(e["seconds"] for e in ests.values()),
        },
        path=meta["path"],
        cpu_seconds=part["cpu_seconds"],
        n_planned=meta["n_planned"],
    )
    for key in meta["configs_planned"]:
        fam, b = key.split("/")[0], int(key.split("/")[1])
        nm, got = part["norms"][key], part["configs"][key]
        entry = {
            "family": fam,
            "bits": b,
            "rel_delta": nm["rel"],
            "rel_delta_widrow": nm["widrow"] / nm["theta"],
            "rel_delta_sr_expected": nm["sr_expected"] / nm["theta"] if "sr_expected" in nm else None,
            "fixed": got["fixed"],
            "first_order": got["first_order"] if first_order else None,
            "second_real": None,
            "pred": None,
            "pred_exact": None,
            "seconds": part["seconds"][key],
        }
        if meta.get("measure_self"):
            entry["self"] = got["self"]
            if got.get("traces"):
                entry["traces"] = got["traces"]
        est = ests.get(f"{fam}/{b}" if fam == "sr-channel" else f"{fam}/4")
        if meta.get("predict") and est is not None:  # as run_model: RTN's 4-bit estimate rescaled
            c = 1.0 if fam in ("sr-channel", "nf4") else variance_scale(fam, b) / variance_scale(fam, 4)
            entry["pred"] = [lam + c * d for lam, d in zip(part["fp"]["lam"], est["term"])]
        res["configs"][key] = entry
    res["lambda_base"] = float(np.mean(res["fp"]["lam"]))
    res["complete"] = part["done"] >= meta["n_planned"]
    return res


# ----------------------------------------------------------------------------- two-stage CI design

#: The second stage's margin on the pilot's sample size: n = ⌈margin · n_pilot · (hw/target)²⌉.
#: The pilot's half-width is itself an estimate (a 95% quantile of 90 trajectories rests on
#: its ~5 largest values), so n from the point estimate alone would miss the target about half
#: the time in the limiting cell; 1.5 in n is 1.22 in half-width. Fixed before the fresh sample.
CI_MARGIN = 1.5
#: The smallest second-stage sample (a 95% quantile needs a tail to bootstrap).
CI_MIN_N = 40


def required_n(n_pilot: int, hw_pilot: float, target: float) -> float:
    """The n at which a CI of relative half-width ``hw_pilot`` at ``n_pilot`` trajectories
    shrinks to ``target`` under 1/√n scaling: n_pilot · (hw_pilot/target)² (not rounded).

    Raises
    ------
    InputError
        A non-positive n_pilot or target, or a half-width that is negative or not finite.
    """
    if not (isinstance(n_pilot, int) and n_pilot > 0):
        raise InputError(f"n_pilot must be a positive integer, got {n_pilot!r}")
    if not (math.isfinite(target) and target > 0):
        raise InputError(f"target must be a positive finite number, got {target!r}")
    if not (math.isfinite(hw_pilot) and hw_pilot >= 0):
        raise InputError(f"half-width must be finite and >= 0, got {hw_pilot!r}")
    return n_pilot * (hw_pilot / target) ** 2


def ci_design(pilot: dict, *, source: str = "", margin: float = CI_MARGIN, stream: int = 1) -> dict:
    """The second stage of a two-stage fixed-width design, from a pilot report (the dict of
    a report.json written by :func:`run_study`).

    Stage 1 (the pilot) estimates each cell's fixed-data CI half-width hw at the target bit
    width; per model, n = max(:data:`CI_MIN_N`, ⌈margin · max over its cells of
    :func:`required_n`⌉) (one n per model: its schemes share the trajectories, paired with
    full precision). Stage 2 is a *fresh* sample of that size (``sample_stream`` ≥ 1:
    prompts and sampling seeds independent of the pilot's) and the reported CI is computed
    from it alone: n depends only on independent pilot data, so the CI is not biased by
    adaptive stopping. The pilot's trajectories are not reused; a cell whose stage-2
    half-width is above the target is reported as missing it.

    Raises
    ------
    InputError
        The pilot has no cell at its target bit width, or a bad margin / stream.
    """
    if not (math.isfinite(margin) and margin >= 1.0):
        raise InputError(f"margin must be >= 1, got {margin!r}")
    if not (isinstance(stream, int) and stream >= 1):
        raise InputError(f"the fresh sample's stream must be an integer >= 1, got {stream!r}")
    raw, summary = pilot["raw"], pilot["summary"]
    target, bits = raw.get("ci_target", 0.05), raw.get("ci_target_bits", 4)
    models = {}
    for label, ms in summary["models"].items():
        if "skipped" in ms:
            continue
        cells = {k: c for k, c in ms["configs"].items() if c["bits"] == bits}
        if not cells:
            continue
        n0 = int(ms["n_trajectories"])
        per = {
            k: {
                "rho_fixed_pilot": c["rho_fixed"],
                "halfwidth_pilot": c["halfwidth_fixed"],
                "n_for_target": required_n(n0, c["halfwidth_fixed"], target),
            }
            for k, c in cells.items()
        }
        worst = max(per, key=lambda k: per[k]["n_for_target"])
        n = max(CI_MIN_N, math.ceil(margin * per[worst]["n_for_target"]))
        models[label] = {"n_pilot": n0, "cells": per, "limiting_cell": worst, "n": n}
    if not models:
        raise InputError(f"the pilot {source or 'report'} has no cell at {bits} bits to size a second stage from")
    return {
        "rule": "n = max(min_n, ceil(margin * max_cells n_pilot * (halfwidth_pilot / target)^2)), "
        "fresh trajectories (sample_stream), CI from the fresh sample alone",
        "pilot": source,
        "pilot_profile": raw["profile"],
        "pilot_sample_stream": int(raw.get("sample_stream", 0)),
        "base_profile": (raw.get("design") or {}).get("base_profile", raw["profile"]),
        "pilot_seed": raw["seed"],
        "quantile": raw["quantile"],
        "target": target,
        "bits": bits,
        "margin": margin,
        "min_n": CI_MIN_N,
        "sample_stream": stream,
        "models": models,
    }


def ci_profile(
    pilot_dir: str,
    *,
    margin: float = CI_MARGIN,
    stream: int | None = None,
    first_order: bool = True,
    expectation: bool = False,
    base: Profile | None = None,
) -> Profile:
    """The next stage of the two-stage CI design (:func:`ci_design`) for the pilot in
    ``pilot_dir`` (its report.json): the pilot's models and its cells at the target bit
    width only, each model at its n, a fresh ``sample_stream`` (default: the pilot's + 1),
    named ``<base profile>-ci<bits>-s<stream>``. The pilot may itself be such a stage (a
    sizing stage: its n ≥ 300 half-widths are steadier than the first pilot's n = 90 ones);
    every stage's trajectories are fresh and its CIs are from it alone.

    A stage measures ρ_fixed (the target's quantity), not the self-generated ρ; the
    first-order prediction unless ``first_order`` is False; the expectation (its Monte Carlo
    estimates cost 16 score evaluations per trajectory for the four 4-bit schemes) only with
    ``expectation``. The design (with the pilot file's SHA-256) is in ``extra["design"]``.
    ``base``: the first pilot's profile when it is not a named one (tests); names must match.

    Raises
    ------
    InputError
        No report.json in ``pilot_dir``, a pilot that is not a :func:`run_study` report of a
        named profile (or of ``base``), or a stream not above the pilot's.
    """
    path = os.path.join(pilot_dir, "report.json")
    if not os.path.isfile(path):
        raise InputError(f"pilot {pilot_dir!r}: no report.json there")
    with open(path, "rb") as fh:
        blob = fh.read()
    try:
        pilot = json.loads(blob)
        raw = pilot["raw"]
        pname = (raw.get("design") or {}).get("base_profile", raw["profile"])
        pstream = int(raw.get("sample_stream", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"pilot {path!r} is not an inflation report: {exc}") from exc
    stream = pstream + 1 if stream is None else stream
    if not (isinstance(stream, int) and stream > pstream):
        raise InputError(f"the fresh sample's stream must be an integer above the pilot's ({pstream}), got {stream!r}")
    if base is None:
        if pname not in PROFILES:
            raise InputError(f"pilot {path!r} has profile {pname!r}; expected one of {PROFILES}")
        base = get_profile(pname)
    elif base.name != pname:
        raise InputError(f"pilot {path!r} has profile {pname!r}, not {base.name!r}")
    design = ci_design(pilot, source=path, margin=margin, stream=stream)
    design["pilot_sha256"] = hashlib.sha256(blob).hexdigest()
    design["measured"] = ["fixed"] + (["first_order"] if first_order else []) + (["expectation"] if expectation else [])
    by_label = {sp.label: sp for sp in base.models}
    specs = []
    for label, d in design["models"].items():
        sp = by_label.get(label) or (real_spec(label) if label in REAL_KINDS else None)
        if sp is None:
            raise InputError(f"pilot model {label!r} is not in profile {pname!r}")
        keep = tuple(kv for kv in sp.overrides if kv[0] not in ("n_trajectories", "configs"))
        ov = keep + (
            ("n_trajectories", d["n"]),
            ("configs", tuple(d["cells"])),
            ("measure_self", False),
            ("first_order", bool(first_order)),
        )
        specs.append(replace(sp, overrides=ov, predict=bool(expectation) and sp.predict))
    return replace(
        base,
        name=f"{pname}-ci{design['bits']}-s{stream}",
        models=tuple(specs),
        bits=(design["bits"],),
        sample_stream=stream,
        extra={"design": design},
    )


# ----------------------------------------------------------------------------- summary


def summarize(raw: dict) -> dict:
    """Every number of report.md from the raw per-trajectory samples of report.json."""
    q, n_boot, seed = raw["quantile"], raw["n_boot"], raw["seed"]
    target, tbits = raw.get("ci_target", 0.05), raw.get("ci_target_bits", 4)
    out = {"models": {}}
    cells = []
    for label, mr in raw["models"].items():
        if "skipped" in mr:
            out["models"][label] = {"skipped": mr["skipped"]}
            continue
        fp = mr["fp"]
        lam_fp = np.asarray(fp["lam"])
        base = float(np.mean(lam_fp))
        tau_fp = quantile(lam_fp / base, q)
        ms = {
            "lambda_base": base,
            "tau_fp": tau_fp,
            "n_trajectories": int(lam_fp.size),
            "gbar2_fp_median": float(np.median(fp["gbar2"])),
            "cov_fp_median": float(np.median(fp["cov"])),
            "gap_fp_median": float(np.median(fp["gap"])),
            "configs_missing": [k for k in mr.get("configs_planned", []) if k not in mr["configs"]],
            "configs": {},
        }
        for key, c in mr["configs"].items():
            s = {"family": c["family"], "bits": c["bits"], "rel_delta": c["rel_delta"]}
            s["rel_delta_widrow"] = c.get("rel_delta_widrow")
            s["rel_delta_sr_expected"] = c.get("rel_delta_sr_expected")
            for which in ("self", "fixed"):
                if which not in c:  # not measured (a stage of the two-stage CI design)
                    w = which
                    for name in (f"rho_{w}", f"rho_{w}_lo", f"rho_{w}_hi", f"halfwidth_{w}", f"tau_{w}"):
                        s[name] = None
                    for name in (f"gbar2_{w}_median", f"cov_{w}_median", f"mean_dominates_{w}"):
                        s[name] = None
                    continue
                rho, lo, hi = ratio_ci(c[which]["lam"], lam_fp, q, n_boot, _cfg_seed(seed, label, key, which))
                s[f"rho_{which}"], s[f"rho_{which}_lo"], s[f"rho_{which}_hi"] = rho, lo, hi
                s[f"halfwidth_{which}"] = half_width(rho, lo, hi)
                s[f"tau_{which}"] = quantile(np.asarray(c[which]["lam"]) / base, q)
                s[f"gbar2_{which}_median"] = float(np.median(c[which]["gbar2"]))
                s[f"cov_{which}_median"] = float(np.median(c[which]["cov"]))
                g2, cv = np.asarray(c[which]["gbar2"]), np.asarray(c[which]["cov"])
                s[f"mean_dominates_{which}"] = float(np.mean(g2 > cv))
            s["ci_target_missed"] = bool(c["bits"] == tbits and s["halfwidth_fixed"] > target)
            den = quantile(lam_fp, q)
            for p in PREDICTIONS:
                vals = c.get(p)
                if vals is None:
                    s[f"rho_{p}"] = s[f"err_{p}"] = None
                    continue
                s[f"rho_{p}"] = quantile(vals, q) / den
                s[f"err_{p}"] = s[f"rho_{p}"] / s["rho_fixed"] - 1.0
            # names kept for readers of the earlier report: the expectation prediction
            s["pred_rel_error"] = s["err_pred"]
            s["pred_log10_error"] = (
                None if s["rho_pred"] is None else math.log10(max(s["rho_pred"], 1e-300) / s["rho_fixed"])
            )
            ms["configs"][key] = s
            cells.append({"model": label, "key": key, **s})
        out["models"][label] = ms
    out["skill"] = skill_table(cells)
    pre = [c for c in cells if c["model"] in PRETRAINED_LABELS]
    if pre and len(pre) < len(cells):  # a report mixing pretrained and small models: each group alone too
        out["skill_by_group"] = {
            "pretrained": skill_table(pre),
            "small": skill_table([c for c in cells if c["model"] not in PRETRAINED_LABELS]),
        }
    out["ci"] = ci_table(cells, target, tbits)
    out["delta_ratio_sr_rtn"] = delta_ratios(out["models"])
    if raw.get("design"):
        out["design_check"] = design_check(raw["design"], out["models"])
    missing = [(lab, k) for lab, ms in out["models"].items() if "skipped" not in ms for k in ms["configs_missing"]]
    absent = [lab for lab in raw.get("models_planned", []) if lab not in raw["models"]]
    short = [  # a stopped factored run (:func:`factored_result`): fewer trajectories than planned
        f"{lab} trajectories: {ms['n_trajectories']} of {mr['n_planned']} (stopped)"
        for lab, mr in raw["models"].items()
        if "skipped" not in mr
        for ms in [out["models"][lab]]
        if mr.get("n_planned") and ms["n_trajectories"] < mr["n_planned"]
    ]
    out["complete"] = not missing and not absent and not short
    out["missing"] = {"models": absent, "configs": [f"{lab} {k}" for lab, k in missing] + short}
    return out


def design_check(design: dict, models: dict) -> dict:
    """Per model of a second stage's design: the n planned, the n run, and per cell the
    pilot's half-width, the fresh sample's and whether it meets the target (None: not run)."""
    out = {}
    for label, d in design["models"].items():
        ms = models.get(label)
        ran = ms is not None and "skipped" not in ms
        cells = {}
        for k, c in d["cells"].items():
            s = ms["configs"].get(k) if ran else None
            hw = None if s is None else s["halfwidth_fixed"]
            cells[k] = {
                "halfwidth_pilot": c["halfwidth_pilot"],
                "n_for_target_pilot": c["n_for_target"],
                "halfwidth": hw,
                "met": None if hw is None else bool(hw <= design["target"]),
                "n_for_target": None if hw is None else required_n(ms["n_trajectories"], hw, design["target"]),
            }
        out[label] = {
            "n_pilot": d["n_pilot"],
            "n_planned": d["n"],
            "n_run": ms["n_trajectories"] if ran else None,
            "limiting_cell": d["limiting_cell"],
            "cells": cells,
        }
    return out


def ci_table(cells: list[dict], target: float, tbits: int) -> dict:
    """Per bit width: the number of cells and the median and largest relative CI half-width
    of ρ_fixed and ρ_self; at ``tbits``, the fixed-data cells above ``target`` (flagged)."""
    out = {"target": target, "target_bits": tbits, "by_bits": {}}
    for b in sorted({c["bits"] for c in cells}, reverse=True):
        cs = [c for c in cells if c["bits"] == b]
        row = {"cells": len(cs)}
        for which in ("fixed", "self"):
            hw = [c[f"halfwidth_{which}"] for c in cs if c[f"halfwidth_{which}"] is not None]
            row[f"{which}_median"] = float(np.median(hw)) if hw else None
            row[f"{which}_max"] = float(np.max(hw)) if hw else None
            row[f"{which}_over_target"] = int(sum(h > target for h in hw)) if hw else None
        out["by_bits"][str(b)] = row
    out["missed"] = [f"{c['model']} {c['key']}" for c in cells if c["ci_target_missed"]]
    return out


def delta_ratios(models: dict) -> dict:
    """Measured ‖δ_SR‖/‖δ_RTN‖ (per channel) per model and bit width, with SR's predicted
    √E‖δ_SR‖² over the measured RTN ‖δ‖ (√2 when r is uniform and RTN's error is Widrow's)."""
    out = {}
    for label, ms in models.items():
        cs = ms.get("configs", {})
        for b in sorted({s["bits"] for s in cs.values()}, reverse=True):
            sr, rtn = cs.get(f"sr-channel/{b}"), cs.get(f"rtn-channel/{b}")
            if sr is None or rtn is None:
                continue
            out.setdefault(label, {})[str(b)] = {
                "measured": sr["rel_delta"] / rtn["rel_delta"],
                "sr_expected_over_rtn": sr["rel_delta_sr_expected"] / rtn["rel_delta"],
                "sr_measured_over_expected": sr["rel_delta"] / sr["rel_delta_sr_expected"],
                "rtn_measured_over_widrow": rtn["rel_delta"] / rtn["rel_delta_widrow"],
            }
    return out


def _f(x, d: int = ROUND) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{d}g}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2g}%"


def render_markdown(raw: dict, summary: dict) -> str:
    """report.md from the raw data and :func:`summarize`'s numbers."""
    status = "complete" if summary["complete"] else "**PARTIAL**"
    ns = {lab: ms["n_trajectories"] for lab, ms in summary["models"].items() if "skipped" not in ms}
    odd = {lab: k for lab, k in ns.items() if k != raw["n_trajectories"]}
    n_text = f"{raw['n_trajectories']}" + (
        " (" + ", ".join(f"{lab}: {k}" for lab, k in odd.items()) + ")" if odd else ""
    )
    L = [
        f"# Quantization inflation of the σ threshold — profile `{raw['profile']}`",
        "",
        f"Run status: {status}."
        + (
            ""
            if summary["complete"]
            else " Missing: "
            + "; ".join(summary["missing"]["models"] + summary["missing"]["configs"])
            + " (not computed; every number below is from what ran)."
        ),
        "",
        f"q = {raw['quantile']}, trajectories per model n = {n_text}, CI = paired percentile "
        f"bootstrap over trajectories, {raw['n_boot']} resamples, 95%; seed = {raw['seed']}, device = "
        f"{raw['device']}, Monte Carlo draws for the expectation = {raw['mc_draws']} per trajectory (unless the "
        f"model's row says otherwise), central-difference step ε = {raw['fd_eps']}.",
        "",
        "ρ = τ_q(quantized)/τ_q(full precision). *self*: the quantized model scores its own generations; "
        "*fixed*: it scores the full-precision trajectories (what the predictions predict). Predictions of "
        "ρ_fixed: **first** = first order in the realised δ, λ1 + vᵀDF[δ]v; **E** = expectation over δ, "
        "λ1 + vᵀE[½D²F]v with Σ = r(1−r)s² per weight for SR (exact) and Widrow s²/12 for RTN/NF4; "
        "**E exact** = λ_max(F + E[½D²F]); **2nd real** = λ_max(F + DF[δ] + ½D²F[δ,δ]) (last two where G fits "
        "in memory). err = ρ_pred/ρ_fixed − 1. hw = CI half-width (hi − lo)/(2ρ); ⚑ = fixed-data half-width "
        f"above {_pct(summary['ci']['target'])} at {summary['ci']['target_bits']} bits.",
        "",
        *_design_lines(raw, summary),
        "## Skill against the constant ρ = 1 (fixed data, per bit width)",
        "",
        "Median |err| over the model × scheme cells (constant: |1/ρ_fixed − 1| on the same cells), their ratio "
        "(< 1: the prediction beats ρ = 1), and coverage = how many fixed-data 95% CIs contain the prediction "
        "(and contain 1).",
        "",
        "| bits | prediction | cells | median abs err | constant's | ratio | inside CI | 1 inside CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    L += _skill_rows(summary["skill"])
    groups = summary.get("skill_by_group")
    if groups:
        for name, title in (("pretrained", "the pretrained LMs"), ("small", "the small trained models")):
            L += [
                "",
                f"### Skill on {title} alone ({', '.join(sorted({c for c in _group_models(raw, name)}))})",
                "",
                "| bits | prediction | cells | median abs err | constant's | ratio | inside CI | 1 inside CI |",
                "|---|---|---|---|---|---|---|---|",
                *_skill_rows(groups[name]),
            ]
    ci = summary["ci"]
    L += [
        "",
        "## CI half-widths",
        "",
        f"Target: fixed-data half-width ≤ {_pct(ci['target'])} at {ci['target_bits']} bits with n = "
        f"{n_text} trajectories per model. "
        + (
            "Met in every cell."
            if not ci["missed"]
            else f"**Missed in {len(ci['missed'])} cell(s):** " + ", ".join(ci["missed"]) + "."
        ),
        "",
        "| bits | cells | fixed: median hw | fixed: max hw | fixed: cells over target | self: median hw "
        "| self: max hw | self: cells over target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b, r in ci["by_bits"].items():
        L.append(
            f"| {b} | {r['cells']} | {_pct(r['fixed_median'])} | {_pct(r['fixed_max'])} | {r['fixed_over_target']} "
            f"| {_pct(r['self_median'])} | {_pct(r['self_max'])} | {_f(r['self_over_target'])} |"
        )
    if summary["delta_ratio_sr_rtn"]:
        L += [
            "",
            "## Stochastic rounding's error size",
            "",
            "‖δ_SR‖/‖δ_RTN‖ measured (per channel), SR's exact √E‖δ_SR‖² = √Σ r(1−r)s² over the measured RTN "
            "‖δ‖, the measured SR ‖δ‖ over that expectation, and the measured RTN ‖δ‖ over Widrow's √Σ s²/12.",
            "",
            "| model | bits | SR/RTN measured | SR expected/RTN | SR measured/expected | RTN measured/Widrow |",
            "|---|---|---|---|---|---|",
        ]
        for label, by in summary["delta_ratio_sr_rtn"].items():
            for b, r in by.items():
                L.append(
                    f"| {label} | {b} | {_f(r['measured'])} | {_f(r['sr_expected_over_rtn'])} "
                    f"| {_f(r['sr_measured_over_expected'])} | {_f(r['rtn_measured_over_widrow'])} |"
                )
    L.append("")
    for label, ms in summary["models"].items():
        L.append(f"## {label}")
        L.append("")
        if "skipped" in ms:
            L += [f"Skipped: {ms['skipped']}", ""]
            continue
        mr = raw["models"][label]
        st = mr.get("settings", {})
        L.append(
            f"n = {ms['n_trajectories']}, P = {mr.get('P')} ({', '.join(mr.get('param_names', []))[:80]}), "
            f"{mr.get('n_scores')} scores per trajectory, prompt {st.get('prompt_len')} + {st.get('gen_len')} "
            f"generated, {st.get('mc_draws')} draws; λ_base = {_f(ms['lambda_base'])}, τ_q(FP) = {_f(ms['tau_fp'])}, "
            f"median ‖ḡ‖²(FP) = {_f(ms['gbar2_fp_median'])}, median λ_cov(FP) = {_f(ms['cov_fp_median'])}, "
            f"median relative gap (λ1 − λ2)/λ1 = {_f(ms['gap_fp_median'], 3)}"
            + (f"; **not computed: {', '.join(ms['configs_missing'])}**" if ms["configs_missing"] else "")
        )
        L.append("")
        L.append(
            "| scheme | bits | ‖δ‖/‖θ‖ | ρ self [95% CI] | ρ fixed [95% CI] | hw fixed | ρ first | err first "
            "| ρ E | err E | ρ E exact | ρ 2nd real | ‖ḡ‖² | λ_cov | ḡ dom. |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in ms["configs"].values():
            flag = " ⚑" if s["ci_target_missed"] else ""
            L.append(
                f"| {s['family']} | {s['bits']} | {_f(s['rel_delta'], 3)} "
                f"| {_f(s['rho_self'])} [{_f(s['rho_self_lo'], 3)}, {_f(s['rho_self_hi'], 3)}] "
                f"| {_f(s['rho_fixed'])} [{_f(s['rho_fixed_lo'], 3)}, {_f(s['rho_fixed_hi'], 3)}] "
                f"| {_pct(s['halfwidth_fixed'])}{flag} "
                f"| {_f(s['rho_first_order'])} | {_f(s['err_first_order'], 3)} "
                f"| {_f(s['rho_pred'])} | {_f(s['err_pred'], 3)} "
                f"| {_f(s['rho_pred_exact'])} | {_f(s['rho_second_real'])} "
                f"| {_f(s['gbar2_fixed_median'])} | {_f(s['cov_fixed_median'])} "
                f"| {_f(s['mean_dominates_fixed'], 2)} |"
            )
        L.append("")
    return "\n".join(L) + "\n"


def _skill_rows(skill: dict) -> list[str]:
    """The rows of a skill table (:func:`skill_table`) in report.md."""
    L = []
    for b, row in skill.items():
        for p in PREDICTIONS:
            r = row.get(p)
            if r is None:
                continue
            L.append(
                f"| {b} | {PREDICTION_NAMES[p]} | {r['cells']} | {_pct(r['median_abs_error'])} "
                f"| {_pct(r['constant_median_abs_error'])} | {_f(r['ratio_to_constant'], 3)} "
                f"| {r['coverage'][0]}/{r['coverage'][1]} | {r['constant_coverage'][0]}/{r['constant_coverage'][1]} |"
            )
    return L


def _group_models(raw: dict, group: str) -> list[str]:
    labels = [k for k, v in raw["models"].items() if "skipped" not in v]
    return [k for k in labels if (k in PRETRAINED_LABELS) == (group == "pretrained")]


def _design_lines(raw: dict, summary: dict) -> list[str]:
    """report.md's section on a second stage's design (nothing for other reports)."""
    d, chk = raw.get("design"), summary.get("design_check")
    if not d or chk is None:
        return []
    cells = [(lab, k, c) for lab, m in chk.items() for k, c in m["cells"].items()]
    ran = [c for _, _, c in cells if c["met"] is not None]
    met = sum(c["met"] for c in ran)
    L = [
        "## Two-stage design",
        "",
        f"Pilot: `{d['pilot']}` (profile {d['pilot_profile']}, sample stream {d.get('pilot_sample_stream', 0)}, "
        f"seed {d['pilot_seed']}, SHA-256 {d.get('pilot_sha256', '—')[:16]}…). Per model, n = max({d['min_n']}, "
        f"⌈{d['margin']} · n_pilot · (hw_pilot/{_pct(d['target'])})²⌉) over its {d['bits']}-bit cells (the largest "
        f"cell decides; 1/√n scaling, margin {d['margin']} fixed before this stage ran). This report: a fresh "
        f"sample of that size, sample stream {d['sample_stream']} (prompts and sampling seeds independent of every "
        "earlier stream; the same quantized models, SR draws included); every CI below is from this sample alone, "
        "no earlier trajectory is reused, so the CI is not biased by adaptive stopping. Measured: "
        f"{', '.join(d.get('measured', ['fixed']))} (not the self-generated ρ).",
        "",
        f"**Target met in {met} of {len(ran)} cells run**"
        + (f" ({len(cells) - len(ran)} cells of models not run)." if len(ran) < len(cells) else "."),
        "",
        "| model | n pilot | limiting cell | n planned | n run | cell | hw pilot | n for 5% (pilot) | hw stage 2 "
        "| met | n for target (stage 2) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lab, m in chk.items():
        for i, (k, c) in enumerate(m["cells"].items()):
            head = (
                f"| {lab} | {m['n_pilot']} | {m['limiting_cell']} | {m['n_planned']} | "
                f"{'not run' if m['n_run'] is None else m['n_run']} "
                if i == 0
                else "| | | | | "
            )
            verdict = "—" if c["met"] is None else ("yes" if c["met"] else "**no**")
            L.append(
                f"{head}| {k} | {_pct(c['halfwidth_pilot'])} | {math.ceil(c['n_for_target_pilot'])} "
                f"| {_pct(c['halfwidth'])} | {verdict} "
                f"| {'—' if c['n_for_target'] is None else math.ceil(c['n_for_target'])} |"
            )
    L.append("")
    return L


def recompute_from_json(path: str) -> str:
    """Recompute report.md's text from report.json's raw samples (bootstrap re-run with the
    stored seeds); equal to the written report.md."""
    with open(path) as fh:
        rep = json.load(fh)
    return render_markdown(rep["raw"], summarize(rep["raw"]))


# ----------------------------------------------------------------------------- plots


def _save_figure(plt, fig, out: str, name: str) -> str:
    """Lay out, write ``out/name`` at 110 dpi, close the figure; return the path."""
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _grid(plt, k: int):
    cols = max(1, min(4, k))
    rows = max(1, math.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    flat = list(axes.reshape(-1))
    for ax in flat[k:]:
        ax.set_visible(False)
    return fig, flat


def _plots(raw: dict, summary: dict, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    labels = [k for k, v in raw["models"].items() if "skipped" not in v]
    # 1. σ traces, FP vs 4-bit RTN per channel
    fig, axes = _grid(plt, len(labels))
    for ax, label in zip(axes, labels):
        mr = raw["models"][label]
        base = summary["models"][label]["lambda_base"]
        for i, tr in enumerate(mr["fp"]["traces"]):
            tr = np.asarray(tr) / base
            ax.plot(range(1, len(tr) + 1), tr, color="C0", alpha=0.7, label="full precision" if i == 0 else None)
        k4 = next((k for k, c in mr["configs"].items() if c["family"] == "rtn-channel" and c["bits"] == 4), None)
        if k4 is not None:
            for i, tr in enumerate(mr["configs"][k4].get("traces", [])):
                tr = np.asarray(tr) / base
                ax.plot(
                    range(1, len(tr) + 1),
                    tr,
                    color="C3",
                    alpha=0.7,
                    label="4-bit RTN/channel (self)" if i == 0 else None,
                )
        ax.set_yscale("log")
        ax.set_xlabel("t (scores in F_t)")
        ax.set_ylabel("σ_t")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    files.append(_save_figure(plt, fig, out, "sigma_traces.png"))
    # 2. ρ vs bits per scheme
    fig, axes = _grid(plt, len(labels))
    for ax, label in zip(axes, labels):
        cs = summary["models"][label]["configs"]
        for j, fam in enumerate(raw["families"]):
            which = "self" if all(s["rho_self"] is not None for s in cs.values()) else "fixed"
            pts = sorted(
                (s["bits"], s[f"rho_{which}"], s[f"rho_{which}_lo"], s[f"rho_{which}_hi"])
                for s in cs.values()
                if s["family"] == fam
            )
            if not pts:
                continue
            b, r, lo, hi = map(np.asarray, zip(*pts))
            ax.errorbar(b, r, yerr=[r - lo, hi - r], marker="o", capsize=3, color=f"C{j}", label=fam)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("bits")
        ax.set_ylabel("ρ (self)" if all(s["rho_self"] is not None for s in cs.values()) else "ρ (fixed)")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    files.append(_save_figure(plt, fig, out, "rho_vs_bits.png"))
    # 3. predicted vs measured (fixed): first order (realised δ) and expectation
    fig, axes = plt.subplots(1, 2, figsize=(9.2, 4.2), squeeze=False)
    for ax, p in zip(axes[0], ("first_order", "pred")):
        allv = []
        for j, label in enumerate(labels):
            cs = summary["models"][label]["configs"]
            xs = [s["rho_fixed"] for s in cs.values() if s.get(f"rho_{p}") is not None]
            ys = [s[f"rho_{p}"] for s in cs.values() if s.get(f"rho_{p}") is not None]
            if xs:
                ax.scatter(xs, ys, s=14, color=f"C{j % 10}", label=label)
                allv += xs + ys
        if allv:
            lo, hi = max(min(allv), 1e-6) / 1.2, max(allv) * 1.2
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("measured ρ (fixed trajectories)")
        ax.set_ylabel("predicted ρ")
        ax.set_title(PREDICTION_NAMES[p], fontsize=8)
        if allv:  # a stage without this prediction has nothing to label
            ax.legend(fontsize=6)
    files.append(_save_figure(plt, fig, out, "rho_pred_vs_measured.png"))
    return files


# ----------------------------------------------------------------------------- study


def _n_units(prof: Profile, specs) -> int:
    total = 0
    for spec in specs:
        keys = config_keys(spec, prof)
        total += 1 + len(keys) + (len(estimate_keys(keys)) if spec.predict else 0)
    return total


def _raw_header(prof: Profile, seed: int, dev) -> dict:
    return {
        "profile": prof.name,
        "quantile": prof.quantile,
        "n_boot": prof.n_boot,
        "seed": seed,
        "n_trajectories": prof.n_trajectories,
        "mc_draws": prof.mc_draws,
        "fd_eps": prof.fd_eps,
        "bits": list(prof.bits),
        "families": list(prof.families),
        "ci_target": prof.ci_target,
        "ci_target_bits": prof.ci_target_bits,
        "device": str(dev),
        "models_planned": [s.label for s in prof.models],
        "models": {},
        # a second stage (:func:`ci_profile`) says so; other reports keep their keys
        **({"sample_stream": prof.sample_stream} if prof.sample_stream else {}),
        **({"design": prof.extra["design"]} if prof.extra.get("design") else {}),
    }


def run_study(
    profile: str | Profile,
    out: str,
    *,
    device="cpu",
    seed: int = 0,
    progress: bool = True,
    resume: bool = False,
    models: list[str] | None = None,
    report_only: bool = False,
    threads: int | None = 1,
) -> dict:
    """Run the study, write report.json, report.md and the PNGs to ``out``; return the report.

    Each model's raw samples are checkpointed in ``out/shards/<label>.json``. ``resume``:
    continue from shards with the same settings. ``models``: run only these labels (the
    report then covers every model with a shard and says which are missing).
    ``report_only``: compute nothing, build the report from the shards present. A report
    with a model or scheme missing says ``complete: false`` and lists what is missing.
    ``threads``: torch threads during the run (restored afterwards; None = unchanged).
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    design = prof.extra.get("design")
    if design and seed != design["pilot_seed"]:
        raise InputError(
            f"a second stage runs with its pilot's seed ({design['pilot_seed']}: the same quantized models, "
            f"SR draws included); got --seed {seed} (its trajectories are fresh by sample_stream)"
        )
    labels = [s.label for s in prof.models]
    # pretrained models of REAL_KINDS named in ``models`` join the profile; when only such
    # models are named, the report covers just them
    extra = [real_spec(m) for m in dict.fromkeys(models or ()) if m not in labels and m in REAL_KINDS]
    for sp in extra:  # named explicitly: a missing package is an error before any work
        _require_real(sp.kind)
    if extra:
        keep = () if all(m in REAL_KINDS and m not in labels for m in models) else prof.models
        prof = replace(prof, models=tuple(keep) + tuple(extra))
        labels = [s.label for s in prof.models]
    if models:
        bad = [m for m in models if m not in labels]
        if bad:
            raise InputError(f"unknown model {bad[0]!r} in profile {prof.name!r}; known: {', '.join(labels)}")
    dev = resolve_device(device)
    os.makedirs(out, exist_ok=True)
    shard_dir = os.path.join(out, "shards")
    os.makedirs(shard_dir, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    raw = _raw_header(prof, seed, dev)
    todo = [] if report_only else [s for s in prof.models if not models or s.label in models]
    bar = Progress(total=_n_units(prof, todo), desc=f"inflation[{prof.name}]", stream=None if progress else _Null())
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    timings = {}
    try:
        for spec in todo:
            path = os.path.join(shard_dir, f"{spec.label}.json")
            try:
                ld = load_spec(spec, prof, dev, seed)
            except (FimTheoryError, ImportError, OSError) as exc:
                if spec.kind != "smollm2" and spec.kind not in REAL_KINDS:
                    raise
                _save_shard(path, {"label": spec.label, "skipped": f"{type(exc).__name__}: {exc}", "complete": True})
                bar.note(f"{spec.label}: skipped ({exc})")
                continue
            m0 = time.perf_counter()
            run_model(ld, prof, seed, bar, shard_path=path, resume=resume)
            timings[spec.label] = time.perf_counter() - m0
            del ld
    finally:
        bar.close()
        torch.set_num_threads(old_threads)
    # the report: every model with a shard of the current settings
    for spec in prof.models:
        path = os.path.join(shard_dir, f"{spec.label}.json")
        if not os.path.exists(path):
            continue
        with open(path) as fh:
            sh = json.load(fh)
        if "skipped" in sh:
            raw["models"][spec.label] = {"skipped": sh["skipped"]}
            continue
        if sh.get("fingerprint") != fingerprint(spec, prof, seed):
            continue
        if sh.get("result") is None and ((sh.get("partial") or {}).get("meta") and sh["partial"].get("done")):
            raw["models"][spec.label] = factored_result(sh)  # a stopped factored run: its finished chunks
            continue
        if sh.get("result") is None:
            continue
        raw["models"][spec.label] = sh["result"]
    wall = time.perf_counter() - t0
    summary = summarize(raw)
    md = render_markdown(raw, summary)
    report = {
        "raw": raw,
        "summary": summary,
        "complete": summary["complete"],
        "wall_seconds": wall,
        "cpu_seconds": time.process_time() - c0,
        "model_seconds_this_run": timings,
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": int(threads) if threads else old_threads,
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average": _load_average(),
        },
        "profile_settings": {k: v for k, v in asdict(prof).items() if k != "models"},
    }
    with open(os.path.join(out, "report.json"), "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write(md)
    report["plots"] = _plots(raw, summary, out) if summary["models"] else []
    return report


def _load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


class _Null:
    def write(self, _s):
        return 0

    def flush(self):
        return None


def inflation_command(args) -> int:
    """Entry point of ``fimtheory inflation`` (args: profile, out, device, seed, resume,
    model, report_only, ci_pilot: a pilot directory whose report sizes a fresh second-stage
    sample, :func:`ci_profile`)."""
    profile = getattr(args, "profile", "quick") or "quick"
    if profile not in ("quick", "paper"):
        raise InputError(f"unknown profile {profile!r}; expected 'quick' or 'paper'")
    pilot = getattr(args, "ci_pilot", None)
    if pilot:  # the second stage of the two-stage CI design, sized from the pilot's report
        profile = ci_profile(
            pilot,
            margin=float(getattr(args, "ci_margin", None) or CI_MARGIN),
            stream=getattr(args, "ci_stream", None),
            first_order=bool(getattr(args, "ci_first_order", True)),
        )
    name = profile.name if isinstance(profile, Profile) else profile
    out = getattr(args, "out", None) or os.path.join("results", f"inflation-{name}")
    seed = getattr(args, "seed", 0)
    seed = 0 if seed is None else seed
    rep = run_study(
        profile,
        out,
        device=getattr(args, "device", "cpu") or "cpu",
        seed=int(seed),
        resume=bool(getattr(args, "resume", False)),
        models=getattr(args, "model", None),
        report_only=bool(getattr(args, "report_only", False)),
    )
    state = "complete" if rep["complete"] else "PARTIAL (see report.md: missing models/schemes)"
    print(
        f"inflation: wrote {out}/report.json, report.md and {len(rep['plots'])} plots in "
        f"{rep['wall_seconds']:.0f} s; {state}"
    )
    return 0
