"""approx (Lanczos, AH power iteration, AB terms) against independent references at every
iteration count: an mpmath Lanczos with full reorthogonalisation at 60 digits, mp power
iteration, dense eigenvalues, and the Kaniel–Paige bound. Tolerances are multiples of
n·eps·‖K‖.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from fimtheory import approx
from fimtheory.errors import InputError
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision

EPS = np.finfo(float).eps
DPS = 60


def _psd(eigs, seed):
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigs), len(eigs))))
    K = Q @ np.diag(eigs) @ Q.T
    return 0.5 * (K + K.T)


def _mp_lanczos_top(K, start, k):
    """Largest eigenvalue of the k-step Lanczos tridiagonal T_k, all in mpmath (stops at an exact
    invariant subspace, β < 10^-40·max|K|)."""
    with working_precision(DPS):
        Km = mp_matrix(K)
        floor = mpmath.mpf(10) ** -40 * max(abs(float(x)) for x in K.flat)
        q = mp_matrix(start.reshape(-1, 1))
        q = q / mpmath.norm(q)
        Q, alpha, beta = [q], [], []
        for j in range(k):
            w = Km * Q[j]
            alpha.append((Q[j].T * w)[0, 0])
            for _ in range(2):
                for qq in Q:
                    w = w - qq * (qq.T * w)[0, 0]
            b = mpmath.norm(w)
            if j + 1 < k:
                if b < floor:
                    break
                beta.append(b)
                Q.append(w / b)
        m = len(alpha)
        T = mpmath.matrix(m, m)
        for i in range(m):
            T[i, i] = alpha[i]
            if i + 1 < m:
                T[i, i + 1] = T[i + 1, i] = beta[i]
        return max(mpmath.eigsy(T)[0]) if m > 1 else T[0, 0]


N = 10
WELL_CONDITIONED = {
    "spread": _psd(np.linspace(1.0, 10.0, N), 1),
    "rank-deficient (rank 3)": _psd([3.0, 2.0, 1.0] + [0.0] * (N - 3), 3),
    "geometric 2^-k": _psd(2.0 ** -np.arange(N), 4),
    "scaled 1e-200": 1e-200 * _psd(np.linspace(1.0, 10.0, N), 5),
    "scaled 1e200": 1e200 * _psd(np.linspace(1.0, 10.0, N), 6),
}
CLUSTERED = {
    "clustered top (1e-6)": _psd([5.0, 5.0 - 1e-6, 5.0 - 2e-6, 1.0, 1.0, 1.0, 0.5, 0.3, 0.2, 0.1], 2),
    "repeated top": _psd([2.0, 2.0, 2.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0], 7),
}


@pytest.mark.parametrize("name", list(WELL_CONDITIONED))
@pytest.mark.parametrize("seed", range(2))
def test_lanczos_ritz_equals_mp_lanczos_at_every_step_count(name, seed):
    K = WELL_CONDITIONED[name]
    start = np.random.default_rng(seed).standard_normal(N)
    norm = float(np.max(np.abs(np.linalg.eigvalsh(K))))
    for k in range(1, N + 2):  # k > n too: no more than n steps are taken
        got, vec = approx.lanczos_ritz(K, k, start)
        ref = float(_mp_lanczos_top(K, start, min(k, N)))
        assert abs(got - ref) <= 2 * N * EPS * norm, (k, got, ref)
        assert np.linalg.norm(vec) == pytest.approx(1.0, abs=4 * N * EPS)


def _kaniel_paige_lower(w, v1, start, k):
    """λ1 − (λ1 − λn)(tan φ / T_{k−1}(1 + 2ρ))², ρ = (λ1 − λ2)/(λ2 − λn), cos φ = |v1ᵀs|/‖s‖."""
    l1, l2, ln = w[-1], w[-2], w[0]
    cos = abs(v1 @ start) / np.linalg.norm(start)
    tan = math.sqrt(max(1 - cos * cos, 0.0)) / cos
    if l2 == ln:
        return l1 if k > 1 else l1 - (l1 - ln) * tan * tan
    x = 1 + 2 * (l1 - l2) / (l2 - ln)
    cheb = math.cosh((k - 1) * math.acosh(x))
    return l1 - (l1 - ln) * (tan / cheb) ** 2


@pytest.mark.parametrize("name", list(WELL_CONDITIONED) + list(CLUSTERED))
@pytest.mark.parametrize("seed", range(3))
def test_lanczos_ritz_monotone_bounded_kaniel_paige_and_exact_at_n(name, seed):
    K = {**WELL_CONDITIONED, **CLUSTERED}[name]
    start = np.random.default_rng(10 + seed).standard_normal(N)
    w, V = np.linalg.eigh(K)
    norm = float(np.max(np.abs(w)))
    tol = 4 * N * EPS * norm
    with working_precision(DPS):
        lam1 = float(mp_eigh(K, DPS).lambda_max)
    previous = -np.inf
    for k in range(1, N + 1):
        theta, _ = approx.lanczos_ritz(K, k, start)
        assert theta >= previous - tol, (k, theta, previous)  # interlacing: θ_k grows with k
        assert theta <= lam1 + tol
        if name in CLUSTERED and "repeated" in name:
            lower = lam1 - (lam1 - w[0])  # Kaniel–Paige with ρ = 0 says nothing beyond λ_n
        else:
            lower = _kaniel_paige_lower(w, V[:, -1], start, k)
        assert theta >= lower - tol, (k, theta, lower)
        previous = theta
    assert abs(theta - lam1) <= tol  # k = n: the full space


def test_lanczos_ritz_stops_in_an_invariant_subspace():
    """A start inside span{e2, e3} of diag(3, 2, 1, 0): the Krylov space is 2-dimensional, so any
    number of steps gives λ_max of K on that space, 2 — never 3 (as the mp reference does)."""
    K = np.diag([3.0, 2.0, 1.0, 0.0])
    start = np.array([0.0, 1.0, 1.0, 0.0])
    for k in range(1, 6):
        got, vec = approx.lanczos_ritz(K, k, start)
        ref = float(_mp_lanczos_top(K, start, min(k, 4)))
        assert abs(got - ref) <= 8 * 4 * EPS * 3, (k, got, ref)
        assert abs(vec[0]) <= 4 * EPS
    assert got == pytest.approx(2.0, abs=16 * EPS)


@pytest.mark.parametrize(
    ("K", "match"),
    [
        (np.array([[1.0, 2.0], [0.0, 1.0]]), r"^K is not symmetric"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), r"^K has a non-finite entry"),
        (np.array([[np.inf, 0.0], [0.0, 1.0]]), r"^K has a non-finite entry"),
        (np.zeros((0, 0)), r"^K is empty"),
        (np.ones((2, 3)), r"^K must be square"),
        (np.array([["a", "b"], ["c", "d"]]), r"^K must be a real numeric array"),
    ],
    ids=["non-symmetric", "NaN", "inf", "empty", "non-square", "strings"],
)
def test_lanczos_ritz_rejects_bad_K(K, match):
    """Before: a non-symmetric K gave 1.7071 and a NaN K gave nan, without an error."""
    with pytest.raises(InputError, match=match):
        approx.lanczos_ritz(K, 2, np.ones(max(K.shape[0], 1)))


def test_lanczos_ritz_rejects_a_non_numeric_start():
    with pytest.raises(InputError, match=r"^start must be a finite nonzero vector of length 2$"):
        approx.lanczos_ritz(np.eye(2), 2, np.array(["1", "2"]))


# --------------------------------------------------------------------------------------
# AH at every number of power steps; AB terms against mp
# --------------------------------------------------------------------------------------


def _scores(n, p, seed, scale=1.0):
    r = np.random.default_rng(seed)
    return scale * (r.standard_normal((n, p)) + 0.3)


def _mp_rayleigh_after_power_steps(G, steps):
    with working_precision(DPS):
        Gm = mp_matrix(G)
        n = G.shape[0]
        F = Gm.T * Gm / n
        x = mpmath.matrix([sum(Gm[i, j] for i in range(n)) / n for j in range(G.shape[1])])
        x = x / mpmath.norm(x)
        for _ in range(steps):
            x = F * x
            x = x / mpmath.norm(x)
        return (x.T * F * x)[0, 0]


@pytest.mark.parametrize(("n", "p", "scale"), [(6, 4, 1.0), (4, 9, 1.0), (6, 4, 1e150), (6, 4, 1e-150)])
def test_heuristic_equals_mp_power_iteration_at_every_step_count(n, p, scale):
    G = _scores(n, p, n * p, scale)
    for steps in range(0, 12):
        got = approx.heuristic(G, power_steps=steps).value
        ref = float(_mp_rayleigh_after_power_steps(G, steps))
        assert abs(got - ref) <= 16 * (n + p) * EPS * abs(ref), (steps, got, ref)


def _mp_trace_power_root(K, q):
    with working_precision(DPS):
        w = mp_eigh(K, DPS).eigenvalues
        s = mpmath.fsum(max(x, 0) ** q for x in w)
        return s ** (mpmath.mpf(1) / q)


@pytest.mark.parametrize("q", [1, 2, 3, 4, 7, 64, 1000, 10_000])
@pytest.mark.parametrize(("n", "p"), [(7, 5), (5, 12)])
def test_two_sided_trace_power_terms_against_mp(q, n, p):
    """(tr K^q)^{1/q} and (tr K^q / r)^{1/q} for q up to 10⁴ (before: NaN terms once K^q
    overflowed, e.g. q = 1000 on 300×400 scores)."""
    G = _scores(n, p, q + n)
    K = G @ G.T / n
    b = approx.two_sided(G, q=q)
    ref = float(_mp_trace_power_root(K, q))
    r = approx.structural_rank_bound(G)
    tol = 8 * n * math.log2(q + 1) * EPS * ref
    assert abs(b.upper_terms["trace_power_root"] - ref) <= tol
    assert abs(b.lower_terms["trace_power_over_rank"] - ref / r ** (1 / q)) <= tol
    lam = float(np.linalg.eigvalsh(K)[-1])
    assert b.lower <= lam * (1 + 8 * n * EPS) and b.upper >= lam * (1 - 8 * n * EPS)


@pytest.mark.parametrize("k", range(1, 9))
def test_two_sided_lanczos_term_against_mp_at_every_step_count(k):
    G = _scores(8, 20, 3)
    K = G @ G.T / 8
    b = approx.two_sided(G, lanczos_steps=k)
    start = G @ G.mean(axis=0)
    ref = float(_mp_lanczos_top(0.5 * (K + K.T), start, k))
    assert abs(b.lower_terms["lanczos_ritz"] - ref) <= 4 * 8 * EPS * float(np.linalg.eigvalsh(K)[-1])


def test_two_sided_and_heuristic_near_the_float_range_are_exactly_scale_covariant():
    G = _scores(5, 3, 1)
    c = 2.0**500
    b, bs = approx.two_sided(G), approx.two_sided(G * c)
    assert bs.lower == b.lower * c * c and bs.upper == b.upper * c * c
    assert approx.heuristic(G * c).value == approx.heuristic(G).value * c * c


def test_results_that_overflow_float64_are_refused():
    """Before: heuristic of 1e160 scores returned inf."""
    G = _scores(4, 2, 2, 1e160)
    with pytest.raises(InputError, match=r"overflows float64"):
        approx.heuristic(G)
    with pytest.raises(InputError, match=r"overflows float64"):
        approx.two_sided(G)


def test_power_of_two_scale_is_finite_at_the_top_of_the_range():
    """Before: 2^1024 = inf for entries ≥ 2^1023, so G/c was all zeros."""
    a = np.array([np.finfo(float).max, 1.0])
    c = approx.power_of_two_scale(a)
    assert c == 2.0**1023 and 1.0 <= np.max(np.abs(a)) / c < 2.0
