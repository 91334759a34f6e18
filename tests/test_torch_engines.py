"""λ_max engines against float64 numpy eigvalsh, rank-deficient cases, Lanczos vs Gram."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from fimtheory.errors import InputError  # noqa: E402
from torch_checks.engines import gram_matrix, lambda_max, lanczos  # noqa: E402

pytestmark = pytest.mark.torch

EPS = np.finfo(np.float64).eps
# eigh of a symmetric matrix is backward stable: |λ̂ − λ| ≤ c·eps·m·‖K‖ with m the size;
# c = 32 covers forming K (or F) from G and both eigensolvers.
C = 32.0


def _ref(G: torch.Tensor) -> float:
    Gn = G.detach().cpu().double().numpy()
    n, P = Gn.shape
    A = Gn @ Gn.T / n if n <= P else Gn.T @ Gn / n
    return float(np.linalg.eigvalsh(A)[-1])


def _tol(G: torch.Tensor, lam: float, extra: float = 0.0) -> float:
    n, P = G.shape
    return C * EPS * max(n, P) * max(lam, 1e-300) + extra


def _G(n, P, seed=0, rank=None):
    g = torch.Generator().manual_seed(seed)
    if rank is None:
        return torch.randn(n, P, generator=g, dtype=torch.float64)
    A = torch.randn(n, rank, generator=g, dtype=torch.float64)
    B = torch.randn(rank, P, generator=g, dtype=torch.float64)
    return A @ B


CASES = {
    "n<P": lambda: _G(20, 60, 1),
    "n>P": lambda: _G(80, 15, 2),
    "n=P": lambda: _G(30, 30, 3),
    "rank2 n>P": lambda: _G(50, 12, 4, rank=2),
    "rank3 n<P": lambda: _G(25, 70, 5, rank=3),
    "duplicate rows": lambda: torch.cat([_G(10, 40, 6)] * 4),
    "rank1": lambda: _G(30, 40, 7, rank=1),
    "single row": lambda: _G(1, 9, 8),
    "single column": lambda: _G(9, 1, 9),
    "scaled": lambda: 1e-6 * _G(20, 25, 10),
}


@pytest.mark.parametrize("method", ["dense", "gram", "lanczos", "auto"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_engines_match_numpy_eigvalsh(case, method):
    G = CASES[case]()
    ref = _ref(G)
    r = lambda_max(G, method=method)
    assert r.method in ("dense", "gram", "lanczos")
    extra = 0.0
    if r.method == "lanczos":
        # Ritz value within the residual of an eigenvalue; at tol 1e-10 relative
        assert r.residual <= 1e-9 * ref + _tol(G, ref)
        extra = r.residual
    assert abs(r.value - ref) <= _tol(G, ref, extra), (r, ref)
    assert r.value <= ref + _tol(G, ref)  # Rayleigh quotients never exceed λ_max
    # λ_max(F) = ‖G‖₂² / n
    s = float(torch.linalg.matrix_norm(G, ord=2)) ** 2 / G.shape[0]
    assert abs(r.value - s) <= _tol(G, ref, extra) * 4


@pytest.mark.parametrize("method", ["dense", "gram", "lanczos"])
def test_zero_scores(method):
    r = lambda_max(torch.zeros(6, 4, dtype=torch.float64), method=method)
    assert r.value == 0.0 and r.residual == 0.0


def test_lanczos_agrees_with_gram_on_larger_problem():
    # clustered top of the spectrum: σ = 1, 0.999, ...: the hard case for Lanczos
    g = torch.Generator().manual_seed(11)
    n, P = 300, 1500
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(P, n, generator=g, dtype=torch.float64))
    s = torch.cat([torch.tensor([1.0, 0.999, 0.998]), torch.linspace(0.9, 0.0, n - 3)])
    G = (U * s.double()) @ V.T * np.sqrt(n)
    rg = lambda_max(G, method="gram")
    rl = lambda_max(G, method="lanczos", tol=1e-12)
    assert abs(rg.value - 1.0) <= _tol(G, 1.0)
    assert abs(rl.value - rg.value) <= _tol(G, 1.0, rl.residual)
    assert rl.iterations < n and rl.operator == "K"
    rf = lambda_max(G.T.contiguous()[:, :200], method="lanczos")  # n > P: F operator
    assert rf.operator == "F"
    assert abs(rf.value - _ref(G.T[:, :200])) <= _tol(G, rf.value, rf.residual)


def test_auto_choice():
    assert lambda_max(_G(50, 10), method="auto").method == "dense"
    assert lambda_max(_G(10, 50), method="auto").method == "gram"
    assert lambda_max(_G(30, 40), method="auto", gram_max=20).method == "lanczos"


@pytest.mark.parametrize("method", ["dense", "gram", "lanczos"])
def test_top_vector_is_eigenvector_of_F(method):
    G = _G(15, 35, 12)
    r = lambda_max(G, method=method, return_vector=True)
    v = r.vector
    assert v.shape == (35,)
    assert abs(float(v.norm()) - 1.0) < 1e-12
    Fv = G.T @ (G @ v) / G.shape[0]
    assert float((Fv - r.value * v).norm()) <= 1e-8 * r.value


def test_gram_blocks_do_not_matter():
    G = _G(23, 17, 13)
    ref = G @ G.T / 23
    assert float((gram_matrix(G, block_size=5) - ref).abs().max()) <= 64 * EPS * float(ref.abs().max())
    K = gram_matrix(G, block_size=4)
    assert torch.equal(K, K.T)


def test_float32_input():
    G = _G(40, 60, 14)
    ref = _ref(G)
    for m in ("dense", "gram", "lanczos"):
        r = lambda_max(G.float(), method=m)
        assert abs(r.value - ref) <= 1e-4 * ref, (m, r)


def test_lanczos_diagonal_operator_and_determinism():
    d = torch.linspace(0, 5, 200, dtype=torch.float64)
    r1 = lanczos(lambda v: d * v, 200, tol=1e-12, seed=3)
    r2 = lanczos(lambda v: d * v, 200, tol=1e-12, seed=3)
    assert r1.value == r2.value and r1.iterations == r2.iterations
    assert r1.converged and abs(r1.value - 5.0) <= r1.residual + 1e-12
    # exact after spanning the space
    r3 = lanczos(lambda v: d[:5] * v, 5, tol=0.0)
    assert abs(r3.value - float(d[4])) < 1e-13


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(3),
        torch.zeros(0, 3),
        torch.ones(2, 2, dtype=torch.int64),
        torch.tensor([[1.0, float("nan")]]),
        np.ones((2, 2)),
    ],
)
def test_bad_input(bad):
    with pytest.raises(InputError):
        lambda_max(bad)


def test_unknown_method():
    with pytest.raises(InputError):
        lambda_max(_G(3, 3), method="power")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["dense", "gram", "lanczos"])
def test_cuda_matches_cpu(method):
    G = _G(40, 70, 15)
    r = lambda_max(G.cuda(), method=method, return_vector=True)
    assert r.vector.is_cuda
    ref = _ref(G)
    assert abs(r.value - ref) <= _tol(G, ref, r.residual) * 10


def test_lanczos_indefinite_operator_top_near_zero():
    """−A for PSD A (largest eigenvalue −λ_min(A) ≈ 0): converges relative to ‖A‖."""
    d = torch.cat([torch.tensor([1e-14]), torch.linspace(0.5, 3.0, 99)]).double()
    r = lanczos(lambda v: -d * v, 100, tol=1e-10, seed=0)
    assert r.converged
    assert abs(r.value - (-1e-14)) <= r.residual + 1e-12
