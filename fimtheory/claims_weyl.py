"""The Weyl family: Weyl's inequalities (W) and the directional Rayleigh bound (R).

Each claim with its hypotheses, its float64 and high-precision evaluators and its weakenings,
declared through :mod:`fimtheory.claim_api`; the rigorous enclosures are
:data:`fimtheory.enclosures.ENCLOSURES` under the same ids. T4.3(a) is R on FIMs perturbed by
quantization (:mod:`fimtheory.claims_quantization`).
"""

from __future__ import annotations

import numpy as np

from fimtheory import bounds, spectral
from fimtheory.claim_api import Outcome, declare_claim, declare_weakening
from fimtheory.claim_api import outcome as _outcome
from fimtheory.claim_support import TINY, _mp_sym_norm, _norm2, _rel
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision
from fimtheory.instances import MatrixPerturbation
from fimtheory.validation import EPS64

_S = "properties.claim_strategies:"

# --------------------------------------------------------------------------------------
# W — Weyl
# --------------------------------------------------------------------------------------


def _weyl(inst: MatrixPerturbation) -> Outcome:
    A, E = inst.A, inst.E
    scale = _norm2(A) + _norm2(E)
    idx = bounds.weyl_index_margins(A, E)
    lo, hi = bounds.weyl_bounds(A, E)
    top = spectral.lambda_max(A + E)
    m = min(top - lo, hi - top, float(np.nanmin(idx)))
    return _outcome(_rel(m, scale), lower_margin=top - lo, upper_margin=hi - top)


def _weyl_mp(inst: MatrixPerturbation, dps: int):
    with working_precision(dps):
        la = mp_eigh(inst.A, dps).eigenvalues
        le = mp_eigh(inst.E, dps).eigenvalues
        ls = mp_eigh(mp_matrix(inst.A) + mp_matrix(inst.E), dps).eigenvalues
        n = len(la)
        ms = [la[i] + le[j] - ls[i + j] for i in range(n) for j in range(n) if i + j < n]
        ms.append(ls[0] - la[0] - le[-1])
        scale = max(abs(la[0]), abs(la[-1])) + max(abs(le[0]), abs(le[-1]))
        return _rel(min(ms), scale)


def _weyl_no_lambda_min(inst: MatrixPerturbation) -> Outcome:
    """Weakening: λ_max(A+E) ≥ λ_max(A) for any symmetric E (drops the λ_min(E) term)."""
    top = spectral.lambda_max(inst.A + inst.E)
    la = spectral.lambda_max(inst.A)
    scale = _norm2(inst.A) + _norm2(inst.E)
    return _outcome(_rel(top - la, scale))


def _weyl_no_lambda_min_mp(inst, dps):
    with working_precision(dps):
        top = mp_eigh(mp_matrix(inst.A) + mp_matrix(inst.E), dps).lambda_max
        la = mp_eigh(inst.A, dps).lambda_max
        scale = abs(la) + _mp_sym_norm(mp_matrix(inst.E))
        return _rel(top - la, scale)


W = declare_claim(
    "W",
    title="Weyl: λ_max(A)+λ_min(E) ≤ λ_max(A+E) ≤ λ_max(A)+λ_max(E); λ_{i+j−1}(A+E) ≤ λ_i(A)+λ_j(E)",
    statement="For symmetric A, E: λ_{i+j−1}(A+E) ≤ λ_i(A) + λ_j(E) for all i+j−1 ≤ n, and "
    "λ_max(A+E) ≥ λ_max(A) + λ_min(E).",
    hypotheses=("A symmetric (PSD in our instances)", "E symmetric"),
    evaluate=_weyl,
    evaluate_mp=_weyl_mp,
    strategy=_S + "W",
    paper_label="Weyl (used in Thm 4.3)",
    weakenings=(
        declare_weakening(
            "W-no-lambda-min",
            title="λ_max(A+E) ≥ λ_max(A) for any symmetric E",
            dropped="the λ_min(E) term (E need not be PSD)",
            evaluate=_weyl_no_lambda_min,
            evaluate_mp=_weyl_no_lambda_min_mp,
            strategy=_S + "W-no-lambda-min",
        ),
    ),
)


# --------------------------------------------------------------------------------------
# R — directional (Rayleigh) bound
# --------------------------------------------------------------------------------------


def _top_vector_check(inst: MatrixPerturbation):
    eig = spectral.eigen_data(inst.A)
    if inst.v is None:
        return eig, eig.top_vector, ""
    v = inst.v / np.linalg.norm(inst.v)
    resid = np.linalg.norm(inst.A @ v - eig.lambda_max * v)
    if resid > 64 * inst.n * EPS64 * max(abs(eig.lambda_max), TINY):
        return eig, v, f"v is not a top eigenvector of A (residual {resid:.3g})"
    return eig, v, ""


def _directional(inst: MatrixPerturbation) -> Outcome:
    eig, v, why = _top_vector_check(inst)
    if why:
        return Outcome.not_met(why)
    top = spectral.lambda_max(inst.A + inst.E)
    e11 = float(v @ inst.E @ v)
    if inst.v is None:
        # The claim is for *every* unit top eigenvector. When λ1 is repeated within rounding
        # the computed v is one arbitrary member of the top eigenspace, so the worst one is
        # checked: min over unit v in span(V_c) of vᵀEv = λ_min(V_cᵀ E V_c).
        tol = 16.0 * inst.n * EPS64 * max(abs(eig.lambda_max), abs(eig.lambda_min), TINY)
        k = int(np.count_nonzero(eig.eigenvalues >= eig.lambda_max - tol))
        if k > 1:
            Vc = eig.eigenvectors[:, :k]
            e11 = float(np.linalg.eigvalsh(Vc.T @ inst.E @ Vc)[0])
    scale = abs(eig.lambda_max) + _norm2(inst.E)
    return _outcome(_rel(top - eig.lambda_max - e11, scale), e11=e11)


def _directional_mp(inst: MatrixPerturbation, dps: int):
    # For a given v the claim is the Rayleigh inequality λ_max(A+E) ≥ vᵀ(A+E)v/vᵀv (equal to
    # λ1 + E_11 when v is an exact top eigenvector), which is what we adjudicate.
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        top = mp_eigh(A + E, dps).lambda_max
        eig = mp_eigh(A, dps, vectors=inst.v is None)
        if inst.v is None:
            # The same top cluster as the float evaluation (its size from the float spectrum):
            # min of the Rayleigh quotient of A+E over its span, λ_min(UᵀEU) + λ1 when the
            # cluster is an exact eigenspace and ≤ λ_max(A+E) always (no false violation).
            w = spectral.eigen_data(inst.A).eigenvalues
            tol = 16.0 * inst.n * EPS64 * max(abs(w[0]), abs(w[-1]), TINY)
            k = int(np.count_nonzero(w >= w[0] - tol))
            v = eig.vector(0)
            rq = eig.lambda_max + (v.T * E * v)[0, 0]
            if k > 1:
                U = eig.eigenvectors[:, :k]
                C = U.T * (A + E) * U
                rq = mp_eigh((C + C.T) / 2, dps).eigenvalues[-1]
        else:
            v = mp_matrix(inst.v.reshape(-1, 1))
            rq = (v.T * (A + E) * v)[0, 0] / (v.T * v)[0, 0]
        scale = abs(eig.lambda_max) + _mp_sym_norm(E)
        return _rel(top - rq, scale)


def _directional_any_vector(inst: MatrixPerturbation) -> Outcome:
    """Weakening: λ_max(A+E) ≥ λ1 + vᵀEv for *any* unit v (drops "v is a top eigenvector")."""
    if inst.v is None:
        return Outcome.not_met("this weakening needs a vector v")
    v = inst.v / np.linalg.norm(inst.v)
    top = spectral.lambda_max(inst.A + inst.E)
    la = spectral.lambda_max(inst.A)
    scale = abs(la) + _norm2(inst.E)
    return _outcome(_rel(top - la - float(v @ inst.E @ v), scale))


def _directional_any_vector_mp(inst, dps):
    with working_precision(dps):
        A, E = mp_matrix(inst.A), mp_matrix(inst.E)
        v = mp_matrix(inst.v.reshape(-1, 1))
        top = mp_eigh(A + E, dps).lambda_max
        la = mp_eigh(A, dps).lambda_max
        scale = abs(la) + _mp_sym_norm(E)
        return _rel(top - la - (v.T * E * v)[0, 0] / (v.T * v)[0, 0], scale)


R = declare_claim(
    "R",
    title="directional bound: λ_max(A+E) ≥ λ1 + vᵀEv for every unit top eigenvector v",
    statement="For symmetric A with top eigenvalue λ1 (possibly repeated) and every unit v with "
    "Av = λ1 v: λ_max(A+E) ≥ λ1 + vᵀEv.",
    hypotheses=("A symmetric PSD", "E symmetric", "v a unit top eigenvector of A"),
    evaluate=_directional,
    evaluate_mp=_directional_mp,
    strategy=_S + "R",
    paper_label="Thm 4.3 (directional step)",
    weakenings=(
        declare_weakening(
            "R-any-vector",
            title="λ_max(A+E) ≥ λ1 + vᵀEv for any unit v",
            dropped="v is a top eigenvector",
            evaluate=_directional_any_vector,
            evaluate_mp=_directional_any_vector_mp,
            strategy=_S + "R-any-vector",
        ),
    ),
)


def claims() -> list:
    """The family's claims, in registry order."""
    return [W, R]
