"""Public Hypothesis strategies for the spectral theory of the empirical FIM.

Every strategy builds its matrices from drawn *parameters* — a size, a spectrum drawn as a
short list of floats, an integer seed that fixes an orthogonal basis through
``numpy.random.default_rng(seed)`` and a sign-fixed QR — so that Hypothesis shrinks the
parameters (smaller ``n``, seed 0, round spectra) and the examples it reports are small.

All arrays are float64. Options are keyword-only, and a bad option raises
:class:`hypothesis.errors.InvalidArgument` when the strategy is *built*, naming the
argument and the value, as Hypothesis's own strategies do.

Sizes (``n``, ``p``, ``d``, ``k``, ``bits``, ``rank``) accept an ``int`` or an inclusive
``(lo, hi)`` tuple; scales accept a positive float (fixed) or a ``(lo, hi)`` tuple, drawn
log-uniformly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

__all__ = [
    "MatrixPerturbation",
    "QuantizationPerturbation",
    "SPECTRUM_KINDS",
    "NOISE_KINDS",
    "QUANT_MODELS",
    "spectra",
    "orthogonal_matrices",
    "psd_matrices",
    "score_matrices",
    "symmetric_noise",
    "psd_with_noise",
    "quantization_noise_matrices",
    "stochastic_rounding_draws",
    "thresholds",
    "sigma_values",
]

EPS = float(np.finfo(np.float64).eps)
SPECTRUM_KINDS = (
    "any",
    "generic",
    "well_separated",
    "clustered_top",
    "tiny_gap",
    "rank_deficient",
    "ill_conditioned",
)
NOISE_KINDS = ("any", "wigner", "low_rank", "diagonal", "commuting")
QUANT_MODELS = ("any", "linear", "logistic", "softmax")

# Ranges that define the spectrum kinds (relative to λ1).
CLUSTER_SPREAD = (1e-6, 1e-2)
TINY_GAP = (1e-12, 1e-6)
ILL_CONDITION = (1e8, 1e14)
GENERIC_FLOOR = 1e-4  # generic nonzero eigenvalues lie in [1e-4, 1]·(1 − min_gap)·λ1
_SEEDS = st.integers(0, 2**32 - 1)


# --------------------------------------------------------------------------- dataclasses

try:  # the core package may grow its own container; use it when it does
    from fimtheory import MatrixPerturbation  # type: ignore[attr-defined]
except ImportError:

    @dataclass(frozen=True, eq=False)
    class MatrixPerturbation:
        """A symmetric PSD matrix ``A``, a symmetric perturbation ``E`` and ``A``'s eigendata.

        ``eigenvalues`` are descending and ``eigenvectors[:, j]`` belongs to
        ``eigenvalues[j]``: they are the data ``A`` was *built* from (exact), not a
        numerical decomposition of ``A``.
        """

        A: np.ndarray
        E: np.ndarray
        eigenvalues: np.ndarray
        eigenvectors: np.ndarray


@dataclass(frozen=True, eq=False)
class QuantizationPerturbation:
    """A small model at ``theta``, its quantized parameters and the FIM perturbation.

    Attributes
    ----------
    model : str
        ``'linear'`` (unit-variance Gaussian regression), ``'logistic'`` or ``'softmax'``.
    X, y : ndarray
        Data (n×d) and labels (float targets, {0, 1}, or class indices).
    theta, theta_q, delta : ndarray
        Parameters θ, quantized parameters Q(θ) and δ = Q(θ) − θ (flat, length P).
        For ``'softmax'`` θ is the row-major flattening of the (classes × d) weight matrix.
    scheme : str
        The quantizer spec passed to ``fimtheory.quantize.parse_scheme``.
    G, G_q : ndarray
        Per-sample scores at θ and at Q(θ) (n×P).
    F, F_q, E : ndarray
        Empirical FIMs F(θ) = GᵀG/n, F(Q(θ)) and E = F(Q(θ)) − F(θ), all exactly symmetric.
    """

    model: str
    X: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    theta_q: np.ndarray
    delta: np.ndarray
    scheme: str
    G: np.ndarray
    G_q: np.ndarray
    F: np.ndarray
    F_q: np.ndarray
    E: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def A(self) -> np.ndarray:
        """Alias of ``F`` so the instance reads like a :class:`MatrixPerturbation`."""
        return self.F

    def as_matrix_perturbation(self) -> MatrixPerturbation:
        """``MatrixPerturbation(F, E, eigenvalues, eigenvectors)`` with F's eigendata (eigh)."""
        w, V = np.linalg.eigh(self.F)
        return MatrixPerturbation(self.F, self.E, w[::-1].copy(), V[:, ::-1].copy())


# --------------------------------------------------------------------------- argument checks


def _bad(name: str, value: Any, why: str) -> InvalidArgument:
    return InvalidArgument(f"{name}={value!r}: {why}")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _int_range(name: str, value, *, min_value: int = 1, max_value: int | None = None):
    """An int or an inclusive (lo, hi) pair of ints -> (lo, hi), validated."""
    if _is_int(value):
        lo = hi = int(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        lo, hi = int(value[0]), int(value[1])
    else:
        raise _bad(name, value, "expected an int or a (lo, hi) pair of ints")
    if lo > hi:
        raise _bad(name, value, f"lower bound {lo} exceeds upper bound {hi}")
    if lo < min_value:
        raise _bad(name, value, f"must be >= {min_value}")
    if max_value is not None and hi > max_value:
        raise _bad(name, value, f"must be <= {max_value}")
    return lo, hi


def _float_range(name: str, value, *, allow_zero: bool = False):
    """A positive finite float or a (lo, hi) pair -> (lo, hi), validated."""
    if isinstance(value, bool):
        raise _bad(name, value, "expected a float or a (lo, hi) pair of floats")
    if isinstance(value, (int, float, np.integer, np.floating)):
        lo = hi = float(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise _bad(name, value, "expected a float or a (lo, hi) pair of floats") from None
        if any(isinstance(v, bool) for v in value):
            raise _bad(name, value, "expected a float or a (lo, hi) pair of floats")
    else:
        raise _bad(name, value, "expected a float or a (lo, hi) pair of floats")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise _bad(name, value, "bounds must be finite")
    if lo > hi:
        raise _bad(name, value, f"lower bound {lo!r} exceeds upper bound {hi!r}")
    if lo < 0 or (lo == 0 and not allow_zero):
        raise _bad(name, value, "must be > 0" if not allow_zero else "must be >= 0")
    return lo, hi


def _choice(name: str, value, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _bad(name, value, f"expected one of {', '.join(map(repr, allowed))}")
    return value


def _check_min_gap(min_gap) -> float:
    if min_gap is None:
        return 0.0
    if isinstance(min_gap, bool) or not isinstance(min_gap, (int, float, np.integer, np.floating)):
        raise _bad("min_gap", min_gap, "expected None or a float in [0, 1)")
    g = float(min_gap)
    if not (0.0 <= g < 1.0):
        raise _bad("min_gap", min_gap, "the relative gap (λ1−λ2)/λ1 must lie in [0, 1)")
    return g


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, value, "expected a bool")
    return value


# --------------------------------------------------------------------------- draw helpers


def _log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats in [lo, hi] (lo > 0), log-uniform; shrinks toward 1 when 1 is in range."""
    if lo == hi:
        return st.just(float(lo))
    a, b = math.log10(lo), math.log10(hi)
    return st.floats(a, b).map(lambda u: float(min(max(10.0**u, lo), hi)))


def _range_draw(draw, lo: int, hi: int) -> int:
    return lo if lo == hi else draw(st.integers(lo, hi))


def _haar(n: int, seed: int) -> np.ndarray:
    """Haar-distributed orthogonal n×n from a seed: QR of a Gaussian with R's diagonal > 0."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.sign(np.diag(r))
    s[s == 0] = 1.0
    return q * s


def _kinds_for(n: int, r_lo: int, r_hi: int, min_gap: float) -> list[str]:
    """Spectrum kinds realisable for this n, rank range (already clipped to n) and gap."""
    kinds = ["generic", "well_separated"]
    if n >= 2 and r_hi >= 2 and min_gap <= CLUSTER_SPREAD[1]:
        kinds.append("clustered_top")
    if n >= 2 and r_hi >= 2 and min_gap <= TINY_GAP[1]:
        kinds.append("tiny_gap")
    if n >= 2 and r_lo <= n - 1:
        kinds.append("rank_deficient")
    if n >= 2 and r_hi >= 2:
        kinds.append("ill_conditioned")
    return kinds


def _enforce_gap(lam: np.ndarray, min_gap: float) -> np.ndarray:
    """Make λ1 − λ2 ≥ min_gap·λ1 hold exactly in floating point (nudging λ2.. down)."""
    if min_gap <= 0 or lam.size < 2 or lam[0] == 0:
        return lam
    cap = lam[0] * (1.0 - min_gap)
    while cap > 0 and lam[0] - cap < min_gap * lam[0]:
        cap = np.nextafter(cap, 0.0)
    lam[1:] = np.minimum(lam[1:], cap)
    return lam


def _draw_relative_spectrum(draw, n: int, r: int, kind: str, min_gap: float) -> np.ndarray:
    """Descending relative spectrum with λ1 = 1, exactly r nonzeros, n − r zeros."""
    cap = 1.0 - min_gap  # upper bound for λ2/λ1
    rel = np.zeros(n)
    if r == 0:
        return rel
    rel[0] = 1.0
    m = r - 1  # nonzeros after the top one
    unit = st.floats(0.0, 1.0)
    if kind in ("generic", "rank_deficient"):
        f = np.array(draw(st.lists(unit, min_size=m, max_size=m)), dtype=float)
        # f = 0 gives λ = cap (all equal: the simplest spectrum), f = 1 the floor.
        rel[1:r] = cap * (1.0 - f * (1.0 - GENERIC_FLOOR))
    elif kind == "well_separated":
        w = np.array(draw(st.lists(unit, min_size=r, max_size=r)), dtype=float)
        g = 1.0 + w  # r gaps: λ1→λ2, …, λ_{r−1}→λ_r, λ_r→0
        pts = 1.0 - np.cumsum(g[:-1]) / g.sum()
        if m and pts[0] > cap:
            pts = pts * (cap / pts[0])
        rel[1:r] = pts
    elif kind == "clustered_top":
        c = min(r, draw(st.integers(2, 3)))
        spread = draw(_log_uniform(max(CLUSTER_SPREAD[0], min_gap), CLUSTER_SPREAD[1]))
        bottom = 1.0 - spread
        if c == 3:
            u = draw(unit)
            rel[1] = bottom + u * (cap - bottom)
        rel[c - 1] = bottom
        rest = r - c
        if rest:
            f = np.array(draw(st.lists(unit, min_size=rest, max_size=rest)), dtype=float)
            rel[c:r] = 0.5 * bottom * (1.0 - f * (1.0 - GENERIC_FLOOR))
    elif kind == "tiny_gap":
        gap = draw(_log_uniform(max(TINY_GAP[0], min_gap), TINY_GAP[1]))
        rel[1] = 1.0 - gap
        rest = r - 2
        if rest:
            f = np.array(draw(st.lists(unit, min_size=rest, max_size=rest)), dtype=float)
            rel[2:r] = rel[1] * (1.0 - f * (1.0 - GENERIC_FLOOR))
    elif kind == "ill_conditioned":
        kappa = draw(_log_uniform(*ILL_CONDITION))
        rel[r - 1] = 1.0 / kappa
        mid = r - 2
        if mid:
            f = np.array(draw(st.lists(unit, min_size=mid, max_size=mid)), dtype=float)
            lo, hi = math.log10(1.0 / kappa), math.log10(cap)
            rel[1 : r - 1] = 10.0 ** (hi - f * (hi - lo))
    else:  # pragma: no cover - guarded by validation
        raise AssertionError(kind)
    rel[:r] = -np.sort(-rel[:r])
    return rel


# --------------------------------------------------------------------------- spectra


def spectra(
    *,
    n,
    rank=None,
    scale=(1e-8, 1e8),
    kind: str = "any",
    min_gap=None,
) -> st.SearchStrategy[np.ndarray]:
    """Descending nonnegative eigenvalue arrays with a chosen structure.

    Parameters
    ----------
    n : int or (int, int)
        Length of the array (≥ 1); a pair is an inclusive range.
    rank : None, int or (int, int)
        Number of nonzero eigenvalues (the rest are exact zeros). ``None``: full rank
        except for ``kind='rank_deficient'`` (rank < n). ``n`` is drawn no smaller than
        the rank's lower bound; the upper bound is clipped to n. Rank 0 (the zero
        spectrum) is drawn only when asked for.
    scale : float or (float, float)
        λ1, the largest eigenvalue; a pair is drawn log-uniformly. Default (1e-8, 1e8).
    kind : str
        ``'generic'``: nonzeros in [1e-4, 1]·(1 − min_gap)·λ1 below λ1 (ties possible).
        ``'well_separated'``: consecutive nonzero eigenvalues, and the smallest nonzero one
        and 0, differ by at least (1 − min_gap)·λ1/(2·rank).
        ``'clustered_top'``: the top 2–3 eigenvalues lie within a relative spread
        (λ1 − λ_c)/λ1 ∈ [1e-6, 1e-2]; the rest are ≤ λ_c/2.
        ``'tiny_gap'``: (λ1 − λ2)/λ1 ∈ [1e-12, 1e-6].
        ``'rank_deficient'``: rank < n (at least one exact zero).
        ``'ill_conditioned'``: λ1/λ_rank ∈ [1e8, 1e14] among the nonzeros.
        ``'any'`` (default): one of the above that fits the drawn n, rank and min_gap.
    min_gap : None or float in [0, 1)
        Lower bound on the *relative* top gap: λ1 − λ2 ≥ min_gap·λ1 holds exactly in
        float64 (when n ≥ 2). Kinds that cannot meet it are rejected (or, under
        ``'any'``, not drawn).

    Returns
    -------
    SearchStrategy[ndarray]
        1-D float64 arrays, descending, ≥ 0, with ``arr[0] == λ1`` drawn from ``scale``
        (unless the rank is 0).
    """
    n_lo, n_hi = _int_range("n", n, min_value=1)
    kind = _choice("kind", kind, SPECTRUM_KINDS)
    g = _check_min_gap(min_gap)
    s_lo, s_hi = _float_range("scale", scale)
    if rank is None:
        r_lo, r_hi = None, None
    else:
        r_lo, r_hi = _int_range("rank", rank, min_value=0)
        if r_lo > n_hi:
            raise _bad("rank", rank, f"exceeds the largest size n={n_hi}")
        if g > 0 and r_hi == 0:
            raise _bad("min_gap", min_gap, "a positive gap needs rank >= 1")
    if kind == "clustered_top" and g > CLUSTER_SPREAD[1]:
        raise _bad("min_gap", min_gap, f"kind='clustered_top' has gaps <= {CLUSTER_SPREAD[1]}")
    if kind == "tiny_gap" and g > TINY_GAP[1]:
        raise _bad("min_gap", min_gap, f"kind='tiny_gap' has gaps <= {TINY_GAP[1]}")
    if kind in ("clustered_top", "tiny_gap", "ill_conditioned", "rank_deficient"):
        if n_hi < 2:
            raise _bad("n", n, f"kind={kind!r} needs n >= 2")
        if kind != "rank_deficient" and r_hi is not None and r_hi < 2:
            raise _bad("rank", rank, f"kind={kind!r} needs rank >= 2")
        if kind == "rank_deficient" and r_lo is not None and r_lo >= n_hi:
            raise _bad("rank", rank, "kind='rank_deficient' needs rank < n")

    structured = ("clustered_top", "tiny_gap", "ill_conditioned")

    @st.composite
    def _spectra(draw):
        # n first so that it shrinks first; sizes that cannot host `kind` are skipped.
        lo = n_lo
        if kind in (*structured, "rank_deficient"):
            lo = max(lo, 2)
        if r_lo is not None:
            lo = max(lo, r_lo + 1 if kind == "rank_deficient" else r_lo)
        size = _range_draw(draw, lo, n_hi)
        if r_lo is None:
            rlo, rhi = size, size
        else:
            rlo, rhi = r_lo, min(r_hi, size)
        if g > 0:
            rlo = max(rlo, 1)
        k = kind
        if k == "any":
            k = draw(st.sampled_from(_kinds_for(size, 1 if r_lo is None else rlo, rhi, g)))
        if k == "rank_deficient":
            rhi = min(rhi, size - 1)
            if r_lo is None:
                rlo = 1
        elif k in structured:
            rlo = max(rlo, 2)
        # the rank is drawn as "how far below the maximum", so it shrinks toward full rank
        r = rhi - _range_draw(draw, 0, rhi - rlo)
        lam1 = draw(_log_uniform(s_lo, s_hi))
        rel = _draw_relative_spectrum(draw, size, r, k, g)
        lam = rel * lam1
        if r:
            lam[0] = lam1
        lam = np.maximum(lam, 0.0)
        lam[:r] = np.maximum(lam[:r], np.finfo(np.float64).tiny)  # nonzeros stay nonzero
        lam = -np.sort(-lam)
        return _enforce_gap(lam, g)

    return _spectra()


# --------------------------------------------------------------------------- bases


def orthogonal_matrices(*, n) -> st.SearchStrategy[np.ndarray]:
    """Orthogonal n×n float64 matrices.

    Parameters
    ----------
    n : int or (int, int)
        Size (≥ 1); a pair is an inclusive range.

    Returns
    -------
    SearchStrategy[ndarray]
        Mostly Haar-random matrices built from a drawn integer seed (QR of a Gaussian with
        the signs fixed so that R has a positive diagonal); sometimes the identity or a
        signed permutation, so that axis-aligned eigenvectors (diagonal matrices) occur.
        Shrinks toward the identity.
    """
    n_lo, n_hi = _int_range("n", n, min_value=1)

    @st.composite
    def _orth(draw):
        size = _range_draw(draw, n_lo, n_hi)
        return _draw_basis(draw, size)

    return _orth()


def _draw_basis(draw, size: int) -> np.ndarray:
    which = draw(st.integers(0, 7))  # 0: identity, 1: signed permutation, else Haar
    if which == 0:
        return np.eye(size)
    seed = draw(_SEEDS)
    if which == 1:
        rng = np.random.default_rng(seed)
        q = np.eye(size)[:, rng.permutation(size)]
        return q * rng.choice([-1.0, 1.0], size=size)
    return _haar(size, seed)


# --------------------------------------------------------------------------- PSD matrices


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)


def psd_matrices(
    *,
    n=(2, 8),
    rank=None,
    spectrum: str = "any",
    scale=(1e-8, 1e8),
    min_gap=None,
    return_eigendata: bool = False,
) -> st.SearchStrategy:
    """Symmetric positive semidefinite float64 matrices A = V diag(λ) Vᵀ.

    Parameters
    ----------
    n : int or (int, int)
        Size; default (2, 8).
    rank, scale, min_gap
        As in :func:`spectra` (``scale`` is λ_max(A); ``min_gap`` is relative to it).
    spectrum : str
        A :func:`spectra` kind (default ``'any'``).
    return_eigendata : bool
        If true, draw ``(A, eigenvalues, eigenvectors)``: the descending spectrum and the
        orthogonal basis A was built from (``eigenvectors[:, j]`` for ``eigenvalues[j]``).

    Returns
    -------
    SearchStrategy[ndarray] or SearchStrategy[tuple]
        Exactly symmetric A (returned as ½(A + Aᵀ)); its eigenvalues are ≥ −16·n·eps·‖A‖.
    """
    return_eigendata = _check_bool("return_eigendata", return_eigendata)
    spec = spectra(n=n, rank=rank, scale=scale, kind=spectrum, min_gap=min_gap)

    @st.composite
    def _psd(draw):
        lam = draw(spec)
        V = _draw_basis(draw, lam.size)
        A = _sym((V * lam) @ V.T)
        return (A, lam, V) if return_eigendata else A

    return _psd()


# --------------------------------------------------------------------------- score matrices


def score_matrices(*, n=(1, 12), p=(1, 12), rank=None, scale=(1e-4, 1e4)) -> st.SearchStrategy:
    """Per-sample score matrices G (n samples × P parameters), float64.

    Parameters
    ----------
    n, p : int or (int, int)
        Rows (samples) and columns (parameters); drawn independently, so n < P, n = P and
        n > P all occur. Defaults (1, 12).
    rank : None, int or (int, int)
        Exact rank of G (n and P are drawn ≥ its lower bound, its upper bound is clipped
        to min(n, P)); ``None``: any rank from 1 to min(n, P), shrinking toward full
        rank. Rank 0 (G = 0) only when asked for.
    scale : float or (float, float)
        Largest singular value of the independent block of rows (so ‖G‖₂ is within a
        factor √n of it); drawn log-uniformly. Default (1e-4, 1e4).

    Returns
    -------
    SearchStrategy[ndarray]
        G = C·B with B (rank × P) orthonormal rows and C (n × rank) holding ``rank``
        independent rows (singular values in [0.1, 1]·scale); every other row is a zero
        row, an exact duplicate of another row, or a random combination — so zero and
        duplicate rows occur. Built from integer seeds.
    """
    n_lo, n_hi = _int_range("n", n, min_value=1)
    p_lo, p_hi = _int_range("p", p, min_value=1)
    s_lo, s_hi = _float_range("scale", scale)
    if rank is not None:
        r_lo, r_hi = _int_range("rank", rank, min_value=0)
        if r_lo > min(n_hi, p_hi):
            raise _bad("rank", rank, f"exceeds min(n, p) <= {min(n_hi, p_hi)}")
    else:
        r_lo = r_hi = None

    @st.composite
    def _scores(draw):
        need = 1 if rank is None else r_lo
        rows = _range_draw(draw, max(n_lo, need), n_hi)
        cols = _range_draw(draw, max(p_lo, need), p_hi)
        m = min(rows, cols)
        rlo, rhi = (1, m) if rank is None else (r_lo, min(r_hi, m))
        r = rhi - _range_draw(draw, 0, rhi - rlo)
        s = draw(_log_uniform(s_lo, s_hi))
        G = np.zeros((rows, cols))
        if r == 0:
            return G
        seed = draw(_SEEDS)
        rng = np.random.default_rng(seed)
        B = _haar(cols, seed)[:r, :]  # orthonormal rows
        sv = s * np.concatenate([[1.0], rng.uniform(0.1, 1.0, size=r - 1)])
        core = (_haar(r, seed + 1) * sv) @ _haar(r, seed + 2)  # r×r, singular values sv
        C = np.zeros((rows, r))
        order = rng.permutation(rows)
        C[order[:r]] = core
        placed = list(order[:r])
        for i in order[r:]:
            how = draw(st.integers(0, 2))  # 0: zero row, 1: duplicate, 2: combination
            if how == 1:
                C[i] = C[placed[draw(st.integers(0, len(placed) - 1))]]
            elif how == 2:
                C[i] = rng.standard_normal(r) @ core / math.sqrt(r)
            placed.append(i)
        return C @ B

    return _scores()


# --------------------------------------------------------------------------- noise


def _check_basis(basis, n):
    if basis is None:
        return None
    B = np.asarray(basis)
    if B.ndim != 2 or B.shape[0] != B.shape[1] or B.dtype.kind not in "fiu" or B.size == 0:
        raise _bad("basis", f"<array shape {B.shape}>", "expected a square real matrix")
    B = B.astype(np.float64)
    if not np.all(np.isfinite(B)):
        raise _bad("basis", "<array>", "has non-finite entries")
    k = B.shape[0]
    if np.max(np.abs(B.T @ B - np.eye(k))) > 1e3 * k * EPS:
        raise _bad("basis", "<array>", "columns are not orthonormal")
    return B


def _norm_strategy(norm):
    if norm is None:
        return None
    lo, hi = _float_range("norm", norm, allow_zero=True)
    if lo == hi:
        return st.just(lo)
    if lo == 0:
        return st.one_of(st.just(0.0), _log_uniform(max(hi * 1e-12, 1e-300), hi))
    return _log_uniform(lo, hi)


def _draw_noise(draw, size: int, kind: str, basis, target) -> np.ndarray:
    unit = st.floats(-1.0, 1.0)
    if kind in ("diagonal", "commuting"):
        d = np.array(draw(st.lists(unit, min_size=size, max_size=size)), dtype=float)
        if not np.any(d):
            d[0] = 1.0  # never the zero matrix: it could not be rescaled
        E = np.diag(d) if kind == "diagonal" else _sym((basis * d) @ basis.T)
    else:
        rng = np.random.default_rng(draw(_SEEDS))
        if kind == "wigner":
            E = _sym(rng.standard_normal((size, size)))
        else:  # low_rank: sym(u wᵀ)
            u = rng.standard_normal(size)
            w = u.copy() if draw(st.booleans()) else rng.standard_normal(size)
            E = 0.5 * (np.outer(u, w) + np.outer(w, u))
    if target is not None:
        E = E / np.max(np.abs(E))  # first to max-entry 1: no overflow for tiny entries
        eta = float(np.linalg.norm(E, 2))
        E = E * (target / eta)
        E = _sym(E)
    return E


def symmetric_noise(*, n=None, kind: str = "any", norm=None, basis=None) -> st.SearchStrategy:
    """Symmetric perturbations E (float64, exactly symmetric).

    Parameters
    ----------
    n : int or (int, int), optional
        Size. May be omitted when ``basis`` is given (then n = basis.shape[0]).
    kind : str
        ``'wigner'``: sym(Z) of a seeded Gaussian Z.
        ``'low_rank'``: sym(u wᵀ) = (u wᵀ + w uᵀ)/2 of seeded Gaussians (sometimes w = u).
        ``'diagonal'``: diag(d), d drawn in [−1, 1]ⁿ (not all zero).
        ``'commuting'``: V diag(d) Vᵀ with V = ``basis`` (required), so E commutes with
        every A = V diag(λ) Vᵀ.
        ``'any'`` (default): one of the above ('commuting' only when a basis is given).
    norm : None, float or (float, float)
        If given, E is rescaled to this spectral norm ‖E‖₂ (a pair is drawn
        log-uniformly; 0 gives E = 0). ``None`` keeps the construction's O(1) norm.
    basis : ndarray, optional
        Orthogonal n×n matrix (e.g. A's eigenvectors) for ``'commuting'`` noise.

    Returns
    -------
    SearchStrategy[ndarray]
    """
    kind = _choice("kind", kind, NOISE_KINDS)
    B = _check_basis(basis, n)
    if n is None:
        if B is None:
            raise _bad("n", n, "give n, or a basis to take the size from")
        n_lo = n_hi = B.shape[0]
    else:
        n_lo, n_hi = _int_range("n", n, min_value=1)
        if B is not None and not (n_lo == n_hi == B.shape[0]):
            raise _bad("n", n, f"does not match basis of size {B.shape[0]}")
    if kind == "commuting" and B is None:
        raise _bad("basis", basis, "kind='commuting' needs the basis (eigenvectors of A)")
    norm_st = _norm_strategy(norm)

    @st.composite
    def _noise(draw):
        size = _range_draw(draw, n_lo, n_hi)
        k = kind
        if k == "any":
            choices = ["diagonal", "wigner", "low_rank"] + (["commuting"] if B is not None else [])
            k = draw(st.sampled_from(choices))
        target = None if norm_st is None else draw(norm_st)
        return _draw_noise(draw, size, k, B, target)

    return _noise()


def psd_with_noise(
    *,
    n=(2, 8),
    spectrum: str = "any",
    noise: str = "any",
    relative_norm=(1e-6, 1.0),
    relative_to: str = "lambda_max",
    min_gap=None,
    rank=None,
    scale=(1e-8, 1e8),
) -> st.SearchStrategy[MatrixPerturbation]:
    """Pairs (A, E): a PSD matrix and a symmetric perturbation of a set relative size.

    Parameters
    ----------
    n, spectrum, min_gap, rank, scale
        As in :func:`psd_matrices`.
    noise : str
        A :func:`symmetric_noise` kind; ``'commuting'`` uses A's eigenvectors.
    relative_norm : float or (float, float)
        ‖E‖₂ / ref, drawn log-uniformly; default (1e-6, 1).
    relative_to : {'lambda_max', 'gap'}
        ``ref`` = λ1 (default) or the top gap γ = λ1 − λ2 (needs ``min_gap > 0``, so
        that γ > 0; e.g. ``relative_norm=(1e-6, 0.49), relative_to='gap'`` meets the
        hypothesis η < γ/2 of the remainder bounds).

    Returns
    -------
    SearchStrategy[MatrixPerturbation]
        ``MatrixPerturbation(A, E, eigenvalues, eigenvectors)``; eigendata are those A was
        built from. If the reference is 0 (rank 0) then E = 0.
    """
    noise = _choice("noise", noise, NOISE_KINDS)
    relative_to = _choice("relative_to", relative_to, ("lambda_max", "gap"))
    r_lo, r_hi = _float_range("relative_norm", relative_norm)
    if relative_to == "gap" and _check_min_gap(min_gap) == 0.0:
        raise _bad("min_gap", min_gap, "relative_to='gap' needs min_gap > 0 (so the gap is > 0)")
    base = psd_matrices(n=n, rank=rank, spectrum=spectrum, scale=scale, min_gap=min_gap, return_eigendata=True)
    rel_st = _log_uniform(r_lo, r_hi)

    @st.composite
    def _pair(draw):
        A, lam, V = draw(base)
        size = lam.size
        k = noise
        if k == "any":
            k = draw(st.sampled_from(["diagonal", "commuting", "wigner", "low_rank"]))
        rel = draw(rel_st)
        ref = lam[0] if relative_to == "lambda_max" or size < 2 else lam[0] - lam[1]
        E = _draw_noise(draw, size, k, V, rel * ref)
        return MatrixPerturbation(A, E, lam, V)

    return _pair()


# --------------------------------------------------------------------------- quantization


def _score_functions():
    """Per-sample score functions: the generated ones when present, else private fallbacks."""
    try:
        from fimtheory._generated import fim_expansion as fx  # type: ignore[attr-defined]

        return {
            "linear": fx.scores_linear,
            "logistic": fx.scores_logistic,
            "softmax": fx.scores_softmax,
        }, "generated"
    except (ImportError, AttributeError):
        return {
            "linear": _scores_linear,
            "logistic": _scores_logistic,
            "softmax": _scores_softmax,
        }, "fallback"


# Fallbacks, used only while fimtheory._generated.fim_expansion does not exist.
def _scores_linear(X, y, theta):
    """Unit-variance Gaussian regression: g_i = (y_i − θᵀx_i) x_i."""
    return (y - X @ theta)[:, None] * X


def _scores_logistic(X, y, theta):
    """Logistic regression, y ∈ {0, 1}: g_i = (y_i − σ(θᵀx_i)) x_i."""
    z = X @ theta
    ez = np.exp(-np.abs(z))
    p = np.where(z >= 0, 1.0 / (1.0 + ez), ez / (1.0 + ez))
    return (y - p)[:, None] * X


def _scores_softmax(X, y, theta):
    """Softmax regression, θ = row-major flat (K×d): g_i = (e_{y_i} − softmax(Θx_i)) ⊗ x_i."""
    d = X.shape[1]
    W = np.asarray(theta).reshape(-1, d)
    z = X @ W.T
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    r = -p
    r[np.arange(X.shape[0]), np.asarray(y, dtype=int)] += 1.0
    return (r[:, :, None] * X[:, None, :]).reshape(X.shape[0], -1)


def _quantize_module():
    try:
        from fimtheory import quantize  # type: ignore[attr-defined]
    except ImportError:
        return None
    return quantize


def _scheme_specs(bits: int, stochastic: bool) -> list[str]:
    """``fimtheory.quantize`` spec strings of width ``bits`` that fit any small θ.

    Integer grids per tensor and per output channel (symmetric and asymmetric), plus the
    4-bit codebooks per channel when ``bits == 4``; stochastic rounding when asked.
    """
    kind = "sr" if stochastic else "rtn"
    specs = [f"{kind}-int{bits}-{sym}-{gran}" for sym in ("sym", "asym") for gran in ("tensor", "channel")]
    if bits == 4 and not stochastic:
        specs += ["nf4-channel", "fp4-channel"]
    return specs


def _draw_model_data(draw, model: str, n: int, d: int, classes: int):
    rng = np.random.default_rng(draw(_SEEDS))
    X = rng.standard_normal((n, d))
    mag = draw(_log_uniform(0.1, 3.0))
    if model == "softmax":
        theta = rng.standard_normal(classes * d) * mag / math.sqrt(d)
        W = theta.reshape(classes, d)
        z = X @ W.T
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        y = np.array([rng.choice(classes, p=row) for row in p], dtype=float)
    else:
        theta = rng.standard_normal(d) * mag / math.sqrt(d)
        z = X @ theta
        if model == "linear":
            y = z + rng.standard_normal(n)
        else:
            y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-z))).astype(float)
    return X, y, theta


def _fim(G: np.ndarray) -> np.ndarray:
    return _sym(G.T @ G / G.shape[0])


def _quant_common(model, n, d, bits, scheme, classes):
    model = _choice("model", model, QUANT_MODELS)
    n_lo, n_hi = _int_range("n", n, min_value=1)
    d_lo, d_hi = _int_range("d", d, min_value=1)
    b_lo, b_hi = _int_range("bits", bits, min_value=2, max_value=8)
    c_lo, c_hi = _int_range("classes", classes, min_value=2)
    if scheme is not None and not isinstance(scheme, str):
        raise _bad("scheme", scheme, "expected None or a scheme spec string")
    q = _quantize_module()
    if q is not None and scheme is not None:
        try:
            q.parse_scheme(scheme)
        except Exception as exc:  # the quantize module's own error, re-raised our way
            raise _bad("scheme", scheme, f"not a valid scheme ({exc})") from exc
    return model, (n_lo, n_hi), (d_lo, d_hi), (b_lo, b_hi), (c_lo, c_hi)


def _require_quantize():
    q = _quantize_module()
    if q is None:
        raise InvalidArgument(
            "quantization strategies need fimtheory.quantize (parse_scheme, "
            "QuantScheme.quantize), which is not importable"
        )
    return q


def quantization_noise_matrices(
    *,
    model: str = "any",
    n=(4, 16),
    d=(2, 5),
    bits=(2, 8),
    scheme: str | None = None,
    classes=(2, 4),
) -> st.SearchStrategy[QuantizationPerturbation]:
    """Quantization perturbations E = F(Q(θ)) − F(θ) of a small model's empirical FIM.

    Draws data X ~ N(0, I) (n×d), parameters θ (seeded Gaussian of drawn magnitude),
    labels y sampled from the model at θ, a quantizer, and returns the FIMs at θ and at
    Q(θ) built from the per-sample scores of ``fimtheory._generated.fim_expansion``
    (``scores_linear/logistic/softmax(X, y, theta)``).

    Parameters
    ----------
    model : {'any', 'linear', 'logistic', 'softmax'}
    n, d : int or (int, int)
        Samples and input dimension. Defaults (4, 16) and (2, 5).
    bits : int or (int, int)
        Bit width passed to the scheme; default (2, 8).
    scheme : str, optional
        A ``fimtheory.quantize.parse_scheme`` spec, used as is (``bits`` is then ignored;
        a stochastic one is run with a drawn seed; group sizes must divide d).
        ``None``: a round-to-nearest scheme of the drawn bit width (integer grid,
        symmetric or asymmetric, per tensor or per output channel; NF4/FP4 per channel
        at 4 bits). Softmax weights are quantized as the (classes × d) matrix.
    classes : int or (int, int)
        Number of classes for ``'softmax'`` (θ has classes·d entries); default (2, 4).

    Returns
    -------
    SearchStrategy[QuantizationPerturbation]
        With ``delta == theta_q - theta`` and ``E == F_q - F`` exactly symmetric.
    """
    model, nr, dr, br, cr = _quant_common(model, n, d, bits, scheme, classes)
    return _quant_strategy(model, nr, dr, br, cr, scheme, stochastic=False, draws=(1, 1))


def stochastic_rounding_draws(
    *,
    model: str = "any",
    n=(4, 16),
    d=(2, 5),
    bits=(2, 8),
    draws=(2, 8),
    classes=(2, 4),
    scheme: str | None = None,
) -> st.SearchStrategy[list]:
    """Several stochastic-rounding draws Q(θ) of one model, for expectation checks.

    Like :func:`quantization_noise_matrices` with an unbiased stochastic-rounding scheme
    (E[Q(θ)] = θ): one drawn seed drives ``draws`` independent quantizations of the same
    θ, X, y.

    Parameters
    ----------
    draws : int or (int, int)
        Number of quantizations; default (2, 8).
    model, n, d, bits, classes, scheme
        As in :func:`quantization_noise_matrices` (``scheme`` must then be stochastic).

    Returns
    -------
    SearchStrategy[list[QuantizationPerturbation]]
        All sharing ``X``, ``y``, ``theta``, ``F``; ``extra['draw']`` is the draw index.
    """
    model, nr, dr, br, cr = _quant_common(model, n, d, bits, scheme, classes)
    k_lo, k_hi = _int_range("draws", draws, min_value=1)
    q = _quantize_module()
    if q is not None and scheme is not None and not q.parse_scheme(scheme).stochastic:
        raise _bad("scheme", scheme, "stochastic_rounding_draws needs a stochastic scheme")
    return _quant_strategy(model, nr, dr, br, cr, scheme, stochastic=True, draws=(k_lo, k_hi))


def _quant_strategy(model, nr, dr, br, cr, scheme, *, stochastic: bool, draws):
    @st.composite
    def _quant(draw):
        q = _require_quantize()
        scores, _ = _score_functions()
        m = model if model != "any" else draw(st.sampled_from(["linear", "logistic", "softmax"]))
        size = _range_draw(draw, *nr)
        dim = _range_draw(draw, *dr)
        k = _range_draw(draw, *cr) if m == "softmax" else 1
        X, y, theta = _draw_model_data(draw, m, size, dim, k)
        if scheme is None:
            b = _range_draw(draw, *br)
            spec = draw(st.sampled_from(_scheme_specs(b, stochastic)))
        else:
            spec = scheme
        qs = q.parse_scheme(spec)
        G = np.asarray(scores[m](X, y, theta), dtype=np.float64)
        F = _fim(G)
        # Weights are quantized as the (outputs × d) matrix, rows = output channels: softmax
        # has k rows; linear/logistic one row (a 1-D vector per channel would make every
        # weight its own channel and per-channel quantization the identity).
        shape = (k, dim) if m == "softmax" else (1, dim)
        count = _range_draw(draw, *draws)
        rng = np.random.default_rng(draw(_SEEDS)) if qs.stochastic else None
        out = []
        for j in range(count):
            w = theta.reshape(shape)
            theta_q = np.asarray(qs.quantize(w, rng=rng), dtype=np.float64).reshape(-1)
            G_q = np.asarray(scores[m](X, y, theta_q), dtype=np.float64)
            F_q = _fim(G_q)
            out.append(
                QuantizationPerturbation(
                    model=m,
                    X=X,
                    y=y,
                    theta=theta,
                    theta_q=theta_q,
                    delta=theta_q - theta,
                    scheme=spec,
                    G=G,
                    G_q=G_q,
                    F=F,
                    F_q=F_q,
                    E=_sym(F_q - F),
                    extra={"draw": j} if stochastic else {},
                )
            )
        return out if stochastic else out[0]

    return _quant()


# --------------------------------------------------------------------------- thresholds


_SPECIAL_SIGMAS = (
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    5e-324,
    -5e-324,
    float(np.finfo(np.float64).tiny),
    -float(np.finfo(np.float64).tiny),
    float(np.finfo(np.float64).max),
    -float(np.finfo(np.float64).max),
    1.0,
    -1.0,
)


def thresholds(*, k=(1, 8), allow_special: bool = True) -> st.SearchStrategy[np.ndarray]:
    """Strictly increasing finite float64 threshold arrays τ1 < … < τk.

    Parameters
    ----------
    k : int or (int, int)
        Number of thresholds (≥ 0); default (1, 8).
    allow_special : bool
        If true (default), thresholds may be subnormal, −0.0, ±max float, and adjacent
        floats (τ_{j+1} = nextafter(τ_j, +inf)). If false they are normal or zero numbers
        in [−1e6, 1e6] (zero as +0.0).

    Returns
    -------
    SearchStrategy[ndarray]
        1-D float64, finite, with ``np.all(np.diff(t) > 0)``.
    """
    k_lo, k_hi = _int_range("k", k, min_value=0)
    allow_special = _check_bool("allow_special", allow_special)
    if allow_special:
        elem = st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([x for x in _SPECIAL_SIGMAS if math.isfinite(x)]),
        )
    else:
        elem = st.floats(-1e6, 1e6, allow_subnormal=False)

    @st.composite
    def _thr(draw):
        size = _range_draw(draw, k_lo, k_hi)
        vals = draw(st.lists(elem, min_size=size, max_size=size, unique=True))
        t = np.sort(np.array(vals, dtype=np.float64))
        if not allow_special:
            t = t + 0.0  # −0.0 → +0.0
        elif size >= 2 and draw(st.integers(0, 3)) == 3:
            # replace one threshold by the float right after its predecessor
            j = draw(st.integers(1, size - 1))
            t[j] = np.nextafter(t[j - 1], np.inf)
            t = np.unique(t)
            while t.size < size:  # keep the length: add a value above the top
                t = np.append(
                    t,
                    np.nextafter(t[-1], np.inf) if t[-1] < np.finfo(float).max else np.nextafter(t[0], -np.inf),
                )
                t = np.unique(t)
        return t

    return _thr()


def sigma_values(*, allow_nan: bool = True, allow_infinity: bool = True) -> st.SearchStrategy[float]:
    """Any float64 value of a monitor statistic σ, special values favoured.

    Parameters
    ----------
    allow_nan, allow_infinity : bool
        Include NaN / ±inf (default both).

    Returns
    -------
    SearchStrategy[float]
        Python floats (float64): NaN, ±inf, −0.0, ±0, subnormals, ±tiny, ±max float and
        arbitrary floats of any magnitude.
    """
    allow_nan = _check_bool("allow_nan", allow_nan)
    allow_infinity = _check_bool("allow_infinity", allow_infinity)
    specials = [
        x for x in _SPECIAL_SIGMAS if (allow_nan or not math.isnan(x)) and (allow_infinity or not math.isinf(x))
    ]
    return st.one_of(
        st.sampled_from(specials),
        st.floats(allow_nan=allow_nan, allow_infinity=allow_infinity),
    )
