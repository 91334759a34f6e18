"""Block-wise Gram accumulation over parameter shards (torch_checks.block_gram) against the
dense float64 Gram of torch_checks.scores."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fimtheory.errors import InputError  # noqa: E402
from torch_checks.block_gram import Shard, ShardScorer, gram_pair, joint_gram, plan_shards  # noqa: E402
from torch_checks.checks import reduced_pair  # noqa: E402
from torch_checks.param_groups import select_params  # noqa: E402
from torch_checks.scores import per_token_scores  # noqa: E402
from torch_checks.smollm import Llama, LlamaConfig  # noqa: E402

EPS = np.finfo(np.float64).eps


def tiny_llama(seed=0, layers=2):
    c = LlamaConfig(
        vocab_size=37,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    m = Llama(c).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.ndim == 1 else 0.0))
    return m


def trajectories(m=3, T=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 37, (T + 1,), generator=g) for _ in range(m)]


def dense_G(model, names, trajs):
    return torch.cat([per_token_scores(model, names, t[:-1], t[1:]).G for t in trajs])


# groups: the last block (head-free route, prefix cached), all attention (head-free from
# block 0), embeddings and norms (full route: the tied head is in the group), whole model.
GROUPS = ["@last-block", "@attention", "@embeddings-norms", "@all", "model.layers.1.mlp.down_proj.weight"]


@pytest.mark.parametrize("spec", GROUPS)
@pytest.mark.parametrize("budget", [9000, 40_000, 10**9])
def test_block_gram_equals_dense_gram(spec, budget):
    m = tiny_llama()
    names = select_params(m, spec)
    trajs = trajectories()
    G = dense_G(m, names, trajs)
    K = (G @ G.T).numpy()
    res = joint_gram([(m, trajs)], names, budget_bytes=budget)
    n, P = G.shape
    assert res.M.shape == (n, n) and res.P == P
    assert res.peak_shard_bytes <= budget
    tol = 64 * P * EPS * np.abs(K).max()
    assert np.abs(res.M - K).max() <= tol
    expected_route = "full" if spec in ("@embeddings-norms", "@all") else "head-free"
    assert res.route == expected_route
    if budget == 9000:
        assert res.shards > 1


def test_shard_scores_are_the_columns_of_the_dense_scores():
    m = tiny_llama()
    names = select_params(m, "@last-block")
    tr = trajectories(1)[0]
    G = per_token_scores(m, names, tr[:-1], tr[1:]).G
    shards = plan_shards(m, names, 9, 9 * 8 * 100)
    sc = ShardScorer(m, tr, names)
    cols = torch.cat([sc.scores(s) for s in shards], dim=1)
    assert sum(s.numel for s in shards) == G.shape[1]
    torch.testing.assert_close(cols, G, rtol=0, atol=1e-12 * float(G.abs().max()))


def test_joint_gram_pair_matches_the_qr_reduction():
    m = tiny_llama()
    q = tiny_llama()
    with torch.no_grad():  # a "quantized" copy: the group's weights perturbed
        for (n, p), (_, pq) in zip(m.named_parameters(), q.named_parameters()):
            pq.copy_(p + (0.01 * torch.randn_like(p) if "layers.1" in n else 0))
    names = select_params(m, "@last-block")
    trajs = trajectories(2, 8)
    G, Gq = dense_G(m, names, trajs), dense_G(q, names, trajs)
    n = G.shape[0]
    res = joint_gram([(m, trajs), (q, trajs)], names, budget_bytes=20_000)
    pair = gram_pair(res.M, n)
    F = (G.T @ G / n).numpy()
    Fq = (Gq.T @ Gq / n).numpy()
    lam = np.linalg.eigvalsh(F)
    lamq = np.linalg.eigvalsh(Fq)
    eta = np.abs(np.linalg.eigvalsh(Fq - F)).max()
    scale = lam[-1] + lamq[-1]
    tol = 1e-9 * scale
    assert abs(pair.lambda1 - lam[-1]) <= tol
    assert abs(pair.lambda_q - lamq[-1]) <= tol
    w, V = np.linalg.eigh(F)
    v1 = V[:, -1]
    assert abs(pair.e11 - v1 @ (Fq - F) @ v1) <= tol
    assert abs(np.abs(np.linalg.eigvalsh(pair.E)).max() - eta) <= tol
    A_qr, E_qr = reduced_pair(G, Gq)
    top = np.sort(np.linalg.eigvalsh(pair.A))[::-1][:3]
    np.testing.assert_allclose(top, np.sort(np.linalg.eigvalsh(A_qr))[::-1][:3], rtol=0, atol=tol)


def test_budget_too_small_for_one_row_is_an_error():
    m = tiny_llama()
    with pytest.raises(InputError, match="raise the budget"):
        plan_shards(m, ("model.embed_tokens.weight",), 100, 100 * 8 * 8)


def test_shard_plan_covers_every_parameter_once():
    m = tiny_llama()
    names = select_params(m, "@all")
    shards = plan_shards(m, names, 7, 7 * 8 * 50)
    seen = {}
    for s in shards:
        assert isinstance(s, Shard) and s.numel <= 50
        for pc in s.pieces:
            seen.setdefault(pc.name, []).append((pc.start, pc.stop))
    params = dict(m.named_parameters())
    for n in names:
        spans = sorted(seen[n])
        assert spans[0][0] == 0 and spans[-1][1] == params[n].shape[0]
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
