"""Eq. 1 and the companion's KL statistic measured on real language models, full vocabulary.

Along sampled continuations of a fixed prompt set, at every decoding step t this records the
full-vocabulary next-token distribution p_t and from it

- ``lambda_softmax``: λ_max(diag(p_t) − p_t p_tᵀ), the logit-space Fisher (exact, fimtheory.eq1);
- ``lambda_empirical``: ‖e_y − p_t‖², the logit-space empirical Fisher of the emitted token y;
- ``lambda_hat``: the paper's Eq. 1 from the top-20 probabilities;
- ``lambda_param``: ‖∇_θ log p_t(y)‖², the parameter-space per-token empirical FIM's λ_max
  (rank one) for a named parameter subset;
- between consecutive steps: the companion's sorted-padded top-20 KL and the plain
  full-vocabulary KL(p_t ‖ p_{t+1}).

It then reports the error of λ̂ against each ground truth, their rank correlations, and — at the
reference weights and after re-quantization by the suite's own schemes, on the same prompts and
sampling seeds — the ratio of the 95th-percentile sorted-padded KL between the two precisions:
what "quantization inflates the calibration threshold" would mean if it were measured.

Sampling: softmax at temperature ``temperature`` with a ``torch.Generator`` seeded per
(prompt, sample); every draw is reproducible.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from fimtheory import eq1
from fimtheory.errors import InputError

#: Short factual prompts written for this study (one correct continuation each).
PROMPTS = (
    "The capital of France is",
    "Water freezes at a temperature of",
    "The largest ocean on Earth is the",
    "The chemical symbol for iron is",
    "The number of legs of a spider is",
    "The planet closest to the Sun is",
    "The author of Hamlet is",
    "The square of twelve is",
    "The opposite of hot is",
    "The first month of the year is",
    "The color of a clear daytime sky is",
    "The language spoken in Brazil is",
)

PROFILES = {
    "quick": {"prompts": 6, "samples": 2, "new_tokens": 24, "bits": (8, 4, 3)},
    "full": {"prompts": 12, "samples": 8, "new_tokens": 48, "bits": (8, 4, 3)},
}


@dataclass(frozen=True)
class StudyConfig:
    """What to measure. ``scheme`` is a :func:`fimtheory.quantize.parse_scheme` template with
    ``{bits}`` for the bit width."""

    model: str = "byte-lm"
    profile: str = "quick"
    temperature: float = 0.7
    top_k: int = 20
    seed: int = 0
    scheme: str = "rtn-int{bits}-sym-channel"
    bootstrap: int = 2000

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise InputError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")
        if not (isinstance(self.temperature, float) and 0 < self.temperature <= 10):
            raise InputError(f"temperature must be a float in (0, 10], got {self.temperature!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise InputError(f"seed must be an integer in [0, 2**31), got {self.seed!r}")


def _lm(model_name: str):
    """(model, encode(text) -> 1-D int64 ids, context length or None, parameter subset)."""
    from torch_checks.models import load_model

    bundle = load_model(model_name)
    model = bundle.module.eval()
    if model_name == "byte-lm":

        def encode(text):
            return torch.tensor(list(text.encode("utf-8")), dtype=torch.int64)

        return model, encode, model.config.context, tuple(bundle.param_names)
    if model_name == "smollm2":
        from torch_checks.smollm import encode as sm_encode
        from torch_checks.smollm import load_tokenizer

        tk = load_tokenizer()
        return model, (lambda text: sm_encode(text, tk)), None, tuple(bundle.param_names)
    raise InputError(f"the Eq. 1 study supports byte-lm and smollm2, not {model_name!r}")


def _param_score_norm2(model, ids: torch.Tensor, y: int, names: tuple[str, ...]) -> float:
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise InputError(f"parameter subset names unknown parameters: {missing}")
    chosen = [params[n] for n in names]
    model.zero_grad(set_to_none=True)
    logits = model(ids[None])[0, -1].double()
    logp = torch.log_softmax(logits, dim=-1)[y]
    grads = torch.autograd.grad(logp, chosen)
    return float(sum((g.double() ** 2).sum() for g in grads))


def trajectory(
    model,
    prompt_ids: torch.Tensor,
    *,
    new_tokens: int,
    temperature: float,
    seed: int,
    context: int | None,
    param_names: tuple[str, ...],
    top_k: int,
) -> list[dict]:
    """Per-step records of one sampled continuation (see module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    ids = prompt_ids.clone()
    out: list[dict] = []
    prev_p = None
    for _ in range(new_tokens):
        window = ids if context is None else ids[-context:]
        with torch.no_grad():
            logits = model(window[None])[0, -1].double()
        p = torch.softmax(logits, dim=-1).numpy()
        p = p / math.fsum(p.tolist())
        y = int(torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=gen))
        rec = {
            "token": y,
            "p_max": float(p.max()),
            "p_emitted": float(p[y]),
            "lambda_softmax": eq1.softmax_fisher_lambda_max(p),
            "lambda_empirical": eq1.empirical_logit_fisher_lambda(p, y),
            "lambda_hat": eq1.eq1_lambda_hat(p, k=top_k),
            "lambda_param": _param_score_norm2(model, window, y, param_names),
        }
        if prev_p is not None:
            top_prev = np.sort(prev_p)[::-1][:top_k]
            top_now = np.sort(p)[::-1][:top_k]
            rec["kl_sorted_padded"] = eq1.sorted_padded_kl(top_prev, top_now)
            rec["kl_full"] = eq1.kl_divergence(prev_p, p)
        out.append(rec)
        prev_p = p
        ids = torch.cat([ids, torch.tensor([y])])
    return out


def _run_all(model, encode, context, names, cfg: StudyConfig, prof: dict, label: str, progress) -> list[dict]:
    rows = []
    n = prof["prompts"] * prof["samples"]
    k = 0
    for pi, prompt in enumerate(PROMPTS[: prof["prompts"]]):
        pid = encode(prompt)
        for s in range(prof["samples"]):
            seed = cfg.seed * 1_000_003 + pi * 1009 + s
            recs = trajectory(
                model,
                pid,
                new_tokens=prof["new_tokens"],
                temperature=cfg.temperature,
                seed=seed,
                context=context,
                param_names=names,
                top_k=cfg.top_k,
            )
            for t, r in enumerate(recs):
                r.update(prompt=pi, sample=s, step=t)
            rows.extend(recs)
            k += 1
            progress(f"{label}: trajectory {k}/{n}")
    return rows


def _rel_err_stats(est: np.ndarray, ref: np.ndarray) -> dict:
    mask = ref > 0
    err = np.abs(est[mask] - ref[mask]) / ref[mask]
    ratio = est[mask] / ref[mask]
    return {
        "n": int(mask.sum()),
        "median_rel_error": float(np.median(err)),
        "p95_rel_error": float(np.percentile(err, 95)),
        "worst_rel_error": float(err.max()),
        "min_ratio": float(ratio.min()),
        "max_ratio": float(ratio.max()),
        "spearman": _spearman(est[mask], ref[mask]),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if a.size < 3:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _p95_ratio_ci(q_vals: np.ndarray, r_vals: np.ndarray, groups_q, groups_r, reps: int, seed: int) -> dict:
    """p95(q)/p95(r) with a percentile-bootstrap 95% CI resampling whole trajectories."""
    rng = np.random.default_rng(seed)
    keys = sorted(set(groups_r) & set(groups_q))
    by_q = {k: q_vals[np.array([g == k for g in groups_q])] for k in keys}
    by_r = {k: r_vals[np.array([g == k for g in groups_r])] for k in keys}
    point = float(np.percentile(q_vals, 95) / np.percentile(r_vals, 95))
    boots = []
    for _ in range(reps):
        pick = rng.integers(0, len(keys), len(keys))
        qs = np.concatenate([by_q[keys[i]] for i in pick])
        rs = np.concatenate([by_r[keys[i]] for i in pick])
        den = np.percentile(rs, 95)
        if den > 0:
            boots.append(np.percentile(qs, 95) / den)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"ratio": point, "ci95": [float(lo), float(hi)], "bootstrap": len(boots)}


def _summary(rows: list[dict]) -> dict:
    lam_hat = np.array([r["lambda_hat"] for r in rows])
    out = {"steps": len(rows)}
    for ref in ("lambda_softmax", "lambda_empirical", "lambda_param"):
        out[f"eq1_vs_{ref}"] = _rel_err_stats(lam_hat, np.array([r[ref] for r in rows]))
    kl = np.array([r["kl_sorted_padded"] for r in rows if "kl_sorted_padded" in r])
    full = np.array([r["kl_full"] for r in rows if "kl_full" in r])
    out["kl_sorted_padded_p95"] = float(np.percentile(kl, 95))
    out["kl_full_p95"] = float(np.percentile(full[np.isfinite(full)], 95))
    out["kl_sorted_zero_share"] = float(np.mean(kl == 0))
    out["kl_sorted_below_full_share"] = float(np.mean(kl[np.isfinite(full)] < full[np.isfinite(full)]))
    return out


def run_study(cfg: StudyConfig, *, progress=None) -> dict:
    """Run the study; returns a JSON-ready report (records, summaries, quantized ratios)."""
    from torch_checks.models import deterministic
    from torch_checks.quantizers import quantize_module_

    progress = progress or (lambda msg: None)
    prof = PROFILES[cfg.profile]
    t0 = time.perf_counter()
    with deterministic(cfg.seed):
        model, encode, context, names = _lm(cfg.model)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        arms = {"reference": _run_all(model, encode, context, names, cfg, prof, "reference", progress)}
        for bits in prof["bits"]:
            model.load_state_dict(state)
            deltas = quantize_module_(model, cfg.scheme.format(bits=bits), include="linear")
            if not any(float(d.abs().max()) > 0 for d in deltas.values()):
                raise InputError(f"{cfg.scheme.format(bits=bits)} changed no weight of {cfg.model}")
            arms[f"int{bits}"] = _run_all(model, encode, context, names, cfg, prof, f"int{bits}", progress)
        model.load_state_dict(state)
    ref_rows = arms["reference"]

    def kl_arm(rows):
        vals = np.array([r["kl_sorted_padded"] for r in rows if "kl_sorted_padded" in r])
        groups = [(r["prompt"], r["sample"]) for r in rows if "kl_sorted_padded" in r]
        return vals, groups

    r_vals, r_groups = kl_arm(ref_rows)
    inflation = {}
    for arm, rows in arms.items():
        if arm == "reference":
            continue
        q_vals, q_groups = kl_arm(rows)
        inflation[arm] = _p95_ratio_ci(q_vals, r_vals, q_groups, r_groups, cfg.bootstrap, cfg.seed)
    return {
        "config": asdict(cfg),
        "profile": prof,
        "param_subset": list(names),
        "prompts": list(PROMPTS[: prof["prompts"]]),
        "summary": {arm: _summary(rows) for arm, rows in arms.items()},
        "kl_p95_ratio_quantized_vs_reference": inflation,
        "seconds": round(time.perf_counter() - t0, 1),
        "records": arms,
    }


def format_report(rep: dict) -> str:
    s = rep["summary"]["reference"]
    lines = [
        f"Eq. 1 study on {rep['config']['model']} ({rep['profile']['prompts']} prompts × "
        f"{rep['profile']['samples']} samples × {rep['profile']['new_tokens']} tokens, "
        f"T = {rep['config']['temperature']}), reference weights:"
    ]
    for ref in ("lambda_softmax", "lambda_empirical", "lambda_param"):
        e = s[f"eq1_vs_{ref}"]
        lines.append(
            f"  λ̂ vs {ref:<17} median |err| {e['median_rel_error']:.3g}, p95 {e['p95_rel_error']:.3g}, "
            f"worst {e['worst_rel_error']:.3g}; ratio in [{e['min_ratio']:.3g}, {e['max_ratio']:.3g}]; "
            f"Spearman {e['spearman']:.3f}"
        )
    lines.append(
        f"  sorted-padded KL p95 {s['kl_sorted_padded_p95']:.4g} (full-vocabulary KL p95 "
        f"{s['kl_full_p95']:.4g}); sorted KL below the full KL on {100 * s['kl_sorted_below_full_share']:.0f}%"
    )
    for arm, r in rep["kl_p95_ratio_quantized_vs_reference"].items():
        lines.append(
            f"  p95 sorted-padded KL, {arm} / reference = {r['ratio']:.3f} "
            f"(95% CI {r['ci95'][0]:.3f}–{r['ci95'][1]:.3f})"
        )
    lines.append(f"  {rep['seconds']} s")
    return "\n".join(lines)


def stderr_progress(every_s: float = 5.0):
    """A progress callback printing at most every ``every_s`` seconds on stderr (also when it
    is not a terminal)."""
    last = [0.0]

    def report(msg: str) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            print(f"eq1-study: {msg}", file=sys.stderr, flush=True)

    return report
