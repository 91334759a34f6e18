"""Eigen-data of symmetric matrices and the perturbation series of λ_max(A + tE).

The series coefficients come from :mod:`fimtheory._generated.series`, the module that
``python -m symbolic.generate`` writes from the sympy derivation (Rayleigh–Schrödinger).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fimtheory._generated import series as _series
from fimtheory.errors import HypothesesNotMet, InputError
from fimtheory.validation import EPS64, as_psd, as_symmetric, check_same_shape


@dataclass(frozen=True)
class EigenData:
    """Spectrum of a symmetric matrix in descending order.

    Attributes
    ----------
    eigenvalues : (n,) ndarray, λ1 ≥ λ2 ≥ … ≥ λn.
    eigenvectors : (n, n) ndarray, column j is the unit eigenvector of eigenvalues[j].
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def top_vector(self) -> np.ndarray:
        return self.eigenvectors[:, 0]

    @property
    def gap(self) -> float:
        """γ = λ1 − λ2 (0 for a 1×1 matrix would be meaningless; there it is +inf)."""
        if self.eigenvalues.shape[0] < 2:
            return float("inf")
        return float(self.eigenvalues[0] - self.eigenvalues[1])

    def gap_resolved(self) -> bool:
        """Whether γ exceeds the backward error of the eigen-solver (≈ n·eps·‖A‖).

        Below that, float64 cannot tell a simple top eigenvalue from a repeated one.
        """
        n = self.eigenvalues.shape[0]
        scale = max(abs(self.lambda_max), abs(self.lambda_min), np.finfo(float).tiny)
        return self.gap > 16.0 * n * EPS64 * scale


def eigen_data(A, name: str = "A") -> EigenData:
    """Eigenvalues (descending) and eigenvectors of a symmetric matrix."""
    a = as_symmetric(A, name)
    w, V = np.linalg.eigh(a)
    return EigenData(w[::-1].copy(), V[:, ::-1].copy())


def lambda_max(A, name: str = "A") -> float:
    """Largest eigenvalue of a symmetric matrix."""
    return float(np.linalg.eigvalsh(as_symmetric(A, name))[-1])


def perturbation_in_eigenbasis(eig: EigenData, E) -> np.ndarray:
    """M = VᵀEV: the matrix elements E_jk = v_jᵀ E v_k of a perturbation."""
    M = eig.eigenvectors.T @ E @ eig.eigenvectors
    return 0.5 * (M + M.T)


def perturbation_coefficients(A, E, order: int = 3) -> tuple[float, np.ndarray]:
    """Taylor coefficients of λ_max(A + tE) = λ1 + t a1 + t² a2 + t³ a3 + …

    Parameters
    ----------
    A : (n, n) array_like
        Symmetric positive semidefinite; its top eigenvalue must be simple (γ > 0
        resolved in float64).
    E : (n, n) array_like
        Symmetric perturbation.
    order : int, 1..4
        Number of coefficients returned.

    Returns
    -------
    lambda1 : float
        λ_max(A).
    coefficients : (order,) ndarray
        [a1, …, a_order] from the symbolic derivation (module fimtheory._generated.series).

    Raises
    ------
    HypothesesNotMet
        When the top eigenvalue of A is repeated within rounding: the series does not exist.
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= 4:
        raise InputError(f"order must be an integer in 1..4, got {order!r}")
    a = as_psd(A, "A")
    e = as_symmetric(E, "E")
    check_same_shape(a, e)
    eig = eigen_data(a)
    if a.shape[0] > 1 and not eig.gap_resolved():
        raise HypothesesNotMet(
            f"the top eigenvalue of A is not simple: gap {eig.gap:.3g} is below float64 "
            f"resolution; the perturbation series needs γ > 0"
        )
    M = perturbation_in_eigenbasis(eig, e)
    coeffs = np.asarray(_series.series_coefficients(eig.eigenvalues, M, order), dtype=float)
    return eig.lambda_max, coeffs


def series_value(lambda1: float, coefficients, t: float = 1.0) -> float:
    """Truncated series λ1 + Σ_k a_k t^k."""
    c = np.asarray(coefficients, dtype=float)
    powers = t ** np.arange(1, c.shape[0] + 1)
    return float(lambda1 + np.dot(c, powers))


def off_top_residual_norm_sq(eig: EigenData, E) -> float:
    """‖P⊥Ev‖² with v the top eigenvector: the quantity whose vanishing makes a2 = 0."""
    v = eig.top_vector
    Ev = np.asarray(E, dtype=float) @ v
    r = Ev - v * (v @ Ev)
    return float(r @ r)
