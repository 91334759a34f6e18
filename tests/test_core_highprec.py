"""fimtheory.highprec: rigorous eigenvalue enclosures vs numpy and 100-digit mpmath."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from scipy.stats import ortho_group

from fimtheory import highprec
from fimtheory.errors import InputError

EPS = np.finfo(np.float64).eps
_R = np.random.default_rng(5)


def _psd(eigs, seed):
    Q = ortho_group.rvs(len(eigs), random_state=seed)
    A = Q @ np.diag(eigs) @ Q.T
    return 0.5 * (A + A.T)


_X = _R.standard_normal((5, 2))
CASES = {
    "diag(2,1)": np.diag([2.0, 1.0]),
    "1x1": np.array([[-3.5]]),
    "zero 3": np.zeros((3, 3)),
    "random PSD 4": _psd([4.0, 3.0, 1.0, 0.25], 1),
    "AAT rank 2 of 5": _X @ _X.T,
    "repeated": _psd([2.0, 2.0, 2.0, 1.0], 2),
    "indefinite": (lambda M: 0.5 * (M + M.T))(_R.standard_normal((4, 4))),
    "tiny 1e-150": _psd([3.0, 2.0, 1.0], 3) * 1e-150,
    "huge 1e150": _psd([3.0, 2.0, 1.0], 4) * 1e150,
    "subnormal entries": np.diag([5e-320, 1e-310]),
}


@pytest.mark.parametrize("dps", [30, 60])
@pytest.mark.parametrize("name", list(CASES))
def test_enclosures_contain_numpy_and_mp100_eigenvalues(name, dps):
    A = CASES[name]
    n = A.shape[0]
    enc = highprec.eigenvalue_enclosures(A, dps)
    assert len(enc) == n
    w = np.linalg.eigvalsh(A)[::-1]
    norm = float(np.max(np.abs(w)))
    np_err = 16 * n * EPS * max(norm, np.finfo(float).tiny)  # numpy's own backward error bound
    ref = highprec.mp_eigh(A, 100).eigenvalues
    with highprec.working_precision(100):
        for (lo, hi), wk, rk in zip(enc, w, ref):
            assert lo <= hi
            assert lo <= rk <= hi, "the 100-digit eigenvalue lies in the enclosure"
            assert lo - np_err <= wk <= hi + np_err
            # width ≈ 10^-dps relative to ‖A‖ (a few hundred ulps at that precision)
            assert hi - lo <= mpmath.mpf(10) ** (-dps + 4) * max(mpmath.mpf(norm), mpmath.mpf(2) ** -1074)
    # descending by midpoint
    mids = [(lo + hi) / 2 for lo, hi in enc]
    assert all(a >= b for a, b in zip(mids, mids[1:]))


def test_lambda_max_and_min_enclosures():
    A = CASES["random PSD 4"]
    lo, hi = highprec.lambda_max_enclosure(A, 40)
    assert lo <= 4.0 + 1e-14 and hi >= 4.0 - 1e-14 and hi - lo < 1e-35
    lo, hi = highprec.lambda_min_enclosure(A, 40)
    assert abs((lo + hi) / 2 - 0.25) < 1e-14
    assert highprec.mp_lambda_max(np.diag([1.0, 3.0]), 30) == 3


def test_mp_eigh_vectors_orthonormal_and_exact_input():
    A = CASES["random PSD 4"]
    e = highprec.mp_eigh(A, 50)
    with highprec.working_precision(50):
        V = e.eigenvectors
        M = highprec.mp_matrix(A)
        R = M * V - V * mpmath.diag(e.eigenvalues)
        assert mpmath.mnorm(R, 1) < mpmath.mpf(10) ** -45
        assert mpmath.mnorm(V.T * V - mpmath.eye(4), 1) < mpmath.mpf(10) ** -45
        # float64 entries enter exactly
        assert all(highprec.mp_matrix(A)[i, j] == mpmath.mpf(float(A[i, j])) for i in range(4) for j in range(4))
    assert e.gap > 0 and e.dps == 50
    assert highprec.mp_eigh(np.array([[2.0]]), 30).gap == mpmath.inf


def test_working_precision_restores_dps_also_on_error():
    before_mp, before_iv = mpmath.mp.dps, mpmath.iv.dps
    with highprec.working_precision(77):
        assert mpmath.mp.dps == 77 and mpmath.iv.dps == 77
        with highprec.working_precision(31):
            assert mpmath.mp.dps == 31
        assert mpmath.mp.dps == 77
    assert (mpmath.mp.dps, mpmath.iv.dps) == (before_mp, before_iv)
    with pytest.raises(ZeroDivisionError), highprec.working_precision(40):
        1 / 0  # noqa: B018
    assert (mpmath.mp.dps, mpmath.iv.dps) == (before_mp, before_iv)
    highprec.eigenvalue_enclosures(np.eye(2), 60)
    assert mpmath.mp.dps == before_mp


@pytest.mark.parametrize("dps", [19, 0, -5, 20.0, "50", True, None])
def test_dps_validation(dps):
    with pytest.raises(InputError, match=r"dps must be an integer >= 20"):
        with highprec.working_precision(dps):
            pass


def test_mp_eigh_and_enclosures_of_the_zero_matrix():
    """mpmath.eigsy divides by the norm; the zero matrix (E = 0 from an identity quantizer) must
    still have eigenvalues 0 and a certified enclosure containing 0."""
    from fimtheory.highprec import eigenvalue_enclosures, mp_eigh

    e = mp_eigh(np.zeros((3, 3)), 50)
    assert all(x == 0 for x in e.eigenvalues)
    for lo, hi in eigenvalue_enclosures(np.zeros((3, 3)), 50):
        assert lo <= 0 <= hi


# --------------------------------------------------------------------------------------
# fimtheory.enclosures: interval primitives against closed forms
# --------------------------------------------------------------------------------------


def _two_by_two(a, b, c):
    """[[a, b], [b, c]] and its closed-form eigenpairs at 120 digits."""
    with highprec.working_precision(120):
        A, B, C = (mpmath.mpf(x) for x in (a, b, c))
        h, r = (A + C) / 2, mpmath.sqrt(((A - C) / 2) ** 2 + B**2)
        lam1, lam2 = h + r, h - r
        v = mpmath.matrix([[B], [lam1 - A]])
        v = v / mpmath.norm(v)
    return np.array([[a, b], [b, c]]), (lam1, lam2), v


@pytest.mark.parametrize(
    ("a", "b", "c"), [(2.0, 0.3, 1.0), (1.0, 1e-9, 0.999), (-1.0, 0.75, 3.0), (5.0, 2.0**-40, 5.0 - 2.0**-30)]
)
def test_interval_eigenvalues_and_top_vector_contain_the_closed_form(a, b, c):
    from fimtheory import enclosures as en

    M, (lam1, lam2), v = _two_by_two(a, b, c)
    with highprec.working_precision(60):
        enc = en.float_eigenvalue_enclosures(M)
        assert en.lo(enc[0]) <= lam1 <= en.hi(enc[0]) and en.lo(enc[1]) <= lam2 <= en.hi(enc[1])
        assert en.hi(enc[0]) - en.lo(enc[0]) < mpmath.mpf(10) ** -50 * (1 + abs(lam1))
        te = en.top_eigen(en.iv_matrix(M), enc)
        # the box contains v1 for one of its signs
        sign = 1 if (te.v[0, 0].mid * v[0] + te.v[1, 0].mid * v[1]) > 0 else -1
        for i in range(2):
            assert en.lo(te.v[i, 0]) <= sign * v[i] <= en.hi(te.v[i, 0])


def test_reduced_resolvent_of_a_diagonal_matrix_is_exact():
    """R x = Σ_{j≥2} x_j e_j / (λ1 − λj) for A = diag(3, 1, −1)."""
    from fimtheory import enclosures as en

    with highprec.working_precision(50):
        te = en.top_eigen(en.iv_matrix(np.diag([3.0, 1.0, -1.0])))
        x = en.iv_column([0.5, 2.0, -4.0])
        z = te.resolve(x)
        for got, want in zip([z[i, 0] for i in range(3)], [0, 1, -1]):
            assert en.lo(got) <= want <= en.hi(got) and en.hi(got) - en.lo(got) < mpmath.mpf(10) ** -40


def test_top_eigen_refuses_a_repeated_top_eigenvalue():
    from fimtheory import enclosures as en

    with highprec.working_precision(50):
        with pytest.raises(en.NoEnclosure, match="not certified simple"):
            en.top_eigen(en.iv_matrix(np.diag([2.0, 2.0, 1.0])))


def test_interval_helpers_are_outward_and_refuse_zero_denominators():
    from fimtheory import enclosures as en

    with highprec.working_precision(30):
        x = mpmath.iv.mpf([-1, 2])
        assert en.lo(en.iv_abs(x)) == 0 and en.hi(en.iv_abs(x)) == 2
        assert en.lo(en.iv_sq(x)) == 0 and en.hi(en.iv_sq(x)) == 4
        third = en.fraction_interval(__import__("fractions").Fraction(1, 3))
        assert en.lo(third) < mpmath.mpf(1) / 3 < en.hi(third) or en.lo(third) <= mpmath.mpf(1) / 3 <= en.hi(third)
        with pytest.raises(en.EnclosureError, match="not bounded away from 0"):
            en.iv_div(mpmath.iv.mpf(1), x)
        with pytest.raises(en.HypothesisFails, match="fails"):
            en.require_positive("γ > 0", mpmath.iv.mpf([-2, -1]))
        with pytest.raises(en.EnclosureError, match="undecided"):
            en.require_positive("γ > 0", x)
        en.require_positive("γ > 0", mpmath.iv.mpf([1, 2]))
