"""Proposition 3.2 machinery: Λ along displacement paths and the LCM hypothesis check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fimtheory.instances import DepartureInstance
from fimtheory.models import batch_lambda_max


@dataclass(frozen=True)
class PathProfile:
    """Λ(X + t_k U) on the grid t_k = k·T/steps, and whether it is non-decreasing there."""

    t: np.ndarray
    values: np.ndarray

    @property
    def resolution(self) -> float:
        return float(self.t[1] - self.t[0]) if self.t.size > 1 else 0.0

    @property
    def monotone(self) -> bool:
        """LCM at the grid's resolution: Λ(t_{k+1}) ≥ Λ(t_k) for every k (exact float comparison)."""
        return bool(np.all(np.diff(self.values) >= 0))

    @property
    def worst_decrease(self) -> float:
        return float(-np.min(np.diff(self.values))) if self.values.size > 1 else 0.0


def path_profile(model: str, theta, X, y, U, T: float, steps: int) -> PathProfile:
    t = np.linspace(0.0, T, steps + 1)
    vals = np.array([batch_lambda_max(model, X + tk * U, y, theta) for tk in t])
    return PathProfile(t, vals)


def profiles(inst: DepartureInstance) -> list[PathProfile]:
    return [
        path_profile(inst.model, inst.theta, X, y, U, inst.T, inst.steps)
        for X, y, U in zip(inst.inputs, inst.labels, inst.directions)
    ]


def elevation_margins(base: np.ndarray, displaced: np.ndarray, q: float) -> dict:
    """Signed margins of the conclusion: pointwise, mean and q-quantile of Λ(x_t) − Λ(x)."""
    return {
        "pointwise": float(np.min(displaced - base)),
        "mean": float(np.mean(displaced) - np.mean(base)),
        "quantile": float(np.quantile(displaced, q) - np.quantile(base, q)),
    }
