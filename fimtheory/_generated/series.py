# PLACEHOLDER written by hand until symbolic/ generates this module (issue 3).
# Interface contract:
#   series_coefficients(lam, M, order) -> ndarray of [a1..a_order]
#     lam: eigenvalues of A in descending order, lam[0] simple; M = V^T E V (symmetric)
#   remainder_bound_first(eta, gap), remainder_bound_second(eta, gap)  (need 2*eta < gap)
#   coefficient_bound(k, eta, gap) = eta*(2*eta/gap)**(k-1)
import numpy as np


def series_coefficients(lam, M, order=3):
    lam = np.asarray(lam)
    M = np.asarray(M)
    d = lam[0] - lam[1:]
    e = M[0, 1:]
    B = M[1:, 1:]
    w = e / d
    a1 = M[0, 0]
    a2 = np.sum(e * w)
    a3 = w @ B @ w - a1 * np.sum(w * w)
    return np.array([a1, a2, a3][:order], dtype=M.dtype)


def remainder_bound_first(eta, gap):
    return 2.0 * eta**2 / (gap - 2.0 * eta)


def remainder_bound_second(eta, gap):
    return 4.0 * eta**3 / (gap * (gap - 2.0 * eta))


def coefficient_bound(k, eta, gap):
    return eta * (2.0 * eta / gap) ** (k - 1)


def sign_bounds(lam_top, lam_second, lam_min, residual_norm_sq):
    spread = lam_top - lam_min
    gap = lam_top - lam_second
    return residual_norm_sq / spread, residual_norm_sq / gap
