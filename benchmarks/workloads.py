"""The two benchmark workloads: a ~200k-parameter MLP on (upsampled) digits and the byte LM.

Everything is float64 on the chosen device so that every method can reach a relative error
of 1e-6 against the float64 dense reference.

* ``mlp``: ``784 → 256 (tanh) → 10``, P = 203,530, all parameters scored. Inputs are
  scikit-learn's 8×8 digits upsampled (bilinear) to 28×28 and shifted by −2..2 pixels
  (zero-padded), 25 × 1797 = 44,925 labelled images; the model is trained for a few hundred
  Adam steps (seeded, seconds) so the spectrum is that of a fitted model. Samples are
  independent (x_i, y_i) pairs: scores by :func:`torch_checks.scores.per_sample_scores`.
* ``byte-lm``: :func:`torch_checks.models.load_byte_lm` with the default
  :class:`~torch_checks.models.ByteLMConfig` (d_model 64, 2 layers, context 64) and its default
  score subset (last block's MLP down-projection weight, P = 16,384). The n samples are the
  token positions of n / 64 held-out calibration windows of 65 bytes; scores by
  :func:`torch_checks.scores.per_token_scores`, one window at a time.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from torch_checks.scores import per_sample_scores, per_token_scores

DTYPE = torch.float64


@dataclass
class Workload:
    """A model, a parameter subset θ and n samples; everything float64 on ``device``.

    ``inputs``/``targets``: classifier ``(n, d)``/``(n,)``; LM ``(m, T)``/``(m, T)`` with
    n = m·T scored positions.
    """

    name: str
    kind: str  # "classifier" | "lm"
    model: nn.Module
    names: tuple[str, ...]
    inputs: torch.Tensor
    targets: torch.Tensor
    description: str
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.targets.numel())

    @property
    def P(self) -> int:
        p = dict(self.model.named_parameters())
        return sum(p[k].numel() for k in self.names)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def params(self) -> dict[str, torch.Tensor]:
        p = dict(self.model.named_parameters())
        return {k: p[k].detach() for k in self.names}

    # ------------------------------------------------------------------ (c) the scores
    def scores(self, chunk_size: int | None = None) -> torch.Tensor:
        """G (n × P), row i = ∇_θ log p(y_i | x_i), with the suite's score code."""
        if self.kind == "classifier":
            return per_sample_scores(
                self.model, self.names, self.inputs, self.targets, dtype=DTYPE, chunk_size=chunk_size
            ).G
        rows = [
            per_token_scores(self.model, self.names, x, y, dtype=DTYPE, chunk_size=chunk_size).G
            for x, y in zip(self.inputs, self.targets)
        ]
        return torch.cat(rows, dim=0)

    # ------------------------------------------------------------------ batched log p
    def logp(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """The n-vector (log p(y_i | x_i; θ))_i as a function of θ (one batched forward)."""
        out = functional_call(self.model, p, (self.inputs,))
        lp = torch.log_softmax(out, dim=-1)
        return lp.gather(-1, self.targets.unsqueeze(-1)).reshape(-1)

    def logp_model(self) -> torch.Tensor:
        """log p of every sample from one plain forward of the model's own parameters: the n-vector
        (classifier) or the (m, T) per-token tensor (LM)."""
        if self.kind == "lm":
            return self.logp_windows()
        lp = torch.log_softmax(self.model(self.inputs), dim=-1)
        return lp.gather(-1, self.targets.unsqueeze(-1)).reshape(-1)

    def logp_windows(self) -> torch.Tensor:
        """LM only: the (m, T) log-probabilities from one plain forward of the model."""
        lp = torch.log_softmax(self.model(self.inputs), dim=-1)
        return lp.gather(-1, self.targets.unsqueeze(-1)).squeeze(-1)

    # ------------------------------------------------------------------ curvlinops view
    def curvlinops_problem(self):
        """(model_func, loss_func, params, data) such that curvlinops' EF equals F = GᵀG/n.

        ``CrossEntropyLoss(reduction="mean")`` gives EF = (1/N)·Σ ∇ℓ_i ∇ℓ_iᵀ with
        ∇ℓ_i = −g_i; for the LM the loss terms are the token positions (CrossEntropyLoss
        wants the class axis second, hence the transposing wrapper).
        """
        loss = nn.CrossEntropyLoss(reduction="mean")
        if self.kind == "classifier":
            func = self.model
        else:
            func = _ClassAxisSecond(self.model)
        allp = dict(func.named_parameters(remove_duplicate=False))
        prefix = "" if self.kind == "classifier" else "lm."
        params = [allp[prefix + k] for k in self.names]
        return func, loss, params, [(self.inputs, self.targets)]


class _ClassAxisSecond(nn.Module):
    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, x):
        return self.lm(x).transpose(1, 2)  # (m, V, T)


# ---------------------------------------------------------------------- MLP on digits


class MLP784(nn.Module):
    """784 → hidden (tanh) → 10."""

    def __init__(self, hidden: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


_DIGITS_CACHE: dict = {}


def digits28(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Upsampled and shifted digits (44,925 × 784 in [0, 1], labels), seeded order."""
    if seed in _DIGITS_CACHE:
        return _DIGITS_CACHE[seed]
    from sklearn.datasets import load_digits

    ds = load_digits()
    X = torch.tensor(ds.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(ds.target, dtype=torch.int64)
    X = F.interpolate(X, size=(24, 24), mode="bilinear", align_corners=False)
    X = F.pad(X, (2, 2, 2, 2))  # 28×28 with a 2-pixel margin for the shifts
    views, labels = [], []
    for dx in range(-2, 3):
        for dy in range(-2, 3):
            views.append(torch.roll(X, shifts=(dy, dx), dims=(2, 3)))  # margin is zero
            labels.append(y)
    X = torch.cat(views).reshape(-1, 784)
    y = torch.cat(labels)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    _DIGITS_CACHE[seed] = (X[perm], y[perm])
    return _DIGITS_CACHE[seed]


_MLP_CACHE: dict = {}


def trained_mlp(hidden: int = 256, steps: int = 300, seed: int = 0) -> tuple[nn.Module, dict]:
    """MLP784 trained by seeded minibatch Adam (float32, CPU), returned in float64."""
    key = (hidden, steps, seed)
    if key in _MLP_CACHE:
        return copy.deepcopy(_MLP_CACHE[key][0]), dict(_MLP_CACHE[key][1])
    from torch_checks.models import cache_dir

    path = os.path.join(cache_dir(), "models", f"bench-mlp784-h{hidden}-s{steps}-seed{seed}.pt")
    if os.path.exists(path):
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = MLP784(hidden).double()
        model.load_state_dict(blob["state_dict"])
        _MLP_CACHE[key] = (model.eval(), blob["info"])
        return copy.deepcopy(model), dict(blob["info"])
    X, y = digits28(seed)
    n_test = 5000
    Xtr, ytr, Xte, yte = X[n_test:], y[n_test:], X[:n_test], y[:n_test]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = MLP784(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(Xtr), (128,), generator=g)
        loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(Xte).argmax(-1) == yte).float().mean())
    info = {
        "train_steps": steps,
        "test_accuracy": acc,
        "final_train_loss_nats": float(loss.detach()),
        "cache_path": path,
    }
    model = model.double()
    _MLP_CACHE[key] = (model, info)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save({"state_dict": model.state_dict(), "info": info}, tmp)
    os.replace(tmp, path)
    return copy.deepcopy(model), dict(info)


def mlp_workload(n: int, device: torch.device, *, hidden: int = 256, steps: int = 300, seed: int = 0) -> Workload:
    model, info = trained_mlp(hidden, steps, seed)
    X, y = digits28(seed)
    if n > len(X):
        raise ValueError(f"at most {len(X)} digit samples, asked for n={n}")
    # score the held-out slice (the first 5000 of the permutation were not trained on)
    Xs, ys = X[:n].to(device=device, dtype=DTYPE), y[:n].to(device)
    model = model.to(device).eval()
    names = tuple(k for k, _ in model.named_parameters())
    desc = (
        f"MLP 784→{hidden} (tanh)→10 on 28×28-upsampled, shifted sklearn digits; "
        f"all parameters (P={sum(p.numel() for p in model.parameters())}); float64"
    )
    info["rank_one_scores"] = True  # every θ tensor is a Linear weight/bias, samples unmixed
    info["structured"] = "per-sample"
    return Workload("mlp", "classifier", model, names, Xs, ys, desc, info)


# ---------------------------------------------------------------------- byte LM

_LM_CACHE: dict = {}


def lm_workload(n: int, device: torch.device, *, config=None, seed: int = 0) -> Workload:
    from torch_checks import data as D
    from torch_checks.models import ByteLMConfig, load_byte_lm

    config = config or ByteLMConfig()
    key = repr(config)
    if key not in _LM_CACHE:
        _LM_CACHE[key] = load_byte_lm(config, device="cpu")
    model, info = _LM_CACHE[key]
    T = config.context
    if n % T:
        raise ValueError(f"byte-LM n must be a multiple of the context {T}, got {n}")
    m = n // T
    ctx = D.calibration_contexts(m, T + 1, corpus=config.corpus, seed=seed, held_out_fraction=config.held_out_fraction)
    model = copy.deepcopy(model).to(device=device, dtype=DTYPE).eval()
    names = tuple(model.default_param_names())
    P = sum(dict(model.named_parameters())[k].numel() for k in names)
    desc = (
        f"byte LM (d_model {config.d_model}, {config.n_layers} layers, context {T}); "
        f"θ = {', '.join(names)} (P={P}); n/{T} held-out windows; float64"
    )
    info = {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
    # the default θ (last block's mlp.proj.weight) is followed only by position-wise ops:
    # each per-token score is rank one (δ_t ⊗ a_t)
    last = f"blocks.{config.n_layers - 1}.mlp.proj."
    info["rank_one_scores"] = all(k.startswith(last) for k in names)
    info["structured"] = "per-sample" if info["rank_one_scores"] else "per-token"
    return Workload("byte-lm", "lm", model, names, ctx[:, :-1].to(device), ctx[:, 1:].to(device), desc, info)


WORKLOADS = ("byte-lm", "mlp", "byte-lm-all", "gpt2-all", "cnn")


def make_workload(name: str, n: int, device, **kw) -> Workload:
    wl = _make_workload_all(name, n, device)
    if wl is not None:
        return wl
    if name == "mlp":
        return mlp_workload(n, device, **kw)
    if name == "byte-lm":
        return lm_workload(n, device, **kw)
    raise ValueError(f"unknown workload {name!r}")


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else math.inf


# ---------------------------------------------------------------------- every layer scored


class LogitsOnly(nn.Module):
    """A Hugging Face causal LM returning its ``.logits`` tensor (so functional_call, the
    curvlinops view and the log-probabilities see a plain tensor)."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, x):
        return self.lm(x).logits


def _byte_windows(n: int, T: int, seed: int, corpus="auto", held_out_fraction=0.1):
    from torch_checks import data as D

    if n % T:
        raise ValueError(f"LM n must be a multiple of the context {T}, got {n}")
    ctx = D.calibration_contexts(n // T, T + 1, corpus=corpus, seed=seed, held_out_fraction=held_out_fraction)
    return ctx[:, :-1], ctx[:, 1:]


def lm_all_workload(n: int, device: torch.device, *, seed: int = 0) -> Workload:
    """The trained byte LM with every Linear and Embedding weight and bias scored."""
    from torch_checks.engines import layer_param_names
    from torch_checks.models import ByteLMConfig, load_byte_lm

    config = ByteLMConfig()
    key = repr(config)
    if key not in _LM_CACHE:
        _LM_CACHE[key] = load_byte_lm(config, device="cpu")
    model, info = _LM_CACHE[key]
    model = copy.deepcopy(model).to(device=device, dtype=DTYPE).eval()
    x, y = _byte_windows(n, config.context, seed, config.corpus, config.held_out_fraction)
    names = layer_param_names(model)
    P = sum(dict(model.named_parameters())[k].numel() for k in names)
    info = {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
    info["structured"] = "per-token"
    desc = (
        f"byte LM (d_model {config.d_model}, {config.n_layers} layers, context {config.context}); θ = every "
        f"Linear and Embedding weight and bias ({len(names)} tensors, P={P}; LayerNorms excluded); "
        f"n/{config.context} held-out windows; float64"
    )
    return Workload("byte-lm-all", "lm", model, names, x.to(device), y.to(device), desc, info)


def gpt2_all_workload(n: int, device: torch.device, *, seed: int = 0) -> Workload:
    """A GPT-2-shaped Hugging Face model built from a config (d 64, 2 layers, 4 heads, byte
    vocabulary, context 64, tied wte / lm_head, eager attention), seeded random initialisation
    (not trained), every Conv1D and Embedding weight and bias scored."""
    import transformers

    from torch_checks.engines import layer_param_names

    T = 64
    cfg = transformers.GPT2Config(
        vocab_size=256, n_positions=T, n_embd=64, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = LogitsOnly(transformers.GPT2LMHeadModel(cfg)).to(device=device, dtype=DTYPE).eval()
    x, y = _byte_windows(n, T, seed)
    names = layer_param_names(model)
    P = sum(dict(model.named_parameters())[k].numel() for k in names)
    desc = (
        f"GPT-2-shaped transformers.GPT2LMHeadModel from a config (n_embd 64, 2 layers, 4 heads, vocab 256, "
        f"context {T}, tied wte/lm_head, seeded random init); θ = every Conv1D and Embedding weight and bias "
        f"({len(names)} tensors, P={P}); n/{T} byte windows; float64"
    )
    return Workload("gpt2-all", "lm", model, names, x.to(device), y.to(device), desc, {"structured": "per-token"})


class SmallCNN(nn.Module):
    """28×28 → Conv2d(1→16, 5, stride 2) → tanh → Conv2d(16→32, 3, stride 2) → tanh → Linear(800→10)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 5, stride=2)
        self.c2 = nn.Conv2d(16, 32, 3, stride=2)
        self.fc = nn.Linear(800, 10)

    def forward(self, x):
        h = torch.tanh(self.c2(torch.tanh(self.c1(x.reshape(-1, 1, 28, 28)))))
        return self.fc(h.reshape(h.shape[0], -1))


def cnn_workload(n: int, device: torch.device, *, steps: int = 200, seed: int = 0) -> Workload:
    X, y = digits28(seed)
    torch.manual_seed(seed)
    model = SmallCNN()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    Xtr, ytr = X[5000:], y[5000:]
    for _ in range(steps):
        idx = torch.randint(0, len(Xtr), (128,), generator=g)
        loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model = model.to(device=device, dtype=DTYPE).eval()
    Xs, ys = X[:n].to(device=device, dtype=DTYPE), y[:n].to(device)
    names = tuple(k for k, _ in model.named_parameters())
    P = sum(p.numel() for p in model.parameters())
    desc = (
        f"small CNN (Conv2d 1→16 k5 s2, Conv2d 16→32 k3 s2, Linear 800→10, tanh) on 28×28 digits, "
        f"{steps} seeded Adam steps; all parameters (P={P}); float64"
    )
    info = {"train_steps": steps, "final_train_loss_nats": float(loss.detach()), "structured": "per-sample"}
    info["rank_one_scores"] = True  # per sample, conv rows are summed exactly by the structured path
    return Workload("cnn", "classifier", model, names, Xs, ys, desc, info)


def _make_workload_all(name, n, device, **kw):
    if name == "byte-lm-all":
        return lm_all_workload(n, device)
    if name == "gpt2-all":
        return gpt2_all_workload(n, device)
    if name == "cnn":
        return cnn_workload(n, device)
    return None
