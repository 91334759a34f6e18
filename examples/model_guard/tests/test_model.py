"""The suite's λ_max engines (ENGINE) and T4.3a under the suite's quantizers on the classifier."""

import pytest

pytest.importorskip("torch", reason="the model checks need torch")

from mguard.model import make_classifier  # noqa: E402

from properties.pytest_plugin import check  # noqa: E402


@check("ENGINE", subject=make_classifier, max_examples=20)
def test_engines_agree_with_dense_float64_on_the_classifier():
    pass


@check("T4.3a", subject=make_classifier, max_examples=20)
def test_t43a_holds_on_the_classifier_under_quantization(fimtheory_report):
    assert fimtheory_report.rejected == 0
