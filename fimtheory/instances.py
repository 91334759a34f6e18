"""Instance types the claims are evaluated on. Frozen dataclasses of float64 arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from fimtheory.errors import InputError
from fimtheory.validation import as_matrix, as_symmetric, as_vector


@dataclass(frozen=True)
class MatrixPerturbation:
    """A symmetric PSD A (an FIM, for the T4.3 claims) and a symmetric perturbation E.

    ``v`` optionally names a unit top eigenvector of A to use in R (needed when λ1 is
    repeated: the claim is for *every* top eigenvector). ``delta`` optionally records the
    parameter perturbation that produced E (quantization instances).
    """

    A: np.ndarray
    E: np.ndarray
    v: np.ndarray | None = None
    origin: str = ""
    delta: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        a = as_symmetric(self.A, "A")
        e = as_symmetric(self.E, "E")
        if a.shape != e.shape:
            raise InputError(f"A and E must have the same shape, got {a.shape} and {e.shape}")
        object.__setattr__(self, "A", a)
        object.__setattr__(self, "E", e)
        if self.v is not None:
            v = as_vector(self.v, "v")
            if v.shape[0] != a.shape[0]:
                raise InputError(f"v has length {v.shape[0]}, expected {a.shape[0]}")
            object.__setattr__(self, "v", v)

    @property
    def n(self) -> int:
        return self.A.shape[0]


@dataclass(frozen=True)
class NoiseEnsemble:
    """A finite, equally weighted distribution of perturbations {E_k} of an FIM F, scaled by t.

    E λ_max(F + tE) is then an exact finite average; the zero-mean hypothesis of T4.3(b, c)
    is checked exactly (in rational arithmetic) by :meth:`exact_mean_is_zero`.
    """

    F: np.ndarray
    perturbations: tuple
    t: float = 1.0
    origin: str = ""

    def __post_init__(self):
        f = as_symmetric(self.F, "F")
        es = tuple(as_symmetric(e, f"E[{k}]") for k, e in enumerate(self.perturbations))
        if not es:
            raise InputError("a NoiseEnsemble needs at least one perturbation")
        for k, e in enumerate(es):
            if e.shape != f.shape:
                raise InputError(f"E[{k}] has shape {e.shape}, expected {f.shape}")
        t = float(self.t)
        if not np.isfinite(t):
            raise InputError(f"t must be finite, got {self.t!r}")
        object.__setattr__(self, "F", f)
        object.__setattr__(self, "perturbations", es)
        object.__setattr__(self, "t", t)

    def scaled(self) -> list[np.ndarray]:
        return [self.t * e for e in self.perturbations]

    def exact_mean_is_zero(self) -> bool:
        """Whether Σ_k t·E_k (as the float matrices actually used) is exactly zero."""
        es = self.scaled()
        n = self.F.shape[0]
        for i in range(n):
            for j in range(i, n):
                if sum((Fraction(float(e[i, j])) for e in es), Fraction(0)) != 0:
                    return False
        return True


@dataclass(frozen=True)
class ScoreInstance:
    """Per-sample scores G (n × P) of some model; F = GᵀG/n."""

    G: np.ndarray
    power_steps: int = 0
    lanczos_steps: int = 3
    q: int = 4
    origin: str = ""

    def __post_init__(self):
        object.__setattr__(self, "G", as_matrix(self.G, "G"))


@dataclass(frozen=True)
class PartitionInstance:
    """Thresholds (any float64 list: the claim's hypotheses say which are admissible) and
    values of the statistic to place."""

    thresholds: tuple
    sigmas: tuple
    second_thresholds: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "thresholds", tuple(float(x) for x in self.thresholds))
        object.__setattr__(self, "sigmas", tuple(float(x) for x in self.sigmas))
        object.__setattr__(self, "second_thresholds", tuple(float(x) for x in self.second_thresholds))


@dataclass(frozen=True)
class DepartureInstance:
    """Input departure for Proposition 3.2 on a numpy model.

    ``inputs[i]`` is a batch X_i (m_i × d) with labels ``labels[i]``; Λ(X) = λ_max of the
    empirical FIM of the model on that batch. ``directions[i]`` (m_i × d, unit Frobenius
    norm) points away from the reference set; the path is X_i + t U_i, t on a uniform grid
    of ``steps`` + 1 points in [0, T]: T finite and > 0, ``steps`` an integer ≥ 1.
    ``quantile`` is the level q ∈ [0, 1] of the linear-interpolation quantile over the
    batches.
    """

    model: str
    theta: np.ndarray
    inputs: tuple
    labels: tuple
    directions: tuple
    T: float
    steps: int = 16
    quantile: float = 0.9

    def __post_init__(self):
        if self.model not in ("linear", "logistic", "softmax"):
            raise InputError(f"model must be linear, logistic or softmax, got {self.model!r}")
        object.__setattr__(self, "theta", as_vector(self.theta, "theta"))
        xs = tuple(as_matrix(x, f"inputs[{i}]") for i, x in enumerate(self.inputs))
        us = tuple(as_matrix(u, f"directions[{i}]") for i, u in enumerate(self.directions))
        ys = tuple(np.asarray(y) for y in self.labels)
        if not xs or not (len(xs) == len(us) == len(ys)):
            raise InputError("inputs, labels and directions must be non-empty and of equal length")
        for i, (x, u, y) in enumerate(zip(xs, us, ys)):
            if u.shape != x.shape:
                raise InputError(f"directions[{i}] has shape {u.shape}, expected {x.shape}")
            if y.shape != (x.shape[0],):
                raise InputError(f"labels[{i}] has shape {y.shape}, expected ({x.shape[0]},)")
        object.__setattr__(self, "inputs", xs)
        object.__setattr__(self, "directions", us)
        object.__setattr__(self, "labels", ys)
        T, q = _finite_float(self.T, "T"), _finite_float(self.quantile, "quantile")
        if not T > 0:
            raise InputError(f"T must be > 0, got {T!r}")
        if not 0.0 <= q <= 1.0:
            raise InputError(f"quantile must lie in [0, 1], got {q!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise InputError(f"steps must be an integer >= 1, got {self.steps!r}")
        object.__setattr__(self, "T", T)
        object.__setattr__(self, "quantile", q)
        object.__setattr__(self, "steps", int(self.steps))


@dataclass(frozen=True)
class ParameterEnsemble:
    """A small model at θ and a finite, equally weighted ensemble of parameter perturbations δ_k.

    ``labels`` says which FIM is meant: ``'empirical'`` — F(θ') = (1/n)Σ g(θ'; x_i, y_i)g(…)ᵀ
    with the observed labels y; ``'model'`` — F_π(θ') = (1/n)Σ_i Σ_c π_i(c) g(θ'; x_i, c)g(…)ᵀ
    with π_i = p(·| x_i; θ) the model's predictive at the *unperturbed* θ (docs/theory.md §3(d)).
    """

    model: str
    X: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    deltas: tuple
    labels: str = "empirical"
    origin: str = ""

    def __post_init__(self):
        if self.model not in ("logistic", "softmax"):
            raise InputError(f"model must be logistic or softmax, got {self.model!r}")
        if self.labels not in ("empirical", "model"):
            raise InputError(f"labels must be 'empirical' or 'model', got {self.labels!r}")
        object.__setattr__(self, "X", as_matrix(self.X, "X"))
        object.__setattr__(self, "theta", as_vector(self.theta, "theta"))
        object.__setattr__(self, "y", np.asarray(self.y))
        ds = tuple(as_vector(d, f"deltas[{k}]") for k, d in enumerate(self.deltas))
        if not ds or any(d.shape != self.theta.shape for d in ds):
            raise InputError(f"deltas must be non-empty vectors of shape {self.theta.shape}")
        object.__setattr__(self, "deltas", ds)

    def exact_mean_is_zero(self) -> bool:
        """Whether Σ_k δ_k is exactly zero (rational arithmetic on the floats)."""
        return all(sum((Fraction(float(d[j])) for d in self.deltas), Fraction(0)) == 0 for j in range(self.theta.size))


def _finite_float(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a real number, got {x!r}")
    v = float(x)
    if not np.isfinite(v):
        raise InputError(f"{name} must be finite, got {v!r}")
    return v


def _nonnegative_vector(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise InputError(f"{name} must be a non-empty 1-D vector, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise InputError(f"{name} must have finite non-negative entries")
    if not np.any(a > 0):
        raise InputError(f"{name} has no positive entry")
    return a


@dataclass(frozen=True)
class ProbabilityInstance:
    """One decoding step: a next-token distribution ``p`` (index = token; the exact float
    vector, any positive scale for the claims that renormalise it), the top-``k`` cut-off of
    the paper's Eq. 1 and the emitted token ``y`` (for the empirical Fisher)."""

    p: np.ndarray
    k: int = 20
    y: int = 0
    origin: str = ""

    def __post_init__(self):
        object.__setattr__(self, "p", _nonnegative_vector(self.p, "p"))
        for name in ("k", "y"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise InputError(f"{name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.k < 1:
            raise InputError(f"k must be >= 1, got {self.k}")
        if not 0 <= self.y < self.p.size:
            raise InputError(f"y must be a token index in [0, {self.p.size}), got {self.y}")


@dataclass(frozen=True)
class KLPairInstance:
    """Two consecutive steps' probability vectors ``p`` and ``q`` (index = token when their
    lengths agree; any positive scale: the statistic renormalises) and two padding values
    ``eps`` (the companion's 1e-12) and ``eps_alt`` for the companion's sorted-padded KL."""

    p: np.ndarray
    q: np.ndarray
    eps: float = 1e-12
    eps_alt: float = 1e-6
    origin: str = ""

    def __post_init__(self):
        object.__setattr__(self, "p", _nonnegative_vector(self.p, "p"))
        object.__setattr__(self, "q", _nonnegative_vector(self.q, "q"))
        for name in ("eps", "eps_alt"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, float | int | np.floating):
                raise InputError(f"{name} must be a float, got {v!r}")
            v = float(v)
            if not (np.isfinite(v) and v > 0):
                raise InputError(f"{name} must be finite and > 0, got {v!r}")
            object.__setattr__(self, name, v)
