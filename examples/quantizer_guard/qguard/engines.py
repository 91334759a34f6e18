"""λ_max engines: ``engine(M) -> float``, the largest eigenvalue of a symmetric matrix."""

import numpy as np


def dense_lambda_max(M):
    """Correct: LAPACK's symmetric eigensolver."""
    return float(np.linalg.eigvalsh(M)[-1])


def fixed_vector_rayleigh(M):
    """BUGGY: the Rayleigh quotient at the fixed vector 1/√n — a lower bound of λ_max that
    equals it only when 1/√n happens to be a top eigenvector."""
    n = M.shape[0]
    x = np.ones(n) / np.sqrt(n)
    return float(x @ M @ x)
