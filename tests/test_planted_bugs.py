"""Planted bugs the suite must catch. Run on demand: ``pytest -m planted``.

Each test copies the repository's packages (and tests/, pyproject.toml) to a temporary
directory, applies one textual patch to the copy — asserting that the target text occurs
exactly as often as expected, so the test fails loudly when the code moves — and then runs
the checker that must catch the bug against the copy only:

- ``verify``: ``python -m fimtheory verify --claim ID --profile ci --json R`` with
  PYTHONPATH (and cwd) pointing to the copy; the bug is caught when the exit status is
  non-zero **and** the report says ``falsified`` for that claim (a crash is not a catch);
- ``pytest``: ``python -m pytest -x <test file or FILE::TEST>`` run inside the copy; caught when it
  fails with test failures (exit status 1), not with a collection/usage error. A single test is
  named where it states the decision's rule (the control then runs that same test unpatched).

Two guards make a "caught" meaningful: every run first checks that ``fimtheory``,
``fimtheory._generated.series`` and ``properties`` are imported from the copy, and the
control tests run the same checkers on an *unpatched* copy and require them to pass.
The working tree is never modified.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.planted


@pytest.fixture(autouse=True)
def _on_demand_only(request):
    """Run only when selected with ``-m planted`` (several minutes of subprocesses otherwise)."""
    if "planted" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("planted-bug tests run on demand: pytest -m planted")


REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fimtheory", "properties", "symbolic", "torch_checks")
TIMEOUT = 600


@dataclass(frozen=True)
class Plant:
    id: str
    description: str
    file: str
    patches: tuple[tuple[str, str, int], ...]  # (old, new, expected occurrences of old)


# A check is (plant id, kind, target, missed): kind "verify" (target = claim id) or "pytest"
# (target = test file); ``missed`` is None when the check must catch the plant, else the reason
# it is a *known miss* (a finding; the check is then a strict xfail, so it turns red the day
# the miss is fixed and the expectation must be updated).
# History: until the verify runner reported float/mp disagreements on resolved violations as
# errors, five plants (gap = λ1 twice, Weyl λ_min → 0, AH start g_1, AB row sum without abs)
# were overruled by mp adjudication and missed by `verify`; now each is a required catch.

PLANTS = {
    p.id: p
    for p in [
        Plant(
            "a2-sign",
            "wrong sign of a2 in the generated series",
            "fimtheory/_generated/series.py",
            (("    coefficients.append(e_R_e)\n", "    coefficients.append(-e_R_e)\n", 1),),
        ),
        Plant(
            "a2-denominator-lambda1",
            "a2 = Σ E_1j²/λ1 instead of Σ E_1j²/(λ1−λj) (the gaps in the resolvent replaced by λ1)",
            "fimtheory/_generated/series.py",
            (("    R_e = e / d\n", "    R_e = e / lam[0]\n", 1),),
        ),
        Plant(
            "gap-is-lambda1",
            "EigenData.gap returns λ1 instead of γ = λ1 − λ2 (feeds S2's hypothesis and bounds, SIGN)",
            "fimtheory/spectral.py",
            (
                (
                    "        return float(self.eigenvalues[0] - self.eigenvalues[1])\n",
                    "        return float(self.eigenvalues[0])\n",
                    1,
                ),
            ),
        ),
        Plant(
            "remainder-call-lambda1",
            "S2's float evaluator passes λ1 as the gap to bounds.remainder_bounds (claims_series._s2)",
            "fimtheory/claims_series.py",
            (
                (
                    "    rb = bounds.remainder_bounds(eta, eig.gap)\n",
                    "    rb = bounds.remainder_bounds(eta, eig.lambda_max)\n",
                    1,
                ),
            ),
        ),
        Plant(
            "fim-missing-inv-n",
            "F = GᵀG and K = GGᵀ (the 1/n dropped) in fim.py",
            "fimtheory/fim.py",
            (
                ("    F = G.T @ G / G.shape[0]\n", "    F = G.T @ G\n", 1),
                ("    K = G @ G.T / G.shape[0]\n", "    K = G @ G.T\n", 1),
            ),
        ),
        Plant(
            "per-tensor-scale",
            "symmetric integer scale = absmax of the whole tensor whatever the granularity",
            "fimtheory/quantize.py",
            (
                (
                    "        s = np.max(np.abs(g), axis=1, keepdims=True) / scheme.qmax\n",
                    "        s = np.max(np.abs(g), axis=None, keepdims=True) / scheme.qmax\n",
                    1,
                ),
            ),
        ),
        Plant(
            "per-tensor-groups",
            "granularity 'group' regrouped as one tensor-wide group (every kind, steps included)",
            "fimtheory/quantize.py",
            (("    return rows * cols // g, g\n", "    return 1, rows * cols\n", 1),),
        ),
        Plant(
            "partition-le",
            "σ ≤ τ_k instead of σ < τ_k in cell() (searchsorted side='left')",
            "fimtheory/monitor.py",
            (('side="right"', 'side="left"', 1),),
        ),
        Plant(
            "nan-cell-dropped",
            "NaN not sent to the NaN cell by cell() (lands in the top cell)",
            "fimtheory/monitor.py",
            (("        idx = np.where(np.isnan(s), self.nan_cell, idx)\n", "", 1),),
        ),
        Plant(
            "nan-cell-removed",
            "no NaN cell at all (n_cells = K and cell() does not map NaN)",
            "fimtheory/monitor.py",
            (
                ("        idx = np.where(np.isnan(s), self.nan_cell, idx)\n", "", 1),
                ("        self.n_cells = int(t.size + 2)\n", "        self.n_cells = int(t.size + 1)\n", 1),
            ),
        ),
        Plant(
            "S2-second-bound-10x-smaller",
            "second-order remainder bound 4η³/(γ(γ−2η)) divided by 10",
            "fimtheory/_generated/series.py",
            (("    return eta * (4*q**2) / (1 - 2*q)\n", "    return eta * (0.4*q**2) / (1 - 2*q)\n", 1),),
        ),
        Plant(
            "S2-first-bound-10x-smaller",
            "first-order remainder bound 2η²/(γ−2η) divided by 10",
            "fimtheory/_generated/series.py",
            (("    return eta * (2*q) / (1 - 2*q)\n", "    return eta * (0.2*q) / (1 - 2*q)\n", 1),),
        ),
        Plant(
            "weyl-lambda-min-zero",
            "Weyl lower bound λ_max(A) + λ_min(E) with λ_min(E) replaced by 0",
            "fimtheory/bounds.py",
            (
                (
                    "    return float(la + we[0]), float(la + we[-1])\n",
                    "    return float(la + 0.0), float(la + we[-1])\n",
                    1,
                ),
            ),
        ),
        Plant(
            "ah-start-first-row",
            "AH started at the first score g_1 instead of ḡ",
            "fimtheory/approx.py",
            (("    u = gbar / power_of_two_scale(gbar)\n", "    u = Gs[0] / power_of_two_scale(Gs[0])\n", 1),),
        ),
        Plant(
            "ab-row-sum-without-abs",
            "AB upper term max_i (1/n)Σ_j ⟨g_i,g_j⟩ without the absolute value",
            "fimtheory/approx.py",
            (
                (
                    '"max_abs_row_sum_gram": float(np.max(np.sum(np.abs(K), axis=1))),',
                    '"max_abs_row_sum_gram": float(np.max(np.sum(K, axis=1))),',
                    1,
                ),
            ),
        ),
        Plant(
            "sr-biased",
            "stochastic rounding rounds up with probability 0.9·frac instead of frac (biased)",
            "fimtheory/quantize.py",
            (
                (
                    "    q = np.clip(fl + (u < (y - fl)), lo, hi)\n",
                    "    q = np.clip(fl + (u < 0.9 * (y - fl)), lo, hi)\n",
                    1,
                ),
            ),
        ),
        # --- one plant per verdict decision function (certificate sign, precision escalation,
        # status assignment, replay comparison, hypothesis re-check)
        Plant(
            "certificate-nonstrict-touching-zero",
            "Certificate.certified: a non-strict weakening certified by hi ≤ 0 (an enclosure touching 0 "
            "from below, which the weakening's margin ≥ 0 allows, counted as a violation)",
            "properties/certify.py",
            (
                (
                    "        return bool(self.hi <= 0) if self.strict else bool(self.hi < 0)\n",
                    "        return bool(self.hi <= 0)\n",
                    1,
                ),
            ),
        ),
        Plant(
            "ladder-settles-without-absolute-band",
            "adjudication ladder: two rungs 'settle' when they agree relatively (|Δ| ≤ |m|/4) even if the "
            "difference is above 10^−d/2 (a margin below the resolution of d digits is read at d digits)",
            "fimtheory/adjudication.py",
            (
                (
                    "                if diff <= band and diff <= abs(m) / 4:\n",
                    "                if diff <= abs(m) / 4:\n",
                    1,
                ),
            ),
        ),
        Plant(
            "short-run-verified",
            "status assignment: a run that stopped before the requested number of examples stays 'verified'",
            "properties/verify.py",
            (("    if report.examples < report.examples_requested:\n", "    if False:\n", 1),),
        ),
        Plant(
            "replay-ignores-disjoint-enclosures",
            "replay comparison: a re-certified enclosure disjoint from the stored one still 'agrees'",
            "properties/counterexamples.py",
            (("        and stored.lo <= new.hi\n        and new.lo <= stored.hi\n", "", 1),),
        ),
        Plant(
            "near-boundary-hypotheses-not-rechecked",
            "adjudication: hypotheses within HYPOTHESIS_BAND of their boundary are never re-decided in "
            "interval arithmetic",
            "fimtheory/adjudication.py",
            (("    return sorted(k for k, v in margins.items() if not v > HYPOTHESIS_BAND)\n", "    return []\n", 1),),
        ),
        # --- more verdict decision functions (one plant each): certificate sign logic, the
        # method of an own enclosure, precision escalation, status assignment, exit codes,
        # replay comparison and tamper evidence, hypothesis checks, the subject probe, the
        # T4.3b-S precision adaptation
        Plant(
            "certificate-usable-non-finite",
            "Certificate.usable: an enclosure with a non-finite endpoint counted as usable (so [−inf, −inf] "
            "'certifies' a violation)",
            "properties/certify.py",
            (
                (
                    "        return bool(mpmath.isfinite(self.lo) and mpmath.isfinite(self.hi))\n",
                    "        return True\n",
                    1,
                ),
            ),
        ),
        Plant(
            "certificate-sign-touching-zero",
            "Certificate.sign: an enclosure touching 0 from below (hi = 0) read as certainly negative",
            "properties/certify.py",
            (
                (
                    "        if self.hi < 0:\n            return -1\n",
                    "        if self.hi <= 0:\n            return -1\n",
                    1,
                ),
            ),
        ),
        Plant(
            "certificate-own-enclosure-method",
            "certify(): a weakening's own rigorous enclosure recorded as method 'eigenvalues' instead of "
            "'declared-enclosure'",
            "properties/certify.py",
            (
                (
                    '    method = _METHOD.get(wid, DECLARED_ENCLOSURE if own else "eigenvalues")\n',
                    '    method = _METHOD.get(wid, "eigenvalues")\n',
                    1,
                ),
            ),
        ),
        Plant(
            "enclosure-verdict-nonstrict-touching-zero",
            "adjudication._enclosure_verdict: a non-strict claim's enclosure with hi = 0 read as 'violated'",
            "fimtheory/adjudication.py",
            (
                (
                    '    if hi <= 0 if strict else hi < 0:\n        return "violated"\n',
                    '    if hi <= 0:\n        return "violated"\n',
                    1,
                ),
            ),
        ),
        Plant(
            "enclosure-precision-not-escalated",
            "adjudication._enclose: an enclosure that does not exclude 0 is retried at the same precision "
            "instead of doubling it",
            "fimtheory/adjudication.py",
            (('does not exclude 0"\n        d *= 2\n', 'does not exclude 0"\n', 1),),
        ),
        Plant(
            "start-dps-ignores-dynamic-range",
            "adjudication.start_dps: the ladder always starts at the requested digits, whatever the "
            "instance's dynamic range",
            "fimtheory/adjudication.py",
            (
                (
                    "    return max(dps, min(ADJUDICATION_MAX_START_DPS, digits + ADJUDICATION_GUARD_DIGITS))\n",
                    "    return dps\n",
                    1,
                ),
            ),
        ),
        Plant(
            "recheck-ignores-failed-hypothesis",
            "adjudication._recheck_hypotheses: a hypothesis proved false in interval arithmetic is ignored",
            "fimtheory/adjudication.py",
            (
                (
                    "strict, attempts=2)\n    if failed:\n",
                    "strict, attempts=2)\n    if False:\n",
                    1,
                ),
            ),
        ),
        Plant(
            "disagreement-threshold-huge",
            "adjudication.disagrees: a resolved float violation disagrees with the reference only below −1e300",
            "fimtheory/adjudication.py",
            (("        and outcome.margin < -ADJUDICATION_RTOL\n", "        and outcome.margin < -1e300\n", 1),),
        ),
        Plant(
            "strict-zero-margin-holds",
            "verify.check_property: a strict claim's float margin exactly 0 counted as holding (never adjudicated)",
            "properties/verify.py",
            (("        holds = (margin > 0) if strict else (margin >= 0)\n", "        holds = margin >= 0\n", 1),),
        ),
        Plant(
            "disagreement-not-reported",
            "verify.check_property: a float64-resolved violation the reference says holds is not reported",
            "properties/verify.py",
            (("            if disagrees(out, bool(holds)):\n", "            if False:\n", 1),),
        ),
        Plant(
            "undecided-falsifies",
            "verify.check_property: an undecided adjudication is not set aside (holds=None then reads as a violation)",
            "properties/verify.py",
            (('            if decision.verdict == "undecided":\n', "            if False:\n", 1),),
        ),
        Plant(
            "exit-status-inconclusive-passes",
            "verify.exit_status: an inconclusive claim under ci/thorough exits 0",
            "properties/verify.py",
            (
                (
                    '    if profile in STRICT_PROFILES and statuses & {"inconclusive", "error"}:\n',
                    '    if profile in STRICT_PROFILES and statuses & {"error"}:\n',
                    1,
                ),
            ),
        ),
        Plant(
            "decide-old-contract-undecided-holds",
            "verify.decide: an older adjudicator's undecided answer (holds None) read as 'holds'",
            "properties/verify.py",
            (
                (
                    '        return Decision("undecided", None, margin, None, dps, "adjudicator could not decide")\n',
                    '        return Decision("holds", True, margin, None, dps, "adjudicator could not decide")\n',
                    1,
                ),
            ),
        ),
        Plant(
            "digest-blind-to-last-bits",
            "serialize._canonical: floats canonicalised at 12 significant digits (a 1-ulp change of an input "
            "keeps the digest)",
            "properties/serialize.py",
            (
                (
                    "                vals = [float.fromhex(v).hex() for v in vals]\n",
                    '                vals = [float(f"{float.fromhex(v):.12g}").hex() for v in vals]\n',
                    1,
                ),
            ),
        ),
        Plant(
            "replay-skips-digest",
            "replay_file: the inputs' digest is not compared with the stored one",
            "properties/counterexamples.py",
            (('    if digest != rec["inputs_sha256"]:\n', "    if False:\n", 1),),
        ),
        Plant(
            "replay-legacy-method-refused",
            "replay comparison (same_method): a stored 'eigenvalues' no longer matches a fresh "
            "'declared-enclosure' (files written before that name stop replaying)",
            "properties/counterexamples.py",
            (("    return stored == new or LEGACY_METHODS.get(stored) == new\n", "    return stored == new\n", 1),),
        ),
        Plant(
            "hunt-undecided-is-a-counterexample",
            "counterexamples._confirm: an undecided adjudication (holds None) confirmed as a violation",
            "properties/counterexamples.py",
            (("    return holds is False, out.margin\n", "    return not holds, out.margin\n", 1),),
        ),
        Plant(
            "s2-hypothesis-eta-below-gap",
            "S2's hypothesis check 2η < γ weakened to η < γ (the remainder bounds are used where they do not hold)",
            "fimtheory/claims_series.py",
            (("    if not 2 * eta < eig.gap:\n", "    if not eta < eig.gap:\n", 1),),
        ),
        Plant(
            "s2-hypothesis-and-guard-weakened",
            "S2's hypothesis check 2η < γ weakened to η < γ and the remainder bounds computed without "
            "bounds.remainder_bounds' own check of 2η < γ (negative bounds used in the band γ/2 ≤ η < γ)",
            "fimtheory/claims_series.py",
            (
                ("    if not 2 * eta < eig.gap:\n", "    if not eta < eig.gap:\n", 1),
                (
                    "    rb = bounds.remainder_bounds(eta, eig.gap)\n",
                    "    rb = bounds.RemainderBounds(eta, eig.gap, float(_series.remainder_bound_first(eta, eig.gap)), "
                    "float(_series.remainder_bound_second(eta, eig.gap)))\n",
                    1,
                ),
            ),
        ),
        Plant(
            "score-probe-skipped",
            "subjects.probe_subject: a logistic score function is not called by the probe (a wrong dtype, "
            "shape or NaN answer is not refused before the work)",
            "properties/subjects.py",
            (
                (
                    "            score_value(subject, model, X, np.array([1.0, 0.0, 1.0]), np.array([0.3, -0.2]))\n",
                    "            pass\n",
                    1,
                ),
            ),
        ),
        Plant(
            "t43b-s-precision-not-adapted",
            "T4.3b-S evaluators: no extra digits for a bound far below λ1 (the precision does not adapt to "
            "the scale of the bound)",
            "fimtheory/claims_sharp.py",
            (("    if ratio is None or ratio <= 1:\n        return 0\n", "    if True:\n        return 0\n", 1),),
        ),
        Plant(
            "certify-no-precision-ladder",
            "certify(): only the starting precision is tried (no escalation up DPS_LADDER when the sign is undecided)",
            "properties/certify.py",
            (("    for d in sorted({dps, *[x for x in ladder if x > dps]}):\n", "    for d in [dps]:\n", 1),),
        ),
        Plant(
            "strict-tie-holds",
            "adjudicate: a strict claim whose margin collapses to 0 is counted as a holding tie (no "
            "rigorous enclosure asked)",
            "fimtheory/adjudication.py",
            (('    if kind == "tie" and not strict:\n', '    if kind == "tie":\n', 1),),
        ),
        Plant(
            "rayleigh-unnormalised-v",
            "R: a given top vector v not normalised (λ1 + vᵀEv with |v| ≠ 1)",
            "fimtheory/bounds.py",
            (("        v = v / norm\n", "        v = v\n", 1),),
        ),
    ]
}

CHECKS = [
    ("a2-sign", "verify", "SIGN", None),
    ("a2-sign", "verify", "S2", None),
    ("a2-denominator-lambda1", "verify", "SIGN", None),
    ("a2-denominator-lambda1", "verify", "S2", None),
    ("gap-is-lambda1", "verify", "S2", None),
    ("gap-is-lambda1", "pytest", "tests/test_core_spectral.py", None),
    ("remainder-call-lambda1", "verify", "S2", None),
    ("fim-missing-inv-n", "pytest", "tests/test_core_fim.py", None),
    ("per-tensor-scale", "pytest", "tests/test_quantize.py", None),
    ("per-tensor-scale", "pytest", "tests/test_torch_quantizers.py", None),
    ("per-tensor-groups", "pytest", "tests/test_quantize.py", None),
    ("partition-le", "verify", "C", None),
    ("nan-cell-dropped", "verify", "C", None),
    ("nan-cell-removed", "verify", "C", None),
    ("S2-second-bound-10x-smaller", "verify", "S2", None),
    ("S2-second-bound-10x-smaller", "pytest", "tests/test_mutation_killers.py", None),
    ("S2-first-bound-10x-smaller", "verify", "S2", None),
    ("weyl-lambda-min-zero", "verify", "W", None),
    ("weyl-lambda-min-zero", "pytest", "tests/test_core_spectral.py", None),
    ("ah-start-first-row", "verify", "AH", None),
    ("ah-start-first-row", "pytest", "tests/test_core_approx.py", None),
    ("ab-row-sum-without-abs", "verify", "AB", None),
    ("ab-row-sum-without-abs", "pytest", "tests/test_core_approx.py", None),
    ("sr-biased", "pytest", "tests/test_quantize.py", None),
    ("rayleigh-unnormalised-v", "pytest", "tests/test_core_spectral.py", None),
    ("certificate-nonstrict-touching-zero", "pytest", "tests/test_certify.py", None),
    ("ladder-settles-without-absolute-band", "pytest", "tests/test_adjudication.py", None),
    ("short-run-verified", "pytest", "tests/test_properties_verify.py", None),
    (
        "replay-ignores-disjoint-enclosures",
        "pytest",
        "tests/test_replay_tamper.py",
        "masked: replay's step 5 (the independent adjudicator's enclosure must intersect the stored "
        "one) rejects every disjoint stored enclosure the tamper tests build, so no replay test "
        "depends on enclosures_agree's intersection test",
    ),
    ("replay-ignores-disjoint-enclosures", "pytest", "tests/test_mutation_killers_verdicts.py", None),
    ("near-boundary-hypotheses-not-rechecked", "pytest", "tests/test_adjudication.py", None),
    # a pytest target may be one test (FILE::TEST): the test that states the decision's rule
    (
        "certificate-usable-non-finite",
        "pytest",
        "tests/test_mutation_killers_verdicts.py::test_a_stored_non_finite_enclosure_reads_back_and_certifies_nothing",
        None,
    ),
    ("certificate-sign-touching-zero", "pytest", "tests/test_certify.py::test_certificate_decision_table", None),
    ("certificate-own-enclosure-method", "pytest", "tests/test_subjects_certificate_method.py", None),
    (
        "enclosure-verdict-nonstrict-touching-zero",
        "pytest",
        "tests/test_mutation_killers_adjudication.py::test_enclosure_verdict_table",
        None,
    ),
    (
        "enclosure-precision-not-escalated",
        "pytest",
        "tests/test_adjudication.py::test_enclosure_that_narrows_with_precision_is_used_once_it_excludes_zero",
        None,
    ),
    (
        "start-dps-ignores-dynamic-range",
        "pytest",
        "tests/test_adjudication.py::test_start_dps_follows_the_dynamic_range",
        None,
    ),
    (
        "recheck-ignores-failed-hypothesis",
        "pytest",
        "tests/test_adjudication.py::test_hypothesis_failing_in_exact_arithmetic_is_not_met_never_violated",
        None,
    ),
    (
        "disagreement-threshold-huge",
        "pytest",
        "tests/test_mutation_killers_adjudication.py::test_disagrees_table",
        None,
    ),
    (
        "strict-zero-margin-holds",
        "pytest",
        "tests/test_mutation_killers_verify.py::test_margin_zero_goes_to_the_adjudicator_only_for_a_strict_claim",
        None,
    ),
    (
        "disagreement-not-reported",
        "pytest",
        "tests/test_mutation_killers_verify.py::test_float_resolved_violation_that_the_reference_holds_is_an_error",
        None,
    ),
    (
        "undecided-falsifies",
        "pytest",
        "tests/test_properties_verify.py::test_a_float_violation_is_falsified_only_through_the_adjudicator",
        None,
    ),
    ("exit-status-inconclusive-passes", "pytest", "tests/test_properties_verify.py::test_exit_status_by_profile", None),
    (
        "decide-old-contract-undecided-holds",
        "pytest",
        "tests/test_mutation_killers_verify.py::test_decide_reads_the_old_pair_contract",
        None,
    ),
    (
        "digest-blind-to-last-bits",
        "pytest",
        "tests/test_replay_tamper.py::test_every_one_ulp_input_change_does_not_reproduce",
        None,
    ),
    (
        "replay-skips-digest",
        "pytest",
        "tests/test_replay_tamper.py::test_every_one_ulp_input_change_does_not_reproduce",
        None,
    ),
    (
        "replay-legacy-method-refused",
        "pytest",
        "tests/test_subjects_certificate_method.py::test_old_files_saying_eigenvalues_replay_and_are_recertified_as_declared",
        None,
    ),
    (
        "hunt-undecided-is-a-counterexample",
        "pytest",
        "tests/test_mutation_killers_verdicts.py::test_confirm_routes_float_violations_to_the_adjudicator",
        None,
    ),
    # caught through the library's own guard (GUARD_CATCHES): S2's strategy draws the band γ/2 ≤ η < γ
    ("s2-hypothesis-eta-below-gap", "verify", "S2", None),
    ("s2-hypothesis-eta-below-gap", "pytest", "tests/test_core_claims.py::test_hypotheses_not_met", None),
    # caught as an implementation disagreement: the weakened check says "met" on a band draw while
    # S2's own hypothesis margin for 2η < γ is far below -HYPOTHESIS_BAND (check_property's
    # contradicted_hypotheses), so the run ends in an error with the instance, not a rejection
    ("s2-hypothesis-and-guard-weakened", "verify", "S2", None),
    ("s2-hypothesis-and-guard-weakened", "pytest", "tests/test_core_claims.py::test_hypotheses_not_met", None),
    (
        "certify-no-precision-ladder",
        "pytest",
        "tests/test_certify.py::test_exact_tie_of_non_strict_weakening_is_not_certified",
        None,
    ),
    ("strict-tie-holds", "pytest", "tests/test_adjudication.py::test_strict_exact_tie_is_proved_and_violated", None),
    (
        "score-probe-skipped",
        "pytest",
        "tests/test_subjects_scores.py::test_bad_score_functions_are_refused_by_the_probe",
        None,
    ),
    (
        "t43b-s-precision-not-adapted",
        "pytest",
        "tests/test_sharp_t43.py::test_t43b_sharp_enclosure_stays_tight_when_the_bound_is_tiny",
        None,
    ),
]
NEEDS = {"tests/test_torch_quantizers.py": "torch"}

# Plants that ``verify`` catches through a guard of the library rather than through a verdict.
# The float evaluator lets an instance through its weakened hypothesis check, and the bound it
# calls next checks the hypothesis again and raises HypothesesNotMet; the runner reports that as
# an error (a crash: no instance is stored). Only that error counts as the catch: the guard's own
# message, naming an instance on which the weakened check and the real hypothesis disagree.
# For S2 (check 2η < γ weakened to η < γ) that is an instance of the band γ/2 ≤ η < γ, which
# S2's strategy draws (properties.claim_strategies.s2_hypothesis_band); the message prints η and
# γ to 6 significant digits, hence the 1e-5 slack.
GUARD_CATCHES = {
    ("s2-hypothesis-eta-below-gap", "S2"): (
        re.compile(r"HypothesesNotMet: S2 needs 2η < γ; got η = (\S+), γ = (\S+)"),
        lambda eta, gap: 2 * eta >= gap * (1 - 1e-5) and eta <= gap * (1 + 1e-5),
    ),
}


def guard_caught(plant_id: str, claim: str, rep: dict) -> bool:
    """Whether the verify report ``rep`` is the guard's catch of the plant (see GUARD_CATCHES)."""
    pattern, in_band = GUARD_CATCHES[(plant_id, claim)]
    found = pattern.fullmatch(rep.get("error") or "") if rep.get("status") == "error" else None
    return found is not None and in_band(float(found[1]), float(found[2]))


def _check_params():
    out = []
    for pid, kind, target, missed in CHECKS:
        marks = [pytest.mark.xfail(strict=True, reason=missed)] if missed else []
        out.append(pytest.param(PLANTS[pid], kind, target, id=f"{pid}--{kind}-{Path(target).stem}", marks=marks))
    return out


def _ignore(_dir, names):
    return [n for n in names if n in ("__pycache__", ".hypothesis", ".pytest_cache") or n.endswith(".pyc")]


def make_copy(dest: Path, plant: Plant | None = None) -> Path:
    """Copy the packages, tests/ and pyproject.toml to ``dest`` and apply ``plant``'s patches."""
    for pkg in PACKAGES:
        if (REPO / pkg).is_dir():
            shutil.copytree(REPO / pkg, dest / pkg, ignore=_ignore)
    shutil.copytree(REPO / "tests", dest / "tests", ignore=_ignore)
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    if plant is not None:
        target = dest / plant.file
        text = target.read_text(encoding="utf-8")
        for old, new, count in plant.patches:
            found = text.count(old)
            assert found == count, (
                f"planted bug {plant.id!r}: expected {count} occurrence(s) of {old!r} in {plant.file}, "
                f"found {found}; the code moved — update the plant, do not drop it"
            )
            text = text.replace(old, new)
        target.write_text(text, encoding="utf-8")
    return dest


def _env(copy: Path) -> dict:
    env = os.environ.copy()
    env["PYTHONPATH"] = str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    return env


def assert_imports_from_copy(copy: Path) -> None:
    code = (
        "import fimtheory, fimtheory._generated.series as s, properties, fimtheory.claims as c; "
        "print(fimtheory.__file__); print(s.__file__); print(properties.__file__); print(c.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    files = [Path(p).resolve() for p in out.stdout.split()]
    assert len(files) == 4
    for f in files:
        assert copy.resolve() in f.parents, f"{f} is not imported from the copy {copy}"


def run_verify(copy: Path, claim: str, profile: str = "ci") -> tuple[int, dict, str]:
    report = copy / f"verify-{claim}.json"
    cmd = [sys.executable, "-m", "fimtheory", "verify", "--claim", claim, "--profile", profile, "--json", str(report)]
    out = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=TIMEOUT)
    data = json.loads(report.read_text()) if report.exists() else {}
    by_id = {c["id"]: c for c in data.get("claims", [])}
    return out.returncode, by_id.get(claim, {}), out.stdout + out.stderr


def run_pytest(copy: Path, test_file: str) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not planted", test_file]
    out = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=TIMEOUT)
    return out.returncode, out.stdout[-4000:] + out.stderr[-2000:]


def _needs(module: str | None) -> None:
    if module is not None:
        pytest.importorskip(module, reason=f"this planted bug lives in {module}, which is not importable here")


@pytest.mark.parametrize("plant,kind,target", _check_params())
def test_planted_bug_is_caught(plant: Plant, kind: str, target: str, tmp_path: Path) -> None:
    _needs(NEEDS.get(target))
    copy = make_copy(tmp_path / "repo", plant)
    assert_imports_from_copy(copy)
    t0 = time.perf_counter()
    if kind == "verify":
        rc, rep, log = run_verify(copy, target)
        secs = time.perf_counter() - t0
        print(
            f"PLANTED {plant.id}: verify --claim {target} -> rc={rc} status={rep.get('status')} "
            f"worst_margin={rep.get('worst_margin')} adjudicated={rep.get('adjudicated')} in {secs:.1f}s"
        )
        assert rc != 0, f"planted bug {plant.id!r} NOT caught by verify --claim {target}:\n{log}"
        if (plant.id, target) in GUARD_CATCHES:
            assert guard_caught(plant.id, target, rep), f"{plant.id}: exit {rc}, not the guard's catch: {rep}\n{log}"
            return
        # A catch is a falsified claim, or an error because the float code disagrees with the
        # high-precision reference on a resolved violation — never a crash.
        caught = rep.get("status") == "falsified" or (
            rep.get("status") == "error" and "disagrees with the reference" in (rep.get("error") or "")
        )
        assert caught, f"{plant.id}: exit {rc} but status {rep.get('status')!r}:\n{log}"
        assert rep.get("counterexample"), f"{plant.id}: caught without a recorded instance"
    else:
        rc, log = run_pytest(copy, target)
        secs = time.perf_counter() - t0
        print(f"PLANTED {plant.id}: pytest {target} -> rc={rc} in {secs:.1f}s")
        assert rc == 1 and "failed" in log, f"planted bug {plant.id!r} NOT caught by {target} (exit {rc}):\n{log}"


CONTROL_CLAIMS = sorted({target for _, kind, target, _ in CHECKS if kind == "verify"})
CONTROL_FILES = sorted({target for _, kind, target, _ in CHECKS if kind == "pytest"})


@pytest.mark.parametrize("claim", CONTROL_CLAIMS)
def test_control_unpatched_copy_verifies(claim: str, tmp_path: Path) -> None:
    """Without a plant the same checker passes on the copy: a 'caught' above is the plant's doing."""
    copy = make_copy(tmp_path / "repo")
    assert_imports_from_copy(copy)
    rc, rep, log = run_verify(copy, claim)
    assert rc == 0 and rep.get("status") == "verified", log


@pytest.mark.parametrize("test_file", CONTROL_FILES)
def test_control_unpatched_copy_passes_pytest(test_file: str, tmp_path: Path) -> None:
    _needs(NEEDS.get(test_file))
    copy = make_copy(tmp_path / "repo")
    rc, log = run_pytest(copy, test_file)
    assert rc == 0, log


def test_patch_targets_are_exact() -> None:
    """Every plant's target text occurs as expected in the current sources (fast, no subprocess)."""
    for plant in PLANTS.values():
        text = (REPO / plant.file).read_text(encoding="utf-8")
        for old, _new, count in plant.patches:
            assert text.count(old) == count, (plant.id, old)
