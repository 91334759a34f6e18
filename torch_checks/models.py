"""Models trained here, deterministically and cached, and the :data:`MODELS` registry.

* ``"logistic"``: binary logistic regression (torch) on two digit classes of scikit-learn's
  ``digits`` (3 vs 8), L2-regularised so the optimum is finite. θ = W.reshape(-1) with
  W of shape (1, d), d = 65 (64 pixels / 16 plus a constant 1 feature acting as bias).
* ``"mlp-digits"``: MLP 64 → 32 (tanh) → 10 on all ten digit classes.
* ``"byte-lm"``: byte-level causal transformer LM (vocab 256) trained on
  :mod:`torch_checks.data` text.
* ``"smollm2"``: SmolLM2-135M-Instruct, see :mod:`torch_checks.smollm`.

All log-probabilities are natural logs (nats); bits are nats / ln 2. Trained weights are
cached in ``$FIMTHEORY_CACHE/models/<name>-<config hash>.pt`` (default
``~/.cache/fimtheory``), never in git. Training is a deterministic function of its config
(seeded :class:`torch.Generator`, ``torch.use_deterministic_algorithms``), for a given torch
build and thread count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from fimtheory.errors import InputError, UnknownIdError

from . import data as D
from .device import resolve_device

LN2 = math.log(2.0)


# --------------------------------------------------------------------------- cache & determinism


def cache_dir() -> str:
    """Root of the cache: ``$FIMTHEORY_CACHE`` if set, else ``~/.cache/fimtheory``."""
    root = os.environ.get("FIMTHEORY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fimtheory")
    return root


def config_hash(config: dict) -> str:
    """12-hex-digit SHA-256 of a JSON-serialisable config (keys sorted)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def model_path(name: str, config: dict) -> str:
    """Cache file of model ``name`` trained with ``config``."""
    return os.path.join(cache_dir(), "models", f"{name}-{config_hash(config)}.pt")


@contextlib.contextmanager
def deterministic(seed: int, threads: int | None = 1):
    """Seed torch's global RNG, switch on deterministic algorithms and (by default) run on
    one intra-op thread, so that CPU reductions have a fixed order whatever the machine;
    everything is restored on exit.

    One thread is also the fastest for these tiny models on a shared 2-core machine
    (multi-threaded kernels of this size mostly wait on each other).
    """
    # cuBLAS needs this for deterministic matmuls on CUDA (harmless on CPU).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    torch.manual_seed(int(seed))
    torch.use_deterministic_algorithms(True, warn_only=False)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)
        torch.set_num_threads(prev_threads)
        torch.random.set_rng_state(state)


def _save(path: str, state: dict, info: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save({"state_dict": state, "info": info}, tmp)
    os.replace(tmp, path)  # atomic: concurrent trainers never see half a file


def _load(path: str) -> tuple[dict, dict] | None:
    if not os.path.exists(path):
        return None
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return blob["state_dict"], blob["info"]


# --------------------------------------------------------------------------- byte-level LM


@dataclass(frozen=True)
class ByteLMConfig:
    """Architecture and training of the byte-level LM.

    The default trains in well under 2 minutes on 2 CPU cores; :meth:`tiny` is for tests.
    """

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    context: int = 64
    steps: int = 1600
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    seed: int = 0
    corpus: str = "auto"
    held_out_fraction: float = 0.1
    eval_bytes: int = 65536

    @classmethod
    def tiny(cls, **kw) -> ByteLMConfig:
        """A seconds-long config for tests (1 layer, d_model 32, context 32)."""
        base = dict(
            d_model=32, n_layers=1, n_heads=2, d_ff=64, context=32, steps=300, batch_size=16, lr=1e-2, eval_bytes=8192
        )
        base.update(kw)
        return cls(**base)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention written out (no fused kernel), so that it is
    twice differentiable and works in float64 and under ``torch.func`` transforms."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise InputError(f"d_model={d_model} not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        h = self.n_heads
        q, k, v = self.qkv(x).split(C, dim=-1)
        q = q.view(B, T, h, C // h).transpose(1, 2)
        k = k.view(B, T, h, C // h).transpose(1, 2)
        v = v.view(B, T, h, C // h).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // h)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    """Position-wise MLP: ``fc`` (up-projection), GELU (tanh form), ``proj`` (down-projection)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff)
        self.proj = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ByteLM(nn.Module):
    """Byte-level causal transformer: int64 bytes ``(B, T)`` → logits ``(B, T, 256)``.

    Logit ``[b, t]`` parametrises p(byte_{t+1} | byte_0..byte_t) (natural-log softmax).
    """

    vocab_size = 256

    def __init__(self, config: ByteLMConfig):
        super().__init__()
        self.config = config
        c = config
        self.tok = nn.Embedding(256, c.d_model)
        self.pos = nn.Embedding(c.context, c.d_model)
        self.blocks = nn.ModuleList(Block(c.d_model, c.n_heads, c.d_ff) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, 256, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[-1]
        if T > self.config.context:
            raise InputError(f"sequence of {T} bytes exceeds the context {self.config.context}")
        x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))

    def default_param_names(self) -> tuple[str, ...]:
        """The last block's MLP down-projection weight (the LM's default score subset)."""
        return (f"blocks.{self.config.n_layers - 1}.mlp.proj.weight",)


@torch.no_grad()
def bits_per_byte(model: nn.Module, stream: torch.Tensor, context: int, max_bytes: int) -> float:
    """Mean next-byte cross-entropy in **bits/byte** over non-overlapping windows of
    ``context + 1`` bytes from the start of ``stream`` (at most ``max_bytes`` of it).

    Each window predicts its last ``context`` bytes from growing prefixes inside it.
    """
    dev = next(model.parameters()).device
    n_win = max(1, min(len(stream), max_bytes) // (context + 1))
    win = stream[: n_win * (context + 1)].view(n_win, context + 1).to(dev)
    total, count = 0.0, 0
    for i in range(0, n_win, 256):
        w = win[i : i + 256]
        logits = model(w[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, 256).double(), w[:, 1:].reshape(-1), reduction="sum")
        total += float(nll)
        count += w[:, 1:].numel()
    return total / count / LN2


def train_byte_lm(config: ByteLMConfig, *, device="cpu", progress: bool = False) -> tuple[ByteLM, dict]:
    """Train a :class:`ByteLM` from scratch, deterministically from ``config.seed``.

    AdamW with linear warm-up and cosine decay on random windows of the training split.
    Returns the model (eval mode, on ``device``) and an info dict with
    ``held_out_bits_per_byte``, ``train_seconds``, ``corpus`` and ``corpus_fingerprint``.
    """
    dev = resolve_device(device)
    split = D.split_corpus(config.corpus, config.held_out_fraction)
    with deterministic(config.seed):
        model = ByteLM(config).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95))
        gen = torch.Generator().manual_seed(config.seed + 1)
        warm = max(1, config.steps // 20)
        t0 = time.perf_counter()
        model.train()
        it = range(config.steps)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="byte-lm", unit="step")
        for step in it:
            lr_scale = min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / config.steps))
            for g in opt.param_groups:
                g["lr"] = config.lr * lr_scale
            starts = torch.randint(0, len(split.train) - config.context - 1, (config.batch_size,), generator=gen)
            idx = starts[:, None] + torch.arange(config.context + 1)[None, :]
            w = split.train[idx].to(dev)
            logits = model(w[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, 256), w[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        seconds = time.perf_counter() - t0
        model.eval()
        bpb = bits_per_byte(model, split.held_out, config.context, config.eval_bytes)
        train_bpb = bits_per_byte(model, split.train, config.context, config.eval_bytes)
    info = {
        "held_out_bits_per_byte": bpb,
        "train_bits_per_byte": train_bpb,
        "train_seconds": seconds,
        "corpus": split.corpus,
        "corpus_fingerprint": split.fingerprint,
        "final_train_loss_nats": float(loss.detach()),
        "torch_version": str(torch.__version__),
        "threads": 1,
    }
    return model, info


def _byte_lm_key(config: ByteLMConfig) -> dict:
    cfg = dataclasses.asdict(config)
    cfg["corpus"] = D.resolve_corpus(config.corpus)
    # The corpus bytes are part of the key: a different fortunes version retrains.
    cfg["corpus_fingerprint"] = D.fingerprint(D.load_corpus(cfg["corpus"]))
    return cfg


def load_byte_lm(
    config: ByteLMConfig | None = None, *, device="cpu", retrain: bool = False, progress: bool = False
) -> tuple[ByteLM, dict]:
    """The byte LM for ``config`` from the cache, training (and caching) it if missing."""
    config = config or ByteLMConfig()
    dev = resolve_device(device)
    key = _byte_lm_key(config)
    path = model_path("byte-lm", key)
    cached = None if retrain else _load(path)
    if cached is None:
        model, info = train_byte_lm(config, device="cpu", progress=progress)
        info["cache_path"] = path
        _save(path, model.state_dict(), info)
        return model.to(dev).eval(), info
    state, info = cached
    model = ByteLM(config)
    model.load_state_dict(state)
    return model.to(dev).eval(), info


# --------------------------------------------------------------------------- digits classifiers


class LogisticRegression(nn.Module):
    """Binary logistic regression p(y=1|x) = σ(w·x), ``weight`` of shape (1, d).

    ``forward`` returns the two-class logits ``[0, w·x]`` so that a softmax over them is
    the Bernoulli model and every classifier here is scored the same way.
    """

    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.weight.T  # (..., 1)
        return torch.cat([torch.zeros_like(z), z], dim=-1)


class DigitsMLP(nn.Module):
    """MLP 64 → hidden (tanh) → 10: ``fc1``, ``fc2``. Smooth, so D²g ≠ 0 (§3(d))."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


@dataclass(frozen=True)
class DigitsConfig:
    """Training of the digits classifiers (full batch, float64, deterministic)."""

    seed: int = 0
    test_fraction: float = 0.25
    hidden: int = 32
    steps: int = 600
    lr: float = 0.02
    l2: float = 1e-3
    classes: tuple[int, ...] = (3, 8)  # logistic only


def digits_data(
    classes: Sequence[int] | None = None, *, seed: int = 0, test_fraction: float = 0.25, bias_feature: bool = False
):
    """scikit-learn's digits as float64 tensors, pixels scaled to [0, 1].

    Returns ``(X_train, y_train, X_test, y_test)``; with ``classes`` only those classes,
    relabelled 0..k-1 in the given order; ``bias_feature`` appends a constant 1 column.
    The split is a seeded permutation.
    """
    from sklearn.datasets import load_digits

    ds = load_digits()
    X = torch.tensor(ds.data, dtype=torch.float64) / 16.0
    y = torch.tensor(ds.target, dtype=torch.int64)
    if classes is not None:
        keep = torch.zeros_like(y, dtype=torch.bool)
        new = torch.full_like(y, -1)
        for i, c in enumerate(classes):
            keep |= y == c
            new[y == c] = i
        X, y = X[keep], new[keep]
    if bias_feature:
        X = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(X) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr], y[tr], X[te], y[te]


def _train_full_batch(model: nn.Module, X, y, cfg: DigitsConfig) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for _ in range(cfg.steps):
        loss = F.cross_entropy(model(X), y) + cfg.l2 * sum(
            (p**2).sum() for n, p in model.named_parameters() if n.endswith("weight")
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    # A few L-BFGS steps to sit close to the regularised optimum (small mean score ḡ).
    lb = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=200,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure():
        lb.zero_grad()
        loss = F.cross_entropy(model(X), y) + cfg.l2 * sum(
            (p**2).sum() for n, p in model.named_parameters() if n.endswith("weight")
        )
        loss.backward()
        return loss

    lb.step(closure)
    return float(closure().detach())


def _load_or_train_digits(name: str, cfg: DigitsConfig, build: Callable[[], nn.Module], data, retrain: bool):
    key = dataclasses.asdict(cfg)
    if name == "mlp-digits":
        key.pop("classes")
    path = model_path(name, key)
    cached = None if retrain else _load(path)
    model = build()
    if cached is not None:
        model.load_state_dict(cached[0])
        return model.eval(), cached[1]
    Xtr, ytr, Xte, yte = data
    with deterministic(cfg.seed):
        model = build()
        t0 = time.perf_counter()
        loss = _train_full_batch(model, Xtr, ytr, cfg)
        secs = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        acc = float((model(Xte).argmax(-1) == yte).double().mean())
        nll = float(F.cross_entropy(model(Xte), yte))
    info = {
        "train_objective_nats": loss,
        "test_accuracy": acc,
        "test_nll_nats": nll,
        "train_seconds": secs,
        "cache_path": path,
    }
    _save(path, model.state_dict(), info)
    return model, info


def load_logistic(cfg: DigitsConfig | None = None, *, retrain: bool = False):
    """Logistic regression on digits ``cfg.classes`` (float64). Returns ``(model, info, data)``."""
    cfg = cfg or DigitsConfig()
    data = digits_data(cfg.classes, seed=cfg.seed, test_fraction=cfg.test_fraction, bias_feature=True)
    d = data[0].shape[1]
    model, info = _load_or_train_digits("logistic", cfg, lambda: LogisticRegression(d).double(), data, retrain)
    return model, info, data


def load_mlp_digits(cfg: DigitsConfig | None = None, *, retrain: bool = False):
    """The digits MLP (float64). Returns ``(model, info, data)``."""
    cfg = cfg or DigitsConfig()
    data = digits_data(None, seed=cfg.seed, test_fraction=cfg.test_fraction)
    model, info = _load_or_train_digits("mlp-digits", cfg, lambda: DigitsMLP(cfg.hidden).double(), data, retrain)
    return model, info, data


def off_manifold_directions(X_ref: torch.Tensor, X: torch.Tensor, *, k: int = 20, seed: int = 0) -> torch.Tensor:
    """Unit directions u(x) pointing away from the data manifold M, one per row of ``X``.

    M is approximated by the affine span of the top ``k`` principal components of
    ``X_ref``; u(x) is the normalised component, orthogonal to that span, of a seeded
    Gaussian vector. (Hypothesis: the data lie near a k-dimensional affine subspace.)
    """
    mu = X_ref.mean(0)
    _, _, Vh = torch.linalg.svd(X_ref - mu, full_matrices=False)
    V = Vh[:k].T  # (d, k)
    gen = torch.Generator().manual_seed(seed)
    Z = torch.randn(X.shape, generator=gen, dtype=torch.float64).to(X)
    Z = Z - (Z @ V) @ V.T
    return Z / Z.norm(dim=1, keepdim=True)


# --------------------------------------------------------------------------- registry


@dataclass
class ModelBundle:
    """What the checks need from a model.

    Attributes
    ----------
    name, kind : str
        Registry name; ``"classifier"`` (samples are (x, y) pairs) or ``"lm"`` (samples are
        token positions of a trajectory).
    module : nn.Module
        The model, eval mode.
    param_names : tuple of str
        Default parameter subset for scores (whole model for the small ones).
    calibration : tensor or tuple
        Classifiers: ``(X, y)`` held-out inputs and labels. LMs: int64 ``(m, T+1)``
        trajectories (T scored positions each).
    displace : callable
        ``displace(t, seed)`` → displaced version of ``calibration`` (row-aligned).
        Classifiers: ``x + t·u(x)`` with u(x) off the data manifold (t in input units);
        LMs: token corruption at rate ``t`` ∈ [0, 1].
    info : dict
        Training / loading facts (held-out loss with its unit in the key, cache path...).
    """

    name: str
    kind: str
    module: nn.Module
    param_names: tuple[str, ...]
    calibration: object
    displace: Callable[[float, int], object]
    info: dict = field(default_factory=dict)

    def select_params(self, which: str | Sequence[str] = "default") -> tuple[str, ...]:
        """``"default"`` → :attr:`param_names`; ``"all"`` → every parameter; or explicit names
        (checked)."""
        names = [n for n, _ in self.module.named_parameters()]
        if which == "default":
            return self.param_names
        if which == "all":
            return tuple(names)
        which = tuple([which] if isinstance(which, str) else which)
        bad = [w for w in which if w not in names]
        if bad:
            raise UnknownIdError(f"unknown parameter(s) {bad} of model {self.name}")
        return which

    def score_pairs(self, sample):
        """``(inputs, targets)`` for :func:`torch_checks.scores.per_sample_scores`.

        Classifiers: ``sample = (X, y)`` is returned as is. LMs: ``sample`` a 1-D trajectory
        of T+1 tokens → ``(tokens[:-1], tokens[1:])``: T per-token pairs.
        """
        if self.kind == "classifier":
            X, y = sample
            return X, y
        tok = torch.as_tensor(sample)
        if tok.ndim != 1 or len(tok) < 2:
            raise InputError("an LM trajectory must be a 1-D tensor of at least 2 tokens")
        return tok[:-1], tok[1:]

    def scores(self, sample, *, params="default", dtype=torch.float64, chunk_size=None):
        """Per-sample (classifier) or per-token (LM) scores of ``sample`` (see
        :meth:`score_pairs`) as a :class:`torch_checks.scores.Scores`."""
        from .scores import per_sample_scores, per_token_scores

        names = self.select_params(params)
        x, y = self.score_pairs(sample)
        if self.kind == "classifier":
            return per_sample_scores(self.module, names, x, y, dtype=dtype, chunk_size=chunk_size)
        return per_token_scores(self.module, names, x, y, dtype=dtype, chunk_size=chunk_size)


def _digits_bundle(name, model, info, data, cfg) -> ModelBundle:
    Xtr, _, Xte, yte = data
    dev = next(model.parameters()).device

    def displace(t: float, seed: int = 0):
        feat = Xte[:, :64]
        u = off_manifold_directions(Xtr[:, :64], feat, seed=seed)
        Xt = feat + float(t) * u
        if Xte.shape[1] > 64:  # keep the constant bias feature
            Xt = torch.cat([Xt, Xte[:, 64:]], dim=1)
        return Xt.to(dev), yte.to(dev)

    return ModelBundle(
        name,
        "classifier",
        model,
        tuple(n for n, _ in model.named_parameters()),
        (Xte.to(dev), yte.to(dev)),
        displace,
        info,
    )


def _load_logistic_bundle(*, device="cpu", retrain=False, config=None, **_) -> ModelBundle:
    model, info, data = load_logistic(config, retrain=retrain)
    return _digits_bundle("logistic", model.to(resolve_device(device)), info, data, config)


def _load_mlp_bundle(*, device="cpu", retrain=False, config=None, **_) -> ModelBundle:
    model, info, data = load_mlp_digits(config, retrain=retrain)
    return _digits_bundle("mlp-digits", model.to(resolve_device(device)), info, data, config)


def _load_byte_lm_bundle(
    *, device="cpu", retrain=False, config=None, n_calibration=32, length=None, seed=0, progress=False, **_
) -> ModelBundle:
    config = config or ByteLMConfig()
    dev = resolve_device(device)
    model, info = load_byte_lm(config, device=dev, retrain=retrain, progress=progress)
    T = (length or config.context) + 1
    T = min(T, config.context + 1)
    calib = D.calibration_contexts(
        n_calibration, T, corpus=config.corpus, seed=seed, held_out_fraction=config.held_out_fraction
    ).to(dev)

    def displace(rate: float, seed: int = 0):
        return D.corrupt(calib, rate, seed + 1_000_003)

    return ModelBundle("byte-lm", "lm", model, model.default_param_names(), calib, displace, info)


def _load_smollm_bundle(**kw) -> ModelBundle:
    from .smollm import load_smollm_bundle

    return load_smollm_bundle(**kw)


MODELS: dict[str, Callable[..., ModelBundle]] = {
    "logistic": _load_logistic_bundle,
    "mlp-digits": _load_mlp_bundle,
    "byte-lm": _load_byte_lm_bundle,
    "smollm2": _load_smollm_bundle,
}


def load_model(name: str, **kw) -> ModelBundle:
    """Load registry model ``name`` (keyword arguments go to its loader: ``device``,
    ``retrain``, ``config``...).

    Raises
    ------
    fimtheory.errors.UnknownIdError
        Unknown name.
    """
    try:
        loader = MODELS[name]
    except KeyError:
        raise UnknownIdError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None
    return loader(**kw)
