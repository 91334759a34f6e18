"""Sharp remainder bounds (Kato–Temple, Li–Li, the sharp third-order constant) and S-no-disc.

Notation (docs/theory.md §2): A symmetric with a simple top eigenvalue λ1, top unit eigenvector v,
gap γ = λ1 − λ2; E symmetric, η = ‖E‖₂; λ' = λ_max(A + E). In A's eigenbasis

    A + E = [[λ1 + a, wᵀ], [w, Λ₂ + D]],   a = vᵀEv = a1,  w = V₂ᵀEv (‖w‖ = ‖P⊥Ev‖),  D = V₂ᵀEV₂,

and the *block gap* is g = λ1 + a − λ_max(Λ₂ + D) ≥ γ − 2η.

- **KT** (Kato–Temple): with ρ = λ1 + a the Rayleigh quotient of A + E at v and r = (A + E)v − ρv = w
  its residual, every eigenvalue of A + E other than λ' is ≤ λ2(A + E) ≤ λ2 + η (Weyl), so
  (μ − λ')(μ − λ2 − η) ≥ 0 on the spectrum, vᵀ(A + E − λ')(A + E − λ2 − η)v ≥ 0, i.e.
  ‖w‖² + (ρ − λ')(ρ − λ2 − η) ≥ 0. When g_KT = γ + a − η > 0 this is
  0 ≤ λ' − λ1 − a ≤ ‖w‖²/(γ + a − η)   (g_KT ≥ γ − 2η; the lower side is R).
- **LL** (Li & Li, Linear Algebra Appl. 2005, in the 1 × (n − 1) block form): for unit (x, y),
  x ∈ ℝ, y ⟂ v, the quadratic form of A + E is ≤ that of T = [[λ1 + a, ‖w‖], [‖w‖, λ1 + a − g]]
  at (|x|, ‖y‖), so λ' ≤ λ_max(T) and
  0 ≤ λ' − λ1 − a ≤ (√(g² + 4‖w‖²) − g)/2 = 2‖w‖²/(g + √(g² + 4‖w‖²)).
  For n = 2 the compression is A + E itself: equality, so the bound is attained. The signed g
  needs no hypothesis g > 0 (Li–Li's theorem, for an absolute gap, does).

- **S3**: |λ' − λ1 − a1 − a2| ≤ Kη³/γ² + 8η⁴/(γ²(γ − 2η)), K = 4/(3√3), for 2η < γ: the sharp
  bound |a3| ≤ Kη³/γ² (compression argument, symbolic.sharp_third_order) plus S's Cauchy tail.
- **S3L**: λ' − λ1 − a1 − a2 ≥ −Kη³/γ² − ‖w‖⁴/γ³ for every η (Rayleigh quotient at v + Rw); for
  2η < γ it is the lower half of the conjecture |λ' − λ1 − a1 − a2| ≤ Kη³/(γ(γ − 2η)), which is
  proved for n = 2 and conjectured (not registered) for the upper half at n ≥ 3.

Weakenings (each must be falsified with a certified counterexample):

- **KT-unperturbed-gap**: λ' − λ1 − a ≤ ‖w‖²/γ — the gap of A instead of g_KT (the upper bound
  of a2 used for the whole remainder);
- **LL-unperturbed-gap**: Li–Li with the gap γ of A in place of the block gap g;
- **S3-leading-only**: Kη³/γ² alone; **S3L-second-order**: λ' ≥ λ1 + a1 + a2;
- **S-no-disc**: claim S without 2η < γ — the power series of λ_max(A + tE), summed at t = 1,
  gives λ'. Checked on commuting (diagonal) pairs, where the series is exactly λ1 + tE_11
  (a_k = 0 for k ≥ 2), so the statement reads λ' = λ1 + E_11: false once another diagonal
  entry crosses the top one (possible only when 2η ≥ γ).

Every claim and weakening is declared with :func:`fimtheory.claim_api.declare_claim` /
:func:`fimtheory.claim_api.declare_weakening` and registered (with S-no-disc added to S) through
:func:`fimtheory.claim_api.register_claim` and :func:`fimtheory.claim_api.add_weakenings`. The
hypotheses are checked inside the evaluators (their "not met" reasons name the values involved);
the float margins of those float64 can approach are declared as ``hypothesis_margins``.
T4.3b-S, T4.3c-S and their weakenings declare their interval enclosures (``enclosure=``); the
others' live in :mod:`fimtheory.enclosures` (``ENCLOSURES``), certifiers in
``properties.certify``; strategies in ``properties.claim_strategies``.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
from mpmath import libmp

from fimtheory import claims as _claims
from fimtheory import spectral
from fimtheory.claim_api import Outcome, add_weakenings, declare_claim, declare_weakening, register_claim
from fimtheory.highprec import mp_eigh, mp_matmul, mp_matrix, working_precision
from fimtheory.instances import MatrixPerturbation, NoiseEnsemble
from fimtheory.validation import EPS64

TINY = _claims.TINY
_S = "properties.claim_strategies:"


# --------------------------------------------------------------------------------------
# the block quantities
# --------------------------------------------------------------------------------------


def li_li_bound(g, w2):
    """(√(g² + 4‖w‖²) − g)/2 without cancellation: 2‖w‖²/(g + √(g² + 4‖w‖²)) for g > 0.

    Works on floats and on mpmath numbers (mpf or iv) alike."""
    if isinstance(g, float):
        d = math.hypot(g, 2.0 * math.sqrt(w2))
        return 2.0 * w2 / (g + d) if g > 0 else (d - g) / 2.0
    d = mpmath.sqrt(g * g + 4 * w2)
    return 2 * w2 / (g + d) if g > 0 else (d - g) / 2


def _blocks(inst: MatrixPerturbation) -> dict:
    """Float block quantities: λ1, γ, η, a, ‖w‖², μ = λ_max(Λ₂ + D), g, λ', r = λ' − λ1 − a."""
    eig = spectral.eigen_data(inst.A)
    lam = eig.eigenvalues
    M = spectral.perturbation_in_eigenbasis(eig, inst.E)
    a = float(M[0, 0])
    w2 = spectral.off_top_residual_norm_sq(eig, inst.E)
    B = np.diag(lam[1:]) + M[1:, 1:]
    mu = float(np.linalg.eigvalsh(0.5 * (B + B.T))[-1])
    top = spectral.lambda_max(inst.A + inst.E)
    eta = _claims._norm2(inst.E)
    return {
        "lam1": float(lam[0]),
        "gap": float(eig.gap),
        "eta": eta,
        "a": a,
        "w2": w2,
        "mu": mu,
        "g": float(lam[0]) + a - mu,
        "r": top - float(lam[0]) - a,
        "norm_a": max(abs(float(lam[0])), abs(float(lam[-1]))),
        "eig": eig,
    }


def _mp_blocks(inst: MatrixPerturbation, dps: int) -> dict:
    """The same quantities at ``dps`` digits (call inside working_precision)."""
    A, E = mp_matrix(inst.A), mp_matrix(inst.E)
    eig = mp_eigh(A, dps, vectors=True)
    lam = eig.eigenvalues
    V = eig.eigenvectors
    M = mp_matmul(mp_matmul(V, E, transpose_a=True), V)  # V.T * E * V, bit for bit
    n = M.rows
    a = M[0, 0]
    w2 = mpmath.fsum(((M[j, 0] + M[0, j]) / 2) ** 2 for j in range(1, n))
    B = mpmath.matrix(n - 1, n - 1)
    for i in range(1, n):
        for j in range(1, n):
            B[i - 1, j - 1] = (M[i, j] + M[j, i]) / 2 + (lam[i] if i == j else 0)
    mu = mp_eigh(B, dps).lambda_max
    top = mp_eigh(A + E, dps).lambda_max
    return {
        "lam1": lam[0],
        "gap": lam[0] - lam[1],
        "eta": _claims._mp_sym_norm(E),
        "a": a,
        "w2": w2,
        "mu": mu,
        "g": lam[0] + a - mu,
        "r": top - lam[0] - a,
    }


def _setup(inst: MatrixPerturbation):
    if inst.n < 2:
        return None, "n = 1: no gap"
    b = _blocks(inst)
    if not b["eig"].gap_resolved():
        return None, "γ = 0 (top eigenvalue repeated within rounding)"
    return b, ""


def _scale(b) -> float:
    """η²/γ, the natural size of the remainder λ' − λ1 − a (as for SIGN)."""
    return b["eta"] ** 2 / b["gap"]


def _resolved_scale(b, n: int) -> bool:
    # λ' and a each carry a float error ≲ n·eps·(‖A‖ + η)(1 + ‖A‖/γ) (the top eigenvector's error
    # enters a); a margin divided by η²/γ is then accurate to ~1e-7 when this holds.
    return _claims._resolved(_scale(b), (b["norm_a"] + b["eta"]) * (1 + b["norm_a"] / b["gap"]), n, factor=1e7)


def _two_sided(b, bound, n, **details) -> Outcome:
    if b["eta"] == 0.0:  # E = 0: λ' = λ1, a = 0, w = 0 exactly
        return _claims._outcome(0.0, ratio=0.0, bound=0.0, **details)
    r = b["r"]
    m = min(r, bound - r) / max(_scale(b), TINY)
    ratio = r / bound if bound > 0 else (0.0 if r == 0 else math.inf)
    return _claims._outcome(m, _resolved_scale(b, n), remainder=r, bound=bound, ratio=ratio, **details)


def _one_sided(b, bound, n) -> Outcome:
    if b["eta"] == 0.0:
        return _claims._outcome(0.0)
    return _claims._outcome((bound - b["r"]) / max(_scale(b), TINY), _resolved_scale(b, n), bound=bound)


def _mp_scale(b):
    return b["eta"] ** 2 / b["gap"]


# --------------------------------------------------------------------------------------
# KT — Kato–Temple
# --------------------------------------------------------------------------------------


def kato_temple_gap(gap, a, eta):
    """g_KT = γ + a − η: a lower bound of ρ − λ2(A + E), ρ = λ1 + a (Weyl: λ2(A + E) ≤ λ2 + η)."""
    return gap + a - eta


def _kt(inst: MatrixPerturbation) -> Outcome:
    b, why = _setup(inst)
    if b is None:
        return Outcome.not_met(why)
    gkt = kato_temple_gap(b["gap"], b["a"], b["eta"])
    if not gkt > 0:
        return Outcome.not_met(f"needs γ + a − η > 0 (γ = {b['gap']:.3g}, a = {b['a']:.3g}, η = {b['eta']:.3g})")
    return _two_sided(b, b["w2"] / gkt, inst.n, g_kt=gkt)


def _kt_mp(inst, dps):
    with working_precision(dps):
        b = _mp_blocks(inst, dps)
        if b["eta"] == 0:
            return mpmath.mpf(0)
        bound = b["w2"] / kato_temple_gap(b["gap"], b["a"], b["eta"])
        return min(b["r"], bound - b["r"]) / _mp_scale(b)


def _kt_margins(inst: MatrixPerturbation) -> dict:
    w = np.linalg.eigvalsh(inst.A)
    if inst.n < 2:
        return {}
    b = _blocks(inst)
    scale = _claims._hypothesis_scale(w, b["eta"])
    return {
        "γ > 0": float(w[-1] - w[-2]) / scale,
        "γ + a − η > 0": kato_temple_gap(b["gap"], b["a"], b["eta"]) / scale,
    }


def _kt_unperturbed_gap(inst: MatrixPerturbation) -> Outcome:
    """Weakening: λ' − λ1 − a ≤ ‖w‖²/γ (the gap of A instead of γ + a − η)."""
    b, why = _setup(inst)
    if b is None:
        return Outcome.not_met(why)
    return _one_sided(b, b["w2"] / b["gap"], inst.n)


def _kt_unperturbed_gap_mp(inst, dps):
    with working_precision(dps):
        b = _mp_blocks(inst, dps)
        if b["eta"] == 0:
            return mpmath.mpf(0)
        return (b["w2"] / b["gap"] - b["r"]) / _mp_scale(b)


# --------------------------------------------------------------------------------------
# LL — Li & Li's quadratic residual bound
# --------------------------------------------------------------------------------------


def _ll(inst: MatrixPerturbation) -> Outcome:
    b, why = _setup(inst)
    if b is None:
        return Outcome.not_met(why)
    return _two_sided(b, li_li_bound(b["g"], b["w2"]), inst.n, g=b["g"])


def _ll_mp(inst, dps):
    with working_precision(dps):
        b = _mp_blocks(inst, dps)
        if b["eta"] == 0:
            return mpmath.mpf(0)
        bound = li_li_bound(b["g"], b["w2"])
        return min(b["r"], bound - b["r"]) / _mp_scale(b)


def _ll_unperturbed_gap(inst: MatrixPerturbation) -> Outcome:
    """Weakening: Li–Li with γ in place of the block gap g."""
    b, why = _setup(inst)
    if b is None:
        return Outcome.not_met(why)
    return _one_sided(b, li_li_bound(b["gap"], b["w2"]), inst.n)


def _ll_unperturbed_gap_mp(inst, dps):
    with working_precision(dps):
        b = _mp_blocks(inst, dps)
        if b["eta"] == 0:
            return mpmath.mpf(0)
        return (li_li_bound(b["gap"], b["w2"]) - b["r"]) / _mp_scale(b)


def _gap_margins(inst: MatrixPerturbation) -> dict:
    return _claims._gap_margins(inst.A)


# --------------------------------------------------------------------------------------
# S-no-disc — the series summed at t = 1 outside the disc 2η < γ
# --------------------------------------------------------------------------------------


def _is_diagonal(M: np.ndarray) -> bool:
    return not np.count_nonzero(M - np.diag(np.diag(M)))


def _s_no_disc(inst: MatrixPerturbation) -> Outcome:
    """Weakening of S: λ' = λ1 + Σ_k a_k without 2η < γ, on diagonal pairs (series λ1 + tE_11)."""
    if inst.n < 2:
        return Outcome.not_met("n = 1: no gap")
    if not (_is_diagonal(inst.A) and _is_diagonal(inst.E)):
        return Outcome.not_met("this weakening is checked on diagonal (commuting) pairs, where the series terminates")
    d, e = np.diag(inst.A), np.diag(inst.E)
    order = np.argsort(-d, kind="stable")
    if not d[order[0]] > d[order[1]]:
        return Outcome.not_met("γ = 0 (top diagonal entry of A repeated)")
    k = order[0]
    lam1 = float(d[k])
    eta = float(np.max(np.abs(e)))
    scale = abs(lam1) + eta
    # λ' − λ1 − E_11 = max_j (d_j + e_j) − d_k − e_k; each term correctly rounded (fsum), so the
    # residual is the correctly rounded exact one (0 exactly when the top entry stays on top).
    resid = max(math.fsum([float(d[j]), float(e[j]), -lam1, -float(e[k])]) for j in range(inst.n))
    gap = float(d[order[0]] - d[order[1]])
    return _claims._outcome(
        -abs(resid) / max(scale, TINY), residual=resid, eta_over_gap=eta / gap if gap > 0 else math.inf
    )


def _s_no_disc_mp(inst, dps):
    with working_precision(dps):
        d = [mpmath.mpf(float(x)) for x in np.diag(inst.A)]
        e = [mpmath.mpf(float(x)) for x in np.diag(inst.E)]
        k = max(range(len(d)), key=lambda i: (d[i], -i))
        top = max(x + y for x, y in zip(d, e))
        scale = abs(d[k]) + max(abs(y) for y in e)
        return -abs(top - d[k] - e[k]) / scale if scale else mpmath.mpf(0)


def _s_no_disc_margins(inst: MatrixPerturbation) -> dict:
    return {}


# --------------------------------------------------------------------------------------
# S3 — the second-order remainder with the sharp third-order constant K = 4/(3√3)
# --------------------------------------------------------------------------------------


def sharp_constant(ctx=None):
    """K = 4/(3√3) ≈ 0.7698: float, or in the mpmath context ``ctx`` (mpmath.mp or mpmath.iv)."""
    if ctx is None:
        return 4.0 / (3.0 * math.sqrt(3.0))
    return ctx.mpf(4) / (3 * ctx.sqrt(3))


def sharp_remainder_bound(eta, gap, k):
    """Kη³/γ² + 8η⁴/(γ²(γ − 2η)): |a3| ≤ Kη³/γ² plus the Cauchy tail Σ_{k≥4} η(2η/γ)^{k−1}."""
    return k * eta**3 / gap**2 + 8 * eta**4 / (gap**2 * (gap - 2 * eta))


def conjectured_bound(eta, gap, k):
    """Kη³/(γ(γ − 2η)), the non-asymptotic conjecture (proved for n = 2 only)."""
    return k * eta**3 / (gap * (gap - 2 * eta))


def _s3_parts(inst):
    setup, why = _claims._series_setup(inst)
    if setup is None:
        return None, why
    eig, eta = setup
    M = spectral.perturbation_in_eigenbasis(eig, inst.E)
    a1, a2 = _claims._series.series_coefficients(eig.eigenvalues, M, 2)
    top = spectral.lambda_max(inst.A + inst.E)
    r2 = abs(top - eig.lambda_max - a1 - a2)
    norm_a = max(abs(eig.lambda_max), abs(eig.lambda_min))
    return (eig, eta, r2, norm_a), ""


def _s3_like(inst, bound_of) -> Outcome:
    parts, why = _s3_parts(inst)
    if parts is None:
        return Outcome.not_met(why)
    eig, eta, r2, norm_a = parts
    k = sharp_constant()
    b = bound_of(eta, eig.gap, k)
    ok = _claims._resolved(b, (norm_a + eta) * (1 + norm_a / eig.gap), inst.n, factor=1e7)
    conj = conjectured_bound(eta, eig.gap, k)
    return _claims._outcome(
        (b - r2) / max(b, TINY),
        ok,
        remainder=r2,
        ratio=r2 / max(b, TINY),
        conjecture_ratio=r2 / max(conj, TINY),
        eta_over_gap=eta / eig.gap,
    )


def _s3_like_mp(inst, dps, bound_of):
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        eig = mp_eigh(A, dps, vectors=True)
        eta = _claims._mp_sym_norm(E)
        a1, a2 = _claims._mp_coefficients(eig, E, 2)
        top = mp_eigh(A + E, dps).lambda_max
        b = bound_of(eta, eig.gap, sharp_constant(mpmath.mp))
        return (b - abs(top - eig.lambda_max - a1 - a2)) / b


def _s3(inst):
    return _s3_like(inst, sharp_remainder_bound)


def _s3_mp(inst, dps):
    return _s3_like_mp(inst, dps, sharp_remainder_bound)


def _leading_only(eta, gap, k):
    return k * eta**3 / gap**2


def _s3_leading_only(inst):
    """Weakening: |λ' − λ1 − a1 − a2| ≤ Kη³/γ² (the sharp leading term without its correction)."""
    return _s3_like(inst, _leading_only)


def _s3_leading_only_mp(inst, dps):
    return _s3_like_mp(inst, dps, _leading_only)


# --------------------------------------------------------------------------------------
# S3L — the lower side of the conjecture, proved for every n (and every η)
# --------------------------------------------------------------------------------------


def _s3l_parts(inst):
    if inst.n < 2:
        return None, "n = 1: no gap"
    eig = spectral.eigen_data(inst.A)
    if not eig.gap_resolved():
        return None, "γ = 0 (top eigenvalue repeated within rounding)"
    eta = _claims._norm2(inst.E)
    M = spectral.perturbation_in_eigenbasis(eig, inst.E)
    a1, a2 = _claims._series.series_coefficients(eig.eigenvalues, M, 2)
    top = spectral.lambda_max(inst.A + inst.E)
    rem = top - eig.lambda_max - a1 - a2
    w2 = spectral.off_top_residual_norm_sq(eig, inst.E)
    norm_a = max(abs(eig.lambda_max), abs(eig.lambda_min))
    return (eig, eta, rem, w2, norm_a), ""


def lower_remainder_bound(eta, gap, w2, k):
    """Kη³/γ² + ‖P⊥Ev‖⁴/γ³: λ' − λ1 − a1 − a2 ≥ −(this), for every n and η (γ > 0)."""
    return k * eta**3 / gap**2 + w2 * w2 / gap**3


def _s3l(inst) -> Outcome:
    parts, why = _s3l_parts(inst)
    if parts is None:
        return Outcome.not_met(why)
    eig, eta, rem, w2, norm_a = parts
    if eta == 0.0:
        return _claims._outcome(0.0)
    b = lower_remainder_bound(eta, eig.gap, w2, sharp_constant())
    ok = _claims._resolved(b, (norm_a + eta) * (1 + norm_a / eig.gap), inst.n, factor=1e7)
    return _claims._outcome((rem + b) / max(b, TINY), ok, remainder=rem, ratio=-rem / max(b, TINY))


def _s3l_mp(inst, dps):
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        eig = mp_eigh(A, dps, vectors=True)
        eta = _claims._mp_sym_norm(E)
        if eta == 0:
            return mpmath.mpf(0)
        a1, a2 = _claims._mp_coefficients(eig, E, 2)
        top = mp_eigh(A + E, dps).lambda_max
        b = _mp_blocks(inst, dps)
        bound = lower_remainder_bound(eta, eig.gap, b["w2"], sharp_constant(mpmath.mp))
        return (top - eig.lambda_max - a1 - a2 + bound) / bound


def _s3l_second_order(inst) -> Outcome:
    """Weakening: λ' ≥ λ1 + a1 + a2 (the second-order truncation as a lower bound)."""
    parts, why = _s3l_parts(inst)
    if parts is None:
        return Outcome.not_met(why)
    eig, eta, rem, w2, norm_a = parts
    if eta == 0.0:
        return _claims._outcome(0.0)
    scale = eta**3 / eig.gap**2
    ok = _claims._resolved(scale, (norm_a + eta) * (1 + norm_a / eig.gap), inst.n, factor=1e7)
    return _claims._outcome(rem / scale, ok)


def _s3l_second_order_mp(inst, dps):
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        eig = mp_eigh(A, dps, vectors=True)
        eta = _claims._mp_sym_norm(E)
        if eta == 0:
            return mpmath.mpf(0)
        a1, a2 = _claims._mp_coefficients(eig, E, 2)
        top = mp_eigh(A + E, dps).lambda_max
        return (top - eig.lambda_max - a1 - a2) / (eta**3 / eig.gap**2)


# --------------------------------------------------------------------------------------
# T4.3b-S, T4.3c-S — the sharp lower bound in expectation, and its critical scale
# --------------------------------------------------------------------------------------
#
# Averaging S3L over a finite ensemble {E_k} with Σ_k E_k = 0 exactly (so Σ_k a1_k = 0):
#
#   E λ_max(F + E) ≥ λ1 + E[a2] − K·E[η³]/γ² − E[‖P⊥Ev‖⁴]/γ³         (T4.3b-S, every η),
#
# and for the ensemble sE the bound is s²(C − sB₁ − s²B₂) with C = E[a2], B₁ = K·E[η³]/γ²,
# B₂ = E[‖P⊥Ev‖⁴]/γ³: positive for every 0 < s < s_c^S = 2C/(B₁ + √(B₁² + 4B₂C)) when C > 0
# (genericity). Unlike T4.3b(ii) and T4.3c no 2η̄ < γ is needed, and since per draw
# Kη³/γ² + ‖w‖⁴/γ³ ≤ (K + 1/2)η³/γ² < 4η³/(γ(γ − 2η)) on 2η < γ, s_c^S > s_c always.


def sharp_lower_terms(gap, mean_eta3, mean_w4, k):
    """(B₁, B₂) = (K·E[η³]/γ², E[‖P⊥Ev‖⁴]/γ³) of the T4.3b-S bound (floats, mpf or iv)."""
    return k * mean_eta3 / gap**2, mean_w4 / gap**3


def sharp_ensemble_critical_scale(gap, mean_a2, mean_eta3, mean_w4, k=None):
    """s_c^S = 2E[a2]/(B₁ + √(B₁² + 4B₂E[a2])): the positive root of E[a2] − sB₁ − s²B₂
    (floats, mpf or iv; ``k`` defaults to the float K). Needs γ > 0 and E[a2] > 0."""
    k = sharp_constant() if k is None else k
    b1, b2 = sharp_lower_terms(gap, mean_eta3, mean_w4, k)
    if isinstance(b1, float):
        if not (gap > 0 and mean_a2 > 0):
            raise ValueError("needs γ > 0 and E[a2] > 0")
        return 2.0 * mean_a2 / (b1 + math.sqrt(b1 * b1 + 4.0 * b2 * mean_a2))
    ctx = mpmath.iv if isinstance(b1, mpmath.ctx_iv.ivmpf) else mpmath.mp
    return 2 * mean_a2 / (b1 + ctx.sqrt(b1 * b1 + 4 * b2 * mean_a2))


def _ensemble_parts(F: np.ndarray, Es) -> dict:
    """Float a2, η, ‖P⊥Ev‖² and λ_max(F + E) per draw, and λ1, γ of F."""
    eig = spectral.eigen_data(F)
    a2s, etas, w2s, tops = [], [], [], []
    for E in Es:
        M = spectral.perturbation_in_eigenbasis(eig, E)
        a2s.append(float(_claims._series.series_coefficients(eig.eigenvalues, M, 2)[1]))
        etas.append(_claims._norm2(E))
        w2s.append(spectral.off_top_residual_norm_sq(eig, E))
        tops.append(spectral.lambda_max(F + E))
    return {
        "eig": eig,
        "a2": np.array(a2s),
        "eta": np.array(etas),
        "w2": np.array(w2s),
        "top": np.array(tops),
        "norm_f": max(abs(float(eig.lambda_max)), abs(float(eig.lambda_min))),
    }


def _ensemble_setup(inst: NoiseEnsemble):
    if not inst.exact_mean_is_zero():
        return None, "the noise ensemble's mean is not exactly zero"
    if inst.F.shape[0] < 2:
        return None, "n = 1: no gap"
    eig = spectral.eigen_data(inst.F)
    if not eig.gap_resolved():
        return None, "γ = 0 (top eigenvalue of F repeated within rounding)"
    return _ensemble_parts(inst.F, inst.scaled()), ""


def _t43b_sharp_like(inst: NoiseEnsemble, with_cubic: bool, with_quartic: bool) -> Outcome:
    p, why = _ensemble_setup(inst)
    if p is None:
        return Outcome.not_met(why)
    eig, n = p["eig"], inst.F.shape[0]
    gap, lam1 = float(eig.gap), float(eig.lambda_max)
    b1, b2 = sharp_lower_terms(gap, float(np.mean(p["eta"] ** 3)), float(np.mean(p["w2"] ** 2)), sharp_constant())
    b = (b1 if with_cubic else 0.0) + (b2 if with_quartic else 0.0)
    eta_bar = float(p["eta"].max())
    if not any(np.any(E) for E in inst.scaled()):
        # E = 0 exactly on every draw: λ' = λ1 and a2 = 0 exactly, an equality (no adjudication)
        return Outcome(True, 0.0, False, "", {"remainder": 0.0, "bound": 0.0})
    if eta_bar == 0.0:
        return _claims._outcome(0.0, False, remainder=0.0, bound=0.0)
    rem = float(np.mean(p["top"])) - lam1 - float(np.mean(p["a2"]))
    # a bound that is 0 (no correction, or w = 0 on every draw with the cubic dropped) is
    # normalised by the η³/γ² scale of the third-order term instead
    scale = b if b > 0 else eta_bar**3 / gap**2
    ok = _claims._resolved(scale, (p["norm_f"] + eta_bar) * (1 + p["norm_f"] / gap), n, factor=1e7)
    return _claims._outcome(
        (rem + b) / max(scale, TINY),
        ok,
        remainder=rem,
        bound=b,
        ratio=-rem / b if b > 0 else math.nan,
        eta_bar_over_gap=eta_bar / gap,
        mean_a2=float(np.mean(p["a2"])),
    )


def _t43b_sharp_like_mp(inst: NoiseEnsemble, dps, with_cubic: bool, with_quartic: bool):
    """The T4.3b-S margin at ``dps`` digits of *result*: the margin divides a difference of O(λ1)
    terms by a bound that can be far below λ1 (η ~ 1e-17 gives η³/γ² ~ 1e-51), so the working
    precision is raised by the digits that division costs."""
    extra = _t43b_scale_digits(inst, with_cubic, with_quartic)
    value, ratio = _t43b_sharp_like_mp_at(inst, dps + extra, with_cubic, with_quartic)
    needed = _digits_for_ratio(ratio)
    if needed > extra:  # the float estimate of the bound was too coarse: one more pass
        value, _ = _t43b_sharp_like_mp_at(inst, dps + needed, with_cubic, with_quartic)
    return value


def _digits_for_ratio(ratio) -> int:
    """Digits lost to dividing O(λ1) terms by a bound ``ratio`` times smaller (plus 5 guard)."""
    if ratio is None or ratio <= 1:
        return 0
    return int(mpmath.ceil(mpmath.log10(ratio))) + 5


def _t43b_scale_digits(inst: NoiseEnsemble, with_cubic: bool, with_quartic: bool) -> int:
    """A float64 estimate of :func:`_digits_for_ratio` for the T4.3b-S margin, so the
    high-precision evaluators usually need one pass (they re-check with the exact ratio)."""
    p, _ = _ensemble_setup(inst)
    if p is None:
        return 0
    gap, lam1 = float(p["eig"].gap), float(p["eig"].lambda_max)
    b1, b2 = sharp_lower_terms(gap, float(np.mean(p["eta"] ** 3)), float(np.mean(p["w2"] ** 2)), sharp_constant())
    b = (b1 if with_cubic else 0.0) + (b2 if with_quartic else 0.0)
    scale = b if b > 0 else float(p["eta"].max()) ** 3 / gap**2
    if not (scale > 0 and math.isfinite(scale)):
        return 0
    return _digits_for_ratio(mpmath.mpf(abs(lam1) + 1) / mpmath.mpf(scale))


def _t43b_sharp_like_mp_at(inst: NoiseEnsemble, dps, with_cubic: bool, with_quartic: bool):
    with working_precision(dps):
        F = mp_matrix(inst.F)
        eig = mp_eigh(F, dps, vectors=True)
        a2s, eta3, w4, tops = [], [], [], []
        v = eig.vector(0)
        for E in inst.scaled():
            Em = mp_matrix(E)
            a2s.append(_claims._mp_coefficients(eig, Em, 2)[1])
            eta3.append(_claims._mp_sym_norm(Em) ** 3)
            Ev = Em * v
            r = Ev - v * (v.T * Ev)[0, 0]
            w4.append(mpmath.fsum(r[i, 0] ** 2 for i in range(r.rows)) ** 2)
            tops.append(mp_eigh(F + Em, dps).lambda_max)
        m = len(tops)
        gap = eig.gap
        b1, b2 = sharp_lower_terms(gap, mpmath.fsum(eta3) / m, mpmath.fsum(w4) / m, sharp_constant(mpmath.mp))
        b = (b1 if with_cubic else 0) + (b2 if with_quartic else 0)
        eta_bar = max(eta3) ** (mpmath.mpf(1) / 3)
        if eta_bar == 0:
            return mpmath.mpf(0), None
        rem = mpmath.fsum(tops) / m - eig.lambda_max - mpmath.fsum(a2s) / m
        scale = b if b > 0 else eta_bar**3 / gap**2
        return (rem + b) / scale, (abs(eig.lambda_max) + 1) / scale


def _t43b_sharp(inst):
    return _t43b_sharp_like(inst, True, True)


def _t43b_sharp_mp(inst, dps):
    return _t43b_sharp_like_mp(inst, dps, True, True)


def _t43b_sharp_second_order(inst):
    """Weakening: E λ_max(F + E) ≥ λ1 + E[a2] (no third-order correction)."""
    return _t43b_sharp_like(inst, False, False)


def _t43b_sharp_second_order_mp(inst, dps):
    return _t43b_sharp_like_mp(inst, dps, False, False)


def _t43b_sharp_no_cubic(inst):
    """Weakening: E λ_max(F + E) ≥ λ1 + E[a2] − E[‖P⊥Ev‖⁴]/γ³ (the K·E[η³]/γ² term dropped)."""
    return _t43b_sharp_like(inst, False, True)


def _t43b_sharp_no_cubic_mp(inst, dps):
    return _t43b_sharp_like_mp(inst, dps, False, True)


def _ensemble_gap_margins(inst: NoiseEnsemble) -> dict:
    return _claims._gap_margins(inst.F)


#: T4.3c-S evaluates the elevation at these fractions of s_c^S (the largest is outside the
#: old s_c whenever the gain exceeds 1/0.9).
T43C_S_FRACTIONS = (0.5, 0.9)


def _t43c_sharp_core(inst: NoiseEnsemble, require_generic: bool) -> Outcome:
    if not inst.exact_mean_is_zero():
        return Outcome.not_met("the noise ensemble's mean is not exactly zero")
    if inst.F.shape[0] < 2:
        return Outcome.not_met("n = 1: no gap")
    eig = spectral.eigen_data(inst.F)
    if not eig.gap_resolved():
        return Outcome.not_met("γ = 0 (top eigenvalue of F repeated within rounding)")
    Es = inst.scaled()
    if require_generic and not _claims._generic(eig, Es):
        return Outcome.not_met("genericity fails: P⊥Ev = 0 for every draw")
    p = _ensemble_parts(inst.F, Es)
    gap, lam1 = float(eig.gap), float(eig.lambda_max)
    ea2, e3, w4 = float(np.mean(p["a2"])), float(np.mean(p["eta"] ** 3)), float(np.mean(p["w2"] ** 2))
    eta_bar = float(p["eta"].max())
    if ea2 > 0:
        sc = sharp_ensemble_critical_scale(gap, ea2, e3, w4)
        scales = [f * sc for f in T43C_S_FRACTIONS]
        old = _claims.critical_scale(gap, ea2, e3, eta_bar)
    else:
        # not generic: no positive leading term; test at a scale inside the analytic disc
        sc, old = 0.0, 0.0
        scales = [0.25 * gap / max(eta_bar, TINY)]
    scale = abs(lam1)
    margins = [
        (float(np.mean([spectral.lambda_max(inst.F + s * E) for E in Es])) - lam1) / max(scale, TINY) for s in scales
    ]
    m = min(margins)
    predicted = min(s * s * ea2 for s in scales)
    ok = _resolved_ensemble(predicted, scale, inst.F.shape[0])
    n = inst.F.shape[0]
    rounding = 128 * n * EPS64 * (scale + max(scales) * eta_bar) / max(scale, TINY)
    needs = (not ok) or not (m > rounding)
    details = {
        "s": max(scales),
        "s_low": min(scales),
        "s_c_sharp": sc,
        "s_c_old": old,
        "gain": sc / old if old > 0 else math.nan,
        "mean_a2": ea2,
        "rounding_bound": rounding,
    }
    return Outcome(True, m, needs, "", details, float_resolved=ok)


def _tested_scales(out: Outcome) -> list:
    return sorted({float(out.details["s_low"]), float(out.details["s"])})


def _resolved_ensemble(predicted, scale, n):
    return _claims._resolved(predicted, scale, n)


def _t43c_sharp_mp(inst: NoiseEnsemble, dps, require_generic=True):
    out = _t43c_sharp_core(inst, require_generic)
    with working_precision(dps):
        F = mp_matrix(inst.F)
        lam = mp_eigh(F, dps).lambda_max
        ms = []
        for s in _tested_scales(out):
            tops = [mp_eigh(F + mp_matrix(s * E), dps).lambda_max for E in inst.scaled()]
            ms.append((mpmath.fsum(tops) / len(tops) - lam) / abs(lam))
        return min(ms)


def _t43c_sharp(inst):
    return _t43c_sharp_core(inst, True)


def _t43c_sharp_no_genericity(inst):
    """Weakening: strict elevation without genericity (at s = γ/(4η̄) when E[a2] = 0)."""
    return _t43c_sharp_core(inst, False)


def _t43c_sharp_no_genericity_mp(inst, dps):
    return _t43c_sharp_mp(inst, dps, False)


# ---- interval enclosures (rigorous adjudication and certification) -------------------------


def _iv_ensemble(inst: NoiseEnsemble, need_tops: bool = True):
    """Interval λ1, γ, TopEigen of F and per draw a2, η, ‖P⊥Ev‖² (and λ_max(F + E))."""
    from fimtheory import enclosures as enc

    if not inst.exact_mean_is_zero():
        raise enc.HypothesisFails("the noise ensemble's mean is not exactly zero")
    F_iv = enc.iv_matrix(inst.F)
    encF = enc.iv_eigenvalue_enclosures(F_iv)
    if len(encF) < 2:
        raise enc.HypothesisFails("n = 1: no gap")
    enc.require_positive("γ > 0", encF[0] - encF[1])
    te = enc.top_eigen(F_iv, encF)
    a2s, etas, w2s, tops = [], [], [], []
    for E in inst.scaled():
        E_iv = enc.iv_matrix(E)
        a2s.append(enc.series_coefficients_iv(te, E_iv, 2)[1])
        etas.append(enc.iv_sym_norm(enc.iv_eigenvalue_enclosures(E_iv)))
        w2s.append(enc.off_top_residual_sq(te, E_iv))
        if need_tops:
            tops.append(enc.iv_lambda_max(F_iv + E_iv))
    return F_iv, te, a2s, etas, w2s, tops


def _iv_mean(xs):
    return sum(xs, mpmath.iv.mpf(0)) / len(xs)


def _m_t43b_sharp_like(with_cubic: bool, with_quartic: bool):
    def margin_at_current_precision(inst):
        from fimtheory import enclosures as enc

        _, te, a2s, etas, w2s, tops = _iv_ensemble(inst)
        eta_bar = enc.iv_max(etas)
        if enc.hi(eta_bar) == 0:
            return mpmath.iv.mpf(0), None
        gap = te.gap
        b1, b2 = sharp_lower_terms(
            gap, _iv_mean([e**3 for e in etas]), _iv_mean([enc.iv_sq(w) for w in w2s]), sharp_constant(mpmath.iv)
        )
        zero = mpmath.iv.mpf(0)
        b = (b1 if with_cubic else zero) + (b2 if with_quartic else zero)
        rem = _iv_mean(tops) - te.lam1 - _iv_mean(a2s)
        if enc.lo(b) > 0:
            denominator = b
        elif enc.hi(b) == 0:
            denominator = eta_bar**3 / gap**2
        else:
            raise enc.EnclosureError("the sign of the bound (0 or > 0) is undecided")
        # rem is a difference of O(λ1) terms divided by a denominator that can be many orders
        # below λ1 (η ~ 1e-17 gives η³/γ² ~ 1e-51): report how many digits that division costs
        smallest = enc.lo(abs(denominator))
        scale = (enc.hi(abs(te.lam1)) + 1) / smallest if smallest > 0 else None
        return enc.iv_div(rem + (b if enc.lo(b) > 0 else zero), denominator, "the T4.3b-S bound"), scale

    def at_extra_digits(inst, extra):
        old_mp, old_iv = mpmath.mp.dps, mpmath.iv.dps
        mpmath.mp.dps, mpmath.iv.dps = old_mp + extra, old_iv + extra
        try:
            return margin_at_current_precision(inst)
        finally:
            mpmath.mp.dps, mpmath.iv.dps = old_mp, old_iv

    def margin(inst):
        # precision adapted to the scale of the terms: the relative width of the result then
        # matches the working precision instead of losing log10(scale) digits
        extra = _t43b_scale_digits(inst, with_cubic, with_quartic)
        value, scale = at_extra_digits(inst, extra)
        needed = _digits_for_ratio(scale)
        if needed > extra:
            value, _ = at_extra_digits(inst, needed)
        # round the endpoints outward to the caller's precision: a later conversion at that
        # precision would otherwise round them to nearest and could cut off the true value
        a, b = value._mpi_
        prec = mpmath.iv.prec
        return mpmath.iv.mpf(
            [
                mpmath.mpf(libmp.mpf_pos(a, prec, libmp.round_floor)),
                mpmath.mpf(libmp.mpf_pos(b, prec, libmp.round_ceiling)),
            ]
        )

    return margin


def _iv_critical_scale(inst, require_generic: bool):
    """(float s of the float evaluation, proved s < s_c^S?) — each s is certified inside the
    region by an interval s_c^S, so a violation at s is a violation of the claim."""
    from fimtheory import enclosures as enc

    out = _t43c_sharp_core(inst, require_generic)
    if not out.hypotheses_met:
        raise enc.HypothesisFails(out.reason)
    return out


def _m_t43c_sharp_factory(require_generic: bool):
    def margin(inst):
        from fimtheory import enclosures as enc

        out = _iv_critical_scale(inst, require_generic)
        scales = _tested_scales(out)
        Es = [[s * E for E in inst.scaled()] for s in scales]
        encF = enc.float_eigenvalue_enclosures(inst.F)
        enc.require_positive("γ > 0", encF[0] - encF[1])
        exact = [enc._exact_diagonal_t43c(inst.F, e) for e in Es]
        if all(x is not None for x in exact):
            return enc.fraction_interval(min(exact))
        if require_generic:
            _, te, a2s, etas, w2s, _ = _iv_ensemble(inst, need_tops=False)
            ea2 = _iv_mean(a2s)
            if not enc.lo(ea2) > 0:
                raise enc.EnclosureError("E[a2] > 0 not certified at this precision")
            sc = sharp_ensemble_critical_scale(
                te.gap,
                ea2,
                _iv_mean([e**3 for e in etas]),
                _iv_mean([enc.iv_sq(w) for w in w2s]),
                sharp_constant(mpmath.iv),
            )
            if not max(scales) < enc.lo(sc):
                raise enc.EnclosureError("the tested scale is not certified below s_c^S")
        lam = encF[0]
        ms = []
        for e in Es:
            tops = [enc.iv_lambda_max(enc.iv_sum(inst.F, E)) for E in e]
            ms.append(enc.iv_div(_iv_mean(tops) - lam, enc.iv_abs(lam)))
        return enc.iv_min(ms)

    return margin


# --------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------


S_NO_DISC = declare_weakening(
    "S-no-disc",
    title="S without 2η < γ: the series summed at t = 1 is λ' (on diagonal pairs: λ' = λ1 + E_11)",
    dropped="2η < γ",
    evaluate=_s_no_disc,
    evaluate_mp=_s_no_disc_mp,
    strategy=_S + "S-no-disc",
)

KT = declare_claim(
    "KT",
    title="Kato–Temple: 0 ≤ λ' − λ1 − a ≤ ‖P⊥Ev‖²/(γ + a − η)",
    statement="For symmetric A with γ > 0, symmetric E with a = vᵀEv, η = ‖E‖₂ and γ + a − η > 0: "
    "0 ≤ λ_max(A+E) − λ1 − a ≤ ‖P⊥Ev‖²/(γ + a − η) (Kato–Temple at the Rayleigh quotient λ1 + a, "
    "with λ2(A+E) ≤ λ2 + η).",
    hypotheses=("A symmetric (PSD in our instances)", "E symmetric", "γ > 0", "γ + a − η > 0 (implied by 2η < γ)"),
    evaluate=_kt,
    evaluate_mp=_kt_mp,
    hypothesis_margins=_kt_margins,
    strategy=_S + "KT",
    paper_label="Kato–Temple (literature)",
    weakenings=(
        declare_weakening(
            "KT-unperturbed-gap",
            title="λ' − λ1 − a ≤ ‖P⊥Ev‖²/γ (the gap of A)",
            dropped="the shift a − η of the Kato–Temple gap",
            evaluate=_kt_unperturbed_gap,
            evaluate_mp=_kt_unperturbed_gap_mp,
            hypothesis_margins=_gap_margins,
            strategy=_S + "KT-unperturbed-gap",
        ),
    ),
    note="sharper than S2's first-order bound: ‖P⊥Ev‖²/(γ + a − η) ≤ η²/(γ − 2η)",
)

LL = declare_claim(
    "LL",
    title="Li–Li: 0 ≤ λ' − λ1 − a ≤ 2‖w‖²/(g + √(g² + 4‖w‖²)), g = λ1 + a − λ_max(Λ₂ + D)",
    statement="For symmetric A with γ > 0 and symmetric E, with a = vᵀEv, w = P⊥Ev and g the gap between "
    "the diagonal blocks of A + E in A's eigenbasis: 0 ≤ λ_max(A+E) − λ1 − a ≤ "
    "(√(g² + 4‖w‖²) − g)/2, with equality for n = 2.",
    hypotheses=("A symmetric (PSD in our instances)", "E symmetric", "γ > 0"),
    evaluate=_ll,
    evaluate_mp=_ll_mp,
    hypothesis_margins=_gap_margins,
    strategy=_S + "LL",
    paper_label="Li & Li, LAA 2005 (literature)",
    weakenings=(
        declare_weakening(
            "LL-unperturbed-gap",
            title="Li–Li with the gap γ of A in place of the block gap g",
            dropped="the perturbation of the block gap (a and D)",
            evaluate=_ll_unperturbed_gap,
            evaluate_mp=_ll_unperturbed_gap_mp,
            hypothesis_margins=_gap_margins,
            strategy=_S + "LL-unperturbed-gap",
        ),
    ),
    note="attained (equality) for n = 2; holds for every sign of g",
)


S3 = declare_claim(
    "S3",
    title="sharp second-order remainder: |λ'−λ1−a1−a2| ≤ (4/(3√3))η³/γ² + 8η⁴/(γ²(γ−2η))",
    statement="For symmetric A with γ > 0 and symmetric E with 2η < γ: |λ_max(A+E) − λ1 − a1 − a2| ≤ "
    "Kη³/γ² + 8η⁴/(γ²(γ − 2η)), K = 4/(3√3), the sharp constant of the η³ term (|a3| ≤ Kη³/γ², "
    "equality on the 2 × 2 family E ∝ [[c, s], [s, −c]], c = ±1/√3).",
    hypotheses=("A symmetric (PSD in our instances)", "E symmetric", "γ > 0", "2η < γ"),
    evaluate=_s3,
    evaluate_mp=_s3_mp,
    hypothesis_margins=_claims._gap_eta_margins,
    strategy=_S + "S3",
    paper_label="sharp third-order constant (S3)",
    weakenings=(
        declare_weakening(
            "S3-leading-only",
            title="|λ'−λ1−a1−a2| ≤ (4/(3√3))η³/γ² (the leading term alone)",
            dropped="the η⁴ correction 8η⁴/(γ²(γ−2η))",
            evaluate=_s3_leading_only,
            evaluate_mp=_s3_leading_only_mp,
            hypothesis_margins=_claims._gap_eta_margins,
            strategy=_S + "S3-leading-only",
        ),
    ),
    note=(
        "the conjecture |λ'−λ1−a1−a2| ≤ Kη³/(γ(γ−2η)) is proved for n = 2 only "
        "(symbolic.sharp_third_order); for n ≥ 3 it is a conjecture with evidence, not a checked claim"
    ),
)


S3L = declare_claim(
    "S3L",
    title="lower side, every n and η: λ'−λ1−a1−a2 ≥ −(4/(3√3))η³/γ² − ‖P⊥Ev‖⁴/γ³",
    statement="For symmetric A with γ > 0 and any symmetric E: λ_max(A+E) − λ1 − a1 − a2 ≥ −Kη³/γ² − "
    "‖P⊥Ev‖⁴/γ³ (the Rayleigh quotient at v + Rw, R the reduced resolvent, and |a3| ≤ Kη³/γ²); "
    "for 2η < γ this is the lower half of the conjecture |λ'−λ1−a1−a2| ≤ Kη³/(γ(γ−2η)).",
    hypotheses=("A symmetric (PSD in our instances)", "E symmetric", "γ > 0"),
    evaluate=_s3l,
    evaluate_mp=_s3l_mp,
    hypothesis_margins=_gap_margins,
    strategy=_S + "S3L",
    paper_label="sharp third-order constant, lower side (S3L)",
    weakenings=(
        declare_weakening(
            "S3L-second-order",
            title="λ' ≥ λ1 + a1 + a2 (the second-order truncation is a lower bound)",
            dropped="the third-order term −Kη³/γ² − ‖P⊥Ev‖⁴/γ³",
            evaluate=_s3l_second_order,
            evaluate_mp=_s3l_second_order_mp,
            hypothesis_margins=_gap_margins,
            strategy=_S + "S3L-second-order",
        ),
    ),
    note="with 2η < γ it proves the lower half of the sharp conjecture for every n (2K ≥ 1)",
)


T43B_S = declare_claim(
    "T4.3b-S",
    title="sharp, in expectation: E λ_max(F+E) ≥ λ1 + E[a2] − (4/(3√3))E[η³]/γ² − E[‖P⊥Ev‖⁴]/γ³",
    statement="For F symmetric with γ > 0 and a finite distribution of symmetric E with mean exactly zero: "
    "E λ_max(F+E) ≥ λ1 + E[a2] − K·E[η³]/γ² − E[‖P⊥Ev‖⁴]/γ³, K = 4/(3√3), for every size of E "
    "(S3L averaged; E[a1] = 0). It replaces T4.3b(ii)'s 4E[η³]/(γ(γ − 2η̄)) and needs no 2η̄ < γ.",
    hypotheses=("F symmetric (PSD in our instances)", "E[E] = 0 exactly", "γ > 0"),
    evaluate=_t43b_sharp,
    evaluate_mp=_t43b_sharp_mp,
    enclosure=_m_t43b_sharp_like(True, True),
    hypothesis_margins=_ensemble_gap_margins,
    strategy=_S + "T4.3b-S",
    paper_label="Thm 4.3 (b), sharp constant (T4.3b-S)",
    weakenings=(
        declare_weakening(
            "T4.3b-S-second-order",
            title="E λ_max(F+E) ≥ λ1 + E[a2] (the second-order truncation in expectation)",
            dropped="the correction −K·E[η³]/γ² − E[‖P⊥Ev‖⁴]/γ³",
            evaluate=_t43b_sharp_second_order,
            evaluate_mp=_t43b_sharp_second_order_mp,
            enclosure=_m_t43b_sharp_like(False, False),
            hypothesis_margins=_ensemble_gap_margins,
            strategy=_S + "T4.3b-S-second-order",
        ),
        declare_weakening(
            "T4.3b-S-no-cubic",
            title="E λ_max(F+E) ≥ λ1 + E[a2] − E[‖P⊥Ev‖⁴]/γ³ (the K·E[η³]/γ² term dropped)",
            dropped="the cubic term K·E[η³]/γ² (needed when the ensemble is not symmetric, E[a3] ≠ 0)",
            evaluate=_t43b_sharp_no_cubic,
            evaluate_mp=_t43b_sharp_no_cubic_mp,
            enclosure=_m_t43b_sharp_like(False, True),
            hypothesis_margins=_ensemble_gap_margins,
            strategy=_S + "T4.3b-S-no-cubic",
        ),
    ),
    note="on antithetic ensembles {±E_k} E[a3] = 0 and the bound is loose; the cubic term is needed otherwise",
)

T43C_S = declare_claim(
    "T4.3c-S",
    title="sharp critical scale: E λ_max(F+sE) > λ_max(F) for 0 < s < s_c^S = 2E[a2]/(B₁ + √(B₁² + 4B₂E[a2]))",
    statement="For F symmetric with γ > 0 and a finite zero-mean distribution of E with P⊥Ev ≠ 0 for some "
    "draw: E λ_max(F+sE) > λ_max(F) for every 0 < s < s_c^S, the positive root of "
    "E[a2] − sB₁ − s²B₂ with B₁ = K·E[η³]/γ², B₂ = E[‖P⊥Ev‖⁴]/γ³ (T4.3b-S applied to sE); "
    "s_c^S > s_c of T4.3c always and needs no 2sη̄ < γ. Checked at s = s_c^S/2 and 0.9·s_c^S.",
    hypotheses=(
        "F symmetric (PSD in our instances)",
        "γ > 0",
        "E[E] = 0 exactly",
        "genericity: P⊥Ev ≠ 0 for some draw",
    ),
    evaluate=_t43c_sharp,
    evaluate_mp=_t43c_sharp_mp,
    enclosure=_m_t43c_sharp_factory(True),
    hypothesis_margins=_ensemble_gap_margins,
    strategy=_S + "T4.3c-S",
    paper_label="Thm 4.3 (c), sharp critical scale (T4.3c-S)",
    strict=True,
    weakenings=(
        declare_weakening(
            "T4.3c-S-no-genericity",
            title="strict elevation without genericity (E commuting with F)",
            dropped="genericity",
            evaluate=_t43c_sharp_no_genericity,
            evaluate_mp=_t43c_sharp_no_genericity_mp,
            enclosure=_m_t43c_sharp_factory(False),
            hypothesis_margins=_ensemble_gap_margins,
            strategy=_S + "T4.3c-S-no-genericity",
            strict=True,
        ),
    ),
    note="the interval evaluator certifies each tested s below an interval enclosure of s_c^S",
)


def claims() -> list:
    """The family's claims, in registry order (S-no-disc is a weakening of S)."""
    return [KT, LL, S3, S3L, T43B_S, T43C_S]


def _register() -> None:
    """Add KT, LL, S3, S3L, T4.3b-S and T4.3c-S to the registry and S-no-disc to the
    weakenings of S (idempotent), through the public API (fimtheory.claim_api)."""
    for c in claims():
        register_claim(c)
    add_weakenings("S", S_NO_DISC)


_register()

__all__ = [
    "KT",
    "LL",
    "S3",
    "S3L",
    "S_NO_DISC",
    "T43B_S",
    "T43C_S",
    "sharp_ensemble_critical_scale",
    "sharp_lower_terms",
    "lower_remainder_bound",
    "conjectured_bound",
    "kato_temple_gap",
    "li_li_bound",
    "sharp_constant",
    "sharp_remainder_bound",
    "EPS64",
]
