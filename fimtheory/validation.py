"""Argument checks shared by the public API. Each raises :class:`InputError` naming the problem."""

from __future__ import annotations

import numpy as np

from fimtheory.errors import InputError

EPS64 = np.finfo(np.float64).eps


def as_matrix(x, name: str = "A", *, square: bool = False, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a finite 2-D float64 array, or raise :class:`InputError`.

    Integer and lower-precision float inputs are converted; complex, object, bool and
    string dtypes are rejected (the suite works over the reals).
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D, got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    if square and arr.shape[0] != arr.shape[1]:
        raise InputError(f"{name} must be square, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InputError(f"{name} has a non-finite entry {arr[tuple(bad)]!r} at index {tuple(int(i) for i in bad)}")
    return arr


def as_vector(x, name: str = "x", *, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a finite 1-D float64 array, or raise :class:`InputError`."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise InputError(f"{name} is empty")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        i = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise InputError(f"{name} has a non-finite entry {arr[i]!r} at index {i}")
    return arr


def symmetry_tolerance(a: np.ndarray) -> float:
    """Absolute asymmetry accepted for ``a``: 8·n·eps·max(‖a‖_max, tiny)."""
    n = a.shape[0]
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    return 8.0 * n * EPS64 * max(scale, np.finfo(np.float64).tiny)


def as_symmetric(x, name: str = "A") -> np.ndarray:
    """Return a finite square symmetric float64 matrix (exactly symmetrised), or raise.

    Asymmetry up to :func:`symmetry_tolerance` (rounding in a product like GᵀG) is accepted
    and removed by averaging with the transpose; anything larger is an error.
    """
    a = as_matrix(x, name, square=True)
    asym = float(np.max(np.abs(a - a.T)))
    tol = symmetry_tolerance(a)
    if asym > tol:
        i, j = np.unravel_index(int(np.argmax(np.abs(a - a.T))), a.shape)
        raise InputError(
            f"{name} is not symmetric: |{name}[{i},{j}] - {name}[{j},{i}]| = {asym:.3g} exceeds tolerance {tol:.3g}"
        )
    # 0.5·(a + aᵀ) overflows for entries above max/2; halving first is exact there (both forms
    # are symmetric in (a_ij, a_ji), so the result is exactly symmetric either way).
    big = np.maximum(np.abs(a), np.abs(a.T)) > np.finfo(np.float64).max / 4
    if np.any(big):
        with np.errstate(over="ignore"):  # the overflowing branch is not selected
            return np.where(big, 0.5 * a + 0.5 * a.T, 0.5 * (a + a.T))
    return 0.5 * (a + a.T)


def psd_tolerance(eigenvalues: np.ndarray) -> float:
    """Negative eigenvalues accepted as rounding for a PSD matrix: 16·n·eps·λ_max."""
    n = eigenvalues.shape[0]
    return 16.0 * n * EPS64 * max(float(np.max(np.abs(eigenvalues))), np.finfo(np.float64).tiny)


def as_psd(x, name: str = "A") -> np.ndarray:
    """Return a symmetric PSD float64 matrix, or raise naming the most negative eigenvalue."""
    a = as_symmetric(x, name)
    w = np.linalg.eigvalsh(a)
    if w[0] < -psd_tolerance(w):
        raise InputError(
            f"{name} is not positive semidefinite: smallest eigenvalue {w[0]:.6g} (tolerance {psd_tolerance(w):.3g})"
        )
    return a


def check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("A", "E")) -> None:
    if a.shape != b.shape:
        raise InputError(f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}")


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_finite_scalar(value, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a real number, got {value!r}") from exc
    if not np.isfinite(v):
        raise InputError(f"{name} must be finite, got {v!r}")
    if positive and not v > 0:
        raise InputError(f"{name} must be > 0, got {v!r}")
    if nonnegative and v < 0:
        raise InputError(f"{name} must be >= 0, got {v!r}")
    return v


def power_of_two_scale(a: np.ndarray) -> float:
    """A power of two c with max|a|/c in [0.5, 1) — [1, 2) when max|a| ≥ 2^1023 — (1 for a
    zero or non-finite array).

    Dividing by c is exact in binary floating point (barring subnormal results), so results
    computed on a/c and rescaled by c (or c twice, never c² formed) are exactly
    scale-covariant, and sums of products of entries of a/c neither overflow nor underflow.
    The exponent is capped at 1023 so that c itself is finite for entries near the maximum.
    """
    m = float(np.max(np.abs(a))) if a.size else 0.0
    if m == 0.0 or not np.isfinite(m):
        return 1.0
    return float(np.ldexp(1.0, min(int(np.frexp(m)[1]), 1023)))


def rescale(x, c: float, times: int, what: str):
    """``x`` multiplied ``times`` times by the power of two ``c`` (no c² is formed).

    Raises :class:`InputError` naming ``what`` when a finite ``x`` becomes non-finite: the
    true result is not representable in float64.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = x
        for _ in range(times):
            out = out * c
    if np.all(np.isfinite(x)) and not np.all(np.isfinite(out)):
        raise InputError(f"{what} overflows float64 (its largest entry exceeds {np.finfo(np.float64).max:.6g})")
    return out
