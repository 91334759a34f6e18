"""Tests written against surviving mutants of fimtheory/highprec.py and fimtheory/enclosures.py
(see docs/mutation.md): each asserts a property the module's docstrings state — the precision
a result is computed at, the error raised for bad input, and the rigour of an enclosure for
*any* approximate eigen-decomposition — against closed forms or higher-precision references.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from fimtheory import highprec
from fimtheory.errors import InputError

MP = mpmath.mpf

# ---- fimtheory.highprec -------------------------------------------------------------------

_GOLDEN = np.array([[1.0, 1.0], [1.0, 0.0]])  # eigenvalues (1 ± √5)/2


def _golden(sign):
    return (1 + sign * mpmath.sqrt(5)) / 2


def test_mp_lambda_max_is_computed_at_the_requested_precision():
    """λ_max of [[1, 1], [1, 0]] is the golden ratio: at 120 digits the error is ≤ 1e-110,
    far below what 50 digits (the default) can give."""
    with highprec.working_precision(140):
        exact = _golden(+1)
        assert abs(highprec.mp_lambda_max(_GOLDEN, 120) - exact) < MP(10) ** -110
        assert abs(highprec.mp_lambda_max(_GOLDEN, 30) - exact) < MP(10) ** -25


@pytest.mark.parametrize("which", ["max", "min"])
def test_lambda_enclosures_are_taken_at_the_requested_precision(which):
    """The λ_max / λ_min enclosure at 120 digits is ≤ 1e-110 wide and contains the closed form."""
    fn = highprec.lambda_max_enclosure if which == "max" else highprec.lambda_min_enclosure
    lo, hi = fn(_GOLDEN, 120)
    with highprec.working_precision(140):
        exact = _golden(+1 if which == "max" else -1)
        assert lo <= exact <= hi
        assert hi - lo < MP(10) ** -110


@pytest.mark.parametrize(
    "A",
    [np.array([[2.5]]), np.zeros((3, 3)), np.ones((3, 3)), np.diag([2.0, 1.0])],
    ids=["1x1", "zero", "ones", "diag"],
)
def test_mp_eigh_records_the_precision_it_was_computed_at(A):
    e = highprec.mp_eigh(A, 73)
    assert e.dps == 73


def test_mp_eigh_of_a_constant_matrix_is_not_the_zero_shortcut():
    """All-ones 3×3: eigenvalues 3, 0, 0 (only the zero matrix may skip mpmath.eigsy)."""
    e = highprec.mp_eigh(np.ones((3, 3)), 50)
    with highprec.working_precision(50):
        assert abs(e.eigenvalues[0] - 3) < MP(10) ** -45
        assert all(abs(x) < MP(10) ** -45 for x in e.eigenvalues[1:])
        v = e.vector(0)
        assert abs(abs(v[0]) - 1 / mpmath.sqrt(3)) < MP(10) ** -45
    z = highprec.mp_eigh(np.zeros((3, 3)), 50)
    assert z.eigenvalues == [0, 0, 0]


def test_to_mp_symmetric_names_the_matrix_in_its_error():
    bad = np.array([[1.0, 2.0], [0.0, 1.0]])
    with pytest.raises(InputError, match=r"^A is not symmetric: \|A\[0,1\] - A\[1,0\]\|"):
        highprec.to_mp_symmetric(bad)
    with pytest.raises(InputError, match=r"^E is not symmetric: \|E\[0,1\] - E\[1,0\]\|"):
        highprec.to_mp_symmetric(bad, "E")


def _fake_eigen(monkeypatch, values, vectors, dps=50):
    """Replace highprec.mp_eigh by an approximate decomposition (values, vectors) chosen by the
    test: the enclosure must stay rigorous 'whatever the accuracy of the mp eigenvectors'."""

    def fake(m, d=dps):
        return highprec.MpEigen([MP(x) for x in values], mpmath.matrix(vectors), d)

    monkeypatch.setattr(highprec, "mp_eigh", fake)


def test_enclosure_is_rigorous_for_a_scaled_eigenvector_matrix(monkeypatch):
    """A = [[-1]], X = [[9/8]] (XᵀX = 81/64, ν = 17/64 < 1/2) and the approximate eigenvalue
    d = -(81/64) - 1/4: Weyl gives λ(XᵀAX) = -81/64 ∈ [d - 1/4, d + 1/4] and Ostrowski divides by
    θ ∈ [1 - ν, 1 + ν] = [47/64, 81/64]. The exact eigenvalue -1 is the upper end
    (-81/64)/(81/64): every candidate end point has to be there, or -1 falls outside."""
    _fake_eigen(monkeypatch, [-(81 / 64) - 0.25], [[9 / 8]])
    [(lo, hi)] = highprec.eigenvalue_enclosures(np.array([[-1.0]]), 50)
    assert lo <= -1 <= hi
    assert hi == -1  # tight: the bound is attained exactly here


@pytest.mark.parametrize("seed", range(6))
def test_enclosures_are_rigorous_for_perturbed_decompositions(monkeypatch, seed):
    """Random symmetric 3×3 A, an eigenvector matrix perturbed by up to 5% (non-orthogonal,
    ν < 1/2) and eigenvalues off by up to 0.1: the enclosures still contain the 80-digit
    eigenvalues (Weyl + Ostrowski hold for any X with ‖XᵀX − I‖ < 1)."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((3, 3))
    A = 0.5 * (M + M.T)
    w, Q = np.linalg.eigh(A)
    w, Q = w[::-1], Q[:, ::-1]
    X = Q + 0.05 * rng.uniform(-1, 1, (3, 3))
    d = np.sort(w + 0.1 * rng.uniform(-1, 1, 3))[::-1]  # Weyl pairs sorted eigenvalues
    ref = highprec.mp_eigh(A, 80).eigenvalues
    _fake_eigen(monkeypatch, d.tolist(), X.tolist())
    enc = highprec.eigenvalue_enclosures(A, 50)
    with highprec.working_precision(80):
        for (lo, hi), r in zip(enc, ref):
            assert lo <= r <= hi


def test_a_far_from_orthogonal_eigenvector_matrix_is_refused(monkeypatch):
    _fake_eigen(monkeypatch, [1.0, 0.5], [[2.0, 0.0], [0.0, 2.0]])
    with pytest.raises(InputError, match=r"^eigenvector matrix too far from orthogonal for a certified enclosure$"):
        highprec.eigenvalue_enclosures(np.diag([1.0, 0.5]), 50)
