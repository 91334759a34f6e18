"""The generated series module against high-precision eigenvalues (mpmath, 50 digits)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from fimtheory._generated import series
from fimtheory.errors import InputError

DPS = 50


def _instance(seed: int, n: int):
    """Diagonal A with a clear gap and a symmetric E, as exact binary floats."""
    rng = np.random.default_rng(seed)
    lam = np.sort(rng.uniform(-2.0, 2.0, n))[::-1]
    lam[0] = lam[1] + rng.uniform(0.5, 1.5)
    E = rng.normal(size=(n, n))
    return lam, (E + E.T) / 2


def _mp_lambda_max(lam, E, t):
    """λ_max(diag(lam) + tE) at DPS digits (A already diagonal, so M = E)."""
    with mpmath.workdps(DPS):
        n = len(lam)
        A = mpmath.matrix(n, n)
        for i in range(n):
            for j in range(n):
                A[i, j] = (mpmath.mpf(float(lam[i])) if i == j else 0) + t * mpmath.mpf(float(E[i, j]))
        return max(mpmath.eigsy(A, eigvals_only=True))


def _rotated(lam, E, seed):
    """The same spectrum in a random orthonormal basis: (A, E_rotated, V)."""
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(lam), len(lam))))
    return Q


@pytest.mark.parametrize("seed,n", [(0, 2), (1, 3), (2, 5), (3, 8)])
def test_coefficients_agree_with_mpmath_eigenvalues(seed, n):
    lam, E = _instance(seed, n)
    a = series.series_coefficients(lam, E, 4)
    scale = 1 + np.abs(a).max()
    with mpmath.workdps(DPS):
        for t in (mpmath.mpf("1e-4"), mpmath.mpf("2e-4")):
            exact = _mp_lambda_max(lam, E, t) - mpmath.mpf(float(lam[0]))
            poly = sum(mpmath.mpf(float(a[k])) * t ** (k + 1) for k in range(4))
            # what is left is O(t^5) (plus float64 rounding of a_k, ~1e-16·a_k·t^k)
            assert abs(exact - poly) <= 50 * scale * t**5 + 1e-13 * scale * t, (t, exact, poly)
            # and each coefficient matters: dropping a4 is visibly worse when a4 ≠ 0
            if abs(a[3]) > 1e-3:
                assert abs(exact - poly + mpmath.mpf(float(a[3])) * t**4) > 10 * abs(exact - poly)


def test_second_order_residual_shrinks_like_t_cubed():
    lam, E = _instance(7, 6)
    a1, a2 = series.series_coefficients(lam, E, 2)
    ts = [mpmath.mpf(2) ** -k for k in range(8, 14)]
    with mpmath.workdps(DPS):
        residuals = [abs(_mp_lambda_max(lam, E, t) - float(lam[0]) - t * float(a1) - t**2 * float(a2)) for t in ts]
        logs_t = [float(mpmath.log(t)) for t in ts]
        logs_r = [float(mpmath.log(r)) for r in residuals]
    slope = np.polyfit(logs_t, logs_r, 1)[0]
    assert slope >= 2.9, slope


@pytest.mark.parametrize("order", [1, 2, 3])
def test_residual_orders_for_each_truncation(order):
    lam, E = _instance(11, 5)
    a = series.series_coefficients(lam, E, order)
    ts = [mpmath.mpf(2) ** -k for k in (9, 11, 13)]
    with mpmath.workdps(DPS):
        res = []
        for t in ts:
            poly = sum(mpmath.mpf(float(a[k])) * t ** (k + 1) for k in range(order))
            res.append(abs(_mp_lambda_max(lam, E, t) - float(lam[0]) - poly))
        slope = float(mpmath.log(res[0] / res[-1]) / mpmath.log(ts[0] / ts[-1]))
    assert slope >= order + 1 - 0.1, slope


def test_eigenbasis_convention_with_a_rotated_matrix():
    lam, E0 = _instance(5, 4)
    Q = _rotated(lam, E0, 5)
    A = Q @ np.diag(lam) @ Q.T
    E = Q @ E0 @ Q.T
    w, V = np.linalg.eigh(A)
    w, V = w[::-1], V[:, ::-1]
    a = series.series_coefficients(w, V.T @ E @ V, 3)
    np.testing.assert_allclose(a, series.series_coefficients(lam, E0, 3), rtol=1e-9, atol=1e-12)


def test_mp_object_arrays_are_kept_at_mp_precision():
    lam, E = _instance(2, 4)
    with mpmath.workdps(DPS):
        lam_mp = np.array([mpmath.mpf(float(x)) for x in lam], dtype=object)
        E_mp = np.array([[mpmath.mpf(float(x)) for x in row] for row in E], dtype=object)
        a = series.series_coefficients(lam_mp, E_mp, 4)
        assert all(isinstance(x, mpmath.mpf) for x in a)
        t = mpmath.mpf("1e-6")
        exact = _mp_lambda_max(lam, E, t) - mpmath.mpf(float(lam[0]))
        assert abs(exact - sum(a[k] * t ** (k + 1) for k in range(4))) < 1e-27


def test_s2_remainder_bounds_hold_on_random_instances():
    rng = np.random.default_rng(3)
    for trial in range(40):
        lam, E = _instance(100 + trial, int(rng.integers(2, 7)))
        gap = lam[0] - lam[1]
        eta_target = rng.uniform(0.05, 0.45) * gap
        E = E / np.linalg.norm(E, 2) * eta_target
        eta = np.linalg.norm(E, 2)
        a1, a2 = series.series_coefficients(lam, E, 2)
        top = float(_mp_lambda_max(lam, E, 1))
        assert abs(top - lam[0] - a1) <= series.remainder_bound_first(eta, gap) * (1 + 1e-12)
        assert abs(top - lam[0] - a1 - a2) <= series.remainder_bound_second(eta, gap) * (1 + 1e-12)
        for k, ak in enumerate(series.series_coefficients(lam, E, 4), start=1):
            assert abs(ak) <= series.coefficient_bound(k, eta, gap) * (1 + 1e-12)


def test_bound_values():
    assert series.remainder_bound_first(0.1, 1.0) == pytest.approx(0.02 / 0.8)
    assert series.remainder_bound_second(0.1, 1.0) == pytest.approx(0.004 / 0.8)
    assert series.coefficient_bound(3, 0.1, 1.0) == pytest.approx(0.1 * 0.2**2)
    with mpmath.workdps(30):
        assert isinstance(series.remainder_bound_first(mpmath.mpf("0.1"), mpmath.mpf(1)), mpmath.mpf)


def test_sign_bounds_bracket_a2():
    for seed in range(20):
        lam, E = _instance(200 + seed, 6)
        a2 = series.series_coefficients(lam, E, 2)[1]
        residual = float(np.sum(E[0, 1:] ** 2))
        lower, upper = series.sign_bounds(lam[0], lam[1], lam[-1], residual)
        assert 0 <= lower <= a2 * (1 + 1e-12) and a2 <= upper * (1 + 1e-12)


def test_input_errors():
    with pytest.raises(InputError):
        series.series_coefficients([1.0, 1.0], np.eye(2))  # repeated top
    with pytest.raises(InputError):
        series.series_coefficients([2.0, 1.0], np.eye(3))
    with pytest.raises(InputError):
        series.series_coefficients([2.0, 1.0], np.eye(2), order=5)
    assert series.series_coefficients([3.0], [[2.0]], 4).tolist() == [2.0, 0.0, 0.0, 0.0]
