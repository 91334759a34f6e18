"""The textgenrnn character-level LSTM, loaded in torch from its HDF5 weights (no TensorFlow).

The PyPI package ``textgenrnn`` (MIT licence; install it with ``pip install --no-deps
textgenrnn``: its TensorFlow/Keras requirements are not needed, nothing of it is imported)
ships ``textgenrnn_weights.hdf5`` (Keras 2.1.5, float32, 462,717 parameters) and
``textgenrnn_vocab.json`` (464 characters; class 0 is padding/unknown). We locate both
without importing the package and read the weights with :mod:`h5py`.

Architecture (the package's ``model.py``, default config: 2 layers of 128 units,
``max_length`` 40, embeddings of 100): the last 40 characters (left-padded with 0, as
``keras.preprocessing.sequence.pad_sequences`` does) → Embedding(465, 100) → LSTM 128 →
LSTM 128 (both returning sequences) → concatenate [embedding, rnn_1, rnn_2] (356 per step)
→ attention-weighted average over the 40 steps (a = softmax_t(x_t · w), w ∈ R^356, Keras
adds ``K.epsilon()`` = 1e-7 to the normaliser) → Dense(465) softmax: the next character.

LSTM weights
------------
The layers were trained as ``CuDNNLSTM`` (their two biases differ by exactly the unit
forget-gate bias of its initialiser, ``b_R − b_W = [0, 1, 0, 0]`` per gate block: training
moves both by the same gradient): ``kernel`` (in, 4u), ``recurrent_kernel`` (u, 4u) and
**two** bias vectors in ``bias`` (8u) = ``[b_W (4u), b_R (4u)]`` (cuDNN adds one to the
input product and one to the recurrent product). The gate blocks are in the order i, f, c, o
(input, forget, cell candidate, output), torch's order too, but each block is stored in
cuDNN's memory layout: the (in, u) input block S_g holds, in C order, the (u, in) matrix W_g
that multiplies x (Keras' own CuDNN → LSTM conversion, ``keras.engine.saving``, is
``S_g.T.reshape(S_g.shape, order="F")`` for input kernels and ``S_r.T`` for recurrent ones).
Hence, per gate block, ``weight_ih = S_g.reshape(u, in)``, ``weight_hh = S_r`` (as
stored), ``bias_ih = b_W``, ``bias_hh = b_R``, σ = the logistic sigmoid (cuDNN's). Reading
the kernels as plain Keras kernels instead gives a model that runs but predicts garbage
(≈ 49 nats per character on English text instead of ≈ 1.7).

:func:`keras_lstm_numpy` implements the Keras LSTM equations independently (numpy, float64,
after Keras' conversion written as Keras writes it, :func:`cudnn_to_keras`); a test compares
the two models to rounding.

As a causal LM (:class:`TextgenrnnLM`): position t's logits are the model's prediction from
the window of the 40 characters ending at t, exactly the textgenrnn generation loop.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from fimtheory.errors import InputError, MissingDependencyError

PACKAGE = "textgenrnn"
EXTRA = "textgenrnn"
ENV_DIR = "FIMTHEORY_TEXTGENRNN_DIR"
MAX_LENGTH = 40
KERAS_EPSILON = 1e-7
LICENCE = "MIT (textgenrnn, Max Woolf)"


def find_files() -> tuple[str, str]:
    """``(weights.hdf5, vocab.json)``: from ``$FIMTHEORY_TEXTGENRNN_DIR`` if set, else from the
    installed ``textgenrnn`` package (found without importing it).

    Raises
    ------
    fimtheory.errors.MissingDependencyError
        Neither is available.
    """
    d = os.environ.get(ENV_DIR)
    if not d:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(
                "textgenrnn", "the textgenrnn LSTM (pip install --no-deps textgenrnn)", extra=EXTRA
            )
        d = list(spec.submodule_search_locations)[0]
    w, v = os.path.join(d, "textgenrnn_weights.hdf5"), os.path.join(d, "textgenrnn_vocab.json")
    if not (os.path.isfile(w) and os.path.isfile(v)):
        raise MissingDependencyError("textgenrnn", f"the textgenrnn LSTM (no weights/vocab in {d})", extra=EXTRA)
    return w, v


def textgenrnn_available() -> bool:
    """True when the weights, the vocabulary and :mod:`h5py` are available."""
    try:
        find_files()
    except (MissingDependencyError, InputError):
        return False
    return importlib.util.find_spec("h5py") is not None


@lru_cache(maxsize=2)
def read_weights(path: str | None = None) -> dict[str, np.ndarray]:
    """The HDF5 arrays by Keras name (``embedding``, ``rnn_1/kernel``, …, ``output/bias``), float32."""
    if importlib.util.find_spec("h5py") is None:
        raise MissingDependencyError("h5py", "reading the textgenrnn weights", extra=EXTRA)
    import h5py

    path = path or find_files()[0]
    out = {}
    with h5py.File(path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        for layer in names:
            for wn in f[layer].attrs["weight_names"]:
                wn = wn.decode() if isinstance(wn, bytes) else wn
                key = f"{layer}/" + wn.split("/")[-1].split(":")[0]
                out[key] = np.asarray(f[layer][wn], dtype=np.float32)
    expected = {
        "embedding/embeddings",
        "rnn_1/kernel",
        "rnn_1/recurrent_kernel",
        "rnn_1/bias",
        "rnn_2/kernel",
        "rnn_2/recurrent_kernel",
        "rnn_2/bias",
        "attention/attention_W",
        "output/kernel",
        "output/bias",
    }
    if set(out) != expected:
        raise InputError(f"{path}: unexpected weights {sorted(set(out) ^ expected)}")
    return out


@lru_cache(maxsize=2)
def read_vocab(path: str | None = None) -> dict[str, int]:
    """Character → class index (1…464; 0 is padding and unknown characters)."""
    with open(path or find_files()[1], encoding="utf8") as fh:
        return json.load(fh)


def encode(text: str, vocab: dict[str, int] | None = None) -> torch.Tensor:
    """Class indices (int64) of the characters of ``text`` (unknown → 0, as textgenrnn does)."""
    v = vocab or read_vocab()
    return torch.tensor([v.get(ch, 0) for ch in text], dtype=torch.int64)


def decode(ids, vocab: dict[str, int] | None = None) -> str:
    inv = {i: c for c, i in (vocab or read_vocab()).items()}
    return "".join(inv.get(int(i), "\N{REPLACEMENT CHARACTER}") for i in ids)


# --------------------------------------------------------------------------- torch model


class AttentionWeightedAverage(nn.Module):
    """Σ_t a_t x_t with a = exp(x_t·w − max)/ (Σ exp(·) + 1e-7) (the package's layer)."""

    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d))

    def forward(self, x):  # (B, T, d)
        logits = x @ self.weight
        ai = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
        a = ai / (ai.sum(dim=1, keepdim=True) + KERAS_EPSILON)
        return (x * a[..., None]).sum(dim=1)


class Textgenrnn(nn.Module):
    """The window classifier: int64 ``(B, 40)`` → next-character logits ``(B, 465)``."""

    def __init__(self, num_classes: int = 465, dim_embeddings: int = 100, rnn_size: int = 128, rnn_layers: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(num_classes, dim_embeddings)
        self.rnn = nn.ModuleList(
            nn.LSTM(dim_embeddings if i == 0 else rnn_size, rnn_size, batch_first=True) for i in range(rnn_layers)
        )
        d = dim_embeddings + rnn_layers * rnn_size
        self.attention = AttentionWeightedAverage(d)
        self.output = nn.Linear(d, num_classes)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = self.embedding(windows)
        seq = [x]
        for lstm in self.rnn:
            x = lstm_forward(lstm, x)
            seq.append(x)
        return self.output(self.attention(torch.cat(seq, dim=-1)))


def lstm_forward(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """The one-layer, batch-first ``lstm`` on ``x`` (B, T, in) → hidden states (B, T, u), step
    by step from its parameters (torch's gate order i, f, g, o). Equal to ``lstm(x)[0]`` (a
    test checks it) but composable with ``torch.func.vmap``, which torch's fused LSTM is not."""
    w_ih, w_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0
    B, T, _ = x.shape
    u = w_hh.shape[1]
    h = x.new_zeros(B, u)
    c = x.new_zeros(B, u)
    xw = x @ w_ih.T + b
    out = []
    for t in range(T):
        i, f, g, o = (xw[:, t] + h @ w_hh.T).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        out.append(h)
    return torch.stack(out, dim=1)


def windows_of(ids: torch.Tensor, length: int = MAX_LENGTH) -> torch.Tensor:
    """``(T, length)``: row t = the ``length`` ids ending at t, left-padded with 0."""
    T = ids.shape[-1]
    pad = torch.cat([torch.zeros(length - 1, dtype=ids.dtype, device=ids.device), ids])
    return pad.unfold(0, length, 1)[:T]


class TextgenrnnLM(nn.Module):
    """The textgenrnn model as a causal LM: int64 ``(1, T)`` → logits ``(1, T, 465)``, position
    t predicting the character after t from the 40-character window ending at t."""

    def __init__(self, core: Textgenrnn):
        super().__init__()
        self.core = core

    def position_inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """The core's input for each position of the 1-D ``idx``: its window (T, 40)."""
        return windows_of(idx)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if idx.ndim != 2:
            raise InputError(f"expected int64 (B, T), got shape {tuple(idx.shape)}")
        return torch.stack([self.core(windows_of(row)) for row in idx])

    def default_param_names(self) -> tuple[str, ...]:
        """The whole model (462,717 parameters)."""
        return tuple(n for n, _ in self.named_parameters())


def state_from_keras(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras (CuDNNLSTM layout, see the module docstring) → :class:`Textgenrnn` state dict."""
    st = {"embedding.weight": w["embedding/embeddings"]}
    for i in (1, 2):
        k, r, b = w[f"rnn_{i}/kernel"], w[f"rnn_{i}/recurrent_kernel"], w[f"rnn_{i}/bias"]
        u = r.shape[0]
        n_in = k.shape[0]
        if k.shape[1] != 4 * u or b.shape != (8 * u,):
            raise InputError(f"rnn_{i}: shapes {k.shape}, {r.shape}, {b.shape} are not a CuDNNLSTM's")
        st[f"rnn.{i - 1}.weight_ih_l0"] = np.concatenate(
            [np.ascontiguousarray(g).reshape(u, n_in) for g in np.hsplit(k, 4)], axis=0
        )
        st[f"rnn.{i - 1}.weight_hh_l0"] = np.concatenate(np.hsplit(r, 4), axis=0)
        st[f"rnn.{i - 1}.bias_ih_l0"] = b[: 4 * u]
        st[f"rnn.{i - 1}.bias_hh_l0"] = b[4 * u :]
    st["attention.weight"] = w["attention/attention_W"][:, 0]
    st["output.weight"] = np.ascontiguousarray(w["output/kernel"].T)
    st["output.bias"] = w["output/bias"]
    return st


def load_textgenrnn(*, device="cpu", dtype=torch.float32) -> TextgenrnnLM:
    """The pretrained model as a :class:`TextgenrnnLM` in eval mode."""
    from .device import resolve_device

    w = read_weights(find_files()[0])
    u = w["rnn_1/recurrent_kernel"].shape[0]
    core = Textgenrnn(w["embedding/embeddings"].shape[0], w["embedding/embeddings"].shape[1], u, 2)
    core.load_state_dict({k: torch.tensor(v) for k, v in state_from_keras(w).items()}, strict=True)
    return TextgenrnnLM(core).to(device=resolve_device(device), dtype=dtype).eval()


# --------------------------------------------------------------------------- numpy reference


def cudnn_to_keras(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The weights with the LSTM kernels converted from CuDNNLSTM's layout to Keras LSTM's,
    as Keras 2.x converts them when a CuDNNLSTM checkpoint is loaded into an LSTM
    (``keras.engine.saving.preprocess_weights_for_loading``: per gate block,
    ``k.T.reshape(k.shape, order="F")`` for input kernels and ``k.T`` for recurrent ones;
    the two biases are summed by :func:`keras_lstm_numpy`)."""
    out = dict(w)
    for i in (1, 2):
        out[f"rnn_{i}/kernel"] = np.hstack(
            [g.T.reshape(g.shape, order="F") for g in np.hsplit(w[f"rnn_{i}/kernel"], 4)]
        )
        out[f"rnn_{i}/recurrent_kernel"] = np.hstack([g.T for g in np.hsplit(w[f"rnn_{i}/recurrent_kernel"], 4)])
    return out


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def keras_lstm_numpy(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras' LSTM equations (keras.io, ``LSTM``: activation tanh, recurrent_activation sigmoid,
    gates i, f, c, o in the column blocks of the kernels), written independently of torch.

    ``x`` (B, T, in); ``bias`` either the combined (4u) or CuDNN's pair (8u, summed here).
    Returns the hidden states (B, T, u), float64.
    """
    u = recurrent.shape[0]
    bias = np.asarray(bias, dtype=np.float64)
    b = bias[: 4 * u] + bias[4 * u :] if bias.shape[0] == 8 * u else bias
    x = np.asarray(x, dtype=np.float64)
    k, r = (np.asarray(a, dtype=np.float64) for a in (kernel, recurrent))
    B, T, _ = x.shape
    h = np.zeros((B, u))
    c = np.zeros((B, u))
    out = np.zeros((B, T, u))
    for t in range(T):
        z = x[:, t] @ k + h @ r + b
        i, f, cc, o = z[:, :u], z[:, u : 2 * u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(cc)
        h = _sigmoid(o) * np.tanh(c)
        out[:, t] = h
    return out


def keras_model_numpy(windows: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The whole textgenrnn forward in numpy (float64): windows (B, 40) → softmax probabilities.

    ``w`` holds Keras-layout kernels (:func:`cudnn_to_keras` of the file's weights).
    """
    emb = w["embedding/embeddings"].astype(np.float64)[windows]
    h1 = keras_lstm_numpy(emb, w["rnn_1/kernel"], w["rnn_1/recurrent_kernel"], w["rnn_1/bias"])
    h2 = keras_lstm_numpy(h1, w["rnn_2/kernel"], w["rnn_2/recurrent_kernel"], w["rnn_2/bias"])
    x = np.concatenate([emb, h1, h2], axis=-1)
    logits = x @ w["attention/attention_W"].astype(np.float64)[:, 0]
    ai = np.exp(logits - logits.max(axis=-1, keepdims=True))
    a = ai / (ai.sum(axis=1, keepdims=True) + KERAS_EPSILON)
    avg = (x * a[..., None]).sum(axis=1)
    z = avg @ w["output/kernel"].astype(np.float64) + w["output/bias"].astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- registry bundle


def char_trajectories(n: int, length: int, *, corpus: str = "auto", seed: int = 0, held_out: bool = True):
    """``n`` windows of ``length`` characters of corpus text, encoded with the vocabulary."""
    from . import data as D

    sp = D.split_corpus(corpus)
    raw = sp.held_out if held_out else sp.train
    text = D.decode(raw[: min(len(raw), 200_000)])
    return D.sample_windows(encode(text), n, length, seed)


def load_textgenrnn_bundle(
    *, device="cpu", dtype=torch.float32, n_calibration: int = 8, length: int = 32, seed: int = 0, corpus="auto", **_
):
    """Registry loader for ``"textgenrnn"``: calibration = ``n_calibration`` windows of
    ``length + 1`` characters of held-out English text; ``displace(rate, seed)`` replaces
    characters at ``rate`` by uniform vocabulary characters; θ = the whole model."""
    from .models import ModelBundle

    model = load_textgenrnn(device=device, dtype=dtype)
    dev = next(model.parameters()).device
    calib = char_trajectories(n_calibration, length + 1, corpus=corpus, seed=seed).to(dev)
    vocab = model.core.output.out_features

    def displace(rate: float, seed: int = 0):
        if not 0.0 <= rate <= 1.0:
            raise InputError(f"corruption rate must be in [0, 1], got {rate}")
        gen = torch.Generator().manual_seed(int(seed) + 1_000_003)
        c = calib.cpu()
        mask = torch.rand(c.shape, generator=gen) < rate  # nested in rate for a fixed seed
        noise = torch.randint(1, vocab, c.shape, generator=gen)  # classes 1…464 (0 is padding)
        return torch.where(mask, noise, c).to(dev)

    w, v = find_files()
    info = {"weights": w, "vocab": v, "dtype": str(dtype), "licence": LICENCE}
    return ModelBundle("textgenrnn", "lm", model, model.default_param_names(), calib, displace, info)
