"""The factored fixed-data path of the inflation study (``run_model_factored``) against the
dense path (``run_model(..., factored=False)``).

The factored path never forms the per-token score matrix G (it works from the factors
u_t, a_t of the position-wise tail's scores), batches trajectories and perturbs the model once
per chunk. Its raw samples must equal the dense path's to float64 round-off on tiny random
models of SmolLM2's (one Linear) and Gemma 3's (a three-Linear MLP tail) shapes, across chunk
boundaries and after an interrupted run is resumed.
"""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from fimtheory.errors import InputError  # noqa: E402
from torch_checks import monitor_study as S  # noqa: E402
from torch_checks.gemma import Gemma3, Gemma3Config  # noqa: E402
from torch_checks.smollm import Llama, LlamaConfig  # noqa: E402

VOCAB = 29
N = 5


def tiny_llama(seed: int = 0) -> Llama:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        max_position_embeddings=64,
    )
    model = Llama(cfg, tied=True).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def tiny_gemma(seed: int = 0) -> Gemma3:
    torch.manual_seed(seed)
    cfg = Gemma3Config(
        vocab_size=VOCAB,
        hidden_size=8,
        intermediate_size=12,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=4,
        rms_norm_eps=1e-6,
        rope_theta=1e6,
        sliding_window=4,
        sliding_window_pattern=2,
        query_pre_attn_scalar=4.0,
    )
    m = Gemma3(cfg).double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)
    return m.eval()


def _stage(kind: str):
    """A Loaded model and a CI-stage-like profile: ρ_fixed and first order, 4 bits only."""
    spec = S.ModelSpec(
        f"tiny-{kind}",
        "smollm2" if kind == "llama" else "gemma3",
        None,
        predict=False,
        overrides=(
            ("n_trajectories", N),
            ("prompt_len", 6),
            ("gen_len", 3),
            ("n_traces", 2),
            ("configs", ("rtn-channel/4", "sr-channel/4", "nf4/4")),
            ("measure_self", False),
            ("first_order", True),
        ),
    )
    prof = S.replace(S.get_profile("test"), models=(spec,), bits=(4,), sample_stream=1)
    prompts = torch.randint(0, VOCAB, (N, 6), generator=torch.Generator().manual_seed(3))
    if kind == "llama":
        model = tiny_llama()
        names = model.default_param_names()
        ld = S.Loaded(spec, model, names, "lm", prompts, None, {}, last_linear=names[0].rsplit(".", 1)[0])
    else:
        model = tiny_gemma()
        names = model.default_param_names()
        ld = S.Loaded(
            spec, model, names, "lm", prompts, None, {}, tail_linears=tuple(k.rsplit(".", 1)[0] for k in names)
        )
    return ld, prof


class _Quiet:
    def __init__(self):
        self.lines = []

    def __call__(self, message):
        self.lines.append(message)

    def note(self, message):
        self.lines.append(message)


def _assert_same(fa: dict, de: dict, rel: float):
    assert fa["trajectories"] == de["trajectories"]
    assert fa["P"] == de["P"] and fa["n_scores"] == de["n_scores"]
    assert fa["quantized_weights"] == de["quantized_weights"]
    for k in ("lam", "gbar2", "cov", "gap"):
        assert fa["fp"][k] == pytest.approx(de["fp"][k], rel=rel, abs=1e-300), k
    assert len(fa["fp"]["traces"]) == len(de["fp"]["traces"]) == 2
    for a, b in zip(fa["fp"]["traces"], de["fp"]["traces"]):
        assert a == pytest.approx(b, rel=rel)
    assert set(fa["configs"]) == set(de["configs"])
    for key, e in de["configs"].items():
        f = fa["configs"][key]
        for k in ("lam", "gbar2", "cov"):
            assert f["fixed"][k] == pytest.approx(e["fixed"][k], rel=rel), (key, k)
        assert f["first_order"] == pytest.approx(e["first_order"], rel=rel), key
        for k in ("rel_delta", "rel_delta_widrow", "rel_delta_sr_expected"):
            assert f[k] == e[k], (key, k)
        assert f["second_real"] is e["second_real"] is None
        assert f["pred"] is e["pred"] is None
    assert fa["lambda_base"] == pytest.approx(de["lambda_base"], rel=rel)


@pytest.mark.parametrize("kind", ["llama", "gemma"])
def test_factored_path_equals_the_dense_path_across_chunks(kind, tmp_path):
    ld, prof = _stage(kind)
    assert S.uses_factored_path(ld)
    de = S.run_model(ld, prof, 0, _Quiet(), factored=False)
    fa = S.run_model_factored(ld, prof, 0, _Quiet(), shard_path=str(tmp_path / "s.json"), chunk=2, batch=2)
    _assert_same(fa, de, rel=1e-9)
    # the first-order term is not trivially λ1: the quantization moves it
    assert any(abs(a / b - 1) > 1e-4 for a, b in zip(fa["configs"]["rtn-channel/4"]["first_order"], fa["fp"]["lam"]))
    sh = json.loads((tmp_path / "s.json").read_text())
    assert sh["complete"] and sh["partial"] is None and sh["fingerprint"] == S.fingerprint(ld.spec, prof, 0)


def test_factored_path_resumes_from_its_last_chunk(tmp_path):
    ld, prof = _stage("llama")
    path = str(tmp_path / "s.json")
    ref = S.run_model_factored(ld, prof, 0, _Quiet(), chunk=2, batch=3)

    class Stop(_Quiet):
        def note(self, message):
            super().note(message)
            if "trajectories 2/" in message:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        S.run_model_factored(ld, prof, 0, Stop(), shard_path=path, chunk=2, batch=3)
    sh = json.loads(open(path).read())
    assert not sh["complete"] and sh["result"] is None and sh["partial"]["done"] == 2
    # a stopped run reports its finished chunks, flagged as stopped
    stopped = S.factored_result(sh)
    assert not stopped["complete"] and stopped["n_planned"] == N and len(stopped["fp"]["lam"]) == 2
    assert stopped["configs"]["nf4/4"]["first_order"] == pytest.approx(
        ref["configs"]["nf4/4"]["first_order"][:2], rel=1e-12
    )
    raw = S._raw_header(prof, 0, torch.device("cpu"))
    raw["models"][ld.spec.label] = stopped
    summary = S.summarize(raw)
    assert not summary["complete"]
    assert f"{ld.spec.label} trajectories: 2 of {N} (stopped)" in summary["missing"]["configs"]
    with pytest.raises(InputError):
        S.factored_result({"label": "x", "partial": {"done": 0}})
    quiet = _Quiet()
    got = S.run_model(ld, prof, 0, quiet, shard_path=path, resume=True)
    # the rest in one chunk of the default size: the first chunk was not redone
    assert any("trajectories 5/5 (chunk of 3" in m for m in quiet.lines), quiet.lines
    assert not any("trajectories 2/5" in m for m in quiet.lines)
    _assert_same(got, ref, rel=1e-12)
    # a complete checkpoint is returned as it is
    again = S.run_model(ld, prof, 0, _Quiet(), shard_path=path, resume=True)
    assert again["fp"]["lam"] == got["fp"]["lam"]


def test_linear_factors_equal_last_linear_scores_per_sequence():
    model = tiny_llama(1)
    name = model.default_param_names()[0].rsplit(".", 1)[0]
    X = torch.randint(0, VOCAB, (3, 9), generator=torch.Generator().manual_seed(2))
    ((u, a),) = S.linear_factors(model, (name,), X[:, :-1], X[:, 1:])
    for b in range(3):
        blocks = [(u[b], a[b])]
        ref = S.last_linear_scores(model, name, X[b, :-1], X[b, 1:])
        dense = S.factor_dense(blocks)
        assert torch.allclose(dense, ref, rtol=1e-10, atol=1e-13)
        assert torch.allclose(S.factor_gram(blocks), ref @ ref.T, rtol=1e-10, atol=1e-13)
        v = torch.randn(ref.shape[1], generator=torch.Generator().manual_seed(b), dtype=torch.float64)
        Vs = [v.reshape(u.shape[-1], a.shape[-1])]
        assert torch.allclose(S.factor_matvec(blocks, Vs), ref @ v, rtol=1e-10, atol=1e-13)
        lam, gb, cov, gap, w = S.gram_split_top(S.factor_gram(blocks))
        assert (lam, gb, cov) == pytest.approx(S.split_stats(ref), rel=1e-10)
        lam1, vref, gap_ref = S.top_pair(ref)
        (V,) = S.factor_top_vector(blocks, w, torch.float64)
        assert abs(float(V.reshape(-1) @ vref)) == pytest.approx(1.0, rel=1e-10)  # same unit vector up to sign
        assert (lam, gap) == pytest.approx((lam1, gap_ref), rel=1e-10)
    with pytest.raises(InputError):
        S.linear_factors(model, ("model.norm",), X[:, :-1], X[:, 1:])
    with pytest.raises(InputError):
        S.linear_factors(model, (name,), X[0, :-1], X[0, 1:])


def test_generate_batch_gives_the_tokens_of_one_call_per_prompt():
    model = tiny_llama(2)
    P = torch.randint(0, VOCAB, (4, 5), generator=torch.Generator().manual_seed(4))
    seeds = [11, 12, 13, 14]
    batch = S.generate_batch(model, P, 6, seeds, None)
    for b in range(4):
        assert batch[b].tolist() == S.generate(model, P[b], 6, seeds[b], None).tolist()
    assert math.isfinite(float(batch.sum()))


def test_factored_path_rejects_bad_chunk_sizes():
    ld, prof = _stage("llama")
    with pytest.raises(InputError):
        S.run_model_factored(ld, prof, 0, _Quiet(), chunk=0)


def _full(kind: str, *, draws: int = 2, shared: bool = True):
    """As :func:`_stage`, plus the self-generated ρ and the expectation prediction (shared draws)."""
    ld, prof = _stage(kind)
    ov = tuple(kv for kv in ld.spec.overrides if kv[0] not in ("measure_self",)) + (
        ("measure_self", True),
        ("mc_draws", draws),
        ("shared_draws", shared),
    )
    spec = S.replace(ld.spec, predict=True, overrides=ov)
    ld.spec = spec
    return ld, S.replace(prof, models=(spec,), sample_stream=0)


@pytest.mark.parametrize("kind", ["llama", "gemma"])
def test_factored_self_and_expectation_equal_the_dense_path(kind, tmp_path):
    ld, prof = _full(kind)
    de = S.run_model(ld, prof, 0, _Quiet(), factored=False)
    fa = S.run_model_factored(ld, prof, 0, _Quiet(), shard_path=str(tmp_path / "s.json"), chunk=2, batch=2)
    assert fa["trajectories"] == de["trajectories"]
    for k in ("lam", "gbar2", "cov"):
        assert fa["fp"][k] == pytest.approx(de["fp"][k], rel=1e-9), k
    for key, e in de["configs"].items():
        f = fa["configs"][key]
        for which in ("self", "fixed"):
            for k in ("lam", "gbar2", "cov"):
                assert f[which][k] == pytest.approx(e[which][k], rel=1e-9), (key, which, k)
        assert f["first_order"] == pytest.approx(e["first_order"], rel=1e-9), key
        # the expectation: same shared Rademacher draws, same Σ, same central differences
        assert f["pred"] == pytest.approx(e["pred"], rel=1e-9), key
        assert f["pred_exact"] is None and f["second_real"] is None  # dense-only (G not formed)
        assert ("traces" in f) == ("traces" in e)
        if "traces" in e:
            assert len(f["traces"]) == len(e["traces"]) == 2
            for a, b in zip(f["traces"], e["traces"]):
                assert a == pytest.approx(b, rel=1e-9)
    # the pieces are not trivial: some quantized model samples other tokens than the full
    # precision one (self ≠ fixed), and E moves Λ off λ1 (not by round-off)
    assert any(
        abs(a / b - 1) > 1e-6 for c in fa["configs"].values() for a, b in zip(c["self"]["lam"], c["fixed"]["lam"])
    )
    rtn = fa["configs"]["rtn-channel/4"]
    assert any(abs(a / b - 1) > 1e-6 for a, b in zip(rtn["pred"], fa["fp"]["lam"]))
    # the summary takes the factored result as it takes the dense one
    raw = S._raw_header(prof, 0, torch.device("cpu"))
    raw["models"][ld.spec.label] = fa
    summ = S.summarize(raw)
    cell = summ["models"][ld.spec.label]["configs"]["nf4/4"]
    assert cell["rho_self"] is not None and cell["rho_pred"] is not None and summ["complete"]


def test_factored_expectation_needs_shared_draws_and_the_path_rule():
    ld, prof = _full("llama", shared=False)
    with pytest.raises(InputError, match="shared_draws"):
        S.run_model_factored(ld, prof, 0, _Quiet())
    assert not S.uses_factored_path(ld, prof)  # per-trajectory draws: the dense path
    ld, prof = _full("llama")
    # a tiny model's G fits in memory: the dense path also gives the exact-eigh predictions
    assert not S.uses_factored_path(ld, prof)
    assert not S.uses_factored_path(ld)  # without the profile only a fixed-data stage qualifies


def test_factored_path_taken_when_the_dense_path_keeps_no_G(monkeypatch, tmp_path):
    ld, prof = _full("gemma", draws=1)
    monkeypatch.setattr(S, "DENSE_LIMIT", 0)
    assert S.uses_factored_path(ld, prof)
    path = str(tmp_path / "s.json")

    class Stop(_Quiet):
        def note(self, message):
            super().note(message)
            if "trajectories 2/" in message:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # stopped after its first chunk of 2
        S.run_model_factored(ld, prof, 0, Stop(), shard_path=path, chunk=2, batch=3)
    sh = json.loads(open(path).read())
    assert sh["partial"]["done"] == 2 and len(sh["partial"]["estimates"]["sr-channel/4"]["term"]) == 2
    got = S.run_model(ld, prof, 0, _Quiet(), shard_path=path, resume=True)  # the rest, on the factored path
    de = S.run_model(ld, prof, 0, _Quiet(), factored=False)
    for key, e in de["configs"].items():
        f = got["configs"][key]
        assert f["self"]["lam"] == pytest.approx(e["self"]["lam"], rel=1e-9), key
        assert f["pred"] == pytest.approx(e["pred"], rel=1e-9), key
    assert got["seconds"]["E sr-channel/4"] > 0
