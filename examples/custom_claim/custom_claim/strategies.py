"""Hypothesis strategy that draws the instances of this project's claims."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from custom_claim.instances import SymmetricMatrix


@st.composite
def _symmetric(draw):
    n = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["wigner", "diagonal", "psd", "sparse"]))
    scale = 10.0 ** draw(st.integers(-6, 6))
    if kind == "diagonal":
        A = np.diag(rng.standard_normal(n))
    elif kind == "psd":
        B = rng.standard_normal((n, n))
        A = B @ B.T
    else:
        B = rng.standard_normal((n, n))
        if kind == "sparse":
            B *= rng.random((n, n)) < 0.3
        A = B + B.T
    A = 0.5 * (A + A.T) * scale  # exactly symmetric in float64
    return SymmetricMatrix(A, origin=kind)


def symmetric_matrices():
    """Symmetric matrices of order 1–6: Wigner, diagonal, PSD and sparse, scaled by 1e-6…1e6."""
    return _symmetric()
