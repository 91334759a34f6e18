"""The runtime monitor σ_t = λ_max(F_t) / λ_base on a torch model (docs/theory.md §7).

A deployer wraps their own model in :class:`SigmaMonitor` and pushes tokens (or, for a
classifier, ``(x, y)`` samples) one at a time; every push returns σ_t.

* F_t is the empirical FIM of the per-token scores g_s = ∇_θ log p(x_s | x_<s; θ) of the
  prefix seen so far (all tokens, or only the last ``window`` scores). θ is the named
  parameter subset ``param_names``; the other parameters are held fixed.
* The unnormalised Gram matrix K_t = G_t G_tᵀ of the stored scores grows by one row and
  column per token (t dot products of length P: O(tP) work); with a window the oldest row
  and column are dropped. F_t is never formed.
* λ_max(F_t) = λ_max(K_t)/t is found by Lanczos (full reorthogonalisation) on the t × t
  matrix, warm-started from s = the previous top eigenvector u padded with the new coordinate
  u_new = k_newᵀu / λ (one power-iteration step restricted to the new coordinate; s = the
  all-ones vector for the first score and after λ = 0), plus a seeded random component: the
  start is s/‖s‖ + 10⁻²·ξ/√t, ξ the next t float64 standard normal draws of the monitor's CPU
  generator (seeded 0 at construction and at :meth:`SigmaMonitor.reset`). Lanczos stops when
  the Ritz residual is ≤ ``tol`` · λ; if it has not converged after ``max_iter`` steps, or its
  value is more than 10⁻¹² relative below the largest diagonal entry of K_t (which is
  ≤ λ_max: the value is a lower eigenvalue), a dense ``eigh`` of the t × t matrix is used
  instead (counted in :attr:`SigmaMonitor.fallbacks`).
  Either way the value is a Ritz value with relative residual ≤ ``tol``, hence within
  ``tol`` · λ of an eigenvalue of K_t / t.

:func:`calibrate` computes λ_base and the threshold τ_q on a **full-precision** model from
calibration contexts: for each context, Λ = λ_max of the FIM of all its per-token scores
(or of the last ``window`` of them), λ_base = mean (or median) of the Λ's, σ = Λ / λ_base
and τ_q = the q-quantile (linear interpolation) of the σ's.

Units: scores in nats per θ-unit, λ in nats² per θ-unit², σ dimensionless.

Hypotheses: the model is causal and deterministic (eval mode: a model left in training mode
with dropout, batch-norm or custom code that reads ``self.training`` is refused, see
:func:`require_eval_mode`); a monitor snapshots the weights at construction (re-create it after
changing the model). An LM prefix longer than ``max_context`` is truncated to its last
``max_context`` tokens before each score, exactly as a from-scratch recomputation on that window.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad

from fimtheory.errors import FimTheoryError, InputError
from fimtheory.monitor import calibration_threshold

from .device import resolve_device
from .engines import lambda_max as _lambda_max
from .scores import _logits, _split_params, per_sample_scores, per_token_scores

__all__ = [
    "SigmaMonitor",
    "StreamStateError",
    "calibrate",
    "context_lambda_max",
    "require_eval_mode",
    "sigma_trace",
    "top_eig_warm",
]

TRAINING_OPTIONS = ("refuse", "eval")


class StreamStateError(FimTheoryError, RuntimeError):
    """A stream's state is inconsistent: an exception (a model error, an out-of-memory error, a
    KeyboardInterrupt) escaped a push after the stream had started to change its state, so its
    tokens, cache and scores may disagree and any later σ_t could be wrong. The stream refuses
    every later push until ``reset()``."""


def _broken_stream_message(exc_type: str) -> str:
    return (
        f"the stream is inconsistent: an earlier push raised {exc_type} after the stream had started "
        "to change its state (tokens, cache and scores may disagree); call reset() and push the tokens again"
    )


#: torch.nn modules whose forward differs between training and eval mode.
_MODE_DEPENDENT = (
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.RReLU,
    nn.MultiheadAttention,
)


def _training_modules(model: nn.Module) -> list[str]:
    """Modules in training mode whose forward may depend on it: the torch.nn dropout, batch-norm,
    instance-norm, RReLU and attention layers, and any module class defined outside torch.nn
    (its code may read ``self.training``). Pure torch.nn layers (Linear, Tanh, containers, …)
    behave the same in both modes and are not listed."""
    out = []
    for name, m in model.named_modules():
        if not m.training:
            continue
        builtin = type(m).__module__.startswith("torch.nn.")
        if isinstance(m, _MODE_DEPENDENT) or not builtin:
            out.append(f"{name or 'the model'} ({type(m).__name__})")
    return out


def require_eval_mode(model: nn.Module, *, training: str = "refuse", what: str = "the monitor") -> bool:
    """Refuse (or, with ``training="eval"``, fix) a model left in training mode.

    Scores of a model in training mode are scores of a random sub-network (dropout) or of
    batch statistics (batch-norm), not of the model being deployed.

    Parameters
    ----------
    training : {"refuse", "eval"}
        "refuse" (default): raise :class:`fimtheory.errors.InputError` naming the modules and the
        fix; "eval": call ``model.eval()`` (this modifies the caller's model) and warn.

    Returns
    -------
    bool
        True if the model was switched to eval mode.
    """
    if training not in TRAINING_OPTIONS:
        raise InputError(f"training must be one of {TRAINING_OPTIONS}, got {training!r}")
    bad = _training_modules(model)
    if not bad:
        return False
    shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
    if training == "refuse":
        raise InputError(
            f"{what} needs a model in eval mode, but {shown} {'is' if len(bad) == 1 else 'are'} in "
            "training mode (dropout or batch "
            "statistics would change every score); call model.eval() first, or pass "
            "training='eval' to let it switch the model to eval mode"
        )
    model.eval()
    warnings.warn(f"{what}: switched the model to eval mode ({shown} in training mode)", stacklevel=3)
    return True


def _orthogonal_restart(basis: torch.Tensor, rng: torch.Generator | None) -> tuple[torch.Tensor, torch.Generator]:
    """Seeded random unit vector orthogonal to a Lanczos basis (the restart after a breakdown).

    Parameters
    ----------
    basis : torch.Tensor ``(k, n)``
        Orthonormal rows (the Lanczos vectors spanned so far), k < n, on any device.
    rng : torch.Generator or None
        The CPU generator of earlier restarts of the same Lanczos run; None: a new one seeded
        with 0 (so a run's restart vectors do not depend on the global torch seed).

    Returns
    -------
    (vector, rng)
        ``vector``: the next n standard normal draws of ``rng`` in float64 on the CPU, moved to
        ``basis``'s device and dtype, with their components along the rows of ``basis`` removed
        (classical Gram-Schmidt, two passes: orthogonal to rounding) and normalised to unit
        2-norm. ``rng``: the generator, to pass to the next restart.
    """
    if rng is None:
        rng = torch.Generator().manual_seed(0)
    w = torch.randn(basis.shape[1], generator=rng, dtype=torch.float64, device="cpu").to(
        device=basis.device, dtype=basis.dtype
    )
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w / torch.linalg.vector_norm(w), rng


def top_eig_warm(
    K: torch.Tensor,
    start: torch.Tensor | None,
    *,
    tol: float = 1e-10,
    max_iter: int = 60,
) -> tuple[float, torch.Tensor, int, bool]:
    """Largest eigenpair of a small symmetric matrix by Lanczos from a given start vector.

    Parameters
    ----------
    K : torch.Tensor ``(t, t)``
        Symmetric (PSD for a Gram matrix), any device, float64 recommended.
    start : torch.Tensor ``(t,)`` or None
        Warm start; None or a zero vector → the all-ones vector.
    tol : float
        Stop when ‖K y − θ y‖ ≤ tol · |θ| (explicit residual of the Ritz pair). A pair is
        reported converged only when it meets this test, also after an invariant breakdown or
        once the whole space is spanned, so |value − λ_max| ≤ tol · |value| when converged; a
        tol below the rounding level of K's dtype is then never met (fall back to a dense solver).
    max_iter : int
        Lanczos steps at most (capped at t).

    Returns
    -------
    (value, vector, iterations, converged)
        ``vector`` is a unit Ritz vector; if not converged the caller should fall back
        to a dense eigensolver.

    Notes
    -----
    When the Krylov space of the start becomes invariant before it spans the whole space
    (a start orthogonal to the range of K, or to the top eigenvector), its Ritz values are
    eigenvalues of K with a zero residual but need not include the largest one. There the
    rest of the spectrum is bounded by ‖K restricted to the orthogonal complement‖_F =
    (‖K‖_F² − ‖T‖_F²)^½ (T the tridiagonal matrices so far); when that bound is above the
    best Ritz value, Lanczos restarts from a seeded random vector orthogonal to the space
    spanned so far, in the same step budget. The result is the largest Ritz value of all
    restarts; a restarted run is converged when the current block's top Ritz pair meets the
    residual test, i.e. with the same standard as Lanczos from any start.
    """
    t = K.shape[0]
    if start is None or float(torch.linalg.vector_norm(start)) == 0.0:
        start = torch.ones(t, dtype=K.dtype, device=K.device)
    q = start / torch.linalg.vector_norm(start)
    m = min(t, max(1, int(max_iter)))
    Q = torch.zeros(m, t, dtype=K.dtype, device=K.device)
    alphas: list[float] = []  # the current block's tridiagonal matrix
    betas: list[float] = []
    scale = float(torch.linalg.matrix_norm(K, ord="fro"))
    if scale == 0.0:
        return 0.0, q, 0, True
    # a breakdown: β at the rounding level of K's dtype (1e-14‖K‖_F in float64, ~2e-6‖K‖_F in
    # float32, where rounding alone leaves β ~ 1e-7‖K‖ after an invariant space)
    breakdown = max(1e-14, 16 * torch.finfo(K.dtype).eps) * scale
    first = 0  # first Lanczos vector of the current block (a restart begins a new block)
    kept: tuple[float, torch.Tensor, float] | None = None  # best Ritz pair of finished blocks, its residual
    kept_frob2 = 0.0  # ‖T‖_F² of the finished (invariant) blocks
    rng = None
    theta, y = 0.0, q
    for k in range(m):
        Q[k] = q
        w = K @ q
        alpha = float(torch.dot(w, q))
        alphas.append(alpha)
        for _ in range(2):  # full reorthogonalisation
            w = w - Q[: k + 1].T @ (Q[: k + 1] @ w)
        beta = float(torch.linalg.vector_norm(w))
        # the tridiagonal eigenproblem runs on the CPU in float64, whatever the default device
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64, device="cpu"))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64, device="cpu")
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        ev, evec = torch.linalg.eigh(T)
        theta = float(ev[-1])
        s = evec[:, -1].to(device=K.device, dtype=K.dtype)
        y = Q[first : k + 1].T @ s
        y = y / torch.linalg.vector_norm(y)
        res = float(torch.linalg.vector_norm(K @ y - theta * y))
        best, best_y, best_res = theta, y, res
        if kept is not None and kept[0] > theta:
            best, best_y, best_res = kept
        invariant = beta <= breakdown and k + 1 < t
        if not invariant and res <= tol * max(abs(theta), 1e-300):
            # the current pair converged; the pair returned (maybe a finished block's) must too
            return best, best_y, k + 1, best_res <= tol * max(abs(best), 1e-300)
        if k + 1 == t:
            # the whole space spanned: Ritz value exact up to rounding, but the residual test
            # above failed, so report non-convergence
            return best, best_y, k + 1, best_res <= tol * max(abs(best), 1e-300)
        if invariant:
            kept = (best, best_y, best_res)
            kept_frob2 += sum(a * a for a in alphas) + 2.0 * sum(b * b for b in betas)
            rest = (max(scale * scale - kept_frob2, 0.0)) ** 0.5
            if rest <= best:  # every eigenvalue outside the spanned space is ≤ rest ≤ best
                return best, best_y, k + 1, best_res <= tol * max(abs(best), 1e-300)
            q, rng = _orthogonal_restart(Q[: k + 1], rng)
            first, alphas, betas = k + 1, [], []
            continue
        betas.append(beta)
        q = w / beta
    if kept is not None and kept[0] > theta:
        return kept[0], kept[1], m, False
    return theta, y, m, False


def _default_names(model: nn.Module) -> tuple[str, ...]:
    f = getattr(model, "default_param_names", None)
    if callable(f):
        return tuple(f())
    return tuple(n for n, _ in model.named_parameters())


def _model_context(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    for attr in ("context", "max_position_embeddings", "n_positions"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


class SigmaMonitor:
    """Streaming σ_t = λ_max(F_t) / λ_base of a model along a token stream.

    Parameters
    ----------
    model : nn.Module
        Causal LM mapping int64 ``(1, T)`` to logits ``(1, T, V)`` (or ``.logits``), or a
        classifier mapping ``(1, ...)`` inputs to logits ``(1, K)``. Not modified; its
        weights are snapshotted (cast to ``dtype``) at construction.
    param_names : sequence of str or None
        θ, the parameter subset of the scores; None → ``model.default_param_names()`` if
        the model has it, else every parameter.
    lambda_base : float
        Positive finite baseline (from :func:`calibrate` on the full-precision model).
    window : int or None
        Keep only the last ``window`` scores in F_t (None: the whole prefix).
    dtype : torch.float64 (default) or torch.float32
    device : str, torch.device or None
        Where the scores and Gram matrix live; None → the model's device.
    tol : float
        Relative Ritz-residual tolerance of the warm-started Lanczos.
    max_iter : int
        Lanczos steps per token before the dense fallback.
    max_context : int or None
        Longest prefix fed to an LM (older tokens are cut off); default: the model's
        ``config.context`` / ``max_position_embeddings`` if it has one, else unlimited.
    training : {"refuse", "eval"}
        A model left in training mode (dropout, batch-norm, custom code reading
        ``self.training``) is refused with an :class:`~fimtheory.errors.InputError` by default;
        "eval" switches it to eval mode instead (``model.eval()``, with a warning; then
        :attr:`switched_to_eval` is True). Checked again at every push.

    Notes
    -----
    Input errors (a malformed token or score, a model in training mode, a model error while
    computing a token's score) leave the stream as it was before the failing token: tokens
    pushed earlier in the same call stay pushed. An exception raised after the score store has
    started to change (inside :meth:`push_score`'s update, e.g. an out-of-memory error or a
    KeyboardInterrupt) marks the stream inconsistent: every later :meth:`push` /
    :meth:`push_score` raises :class:`StreamStateError` until :meth:`reset`.

    Attributes
    ----------
    sigmas, lambdas : list of float
        σ_s and λ_max(F_s) after every score pushed so far.
    iterations : list of int
        Lanczos steps used per score (the warm start keeps these small).
    fallbacks : int
        Number of dense fallbacks.
    switched_to_eval : bool
        Whether the constructor put the model in eval mode (``training="eval"``).
    """

    def __init__(
        self,
        model: nn.Module,
        param_names: Sequence[str] | None,
        lambda_base: float,
        *,
        window: int | None = None,
        dtype: torch.dtype = torch.float64,
        device=None,
        tol: float = 1e-10,
        max_iter: int = 60,
        max_context: int | None = None,
        training: str = "refuse",
    ):
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if max_context is not None and (
            isinstance(max_context, bool) or not isinstance(max_context, int) or max_context < 1
        ):
            raise InputError(f"max_context must be a positive integer or None, got {max_context!r}")
        lb = float(lambda_base)
        if not math.isfinite(lb) or lb <= 0:
            raise InputError(f"lambda_base must be positive and finite, got {lambda_base!r}")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise InputError(f"window must be a positive integer or None, got {window!r}")
        if dtype not in (torch.float64, torch.float32):
            raise InputError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        if not tol > 0:
            raise InputError(f"tol must be positive, got {tol!r}")
        names = _default_names(model) if param_names is None else tuple(param_names)
        self.switched_to_eval = require_eval_mode(model, training=training, what="SigmaMonitor")
        self.model = model
        self.lambda_base = lb
        self.window = window
        self.dtype = dtype
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self.max_context = max_context if max_context is not None else _model_context(model)
        names, sub, rest, buffers = _split_params(model, names, dtype)
        dev = resolve_device(device) if device is not None else next(iter(sub.values())).device
        self.device = dev
        self.param_names = names
        self._sub = {k: v.to(dev) for k, v in sub.items()}
        self._rest = {k: v.to(dev) for k, v in rest.items()}
        self._buffers = {k: v.to(dev) for k, v in buffers.items()}
        self.P = sum(v.numel() for v in self._sub.values())
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget the stream (tokens, scores, Gram matrix, traces)."""
        self._tokens: list[int] = []
        # Scores and the unnormalised Gram matrix live in preallocated buffers whose capacity
        # doubles when full (amortised O(P) per push instead of re-copying the store with
        # torch.cat every time); the active rows are [head, head + count).
        cap = 16 if self.window is None else min(16, self.window + 1)
        self._Gbuf = torch.zeros(cap, self.P, dtype=self.dtype, device=self.device)
        self._Kbuf = torch.zeros(cap, cap, dtype=self.dtype, device=self.device)
        self._head = 0
        self._count = 0
        self._u = torch.zeros(0, dtype=self.dtype, device=self.device)
        self._lam_unnorm = 0.0
        self.sigmas: list[float] = []
        self.lambdas: list[float] = []
        self.iterations: list[int] = []
        self.fallbacks = 0
        self._rng = torch.Generator().manual_seed(0)  # the warm start's random component
        self._broken: str | None = None  # the exception type that left the stream inconsistent

    def _require_consistent(self) -> None:
        if self._broken is not None:
            raise StreamStateError(_broken_stream_message(self._broken))

    @property
    def sigma(self) -> float:
        """Latest σ_t (NaN before the first score)."""
        return self.sigmas[-1] if self.sigmas else float("nan")

    @property
    def n_scores(self) -> int:
        """Number of scores currently in F_t (≤ window)."""
        return self._count

    @property
    def _G(self) -> torch.Tensor:
        """The active scores (count × P), a view into the buffer."""
        return self._Gbuf[self._head : self._head + self._count]

    @property
    def _K(self) -> torch.Tensor:
        """The active unnormalised Gram matrix (count × count), a view into the buffer."""
        h, c = self._head, self._count
        return self._Kbuf[h : h + c, h : h + c]

    def _make_room(self) -> None:
        """Ensure one free row after the active block. When the buffer is full: if rows were
        dropped at the front (sliding window) and the c active rows fill at most half of it
        (c ≤ capacity − c), they are moved to the front (compaction); otherwise the capacity
        doubles. A compaction of c rows thus leaves at least c rows free (amortised one row
        copy per push at most), and the buffer grows only when a compaction could not."""
        h, c, cap = self._head, self._count, self._Gbuf.shape[0]
        if h + c < cap:
            return
        if h > 0 and c + 1 <= cap // 2 + 1 and c < cap:
            self._Gbuf[:c] = self._Gbuf[h : h + c].clone()
            self._Kbuf[:c, :c] = self._Kbuf[h : h + c, h : h + c].clone()
            self._head = 0
            return
        new_cap = 2 * cap
        Gb = torch.zeros(new_cap, self.P, dtype=self.dtype, device=self.device)
        Kb = torch.zeros(new_cap, new_cap, dtype=self.dtype, device=self.device)
        Gb[:c] = self._Gbuf[h : h + c]
        Kb[:c, :c] = self._Kbuf[h : h + c, h : h + c]
        self._Gbuf, self._Kbuf, self._head = Gb, Kb, 0

    # ------------------------------------------------------------------ scores

    def _check_mode(self) -> None:
        require_eval_mode(self.model, training="refuse", what="SigmaMonitor.push")

    def _token_score(self) -> torch.Tensor:
        self._check_mode()
        toks = self._tokens
        if self.max_context is not None:
            toks = toks[-(self.max_context + 1) :]
        x = torch.tensor(toks[:-1], dtype=torch.int64, device=self.device)
        y = int(toks[-1])

        def logp(p):
            out = _logits(functional_call(self.model, (p, self._rest, self._buffers), (x.unsqueeze(0),)))
            return torch.log_softmax(out[0, -1], dim=-1)[y]

        g = grad(logp)(self._sub)
        return torch.cat([g[k].reshape(-1) for k in self.param_names])

    def _sample_score(self, x: torch.Tensor, y) -> torch.Tensor:
        self._check_mode()
        # list: float64; detached: x is data, no autograd graph through it is kept in the buffers
        x = torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x)).to(self.device).detach()
        if x.is_floating_point():
            x = x.to(self.dtype)
        y = int(y)

        def logp(p):
            out = _logits(functional_call(self.model, (p, self._rest, self._buffers), (x.unsqueeze(0),)))
            return torch.log_softmax(out.reshape(-1), dim=-1)[y]

        g = grad(logp)(self._sub)
        return torch.cat([g[k].reshape(-1) for k in self.param_names])

    # ------------------------------------------------------------------ streaming

    def push(self, context_or_token) -> float:
        """Append one token (int / 0-d tensor), several tokens (1-D tensor or list), or one
        classifier sample ``(x, y)``; return σ_t after the last one.

        An LM's first token has no score (nothing predicts it): σ stays NaN until the
        second token. Raises :class:`StreamStateError` on an inconsistent stream (see Notes).
        """
        self._require_consistent()
        if isinstance(context_or_token, tuple):
            if len(context_or_token) != 2:
                raise InputError("a classifier sample must be a pair (x, y)")
            return self.push_score(self._sample_score(*context_or_token))
        tok = torch.as_tensor(context_or_token, device="cpu")  # ids are read on the CPU (tolist)
        if tok.is_floating_point() or tok.is_complex() or tok.ndim > 1:
            raise InputError(
                "push expects integer token(s): an int, a 0-d or 1-D integer tensor, or a classifier pair (x, y)"
            )
        sigma = self.sigma
        for t in tok.reshape(-1).tolist():
            self._tokens.append(int(t))
            if len(self._tokens) >= 2:
                try:
                    g = self._token_score()
                except BaseException:
                    self._tokens.pop()  # nothing else has changed: the stream is as before this token
                    raise
                sigma = self.push_score(g)
        return sigma

    def push_score(self, g: torch.Tensor) -> float:
        """Append a precomputed score vector g (length P) and return σ_t.

        A malformed score raises :class:`~fimtheory.errors.InputError` and changes nothing; an
        exception from the update itself marks the stream inconsistent (later pushes raise
        :class:`StreamStateError` until :meth:`reset`)."""
        self._require_consistent()
        # dtype and device given to as_tensor: a list of Python floats would otherwise become
        # float32 first, and a tensor would first be copied to the default device
        g = torch.as_tensor(g, dtype=self.dtype, device=self.device).reshape(-1).detach()
        if g.shape[0] != self.P:
            raise InputError(f"score has length {g.shape[0]}, expected P = {self.P}")
        if not bool(torch.isfinite(g).all()):
            raise InputError("score has NaN or inf entries")
        try:
            u = self._u
            if self.window is not None and self._count == self.window:
                self._head += 1
                self._count -= 1
                u = u[1:]
            self._make_room()
            G = self._G
            k = G @ g
            gg = torch.dot(g, g)
            h, c = self._head, self._count
            self._Gbuf[h + c] = g
            self._Kbuf[h + c, h : h + c] = k
            self._Kbuf[h : h + c, h + c] = k
            self._Kbuf[h + c, h + c] = gg
            self._count = c + 1
            t = self._count
            Kn = self._K
            # warm start: previous top vector, new coordinate from one power step
            lam_prev = self._lam_unnorm
            if u.numel() and lam_prev > 0:
                new = torch.dot(k, u) / lam_prev
                start = torch.cat([u, new.reshape(1)])
            else:
                start = torch.ones(t, dtype=self.dtype, device=self.device)
            # A seeded random component keeps every eigen-direction in the Krylov space: a warm start
            # orthogonal to the new top eigenvector (a score orthogonal to the previous ones) would
            # otherwise converge to a lower eigenvalue with a zero residual (as fimtheory.monitor does).
            noise = torch.randn(t, generator=self._rng, dtype=torch.float64, device="cpu") / math.sqrt(t)
            start = start / torch.linalg.vector_norm(start) + 1e-2 * noise.to(device=self.device, dtype=self.dtype)
            val, vec, iters, ok = top_eig_warm(Kn, start, tol=self.tol, max_iter=self.max_iter)
            # λ_max ≥ the largest diagonal entry: a Ritz value below it is not the top eigenvalue
            if not ok or val < float(Kn.diagonal().max()) * (1 - 1e-12):
                self.fallbacks += 1
                w, V = torch.linalg.eigh(Kn)
                val, vec = float(w[-1]), V[:, -1]
            self._u = vec
            self._lam_unnorm = val
            lam = val / t
            self.lambdas.append(lam)
            self.sigmas.append(lam / self.lambda_base)
            self.iterations.append(iters)
            return self.sigmas[-1]
        except BaseException as exc:
            self._broken = type(exc).__name__
            raise


def sigma_trace(G: torch.Tensor, lambda_base: float, *, window: int | None = None, tol: float = 1e-10) -> np.ndarray:
    """σ_1..σ_n of a stream whose scores are the rows of G (streamed, warm-started).

    A model-free :class:`SigmaMonitor`: convenient when G comes from
    :func:`torch_checks.scores.per_token_scores` (one forward pass for the whole trajectory).
    """
    mon = _ScoreStream(G.shape[1], lambda_base, window=window, dtype=G.dtype, device=G.device, tol=tol)
    for row in G:
        mon.push_score(row)
    return np.asarray(mon.sigmas)


class _ScoreStream(SigmaMonitor):
    """SigmaMonitor without a model (scores are pushed with :meth:`push_score`)."""

    def __init__(self, P, lambda_base, *, window=None, dtype=torch.float64, device="cpu", tol=1e-10, max_iter=60):
        self.lambda_base = float(lambda_base)
        if not math.isfinite(self.lambda_base) or self.lambda_base <= 0:
            raise InputError(f"lambda_base must be positive and finite, got {lambda_base!r}")
        self.window, self.dtype, self.tol, self.max_iter = window, dtype, float(tol), int(max_iter)
        self.device = torch.device(device)
        self.P = int(P)
        self.reset()

    def push(self, context_or_token) -> float:  # pragma: no cover - no model to score with
        raise InputError("this stream has no model; use push_score")


def context_lambda_max(
    model: nn.Module,
    context,
    param_names: Sequence[str] | None = None,
    *,
    window: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> float:
    """Λ = λ_max of the FIM of one calibration context, from scratch (dense Gram eigh).

    ``context``: 1-D int64 tokens of an LM (T+1 tokens → T scores), or a classifier pair
    ``(X, y)`` (n samples → n scores). With ``window``, only the last ``window`` scores.
    A model in training mode is refused (:func:`require_eval_mode`).
    """
    require_eval_mode(model, what="context_lambda_max")
    names = _default_names(model) if param_names is None else tuple(param_names)
    if isinstance(context, tuple):
        X, y = context
        G = per_sample_scores(model, names, X, y, dtype=dtype).G
    else:
        tok = torch.as_tensor(context)
        if tok.ndim != 1 or len(tok) < 2:
            raise InputError("an LM context must be a 1-D tensor of at least 2 tokens")
        G = per_token_scores(model, names, tok[:-1], tok[1:], dtype=dtype).G
    if window is not None:
        G = G[-window:]
    return _lambda_max(G, method="gram").value


def calibrate(
    model: nn.Module,
    contexts,
    *,
    quantile: float = 0.95,
    param_names: Sequence[str] | None = None,
    statistic: str = "mean",
    window: int | None = None,
    dtype: torch.dtype = torch.float64,
    training: str = "refuse",
) -> tuple[float, float, np.ndarray]:
    """λ_base and τ_q of the monitor, from calibration contexts on the full-precision model.

    Parameters
    ----------
    model : nn.Module
        The **full-precision** model.
    contexts : int64 tensor ``(m, T+1)``, a sequence of 1-D token tensors, or a sequence of
        classifier pairs ``(X, y)``.
    quantile : float in [0, 1]
        q of τ_q.
    statistic : {"mean", "median"}
        λ_base = this statistic of the per-context Λ's.
    window : int or None
        As in :class:`SigmaMonitor` (Λ of the last ``window`` scores of each context).
    training : {"refuse", "eval"}
        As in :class:`SigmaMonitor`: a model in training mode is refused, or switched to eval.

    Returns
    -------
    (lambda_base, tau_q, sigmas)
        ``sigmas`` = Λ_i / λ_base (float64 numpy array, one per context); τ_q = the
        q-quantile (linear interpolation) of ``sigmas``.

    Raises
    ------
    fimtheory.errors.InputError
        Empty contexts, q outside [0, 1], unknown statistic, λ_base = 0, or a model in
        training mode.
    """
    require_eval_mode(model, training=training, what="calibrate")
    if not 0.0 <= float(quantile) <= 1.0:
        raise InputError(f"quantile must be in [0, 1], got {quantile!r}")
    if statistic not in ("mean", "median"):
        raise InputError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    items = list(contexts) if not isinstance(contexts, torch.Tensor) else list(contexts.unbind(0))
    if not items:
        raise InputError("no calibration contexts")
    lams = np.array([context_lambda_max(model, c, param_names, window=window, dtype=dtype) for c in items])
    base = float(np.mean(lams) if statistic == "mean" else np.median(lams))
    if not base > 0:
        raise InputError(f"λ_base = {base!r} is not positive (all scores zero?)")
    sigmas = lams / base
    return base, calibration_threshold(sigmas, float(quantile)), sigmas
