"""Shared fixtures of the core tests (kept small: tolerances and a seeded generator)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Hypothesis in the test suite: reproducible (derandomized: the same examples on every run,
# as every random draw here is seeded), no per-example deadline (CI runs on 2 loaded cores,
# where a 200 ms deadline flakes), no example database. FIMTHEORY_HYPOTHESIS_PROFILE=explore
# draws fresh random examples instead.
settings.register_profile(
    "fimtheory-ci",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FIMTHEORY_HYPOTHESIS_PROFILE", "fimtheory-ci"))

EPS64 = float(np.finfo(np.float64).eps)


def rel_tol(n: int, scale: float, c: float = 64.0) -> float:
    """Absolute tolerance c·n·eps·scale: backward-stable symmetric eigensolvers are accurate to
    O(n·eps·‖A‖) in each eigenvalue (Weyl + backward stability)."""
    return c * max(n, 1) * EPS64 * max(float(scale), np.finfo(np.float64).tiny)


@pytest.fixture
def tol():
    """The tolerance rule ``rel_tol(n, scale, c=64)`` as a fixture."""
    return rel_tol


@pytest.fixture
def rng():
    return np.random.default_rng(20260611)


@pytest.fixture(autouse=True, scope="session")
def _hypothesis_without_local_constants():
    """Every Hypothesis test draws without the pool of "local constants".

    Hypothesis draws some values from the numeric constants in the source of the project modules
    that happen to be in ``sys.modules``, so a derandomized test would draw other examples when
    run alone than in the full suite, or in a mutation tester's worker. With the pool pinned empty
    (as ``fimtheory verify`` runs) a test's examples depend on its own code and seed only.
    """
    from properties.verify import _without_local_constants

    with _without_local_constants():
        yield
