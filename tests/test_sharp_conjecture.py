"""properties.sharp_conjecture: the ratio it maximises is the conjecture's, its certificate encloses
the 60-digit value, and a small search finds the n = 2 supremum without exceeding 1."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from properties import sharp_conjecture as sj
from symbolic import sharp_third_order as T


def test_ratio_and_certificate_on_the_extremal_family():
    c = -1 / math.sqrt(3)
    E = 0.02 * np.array([[c, math.sqrt(1 - c * c)], [math.sqrt(1 - c * c), -c]])
    lam = np.array([0.0, -1.0])
    r = sj.remainder_ratio(lam, E)
    lo, hi = sj.certify_ratio(lam, E)
    # the closed form at the float entries' own (ρ, c): E = mI + ρ[[c, s], [s, −c]] exactly (m = 0 here)
    with mpmath.workdps(60):
        p, q, r_ = (mpmath.mpf(float(x)) for x in (E[0, 0], E[0, 1], E[1, 1]))
        assert p + r_ == 0
        rho = mpmath.sqrt(((p - r_) / 2) ** 2 + q**2)
        want = T.extremal_ratio(rho, (p - r_) / (2 * rho), dps=60)
    assert lo <= want <= hi and hi - lo < mpmath.mpf(10) ** -30
    assert r == pytest.approx(float(want), rel=1e-9)


def test_small_search_reaches_the_two_by_two_supremum_and_stays_below_one(monkeypatch):
    monkeypatch.setitem(sj.PROFILES, "tiny", {"ns": (2, 3), "etas": (0.02,), "starts": 2, "evals": 400})
    rep = sj.hunt("tiny", seed=0)
    assert rep["counterexample_found"] is False
    w2 = rep["worst n=2"]
    assert w2["ratio"] == pytest.approx(0.97117, abs=1e-4)
    assert float(w2["certified_ratio"][1]) < 1
    assert rep["worst n>=3"]["ratio"] <= w2["ratio"] + 1e-9


def test_unknown_spectrum_and_profile():
    with pytest.raises(Exception, match="unknown"):
        sj.lower_spectrum("flat", 3, np.random.default_rng(0))
    with pytest.raises(Exception, match="unknown profile"):
        sj.hunt("huge")
