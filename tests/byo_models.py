"""Tiny user models for the bring-your-own-model tests: Hugging Face GPT-2 / Llama directories
built from a config and saved with ``save_pretrained`` (safetensors), a byte-level BPE
tokenizer trained here on a few sentences, a GGUF file written with the ``gguf`` writer, and
factories (``tests.byo_models:factory_*``). Everything is seeded and built in a temp dir."""

from __future__ import annotations

import os

import numpy as np
import torch

TEXT = (
    "The quick brown fox jumps over the lazy dog. A monitor watches the largest eigenvalue of the "
    "Fisher information of a language model while it writes. Quantized weights raise it; shifted "
    "inputs raise it too. Calibrate on the full precision model, then run on the deployed one. "
) * 4
VOCAB = 300


def tiny_tokenizer():
    """A byte-level BPE ``PreTrainedTokenizerFast`` with ``VOCAB`` tokens (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator([TEXT], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def gpt2_model(seed: int = 0, n_positions: int = 128, n_embd: int = 32, n_layer: int = 2):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg).eval()


def llama_model(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=False,
    )
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norm weights, so a permutation mistake would show
        for n, p in m.named_parameters():
            if "norm" in n:
                p.add_(0.1 * torch.randn_like(p))
    return m


def save_hf(model, directory: str, tokenizer=True) -> str:
    os.makedirs(directory, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    if tokenizer:
        tiny_tokenizer().save_pretrained(directory)
    return directory


def write_llama_gguf(model, path: str) -> str:
    """The Llama ``model`` as an F32 GGUF (llama.cpp names, Q/K rows permuted as llama.cpp's
    converter does) with the BPE tokenizer in its metadata."""
    import gguf

    cfg = model.config
    tok = tiny_tokenizer()
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]))
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    w.add_token_list(tokens)
    w.add_token_types([3 if t == "<|endoftext|>" else 1 for t in tokens])
    import json

    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)

    def permute(a, n_head):
        return a.reshape(n_head, 2, a.shape[0] // n_head // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)

    names = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for n, p in model.state_dict().items():
        a = p.detach().float().numpy().astype(np.float32)
        if n == "model.embed_tokens.weight":
            g = "token_embd.weight"
        elif n == "model.norm.weight":
            g = "output_norm.weight"
        elif n == "lm_head.weight":
            g = "output.weight"
        else:
            _, _, i, rest = n.split(".", 3)
            mod, leaf = rest.rsplit(".", 1)
            g = f"blk.{i}.{names[mod]}.{leaf}"
            if mod == "self_attn.q_proj":
                a = permute(a, cfg.num_attention_heads)
            elif mod == "self_attn.k_proj":
                a = permute(a, cfg.num_key_value_heads)
        w.add_tensor(g, np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def factory_gpt2():
    """A factory: (model, tokenizer)."""
    return gpt2_model(seed=3), tiny_tokenizer()


def factory_model_only():
    return gpt2_model(seed=4)


def factory_training_mode():
    return gpt2_model(seed=5).train()


def factory_not_a_module():
    return "not a model"


class ByteMLP(torch.nn.Module):
    """A plain module (no config, no cache): position-wise embedding + MLP over bytes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.emb = torch.nn.Embedding(256, 16)
        self.fc = torch.nn.Linear(16, 32)
        self.out = torch.nn.Linear(32, 256)

    def forward(self, idx):
        return self.out(torch.tanh(self.fc(self.emb(idx))))


def factory_plain():
    return ByteMLP().eval()
