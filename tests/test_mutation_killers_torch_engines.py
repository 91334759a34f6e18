"""Mutation killers for torch_checks.engines (the λ_max engines: dense / Gram / Lanczos on G,
the structured per-sample and per-token Grams, the reverse-over-reverse autodiff path and its
cotangent pruner). Each test was written from a surviving mutant of the torch-engines mutmut
run and checked to fail on that mutant and pass on the original (docs/mutation_torch_engines.md
lists them).

References are independent of the code under test: dense float64 eigendecompositions (numpy),
per-sample scores from one torch.autograd.grad per sample written here, closed forms (the
Rayleigh quotient of the seeded start vector, exact power-of-two scalings).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from fimtheory.errors import InputError  # noqa: E402
from torch_checks import engines as ENG  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64
EPS = float(np.finfo(np.float64).eps)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _psd(dim, seed, top=None):
    """A symmetric PSD matrix Q diag(d) Qᵀ with a separated top eigenvalue (float64) and d."""
    g = _gen(seed)
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=F64))
    d = torch.linspace(0.0, 1.0, dim, dtype=F64)
    if top is not None:
        d[-1] = top
    A = (Q * d) @ Q.T
    return 0.5 * (A + A.T), d


def _start(dim, seed=0):
    """The documented Lanczos start: a float64 Gaussian drawn on the CPU from ``seed``, normalised."""
    q = torch.randn(dim, generator=_gen(seed), dtype=F64)
    return q / torch.linalg.vector_norm(q)


def _np_top(A):
    return float(np.linalg.eigvalsh(np.asarray(A, dtype=np.float64))[-1])


# --------------------------------------------------------------------------------------
# lanczos
# --------------------------------------------------------------------------------------


def test_lanczos_dim_below_one_is_refused_with_the_value():
    with pytest.raises(InputError) as exc:
        ENG.lanczos(lambda v: v, 0)
    assert str(exc.value) == "dim must be >= 1, got 0"
    r = ENG.lanczos(lambda v: 3.0 * v, 1)  # dim 1 is valid: exact after one step
    assert r.value == pytest.approx(3.0, rel=1e-15) and r.iterations == 1 and r.converged


def test_lanczos_ritz_pair_against_a_dense_eigh():
    """On a 40×40 PSD matrix with a separated top: the value is the top eigenvalue to within the
    residual, the vector is a unit float64 vector along the top eigenvector, the residual is
    ‖Ay − θy‖ recomputed here, and the stop came from the residual test (estimate ≤ tol·θ)."""
    A, d = _psd(40, 1, top=2.0)
    ref = _np_top(A)
    r = ENG.lanczos(lambda v: A @ v, 40, tol=1e-12, seed=3)
    assert r.converged and 1 < r.iterations < 40
    assert r.vector.dtype == F64 and r.vector.shape == (40,)
    assert abs(float(torch.linalg.vector_norm(r.vector)) - 1.0) <= 1e-13
    res = float(torch.linalg.vector_norm(A @ r.vector - r.value * r.vector))
    assert r.residual == pytest.approx(res, rel=1e-6, abs=1e-15)
    assert r.residual <= 1e-10 * ref
    assert abs(r.value - ref) <= r.residual + 64 * EPS * ref
    assert r.residual_estimate <= 1e-12 * ref
    top = torch.linalg.eigh(A).eigenvectors[:, -1]
    assert abs(abs(float(top @ r.vector)) - 1.0) <= 1e-12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lanczos_first_step_is_the_rayleigh_quotient_of_the_seeded_start(dtype):
    """max_iter=1: θ = qᵀAq for q the normalised float64 Gaussian of the seed (default 0), cast
    to the dtype; y = q; not converged; the estimate is ‖Aq − θq‖ (= β₁ after reorthogonalisation)."""
    A, _ = _psd(7, 2, top=3.0)
    A = A.to(dtype)
    for seed, kw in ((0, {}), (5, {"seed": 5})):
        q = _start(7, seed).to(dtype)
        r = ENG.lanczos(lambda v: A @ v, 7, dtype=dtype, max_iter=1, **kw)
        rq = float(q.double() @ A.double() @ q.double())
        tol = 1e-13 if dtype == F64 else 1e-5
        assert r.value == pytest.approx(rq, rel=tol)
        assert r.vector.dtype == dtype
        assert float((r.vector.double() - q.double()).abs().max()) <= tol
        assert (r.iterations, r.converged) == (1, False)
        res = float(torch.linalg.vector_norm(A.double() @ q.double() - rq * q.double()))
        assert r.residual == pytest.approx(res, rel=tol * 100)
        assert r.residual_estimate == pytest.approx(res, rel=tol * 100)


def test_lanczos_is_invariant_under_power_of_two_scaling():
    """Scaling A by 2^±60 scales every quantity of the iteration exactly: same steps, same
    convergence, θ and the residuals scaled by the same power of two (the stopping tests are
    relative to the largest |θ|, |α|, β seen, never to 1)."""
    A, _ = _psd(30, 4, top=1.5)
    base = ENG.lanczos(lambda v: A @ v, 30, tol=1e-12, seed=1)
    for e in (-60, 60):
        c = 2.0**e
        As = A * c
        r = ENG.lanczos(lambda v, As=As: As @ v, 30, tol=1e-12, seed=1)
        assert (r.iterations, r.converged) == (base.iterations, base.converged)
        assert r.value == base.value * c
        # (the tridiagonal eigenvector comes from LAPACK, which rescales internally: to rounding)
        assert r.residual_estimate == pytest.approx(base.residual_estimate * c, rel=1e-6)
        assert float((r.vector - base.vector).abs().max()) <= 1e-12


def test_lanczos_tolerance_and_iteration_cap():
    A, _ = _psd(60, 5, top=1.2)
    ref = _np_top(A)

    def op(v):
        return A @ v

    default = ENG.lanczos(op, 60)
    explicit = ENG.lanczos(op, 60, tol=1e-10, seed=0)
    assert (default.value, default.iterations, default.residual) == (
        explicit.value,
        explicit.iterations,
        explicit.residual,
    )
    assert default.residual_estimate <= 1e-10 * ref
    loose = ENG.lanczos(op, 60, tol=1e-3)
    tight = ENG.lanczos(op, 60, tol=1e-13)
    assert loose.converged and tight.converged
    assert loose.iterations < tight.iterations
    assert loose.residual_estimate <= 1e-3 * ref and tight.residual_estimate <= 1e-13 * ref * 1.01
    capped = ENG.lanczos(op, 60, tol=1e-13, max_iter=3)
    assert (capped.iterations, capped.converged) == (3, False)
    assert capped.value <= ref * (1 + 1e-14)
    # more steps than the dimension: stops at the dimension, exact (the whole space is spanned)
    d = torch.tensor([0.5, 1.0, 2.0, 4.0, 3.0], dtype=F64)
    full = ENG.lanczos(lambda v: d * v, 5, tol=0.0, max_iter=50)
    assert full.iterations <= 5 and full.converged
    assert full.value == pytest.approx(4.0, rel=1e-14)


def test_lanczos_default_cap_is_500_steps():
    """A top cluster of 400 eigenvalues within 1e-6 cannot be resolved to 64·eps in 500 steps:
    the default max_iter (min(dim, 500)) stops there, unconverged, with a value ≤ λ_max."""
    d = torch.cat([torch.linspace(0.0, 0.5, 600, dtype=F64), 1.0 - 1e-6 * torch.linspace(0, 1, 400, dtype=F64)])
    r = ENG.lanczos(lambda v: d * v, 1000, tol=0.0)
    assert (r.iterations, r.converged) == (500, False)
    assert 1.0 - 1e-6 <= r.value <= 1.0 + 1e-15


def test_lanczos_breakdown_and_zero_operator():
    """Three distinct eigenvalues: the Krylov space is invariant after 3 steps (β ≈ 0), the Ritz
    values are eigenvalues. The zero operator stops at once with θ = 0."""
    d = torch.tensor([1.0, 2.0, 5.0] * 10, dtype=F64)
    r = ENG.lanczos(lambda v: d * v, 30, tol=0.0)
    assert (r.iterations, r.converged) == (3, True)
    assert r.value == pytest.approx(5.0, rel=1e-14)
    assert r.residual <= 1e-13
    z = ENG.lanczos(lambda v: torch.zeros_like(v), 9)
    assert (z.value, z.iterations, z.converged, z.residual) == (0.0, 1, True, 0.0)
    assert abs(float(torch.linalg.vector_norm(z.vector)) - 1.0) <= 1e-14


# --------------------------------------------------------------------------------------
# lambda_max: the method choice, what reaches the eigensolvers, the reported residual
# --------------------------------------------------------------------------------------


def _spy(monkeypatch):
    """Replace the heavy kernels by recorders, so that the shape thresholds of ``auto`` (2048,
    4096) can be exercised on zero-stride tensors."""
    seen = {}

    def fisher(G):
        seen["built"] = ("F", tuple(G.shape))
        return torch.zeros(2, 2, dtype=G.dtype)

    def gram(G, block_size=2048):
        seen["built"] = ("K", tuple(G.shape))
        seen["block_size"] = block_size
        return torch.zeros(2, 2, dtype=G.dtype)

    def top_eigh(A, want_vector=True):
        seen["want_vector"] = want_vector
        return 1.25, (torch.ones(2, dtype=A.dtype) if want_vector else None), 0.5

    def lanczos(matvec, dim, **kw):
        seen["built"] = ("lanczos", dim)
        seen["lanczos"] = kw
        return ENG.LanczosResult(1.5, torch.ones(dim, dtype=kw["dtype"]), 7, 0.25, 0.1, True)

    monkeypatch.setattr(ENG, "_fisher", fisher)
    monkeypatch.setattr(ENG, "_gram", gram)
    monkeypatch.setattr(ENG, "_top_eigh", top_eigh)
    monkeypatch.setattr(ENG, "lanczos", lanczos)
    return seen


@pytest.mark.parametrize(
    ("n", "P", "method"),
    [
        (2048, 2048, "dense"),
        (2049, 2048, "dense"),
        (2049, 2049, "gram"),
        (2048, 2049, "gram"),
        (4096, 4097, "gram"),
        (4097, 4096, "gram"),
        (4097, 4097, "lanczos"),
    ],
)
def test_auto_thresholds_are_the_documented_defaults(monkeypatch, n, P, method):
    """auto: dense if P ≤ n and P ≤ 2048; else gram if min(n, P) ≤ 4096; else lanczos."""
    seen = _spy(monkeypatch)
    G = torch.zeros((), dtype=F64).expand(n, P)
    r = ENG.lambda_max(G)
    assert r.method == method and (r.n, r.P) == (n, P)
    if method == "dense":
        assert seen["built"] == ("F", (n, P)) and r.operator == "F" and seen["want_vector"] is False
    elif method == "gram":
        assert seen["built"] == ("K", (n, P)) and r.operator == "K" and seen["block_size"] == 2048
    else:
        assert seen["built"] == ("lanczos", min(n, P)) and r.iterations == 7
        assert seen["lanczos"] == {"dtype": F64, "device": G.device, "tol": 1e-10, "max_iter": None, "seed": 0}


@pytest.mark.parametrize(
    ("n", "P", "dense_max", "gram_max", "method"),
    [
        (6, 5, 5, 9, "dense"),
        (6, 5, 4, 9, "gram"),
        (6, 5, 4, 5, "gram"),
        (6, 5, 4, 4, "lanczos"),
        (5, 6, 9, 5, "gram"),
        (5, 6, 9, 4, "lanczos"),
        (5, 5, 5, 4, "dense"),
    ],
)
def test_auto_thresholds_passed_by_the_caller(monkeypatch, n, P, dense_max, gram_max, method):
    seen = _spy(monkeypatch)
    r = ENG.lambda_max(torch.ones(n, P, dtype=F64), dense_max=dense_max, gram_max=gram_max, block_size=3)
    assert r.method == method
    if method == "gram":
        assert seen["block_size"] == 3


def test_lambda_max_passes_the_lanczos_options_on(monkeypatch):
    seen = _spy(monkeypatch)
    G = torch.ones(4, 6, dtype=torch.float32)
    r = ENG.lambda_max(G, method="lanczos", tol=1e-4, max_iter=9, seed=11, return_vector=True)
    assert seen["lanczos"] == {"dtype": torch.float32, "device": G.device, "tol": 1e-4, "max_iter": 9, "seed": 11}
    assert (r.value, r.iterations, r.residual, r.operator) == (1.5, 7, 0.25, "K")
    assert r.vector.shape == (6,)  # mapped from R^n to R^P through Gᵀu


@pytest.mark.parametrize(("n", "P", "operator"), [(12, 30, "K"), (30, 12, "F"), (15, 15, "K")])
def test_lambda_max_lanczos_is_lanczos_on_the_smaller_operator(n, P, operator):
    """The Lanczos path equals lanczos() on v ↦ G(Gᵀv)/n (n ≤ P) or v ↦ Gᵀ(Gv)/n (n > P) written
    here, bit for bit, with the options passed on; the value agrees with numpy's eigvalsh."""
    G = torch.randn(n, P, generator=_gen(n * P), dtype=F64)
    Gn = G.numpy()
    ref = _np_top(Gn @ Gn.T / n)
    if operator == "K":

        def op(v):
            return G @ (G.T @ v) / n

    else:

        def op(v):
            return G.T @ (G @ v) / n

    for kw in ({}, {"tol": 1e-4, "seed": 3}, {"max_iter": 2, "seed": 1}):
        r = ENG.lambda_max(G, method="lanczos", **kw)
        direct = ENG.lanczos(op, min(n, P), dtype=F64, **kw)
        assert (r.value, r.iterations, r.residual, r.operator) == (
            direct.value,
            direct.iterations,
            direct.residual,
            operator,
        )
        assert r.value <= ref * (1 + 1e-13)
    assert ENG.lambda_max(G, method="lanczos").value == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("method", ["dense", "gram"])
def test_eigh_paths_report_the_backward_error_bound_or_the_residual(method):
    """Without a vector the residual is the a-priori bound m·eps·‖A‖_F (A = F, m = P for dense;
    A = K, m = n for gram); with one it is ‖A v − λ v‖ for the returned unit eigenvector."""
    G = torch.randn(9, 14, generator=_gen(3), dtype=F64)
    Gn = G.numpy()
    A = Gn.T @ Gn / 9 if method == "dense" else Gn @ Gn.T / 9
    ref = _np_top(A)
    r = ENG.lambda_max(G, method=method)
    assert r.value == pytest.approx(ref, rel=1e-13)
    assert r.residual == pytest.approx(A.shape[0] * EPS * np.linalg.norm(A, "fro"), rel=1e-12)
    rv = ENG.lambda_max(G, method=method, return_vector=True)
    v = rv.vector.numpy()
    F = Gn.T @ Gn / 9
    assert rv.value == pytest.approx(ref, rel=1e-13)
    assert abs(np.linalg.norm(v) - 1.0) <= 1e-13
    assert np.linalg.norm(F @ v - ref * v) <= 1e-12 * ref
    assert 0.0 <= rv.residual <= 64 * EPS * A.shape[0] * ref


def test_gram_vector_of_zero_scores_and_gram_blocks():
    """Gᵀu of zero scores is the zero vector (not NaN); K is the same for every block size and
    exactly symmetric; F is GᵀG/n, exactly symmetric."""
    r = ENG.lambda_max(torch.zeros(3, 5, dtype=F64), method="gram", return_vector=True)
    assert r.value == 0.0 and torch.equal(r.vector, torch.zeros(5, dtype=F64))
    G = torch.randn(11, 4, generator=_gen(8), dtype=F64)
    ref = G.numpy() @ G.numpy().T / 11
    for b in (1, 3, 11, 50):
        K = ENG.gram_matrix(G, block_size=b)
        assert torch.equal(K, K.T)
        assert np.abs(K.numpy() - ref).max() <= 16 * EPS * np.abs(ref).max()
    F = ENG.fisher_matrix(G)
    assert torch.equal(F, F.T)
    assert np.abs(F.numpy() - G.numpy().T @ G.numpy() / 11).max() <= 16 * EPS * 4 * float(F.abs().max())
    with pytest.raises(InputError, match="non-empty 2-D"):
        ENG.fisher_matrix(torch.zeros(3, dtype=F64))
    with pytest.raises(InputError, match="non-empty 2-D"):
        ENG.gram_matrix(torch.zeros(3, dtype=F64))


def test_validate_full_scan_only_for_a_non_finite_sum():
    """A finite G whose sum overflows is valid (the full scan finds no bad entry); a single
    ±inf or NaN is reported at its index."""
    G = torch.full((2, 3), 1e308, dtype=F64)
    assert ENG._validate(G) is G
    for bad, idx in ((math.inf, (0, 1)), (-math.inf, (1, 0)), (math.nan, (1, 2))):
        H = torch.ones(2, 3, dtype=F64)
        H[idx] = bad
        with pytest.raises(InputError) as exc:
            ENG._validate(H)
        assert str(exc.value) == f"G has a NaN or inf entry at index {idx}"
    for G, msg in (
        (torch.zeros(3, 0), "G must be a non-empty 2-D (n, P) tensor, got shape (3, 0)"),
        (torch.zeros(1, 1, 1), "G must be a non-empty 2-D (n, P) tensor, got shape (1, 1, 1)"),
        (torch.zeros(2, 2, dtype=torch.complex128), "G must be a real floating tensor, got torch.complex128"),
    ):
        with pytest.raises(InputError) as exc:
            ENG._validate(G)
        assert str(exc.value) == msg
    one = torch.ones(1, 1, dtype=F64)
    assert ENG._validate(one) is one


def test_unknown_method_message():
    with pytest.raises(InputError) as exc:
        ENG.lambda_max(torch.ones(2, 2, dtype=F64), method="power")
    assert str(exc.value) == "unknown method 'power'; expected one of ('auto', 'dense', 'gram', 'lanczos')"
