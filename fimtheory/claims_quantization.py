"""The quantization family, Theorem 4.3: λ_max of an empirical FIM under the noise of
weight quantization — per draw (T4.3a), in expectation (T4.3b), strictly at leading order
below the critical scale (T4.3c, :func:`critical_scale`) and at the parameter level with the
model's own labels (T4.3d).

Each claim with its hypotheses, its float64 and high-precision evaluators and its weakenings,
declared through :mod:`fimtheory.claim_api`; the rigorous enclosures are
:data:`fimtheory.enclosures.ENCLOSURES` under the same ids.
"""

from __future__ import annotations

import mpmath
import numpy as np

from fimtheory import spectral
from fimtheory._generated import series as _series
from fimtheory.claim_api import Outcome, declare_claim, declare_weakening
from fimtheory.claim_api import outcome as _outcome
from fimtheory.claim_support import (
    TINY,
    _gap_eta_margins,
    _gap_margins_of_A,
    _gap_margins_of_F,
    _mp_coefficients,
    _mp_sym_norm,
    _norm2,
    _rel,
    _resolved,
)
from fimtheory.claims_weyl import _directional, _directional_mp
from fimtheory.highprec import mp_eigh, mp_matmul, mp_matrix, working_precision
from fimtheory.instances import MatrixPerturbation, NoiseEnsemble, ParameterEnsemble
from fimtheory.validation import EPS64

_S = "properties.claim_strategies:"

# --------------------------------------------------------------------------------------
# T4.3a — per draw: R on FIMs perturbed by quantization
# --------------------------------------------------------------------------------------


def _quant_directional(inst: MatrixPerturbation) -> Outcome:
    eig = spectral.eigen_data(inst.A)
    if inst.n > 1 and not eig.gap_resolved():
        return Outcome.not_met("γ = 0 (top eigenvalue of F repeated within rounding)")
    return _directional(inst)


def _per_draw_third_order(inst: MatrixPerturbation) -> Outcome:
    """Weakening of T4.3: per draw, λ_max(F+E) ≥ λ_max(F) − 4η³/(γ(γ−2η))."""
    eig = spectral.eigen_data(inst.A)
    eta = _norm2(inst.E)
    if not 2 * eta < eig.gap:
        return Outcome.not_met("needs 2η < γ")
    top = spectral.lambda_max(inst.A + inst.E)
    rem = float(_series.remainder_bound_second(eta, eig.gap))
    return _outcome(_rel(top - eig.lambda_max + rem, abs(eig.lambda_max) + eta), eta=eta)


def _per_draw_third_order_mp(inst, dps):
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        eig = mp_eigh(A, dps)
        eta = _mp_sym_norm(E)
        top = mp_eigh(A + E, dps).lambda_max
        rem = _series.remainder_bound_second(eta, eig.gap)
        return _rel(top - eig.lambda_max + rem, abs(eig.lambda_max) + eta)


T43A = declare_claim(
    "T4.3a",
    title="per draw: λ_max(F+E) ≥ λ_max(F) + E_11 (E from quantizing the weights)",
    statement="For an empirical FIM F with γ > 0 and the perturbation E = F(Q(θ)) − F(θ) caused by a "
    "quantizer Q: λ_max(F+E) ≥ λ_max(F) + v1ᵀEv1.",
    hypotheses=("F an empirical FIM (PSD)", "γ > 0", "E symmetric (from quantization)"),
    evaluate=_quant_directional,
    evaluate_mp=_directional_mp,
    hypothesis_margins=_gap_margins_of_A,
    strategy=_S + "T4.3a",
    paper_label="Thm 4.3 (a)",
    weakenings=(
        declare_weakening(
            "T4.3a-per-draw",
            title="per draw: λ_max(F+E) ≥ λ_max(F) − 4η³/(γ(γ−2η))",
            dropped="the E_11 term (its sign is not fixed)",
            evaluate=_per_draw_third_order,
            evaluate_mp=_per_draw_third_order_mp,
            hypothesis_margins=_gap_eta_margins,
            strategy=_S + "T4.3a-per-draw",
        ),
    ),
)


# --------------------------------------------------------------------------------------
# T4.3b — expectation over a finite zero-mean noise ensemble
# --------------------------------------------------------------------------------------


def _ensemble_stats(F: np.ndarray, Es: list[np.ndarray]):
    eig = spectral.eigen_data(F)
    tops = np.array([spectral.lambda_max(F + E) for E in Es])
    etas = np.array([_norm2(E) for E in Es])
    a2s = []
    for E in Es:
        M = spectral.perturbation_in_eigenbasis(eig, E)
        a2s.append(float(_series.series_coefficients(eig.eigenvalues, M, 2)[1]))
    return eig, tops, etas, np.array(a2s)


def _t43b(inst: NoiseEnsemble) -> Outcome:
    if not inst.exact_mean_is_zero():
        return Outcome.not_met("the noise ensemble's mean is not exactly zero")
    Es = inst.scaled()
    eig = spectral.eigen_data(inst.F)
    tops = np.array([spectral.lambda_max(inst.F + E) for E in Es])
    etas = np.array([_norm2(E) for E in Es])
    scale = abs(eig.lambda_max) + float(etas.max())
    jensen = float(np.mean(tops) - eig.lambda_max)
    margins = {"jensen": jensen / scale}
    eta_bar = float(etas.max())
    if inst.F.shape[0] > 1 and eig.gap_resolved() and 2 * eta_bar < eig.gap:
        _, _, _, a2s = _ensemble_stats(inst.F, Es)
        lower = eig.lambda_max + a2s.mean() - 4 * np.mean(etas**3) / (eig.gap * (eig.gap - 2 * eta_bar))
        margins["second_order"] = float(np.mean(tops) - lower) / scale
    m = min(margins.values())
    return _outcome(m, _resolved(jensen if jensen else TINY, scale, inst.F.shape[0]), **margins)


def _second_order_part_likely(inst: NoiseEnsemble) -> bool:
    """Whether T4.3b's second part (γ > 0, 2η̄ < γ) applies in float64: only a hint for computing
    F's eigenvectors at once (the mp margin never depends on it)."""
    if inst.F.shape[0] < 2:
        return False
    w = np.linalg.eigvalsh(inst.F)
    return 2 * max((_norm2(E) for E in inst.scaled()), default=0.0) < float(w[-1] - w[-2])


def _t43b_mp(inst: NoiseEnsemble, dps):
    with working_precision(dps):
        F = mp_matrix(inst.F)
        Es = [mp_matrix(E) for E in inst.scaled()]
        eig = mp_eigh(F, dps, vectors=_second_order_part_likely(inst))
        tops = [mp_eigh(F + E, dps).lambda_max for E in Es]
        etas = [_mp_sym_norm(E) for E in Es]
        mean_top = sum(tops) / len(tops)
        scale = abs(eig.lambda_max) + max(etas)
        ms = [(mean_top - eig.lambda_max) / scale]
        eta_bar = max(etas)
        if F.rows > 1 and eig.gap > 0 and 2 * eta_bar < eig.gap:
            a2 = sum(_mp_coefficients(eig, E, 2)[1] for E in Es) / len(Es)
            lower = (
                eig.lambda_max + a2 - 4 * (sum(e**3 for e in etas) / len(etas)) / (eig.gap * (eig.gap - 2 * eta_bar))
            )
            ms.append((mean_top - lower) / scale)
        return min(ms)


def _nonzero_mean_jensen(inst: NoiseEnsemble) -> Outcome:
    """Weakening of T4.3(b): E λ_max(F+E) ≥ λ_max(F) without E[E] = 0."""
    Es = inst.scaled()
    eig = spectral.eigen_data(inst.F)
    tops = np.array([spectral.lambda_max(inst.F + E) for E in Es])
    scale = abs(eig.lambda_max) + max(_norm2(E) for E in Es)
    return _outcome(float(np.mean(tops) - eig.lambda_max) / scale)


def _nonzero_mean_jensen_mp(inst, dps):
    with working_precision(dps):
        F = mp_matrix(inst.F)
        Es = [mp_matrix(E) for E in inst.scaled()]
        eig = mp_eigh(F, dps)
        tops = [mp_eigh(F + E, dps).lambda_max for E in Es]
        scale = abs(eig.lambda_max) + max(_mp_sym_norm(E) for E in Es)
        return (sum(tops) / len(tops) - eig.lambda_max) / scale


T43B = declare_claim(
    "T4.3b",
    title="in expectation: E λ_max(F+E) ≥ λ_max(F), and ≥ λ1 + E[a2] − 4E[η³]/(γ(γ−2η̄))",
    statement="For an empirical FIM F and a finite zero-mean distribution of symmetric E: Jensen's "
    "E λ_max(F+E) ≥ λ_max(F); if moreover γ > 0 and η ≤ η̄ < γ/2 on every draw, the "
    "second-order lower bound holds.",
    hypotheses=("F PSD", "E[E] = 0 exactly", "for the second part: γ > 0, η̄ < γ/2"),
    evaluate=_t43b,
    evaluate_mp=_t43b_mp,
    strategy=_S + "T4.3b",
    paper_label="Thm 4.3 (b)",
    weakenings=(
        declare_weakening(
            "T4.3b-nonzero-mean",
            title="E λ_max(F+E) ≥ λ_max(F) for noise of nonzero mean",
            dropped="E[E] = 0",
            evaluate=_nonzero_mean_jensen,
            evaluate_mp=_nonzero_mean_jensen_mp,
            strategy=_S + "T4.3b-nonzero-mean",
        ),
    ),
)


# --------------------------------------------------------------------------------------
# T4.3c — strict elevation below the critical scale
# --------------------------------------------------------------------------------------


def critical_scale(lambda_gap: float, mean_a2: float, mean_eta3: float, eta_bar: float) -> float:
    """s_c such that s²E[a2] − 4s³E[η³]/(γ(γ − 2sη̄)) > 0 for all 0 < s < s_c (T4.3c).

    Solving the inequality gives s_c = E[a2]γ² / (2E[a2]γη̄ + 4E[η³]); it never exceeds γ/(2η̄).
    """
    return mean_a2 * lambda_gap**2 / (2 * mean_a2 * lambda_gap * eta_bar + 4 * mean_eta3)


def _generic(eig, Es) -> bool:
    v = eig.top_vector
    for E in Es:
        Ev = E @ v
        r = Ev - v * (v @ Ev)
        if _resolved(float(np.linalg.norm(r)), _norm2(E), E.shape[0]):
            return True
    return False


def _t43c_core(inst: NoiseEnsemble, require_generic: bool) -> Outcome:
    if not inst.exact_mean_is_zero():
        return Outcome.not_met("the noise ensemble's mean is not exactly zero")
    Es = inst.scaled()
    eig = spectral.eigen_data(inst.F)
    if inst.F.shape[0] < 2 or not eig.gap_resolved():
        return Outcome.not_met("γ = 0 (top eigenvalue of F repeated within rounding)")
    if require_generic and not _generic(eig, Es):
        return Outcome.not_met("genericity fails: P⊥Ev = 0 for every draw")
    _, _, etas, a2s = _ensemble_stats(inst.F, Es)
    ea2, eeta3, eta_bar = float(a2s.mean()), float(np.mean(etas**3)), float(etas.max())
    if ea2 > 0:
        s = 0.5 * critical_scale(eig.gap, ea2, eeta3, eta_bar)
    else:
        # Non-generic: no positive leading term; test at a scale inside the analytic disc.
        s = 0.25 * eig.gap / max(eta_bar, TINY)
    tops = np.array([spectral.lambda_max(inst.F + s * E) for E in Es])
    scale = abs(eig.lambda_max)
    m = float(np.mean(tops) - eig.lambda_max) / max(scale, TINY)
    predicted = s * s * ea2
    ok = _resolved(predicted, scale, inst.F.shape[0])
    # The margin is tiny by construction (s = s_c/2), so the generic 1e-6 band would send
    # every instance to mpmath. Each λ_max comes from a backward-stable symmetric solver
    # (error ≤ c·n·eps·‖matrix‖), so a margin above that bound (c = 128, two eigenvalues) has a
    # certain sign; only margins within it are adjudicated.
    n = inst.F.shape[0]
    rounding = 128 * n * EPS64 * (scale + s * eta_bar) / max(scale, TINY)
    needs = (not ok) or not (m > rounding)
    details = {"s": s, "predicted_elevation": predicted, "mean_a2": ea2, "rounding_bound": rounding}
    return Outcome(True, m, needs, "", details, float_resolved=ok)


def _t43c_mp(inst: NoiseEnsemble, dps, require_generic=True):
    out = _t43c_core(inst, require_generic)
    s = mpmath.mpf(out.details["s"])
    with working_precision(dps):
        F = mp_matrix(inst.F)
        Es = [mp_matrix(s * E) for E in inst.scaled()]
        lam = mp_eigh(F, dps).lambda_max
        tops = [mp_eigh(F + E, dps).lambda_max for E in Es]
        return (sum(tops) / len(tops) - lam) / abs(lam)


def _t43c(inst: NoiseEnsemble) -> Outcome:
    return _t43c_core(inst, True)


def _t43c_no_genericity(inst: NoiseEnsemble) -> Outcome:
    return _t43c_core(inst, False)


def _t43c_no_genericity_mp(inst: NoiseEnsemble, dps):
    return _t43c_mp(inst, dps, False)


T43C = declare_claim(
    "T4.3c",
    title="strict at leading order: E λ_max(F+sE) > λ_max(F) for 0 < s < s_c (genericity)",
    statement="For F PSD with γ > 0 and a finite zero-mean distribution of E with P(P⊥Ev ≠ 0) > 0: "
    "E[a2] > 0 and E λ_max(F+sE) > λ_max(F) for every 0 < s < s_c = "
    "E[a2]γ²/(2E[a2]γη̄ + 4E[η³]); checked at s = s_c/2.",
    hypotheses=("F PSD", "γ > 0", "E[E] = 0 exactly", "genericity: P⊥Ev ≠ 0 for some draw"),
    evaluate=_t43c,
    evaluate_mp=_t43c_mp,
    hypothesis_margins=_gap_margins_of_F,
    strategy=_S + "T4.3c",
    paper_label="Thm 4.3 (c)",
    strict=True,
    weakenings=(
        declare_weakening(
            "T4.3c-no-genericity",
            title="strict elevation without genericity (E commuting with F)",
            dropped="genericity",
            evaluate=_t43c_no_genericity,
            evaluate_mp=_t43c_no_genericity_mp,
            hypothesis_margins=_gap_margins_of_F,
            strategy=_S + "T4.3c-no-genericity",
            strict=True,
        ),
    ),
)


# --------------------------------------------------------------------------------------
# T4.3d — the parameter level (docs/theory.md §3(d)): restored with model labels
# --------------------------------------------------------------------------------------


def _param_fims(inst: ParameterEnsemble) -> tuple[np.ndarray, list[np.ndarray]]:
    from fimtheory import models

    if inst.labels == "model":
        base = models.model_label_fim(inst.model, inst.X, inst.theta, inst.theta)
        pert = [models.model_label_fim(inst.model, inst.X, inst.theta, inst.theta + d) for d in inst.deltas]
    else:
        base = models.fim(inst.model, inst.X, inst.y, inst.theta)
        pert = [models.fim(inst.model, inst.X, inst.y, inst.theta + d) for d in inst.deltas]
    return base, pert


def _t43d(inst: ParameterEnsemble) -> Outcome:
    """T4.3d: with labels from the model's predictive at θ, λ_max(F_π(θ+δ)) ≥ λ_max(F_π(θ)) for
    every δ (per draw, no remainder): F_π(θ+δ) − F_π(θ) = (1/n)Σ(Δμ_i⊗x_i)(Δμ_i⊗x_i)ᵀ ⪰ 0."""
    if inst.labels != "model":
        return Outcome.not_met("labels are not the model's predictive at θ")
    base, pert = _param_fims(inst)
    lam = spectral.lambda_max(base)
    if lam <= 0:
        return Outcome.not_met("F_π(θ) = 0")
    m = min(spectral.lambda_max(F) - lam for F in pert) / lam
    return _outcome(m, True, lambda1=lam)


def _mp_param_lambdas(inst: ParameterEnsemble, dps: int):
    from fimtheory import models

    n = inst.X.shape[0]

    def fim_mp(theta_eval):
        if inst.labels == "empirical":
            G = models.mp_scores(inst.model, inst.X, inst.y, theta_eval)
            return mp_matmul(G, G, transpose_a=True) / n  # G.T * G / n, bit for bit
        pi = models.mp_predictive(inst.model, inst.X, inst.theta)
        F = None
        for c in range(len(pi[0])):
            yc = np.full(n, c, dtype=int) if inst.model == "softmax" else np.full(n, float(c))
            G = models.mp_scores(inst.model, inst.X, yc, theta_eval)
            for i in range(n):
                for j in range(G.cols):
                    G[i, j] *= mpmath.sqrt(pi[i][c])
            term = mp_matmul(G, G, transpose_a=True) / n
            F = term if F is None else F + term
        return F

    with working_precision(dps):
        lam = mp_eigh(fim_mp(inst.theta), dps).lambda_max
        tops = [mp_eigh(fim_mp(inst.theta + d), dps).lambda_max for d in inst.deltas]
        return lam, tops


def _t43d_mp(inst: ParameterEnsemble, dps: int):
    lam, tops = _mp_param_lambdas(inst, dps)
    with working_precision(dps):  # at the working precision, not mpmath's default 15 digits
        return min(t - lam for t in tops) / lam


def _t43d_empirical(inst: ParameterEnsemble) -> Outcome:
    """Weakening: E_δ λ_max(F(θ+δ)) ≥ λ_max(F(θ)) for exactly zero-mean δ with the observed
    labels (drops the model-label hypothesis; docs/theory.md §3(d))."""
    if inst.labels != "empirical":
        return Outcome.not_met("this weakening is about the empirical-label FIM")
    if not inst.exact_mean_is_zero():
        return Outcome.not_met("the δ ensemble's mean is not exactly zero")
    base, pert = _param_fims(inst)
    lam = spectral.lambda_max(base)
    if lam <= 0:
        return Outcome.not_met("F(θ) = 0")
    m = (float(np.mean([spectral.lambda_max(F) for F in pert])) - lam) / lam
    return _outcome(m, True, lambda1=lam)


def _t43d_empirical_mp(inst: ParameterEnsemble, dps: int):
    lam, tops = _mp_param_lambdas(inst, dps)
    with working_precision(dps):
        return (mpmath.fsum(tops) / len(tops) - lam) / lam


T43D = declare_claim(
    "T4.3d",
    title="parameter level, restored: with labels from the model at θ, λ_max(F_π(θ+δ)) ≥ λ_max(F_π(θ))",
    statement="For logistic or softmax regression with the FIM's labels distributed as the model's own "
    "predictive at the unquantized θ (F_π, the expected Fisher at θ with the label law held "
    "fixed): λ_max(F_π(θ+δ)) ≥ λ_max(F_π(θ)) for every δ, because F_π(θ+δ) − F_π(θ) = "
    "(1/n)Σ(Δμ_i⊗x_i)(Δμ_i⊗x_i)ᵀ ⪰ 0. With the observed labels the statement fails even in "
    "expectation over zero-mean δ (weakening T4.3d-empirical-labels; docs/parameter_level.md).",
    hypotheses=("canonical-link model (logistic, softmax)", "labels distributed as p(·|x; θ) at the unperturbed θ"),
    evaluate=_t43d,
    evaluate_mp=_t43d_mp,
    strategy=_S + "T4.3d",
    paper_label="Thm 4.3 at the parameter level (our extra hypothesis)",
    weakenings=(
        declare_weakening(
            "T4.3d-empirical-labels",
            title="E_δ λ_max(F(θ+δ)) ≥ λ_max(F(θ)) for zero-mean δ with the observed labels",
            dropped="labels from the model's predictive",
            evaluate=_t43d_empirical,
            evaluate_mp=_t43d_empirical_mp,
            strategy=_S + "T4.3d-empirical-labels",
        ),
    ),
)


def claims() -> list:
    """The family's claims, in registry order."""
    return [T43A, T43B, T43C, T43D]
