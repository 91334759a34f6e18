"""The sharp third-order constant K = 4/(3√3) (symbolic.sharp_third_order) and the n = 2 proof of
|λ' − λ1 − a1 − a2| ≤ Kη³/(γ(γ − 2η)), against independent 60-digit eigenvalue computations."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

pytest.importorskip("sympy")

import sympy as sp  # noqa: E402

from fimtheory.highprec import mp_eigh, mp_matrix, working_precision  # noqa: E402
from symbolic import sharp_third_order as T  # noqa: E402

KF = 4 / (3 * np.sqrt(3))


def test_leading_term_and_sharp_constant():
    assert sp.simplify(T.leading_coefficient() + 2 * T.c * (1 - T.c**2) / T.gap**2) == 0
    k, cstar = T.sharp_constant()
    assert sp.simplify(k - sp.Rational(4, 3) / sp.sqrt(3)) == 0
    assert set(cstar) == {-1 / sp.sqrt(3), 1 / sp.sqrt(3)}


def test_ratio_to_the_current_bound_tends_to_one_over_three_root_three():
    assert sp.simplify(T.ratio_limit() - 1 / (3 * sp.sqrt(3))) == 0
    assert sp.simplify(T.extremal_ratio_limit() - 1 / (3 * sp.sqrt(3))) == 0
    assert float(T.ratio_limit()) == pytest.approx(0.19245008972987526, rel=1e-15)


def test_compression_step():
    assert sp.simplify(T.compression_step() + 2 * T.rho**3 * T.c * (1 - T.c**2)) == 0


def _mp_remainder(A, E):
    """λ' − λ1 − a1 − a2 at 60 digits from mp eigen-decompositions (a2 = Σ E_1j²/(λ1 − λj))."""
    with working_precision(60):
        Am, Em = mp_matrix(A), mp_matrix(E)
        eig = mp_eigh(Am, 60)
        v = eig.vector(0)
        a1 = (v.T * Em * v)[0, 0]
        a2 = mpmath.fsum(
            (v.T * Em * eig.vector(j))[0, 0] ** 2 / (eig.eigenvalues[0] - eig.eigenvalues[j])
            for j in range(1, A.shape[0])
        )
        top = mp_eigh(Am + Em, 60).eigenvalues[0]
        e = mp_eigh(Em, 60).eigenvalues
        return top - eig.eigenvalues[0] - a1 - a2, max(abs(e[0]), abs(e[-1])), eig.eigenvalues[0] - eig.eigenvalues[1]


def test_reduction_identity_against_eigenvalues():
    """R(u, c) = u³P(u, c) for A = diag(0, −1), E = mI + u[[c, s], [s, −c]], any m."""
    P = sp.lambdify((T.u, T.c), T.reduction_identity(), "mpmath")
    for uu, cc, mm in [(0.1, -0.577, 0.0), (0.3, 0.9, 0.05), (0.45, -1.0, -0.02), (0.01, 0.3, 0.004)]:
        s = np.sqrt(1 - cc * cc)
        E = mm * np.eye(2) + uu * np.array([[cc, s], [s, -cc]])
        r, _, _ = _mp_remainder(np.diag([0.0, -1.0]), E)
        with working_precision(60):
            want = mpmath.mpf(uu) ** 3 * P(mpmath.mpf(uu), mpmath.mpf(cc))
            # E's entries are rounded floats: compare with the float entries' own (u, c)
            assert abs(r - want) < 1e-12 * abs(want) + mpmath.mpf(10) ** -40


def test_two_by_two_conjecture_is_proved_and_the_proof_can_fail():
    proof = T.prove_two_by_two()
    assert proof.proved, proof
    assert proof.mean_value_boxes > 0  # the corners (0, ∓1/√3) needed the mean-value form
    # sup |Q| = K is approached as u → 0: a constant 0.1 % smaller is not provable
    assert not T.prove_two_by_two(factor=0.999, max_boxes=20_000).proved


def test_two_by_two_ratio_tends_to_one_and_never_exceeds_it():
    """sup over c of the ratio: 0.99986 at η/γ = 1e-4 (c = −1/√3: 1 − 1.42η/γ to first order),
    0.9712 at 0.02 (the Nelder–Mead optimum over n ≤ 6), 0.848 at 0.1; and on random 2 × 2
    instances (any multiple of I, any rotation) the 60-digit ratio is ≤ 1."""
    c0 = -1 / np.sqrt(3)
    assert float(T.extremal_ratio(1e-4, c0)) == pytest.approx(0.99986, abs=2e-5)
    grid = np.linspace(-1, 1, 4001)
    assert max(float(T.extremal_ratio(0.02, cc)) for cc in grid) == pytest.approx(0.97117, abs=1e-4)
    assert max(float(T.extremal_ratio(0.1, cc)) for cc in grid) == pytest.approx(0.84799, abs=1e-4)
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(60):
        gap = rng.uniform(0.1, 2.0)
        th = rng.uniform(0, np.pi)
        Q = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        A = Q @ np.diag([1.0, 1.0 - gap]) @ Q.T
        E = rng.standard_normal((2, 2))
        E = 0.5 * (E + E.T)
        E *= rng.uniform(1e-3, 0.49) * gap / np.max(np.abs(np.linalg.eigvalsh(E)))
        r, eta, g = _mp_remainder(0.5 * (A + A.T), E)
        ratio = abs(r) / (T.K.evalf(60) * eta**3 / (g * (g - 2 * eta)))
        assert ratio <= 1, ratio
        worst = max(worst, float(ratio))
    assert worst > 0.3


def test_sharp_third_coefficient_bound_for_every_n():
    """|a3| ≤ Kη³/γ² (proved for every n by the compression step) on random instances n ≤ 6 with
    clustered lower spectra, and equality on the extremal family embedded in n = 5."""
    from fimtheory import spectral
    from fimtheory._generated import series

    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(200):
        n = int(rng.integers(2, 7))
        lam = np.concatenate([[1.0], 1.0 - rng.uniform(0.2, 0.21 if rng.random() < 0.5 else 3.0, n - 1)])
        E = rng.standard_normal((n, n))
        E = 0.5 * (E + E.T)
        eig = spectral.eigen_data(np.diag(lam))
        a3 = float(series.series_coefficients(eig.eigenvalues, spectral.perturbation_in_eigenbasis(eig, E), 3)[2])
        eta = float(np.max(np.abs(np.linalg.eigvalsh(E))))
        ratio = abs(a3) / (KF * eta**3 / eig.gap**2)
        assert ratio <= 1 + 1e-12
        worst = max(worst, ratio)
    lam = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    E = np.zeros((5, 5))
    c = -1 / np.sqrt(3)
    E[:2, :2] = 0.01 * np.array([[c, np.sqrt(1 - c * c)], [np.sqrt(1 - c * c), -c]])
    eig = spectral.eigen_data(np.diag(lam))
    a3 = float(series.series_coefficients(eig.eigenvalues, spectral.perturbation_in_eigenbasis(eig, E), 3)[2])
    assert abs(a3) / (KF * 0.01**3) == pytest.approx(1.0, rel=1e-9)
    assert worst > 0.2
