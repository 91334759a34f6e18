"""The approximation family: estimates of λ_max of the empirical FIM from its scores — the
mean-score heuristic (AH) and the rigorous two-sided bounds (AB).

Each claim with its hypotheses, its float64 and high-precision evaluators and its weakenings,
declared through :mod:`fimtheory.claim_api`; the estimators are :mod:`fimtheory.approx`; the
rigorous enclosures are :data:`fimtheory.enclosures.ENCLOSURES` under the same ids.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

from fimtheory import approx, spectral
from fimtheory.claim_api import Outcome, declare_claim, declare_weakening
from fimtheory.claim_api import outcome as _outcome
from fimtheory.claim_support import TINY
from fimtheory.highprec import mp_eigh, mp_matmul, mp_matpow, mp_matrix, working_precision
from fimtheory.instances import ScoreInstance

_S = "properties.claim_strategies:"


def _mp_scores(G):
    return mp_matrix(G)


def _mp_fim_parts(G: np.ndarray, dps: int):
    Gm = _mp_scores(G)
    n = G.shape[0]
    K = mp_matmul(Gm, Gm.T) / n  # Gm * Gm.T / n, bit for bit
    F = mp_matmul(Gm, Gm, transpose_a=True) / n  # Gm.T * Gm / n
    small = K if G.shape[0] <= G.shape[1] else F
    lam = mp_eigh(small, dps).lambda_max
    gbar = mpmath.matrix([[sum(Gm[i, j] for i in range(n)) / n] for j in range(G.shape[1])])
    return Gm, K, F, lam, gbar


# --------------------------------------------------------------------------------------
# AH — the mean-score heuristic
# --------------------------------------------------------------------------------------


def _mean_score_nonzero(inst: ScoreInstance):
    """ḡ ≠ 0, decided exactly in float: math.fsum is correctly rounded, so a column sum is 0
    in float exactly when it is 0 in exact arithmetic."""
    if not any(math.fsum(col) != 0.0 for col in np.asarray(inst.G, dtype=float).T):
        return Outcome.not_met("ḡ = 0 in exact arithmetic (the float mean is rounding noise)")
    return {}


def _ah(inst: ScoreInstance) -> Outcome:
    gbar = inst.G.mean(axis=0)
    if not np.any(gbar):
        return Outcome.not_met("ḡ = 0: the heuristic's start vector is undefined")
    # The margin is scale-invariant: evaluate on the exactly rescaled G/c (c a power of two), where
    # λ_max neither underflows (scores near 1e-170: λ ≈ 1e-340 read 0) nor overflows.
    c = float(approx.power_of_two_scale(inst.G))
    Gs = inst.G / c
    est = approx.heuristic(Gs, power_steps=inst.power_steps)
    lam = (
        spectral.lambda_max(Gs.T @ Gs / Gs.shape[0])
        if Gs.shape[1] <= Gs.shape[0]
        else spectral.lambda_max(Gs @ Gs.T / Gs.shape[0])
    )
    scale = max(lam, TINY)
    m = min(est.value - est.mean_score_norm_sq, lam - est.value) / scale
    return _outcome(m, True, estimate=est.value * c * c, lambda_max=lam * c * c, accuracy=est.value / scale)


def _ah_mp(inst: ScoreInstance, dps):
    with working_precision(dps):
        _, _, F, lam, gbar = _mp_fim_parts(inst.G, dps)
        x = gbar
        gn2 = (gbar.T * gbar)[0, 0]
        for _ in range(inst.power_steps):
            x = mp_matmul(F, x)
            x = x / mpmath.sqrt((x.T * x)[0, 0])
        rq = (mp_matmul(mp_matmul(x, F, transpose_a=True), x))[0, 0] / (x.T * x)[0, 0]
        return min(rq - gn2, lam - rq) / lam


def _ah_exact(inst: ScoreInstance) -> Outcome:
    """Weakening: λ̂_H equals λ_max to 1% (accuracy is measured, never promised)."""
    out = _ah(inst)
    if not out.hypotheses_met:
        return out
    return _outcome(out.details["accuracy"] - 0.99)


def _ah_exact_mp(inst, dps):
    with working_precision(dps):
        _, _, F, lam, gbar = _mp_fim_parts(inst.G, dps)
        x = gbar
        for _ in range(inst.power_steps):
            x = mp_matmul(F, x)
            x = x / mpmath.sqrt((x.T * x)[0, 0])
        rq = (mp_matmul(mp_matmul(x, F, transpose_a=True), x))[0, 0] / (x.T * x)[0, 0]
        return rq / lam - mpmath.mpf("0.99")


AH = declare_claim(
    "AH",
    title="heuristic: ‖ḡ‖² ≤ λ̂_H ≤ λ_max (Rayleigh quotient at ḡ/‖ḡ‖, k power steps)",
    statement="For scores G with ḡ ≠ 0 and k ≥ 0 power steps, the Rayleigh quotient λ̂_H of F at "
    "F^k ḡ satisfies ‖ḡ‖² ≤ λ̂_H ≤ λ_max(F). Its accuracy λ̂_H/λ_max is measured.",
    hypotheses=("ḡ ≠ 0",),
    evaluate=_ah,
    evaluate_mp=_ah_mp,
    hypothesis_margins=_mean_score_nonzero,
    strategy=_S + "AH",
    paper_label="heuristic approximation",
    weakenings=(
        declare_weakening(
            "AH-accurate",
            title="λ̂_H ≥ 0.99 λ_max",
            dropped="(accuracy is not promised)",
            evaluate=_ah_exact,
            evaluate_mp=_ah_exact_mp,
            hypothesis_margins=_mean_score_nonzero,
            strategy=_S + "AH-accurate",
        ),
    ),
)


# --------------------------------------------------------------------------------------
# AB — rigorous two-sided bounds
# --------------------------------------------------------------------------------------


def _ab(inst: ScoreInstance) -> Outcome:
    # Relative margins are scale-invariant: evaluate on the exactly rescaled G/c, where λ_max and
    # the terms neither underflow (scores near 1e-170 read "F = 0") nor overflow.
    c = float(approx.power_of_two_scale(inst.G))
    Gs = inst.G / c
    b = approx.two_sided(Gs, lanczos_steps=inst.lanczos_steps, q=inst.q)
    n, p = Gs.shape
    small = Gs @ Gs.T / n if n <= p else Gs.T @ Gs / n
    lam = spectral.lambda_max(small)
    if lam == 0.0:
        return Outcome.not_met("F = 0: every bound is trivially 0")
    low = {k: (lam - v) / lam for k, v in b.lower_terms.items()}
    up = {k: (v - lam) / lam for k, v in b.upper_terms.items()}
    m = min(min(low.values()), min(up.values()))
    c2 = c * c
    return _outcome(m, True, ratio=b.ratio, lower=b.lower * c2, upper=b.upper * c2, lambda_max=lam * c2)


def _ab_mp(inst: ScoreInstance, dps):
    # The Ritz vector of the float run (on the rescaled Gram matrix, as two_sided builds it); its
    # Rayleigh quotient on the exact K is the lower bound adjudicated.
    Gs = inst.G / approx.power_of_two_scale(inst.G)
    Ks = Gs @ Gs.T / inst.G.shape[0]
    _, ritz_vec = approx.lanczos_ritz(0.5 * (Ks + Ks.T), inst.lanczos_steps, _lanczos_start(inst.G))
    with working_precision(dps):
        Gm, K, F, lam, gbar = _mp_fim_parts(inst.G, dps)
        n, p = inst.G.shape
        row = [sum(Gm[i, j] ** 2 for j in range(p)) for i in range(n)]
        diagF = [F[j, j] for j in range(p)]
        y = mp_matrix(ritz_vec.reshape(-1, 1))
        ritz = (mp_matmul(mp_matmul(y, K, transpose_a=True), y))[0, 0] / (y.T * y)[0, 0]
        Kq = mp_matpow(K, inst.q)
        trq = sum(Kq[i, i] for i in range(n))
        rank = approx.structural_rank_bound(inst.G)
        lows = [max(row) / n, (gbar.T * gbar)[0, 0], max(diagF), ritz, (trq / rank) ** (mpmath.mpf(1) / inst.q)]
        ups = [
            sum(K[i, i] for i in range(n)),
            max(sum(abs(K[i, j]) for j in range(n)) for i in range(n)),
            trq ** (mpmath.mpf(1) / inst.q),
        ]
        return min(min(lam - x for x in lows), min(u - lam for u in ups)) / lam


def numerical_rank(G: np.ndarray) -> int:
    """The usual numerical rank: singular values above max(n, P)·eps·σ1 (numpy's matrix_rank)."""
    return int(np.linalg.matrix_rank(G))


def _trace_power_with_rank(inst: ScoreInstance, rank: int) -> tuple[float, float]:
    n = inst.G.shape[0]
    c = approx.power_of_two_scale(inst.G)
    Gs = inst.G / c
    K = Gs @ Gs.T / n
    trq = float(np.trace(np.linalg.matrix_power(K, inst.q)))
    lam = spectral.lambda_max(K)
    return (max(trq, 0.0) / rank) ** (1.0 / inst.q), lam


def _ab_numerical_rank(inst: ScoreInstance) -> Outcome:
    """Weakening of AB: (tr K^q / r)^{1/q} ≤ λ_max with r the *numerical* rank (drops r ≥ rank)."""
    r = numerical_rank(inst.G)
    if r == 0:
        return Outcome.not_met("G = 0")
    term, lam = _trace_power_with_rank(inst, r)
    return _outcome((lam - term) / lam, True, numerical_rank=r, structural_rank=approx.structural_rank_bound(inst.G))


def _ab_numerical_rank_mp(inst: ScoreInstance, dps):
    r = numerical_rank(inst.G)
    with working_precision(dps):
        Gm = mp_matrix(inst.G)
        n = inst.G.shape[0]
        K = mp_matmul(Gm, Gm.T) / n
        lam = mp_eigh(K, dps).lambda_max
        Kq = mp_matpow(K, inst.q)
        trq = sum(Kq[i, i] for i in range(n))
        return (lam - (trq / r) ** (mpmath.mpf(1) / inst.q)) / lam


def _lanczos_start(G: np.ndarray) -> np.ndarray:
    """The start vector of approx.two_sided's Lanczos run, bit for bit: Gḡ computed on the
    exactly rescaled G/c (on G itself Gḡ underflows to 0 near 1e-170 and the start became the
    largest-row fallback), or the largest row when that is exactly zero."""
    Gs = G / approx.power_of_two_scale(G)
    start = Gs @ Gs.mean(axis=0)
    if not np.any(start):
        start = np.zeros(G.shape[0])
        start[int(np.argmax(np.einsum("ij,ij->i", Gs, Gs)))] = 1.0
    return start


AB = declare_claim(
    "AB",
    title="two-sided: L ≤ λ_max(F) ≤ U (norms, diagonal, Lanczos Ritz, trace powers)",
    statement="L = max(max_i‖g_i‖²/n, ‖ḡ‖², max_k F_kk, k-step Lanczos Ritz value, (tr K^q/r)^{1/q}) "
    "≤ λ_max ≤ U = min(tr F, max_i (1/n)Σ_j|⟨g_i,g_j⟩|, (tr K^q)^{1/q}), r = min(P, #nonzero "
    "rows) ≥ rank.",
    hypotheses=("F ≠ 0",),
    evaluate=_ab,
    evaluate_mp=_ab_mp,
    strategy=_S + "AB",
    paper_label="rigorous two-sided approximation",
    weakenings=(
        declare_weakening(
            "AB-numerical-rank",
            title="(tr K^q / r)^{1/q} ≤ λ_max with r the numerical rank (tolerance max(n,P)·eps·σ1)",
            dropped="r ≥ rank(G) (the structural bound)",
            evaluate=_ab_numerical_rank,
            evaluate_mp=_ab_numerical_rank_mp,
            strategy=_S + "AB-numerical-rank",
        ),
    ),
)


def claims() -> list:
    """The family's claims, in registry order."""
    return [AH, AB]
