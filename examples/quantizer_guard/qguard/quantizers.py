"""Rounding rules in grid units: ``rule(x, u)`` maps the float array ``x`` (values divided by
the grid step) to grid points (integers), with ``u`` uniform [0, 1) variates of the same shape
as the only randomness."""

import numpy as np


def stochastic_rounding(x, u):
    """Unbiased stochastic rounding: up with probability frac(x), so E_u[result] = x."""
    return np.floor(x + u)


def stochastic_rounding_trunc(x, u):
    """BUGGY: ``trunc`` where ``floor`` was meant. Identical on non-negative values; on a
    negative value it rounds toward zero too often, so the rounding is biased (not zero-mean)."""
    return np.trunc(x + u)
