"""A claim of this project's own, declared with fimtheory's public Claim API
(:func:`fimtheory.claim_api.declare_claim`) and checked by the plugin exactly like a built-in
one: the engine's λ_max of a PSD matrix never exceeds its trace (up to the engine's rounding
allowance)."""

import mpmath
import numpy as np
from qguard.engines import dense_lambda_max

from fimtheory.claim_api import Outcome, declare_claim, outcome
from properties.pytest_plugin import check
from properties.strategies import psd_matrices

EPS = float(np.finfo(float).eps)


def _allowance(A):
    return 64 * A.shape[0] * EPS


def trace_margin(A) -> Outcome:
    trace = float(np.trace(A))
    if not trace > 0:
        return Outcome.not_met("A = 0")
    margin = (trace - dense_lambda_max(A)) / trace + _allowance(A)
    return outcome(margin)


def trace_margin_mp(A, dps):
    with mpmath.workdps(dps):
        trace = mpmath.fsum(mpmath.mpf(float(x)) for x in np.diag(A))
        return (trace - mpmath.mpf(dense_lambda_max(A))) / trace + mpmath.mpf(_allowance(A))


TRACE_BOUND = declare_claim(
    "QG-trace-bound",
    title="the engine's λ_max of a PSD matrix is at most its trace",
    statement="engine(A) ≤ tr A + 64·n·eps·tr A for A ⪰ 0",
    hypotheses=("A symmetric PSD, A ≠ 0",),
    evaluate=trace_margin,
    evaluate_mp=trace_margin_mp,
    strategy=psd_matrices,
)


@check(TRACE_BOUND, strategy=psd_matrices(n=(1, 6)))
def test_dense_engine_below_trace(fimtheory_report):
    assert fimtheory_report.examples == fimtheory_report.examples_requested
