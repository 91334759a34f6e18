"""Bring your own model: a local Hugging Face directory, a GGUF file or a Python factory.

:func:`load_user_model` turns a *model spec* into a :class:`UserModel` — the module (eval
mode, float64 by default), its tokenizer, and an identity (source, class, config digest and a
SHA-256 of every weight) that the monitor's calibration records and ``monitor run`` checks.

Model specs
-----------
``DIR``
    A Hugging Face model directory (``config.json`` + ``*.safetensors`` or ``*.bin``, and the
    tokenizer files). Loaded with ``transformers.AutoModelForCausalLM`` and
    ``AutoTokenizer`` with ``local_files_only=True`` (nothing is downloaded); a directory with
    only a ``tokenizer.json`` gets a :mod:`tokenizers` tokenizer.
``FILE.gguf``
    A GGUF file. Loaded by transformers' GGUF reader (``gguf_file=``; the architectures it
    supports: llama, mistral, qwen2, gpt2, phi3, …, dequantised to float) with the tokenizer
    stored in the file; if transformers cannot read a ``llama`` file, the project's own reader
    :mod:`torch_checks.smollm` is used (that model has no KV cache: the streaming monitor then
    re-runs the prefix per token).
``module:callable`` or ``path/to/file.py:callable``
    A factory called with no arguments. It returns an ``nn.Module``, a pair
    ``(module, tokenizer)`` or a dict ``{"model": ..., "tokenizer": ...}``. The tokenizer is
    optional (then text prompts are refused; token ids still work): a Hugging Face tokenizer,
    a ``tokenizers.Tokenizer``, or any object with ``encode(text)`` and ``decode(ids)``. A
    module returned in training mode is refused (call ``.eval()`` in the factory).

Parameter groups come from :func:`torch_checks.param_groups.select_params` (glob patterns,
``@default`` = the last block's MLP); :meth:`UserModel.select` adds the tied-weight aliases
(``lm_head.weight`` tied to the input embedding is scored under the embedding's name).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from fimtheory.errors import HypothesesNotMet, InputError, MissingDependencyError

__all__ = [
    "SOURCES",
    "TokenizerAdapter",
    "UserModel",
    "check_model_spec",
    "is_model_spec",
    "load_user_model",
    "user_model_bundle",
    "weights_digest",
]

SOURCES = ("hf-directory", "gguf", "factory")
_FACTORY = re.compile(r"^(?P<mod>[A-Za-z_][\w.]*|.+\.py):(?P<fn>[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)$")


# --------------------------------------------------------------------------- specs


def check_model_spec(spec: str) -> tuple[str, str]:
    """(source, normalised spec) of a model spec, without loading anything.

    Raises
    ------
    InputError
        Not a directory with ``config.json``, not an existing ``.gguf`` file and not a
        ``module:callable`` whose module can be found.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("model spec: empty")
    if os.path.isdir(spec):
        if not os.path.isfile(os.path.join(spec, "config.json")):
            raise InputError(f"model directory {spec!r} has no config.json (not a Hugging Face model directory)")
        names = os.listdir(spec)
        if not any(n.endswith((".safetensors", ".bin")) for n in names):
            raise InputError(f"model directory {spec!r} has no *.safetensors or *.bin weights")
        return "hf-directory", os.path.abspath(spec)
    if spec.lower().endswith(".gguf"):
        if not os.path.isfile(spec):
            raise InputError(f"GGUF file {spec!r} does not exist")
        return "gguf", os.path.abspath(spec)
    m = _FACTORY.match(spec)
    if m and not os.path.exists(spec):
        mod = m.group("mod")
        if mod.endswith(".py"):
            if not os.path.isfile(mod):
                raise InputError(f"factory file {mod!r} does not exist")
        else:
            try:
                found = importlib.util.find_spec(mod)
            except (ImportError, ValueError):
                found = None
            if found is None:
                raise InputError(f"factory module {mod!r} cannot be found (not importable from here)")
        return "factory", spec
    if os.path.isfile(spec):
        raise InputError(f"model file {spec!r} is not a .gguf file (give a Hugging Face directory for safetensors)")
    raise InputError(f"model {spec!r} is not a Hugging Face model directory, a .gguf file or a module:callable factory")


def is_model_spec(spec: str) -> bool:
    """Whether ``spec`` looks like a model spec (a path or ``module:callable``), valid or not."""
    return isinstance(spec, str) and (
        os.sep in spec or spec.lower().endswith(".gguf") or os.path.exists(spec) or bool(_FACTORY.match(spec))
    )


# --------------------------------------------------------------------------- tokenizers


class TokenizerAdapter:
    """One interface over Hugging Face tokenizers, :mod:`tokenizers` tokenizers and duck-typed
    ones: ``encode(text) -> list[int]``, ``decode(ids) -> str``, ``eos_token_id``, ``name``."""

    def __init__(self, tok, name: str):
        self.tok = tok
        self.name = name
        kind = type(tok).__module__.split(".")[0]
        self.kind = kind
        eos = getattr(tok, "eos_token_id", None)
        self.eos_token_id = eos if isinstance(eos, int) else None

    def encode(self, text: str) -> list[int]:
        out = self.tok.encode(text)
        ids = getattr(out, "ids", out)  # tokenizers.Encoding
        return [int(i) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tok.decode([int(i) for i in ids]))

    def describe(self) -> dict:
        return {"name": self.name, "class": f"{type(self.tok).__module__}.{type(self.tok).__name__}"}


def _adapt_tokenizer(tok, name: str) -> TokenizerAdapter | None:
    if tok is None:
        return None
    if not (callable(getattr(tok, "encode", None)) and callable(getattr(tok, "decode", None))):
        raise InputError(f"the tokenizer ({type(tok).__name__}) has no encode/decode methods")
    return TokenizerAdapter(tok, name)


# --------------------------------------------------------------------------- the model


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, dtypes, shapes, bytes), in name order."""
    h = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class UserModel:
    """A model brought by the user.

    Attributes
    ----------
    spec : str
        As given. ``source``: one of :data:`SOURCES`.
    module : nn.Module
        Eval mode, in ``dtype``.
    tokenizer : TokenizerAdapter or None
    identity : dict
        ``source``, ``path``, ``class``, ``config_sha256`` (config.json / GGUF file), ``dtype``,
        ``n_parameters`` and ``weights_sha256`` (:func:`weights_digest` of the weights as
        loaded, before any dtype cast).
    """

    spec: str
    source: str
    module: nn.Module
    tokenizer: TokenizerAdapter | None
    identity: dict = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.identity["weights_sha256"]

    def select(self, patterns: str | Sequence[str] | None = None) -> tuple[str, ...]:
        """θ by glob patterns / named groups (default ``@default``, the last block's MLP).

        A pattern matching only a tied alias (``lm_head.weight`` = ``transformer.wte.weight``)
        selects the tensor under its first name.

        Raises
        ------
        InputError
            A pattern matching nothing (:func:`torch_checks.param_groups.select_params`).
        """
        from . import param_groups as PG

        spec = PG.DEFAULT_GROUP if not patterns else patterns
        pats = PG.split_patterns(spec)
        canonical = {id(p): n for n, p in self.module.named_parameters()}
        aliases = {n: canonical[id(p)] for n, p in self.module.named_parameters(remove_duplicate=False)}
        direct, extra = [], []
        import fnmatch

        for pat in pats:
            hits = [] if pat.startswith("@") else [a for a in aliases if fnmatch.fnmatchcase(a, pat)]
            if hits and not any(aliases[a] == a for a in hits):
                extra.extend(aliases[a] for a in hits)  # only tied aliases matched
            else:
                direct.append(pat)
        names = PG.select_params(self.module, direct) if direct else ()
        chosen = set(names) | set(extra)
        return tuple(n for n, _ in self.module.named_parameters() if n in chosen)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (int64) of ``text`` with the model's own tokenizer."""
        if self.tokenizer is None:
            raise InputError(f"the model {self.spec!r} has no tokenizer: pass token ids instead of text")
        ids = self.tokenizer.encode(text)
        if not ids:
            raise InputError("the text encodes to no tokens")
        V = self.vocab_size
        if V is not None and max(ids) >= V:
            raise InputError(
                f"the tokenizer gives id {max(ids)} but the model's vocabulary has {V} tokens "
                "(tokenizer and model do not belong together)"
            )
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids) -> str:
        if self.tokenizer is None:
            return " ".join(str(int(i)) for i in ids)
        return self.tokenizer.decode(list(ids))

    @property
    def vocab_size(self) -> int | None:
        v = getattr(getattr(self.module, "config", None), "vocab_size", None)
        return v if isinstance(v, int) else None


def _require_transformers(feature: str):
    if importlib.util.find_spec("transformers") is None:
        raise MissingDependencyError("transformers", feature, extra="torch")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "merges.txt")


def _tokenizer_size(tok) -> int | None:
    for get in (lambda t: len(t), lambda t: t.get_vocab_size()):
        try:
            return int(get(tok))
        except (TypeError, AttributeError):
            continue
    return None


def _load_hf_directory(path: str):
    tf = _require_transformers("loading a Hugging Face model directory")
    try:
        model = tf.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: transformers cannot load this model directory ({exc})") from None
    tok = None
    # only with tokenizer files: transformers builds an empty tokenizer from a bare config
    if any(os.path.isfile(os.path.join(path, f)) for f in _TOKENIZER_FILES):
        try:
            tok = tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError):
            tj = os.path.join(path, "tokenizer.json")
            if os.path.isfile(tj):
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(tj)
        size = _tokenizer_size(tok)
        if size is not None and size < 2:
            raise InputError(f"{path}: the tokenizer files define {size} token(s)")
    with open(os.path.join(path, "config.json"), "rb") as f:
        cfg_digest = hashlib.sha256(f.read()).hexdigest()
    return model, tok, cfg_digest


def _load_gguf(path: str):
    tf = _require_transformers("loading a GGUF file")
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError("gguf", "loading a GGUF file", extra="lm")
    d, name = os.path.split(path)
    try:
        model = tf.AutoModelForCausalLM.from_pretrained(d or ".", gguf_file=name, local_files_only=True)
        try:
            tok = tf.AutoTokenizer.from_pretrained(d or ".", gguf_file=name, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            tok = None
        how = "transformers"
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
        from . import smollm

        try:
            model = smollm.load_smollm(path, dtype=torch.float32)
            tok = smollm.load_tokenizer(path)
            how = "torch_checks.smollm"
        except InputError as exc2:
            raise InputError(
                f"{path}: transformers cannot load this GGUF ({' '.join(str(exc).split())[:200]}) "
                f"and the project's llama reader refuses it ({exc2})"
            ) from None
    return model, tok, _file_digest(path), how


def _load_factory(spec: str):
    mod_name, fn_name = spec.rsplit(":", 1)
    try:
        if mod_name.endswith(".py"):
            ispec = importlib.util.spec_from_file_location(os.path.basename(mod_name)[:-3], mod_name)
            module = importlib.util.module_from_spec(ispec)
            ispec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InputError(f"factory {spec!r}: cannot import {mod_name} ({exc})") from None
    obj = module
    for part in fn_name.split("."):
        if not hasattr(obj, part):
            raise InputError(f"factory {spec!r}: {mod_name} has no attribute {fn_name!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"factory {spec!r}: {fn_name} is not callable")
    out = obj()
    tok = None
    if isinstance(out, dict):
        if "model" not in out:
            raise InputError(f"factory {spec!r} returned a dict without a 'model' key")
        model, tok = out["model"], out.get("tokenizer")
    elif isinstance(out, tuple):
        if len(out) != 2:
            raise InputError(f"factory {spec!r} returned a tuple of {len(out)} items; expected (model, tokenizer)")
        model, tok = out
    else:
        model = out
    if not isinstance(model, nn.Module):
        raise InputError(f"factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model, tok


def load_user_model(spec: str, *, dtype: torch.dtype = torch.float64, device="cpu") -> UserModel:
    """Load a model spec (see the module docstring) in eval mode, cast to ``dtype``.

    Raises
    ------
    InputError
        A bad spec, a model transformers cannot load, a factory returning something else
        than a module, or a module left in training mode.
    MissingDependencyError
        transformers / gguf missing for those sources.
    """
    from .device import resolve_device
    from .monitor import require_eval_mode

    if dtype not in (torch.float64, torch.float32):
        raise InputError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    source, path = check_model_spec(spec)
    extra: dict = {}
    if source == "hf-directory":
        model, tok, cfg_digest = _load_hf_directory(path)
        model.eval()
        tok_name = path
    elif source == "gguf":
        model, tok, cfg_digest, how = _load_gguf(path)
        model.eval()
        tok_name = f"{path} (GGUF tokenizer)"
        extra["loader"] = how
    else:
        model, tok = _load_factory(spec)
        require_eval_mode(model, what=f"the model returned by {spec!r} (call .eval() in the factory)")
        cfg_digest = None
        tok_name = f"{spec} (factory)"
    params = list(model.parameters())
    if not params:
        raise InputError(f"the model {spec!r} has no parameters")
    digest = weights_digest(model)
    native = str(params[0].dtype)
    model = model.to(device=resolve_device(device), dtype=dtype)
    identity = {
        "source": source,
        "spec": spec,
        "path": path if source != "factory" else None,
        "class": f"{type(model).__module__}.{type(model).__name__}",
        "config_sha256": cfg_digest,
        "dtype_loaded": native,
        "dtype": str(dtype),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "weights_sha256": digest,
        **extra,
    }
    return UserModel(spec, source, model, _adapt_tokenizer(tok, tok_name), identity)


# --------------------------------------------------------------------------- check-models


def calibration_tokens(um: UserModel, n: int, length: int, *, seed: int = 0, text: str | None = None) -> torch.Tensor:
    """``n`` windows of ``length`` tokens (int64 ``(n, length)``): of ``text`` (default: the
    project's held-out corpus) with the model's tokenizer, or seeded random ids when the model
    has no tokenizer."""
    from . import data as D

    if um.tokenizer is None:
        V = um.vocab_size
        if V is None:
            raise InputError(f"the model {um.spec!r} has neither a tokenizer nor config.vocab_size")
        return torch.randint(0, V, (n, length), generator=torch.Generator().manual_seed(seed))
    if text is None:
        held = D.split_corpus("auto").held_out
        text = D.decode(held[: min(len(held), 200_000)])
    ids = um.encode(text)
    if ids.numel() < length:
        raise InputError(f"the calibration text has {ids.numel()} tokens, fewer than one window of {length}")
    return D.sample_windows(ids, n, length, seed)


def user_model_bundle(spec: str, *, device="cpu", n_calibration: int = 8, length: int = 32, seed: int = 0):
    """A :class:`torch_checks.models.ModelBundle` of a user model for ``fimtheory check-models``:
    float64, θ = ``@default`` (the last block's MLP), calibration = ``n_calibration`` windows
    of ``length + 1`` held-out tokens, displaced by token corruption."""
    from .models import ModelBundle
    from .smollm import corrupt_tokens

    um = load_user_model(spec, dtype=torch.float64, device=device)
    try:
        names = um.select(None)
    except InputError as exc:
        raise HypothesesNotMet(f"{spec}: no default parameter group ({exc})") from None
    calib = calibration_tokens(um, n_calibration, length + 1, seed=seed)
    V = um.vocab_size or int(calib.max()) + 1

    def displace(rate: float, seed: int = 0):
        return corrupt_tokens(calib, rate, seed + 1_000_003, V)

    info = {"model_identity": um.identity, "tokenizer": um.tokenizer.describe() if um.tokenizer else None}
    dev = next(um.module.parameters()).device
    return ModelBundle(spec, "lm", um.module, names, calib.to(dev), displace, info)
