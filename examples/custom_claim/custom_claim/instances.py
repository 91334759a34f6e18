"""The instance type of this project's claims (a dataclass of float arrays, so a stored
counterexample serialises it bit-exactly)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SymmetricMatrix:
    """A symmetric float64 matrix and how it was drawn."""

    A: np.ndarray
    origin: str = ""

    @property
    def n(self) -> int:
        return int(self.A.shape[0])
