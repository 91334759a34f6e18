"""Tests written against surviving mutants of fimtheory/highprec.py and fimtheory/enclosures.py
(see docs/mutation.md): each asserts a property the module's docstrings state — the precision
a result is computed at, the error raised for bad input, and the rigour of an enclosure for
*any* approximate eigen-decomposition — against closed forms or higher-precision references.
"""

from __future__ import annotations

from fractions import Fraction

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


# ---- fimtheory.enclosures -----------------------------------------------------------------

from fimtheory import claims, enclosures  # noqa: E402
from fimtheory.instances import KLPairInstance, MatrixPerturbation, ScoreInstance  # noqa: E402


def _subject(cid, weakening=None):
    claim = claims.get_claim(cid)
    return claim.weakening(weakening) if weakening else claim


_KT = ("KT", None)
_KT_GAP = ("KT", "KT-unperturbed-gap")
_LL = ("LL", None)
_LL_GAP = ("LL", "LL-unperturbed-gap")
_S3L = ("S3L", None)
_S3L_2 = ("S3L", "S3L-second-order")
_A2, _E2 = np.diag([1.0, 0.0]), np.array([[0.0, 0.1], [0.1, -0.9]])  # γ + a − η small: KT loose
# the compression of A + E to v⊥ has eigenvalues 0.5 and about −5, w couples v to the lower one:
# r = λ' − λ1 − a lies well below the LL bound, and c = 1 + |λ1| + 2η is needed in full
_A3, _E3 = np.diag([1.0, 0.0, 0.0]), np.array([[0.0, 0.0, 1.0], [0.0, 0.5, 0.0], [1.0, 0.0, -5.0]])
# ‖E‖ = 1 exactly (E diagonal), A's top eigenvector (1, 1)/√2 not an eigenvector of E
_A4, _E4 = np.array([[2.0, 1.0], [1.0, 2.0]]), np.diag([1.0, -0.5])
_SHARP_CASES = [
    (_KT, _A2, _E2),
    (_KT_GAP, _A2, _E2),
    (_LL_GAP, _A2, _E2),
    (_KT_GAP, _A3, _E3),
    (_LL, _A3, _E3),
    (_LL_GAP, _A3, _E3),
    (_KT, _A4, _E4),
    (_LL, _A4, _E4),
    (_S3L, _A4, _E4),
    (_S3L_2, _A4, _E4),
]


@pytest.mark.parametrize(
    ("ids", "A", "E"),
    _SHARP_CASES,
    ids=[f"{w or c}-{A.shape[0]}x{A.shape[0]}-{i}" for i, ((c, w), A, _) in enumerate(_SHARP_CASES)],
)
def test_sharp_enclosures_contain_the_mp_margin_where_the_bounds_are_loose(ids, A, E):
    """KT/LL (two-sided: min(r, bound − r)) and their one-sided weakenings on instances where
    r is *not* close to the bound, so the two readings differ; S3L with ‖E‖ exactly 1."""
    subject = _subject(*ids)
    inst = MatrixPerturbation(A, E)
    lo, hi = enclosures.margin_enclosure(subject, inst, 60)
    m = subject.evaluate_mp(inst, 100)
    assert lo <= m <= hi, (subject.id, lo, m, hi)
    assert hi - lo <= MP(10) ** -25 * (1 + abs(m))


@pytest.mark.parametrize("ids", [_KT, _KT_GAP, _LL, _LL_GAP, _S3L, _S3L_2], ids=lambda t: t[1] or t[0])
def test_sharp_enclosures_of_a_zero_perturbation_are_exactly_zero(ids):
    lo, hi = enclosures.margin_enclosure(_subject(*ids), MatrixPerturbation(_A4, np.zeros((2, 2))), 60)
    assert lo == hi == 0


def test_kt_names_its_failed_hypothesis():
    with pytest.raises(enclosures.HypothesisFails, match=r"^γ \+ a − η > 0 fails at 60 digits"):
        enclosures.margin_enclosure(_subject(*_KT), MatrixPerturbation(_A3, _E3), 60)


def test_compression_top_refuses_a_shift_that_does_not_bound_the_compression():
    """Called with a shift c = 1 + ‖A‖₂ + 2η too small for A (λ1 = 0, η = 0 and a — wrong — λ2
    enclosure [−1, −0.5] give c = 2, but A has −5 on v⊥): the v direction (−c = −2) would be
    taken for the compression's top (−5); it must refuse."""
    with highprec.working_precision(50):
        A_iv = enclosures.iv_matrix(np.diag([0.0, -5.0]))
        te = enclosures.top_eigen(A_iv, [enclosures.iv.mpf(0), enclosures.iv.mpf([-1, -0.5])])
        eta = enclosures.iv.mpf(0)
        with pytest.raises(
            enclosures.EnclosureError, match=r"^compression eigenvalue not separated from the shifted v direction$"
        ):
            enclosures._compression_top(te, A_iv, enclosures.iv_matrix(np.zeros((2, 2))), eta)


@pytest.mark.parametrize(
    ("G", "steps"), [([[1.0, 2.0], [1.1, -2.0]], 1), ([[1.0, 3.0], [1.0, -3.0]], 2)], ids=["near-mean", "exact-mean"]
)
def test_ah_enclosure_where_the_lower_side_is_the_binding_one(G, steps):
    """Rows whose mean is (nearly) F's top direction's complement: F^k ḡ's Rayleigh quotient
    is at (or near) ‖ḡ‖², so min(rq − ‖ḡ‖², λ − rq) is the lower side."""
    subject, inst = _subject("AH"), ScoreInstance(np.array(G), power_steps=steps)
    lo, hi = enclosures.margin_enclosure(subject, inst, 60)
    m = subject.evaluate_mp(inst, 100)
    assert lo <= m <= hi and hi - lo <= MP(10) ** -25 * (1 + abs(m))


def test_ab_numerical_rank_names_a_zero_score_matrix():
    with pytest.raises(enclosures.HypothesisFails, match=r"^G = 0$"):
        enclosures.margin_enclosure(_subject("AB", "AB-numerical-rank"), ScoreInstance(np.zeros((2, 3))), 60)


_S_NO_DISC = ("S", "S-no-disc")


@pytest.mark.parametrize(
    ("A", "E", "want"),
    [
        (np.diag([0.25, 0.0]), np.diag([0.0, 0.75]), -0.5),  # scale |d_k| + max|e| = 1 exactly
        (np.diag([1.0, 3.0]), np.diag([0.5, 0.1]), 0.0),  # A's top entry is not the first
        (np.diag([0.0, -1.0]), np.zeros((2, 2)), 0.0),  # scale 0
        (np.diag([2.0, 0.5, 1.0]), np.diag([-1.5, 0.25, 0.0]), Fraction(-1, 7)),
    ],
)
def test_s_no_disc_exact_margin_on_diagonal_pairs(A, E, want):
    """On diagonal pairs the margin is −|max(d + e) − d_k − e_k| / (|d_k| + max|e|), k = argmax d."""
    lo, hi = enclosures.margin_enclosure(_subject(*_S_NO_DISC), MatrixPerturbation(A, E), 50)
    with highprec.working_precision(60):
        w = MP(Fraction(want).numerator) / Fraction(want).denominator
        assert lo <= w <= hi and hi - lo < MP(10) ** -45


@pytest.mark.parametrize(
    ("A", "E", "msg"),
    [
        (np.array([[1.0, 0.5], [0.5, 0.0]]), np.zeros((2, 2)), r"^S-no-disc is checked on diagonal pairs only$"),
        (np.diag([1.0, 0.0]), np.array([[0.0, 0.5], [0.5, 0.0]]), r"^S-no-disc is checked on diagonal pairs only$"),
        (np.diag([2.0, 2.0]), np.diag([0.5, 0.0]), r"^γ = 0 \(top diagonal entry of A repeated\)$"),
        (np.diag([1.0, 2.0, 2.0]), np.zeros((3, 3)), r"^γ = 0 \(top diagonal entry of A repeated\)$"),
    ],
)
def test_s_no_disc_refuses_what_it_cannot_decide(A, E, msg):
    with pytest.raises(enclosures.HypothesisFails, match=msg):
        enclosures.margin_enclosure(_subject(*_S_NO_DISC), MatrixPerturbation(A, E), 50)


@pytest.mark.parametrize("weakening", [None, "KL-zero-iff-equal", "KL-nonnegative"])
def test_kl_enclosures_refuse_vectors_over_different_tokens(weakening):
    inst = KLPairInstance(np.array([0.5, 0.5]), np.array([0.2, 0.3, 0.5]))
    with pytest.raises(enclosures.HypothesisFails, match=r"^p and q are not over the same tokens$"):
        enclosures.margin_enclosure(_subject("KL-SORTED", weakening), inst, 50)


def test_kl_zero_refuses_equal_distributions():
    inst = KLPairInstance(np.array([0.25, 0.75]), np.array([0.5, 1.5]))  # equal after renormalising
    with pytest.raises(enclosures.HypothesisFails, match=r"^the two distributions are equal$"):
        enclosures.margin_enclosure(_subject("KL-SORTED", "KL-zero-iff-equal"), inst, 50)


# ---- every table enclosure against its mp margin, on draws that do not depend on the process --
#
# The per-subject enclosure tests elsewhere draw their instances with Hypothesis, whose pool of
# "local constants" depends on which modules the process has imported: in a process that has
# already run other tests (mutmut's forked workers) they draw other instances than in a fresh
# one, and several enclosure mutants were killed only in a fresh process. Here the pool is
# pinned empty (as properties.verify does), so the instances are the same in every process.

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

from properties import verify as _verify  # noqa: E402
from properties.claim_strategies import strategy_for  # noqa: E402

_TABLE_SUBJECTS = [
    s
    for c in claims.REGISTRY.values()
    for s in (c, *c.weakenings)
    if getattr(s, "evaluate_iv", None) is None and s.id in enclosures.ENCLOSURES and s.evaluate_mp is not None
]
_FLOAT_EXACT = {"P3.2", "P3.2-no-LCM", "C", "C-repeated-thresholds", "C-no-nan-cell", "C-open-top", "C-closed-cells"}


def _pinned_instances(subject, k=5, examples=60):
    found = []

    @settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(strategy_for(subject.strategy))
    def collect(inst):
        if len(found) < k and subject.evaluate(inst).hypotheses_met:
            found.append(inst)

    with _verify._without_local_constants():
        collect()
    return found


@pytest.mark.parametrize("subject", _TABLE_SUBJECTS, ids=[s.id for s in _TABLE_SUBJECTS])
def test_table_enclosure_contains_the_mp_margin_on_pinned_draws(subject):
    insts = _pinned_instances(subject)
    assert insts, f"no instance of {subject.id} met the hypotheses"
    enclosed = 0
    for inst in insts:
        try:
            lo, hi = enclosures.margin_enclosure(subject, inst, 60)
        except enclosures.EnclosureError:
            continue
        enclosed += 1
        if subject.id in _FLOAT_EXACT:
            m = MP(float(subject.evaluate(inst).margin))
            assert lo - MP(10) ** -12 * (1 + abs(m)) <= m <= hi + MP(10) ** -12 * (1 + abs(m)), (subject.id, lo, m, hi)
            continue
        m = subject.evaluate_mp(inst, 100)
        with highprec.working_precision(100):
            assert lo <= m <= hi, (subject.id, lo, m, hi)
            assert hi - lo <= MP(10) ** -25 * (1 + abs(m)), (subject.id, lo, hi)
    assert enclosed >= 1, subject.id


def test_weyl_enclosure_where_the_lower_bound_binds():
    """3×3 (for n = 2 the lower bound λ1(A+E) ≥ λ1(A) + λ_min(E) equals a Weyl pair term by the
    trace): here it is the smallest of the Weyl terms by 0.19, with λ_min(E) ≈ −0.87."""
    A = np.diag([1.9, 0.1, 1.1])
    E = np.array([[-0.7, -0.1, 0.0], [-0.1, 0.6, 0.4], [0.0, 0.4, -0.5]])
    subject, inst = _subject("W"), MatrixPerturbation(A, E)
    lo, hi = enclosures.margin_enclosure(subject, inst, 60)
    m = subject.evaluate_mp(inst, 100)
    with highprec.working_precision(100):
        assert lo <= m <= hi and hi - lo <= MP(10) ** -25


# ---- highprec's raw-tuple products (mp_matmul, mp_matpow) ----------------------------------


def _rand_mp(rows, cols, seed):
    return highprec.mp_matrix(np.random.default_rng(seed).standard_normal((rows, cols)))


@pytest.mark.parametrize("transpose_a", [False, True])
def test_mp_matmul_is_mpmaths_product_bit_for_bit(transpose_a):
    with highprec.working_precision(50):
        A, B = _rand_mp(3, 3, 1), _rand_mp(3, 2, 2)
        got, want = highprec.mp_matmul(A, B, transpose_a=transpose_a), (A.T if transpose_a else A) * B
        assert [[got[i, j] for j in range(2)] for i in range(3)] == [[want[i, j] for j in range(2)] for i in range(3)]


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("complex_side", ["A", "B"])
def test_mp_matmul_falls_back_to_mpmath_for_complex_entries(transpose_a, complex_side):
    with highprec.working_precision(30):
        A, B = _rand_mp(2, 2, 3), _rand_mp(2, 2, 4)
        if complex_side == "A":
            A[0, 1] = mpmath.mpc(1, 2)
        else:
            B[1, 0] = mpmath.mpc(-1, 0.5)
        got, want = highprec.mp_matmul(A, B, transpose_a=transpose_a), (A.T if transpose_a else A) * B
        assert all(got[i, j] == want[i, j] for i in range(2) for j in range(2))


def test_mp_matmul_refuses_incompatible_shapes():
    with highprec.working_precision(30):
        with pytest.raises(ValueError, match=r"^dimensions not compatible for multiplication$"):
            highprec.mp_matmul(_rand_mp(2, 3, 5), _rand_mp(2, 3, 6))


def test_mp_matpow_powers_and_refusals():
    with highprec.working_precision(30):
        A = _rand_mp(3, 3, 7)
        assert highprec.mp_matpow(A, 0) == mpmath.eye(3)
        assert highprec.mp_matpow(A, 1) == A
        assert highprec.mp_matpow(A, 3) == A**3
        for bad in (-1, True, 1.0):
            with pytest.raises(ValueError, match=r"^only non-negative integer exponents are supported, got "):
                highprec.mp_matpow(A, bad)
        with pytest.raises(ValueError, match=r"^only powers of square matrices are defined$"):
            highprec.mp_matpow(_rand_mp(2, 3, 8), 2)
