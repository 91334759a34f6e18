"""properties.sharp_critical_scale: T4.3c's critical scale with the sharp constant (S3) is a root of
its lower bound, never below the old one, and below it the elevation is positive at 60 digits."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from fimtheory.claims import critical_scale
from fimtheory.errors import InputError
from fimtheory.highprec import mp_eigh, mp_matrix, working_precision
from properties import sharp_critical_scale as sc


def _lower_bound_over_s2(s, gap, ea2, e3, e4, eb):
    """E[a2] − sKE[η³]/γ² − 8s²E[η⁴]/(γ²(γ − 2sη̄)) in mp, written from the S3 statement."""
    s, gap, ea2, e3, e4, eb = (mpmath.mpf(x) for x in (s, gap, ea2, e3, e4, eb))
    k = mpmath.mpf(4) / (3 * mpmath.sqrt(3))
    return ea2 - s * k * e3 / gap**2 - 8 * s**2 * e4 / (gap**2 * (gap - 2 * s * eb))


def test_sharp_critical_scale_is_the_root_and_dominates_the_old_one():
    rng = np.random.default_rng(3)
    for _ in range(40):
        F, Es = sc._instance(rng)
        gap, _, _, ea2, etas = sc._stats(F, Es)
        e3, e4, eb = float(np.mean(etas**3)), float(np.mean(etas**4)), float(etas.max())
        s = sc.sharp_critical_scale(gap, ea2, e3, e4, eb)
        with working_precision(40):
            assert _lower_bound_over_s2(s * (1 - 1e-9), gap, ea2, e3, e4, eb) > 0
            assert _lower_bound_over_s2(s * (1 + 1e-9), gap, ea2, e3, e4, eb) < 0
        old = critical_scale(gap, ea2, e3, eb)
        assert old <= s < gap / (2 * eb)
        assert sc.conjectured_critical_scale(gap, ea2, e3, eb) >= old


def test_elevation_is_positive_below_the_sharp_critical_scale_at_60_digits():
    """Strict elevation E λ_max(F + sE) > λ_max(F) at s = 0.95·s_c(sharp), where the old s_c no
    longer reaches (s > s_c(old)): the larger certified region is real."""
    rng = np.random.default_rng(5)
    beyond_old = 0
    for _ in range(12):
        F, Es = sc._instance(rng)
        gap, _, _, ea2, etas = sc._stats(F, Es)
        e3, e4, eb = float(np.mean(etas**3)), float(np.mean(etas**4)), float(etas.max())
        s = 0.95 * sc.sharp_critical_scale(gap, ea2, e3, e4, eb)
        beyond_old += s > critical_scale(gap, ea2, e3, eb)
        with working_precision(60):
            Fm = mp_matrix(F)
            lam = mp_eigh(Fm, 60).eigenvalues[0]
            tops = [mp_eigh(Fm + mp_matrix(E) * mpmath.mpf(s), 60).eigenvalues[0] for E in Es]
            assert mpmath.fsum(tops) / len(tops) - lam > 0
    assert beyond_old >= 10


def test_measure_reports_ratios_within_the_limits():
    rep = sc.measure(60, seed=1)
    assert rep["instances"] == 60 == rep["elevation_checks_at_0.9_sc"]
    ratios = rep["sharp_over_old"]
    assert ratios["min"] >= 1 and ratios["min"] <= ratios["max"] <= 4 / sc.K
    assert rep["sharp_over_old"]["median"] > 1.5


def test_measure_t43c_s_dominates_and_t43b_s_certifies_more():
    """T4.3b-S's correction Kη³/γ² + ‖P⊥Ev‖⁴/γ³ is below S3's Kη³/γ² + 8η⁴/(γ²(γ − 2η̄)) per
    draw, so wherever S3's second-order bound certifies elevation T4.3b-S does too."""
    rep = sc.measure(60, seed=1)
    assert rep["t43c_s_over_old"]["min"] >= rep["sharp_over_old"]["min"] >= 1
    t = rep["t43b_second_order_at_s1"]
    assert t["t43b_s_bound_positive"] >= t["sharp_bound_positive"] >= t["old_bound_positive"]
    assert rep["t43b_s_at_s1_all_instances"]["bound_positive"] >= t["t43b_s_bound_positive"]


def test_bad_input():
    with pytest.raises(InputError):
        sc.sharp_critical_scale(1.0, 0.0, 1.0, 1.0, 0.1)
    with pytest.raises(InputError):
        sc.measure(0)
