"""Targeted search for a counterexample to the non-asymptotic sharp third-order bound.

Conjecture (docs/theory.md, S3): for symmetric A with gap γ > 0 and symmetric E with 2η < γ,

    |λ_max(A + E) − λ1 − a1 − a2| ≤ K η³/(γ(γ − 2η)),   K = 4/(3√3).

It is proved for n = 2 (``symbolic.sharp_third_order.prove_two_by_two``). This module hunts for
a violation with n ≥ 2: A = diag(0, λ2, …) with γ = 1 (the ratio is invariant under shifts,
scaling and rotations), lower spectra clustered at −1, spread, or in two clusters; E = η·S/‖S‖₂
over all symmetric S, maximising the ratio |R|/(Kη³/(γ(γ − 2η))) by Nelder–Mead from random
starts and from the 2 × 2 extremal family embedded on (v, v_j) plus noise. The worst instance
found is then certified in interval arithmetic (:func:`certify_ratio`): a ratio enclosure
above 1 would be a certified counterexample, one below 1 certifies the measured value.

Usage::

    python -m properties.sharp_conjecture --profile quick|full --seed 0 --json results/sharp-conjecture.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time

import mpmath
import numpy as np

from fimtheory.errors import InputError

K = 4.0 / (3.0 * math.sqrt(3.0))

PROFILES = {
    "quick": {"ns": (2, 3, 4), "etas": (0.02, 0.1, 0.3), "starts": 3, "evals": 600},
    "full": {
        "ns": (2, 3, 4, 5, 6),
        "etas": (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.45),
        "starts": 6,
        "evals": 2500,
    },
}
SPECTRA = ("cluster", "spread", "two-clusters", "near-cluster")


def lower_spectrum(kind: str, n: int, rng) -> np.ndarray:
    """λ1 = 0 and γ = 1: the n − 1 lower eigenvalues (descending, the first is −1)."""
    if n == 1:
        return np.zeros(0)
    if kind == "cluster":
        rest = np.full(n - 1, -1.0)
    elif kind == "spread":
        rest = np.concatenate([[-1.0], -1.0 - np.sort(rng.uniform(0.0, 3.0, n - 2))])
    elif kind == "two-clusters":
        k = max(1, (n - 1) // 2)
        rest = np.concatenate([np.full(k, -1.0), np.full(n - 1 - k, -1.0 - rng.uniform(0.2, 2.0))])
    elif kind == "near-cluster":
        rest = np.concatenate([[-1.0], -1.0 - np.sort(rng.uniform(0.0, 0.05, n - 2))])
    else:
        raise InputError(f"unknown spectrum kind {kind!r}; known: {', '.join(SPECTRA)}")
    return np.concatenate([[0.0], rest])


def _sym(x: np.ndarray, n: int) -> np.ndarray:
    S = np.zeros((n, n))
    S[np.triu_indices(n)] = x
    return S + np.triu(S, 1).T


def remainder_ratio(lam: np.ndarray, E: np.ndarray) -> float:
    """|λ' − λ1 − a1 − a2| / (Kη³/(γ(γ − 2η))) for A = diag(lam) (lam[0] the simple top)."""
    eta = float(np.max(np.abs(np.linalg.eigvalsh(E))))
    gap = float(lam[0] - np.max(lam[1:]))
    if not 2 * eta < gap:
        return -math.inf
    a1 = E[0, 0]
    a2 = float(np.sum(E[0, 1:] ** 2 / (lam[0] - lam[1:])))
    top = float(np.linalg.eigvalsh(np.diag(lam) + E)[-1])
    return abs(top - lam[0] - a1 - a2) / (K * eta**3 / (gap * (gap - 2 * eta)))


def _extremal_start(n: int, j: int, sign: float, rng) -> np.ndarray:
    c = sign / math.sqrt(3.0)
    S = np.zeros((n, n))
    S[0, 0], S[j, j] = c, -c
    S[0, j] = S[j, 0] = math.sqrt(1 - c * c)
    S = S + 0.05 * _sym(rng.standard_normal(n * (n + 1) // 2), n)
    return S[np.triu_indices(n)]


def maximise(lam: np.ndarray, eta: float, x0: np.ndarray, evals: int):
    """Nelder–Mead on −ratio over S (E = ηS/‖S‖₂). Returns (best ratio, best E)."""
    from scipy.optimize import minimize

    n = lam.shape[0]
    best = {"r": -math.inf, "E": None}

    def f(x):
        S = _sym(x, n)
        s = float(np.max(np.abs(np.linalg.eigvalsh(S))))
        if not s > 0:
            return 0.0
        E = eta * S / s
        r = remainder_ratio(lam, E)
        if r > best["r"]:
            best.update(r=r, E=E)
        return -r

    minimize(f, x0, method="Nelder-Mead", options={"maxfev": evals, "xatol": 1e-10, "fatol": 1e-13})
    return best["r"], best["E"]


def certify_ratio(lam: np.ndarray, E: np.ndarray, dps: int = 50) -> tuple:
    """Rigorous (lo, hi) enclosure of the ratio on the exact float inputs (mpmath.iv)."""
    from fimtheory import enclosures as enc
    from fimtheory.highprec import working_precision

    with working_precision(dps):
        A_iv, E_iv = enc.iv_matrix(np.diag(lam)), enc.iv_matrix(E)
        encA = enc.iv_eigenvalue_enclosures(A_iv)
        eta = enc.iv_sym_norm(enc.iv_eigenvalue_enclosures(E_iv))
        te = enc.top_eigen(A_iv, encA)
        gap = te.gap
        enc.require_positive("2η < γ", gap - 2 * eta)
        a1, a2 = enc.series_coefficients_iv(te, E_iv, 2)
        top = enc.iv_lambda_max(A_iv + E_iv)
        k = mpmath.iv.mpf(4) / (3 * mpmath.iv.sqrt(3))
        r = enc.iv_abs(top - te.lam1 - a1 - a2) / (k * eta**3 / (gap * (gap - 2 * eta)))
        return enc.lo(r), enc.hi(r)


def hunt(profile: str = "quick", seed: int = 0, progress=None) -> dict:
    """Run the search; returns a JSON-able report (per-setting best ratios, the worst instances
    for n = 2 and n ≥ 3, and the certified enclosure of the overall worst)."""
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    cfg = PROFILES[profile]
    rng = np.random.default_rng(seed)
    rows, worst = [], {"n=2": (-math.inf, None, None), "n>=3": (-math.inf, None, None)}
    t0 = time.perf_counter()
    settings = list(itertools.product(cfg["ns"], cfg["etas"], SPECTRA))
    for i, (n, eta, kind) in enumerate(settings):
        if n == 2 and kind != "cluster":
            continue  # for n = 2 every lower spectrum is the single eigenvalue −1
        lam = lower_spectrum(kind, n, rng)
        starts = [_extremal_start(n, 1 + (s % (n - 1)), (-1.0) ** s, rng) for s in range(cfg["starts"] // 2 + 1)]
        starts += [rng.standard_normal(n * (n + 1) // 2) for _ in range(cfg["starts"] - len(starts) + 1)]
        best_r, best_E = -math.inf, None
        for x0 in starts:
            r, E = maximise(lam, eta, x0, cfg["evals"])
            if r > best_r:
                best_r, best_E = r, E
        rows.append({"n": n, "eta_over_gap": eta, "spectrum": kind, "best_ratio": best_r})
        key = "n=2" if n == 2 else "n>=3"
        if best_r > worst[key][0]:
            worst[key] = (best_r, lam, best_E)
        if progress:
            progress(f"[{i + 1}/{len(settings)}] n={n} η/γ={eta} {kind}: best ratio {best_r:.6f}")
    out = {
        "conjecture": "|λ'−λ1−a1−a2| ≤ (4/(3√3))·η³/(γ(γ−2η)) for 2η < γ",
        "profile": profile,
        "seed": seed,
        "settings": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for key, (r, lam, E) in worst.items():
        if E is None:
            continue
        lo, hi = certify_ratio(lam, E)
        out[f"worst {key}"] = {
            "ratio": r,
            "certified_ratio": [mpmath.nstr(lo, 12), mpmath.nstr(hi, 12)],
            "violation": bool(lo > 1),
            "lam": [float(x).hex() for x in lam],
            "E": [[float(x).hex() for x in row] for row in E],
            "eta_over_gap": float(np.max(np.abs(np.linalg.eigvalsh(E)))),
        }
    out["counterexample_found"] = any(out.get(f"worst {k}", {}).get("violation", False) for k in worst)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the report to this path")
    args = ap.parse_args(argv)
    rep = hunt(args.profile, args.seed, progress=lambda s: print(s, file=sys.stderr, flush=True))
    text = json.dumps(rep, indent=1, ensure_ascii=False)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    for key in ("worst n=2", "worst n>=3"):
        if key in rep:
            w = rep[key]
            print(f"{key}: ratio {w['ratio']:.6f}, certified in [{w['certified_ratio'][0]}, {w['certified_ratio'][1]}]")
    print("counterexample found" if rep["counterexample_found"] else "no counterexample found")
    return 1 if rep["counterexample_found"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
