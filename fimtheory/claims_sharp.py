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

Interval evaluators live in :mod:`fimtheory.enclosures` (``ENCLOSURES``), certifiers in
``properties.certify``; strategies in ``properties.claim_strategies``.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

from fimtheory import claims as _claims
from fimtheory import spectral
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision
from fimtheory.instances import MatrixPerturbation
from fimtheory.validation import EPS64

Claim, Weakening, Outcome = _claims.Claim, _claims.Weakening, _claims.Outcome
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
    eig = mp_eigh(A, dps)
    lam = eig.eigenvalues
    V = eig.eigenvectors
    M = V.T * E * V
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
        eig = mp_eigh(A, dps)
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
        eig = mp_eigh(A, dps)
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
        eig = mp_eigh(A, dps)
        eta = _claims._mp_sym_norm(E)
        if eta == 0:
            return mpmath.mpf(0)
        a1, a2 = _claims._mp_coefficients(eig, E, 2)
        top = mp_eigh(A + E, dps).lambda_max
        return (top - eig.lambda_max - a1 - a2) / (eta**3 / eig.gap**2)


# --------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------


def _wrap(evaluate, margins_of):
    return _claims._with_hypothesis_margins(evaluate, margins_of)


S_NO_DISC = Weakening(
    "S-no-disc",
    "S without 2η < γ: the series summed at t = 1 is λ' (on diagonal pairs: λ' = λ1 + E_11)",
    "2η < γ",
    _s_no_disc,
    _s_no_disc_mp,
    _S + "S-no-disc",
)

KT = Claim(
    "KT",
    "Kato–Temple: 0 ≤ λ' − λ1 − a ≤ ‖P⊥Ev‖²/(γ + a − η)",
    "For symmetric A with γ > 0, symmetric E with a = vᵀEv, η = ‖E‖₂ and γ + a − η > 0: "
    "0 ≤ λ_max(A+E) − λ1 − a ≤ ‖P⊥Ev‖²/(γ + a − η) (Kato–Temple at the Rayleigh quotient λ1 + a, "
    "with λ2(A+E) ≤ λ2 + η).",
    ("A symmetric (PSD in our instances)", "E symmetric", "γ > 0", "γ + a − η > 0 (implied by 2η < γ)"),
    _wrap(_kt, _kt_margins),
    _kt_mp,
    _S + "KT",
    "Kato–Temple (literature)",
    weakenings=(
        Weakening(
            "KT-unperturbed-gap",
            "λ' − λ1 − a ≤ ‖P⊥Ev‖²/γ (the gap of A)",
            "the shift a − η of the Kato–Temple gap",
            _wrap(_kt_unperturbed_gap, _gap_margins),
            _kt_unperturbed_gap_mp,
            _S + "KT-unperturbed-gap",
        ),
    ),
    note="sharper than S2's first-order bound: ‖P⊥Ev‖²/(γ + a − η) ≤ η²/(γ − 2η)",
)

LL = Claim(
    "LL",
    "Li–Li: 0 ≤ λ' − λ1 − a ≤ 2‖w‖²/(g + √(g² + 4‖w‖²)), g = λ1 + a − λ_max(Λ₂ + D)",
    "For symmetric A with γ > 0 and symmetric E, with a = vᵀEv, w = P⊥Ev and g the gap between "
    "the diagonal blocks of A + E in A's eigenbasis: 0 ≤ λ_max(A+E) − λ1 − a ≤ "
    "(√(g² + 4‖w‖²) − g)/2, with equality for n = 2.",
    ("A symmetric (PSD in our instances)", "E symmetric", "γ > 0"),
    _wrap(_ll, _gap_margins),
    _ll_mp,
    _S + "LL",
    "Li & Li, LAA 2005 (literature)",
    weakenings=(
        Weakening(
            "LL-unperturbed-gap",
            "Li–Li with the gap γ of A in place of the block gap g",
            "the perturbation of the block gap (a and D)",
            _wrap(_ll_unperturbed_gap, _gap_margins),
            _ll_unperturbed_gap_mp,
            _S + "LL-unperturbed-gap",
        ),
    ),
    note="attained (equality) for n = 2; holds for every sign of g",
)


S3 = Claim(
    "S3",
    "sharp second-order remainder: |λ'−λ1−a1−a2| ≤ (4/(3√3))η³/γ² + 8η⁴/(γ²(γ−2η))",
    "For symmetric A with γ > 0 and symmetric E with 2η < γ: |λ_max(A+E) − λ1 − a1 − a2| ≤ "
    "Kη³/γ² + 8η⁴/(γ²(γ − 2η)), K = 4/(3√3), the sharp constant of the η³ term (|a3| ≤ Kη³/γ², "
    "equality on the 2 × 2 family E ∝ [[c, s], [s, −c]], c = ±1/√3).",
    ("A symmetric (PSD in our instances)", "E symmetric", "γ > 0", "2η < γ"),
    _wrap(_s3, _claims._gap_eta_margins),
    _s3_mp,
    _S + "S3",
    "sharp third-order constant (S3)",
    weakenings=(
        Weakening(
            "S3-leading-only",
            "|λ'−λ1−a1−a2| ≤ (4/(3√3))η³/γ² (the leading term alone)",
            "the η⁴ correction 8η⁴/(γ²(γ−2η))",
            _wrap(_s3_leading_only, _claims._gap_eta_margins),
            _s3_leading_only_mp,
            _S + "S3-leading-only",
        ),
    ),
    note=(
        "the conjecture |λ'−λ1−a1−a2| ≤ Kη³/(γ(γ−2η)) is proved for n = 2 only "
        "(symbolic.sharp_third_order); for n ≥ 3 it is a conjecture with evidence, not a checked claim"
    ),
)


S3L = Claim(
    "S3L",
    "lower side, every n and η: λ'−λ1−a1−a2 ≥ −(4/(3√3))η³/γ² − ‖P⊥Ev‖⁴/γ³",
    "For symmetric A with γ > 0 and any symmetric E: λ_max(A+E) − λ1 − a1 − a2 ≥ −Kη³/γ² − "
    "‖P⊥Ev‖⁴/γ³ (the Rayleigh quotient at v + Rw, R the reduced resolvent, and |a3| ≤ Kη³/γ²); "
    "for 2η < γ this is the lower half of the conjecture |λ'−λ1−a1−a2| ≤ Kη³/(γ(γ−2η)).",
    ("A symmetric (PSD in our instances)", "E symmetric", "γ > 0"),
    _wrap(_s3l, _gap_margins),
    _s3l_mp,
    _S + "S3L",
    "sharp third-order constant, lower side (S3L)",
    weakenings=(
        Weakening(
            "S3L-second-order",
            "λ' ≥ λ1 + a1 + a2 (the second-order truncation is a lower bound)",
            "the third-order term −Kη³/γ² − ‖P⊥Ev‖⁴/γ³",
            _wrap(_s3l_second_order, _gap_margins),
            _s3l_second_order_mp,
            _S + "S3L-second-order",
        ),
    ),
    note="with 2η < γ it proves the lower half of the sharp conjecture for every n (2K ≥ 1)",
)


def _register() -> None:
    """Add KT, LL and S3 to the registry and S-no-disc to the weakenings of S (idempotent)."""
    reg = _claims.REGISTRY
    for c in (KT, LL, S3, S3L):
        if c.id not in reg:
            _claims._CLAIMS.append(c)
            reg[c.id] = c
    s = reg.get("S")
    if s is not None and all(w.id != S_NO_DISC.id for w in s.weakenings):
        from dataclasses import replace

        new = replace(s, weakenings=(*s.weakenings, S_NO_DISC))
        reg["S"] = new
        _claims._CLAIMS[:] = [new if c.id == "S" else c for c in _claims._CLAIMS]


_register()

__all__ = [
    "KT",
    "LL",
    "S3",
    "S3L",
    "S_NO_DISC",
    "lower_remainder_bound",
    "conjectured_bound",
    "kato_temple_gap",
    "li_li_bound",
    "sharp_constant",
    "sharp_remainder_bound",
    "EPS64",
]
