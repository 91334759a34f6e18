"""Numerical pieces shared by the claim families: norms, resolution tests, mp series
coefficients and the float margins of the spectral-gap hypotheses.

Not a public API: the families (:mod:`fimtheory.claims_weyl`, :mod:`fimtheory.claims_series`,
…) import these; a user's claim needs only :mod:`fimtheory.claim_api`.
"""

from __future__ import annotations

import mpmath
import numpy as np

from fimtheory._generated import series as _series
from fimtheory.highprec import mp_eigh, mp_matmul
from fimtheory.instances import MatrixPerturbation
from fimtheory.validation import EPS64

TINY = np.finfo(float).tiny


def _norm2(a: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvalsh(a)))) if a.size else 0.0


def _mp_sym_norm(m) -> mpmath.mpf:
    e = mp_eigh(m, mpmath.mp.dps)
    return max(abs(e.eigenvalues[0]), abs(e.eigenvalues[-1]))


def _mp_coefficients(eig, E_mp, order: int):
    """a1..a_order at mp precision, through the generated series on object arrays."""
    V = eig.eigenvectors
    M = mp_matmul(mp_matmul(V, E_mp, transpose_a=True), V)  # V.T * E_mp * V, bit for bit
    n = M.rows
    Mo = np.empty((n, n), dtype=object)
    for i in range(n):
        for j in range(n):
            Mo[i, j] = (M[i, j] + M[j, i]) / 2
    lam = np.array(eig.eigenvalues, dtype=object)
    return list(_series.series_coefficients(lam, Mo, order))


def _resolved(value: float, scale: float, n: int, factor: float = 1e4) -> bool:
    """Whether a float64 quantity of size ``value`` stands above rounding noise at ``scale``:
    |value| > factor·n·eps·scale. A margin *divided by* ``value`` carries a float error of about
    n·eps·scale/|value| (measured ≤ 1.4× that), so margins normalised by a bound pass
    ``factor=1e7``: resolved then means accurate to ~1e-7, within ADJUDICATION_RTOL."""
    return abs(value) > factor * n * EPS64 * max(scale, TINY)


def _rel(x, scale):
    return x / scale if scale > 0 else x


# Float margins of the hypotheses whose boundary float64 can approach (Outcome.hypothesis_margins):
# each is > 0 when met, relative to n × the scale of its terms, so a value ≤ HYPOTHESIS_BAND
# is within rounding reach of the boundary and the instance is re-decided in interval
# arithmetic by the adjudicator.


def _hypothesis_scale(w: np.ndarray, eta: float = 0.0) -> float:
    return w.shape[0] * max(abs(float(w[0])), abs(float(w[-1])), TINY) + w.shape[0] * eta


def _gap_margins(A: np.ndarray) -> dict:
    w = np.linalg.eigvalsh(A)
    if w.shape[0] < 2:
        return {}
    return {"γ > 0": float(w[-1] - w[-2]) / _hypothesis_scale(w)}


def _gap_eta_margins(inst: MatrixPerturbation) -> dict:
    w = np.linalg.eigvalsh(inst.A)
    if inst.n < 2:
        return {}
    eta = _norm2(inst.E)
    gap = float(w[-1] - w[-2])
    scale = _hypothesis_scale(w, eta)
    return {"γ > 0": gap / scale, "2η < γ": (gap - 2 * eta) / scale}


def _gap_margins_of_A(inst) -> dict:
    """γ > 0 for the matrix A of a pair."""
    return _gap_margins(inst.A)


def _gap_margins_of_F(inst) -> dict:
    """γ > 0 for the FIM F of an ensemble."""
    return _gap_margins(inst.F)
