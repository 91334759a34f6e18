"""The sharp bounds on real models' FIMs: the critical scale s_c of T4.3c and the AB bracket.

Two measurements, each written by one command (``fimtheory sharp-study``):

**sc** — the certified region of strict elevation 0 < s < s_c, for the antithetic ensemble
{±E_k} of a real quantizer's FIM perturbations E_k = F(Q_k(θ)) − F(θ) (one E for a
deterministic scheme, K seeded stochastic-rounding draws otherwise), scaled by s. Per ensemble:

- ``old``: T4.3c's s_c = E[a2]γ²/(2E[a2]γη̄ + 4E[η³]) (S2's remainder, inside 2sη̄ < γ);
- ``s3``: the root of E[a2] − sKE[η³]/γ² − 8s²E[η⁴]/(γ²(γ − 2sη̄)) (S3, inside the disc);
- ``sharp``: T4.3c-S's s_c^S = 2E[a2]/(B₁ + √(B₁² + 4B₂E[a2])), B₁ = KE[η³]/γ²,
  B₂ = E[‖P⊥Ev‖⁴]/γ³ (S3L averaged: no disc needed), K = 4/(3√3).

s = 1 is the quantizer itself: ``s1_inside`` says whether each region contains it. At
s = 0.9·s_c^S the mean elevation is computed and must be positive (a theorem; it guards the
code), and at s = 1 T4.3b(ii)'s and T4.3b-S's lower bounds are set against the elevation.

Each E_k is handled exactly in the span of the rows of G and G̃_k (``checks.reduced_pair``):
F and F + E_k vanish on its complement, so λ1, γ, a2, η, ‖P⊥Ev‖ and λ_max(F ± sE_k) are those
of the 2n × 2n reduced matrices — no P × P matrix is formed.

**ab** — the tightness of AB (``fimtheory.approx.two_sided``) on the real FIMs: U/L over a
grid of Lanczos steps k and trace powers q, against the exact λ_max (float64 eigvalsh of the
n × n Gram matrix), and the cheapest (k, q) with U/L ≤ 1.01 (cost in flops on the Gram: 2n²
per Lanczos step, 2n³ per matrix product of the repeated squaring for tr K^q).

Every draw is seeded; progress goes to stderr, also when it is not a terminal.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

from fimtheory import approx, spectral
from fimtheory import claims as _claims
from fimtheory.claims_sharp import sharp_constant, sharp_ensemble_critical_scale
from fimtheory.errors import InputError

#: Default Lanczos steps and trace powers of the AB grid.
AB_STEPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32)
AB_POWERS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: The bracket target of the cheapest (k, q).
AB_TARGET = 1.01

#: Default schemes per model (SmolLM2: ~40 s per quantized copy and its scores on one thread).
SC_SCHEMES = {
    "byte-lm": ("rtn-int4-sym-channel", "rtn-int4-asym-g32", "nf4-b64", "fp4-b32", "sr-int4-sym-channel"),
    "smollm2": ("rtn-int4-sym-channel", "nf4-b64", "sr-int4-sym-channel"),
}
SC_DRAWS = {"byte-lm": 8, "smollm2": 3}


def progress_printer(name: str = "sharp-study"):
    """A progress callback: one line on stderr per call, with the elapsed time (also when
    stderr is not a terminal)."""
    t0 = time.perf_counter()

    def report(msg: str) -> None:
        print(f"{name} [{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    return report


# --------------------------------------------------------------------------------------
# critical scales of an ensemble (numpy; any basis)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrawStats:
    """Basis-invariant quantities of one perturbation E of F (floats)."""

    a2: float
    eta: float
    w2: float


def draw_stats(F: np.ndarray, E: np.ndarray) -> DrawStats:
    """a2 = Σ_j (v_jᵀEv)²/(λ1 − λj), η = ‖E‖₂ and ‖P⊥Ev‖² of a symmetric pair (float64)."""
    eig = spectral.eigen_data(F)
    if not eig.gap_resolved():
        raise InputError("γ = 0: the top eigenvalue of F is repeated within rounding")
    M = spectral.perturbation_in_eigenbasis(eig, E)
    a2 = float(_claims._series.series_coefficients(eig.eigenvalues, M, 2)[1])
    return DrawStats(a2, _claims._norm2(E), float(spectral.off_top_residual_norm_sq(eig, E)))


def critical_scales(gap: float, stats: list[DrawStats]) -> dict:
    """The three s_c of the ensemble {±E_k} (a2, η and ‖P⊥Ev‖ are even in E) and their ratios.

    Raises InputError when γ ≤ 0 or E[a2] ≤ 0 (not generic: no region to certify)."""
    from properties.sharp_critical_scale import sharp_critical_scale

    if not stats:
        raise InputError("no draws")
    a2 = np.array([s.a2 for s in stats])
    eta = np.array([s.eta for s in stats])
    w2 = np.array([s.w2 for s in stats])
    ea2, e3, e4, w4, eb = (
        float(np.mean(a2)),
        float(np.mean(eta**3)),
        float(np.mean(eta**4)),
        float(np.mean(w2**2)),
        float(eta.max()),
    )
    if not (gap > 0 and ea2 > 0 and eb > 0):
        raise InputError(f"needs γ > 0, E[a2] > 0 and η̄ > 0 (γ = {gap:.3g}, E[a2] = {ea2:.3g}, η̄ = {eb:.3g})")
    old = _claims.critical_scale(gap, ea2, e3, eb)
    s3 = sharp_critical_scale(gap, ea2, e3, e4, eb)
    sharp = sharp_ensemble_critical_scale(gap, ea2, e3, w4)
    return {
        "gap": gap,
        "mean_a2": ea2,
        "mean_eta3": e3,
        "mean_eta4": e4,
        "mean_w4": w4,
        "eta_bar": eb,
        "eta_bar_over_gap": eb / gap,
        "disc_limit": gap / (2 * eb),
        "s_c": {"old": old, "s3": s3, "sharp": sharp},
        "ratio_sharp_over_old": sharp / old,
        "ratio_s3_over_old": s3 / old,
        "s1_inside": {"old": old > 1.0, "s3": s3 > 1.0, "sharp": sharp > 1.0},
    }


def lower_bounds_at(s: float, gap: float, stats: list[DrawStats]) -> dict:
    """T4.3b(ii)'s and T4.3b-S's lower bounds on E λ_max(F + sE) − λ1 (None where T4.3b(ii)'s
    hypothesis 2sη̄ < γ fails)."""
    a2 = np.array([x.a2 for x in stats])
    eta = s * np.array([x.eta for x in stats])
    w2 = s * s * np.array([x.w2 for x in stats])
    ea2 = s * s * float(np.mean(a2))
    eb = float(eta.max())
    old = ea2 - 4 * float(np.mean(eta**3)) / (gap * (gap - 2 * eb)) if 2 * eb < gap else None
    sharp = ea2 - sharp_constant() * float(np.mean(eta**3)) / gap**2 - float(np.mean(w2**2)) / gap**3
    return {"old": old, "sharp": sharp}


def mean_elevation(pairs: list[tuple[np.ndarray, np.ndarray]], s: float) -> float:
    """E λ_max(F + sE) − λ_max(F) over the antithetic ensemble {±E_k} (pairs (F_k, E_k), each in
    its own basis of the same F)."""
    tops = []
    for F, E in pairs:
        lam = float(np.linalg.eigvalsh(F)[-1])
        tops.append(float(np.linalg.eigvalsh(F + s * E)[-1]) - lam)
        tops.append(float(np.linalg.eigvalsh(F - s * E)[-1]) - lam)
    return float(np.mean(tops))


def ensemble_report(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Critical scales of {±E_k} from reduced pairs (F_k, E_k), the elevation check at
    0.9·s_c^S and the lower bounds at s = 1."""
    eigs = [np.linalg.eigvalsh(F)[::-1] for F, _ in pairs]
    lam1 = float(np.mean([w[0] for w in eigs]))
    gap = float(np.mean([w[0] - w[1] for w in eigs]))
    stats = [draw_stats(F, E) for F, E in pairs]
    rep = {"draws": len(pairs), "lambda1": lam1, **critical_scales(gap, stats)}
    s = 0.9 * rep["s_c"]["sharp"]
    elev = mean_elevation(pairs, s)
    bound = lower_bounds_at(s, gap, stats)["sharp"]
    n = pairs[0][0].shape[0]
    # a theorem (T4.3c-S / T4.3b-S): the float elevation may fall below the bound by rounding only
    tol = 1e3 * n * np.finfo(float).eps * (abs(lam1) + s * rep["eta_bar"])
    if not elev >= bound - tol:
        raise ArithmeticError(f"elevation {elev:.6g} at 0.9·s_c^S below its proved lower bound {bound:.6g}")
    rep["check_at_0.9_sc_sharp"] = {"s": s, "mean_elevation": elev, "lower_bound": bound, "positive": elev > 0}
    rep["at_s1"] = {"mean_elevation": mean_elevation(pairs, 1.0), **lower_bounds_at(1.0, gap, stats)}
    return rep


# --------------------------------------------------------------------------------------
# sc on the real models
# --------------------------------------------------------------------------------------


def _summ(x) -> dict | None:
    x = np.asarray([v for v in x if v is not None and math.isfinite(v)], dtype=float)
    if x.size == 0:
        return None
    return {"n": int(x.size), "min": float(x.min()), "median": float(np.median(x)), "max": float(x.max())}


def sc_study(models=("byte-lm", "smollm2"), *, schemes=None, draws=None, seed: int = 0, progress=None) -> dict:
    """s_c old / S3 / sharp on each model × scheme (see the module docstring)."""
    import torch

    from . import checks as C
    from .quantizers import parse_scheme

    note = progress or (lambda _m: None)
    t0 = time.perf_counter()
    base_profile = C.get_profile("quick")
    out = {"models": {}, "seed": seed}
    with C.limited_threads(1):
        for name in models:
            prof = C.model_profile(base_profile, name)
            tm = time.perf_counter()
            model = C.load_for_checks(name, prof, torch.device("cpu"), seed=seed)
            note(f"{name}: loaded (P = {model.header['P']})")
            G = C.score_matrix(model, model.module)
            n, P = G.shape
            note(f"{name}: base scores {n} × {P}")
            spec_list = (schemes or {}).get(name) or SC_SCHEMES.get(name, C.QUICK_SCHEMES[:1])
            K = (draws or {}).get(name) or SC_DRAWS.get(name, 4)
            rows = {}
            for template in spec_list:
                spec = template.format(b=4)
                scheme = parse_scheme(spec)
                pairs = []
                for k in range(K if scheme.stochastic else 1):
                    gen = None
                    if scheme.stochastic:
                        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7919 * k + 1)
                    qmod, summary = C.quantized_copy(model.module, scheme, generator=gen)
                    if summary.no_op:
                        del qmod
                        continue
                    Gq = C.score_matrix(model, qmod)
                    del qmod
                    pairs.append(C.reduced_pair(G, Gq))
                    del Gq
                    note(f"{name} {spec}: draw {k + 1}")
                if not pairs:
                    rows[spec] = {"status": "no-op", "reason": "the scheme changes no weight (E = 0)"}
                    continue
                try:
                    rows[spec] = {"status": "measured", "stochastic": bool(scheme.stochastic), **ensemble_report(pairs)}
                except InputError as exc:
                    rows[spec] = {"status": "hypotheses not met", "reason": str(exc)}
                r = rows[spec]
                if r["status"] == "measured":
                    note(
                        f"{name} {spec}: s_c old {r['s_c']['old']:.4g}, sharp {r['s_c']['sharp']:.4g} "
                        f"(× {r['ratio_sharp_over_old']:.3f})"
                    )
            measured = [r for r in rows.values() if r.get("status") == "measured"]
            out["models"][name] = {
                "n": int(n),
                "P": int(P),
                "param_subset": model.header.get("param_subset"),
                "draws_per_sr_scheme": K,
                "schemes": rows,
                "ratio_sharp_over_old": _summ(r["ratio_sharp_over_old"] for r in measured),
                "ratio_s3_over_old": _summ(r["ratio_s3_over_old"] for r in measured),
                "s1_inside": {key: sum(bool(r["s1_inside"][key]) for r in measured) for key in ("old", "s3", "sharp")},
                "seconds": time.perf_counter() - tm,
            }
            del G, model
    out["ratio_sharp_over_old_all"] = _summ(
        r["ratio_sharp_over_old"]
        for m in out["models"].values()
        for r in m["schemes"].values()
        if r.get("status") == "measured"
    )
    out["seconds"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------------------
# AB tightness
# --------------------------------------------------------------------------------------


def matmul_count(q: int) -> int:
    """Matrix products of the repeated squaring for K^q in ``approx._trace_power_root``."""
    q = int(q)
    if q < 1:
        raise InputError(f"q must be >= 1, got {q}")
    return q.bit_length() - 1 + bin(q).count("1") - 1


def ab_cost(n: int, k: int, q: int) -> float:
    """Flops of AB beyond forming K (n × n): k Lanczos matrix-vector products (2n² each) and
    the products of tr K^q (2n³ each)."""
    return 2.0 * n * n * k + 2.0 * n**3 * matmul_count(q)


def ab_grid(G: np.ndarray, *, steps=AB_STEPS, powers=AB_POWERS) -> dict:
    """L and U of :func:`fimtheory.approx.two_sided` over (k, q) ∈ steps × powers, from one Gram
    matrix (the terms that do not depend on k or q are computed once, as two_sided computes them).

    Returns the exact λ_max (float64 eigvalsh of K), and per (k, q): L, U, U/L."""
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 2 or G.shape[0] < 1 or not np.all(np.isfinite(G)):
        raise InputError("G must be a finite 2-D score matrix")
    if not steps or not powers:
        raise InputError("steps and powers must be non-empty")
    c = approx.power_of_two_scale(G)
    Gs = G / c
    n = Gs.shape[0]
    K = Gs @ Gs.T / n
    K = 0.5 * (K + K.T)
    lam = float(np.linalg.eigvalsh(K)[-1]) * c * c
    gbar = Gs.mean(axis=0)
    row = np.einsum("ij,ij->i", Gs, Gs)
    fixed_lower = max(float(np.max(row) / n), float(gbar @ gbar), float(np.max(np.einsum("ij,ij->j", Gs, Gs) / n)))
    fixed_upper = min(float(np.trace(K)), float(np.max(np.sum(np.abs(K), axis=1))))
    start = Gs @ gbar
    if not np.any(start):
        start = np.zeros(n)
        start[int(np.argmax(row))] = 1.0
    rank = approx.structural_rank_bound(Gs)
    ritz = {k: approx.lanczos_ritz(K, k, start)[0] for k in steps}
    trq = {q: approx._trace_power_root(K, q) for q in powers}
    table = {}
    for k in steps:
        for q in powers:
            lower = max(fixed_lower, ritz[k], trq[q] / rank ** (1.0 / q)) * c * c
            upper = min(fixed_upper, trq[q]) * c * c
            table[(k, q)] = (lower, upper)
    return {"lambda_max": lam, "n": n, "rank_bound": rank, "table": table}


def cheapest(grid: dict, target: float = AB_TARGET):
    """The (k, q) of least :func:`ab_cost` with U/L ≤ target (ties: smaller q, then k), or None."""
    n = grid["n"]
    ok = [(ab_cost(n, k, q), q, k) for (k, q), (lo, up) in grid["table"].items() if lo > 0 and up / lo <= target]
    if not ok:
        return None
    _, q, k = min(ok)
    return k, q


def ab_report(G: np.ndarray, *, steps=AB_STEPS, powers=AB_POWERS, target: float = AB_TARGET) -> dict:
    """U/L, L/λ and U/λ over the grid, the cheapest (k, q) and two_sided() re-run there."""
    grid = ab_grid(G, steps=steps, powers=powers)
    lam = grid["lambda_max"]
    ratio = [[grid["table"][(k, q)][1] / grid["table"][(k, q)][0] for q in powers] for k in steps]
    best = cheapest(grid, target)
    rep = {
        "n": grid["n"],
        "P": int(np.asarray(G).shape[1]),
        "lambda_max_exact": lam,
        "steps_k": list(steps),
        "powers_q": list(powers),
        "U_over_L": ratio,
        "L_over_lambda": [[grid["table"][(k, q)][0] / lam for q in powers] for k in steps],
        "U_over_lambda": [grid["table"][(steps[0], q)][1] / lam for q in powers],
        "default_k3_q4": None,
        "target": target,
        "cheapest": None,
    }
    if (3, 4) in grid["table"]:
        lo, up = grid["table"][(3, 4)]
        rep["default_k3_q4"] = {"U_over_L": up / lo, "L_over_lambda": lo / lam, "U_over_lambda": up / lam}
    if best is not None:
        k, q = best
        t = time.perf_counter()
        tb = approx.two_sided(G, lanczos_steps=k, q=q)
        secs = time.perf_counter() - t
        lo, up = grid["table"][best]
        if not (math.isclose(tb.lower, lo, rel_tol=1e-9) and math.isclose(tb.upper, up, rel_tol=1e-9)):
            raise ArithmeticError(f"two_sided at {best} gives [{tb.lower}, {tb.upper}], the grid [{lo}, {up}]")
        rep["cheapest"] = {
            "k": k,
            "q": q,
            "flops_beyond_gram": ab_cost(grid["n"], k, q),
            "U_over_L": up / lo,
            "L_over_lambda": lo / lam,
            "U_over_lambda": up / lam,
            "two_sided_seconds": secs,
        }
    else:
        rep["cheapest_reason"] = f"no (k, q) of the grid brackets λ_max within U/L ≤ {target}"
    return rep


def ab_study(models=("byte-lm", "smollm2"), *, seed: int = 0, steps=AB_STEPS, powers=AB_POWERS, progress=None) -> dict:
    """:func:`ab_report` on the base FIM of each model (quick-profile FIM data)."""
    import torch

    from . import checks as C

    note = progress or (lambda _m: None)
    t0 = time.perf_counter()
    out = {"models": {}, "seed": seed, "target_U_over_L": AB_TARGET}
    with C.limited_threads(1):
        for name in models:
            prof = C.model_profile(C.get_profile("quick"), name)
            model = C.load_for_checks(name, prof, torch.device("cpu"), seed=seed)
            G = C.score_matrix(model, model.module).cpu().numpy()
            note(f"{name}: scores {G.shape[0]} × {G.shape[1]}")
            del model
            rep = ab_report(G, steps=steps, powers=powers)
            out["models"][name] = rep
            ch = rep["cheapest"]
            note(f"{name}: cheapest (k, q) = {(ch['k'], ch['q']) if ch else None}")
            del G
    out["seconds"] = time.perf_counter() - t0
    return out


def environment() -> dict:
    import torch

    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__, "threads": 1}
