"""T4.3 guards on the rounding rules: per draw (T4.3a) and in expectation (T4.3b, Jensen:
an unbiased rule cannot lower E λ_max(F + E) below λ_max(F))."""

from qguard.quantizers import stochastic_rounding, stochastic_rounding_trunc

from properties.pytest_plugin import check


@check("T4.3b", subject=stochastic_rounding)
def test_stochastic_rounding_raises_lambda_max_in_expectation(fimtheory_report):
    assert fimtheory_report.status == "verified"
    assert fimtheory_report.examples == fimtheory_report.examples_requested


@check("T4.3a", subject=stochastic_rounding)
def test_stochastic_rounding_directional_bound():
    pass


@check("T4.3b", subject=stochastic_rounding_trunc)
def test_trunc_rounding_raises_lambda_max_in_expectation():
    """Fails: the rule is biased, and fimtheory certifies an instance where it lowers λ_max."""
