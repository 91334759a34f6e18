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


class _Windowed(torch.nn.Module):
    """A window classifier run as a causal LM (positions independent given their windows)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.core = torch.nn.Sequential(
            torch.nn.Embedding(11, 4),
            torch.nn.Flatten(),
            torch.nn.Linear(12, 6),
            torch.nn.Tanh(),
            torch.nn.Linear(6, 11),
        ).double()

    def position_inputs(self, idx):
        pad = torch.cat([torch.zeros(2, dtype=idx.dtype), idx])
        return pad.unfold(0, 3, 1)[: idx.shape[0]]

    def forward(self, idx):
        return torch.stack([self.core(self.position_inputs(r)) for r in idx])


def test_per_position_route_equals_dense_scores():
    m = _Windowed().eval()
    names = select_params(m, "@all")
    g = torch.Generator().manual_seed(0)
    trajs = [torch.randint(0, 11, (8,), generator=g) for _ in range(2)]
    G = dense_G(m, names, trajs)
    res = joint_gram([(m, trajs)], names, budget_bytes=14 * 8 * 30)
    assert res.route == "per-position" and res.shards > 1
    K = (G @ G.T).numpy()
    assert np.abs(res.M - K).max() <= 64 * G.shape[1] * EPS * np.abs(K).max()


def _tiny_bundle(**kw):
    from torch_checks.models import ModelBundle

    m = tiny_llama(layers=2)
    g = torch.Generator().manual_seed(5)
    calib = torch.randint(0, 37, (kw.get("n_calibration", 4), kw.get("length", 8) + 1), generator=g)

    def displace(rate, seed=0):
        gen = torch.Generator().manual_seed(seed + 11)
        mask = torch.rand(calib.shape, generator=gen) < rate
        return torch.where(mask, torch.randint(0, 37, calib.shape, generator=gen), calib)

    return ModelBundle("tiny", "lm", m, (), calib, displace, {})


def test_block_path_of_check_models_agrees_with_the_qr_path(monkeypatch):
    """The block path (joint Gram, REAL_MODELS) and the existing Gram/QR path of
    check_quantization decide T4.3a/S2 on the same real quantization with the same numbers."""
    from torch_checks import checks as C
    from torch_checks.decisions import Adjudicator

    def other(bundle, m, seed):
        return bundle.displace(1.0, seed + 99)[:m]

    spec = C.RealModel(
        "tiny-block",
        "nothing",
        "none",
        lambda: True,
        _tiny_bundle,
        "@last-block",
        length=8,
        budget_bytes=200_000,
        other_corpus=other,
    )
    monkeypatch.setitem(C.REAL_MODELS, "tiny-block", spec)
    prof = C.with_overrides(
        C.get_profile("quick"),
        lm_fim_contexts=3,
        sr_draws=2,
        departure_inputs=2,
        corruption_rates=(0.0, 0.5, 1.0),
        dense_max=10,
    )
    model = C.load_for_checks("tiny-block", prof, torch.device("cpu"))
    assert model.real is spec and model.header["P"] == sum(
        dict(model.module.named_parameters())[n].numel() for n in model.param_names
    )
    state = C.BlockState(model, 2)
    try:
        for scheme in ("rtn-int4-sym-channel", "sr-int4-sym-channel"):
            block = C.check_quantization_block(model, scheme, 4, prof, Adjudicator(0, 30), state)
            ref_model = C.LoadedModel(
                "tiny-block", "lm", model.module, model.param_names, model.fim_data, model.bundle, {}
            )
            ref = C.check_quantization(ref_model, scheme, 4, prof, Adjudicator(0, 30))
            by = {r.claim: r for r in ref}
            for r in block:
                if r.claim in ("T4.3a", "S2"):
                    assert r.status == by[r.claim].status
                    assert (
                        abs(
                            r.details.get("eta", r.details.get("max_margin", 0))
                            - by[r.claim].details.get("eta", by[r.claim].details.get("max_margin", 0))
                        )
                        <= 1e-8
                    )
                if r.claim == "T4.3-SR":
                    np.testing.assert_allclose(r.details["ci95"], by[r.claim].details["ci95"], rtol=1e-8, atol=1e-10)
                if r.claim == "lowers-lambda-max":
                    assert abs(r.details["lambda_q"] - by[r.claim].details["lambda_q"]) <= 1e-9 * r.details["lambda_q"]
            claims = {r.claim for r in block}
            if scheme.startswith("sr"):
                assert {"T4.3b", "T4.3c"} <= claims
                assert all(r.status != "skipped" for r in block if r.claim in ("T4.3b", "T4.3c"))
    finally:
        state.close()
    res = C.run_checks(["tiny-block"], [("rtn-int4-sym-channel", 4)], prof)
    claims = {r.claim for r in res.rows}
    assert {"T4.3a", "S2", "P3.2", "P3.2-other-corpus", "C"} <= claims
    assert res.header["models"]["tiny-block"]["base_scores"]["route"] == "head-free"


def test_gram_from_stores_equals_the_joint_gram():
    from torch_checks.block_gram import ScoreStore, gram_from_stores

    m, q = tiny_llama(0), tiny_llama(1)
    names = select_params(m, "@last-block")
    trajs = trajectories(2, 6)
    n = 12
    shards = plan_shards(m, names, 2 * n, 2 * n * 8 * 200)
    stores = [ScoreStore(), ScoreStore()]
    try:
        ref = joint_gram([(m, trajs), (q, trajs)], names, budget_bytes=2 * n * 8 * 200, shards=shards, stores=stores)
        again = joint_gram([(m, trajs), (q, trajs)], names, budget_bytes=2 * n * 8 * 200, shards=shards, stores=stores)
        M = gram_from_stores(stores, len(shards))
        np.testing.assert_array_equal(again.M, ref.M)  # read back, not recomputed: identical
        np.testing.assert_allclose(M, ref.M, rtol=0, atol=1e-12 * np.abs(ref.M).max())
    finally:
        for st in stores:
            st.close()


def test_without_a_store_the_base_is_recomputed_and_the_sr_family_skipped(monkeypatch):
    from torch_checks import checks as C
    from torch_checks.decisions import Adjudicator

    spec = C.RealModel(
        "tiny-nostore",
        "nothing",
        "none",
        lambda: True,
        _tiny_bundle,
        "@last-block",
        length=8,
        budget_bytes=200_000,
        store_max_bytes=0,
    )
    monkeypatch.setitem(C.REAL_MODELS, "tiny-nostore", spec)
    prof = C.with_overrides(C.get_profile("quick"), lm_fim_contexts=2, sr_draws=2)
    model = C.load_for_checks("tiny-nostore", prof, torch.device("cpu"))
    state = C.BlockState(model, 2)
    assert state.store is None
    rows = {
        r.claim: r for r in C.check_quantization_block(model, "sr-int4-sym-channel", 4, prof, Adjudicator(0, 30), state)
    }
    assert rows["T4.3b"].status == "skipped" and "store_max_bytes" in rows["T4.3b"].reason
    assert rows["T4.3a"].status in ("verified", "inconclusive") and rows["T4.3a"].examples == 2


def test_params_option_replaces_the_score_subset(monkeypatch):
    from torch_checks import checks as C

    spec = C.RealModel(
        "tiny-p", "nothing", "none", lambda: True, _tiny_bundle, "@last-block", length=8, budget_bytes=200_000
    )
    monkeypatch.setitem(C.REAL_MODELS, "tiny-p", spec)
    prof = C.with_overrides(C.get_profile("quick"), lm_fim_contexts=2, departure_inputs=2, corruption_rates=(0.0, 1.0))
    res = C.run_checks(["tiny-p"], [("rtn-int4-sym-channel", 4)], prof, params="model.layers.1.mlp.down_proj.*")
    h = res.header["models"]["tiny-p"]
    assert h["param_subset"] == ["model.layers.1.mlp.down_proj.weight"] and h["P"] == 16 * 24


@pytest.mark.parametrize("name", ["smollm2-block", "gemma3", "textgenrnn"])
def test_a_missing_pretrained_model_is_one_skipped_row_naming_its_package(monkeypatch, name):
    from dataclasses import replace

    from torch_checks import checks as C

    monkeypatch.setitem(C.REAL_MODELS, name, replace(C.REAL_MODELS[name], available=lambda: False))
    res = C.run_checks([name], [("rtn-int4-sym-channel", 4)], C.get_profile("quick"))
    row = res.rows[0]
    assert (row.model, row.status) == (name, "skipped")
    assert C.REAL_MODELS[name].package.split(" ")[0] in row.reason
    assert not res.falsified


def test_the_other_corpus_path_is_nested_from_calibration_to_the_other_text():
    from torch_checks.checks import mixed_contexts, other_corpus_text

    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 50, (3, 20), generator=g), torch.randint(50, 99, (3, 20), generator=g)
    assert torch.equal(mixed_contexts(a, b, 0.0, 1), a) and torch.equal(mixed_contexts(a, b, 1.0, 1), b)
    lo, hi = mixed_contexts(a, b, 0.3, 1), mixed_contexts(a, b, 0.7, 1)
    assert bool(((lo == b) <= (hi == b)).all())  # what is replaced at 0.3 is replaced at 0.7
    assert torch.equal(mixed_contexts(a, b, 1.0, 1, keep_first=True)[:, 0], a[:, 0])
    with pytest.raises(InputError):
        mixed_contexts(a, b[:, :5], 0.5, 1)
    name, text = other_corpus_text()
    assert name in ("fortunes", "python-licence") and len(text) > 10_000
