"""Gershgorin's bound on λ_max as a claim, declared with fimtheory's public Claim API.

GERSHGORIN
    For a symmetric matrix A: λ_max(A) ≤ max_i Σ_j |A_ij| (every eigenvalue lies in a
    Gershgorin disc). It holds, so ``fimtheory verify --claim CC-GERSHGORIN`` verifies it.
GERSHGORIN.weakening("CC-GERSHGORIN-diagonal")
    The bound with the off-diagonal terms dropped, λ_max(A) ≤ max_i A_ii. It is false (any
    A with a nonzero off-diagonal entry in the top row sum can break it), so
    ``fimtheory counterexamples --claim CC-GERSHGORIN`` finds a certified counterexample,
    stores it, and ``fimtheory replay`` re-checks it.

Each margin is relative to G = max_i Σ_j |A_ij| (≥ ‖A‖₂), so it is dimensionless; the float
margin, the mpmath margin and the interval enclosure compute the same quantity.
"""

from __future__ import annotations

import mpmath
import numpy as np

from custom_claim.instances import SymmetricMatrix
from fimtheory import enclosures as iv_tools
from fimtheory.claim_api import Hypothesis, declare_claim, declare_weakening, outcome
from fimtheory.highprec import mp_eigh, working_precision

STRATEGY = "custom_claim.strategies:symmetric_matrices"


def is_symmetric(inst: SymmetricMatrix) -> bool:
    return bool(np.array_equal(inst.A, inst.A.T))


def is_nonzero(inst: SymmetricMatrix) -> bool:
    return bool(np.any(inst.A))


HYPOTHESES = (
    Hypothesis("A symmetric (exactly, in float64)", holds=is_symmetric),
    Hypothesis("A ≠ 0", holds=is_nonzero),
)


# --- float64 -------------------------------------------------------------------------


def _row_sum_bound(A: np.ndarray) -> float:
    return float(np.max(np.sum(np.abs(A), axis=1)))


def gershgorin(inst: SymmetricMatrix):
    A = inst.A
    g = _row_sum_bound(A)
    lam = float(np.linalg.eigvalsh(A)[-1])
    return outcome((g - lam) / g, lambda_max=lam, row_sum_bound=g)


def gershgorin_diagonal(inst: SymmetricMatrix):
    A = inst.A
    g = _row_sum_bound(A)
    lam = float(np.linalg.eigvalsh(A)[-1])
    return outcome((float(np.max(np.diag(A))) - lam) / g, lambda_max=lam)


# --- mpmath at dps digits --------------------------------------------------------------


def _mp_parts(inst: SymmetricMatrix, dps: int):
    A = inst.A
    g = max(mpmath.fsum(abs(mpmath.mpf(float(x))) for x in row) for row in A)
    lam = mp_eigh(A, dps).lambda_max
    return g, lam


def gershgorin_mp(inst: SymmetricMatrix, dps: int):
    with working_precision(dps):
        g, lam = _mp_parts(inst, dps)
        return (g - lam) / g


def gershgorin_diagonal_mp(inst: SymmetricMatrix, dps: int):
    with working_precision(dps):
        g, lam = _mp_parts(inst, dps)
        return (max(mpmath.mpf(float(x)) for x in np.diag(inst.A)) - lam) / g


# --- rigorous enclosures (mpmath.iv, at the working precision) ---------------------------


def _iv_parts(inst: SymmetricMatrix):
    A = inst.A
    if not is_symmetric(inst):
        raise iv_tools.HypothesisFails("A is not symmetric")
    rows = [sum((iv_tools.iv_abs(iv_tools.ivf(float(x))) for x in row), mpmath.iv.mpf(0)) for row in A]
    g = iv_tools.iv_max(rows)
    lam = iv_tools.iv_lambda_max(iv_tools.iv_matrix(A))
    return g, lam


def gershgorin_iv(inst: SymmetricMatrix):
    g, lam = _iv_parts(inst)
    return iv_tools.iv_div(g - lam, g, "the row-sum bound")


def gershgorin_diagonal_iv(inst: SymmetricMatrix):
    g, lam = _iv_parts(inst)
    diag = iv_tools.iv_max([iv_tools.ivf(float(x)) for x in np.diag(inst.A)])
    return iv_tools.iv_div(diag - lam, g, "the row-sum bound")


GERSHGORIN = declare_claim(
    "CC-GERSHGORIN",
    title="Gershgorin: λ_max(A) ≤ max_i Σ_j |A_ij| for symmetric A",
    statement="For a symmetric matrix A ≠ 0: λ_max(A) ≤ G = max_i Σ_j |A_ij|; margin (G − λ_max)/G.",
    hypotheses=HYPOTHESES,
    evaluate=gershgorin,
    evaluate_mp=gershgorin_mp,
    enclosure=gershgorin_iv,
    strategy=STRATEGY,
    paper_label="Gershgorin circle theorem",
    instance_type=SymmetricMatrix,
    weakenings=(
        declare_weakening(
            "CC-GERSHGORIN-diagonal",
            title="λ_max(A) ≤ max_i A_ii (the off-diagonal terms dropped)",
            dropped="the off-diagonal row sums Σ_{j≠i} |A_ij|",
            hypotheses=HYPOTHESES,
            evaluate=gershgorin_diagonal,
            evaluate_mp=gershgorin_diagonal_mp,
            enclosure=gershgorin_diagonal_iv,
            strategy=STRATEGY,
            instance_type=SymmetricMatrix,
        ),
    ),
)

#: What the entry point ``fimtheory.claims: custom-claim`` registers.
CLAIMS = [GERSHGORIN]
