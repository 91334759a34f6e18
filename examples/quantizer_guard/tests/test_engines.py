"""λ_max engine guards: Weyl (W), the directional bound (R) and AB's closed-form bounds,
each with the engine computing the λ_max under test."""

import pytest
from qguard.engines import dense_lambda_max, fixed_vector_rayleigh

from properties.pytest_plugin import check


@pytest.mark.parametrize("claim", ["W", "R", "AB"])
def test_dense_engine(fimtheory_check, claim):
    result = fimtheory_check(claim, subject=dense_lambda_max)
    assert result.report.status == "verified"


@check("R", subject=fixed_vector_rayleigh)
def test_fixed_vector_engine_directional_bound():
    """Fails: the Rayleigh quotient of a fixed vector falls below λ1 + v1ᵀEv1."""


def test_strategies_fixture(fimtheory_strategies, fimtheory_settings):
    """The strategies are available to the project's own Hypothesis tests: here the dense
    engine lies between the largest diagonal entry and the Gershgorin bound."""
    import numpy as np
    from hypothesis import given, settings

    @settings(fimtheory_settings, max_examples=20)
    @given(fimtheory_strategies.psd_matrices(n=(1, 6)))
    def prop(A):
        lam = dense_lambda_max(A)
        slack = 64 * A.shape[0] * np.finfo(float).eps * float(np.abs(A).sum(axis=1).max())
        assert float(np.diag(A).max()) - slack <= lam <= float(np.abs(A).sum(axis=1).max()) + slack

    prop()
