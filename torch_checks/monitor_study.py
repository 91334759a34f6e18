"""The inflation study (docs/theory.md §7): how much does weight quantization inflate the
calibration threshold τ_q of the monitor σ = λ_max(F)/λ_base, and does the second-order
prediction of §3(d) account for it?

For each model of a profile:

1. **Trajectories.** LMs: prompts of ``prompt_len`` bytes drawn (seeded) from the held-out
   calibration corpus, continued by ``gen_len`` bytes sampled from the model with a seeded
   :class:`torch.Generator` (one seed per trajectory, the same for every model variant);
   all T = prompt_len + gen_len − 1 positions are scored. Digits MLP: a trajectory is a batch
   of ``batch`` held-out inputs (seeded draw) with labels sampled from the model.
2. **Full precision.** Per trajectory: Λ = λ_max(F), F = GᵀG/n of the per-token scores of θ
   (the model's default parameter subset), ‖ḡ‖² (mean-score part, the rank-one piece ḡḡᵀ)
   and λ_max(F − ḡḡᵀ) (covariance part). λ_base = mean Λ; τ_q = q-quantile of Λ/λ_base.
3. **Quantized.** Every ``nn.Linear`` / ``nn.Embedding`` weight quantized by each scheme ×
   bit width (RTN per channel, RTN group-wise, SR per channel, NF4 at 4 bits; the group
   size is the largest divisor of the row length ≤ the nominal one). Two measurements:
   *self* — the quantized model scores trajectories it generated itself (same prompts and
   sampling seeds: the deployed situation); *fixed* — it scores the full-precision
   trajectories (same data; the object of the §3(d) prediction).
   ρ = τ_q(quantized) / τ_q(full precision) (λ_base cancels), with paired percentile
   bootstrap CIs over trajectories.
4. **Second-order prediction** (§3(d)): E[F(θ+δ)] ≈ F + E[½D²F[δ,δ]] for zero-mean δ with
   Widrow covariance Σ = diag(s²/12), s = the scheme's step sizes on the full-precision
   weights (E[DF[δ]] = 0 exactly for zero-mean δ). No closed form exists for these networks,
   so E[½D²F] = (1/n) Σ_i E[h_i h_iᵀ + ½(g_i t_iᵀ + t_i g_iᵀ)] is estimated by Monte Carlo over
   ``mc_draws`` Widrow draws δ (uniform on [−s/2, s/2], seeded), with h_i = ∇g_i·δ and
   t_i = D²g_i[δ,δ] from central differences of the scores in float64 at ε = ``fd_eps``
   (G(θ ± εδ)); see the note below on why not torch.func's jvp-of-jvp. E[½D²F] is linear in
   Σ and s ∝ 1/q_max at a fixed grid, so one estimate at 4 bits serves every bit width of a
   family (scaled by (q_max(4)/q_max(b))²); SR shares the per-channel RTN steps and so the
   RTN prediction. Predicted Λ = λ_max(F + E[½D²F]) per trajectory (exact eigh on the span of
   the rows of G, H, T), predicted ρ = τ_q(predicted Λ)/τ_q(Λ).

Note on derivatives: on the byte LM, torch.func's forward-over-forward (jvp of jvp) gave
second directional derivatives that disagree with converged float64 central differences
(by ~2% for D²G and ~45% for D²log p, independent of the difference step between 1e-1
and 1e-3), while first derivatives agreed to 1e-5; we therefore use central differences.
Root cause, isolated afterwards: forward-over-forward AD through ``layer_norm`` in torch 2.13
(CPU) is wrong, while forward-over-reverse and reverse-over-reverse agree with differences
(``python -m torch_checks.autodiff_note``; tests/test_torch_autodiff_routes.py).

Output (:func:`inflation_command`): ``report.json`` (every number and the raw per-trajectory
samples), ``report.md`` (tables, recomputable from the JSON by :func:`recompute_from_json`),
PNG plots, and a tqdm progress bar on stderr.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from fimtheory.errors import FimTheoryError, InputError
from fimtheory.quantize import QuantScheme

from . import data as D
from . import models as M
from .device import resolve_device
from .monitor import sigma_trace
from .quantizers import MODULE_KINDS, quantize_tensor, step_sizes_tensor
from .scores import _logits, per_sample_scores, per_token_scores

PROFILES = ("quick", "paper", "test")
SCHEME_FAMILIES = ("rtn-channel", "rtn-group", "sr-channel", "nf4")
ROUND = 4  # significant digits in report.md


# ----------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class ModelSpec:
    """One model of a profile: ``kind`` in {"byte-lm", "mlp-digits", "smollm2"}."""

    label: str
    kind: str
    config: object = None
    predict: bool = True


@dataclass(frozen=True)
class Profile:
    """Sizes of a study run."""

    name: str
    models: tuple[ModelSpec, ...]
    n_trajectories: int
    prompt_len: int = 8
    gen_len: int = 24
    batch: int = 32
    bits: tuple[int, ...] = (8, 4, 3, 2)
    families: tuple[str, ...] = SCHEME_FAMILIES
    group_size: int = 32
    nf4_block: int = 64
    quantile: float = 0.9
    n_boot: int = 2000
    mc_draws: int = 4
    fd_eps: float = 1e-2
    n_traces: int = 6
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


def get_profile(name: str) -> Profile:
    """The named profile.

    * ``"paper"``: 12 models × 90 trajectories (= 1,080 per variant): byte LMs of 3 sizes ×
      3 seeds, digits MLPs with 32 and 64 hidden units, and SmolLM2-135M (when the ``[lm]``
      extra is installed; otherwise a third MLP, seed 1, takes its place).
    * ``"quick"``: 3 models × 16 trajectories (2 byte LMs, 1 MLP); a few minutes on 2 CPU
      cores (measured: see docs/inflation.md).
    * ``"test"``: 1 tiny byte LM (40 training steps) × 6 short trajectories, 2 families.

    Raises
    ------
    fimtheory.errors.InputError
        Unknown name.
    """
    if name == "paper":
        models = [_byte(s, seed) for s in ("d32", "d48", "d64") for seed in (0, 1, 2)]
        models += [_mlp(32, 0), _mlp(64, 0)]
        models.append(ModelSpec("smollm2", "smollm2", None, predict=False))
        return Profile("paper", tuple(models), n_trajectories=90, quantile=0.95, mc_draws=8)
    if name == "quick":
        return Profile(
            "quick",
            (_byte("d32", 0), _byte("d48", 1), _mlp(64, 0)),
            n_trajectories=16,
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
    types = tuple(MODULE_KINDS.values())
    seen = set()
    for name, mod in module.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(mod, types) and isinstance(w, torch.Tensor) and id(w) not in seen:
            seen.add(id(w))
            yield (f"{name}.weight" if name else "weight"), w


def quantize_copy(module: nn.Module, family: str, bits: int, prof: Profile, seed: int) -> tuple[nn.Module, float]:
    """A quantized deep copy of ``module`` and ‖δ‖/‖θ‖ over the quantized weights."""
    q = copy.deepcopy(module)
    gen = None
    dsq, wsq = 0.0, 0.0
    for _name, w in _weights(q):
        if gen is None:
            gen = torch.Generator(device=w.device).manual_seed(int(seed))
        sch = scheme_for(family, bits, w.shape[-1], prof)
        new = quantize_tensor(w.detach(), sch, generator=gen)
        with torch.no_grad():
            dsq += float(((new.double() - w.double()) ** 2).sum())
            wsq += float((w.double() ** 2).sum())
            w.copy_(new)
    return q, math.sqrt(dsq / max(wsq, 1e-300))


def widrow_steps(module: nn.Module, family: str, prof: Profile) -> dict[str, torch.Tensor]:
    """Step sizes s of ``family`` at its reference width (4 bits) on every quantized weight."""
    out = {}
    for name, w in _weights(module):
        out[name] = step_sizes_tensor(w.detach(), scheme_for(family, 4, w.shape[-1], prof))
    return out


def variance_scale(family: str, bits: int) -> float:
    """(s_b / s_4)² for the family's grid (RTN/SR symmetric: q_max = 2^{b−1} − 1)."""
    if family == "nf4":
        return 1.0
    return ((2**3 - 1) / (2 ** (bits - 1) - 1)) ** 2


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


def load_spec(spec: ModelSpec, prof: Profile, dev: torch.device, seed: int) -> Loaded:
    """Load (training and caching if needed) the model of ``spec`` and draw its prompts."""
    n = prof.n_trajectories
    if spec.kind == "byte-lm":
        model, info = M.load_byte_lm(spec.config, device="cpu")
        model = model.double().to(dev).eval()
        prompts = D.calibration_contexts(
            n, prof.prompt_len, corpus=spec.config.corpus, seed=seed, held_out_fraction=spec.config.held_out_fraction
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
        bundle = M.load_model("smollm2", device=dev)
        calib = torch.as_tensor(bundle.calibration)
        g = torch.Generator().manual_seed(seed)
        rows = torch.randint(0, calib.shape[0], (n,), generator=g)
        return Loaded(
            spec,
            bundle.module.eval(),
            tuple(bundle.param_names),
            "lm",
            calib[rows, : prof.prompt_len].cpu(),
            None,
            dict(bundle.info),
        )
    raise InputError(f"unknown model kind {spec.kind!r}")


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
    s = seed * 100_003 + i
    if ld.kind == "lm":
        return generate(module, ld.prompts[i], prof.gen_len, s, ld.max_context)
    X = ld.prompts[i]
    return X, sample_labels(module, X, s)


def scores_of(ld: Loaded, module: nn.Module, traj) -> torch.Tensor:
    """G (n × P, float64) of a trajectory under ``module``."""
    if ld.kind == "lm":
        t = traj.to(next(module.parameters()).device)
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


# ----------------------------------------------------------------------------- prediction


def second_order_terms(
    ld: Loaded, traj, steps: dict[str, torch.Tensor], draws: int, eps: float, seed: int
) -> tuple[torch.Tensor, list, list]:
    """G, and per Widrow draw δ_j the pair (H_j, T_j) = (∇G·δ_j, D²G[δ_j, δ_j]) by float64
    central differences at ±ε δ_j (every quantized weight perturbed)."""
    base = ld.module
    G0 = scores_of(ld, base, traj)
    gen = torch.Generator().manual_seed(int(seed))
    params = dict(base.named_parameters())
    Hs, Ts = [], []
    for _ in range(draws):
        delta = {
            k: ((torch.rand(s.shape, generator=gen, dtype=torch.float64) - 0.5) * s.cpu()).to(s.device)
            for k, s in steps.items()
        }
        outs = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for k, d in delta.items():
                    params[k].add_((sign * eps) * d.to(params[k].dtype))
            outs.append(scores_of(ld, base, traj))
            with torch.no_grad():
                for k, d in delta.items():
                    params[k].sub_((sign * eps) * d.to(params[k].dtype))
        Gp, Gm = outs
        Hs.append((Gp - Gm) / (2 * eps))
        Ts.append((Gp - 2 * G0 + Gm) / eps**2)
    return G0, Hs, Ts


def predicted_lambdas(G: torch.Tensor, Hs: list, Ts: list, scales: list[float]) -> list[float]:
    """λ_max(F + c·D) for each c in ``scales``, D = mean_j (1/n) Σ_i (h h ᵀ + ½(g tᵀ + t gᵀ)).

    Exact symmetric eigh on the span of the rows of [G; H_j; T_j] (F and D are never formed
    in R^{P×P})."""
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
    for c in scales:
        A = F + c * Dm
        out.append(float(torch.linalg.eigvalsh(0.5 * (A + A.T))[-1]))
    return out


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


def _cfg_seed(seed: int, *parts) -> int:
    h = 0
    for p in (seed, *parts):
        for ch in str(p):
            h = (h * 131 + ord(ch)) % 2_147_483_647
    return h


def summarize(raw: dict) -> dict:
    """Every number of report.md from the raw per-trajectory samples of report.json."""
    q, n_boot, seed = raw["quantile"], raw["n_boot"], raw["seed"]
    out = {"models": {}}
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
            "gbar2_fp_median": float(np.median(fp["gbar2"])),
            "cov_fp_median": float(np.median(fp["cov"])),
            "configs": {},
        }
        for key, c in mr["configs"].items():
            s = {"family": c["family"], "bits": c["bits"], "rel_delta": c["rel_delta"]}
            for which in ("self", "fixed"):
                rho, lo, hi = ratio_ci(c[which]["lam"], lam_fp, q, n_boot, _cfg_seed(seed, label, key, which))
                s[f"rho_{which}"], s[f"rho_{which}_lo"], s[f"rho_{which}_hi"] = rho, lo, hi
                s[f"tau_{which}"] = quantile(np.asarray(c[which]["lam"]) / base, q)
                s[f"gbar2_{which}_median"] = float(np.median(c[which]["gbar2"]))
                s[f"cov_{which}_median"] = float(np.median(c[which]["cov"]))
                g2, cv = np.asarray(c[which]["gbar2"]), np.asarray(c[which]["cov"])
                s[f"mean_dominates_{which}"] = float(np.mean(g2 > cv))
            if c.get("pred") is not None:
                rp = quantile(c["pred"], q) / quantile(lam_fp, q)
                s["rho_pred"] = rp
                s["pred_rel_error"] = rp / s["rho_fixed"] - 1.0
                s["pred_log10_error"] = math.log10(max(rp, 1e-300) / s["rho_fixed"])
            else:
                s["rho_pred"] = s["pred_rel_error"] = s["pred_log10_error"] = None
            ms["configs"][key] = s
        out["models"][label] = ms
    return out


def _f(x, d: int = ROUND) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{d}g}"


def render_markdown(raw: dict, summary: dict) -> str:
    """report.md from the raw data and :func:`summarize`'s numbers."""
    L = [
        f"# Quantization inflation of the σ threshold — profile `{raw['profile']}`",
        "",
        f"q = {raw['quantile']}, trajectories per model = {raw['n_trajectories']}, "
        f"bootstrap resamples = {raw['n_boot']} (paired, percentile 95% CI), seed = {raw['seed']}, "
        f"device = {raw['device']}, Monte Carlo draws for the prediction = {raw['mc_draws']}.",
        "",
        "ρ = τ_q(quantized)/τ_q(full precision). *self*: the quantized model scores its own "
        "generations; *fixed*: it scores the full-precision trajectories. ρ_pred: second-order "
        "Widrow prediction λ_max(F + E[½D²F]) (§3(d)); error = ρ_pred/ρ_fixed − 1. "
        "‖ḡ‖² and λ_cov = λ_max(F − ḡḡᵀ) are medians over trajectories (fixed data); "
        "'ḡ dom.' = share of trajectories with ‖ḡ‖² > λ_cov.",
        "",
    ]
    for label, ms in summary["models"].items():
        L.append(f"## {label}")
        L.append("")
        if "skipped" in ms:
            L += [f"Skipped: {ms['skipped']}", ""]
            continue
        L.append(
            f"λ_base = {_f(ms['lambda_base'])}, τ_q(FP) = {_f(ms['tau_fp'])}, "
            f"median ‖ḡ‖²(FP) = {_f(ms['gbar2_fp_median'])}, "
            f"median λ_cov(FP) = {_f(ms['cov_fp_median'])}"
        )
        L.append("")
        L.append(
            "| scheme | bits | ‖δ‖/‖θ‖ | ρ self [95% CI] | ρ fixed [95% CI] | ρ pred | pred error "
            "| ‖ḡ‖² | λ_cov | ḡ dom. |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for s in ms["configs"].values():
            L.append(
                f"| {s['family']} | {s['bits']} | {_f(s['rel_delta'], 3)} "
                f"| {_f(s['rho_self'])} [{_f(s['rho_self_lo'], 3)}, {_f(s['rho_self_hi'], 3)}] "
                f"| {_f(s['rho_fixed'])} [{_f(s['rho_fixed_lo'], 3)}, {_f(s['rho_fixed_hi'], 3)}] "
                f"| {_f(s['rho_pred'])} | {_f(s['pred_rel_error'], 3)} "
                f"| {_f(s['gbar2_fixed_median'])} | {_f(s['cov_fixed_median'])} "
                f"| {_f(s['mean_dominates_fixed'], 2)} |"
            )
        L.append("")
    return "\n".join(L) + "\n"


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


def _plots(raw: dict, summary: dict, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    labels = [k for k, v in raw["models"].items() if "skipped" not in v]
    # 1. σ traces, FP vs 4-bit RTN per channel
    fig, axes = plt.subplots(1, max(1, len(labels)), figsize=(4.5 * max(1, len(labels)), 3.4), squeeze=False)
    for ax, label in zip(axes[0], labels):
        mr = raw["models"][label]
        for i, tr in enumerate(mr["fp"]["traces"]):
            ax.plot(range(1, len(tr) + 1), tr, color="C0", alpha=0.7, label="full precision" if i == 0 else None)
        k4 = next((k for k, c in mr["configs"].items() if c["family"] == "rtn-channel" and c["bits"] == 4), None)
        if k4 is not None:
            for i, tr in enumerate(mr["configs"][k4]["traces"]):
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
    fig, axes = plt.subplots(1, max(1, len(labels)), figsize=(4.5 * max(1, len(labels)), 3.4), squeeze=False)
    for ax, label in zip(axes[0], labels):
        cs = summary["models"][label]["configs"]
        for j, fam in enumerate(raw["families"]):
            pts = sorted(
                (s["bits"], s["rho_self"], s["rho_self_lo"], s["rho_self_hi"])
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
        ax.set_ylabel("ρ (self)")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    files.append(_save_figure(plt, fig, out, "rho_vs_bits.png"))
    # 3. predicted vs measured (fixed)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    allv = []
    for j, label in enumerate(labels):
        cs = summary["models"][label]["configs"]
        xs = [s["rho_fixed"] for s in cs.values() if s["rho_pred"] is not None]
        ys = [s["rho_pred"] for s in cs.values() if s["rho_pred"] is not None]
        if xs:
            ax.scatter(xs, ys, s=18, color=f"C{j}", label=label)
            allv += xs + ys
    if allv:
        lo, hi = max(min(allv), 1e-6) / 1.5, max(allv) * 1.5
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("measured ρ (fixed trajectories)")
    ax.set_ylabel("second-order prediction ρ")
    ax.legend(fontsize=7)
    files.append(_save_figure(plt, fig, out, "rho_pred_vs_measured.png"))
    return files


# ----------------------------------------------------------------------------- study


def run_model(ld: Loaded, prof: Profile, seed: int, bar) -> dict:
    """Raw samples of one model (see the module docstring)."""
    n = prof.n_trajectories
    fp_trajs = [make_trajectory(ld, ld.module, i, prof, seed) for i in range(n)]
    Gs = [scores_of(ld, ld.module, t) for t in fp_trajs]
    stats = [split_stats(G) for G in Gs]
    lam_fp = [s[0] for s in stats]
    base = float(np.mean(lam_fp))
    res = {
        "info": ld.info,
        "param_names": list(ld.names),
        "P": int(Gs[0].shape[1]),
        "n_scores": int(Gs[0].shape[0]),
        "fp": {
            "lam": lam_fp,
            "gbar2": [s[1] for s in stats],
            "cov": [s[2] for s in stats],
            "traces": [sigma_trace(G, base).tolist() for G in Gs[: prof.n_traces]],
        },
        "configs": {},
    }
    bar.update(1)
    # predictions: one Monte Carlo estimate per family at 4 bits, scaled to the other widths
    preds: dict[tuple[str, int], list[float]] = {}
    if ld.spec.predict:
        fams = [f for f in prof.families if f != "sr-channel"]
        for fam in fams:
            steps = widrow_steps(ld.module, fam, prof)
            widths = [4] if fam == "nf4" else list(prof.bits)
            per_w = {b: [] for b in widths}
            for i, t in enumerate(fp_trajs):
                G, Hs, Ts = second_order_terms(
                    ld, t, steps, prof.mc_draws, prof.fd_eps, _cfg_seed(seed, ld.spec.label, fam, i)
                )
                # the draws already have the Widrow covariance diag(s_4²/12)
                vals = predicted_lambdas(G, Hs, Ts, [variance_scale(fam, b) for b in widths])
                for b, v in zip(widths, vals):
                    per_w[b].append(v)
            for b in widths:
                preds[(fam, b)] = per_w[b]
            bar.update(1)
        if "sr-channel" in prof.families and "rtn-channel" in prof.families:
            for b in prof.bits:
                preds[("sr-channel", b)] = preds[("rtn-channel", b)]
    for fam in prof.families:
        widths = [4] if fam == "nf4" else list(prof.bits)
        for b in widths:
            key = f"{fam}/{b}"
            qm, rel = quantize_copy(ld.module, fam, b, prof, _cfg_seed(seed, ld.spec.label, key))
            entry = {"family": fam, "bits": b, "rel_delta": rel}
            for which in ("self", "fixed"):
                trajs = fp_trajs if which == "fixed" else [make_trajectory(ld, qm, i, prof, seed) for i in range(n)]
                Gq = [scores_of(ld, qm, t) for t in trajs]
                st = [split_stats(G) for G in Gq]
                entry[which] = {"lam": [s[0] for s in st], "gbar2": [s[1] for s in st], "cov": [s[2] for s in st]}
                if which == "self" and fam == "rtn-channel" and b == 4:
                    entry["traces"] = [sigma_trace(G, base).tolist() for G in Gq[: prof.n_traces]]
            entry["pred"] = preds.get((fam, b))
            res["configs"][key] = entry
            bar.update(1)
    return res


def _n_units(prof: Profile) -> int:
    per = 1 + sum(1 if f == "nf4" else len(prof.bits) for f in prof.families)
    per += sum(1 for f in prof.families if f != "sr-channel")
    return per * len(prof.models)


def run_study(profile: str | Profile, out: str, *, device="cpu", seed: int = 0, progress: bool = True) -> dict:
    """Run the study, write report.json, report.md and the PNGs to ``out``; return the report."""
    from tqdm import tqdm

    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    dev = resolve_device(device)
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    raw = {
        "profile": prof.name,
        "quantile": prof.quantile,
        "n_boot": prof.n_boot,
        "seed": seed,
        "n_trajectories": prof.n_trajectories,
        "mc_draws": prof.mc_draws,
        "fd_eps": prof.fd_eps,
        "bits": list(prof.bits),
        "families": list(prof.families),
        "device": str(dev),
        "models": {},
    }
    bar = tqdm(total=_n_units(prof), desc=f"inflation[{prof.name}]", unit="step", file=sys.stderr, disable=not progress)
    threads = torch.get_num_threads()
    try:
        for spec in prof.models:
            bar.set_postfix_str(spec.label)
            try:
                ld = load_spec(spec, prof, dev, seed)
            except (FimTheoryError, ImportError, OSError) as exc:
                if spec.kind != "smollm2":
                    raise
                raw["models"][spec.label] = {"skipped": f"{type(exc).__name__}: {exc}"}
                rep = _mlp(32, 1)
                raw["models"][rep.label] = run_model(load_spec(rep, prof, dev, seed), prof, seed, bar)
                continue
            raw["models"][spec.label] = run_model(ld, prof, seed, bar)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    wall = time.perf_counter() - t0
    summary = summarize(raw)
    md = render_markdown(raw, summary)
    report = {
        "raw": raw,
        "summary": summary,
        "wall_seconds": wall,
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "profile_settings": {k: v for k, v in asdict(prof).items() if k != "models"},
    }
    with open(os.path.join(out, "report.json"), "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write(md)
    report["plots"] = _plots(raw, summary, out)
    return report


def inflation_command(args) -> int:
    """Entry point of ``fimtheory inflation`` (args: profile, out, device, seed)."""
    profile = getattr(args, "profile", "quick") or "quick"
    if profile not in ("quick", "paper"):
        raise InputError(f"unknown profile {profile!r}; expected 'quick' or 'paper'")
    out = getattr(args, "out", None) or os.path.join("results", f"inflation-{profile}")
    seed = getattr(args, "seed", 0)
    seed = 0 if seed is None else seed
    rep = run_study(profile, out, device=getattr(args, "device", "cpu") or "cpu", seed=int(seed))
    print(f"inflation: wrote {out}/report.json, report.md and {len(rep['plots'])} plots in {rep['wall_seconds']:.0f} s")
    return 0
