"""The empirical-FIM identity (EF) and Weyl's bounds at quantized θ (W) on the score functions."""

from mguard.scores import logistic_score, logistic_score_sign_slip, softmax_score_flattened_wrong

from properties.pytest_plugin import check


@check("EF", subject=logistic_score)
def test_logistic_score_gives_the_empirical_fim(fimtheory_report):
    assert fimtheory_report.examples == fimtheory_report.examples_requested


@check("W", subject=logistic_score)  # W on a declared score subject is W[score]
def test_logistic_score_weyl_at_quantized_theta():
    pass


@check("EF", subject=logistic_score_sign_slip)
def test_sign_slip_gives_the_empirical_fim():
    """Fails: σ(−z) for σ(z); fimtheory certifies an instance where GᵀG/n is far from F."""


@check("EF", subject=softmax_score_flattened_wrong)
def test_flattening_gives_the_empirical_fim():
    """Fails: the entries of F are permuted."""


@check("W", subject=softmax_score_flattened_wrong)
def test_flattening_keeps_the_spectrum():
    """Passes: a permutation of θ keeps every eigenvalue, so W cannot see this bug (EF does)."""
