"""T4.3b-S and T4.3c-S (the sharp bounds in expectation) against independent references.

The references are written here from the statements (docs/theory.md, T4.3b-S / T4.3c-S): at
60 digits, a2 = Σ_{j≥2} (v_jᵀEv)²/(λ1 − λj) from an explicit eigendecomposition, η the largest
|eigenvalue| of E, ‖P⊥Ev‖ from the projector, and the 2 × 2 closed form
λ_max = tr/2 + √((Δ/2)² + b²). Only :func:`fimtheory.highprec.mp_eigh` is shared.
"""

from __future__ import annotations

from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from fimtheory import claims, claims_sharp
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision
from fimtheory.instances import NoiseEnsemble
from properties import counterexamples as cx
from properties.claim_strategies import strategy_for

DPS = 60
K = 4 / (3 * np.sqrt(3))
CORPUS = Path(__file__).parent / "counterexamples"


def _settings(n):
    return settings(
        max_examples=n, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )


def reference(inst: NoiseEnsemble):
    """60-digit mean remainder E λ' − λ1 − E[a2] and the T4.3b-S bound, from the definitions."""
    with working_precision(DPS):
        F = mp_matrix(inst.F)
        eig = mp_eigh(F, DPS)
        lam = eig.eigenvalues
        n = F.rows
        v = eig.vector(0)
        rem, b1, b2 = [], [], []
        for E in inst.scaled():
            Em = mp_matrix(E)
            Ev = Em * v
            a2 = mpmath.fsum(((eig.vector(j).T * Ev)[0, 0]) ** 2 / (lam[0] - lam[j]) for j in range(1, n))
            P = mpmath.eye(n) - v * v.T
            w = P * Ev
            w2 = mpmath.fsum(w[i, 0] ** 2 for i in range(n))
            ee = mp_eigh(Em, DPS).eigenvalues
            eta = max(abs(ee[0]), abs(ee[-1]))
            rem.append(mp_eigh(F + Em, DPS).eigenvalues[0] - lam[0] - a2)
            b1.append(mpmath.mpf(4) / (3 * mpmath.sqrt(3)) * eta**3 / (lam[0] - lam[1]) ** 2)
            b2.append(w2**2 / (lam[0] - lam[1]) ** 3)
        m = len(rem)
        return mpmath.fsum(rem) / m, mpmath.fsum(b1) / m, mpmath.fsum(b2) / m


def test_t43b_s_holds_and_matches_the_reference():
    claim = claims.get_claim("T4.3b-S")
    seen = []

    @_settings(60)
    @given(strategy_for(claim.strategy))
    def prop(inst):
        out = claim.evaluate(inst)
        if not out.hypotheses_met or out.details.get("bound", 0.0) == 0.0:
            return
        rem, b1, b2 = reference(inst)
        b = b1 + b2
        assert rem + b >= 0, "T4.3b-S violated at 60 digits"
        ref_margin = float((rem + b) / b)
        if out.float_resolved:
            assert out.margin == pytest.approx(ref_margin, rel=1e-5, abs=1e-6)
        assert float(claim.evaluate_mp(inst, 40)) == pytest.approx(ref_margin, rel=1e-12, abs=1e-20)
        seen.append(out.details["eta_bar_over_gap"])

    prop()
    assert len(seen) >= 20
    assert max(seen) > 0.5, "the strategy should reach η̄ beyond the disc 2η̄ < γ (no disc is needed)"


def _antithetic_2x2(eta, c, gap=1.0):
    F = np.diag([gap, 0.0])
    s = np.sqrt(1 - c * c)
    E = eta * np.array([[c, s], [s, -c]])
    return NoiseEnsemble(F, (E, -E))


@pytest.mark.parametrize("eta", [0.05, 0.2, 0.7])
def test_second_order_truncation_fails_on_the_closed_form(eta):
    """c = 0: λ_max(F ± E) = γ/2 + √(γ²/4 + η²) on both draws, a2 = η²/γ: the mean remainder is
    γ/2 + √(γ²/4 + η²) − γ − η²/γ = −η⁴/γ³ + O(η⁶) < 0, so λ1 + E[a2] is not a lower bound."""
    inst = _antithetic_2x2(eta, 0.0)
    w = claims.get_claim("T4.3b-S").weakening("T4.3b-S-second-order")
    out = w.evaluate(inst)
    with working_precision(DPS):
        e = mpmath.mpf(eta)
        exact = mpmath.mpf(1) / 2 + mpmath.sqrt(mpmath.mpf(1) / 4 + e * e) - 1 - e * e
    assert exact < 0
    assert out.details["remainder"] == pytest.approx(float(exact), rel=1e-8)
    assert out.margin < 0
    holds = claims.get_claim("T4.3b-S").evaluate(inst)
    assert holds.margin > 0  # the sharp bound −Kη³ − η⁴ is below −η⁴


def test_cubic_term_is_needed_on_a_skewed_ensemble():
    """{E, −E/2, −E/2} with the extremal c = +1/√3 (a3(E) = −Kη³/γ² for A = diag(γ, 0)):
    E[a3] = a3(E)/4 is of order η³ and negative, so the ‖P⊥Ev‖⁴/γ³ term alone does not bound it."""
    c = 1 / np.sqrt(3)
    F = np.diag([1.0, 0.0])
    E = 1e-2 * np.array([[c, np.sqrt(1 - c * c)], [np.sqrt(1 - c * c), -c]])
    inst = NoiseEnsemble(F, (E, -0.5 * E, -0.5 * E))
    assert inst.exact_mean_is_zero()
    rem, b1, b2 = reference(inst)
    assert rem < -b2 < 0  # the weakening is false at 60 digits
    assert rem + b1 + b2 > 0  # the claim holds
    claim = claims.get_claim("T4.3b-S")
    assert claim.weakening("T4.3b-S-no-cubic").evaluate(inst).margin < 0
    assert claim.evaluate(inst).margin > 0


def test_nonzero_mean_is_not_met():
    F = np.diag([1.0, 0.0])
    E = 0.1 * np.array([[0.0, 1.0], [1.0, 0.0]])
    for cid in ("T4.3b-S", "T4.3c-S"):
        out = claims.get_claim(cid).evaluate(NoiseEnsemble(F, (E,)))
        assert not out.hypotheses_met and "mean" in out.reason


def _mp_root(c, b1, b2):
    """Bisection at 60 digits of C − sB₁ − s²B₂ = 0 on (0, ∞) (independent of the closed form)."""
    with working_precision(DPS):
        c, b1, b2 = mpmath.mpf(c), mpmath.mpf(b1), mpmath.mpf(b2)
        lo, hi = mpmath.mpf(0), mpmath.mpf(1)
        while c - hi * b1 - hi * hi * b2 > 0:
            hi *= 2
        for _ in range(250):
            mid = (lo + hi) / 2
            if c - mid * b1 - mid * mid * b2 > 0:
                lo = mid
            else:
                hi = mid
        return lo


@pytest.mark.parametrize(
    "gap, a2, e3, w4", [(1.0, 0.3, 0.1, 0.01), (0.5, 1e-6, 1e-9, 1e-12), (2.0, 1.0, 1e-12, 5.0), (1.0, 2.0, 3.0, 0.0)]
)
def test_sharp_critical_scale_is_the_root(gap, a2, e3, w4):
    s = claims_sharp.sharp_ensemble_critical_scale(gap, a2, e3, w4)
    b1, b2 = claims_sharp.sharp_lower_terms(gap, e3, w4, claims_sharp.sharp_constant())
    assert s == pytest.approx(float(_mp_root(a2, b1, b2)), rel=1e-13)


def test_sharp_critical_scale_exceeds_the_old_one():
    rng = np.random.default_rng(3)
    for _ in range(200):
        gap = float(rng.uniform(0.01, 2))
        eta = rng.uniform(1e-4, 2.0, size=4) * gap
        w2 = eta**2 * rng.uniform(0, 1, size=4)
        a2 = float(np.mean(w2 / gap * rng.uniform(0.05, 1)))
        old = claims.critical_scale(gap, a2, float(np.mean(eta**3)), float(eta.max()))
        new = claims_sharp.sharp_ensemble_critical_scale(gap, a2, float(np.mean(eta**3)), float(np.mean(w2**2)))
        assert new > old


def test_t43c_s_elevation_at_the_tested_scales_matches_the_reference():
    claim = claims.get_claim("T4.3c-S")
    count = []

    @_settings(30)
    @given(strategy_for(claim.strategy))
    def prop(inst):
        out = claim.evaluate(inst)
        if not out.hypotheses_met:
            return
        assert out.details["s_c_sharp"] > out.details["s_c_old"] > 0
        assert out.details["s"] == pytest.approx(0.9 * out.details["s_c_sharp"], rel=1e-15)
        with working_precision(DPS):
            F = mp_matrix(inst.F)
            lam = mp_eigh(F, DPS).eigenvalues[0]
            ms = []
            for s in (out.details["s_low"], out.details["s"]):
                tops = [mp_eigh(F + mp_matrix(s * E), DPS).eigenvalues[0] for E in inst.scaled()]
                ms.append((mpmath.fsum(tops) / len(tops) - lam) / abs(lam))
            ref = min(ms)
        assert ref > 0
        if not out.needs_adjudication:
            assert out.margin == pytest.approx(float(ref), rel=1e-4)
        count.append(1)

    prop()
    assert len(count) >= 10


def test_t43c_s_without_genericity_is_exactly_zero():
    F = np.diag([1.0, 0.5, 0.2])
    E = np.diag([0.0, 0.3, -0.1])
    inst = NoiseEnsemble(F, (E, -E))
    claim = claims.get_claim("T4.3c-S")
    assert not claim.evaluate(inst).hypotheses_met
    w = claim.weakening("T4.3c-S-no-genericity")
    out = w.evaluate(inst)
    assert out.margin == 0.0
    lo, hi = w.evaluate_iv(inst, 50)
    assert lo == hi == 0


_SUBJECTS = ["T4.3b-S", "T4.3b-S-second-order", "T4.3b-S-no-cubic", "T4.3c-S"]


def _subject(sid):
    for c in (claims.get_claim("T4.3b-S"), claims.get_claim("T4.3c-S")):
        if c.id == sid:
            return c
        for w in c.weakenings:
            if w.id == sid:
                return w
    raise KeyError(sid)


@pytest.mark.parametrize("sid", _SUBJECTS)
def test_interval_evaluator_encloses_the_mp_margin(sid):
    subj = _subject(sid)
    done = []

    @_settings(15)
    @given(strategy_for(subj.strategy))
    def prop(inst):
        out = subj.evaluate(inst)
        if not out.hypotheses_met:
            return
        lo, hi = subj.evaluate_iv(inst, 50)
        m = subj.evaluate_mp(inst, 80)
        assert lo <= m <= hi
        assert hi - lo <= 1e-20 * max(1, abs(m))
        done.append(1)

    prop()
    assert len(done) >= 5


@pytest.mark.parametrize("name", ["T4.3b-S-second-order", "T4.3b-S-no-cubic", "T4.3c-S-no-genericity"])
def test_stored_counterexample_replays(name):
    res = cx.replay_file(CORPUS / f"{name}.json")
    assert res.code == 0, res


def test_t43b_sharp_enclosure_stays_tight_when_the_bound_is_tiny():
    """η ~ 1e-17 makes the bound η³/γ² ~ 1e-51, far below λ1: the margin divides a difference of
    O(λ1) terms by it. The enclosure must adapt its precision to that scale (at a fixed 50 digits
    it was 3e-3 wide) and still contain the 80-digit margin."""
    F = np.array([[0.1168187, 0.01686374], [0.01686374, 0.33832747]])
    E = np.array([[-5.55111512e-17, -4.16333634e-17], [-4.16333634e-17, 0.0]])
    inst = NoiseEnsemble(F=F, perturbations=(E, -E), t=1.0, origin="tiny rounding noise")
    subj = _subject("T4.3b-S")
    assert subj.evaluate(inst).hypotheses_met
    lo, hi = subj.evaluate_iv(inst, 50)
    m = subj.evaluate_mp(inst, 80)
    assert lo <= m <= hi
    width = hi - lo
    assert width <= 1e-20 * max(1, abs(m))
