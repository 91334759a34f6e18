"""The runtime monitor σ = λ_max(F_t)/λ_base and the threshold partition (docs/theory.md §6–7).

:class:`ThresholdPartition` maps every float64 value of a statistic — NaN, ±inf, −0.0 and
subnormals included — to exactly one cell: cells 0..K−1 are [τ_{k−1}, τ_k) with τ_0 = −∞,
the top cell [τ_{K−1}, +∞] is closed (a literal top cell "σ < τ_K = +∞" would leave
σ = +∞ in no cell), and cell K is the explicit NaN cell.

:class:`StreamingLambdaMax` is a numpy reference of the streaming σ_t: the Gram matrix grows by
one row and column per token (O(tP)), and λ_max is warm-started from the previous top vector.
"""

from __future__ import annotations

import numpy as np

from fimtheory.errors import InputError
from fimtheory.validation import as_vector, check_positive_int


class ThresholdPartition:
    """Partition of the float64 line by strictly increasing finite thresholds, plus a NaN cell.

    Parameters
    ----------
    thresholds : 1-D array_like of K−1 ≥ 0 finite float64 values, strictly increasing.

    ``cell(sigma)`` returns an int in 0..K−1 for ordered values and ``nan_cell`` (= K) for NaN;
    vectorised over arrays. ``n_cells`` = K + 1 counts the NaN cell.
    """

    def __init__(self, thresholds):
        t = np.asarray(thresholds)
        if t.dtype.kind not in "fiu":
            raise InputError(f"thresholds must be real numbers, got dtype {t.dtype}")
        if t.ndim != 1:
            raise InputError(f"thresholds must be 1-D, got shape {t.shape}")
        t = t.astype(np.float64)
        if not np.all(np.isfinite(t)):
            raise InputError(f"thresholds must be finite (±inf are implicit), got {t.tolist()}")
        if t.size > 1 and not np.all(np.diff(t) > 0):
            i = int(np.argmax(~(np.diff(t) > 0)))
            raise InputError(f"thresholds must be strictly increasing: τ[{i}] = {t[i]!r} >= τ[{i + 1}] = {t[i + 1]!r}")
        # −0.0 and 0.0 compare equal; store +0.0 so the cell of ±0 never depends on the sign bit.
        self.thresholds = t + 0.0
        self.nan_cell = int(t.size + 1)
        self.n_cells = int(t.size + 2)

    def cell(self, sigma):
        """Cell index of ``sigma`` (scalar → int, array → int64 array of the same shape)."""
        raw = np.asarray(sigma)
        if raw.dtype.kind not in "fiu":
            raise InputError(f"sigma must be a real number or array of them, got {sigma!r}")
        s = raw.astype(np.float64)
        idx = np.searchsorted(self.thresholds, s, side="right").astype(np.int64)
        idx = np.where(np.isnan(s), self.nan_cell, idx)
        return int(idx) if idx.ndim == 0 else idx

    def bounds(self, k: int) -> tuple[float, float, bool]:
        """(lower, upper, upper_closed) of ordered cell k; the NaN cell has no bounds."""
        if not 0 <= k < self.nan_cell:
            raise InputError(f"cell index must be in 0..{self.nan_cell - 1}, got {k}")
        lo = -np.inf if k == 0 else float(self.thresholds[k - 1])
        top = k == self.nan_cell - 1
        hi = np.inf if top else float(self.thresholds[k])
        return lo, hi, top

    def contains(self, k: int, sigma: float) -> bool:
        """Membership by the cell's defining inequalities (independent of :meth:`cell`)."""
        s = float(sigma)
        if k == self.nan_cell:
            return bool(np.isnan(s))
        lo, hi, closed = self.bounds(k)
        return bool(lo <= s <= hi) if closed else bool(lo <= s < hi)

    def __repr__(self) -> str:
        return f"ThresholdPartition({self.thresholds.tolist()})"


class ProductPartition:
    """Product of partitions over several statistics; the cell is the tuple of cells."""

    def __init__(self, partitions):
        parts = list(partitions)
        if not parts or not all(isinstance(p, ThresholdPartition) for p in parts):
            raise InputError("ProductPartition needs one or more ThresholdPartition objects")
        self.partitions = parts

    def cell(self, sigmas) -> tuple:
        raw = np.asarray(sigmas)
        if raw.dtype.kind not in "fiu":
            raise InputError(f"sigmas must be real numbers, got {sigmas!r}")
        s = raw.astype(np.float64)
        if s.shape != (len(self.partitions),):
            raise InputError(f"expected {len(self.partitions)} statistics, got shape {s.shape}")
        return tuple(p.cell(float(x)) for p, x in zip(self.partitions, s))


def calibration_threshold(sigmas, q: float) -> float:
    """τ_q: the q-quantile (linear interpolation) of calibration values of σ; NaN rejected."""
    s = as_vector(sigmas, "sigmas")
    if isinstance(q, bool) or not isinstance(q, (int, float, np.integer, np.floating)) or not 0.0 <= q <= 1.0:
        raise InputError(f"q must be a number in [0, 1], got {q!r}")
    return float(np.quantile(s, q))


class StreamingLambdaMax:
    """λ_max of the empirical FIM of a growing (or windowed) stream of score vectors.

    Each :meth:`push` appends a score g_t (length P) and returns λ_max(F_t), F_t the FIM of
    the last ``window`` scores (all if None). The Gram matrix of stored scores is updated by
    one row/column (O(tP)); λ_max comes from a Lanczos iteration warm-started at the previous
    top Gram eigenvector, checked to a relative residual ``tol``, with a dense fallback (taken
    on every push when ``tol`` ≤ 0). Each value is within ``tol``·λ (plus rounding) of λ_max(F_t),
    tested against a 50-digit reference after every push.

    The probe, per push t (K = the Gram matrix of the stored scores divided by t, scaled by a
    power of two c): Lanczos runs min(30, t) steps from the start (previous top Gram eigenvector,
    extended by 0 for the new score) + 10⁻²·z/√t, z the t standard normals the stream's
    generator (seeded by ``seed``) draws at this push. Its pair (θ, v) is returned only if
    ‖Kv − θv‖ ≤ ``tol``·max(|θ|, tiny) (so an exact pair is accepted for every ``tol`` > 0),
    θ ≥ (1 − 10⁻¹²)·max diag(K) and, without a window, c·θ ≥ (1 − 10⁻¹²)·(t − 1)/t·λ_{t−1}
    (interlacing of the unnormalised Gram matrix) — both hold for λ_max, and they catch a run
    that converged to a lower eigenvalue. Otherwise the dense eigensolver gives the value and
    ``dense_fallbacks`` is incremented.
    """

    def __init__(self, dim: int, *, window: int | None = None, tol: float = 1e-10, seed: int = 0):
        self.dim = check_positive_int(dim, "dim")
        self.window = None if window is None else check_positive_int(window, "window")
        # tol ≤ 0 is allowed and forces the dense eigensolver on every push.
        numeric = not isinstance(tol, bool) and isinstance(tol, (int, float, np.integer, np.floating))
        if not numeric or not (np.isfinite(tol) and tol < 1):
            raise InputError(f"tol must be a finite number < 1 (≤ 0: always dense), got {tol!r}")
        self.tol = float(tol)
        self._rng = np.random.default_rng(seed)
        self.dense_fallbacks = 0
        self._scores: list[np.ndarray] = []
        self._gram_unnormalised = np.zeros((0, 0))
        self._vector = np.zeros(0)
        self.value = float("nan")

    def push(self, g) -> float:
        g = as_vector(g, "g")
        if g.shape[0] != self.dim:
            raise InputError(f"score has length {g.shape[0]}, expected {self.dim}")
        if self.window is not None and len(self._scores) == self.window:
            self._scores.pop(0)
            self._gram_unnormalised = self._gram_unnormalised[1:, 1:]
            self._vector = self._vector[1:]
        with np.errstate(over="ignore", invalid="ignore"):
            row = np.array([s @ g for s in self._scores] + [g @ g])
        if not np.all(np.isfinite(row)):
            raise InputError(
                "score inner products overflow float64 (entries up to "
                f"{float(np.max(np.abs(g))):.3g}); rescale the scores before streaming them"
            )
        t = len(self._scores) + 1
        Gm = np.zeros((t, t))
        Gm[:-1, :-1] = self._gram_unnormalised
        Gm[-1, :] = row
        Gm[:, -1] = row
        self._gram_unnormalised = Gm
        self._scores.append(g)
        previous = self.value
        start = np.append(self._vector, 0.0)
        # A seeded random component keeps every eigen-direction in the Krylov space: a warm
        # start orthogonal to the new top eigenvector (e.g. after pushing g then −g) would
        # otherwise converge to λ2 with a small residual.
        start = start + 1e-2 * self._rng.standard_normal(t) / np.sqrt(t)
        # Interlacing: appending a score never lowers λ_max of the unnormalised Gram matrix.
        floor = previous * (t - 1) / t if (self.window is None and np.isfinite(previous)) else 0.0
        self.value, self._vector = self._top_eig(Gm / t, start, floor)
        return self.value

    def _top_eig(self, K: np.ndarray, start: np.ndarray, floor: float) -> tuple[float, np.ndarray]:
        from fimtheory.approx import lanczos_ritz, power_of_two_scale

        c = power_of_two_scale(K)
        Ks = K / c
        val, vec = lanczos_ritz(Ks, min(30, K.shape[0]), start)
        resid = np.linalg.norm(Ks @ vec - val * vec)
        diag_floor = float(np.max(np.diag(Ks)))
        if (
            self.tol <= 0  # documented switch: dense on every push, also when the residual is exactly 0
            or resid > self.tol * max(abs(val), np.finfo(float).tiny)
            or val < diag_floor * (1 - 1e-12)
            or val * c < floor * (1 - 1e-12)
        ):
            self.dense_fallbacks += 1
            w, V = np.linalg.eigh(Ks)
            return float(w[-1]) * c, V[:, -1]
        return float(val) * c, vec
