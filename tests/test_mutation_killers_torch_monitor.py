"""Mutation killers for torch_checks.monitor (the σ_t monitor and its warm-started Lanczos).

Each test was written from a surviving mutant of a mutmut run and checked to fail on that
mutant and pass on the original (docs/mutation_torch.md lists them). References are
independent of the code under test: dense float64 eigendecompositions (numpy), per-sample
autograd loops written here, closed forms.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from torch import nn  # noqa: E402

from torch_checks import monitor as MON  # noqa: E402

pytestmark = pytest.mark.torch

F64 = torch.float64


def _top(K):
    return float(np.linalg.eigvalsh(K.detach().double().numpy())[-1])


def _residual(K, val, vec):
    K, v = K.detach().double().numpy(), vec.detach().double().numpy()
    return float(np.linalg.norm(K @ v - val * v))


class _TinyLM(nn.Module):
    """Causal: logits at t depend on token t only (embedding → linear head)."""

    def __init__(self, vocab=7, dim=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, x):
        return self.head(self.emb(x))


def _autograd_token_rows(model, names, tokens):
    """Reference per-token scores: a float64 copy, one torch.autograd.grad per position."""
    ref = copy.deepcopy(model).double()
    params = dict(ref.named_parameters())
    rows = []
    for i in range(len(tokens) - 1):
        out = ref(torch.as_tensor(tokens[: i + 1])[None])[0, -1]
        lp = torch.log_softmax(out, dim=-1)[int(tokens[i + 1])]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(lp, [params[n] for n in names])]))
    return torch.stack(rows)


# --------------------------------------------------------------------------------------
# top_eig_warm: a start that spans an invariant subspace without the top eigenvector
# --------------------------------------------------------------------------------------

_INVARIANT_STARTS = [
    # (K, start): the start lies in an invariant subspace of K that misses the top eigenvector
    (torch.diag(torch.tensor([1.0, 0.0, 0.0], dtype=F64)), torch.tensor([0.0, 1.0, 0.0], dtype=F64)),
    (torch.diag(torch.tensor([1.0, 2.0, 0.0, 3.0], dtype=F64)), torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64)),
    # K = Σ λ_i v_i v_iᵀ (λ = 10, 9.9, 0) with v_1 = 1/√3: λ_2 = 9.9 exceeds max diag(K) = 8.28,
    # so a diagonal floor cannot tell the wrong Ritz value; the start is v_2
    (None, None),
]


def _rotated_case():
    v1 = torch.ones(3, dtype=F64) / 3**0.5
    v2 = torch.tensor([1.0, -1.0, 0.0], dtype=F64) / 2**0.5
    K = 10.0 * torch.outer(v1, v1) + 9.9 * torch.outer(v2, v2)
    return K, v2.clone()


@pytest.mark.parametrize("case", range(len(_INVARIANT_STARTS)))
def test_top_eig_warm_start_in_an_invariant_subspace_missing_the_top(case):
    """A start whose Krylov space is invariant and misses the top eigenvector (e.g. orthogonal to
    the range of K) must not return that subspace's Ritz value as converged: the result is the
    dense float64 λ_max with a small residual, or it is reported as not converged."""
    K, start = _INVARIANT_STARTS[case]
    if K is None:
        K, start = _rotated_case()
    val, vec, it, ok = MON.top_eig_warm(K, start, tol=1e-12)
    assert ok, "the whole space is small: Lanczos must reach the top eigenvalue"
    assert val == pytest.approx(_top(K), rel=1e-12)
    assert _residual(K, val, vec) <= 1e-11 * val
    assert float(torch.linalg.vector_norm(vec)) == pytest.approx(1.0, abs=1e-12)
    assert 1 <= it <= K.shape[0]
