"""Mutation killers for properties/counterexamples.py: the hunt (parametrise, optimise,
hunt_weakening, hunt), the stored form (result_to_json, write_counterexample, hunt_document),
the reports (format_hunt_table, format_readings), the stronger-readings measurement and the
CLI entry points. See docs/mutation_counterexamples.md.

Each test checks a stated property against an independent reference: the documented
construction of a parametrised family redone from the same random stream, scipy's
Nelder–Mead run on the documented objective, counts recomputed by hand from scripted draws,
the serialize module's digest, numpy's eigenvalues, literal expected report lines.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import types
from pathlib import Path

import mpmath
import numpy as np
import pytest

from fimtheory.claim_api import Outcome, Weakening
from fimtheory.claims import REGISTRY
from fimtheory.errors import FimTheoryError, InputError
from fimtheory.instances import MatrixPerturbation, NoiseEnsemble, PartitionInstance, ScoreInstance
from properties import counterexamples as cx
from properties.certify import Certificate
from properties.serialize import counterexample_inputs, inputs_digest, instance_from_json, instance_to_json

CORPUS = Path(__file__).parent / "counterexamples"


def _weakening(evaluate, *, strict=False, wid="FAKE-w", strategy="fake-strategy", evaluate_mp=None):
    return Weakening(wid, "a test weakening", "nothing", evaluate, evaluate_mp or (lambda i, d: None), strategy, strict)


def _sym(rng, n):
    b = rng.standard_normal((n, n))
    return b + b.T


# ----------------------------------------------------------------- parametrise


def _reference_sym(rng, n):
    """The documented direction: a random symmetric matrix of unit Frobenius norm."""
    b = rng.standard_normal((n, n))
    b = (b + b.T) / 2
    return b / math.sqrt(float(np.sum(b * b)))


@pytest.mark.parametrize("zero", [False, True])
def test_parametrise_matrix_pair_is_the_documented_affine_family(zero):
    """E(c) = E + ‖E‖_F Σ c_j B_j, B_j the next k random symmetric unit-norm matrices of rng
    (‖E‖ replaced by 1 for E = 0); A, v kept; origin marked '+opt'; c = 0 is the instance."""
    rng0 = np.random.default_rng(11)
    A = np.diag([3.0, 1.0, 0.5, 0.25])
    E0 = np.zeros((4, 4)) if zero else 0.01 * _sym(rng0, 4)
    v = np.array([1.0, 0.0, 0.0, 0.0])
    inst = MatrixPerturbation(A, E0, v=v, origin="draw")
    for k in (6, 2):
        make, dim = (
            cx.parametrise(inst, np.random.default_rng(5), k)
            if k != 6
            else cx.parametrise(inst, np.random.default_rng(5))
        )
        assert dim == k
        ref_rng = np.random.default_rng(5)
        basis = [_reference_sym(ref_rng, 4) for _ in range(k)]
        s = 1.0 if zero else math.sqrt(float(np.sum(E0 * E0)))
        base = make(np.zeros(k))
        assert isinstance(base, MatrixPerturbation)
        np.testing.assert_array_equal(base.E, E0)
        np.testing.assert_array_equal(base.A, A)
        np.testing.assert_array_equal(base.v, v)
        assert base.origin == "draw+opt"
        c = np.linspace(-0.7, 0.9, k)
        got = make(c)
        ref = E0 + s * sum(cj * b for cj, b in zip(c, basis))
        np.testing.assert_allclose(got.E, ref, rtol=0, atol=1e-14 * max(s, 1.0))
        assert got.delta is None


def test_parametrise_indefinite_pair_keeps_its_type():
    from properties.claim_strategies import _IndefinitePair

    rng0 = np.random.default_rng(3)
    A = np.diag([1.0, -2.0, 0.5])
    E0 = 0.1 * _sym(rng0, 3)
    inst = _IndefinitePair(A, E0)
    make, k = cx.parametrise(inst, np.random.default_rng(9))
    assert k == 6
    ref_rng = np.random.default_rng(9)
    basis = [_reference_sym(ref_rng, 3) for _ in range(6)]
    s = math.sqrt(float(np.sum(inst.E * inst.E)))
    c = np.arange(1, 7) / 10
    got = make(c)
    assert type(got) is _IndefinitePair
    np.testing.assert_array_equal(got.A, inst.A)
    np.testing.assert_allclose(got.E, inst.E + s * sum(cj * b for cj, b in zip(c, basis)), atol=1e-14)
    np.testing.assert_array_equal(make(np.zeros(6)).E, inst.E)


def test_parametrise_refuses_quantization_born_and_discrete_instances():
    A = np.diag([2.0, 1.0])
    E = np.diag([0.1, -0.1])
    assert cx.parametrise(MatrixPerturbation(A, E, delta=np.array([0.5, 0.25])), np.random.default_rng(0)) is None
    part = PartitionInstance((0.5,), (1.0, 2.0))
    assert cx.parametrise(part, np.random.default_rng(0)) is None
    assert cx.parametrise(object(), np.random.default_rng(0)) is None


def _ensemble_reference(Es, rng, k, *, anti, diag):
    free = Es[: len(Es) // 2] if anti else Es
    n = Es[0].shape[0]
    dirs = []
    for _ in free:
        if diag:
            dirs.append([np.diag(rng.standard_normal(n)) for _ in range(min(k, n))])
        else:
            dirs.append([_reference_sym(rng, n) for _ in range(k)])
    return free, dirs


@pytest.mark.parametrize(
    "layout,anti",
    [
        ("E1 E2 -E1 -E2", True),
        ("E1 -E1 E2 -E2", False),
        ("E1 E2 E3", False),
        ("E1 -E1", True),
        ("E1 E2", False),
        ("0 E1", False),
    ],
)
@pytest.mark.parametrize("diag,n", [(False, 3), (True, 3), (True, 8)])
def test_parametrise_ensemble_keeps_antithetic_and_diagonal_structure(layout, anti, diag, n):
    """Each independent draw moves by ‖E_i‖ Σ c_j B_ij (its own block of c); antithetic pairs
    (second half = −first half) stay antithetic; a diagonal ensemble moves along min(k, n)
    random diagonal directions; F and t are kept."""
    rng0 = np.random.default_rng(21)

    def draw():
        return np.diag(rng0.standard_normal(n)) if diag else 0.1 * _sym(rng0, n)

    E1, E2, E3 = draw(), draw(), draw()
    names = {"E1": E1, "E2": E2, "E3": E3, "-E1": -E1, "-E2": -E2, "0": np.zeros((n, n))}
    Es = [names[x] for x in layout.split()]
    F = np.diag(np.linspace(3.0, 1.0, n))
    inst = NoiseEnsemble(F, tuple(Es), t=0.5, origin="ens")
    make, dim = cx.parametrise(inst, np.random.default_rng(4))
    free, dirs = _ensemble_reference(list(inst.perturbations), np.random.default_rng(4), 6, anti=anti, diag=diag)
    sizes = [len(d) for d in dirs]
    assert dim == sum(sizes) == len(free) * (min(6, n) if diag else 6)
    base = make(np.zeros(dim))
    assert isinstance(base, NoiseEnsemble) and base.t == 0.5 and base.origin == "ens+opt"
    np.testing.assert_array_equal(base.F, F)
    assert len(base.perturbations) == len(Es)
    for got, want in zip(base.perturbations, inst.perturbations):
        np.testing.assert_array_equal(got, want)
    c = np.linspace(-1.0, 1.0, dim)
    new = make(c)
    pos, want = 0, []
    for E, d in zip(free, dirs):
        s = math.sqrt(float(np.sum(E * E))) or 1.0
        want.append(E + s * sum(cj * b for cj, b in zip(c[pos : pos + len(d)], d)))
        pos += len(d)
    if anti:
        want = want + [-e for e in want]
    assert len(new.perturbations) == len(want)
    for got, ref in zip(new.perturbations, want):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)
    if diag:
        assert all(not np.count_nonzero(e - np.diag(np.diag(e))) for e in new.perturbations)
    if anti:
        assert new.exact_mean_is_zero()


def test_parametrise_scores_is_the_documented_family():
    """G(c) = G + ‖G‖_F Σ c_j B_j with B_j standard normal / √(n·P); the Lanczos/power settings
    and q kept."""
    rng0 = np.random.default_rng(8)
    G0 = rng0.standard_normal((5, 3))
    inst = ScoreInstance(G0, power_steps=2, lanczos_steps=4, q=3, origin="g")
    make, k = cx.parametrise(inst, np.random.default_rng(13))
    assert k == 6
    ref_rng = np.random.default_rng(13)
    basis = [ref_rng.standard_normal((5, 3)) / math.sqrt(15) for _ in range(6)]
    s = math.sqrt(float(np.sum(G0 * G0)))
    c = np.linspace(0.1, 0.6, 6)
    got = make(c)
    assert isinstance(got, ScoreInstance)
    assert (got.power_steps, got.lanczos_steps, got.q, got.origin) == (2, 4, 3, "g+opt")
    np.testing.assert_allclose(got.G, G0 + s * sum(cj * b for cj, b in zip(c, basis)), rtol=0, atol=1e-13)
    np.testing.assert_array_equal(make(np.zeros(6)).G, G0)
    zero = ScoreInstance(np.zeros((2, 2)))
    mk, _ = cx.parametrise(zero, np.random.default_rng(1))
    r = np.random.default_rng(1)
    b0 = r.standard_normal((2, 2)) / 2
    np.testing.assert_allclose(mk(np.eye(6)[0]).G, b0, atol=1e-15)  # ‖0‖ → scale 1


def test_rand_sym_is_symmetric_with_unit_frobenius_norm():
    for n in (1, 2, 5):
        b = cx._rand_sym(np.random.default_rng(n), n)
        np.testing.assert_allclose(b, _reference_sym(np.random.default_rng(n), n), rtol=1e-14, atol=1e-15)
        np.testing.assert_array_equal(b, b.T)
        assert math.isclose(float(np.sum(b * b)), 1.0, rel_tol=1e-14)


# ----------------------------------------------------------------- optimise


def _scripted_family(monkeypatch, k, seen_rng):
    calls = []

    def fake(instance, rng):
        seen_rng.append(rng.standard_normal())

        def make(c):
            calls.append(np.array(c, dtype=float))
            return ("point", tuple(float(x) for x in c))

        return make, k

    monkeypatch.setattr(cx, "parametrise", fake)
    return calls


@pytest.mark.parametrize("fail", ["not-met", "nan", "FimTheoryError", "ValueError", "LinAlgError", None])
def test_optimise_is_nelder_mead_on_the_documented_objective(monkeypatch, fail):
    """optimise = scipy's Nelder–Mead from c = 0 (initial simplex 0.1·e_i, maxfev = evals,
    xatol 1e-12, fatol 1e-14) on the float margin, with +1e3 for points whose hypotheses fail,
    whose margin is not finite or whose evaluation raises; it returns the best valid point
    seen and its margin. The reference runs scipy on that objective and must visit exactly
    the same points."""
    from scipy.optimize import minimize

    k = 3
    target = np.array([0.31, -0.23, 0.47])

    def margin(c):
        return 1000.2 + float(np.sum((c - target) ** 2)) - 0.4 * float(c[0])

    def invalid(c):
        return fail is not None and c[1] < -0.05

    def evaluate(inst):
        c = np.array(inst[1])
        if invalid(c):
            if fail == "not-met":
                return Outcome.not_met("scripted")
            if fail == "nan":
                return Outcome(True, math.nan)
            raise {"FimTheoryError": FimTheoryError, "ValueError": ValueError, "LinAlgError": np.linalg.LinAlgError}[
                fail
            ]("scripted")
        return Outcome(True, margin(c))

    seen = []
    calls = _scripted_family(monkeypatch, k, seen)
    inst, m = cx.optimise(_weakening(evaluate), object(), evals=60, seed=7)
    assert seen == [np.random.default_rng(7).standard_normal()]

    ref_calls = []

    def f(c):
        c = np.asarray(c, dtype=float)
        ref_calls.append(c.copy())
        return 1e3 if invalid(c) else margin(c)

    simplex = np.vstack([np.zeros(k)] + [0.1 * np.eye(k)[i] for i in range(k)])
    minimize(
        f,
        np.zeros(k),
        method="Nelder-Mead",
        options={"maxfev": 60, "initial_simplex": simplex, "xatol": 1e-12, "fatol": 1e-14},
    )
    assert len(calls) == len(ref_calls) <= 61
    for a, b in zip(calls, ref_calls):
        np.testing.assert_array_equal(a, b)
    valid = [c for c in calls if not invalid(c)]
    best = min(valid, key=margin)
    assert m == margin(best)
    assert inst == ("point", tuple(float(x) for x in best))


def test_optimise_converges_under_the_tolerances(monkeypatch):
    """With a large budget the stop is the tolerance test, not maxfev: the reference run with
    the documented tolerances makes the same number of evaluations; the default budget is 200."""
    from scipy.optimize import minimize

    target = np.array([0.2, 0.1])

    def margin(c):
        return float(np.sum((c - target) ** 2)) - 1.0

    seen = []
    calls = _scripted_family(monkeypatch, 2, seen)
    inst, m = cx.optimise(_weakening(lambda i: Outcome(True, margin(np.array(i[1])))), object(), evals=5000, seed=0)
    n_ref = []
    simplex = np.vstack([np.zeros(2), [0.1, 0.0], [0.0, 0.1]])
    minimize(
        lambda c: n_ref.append(1) or margin(np.asarray(c)),
        np.zeros(2),
        method="Nelder-Mead",
        options={"maxfev": 5000, "initial_simplex": simplex, "xatol": 1e-12, "fatol": 1e-14},
    )
    assert len(calls) == len(n_ref) < 5000
    assert 0 <= m + 1.0 < 1e-20
    calls.clear()
    cx.optimise(_weakening(lambda i: Outcome(True, -float(np.sum(np.abs(i[1]))))), object())
    assert seen[-1] == np.random.default_rng(0).standard_normal()  # the default seed is 0
    n_ref.clear()
    minimize(
        lambda c: n_ref.append(1) or -float(np.sum(np.abs(c))),
        np.zeros(2),
        method="Nelder-Mead",
        options={"maxfev": 200, "initial_simplex": simplex, "xatol": 1e-12, "fatol": 1e-14},
    )
    assert len(calls) == len(n_ref)  # unbounded below: stops at the default maxfev = 200
    # a steep kink: the simplex is small in x long before the margins agree to 1e-14, so the
    # f-tolerance decides when it stops
    kink = np.array([0.3, -0.2])

    def steep(c):
        return 1e3 * float(np.sum(np.abs(c - kink))) - 1.0

    for fatol in (1e-14, 1e-4):
        calls.clear()
        cx.optimise(_weakening(lambda i: Outcome(True, steep(np.array(i[1])))), object(), evals=20000)
        n_ref.clear()
        minimize(
            lambda c: n_ref.append(1) or steep(np.asarray(c)),
            np.zeros(2),
            method="Nelder-Mead",
            options={"maxfev": 20000, "initial_simplex": simplex, "xatol": 1e-12, "fatol": fatol},
        )
        assert (len(calls) == len(n_ref)) is (fatol == 1e-14), (len(calls), len(n_ref), fatol)


def test_optimise_keeps_the_first_of_equal_margins(monkeypatch):
    """A later point with the same margin does not replace the best one: on a flat margin the
    returned point is the start, c = 0."""
    seen = []
    calls = _scripted_family(monkeypatch, 2, seen)
    inst, m = cx.optimise(_weakening(lambda i: Outcome(True, -0.5)), object(), evals=30)
    assert len(calls) > 3 and m == -0.5 and inst == ("point", (0.0, 0.0))


def test_optimise_without_a_family_returns_none_and_inf(monkeypatch):
    inst, m = cx.optimise(_weakening(lambda i: Outcome(True, -1.0)), PartitionInstance((0.5,), (1.0, 2.0)))
    assert inst is None and m == math.inf
    # no valid point at all: best stays (None, inf)
    seen = []
    _scripted_family(monkeypatch, 2, seen)
    inst, m = cx.optimise(_weakening(lambda i: Outcome.not_met("never")), object(), evals=20)
    assert inst is None and m == math.inf


def test_optimise_finds_a_real_violation_of_weyl_lower():
    """The real thing: W-no-lambda-min from a non-violating matrix pair; the returned margin is
    the weakening's margin at the returned instance."""
    w = next(x for c in REGISTRY.values() for x in c.weakenings if x.id == "W-no-lambda-min")
    seed_inst = MatrixPerturbation(np.diag([2.0, 1.0, 0.5]), np.diag([0.1, 0.2, 0.05]))
    inst, m = cx.optimise(w, seed_inst, evals=150, seed=3)
    assert inst is not None and m < 0 and w.evaluate(inst).margin == m


# ----------------------------------------------------------------- the recorder, all_weakenings


def test_recorder_keeps_the_lowest_finite_margin_with_hypotheses_met():
    margins = {
        "a": Outcome(True, 0.5),
        "b": Outcome.not_met("x"),
        "c": Outcome(True, math.nan),
        "d": Outcome(True, 0.2),
        "e": Outcome(True, 0.2),
        "f": Outcome(True, -math.inf),
        "g": Outcome(True, 0.3),
    }
    w = _weakening(lambda i: margins[i], strict=True, evaluate_mp=lambda i, d: (i, d, "mp"))
    rec = cx._Recorder(w)
    assert rec.id == "FAKE-w" and rec.strict is True and rec.evaluate_iv is None and rec.best is None
    assert rec.best_margin == math.inf
    for key in "abcdefg":
        assert rec.evaluate(key) is margins[key]
    assert rec.best == "d" and rec.best_margin == 0.2
    assert rec.evaluate_mp("z", 70) == ("z", 70, "mp")
    iv = _weakening(lambda i: None)
    iv = Weakening(iv.id, iv.title, iv.dropped, iv.evaluate, iv.evaluate_mp, iv.strategy, False, evaluate_iv=len)
    assert cx._Recorder(iv).evaluate_iv is len and cx._Recorder(iv).strict is False
    duck = types.SimpleNamespace(id="duck", strict=False, evaluate=None, evaluate_mp=None)  # no evaluate_iv at all
    assert cx._Recorder(duck).evaluate_iv is None


def test_all_weakenings_against_the_registry():
    everything = [(c.id, w.id) for c in REGISTRY.values() for w in c.weakenings]
    assert [(c.id, w.id) for c, w in cx.all_weakenings()] == everything
    assert [(c.id, w.id) for c, w in cx.all_weakenings([])] == everything
    some = [(c.id, w.id) for cid in ("S2", "W") for c in [REGISTRY[cid]] for w in c.weakenings]
    assert [(c.id, w.id) for c, w in cx.all_weakenings(["S2", "W"])] == some and some


# ----------------------------------------------------------------- hunt_weakening


_A = np.diag([2.0, 1.0])


def _mp(e):
    return MatrixPerturbation(_A, np.diag([e, 0.0]))


class _Script:
    """Scripted check_property / strategy_for / optimise / _confirm / certify for the hunt."""

    def __init__(self, monkeypatch, reports, *, opt=None, confirm=True, cert=None, seen_by_rec=()):
        import properties.claim_strategies
        import properties.verify

        self.calls, self.opt_calls, self.confirm_calls, self.cert_calls = [], [], [], []
        self.reports = list(reports)
        self.seen_by_rec = seen_by_rec

        def check_property(rec, strategy, **kw):
            self.calls.append((rec, strategy, kw))
            for inst in self.seen_by_rec:
                rec.evaluate(inst)
            return self.reports.pop(0)

        def optimise(w, inst, *, evals, seed):
            self.opt_calls.append((w, inst, evals, seed))
            return opt if opt is not None else (None, math.inf)

        def _confirm(w, inst, dps):
            self.confirm_calls.append((w, inst, dps))
            return confirm, -1.0

        def certify(w, inst, dps):
            self.cert_calls.append((w, inst, dps))
            if isinstance(cert, Exception):
                raise cert
            return cert

        monkeypatch.setattr(properties.verify, "check_property", check_property)
        monkeypatch.setattr(properties.claim_strategies, "strategy_for", lambda name: ("strategy", name))
        monkeypatch.setattr(cx, "optimise", optimise)
        monkeypatch.setattr(cx, "_confirm", _confirm)
        monkeypatch.setattr(cx, "certify", certify)


def _rep(status="verified", examples=10, rejected=2, error="", counterexample=None):
    return types.SimpleNamespace(
        status=status, examples=examples, rejected=rejected, error=error, counterexample=counterexample
    )


def _margin_of_first_entry(inst):
    return Outcome(True, float(inst.E[0, 0]) - 0.25)


_CLAIM = types.SimpleNamespace(id="FAKE")
_CERTIFIED = Certificate(mpmath.mpf(-2), mpmath.mpf(-1), 50, "eigenvalues")


def test_hunt_weakening_hypothesis_counterexample_is_certified_and_falsifies(monkeypatch):
    w = _weakening(_margin_of_first_entry, strict=True)
    found = _mp(0.125)
    s = _Script(
        monkeypatch, [_rep("falsified", 7, 3, counterexample={"instance": instance_to_json(found)})], cert=_CERTIFIED
    )
    res = cx.hunt_weakening(_CLAIM, w, profile="ci", seed=5, dps=61)
    assert len(s.calls) == 1  # the first falsified seed ends the search
    rec, strategy, kw = s.calls[0]
    assert isinstance(rec, cx._Recorder) and rec.id == w.id and rec.strict is True
    assert strategy == ("strategy", "fake-strategy")
    assert kw == {"profile": "ci", "seed": 5, "dps": 61, "max_examples": 150, "report_id": "FAKE-w"}
    assert not s.opt_calls and not s.confirm_calls
    ((cw, cinst, cdps),) = s.cert_calls
    assert cw is w and cdps == 61 and instance_to_json(cinst) == instance_to_json(found)
    assert (res.claim_id, res.weakening_id, res.status, res.reason, res.source) == (
        "FAKE",
        "FAKE-w",
        "falsified",
        "",
        "hypothesis",
    )
    assert res.ok and res.certificate is _CERTIFIED and res.float_margin == 0.125 - 0.25
    assert (res.examples, res.rejected, res.extra["hypothesis_seed"], res.error) == (7, 3, 5, "")
    assert instance_to_json(res.instance) == instance_to_json(found)
    assert 0 < res.seconds < 60


@pytest.mark.parametrize(
    "profile,seeds", [("quick", [3, 1003]), ("ci", [3, 1003, 2003]), ("thorough", [3, 1003, 2003, 3003, 4003])]
)
def test_hunt_weakening_optimiser_fallback_over_every_extra_seed(monkeypatch, profile, seeds):
    """No Hypothesis counterexample on any of the profile's seeds (seed, seed+1000, …): the
    optimiser starts from the recorder's best example with the profile's evaluation budget; its
    negative-margin point, round-tripped through JSON and confirmed, is certified."""
    w = _weakening(_margin_of_first_entry)
    opt_point = _mp(0.0625)
    n = len(seeds)
    s = _Script(
        monkeypatch,
        [_rep("verified", 10 + j, j) for j in range(n)],
        opt=(opt_point, -0.5),
        cert=_CERTIFIED,
        seen_by_rec=[_mp(0.75), _mp(0.5), _mp(0.625)],
    )
    res = cx.hunt_weakening(_CLAIM, w, profile=profile, seed=3)
    assert [kw["seed"] for _, _, kw in s.calls] == seeds
    assert all(kw["max_examples"] == cx.BUDGETS[profile]["max_examples"] and kw["dps"] == 50 for _, _, kw in s.calls)
    ((ow, oinst, evals, oseed),) = s.opt_calls
    assert ow is w and float(oinst.E[0, 0]) == 0.5 and evals == cx.BUDGETS[profile]["opt_evals"] and oseed == 3
    ((cw, cinst, cdps),) = s.confirm_calls
    assert cw is w
    assert cinst is not opt_point and instance_to_json(cinst) == instance_to_json(opt_point) and cdps == 50
    assert res.status == "falsified" and res.source == "optimizer" and res.extra["hypothesis_seed"] == 3
    assert res.examples == sum(10 + j for j in range(n)) and res.rejected == sum(range(n))
    assert res.best_margin == -0.5 and res.float_margin == 0.0625 - 0.25


@pytest.mark.parametrize("case", ["positive", "zero", "none", "unconfirmed", "nobest"])
def test_hunt_weakening_without_a_counterexample_is_inconclusive_and_says_why(monkeypatch, case):
    w = _weakening(_margin_of_first_entry)
    opt = {"positive": (_mp(0.5), 0.125), "zero": (_mp(0.25), 0.0), "none": (None, math.inf)}.get(
        case, (_mp(0.1), -0.15)
    )
    seen = [] if case == "nobest" else [_mp(0.75), _mp(0.5)]
    s = _Script(
        monkeypatch,
        [_rep("verified", 4, 1), _rep("inconclusive", 5, 2)],
        opt=opt,
        confirm=case != "unconfirmed",
        cert=_CERTIFIED,
        seen_by_rec=seen,
    )
    res = cx.hunt_weakening(_CLAIM, w, profile="quick", seed=0)
    assert res.status == "inconclusive" and not res.ok and res.instance is None and res.certificate is None
    assert not s.cert_calls and res.source == "" and math.isnan(res.float_margin)
    assert len(s.opt_calls) == (0 if case == "nobest" else 1)
    assert len(s.confirm_calls) == (1 if case == "unconfirmed" else 0)
    best = {"positive": 0.125, "zero": 0.0, "none": 0.25, "unconfirmed": -0.15, "nobest": math.inf}[case]
    assert res.best_margin == best
    bm = "none met the hypotheses" if case == "nobest" else f"best float margin {best:.3e}"
    assert res.reason == (
        "no counterexample within the quick budget (9 examples, 3 not meeting the hypotheses, "
        f"200 optimiser evaluations; {bm})"
    )


def test_hunt_weakening_error_stops_the_search(monkeypatch):
    w = _weakening(_margin_of_first_entry)
    s = _Script(monkeypatch, [_rep("error", 3, 0, error="boom"), _rep()], seen_by_rec=[_mp(0.5)])
    res = cx.hunt_weakening(_CLAIM, w, profile="quick", seed=0)
    assert len(s.calls) == 1 and not s.opt_calls and not s.cert_calls
    assert (res.status, res.error, res.reason, res.examples) == ("error", "boom", "", 3)
    assert not res.ok
    s = _Script(monkeypatch, [_rep("error", error="x")])
    cx.hunt_weakening(_CLAIM, w)  # the defaults: quick, seed 0, 50 digits
    assert s.calls[0][2] == {"profile": "quick", "seed": 0, "dps": 50, "max_examples": 100, "report_id": "FAKE-w"}


def test_hunt_weakening_uncertified_or_failed_certification_is_inconclusive(monkeypatch):
    w = _weakening(_margin_of_first_entry)
    found = {"instance": instance_to_json(_mp(0.125))}
    weak = Certificate(mpmath.mpf(-1), mpmath.mpf(1), 50, "eigenvalues", note="it straddles")
    _Script(monkeypatch, [_rep("falsified", counterexample=found)], cert=weak)
    res = cx.hunt_weakening(_CLAIM, w, profile="quick", seed=0)
    assert res.status == "inconclusive" and res.certificate is weak and res.source == "hypothesis"
    assert res.reason == (
        f"a violation was found (float margin {0.125 - 0.25:.3e}) but its enclosure {weak.short()} at 50 digits "
        "does not certify it (it straddles)"
    )
    plain = Certificate(mpmath.mpf(-1), mpmath.mpf(1), 50, "eigenvalues")
    _Script(monkeypatch, [_rep("falsified", counterexample=found)], cert=plain)
    res = cx.hunt_weakening(_CLAIM, w, profile="quick", seed=0)
    assert res.reason.endswith("does not certify it") and "()" not in res.reason
    _Script(monkeypatch, [_rep("falsified", counterexample=found)], cert=FimTheoryError("no enclosure"))
    res = cx.hunt_weakening(_CLAIM, w, profile="quick", seed=0)
    assert res.status == "inconclusive" and res.certificate is None and res.instance is None
    assert res.reason == "a violation was found but certification failed: no enclosure"


def test_hunt_weakening_unknown_profile_is_refused():
    w = _weakening(_margin_of_first_entry)
    with pytest.raises(InputError, match="unknown profile 'fast'; known: quick, ci, thorough"):
        cx.hunt_weakening(_CLAIM, w, profile="fast")


# ----------------------------------------------------------------- hunt()


def test_hunt_runs_every_pair_reports_progress_and_writes_only_falsified(monkeypatch, tmp_path):
    pairs = [(types.SimpleNamespace(id="C1"), types.SimpleNamespace(id=f"C1-w{j}")) for j in range(3)]
    monkeypatch.setattr(cx, "all_weakenings", lambda ids=None: pairs if ids == ["C1"] else [])
    seen = []

    def hunt_weakening(claim, w, *, profile, seed, dps):
        seen.append((claim.id, w.id, profile, seed, dps))
        return cx.HuntResult(claim.id, w.id, status="falsified" if w.id != "C1-w1" else "inconclusive")

    written = []
    monkeypatch.setattr(cx, "hunt_weakening", hunt_weakening)
    monkeypatch.setattr(
        cx,
        "write_counterexample",
        lambda res, out, *, profile, seed: (
            written.append((res.weakening_id, out, profile, seed)) or f"{out}/{res.weakening_id}.json"
        ),
    )
    progress = []
    res = cx.hunt(["C1"], profile="ci", seed=4, dps=70, out_dir=str(tmp_path), progress=lambda *a: progress.append(a))
    assert seen == [("C1", f"C1-w{j}", "ci", 4, 70) for j in range(3)]
    assert progress == [(0, 3, "C1-w0"), (1, 3, "C1-w1"), (2, 3, "C1-w2"), (3, 3, "")]
    assert written == [("C1-w0", str(tmp_path), "ci", 4), ("C1-w2", str(tmp_path), "ci", 4)]
    assert [r.path for r in res] == [f"{tmp_path}/C1-w0.json", "", f"{tmp_path}/C1-w2.json"]
    written.clear()
    res = cx.hunt(["C1"], out_dir=None)  # defaults: quick, seed 0, 50 digits; nothing written
    assert seen[-1] == ("C1", "C1-w2", "quick", 0, 50) and not written and all(r.path == "" for r in res)


# ----------------------------------------------------------------- the stored form


def _falsified_result():
    inst = MatrixPerturbation(np.diag([2.0, 1.0]), np.array([[-0.5, 0.125], [0.125, 0.1]]), origin="t")
    cert = Certificate(mpmath.mpf(-3) / 7, mpmath.mpf(-2) / 7, 53, "eigenvalues")
    return cx.HuntResult(
        "W",
        "W-no-lambda-min",
        status="falsified",
        source="optimizer",
        instance=inst,
        float_margin=-0.375,
        certificate=cert,
        extra={"hypothesis_seed": 1004},
    )


def test_result_to_json_is_the_documented_record():
    res = _falsified_result()
    before = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    rec = cx.result_to_json(res, profile="ci", seed=4)
    after = _dt.datetime.now(_dt.timezone.utc)
    inst_json = instance_to_json(res.instance)
    assert rec["format"] == 2 and rec["claim"] == "W" and rec["weakening"] == "W-no-lambda-min"
    assert rec["instance"] == inst_json and rec["inputs_digest"] == "sha256"
    assert rec["inputs_sha256"] == inputs_digest(counterexample_inputs("W", "W-no-lambda-min", inst_json))
    assert rec["float_margin"] == -0.375 and rec["float_margin_hex"] == (-0.375).hex()
    assert rec["certificate"] == res.certificate.to_json() and rec["dps"] == 53
    assert (rec["source"], rec["seed"], rec["hypothesis_seed"], rec["profile"]) == ("optimizer", 4, 1004, "ci")
    assert rec["versions"] == cx.library_versions()
    stamp = _dt.datetime.fromisoformat(rec["timestamp"])
    assert stamp.utcoffset() == _dt.timedelta(0) and before <= stamp <= after and stamp.microsecond == 0
    res.extra = {}
    assert cx.result_to_json(res, profile="quick", seed=9)["hypothesis_seed"] == 9


def test_write_counterexample_writes_the_record_that_replays(tmp_path):
    res = _falsified_result()
    out = tmp_path / "a" / "b"
    path = cx.write_counterexample(res, out, profile="ci", seed=4)
    assert path == out / "W-no-lambda-min.json" and isinstance(path, Path)
    text = path.read_text()
    rec = json.loads(text)
    assert text == json.dumps(rec, indent=1) + "\n"
    want = cx.result_to_json(res, profile="ci", seed=4)
    rec.pop("timestamp"), want.pop("timestamp")
    assert rec == json.loads(json.dumps(want))
    assert instance_to_json(instance_from_json(rec["instance"])) == instance_to_json(res.instance)
    path2 = cx.write_counterexample(res, out, profile="ci", seed=4)  # an existing directory is fine
    assert path2 == path


def test_write_counterexample_refuses_an_instance_that_does_not_round_trip(monkeypatch, tmp_path):
    res = _falsified_result()
    other = MatrixPerturbation(np.diag([2.0, 1.0]), np.diag([0.5, 0.5]))
    monkeypatch.setattr(cx, "instance_from_json", lambda obj: other)
    with pytest.raises(InputError, match="W-no-lambda-min: instance does not round-trip through its stored form"):
        cx.write_counterexample(res, tmp_path / "x", profile="ci", seed=4)
    assert not (tmp_path / "x").exists()


def test_library_versions_name_the_installed_libraries():
    import platform

    import hypothesis
    import scipy

    import fimtheory

    v = cx.library_versions()
    assert v == {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "mpmath": mpmath.__version__,
        "hypothesis": hypothesis.__version__,
        "fimtheory": getattr(fimtheory, "__version__", "unknown"),
    }


def test_library_versions_of_an_unversioned_install(monkeypatch):
    import fimtheory

    monkeypatch.delattr(fimtheory, "__version__", raising=False)
    assert cx.library_versions()["fimtheory"] == "unknown"


def _row(wid, claim, found, status, source, encl, meth, secs):
    cells = [wid.ljust(26), claim.ljust(6), found.ljust(5), status.ljust(14), source.ljust(10), encl.ljust(32)]
    return " ".join([*cells, meth.ljust(11), secs.rjust(6)])


def test_format_hunt_table_lines():
    ok = _falsified_result()
    ok.seconds = 1.234
    bad = cx.HuntResult("S2", "S2-x", status="inconclusive", reason="no luck", seconds=0.5)
    err = cx.HuntResult("T", "T-y", status="error", error="it broke", source="hypothesis", seconds=12.0)
    lines = cx.format_hunt_table([ok, bad, err]).split("\n")
    head = _row("weakening", "claim", "found", "status", "source", "certified margin enclosure", "method", "s")
    assert lines[0] == head and lines[1] == "-" * len(head)
    assert lines[2] == _row(
        "W-no-lambda-min", "W", "yes", "falsified", "optimizer", ok.certificate.short(), "eigenvalues", "1.23"
    )
    assert lines[3] == _row("S2-x", "S2", "no", "inconclusive", "—", "—", "—", "0.50")
    assert lines[4] == "    inconclusive: no luck"
    assert lines[5] == _row("T-y", "T", "no", "error", "hypothesis", "—", "—", "12.00")
    assert lines[6] == "    error: it broke"
    assert len(lines) == 7
    assert cx.format_hunt_table([]) == head + "\n" + "-" * len(head)


def test_hunt_document_counts_and_rows():
    ok = _falsified_result()
    ok.path, ok.examples, ok.rejected, ok.best_margin, ok.seconds = "/x/W.json", 12, 3, -0.5, 2.5
    bad = cx.HuntResult("S2", "S2-x", status="inconclusive", reason="why", examples=4, seconds=0.25)
    err = cx.HuntResult("T", "T-y", status="error", error="boom")
    doc = cx.hunt_document([ok, bad, err, ok], profile="ci", seed=3, seconds=9.5)
    assert (doc["profile"], doc["seed"], doc["seconds"]) == ("ci", 3, 9.5)
    assert doc["statuses"] == {"falsified": 2, "inconclusive": 1, "error": 1}
    assert doc["all_falsified"] is False and doc["exit_status"] == 3
    assert doc["versions"] == cx.library_versions()
    r0, r1, r2, _ = doc["weakenings"]
    assert r0 == {
        "claim": "W",
        "weakening": "W-no-lambda-min",
        "status": "falsified",
        "reason": "",
        "error": "",
        "source": "optimizer",
        "path": "/x/W.json",
        "examples": 12,
        "rejected": 3,
        "best_float_margin": -0.5,
        "certificate": ok.certificate.to_json(),
        "seconds": 2.5,
    }
    assert (
        r1["best_float_margin"] is None and r1["certificate"] is None and r1["reason"] == "why" and r1["examples"] == 4
    )
    assert r2["error"] == "boom" and r2["status"] == "error"
    good = cx.hunt_document([ok, ok], profile="quick", seed=0, seconds=1.0)
    assert good["all_falsified"] is True and good["exit_status"] == 0 and good["statuses"] == {"falsified": 2}
    empty = cx.hunt_document([], profile="quick", seed=0, seconds=0.0)
    assert (
        empty["all_falsified"] is False
        and empty["exit_status"] == 3
        and empty["weakenings"] == []
        and empty["statuses"] == {}
    )


# ----------------------------------------------------------------- CLI entry points


class _Args:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_hunt_command_exit_codes_report_and_json(monkeypatch, tmp_path, capsys):
    ok, bad = _falsified_result(), cx.HuntResult("W", "W-other", status="inconclusive", reason="budget")
    err = cx.HuntResult("W", "W-third", status="error", error="boom")
    results = [ok, bad, err]
    got = {}

    def hunt(ids, *, profile, seed, out_dir, progress):
        got.update(ids=ids, profile=profile, seed=seed, out=out_dir)
        progress(0, 2, "W-no-lambda-min")
        progress(1, 2, "W-other")
        progress(2, 2, "")
        return list(results)

    monkeypatch.setattr(cx, "hunt", hunt)
    report = tmp_path / "hunt.json"
    import time

    t0 = time.perf_counter()
    code = cx.hunt_command(_Args(claim=["W"], profile="ci", seed=7, out=str(tmp_path), json=str(report)))
    wall = time.perf_counter() - t0
    cap = capsys.readouterr()
    progress = cap.err.strip("\n").split("\n")
    assert len(progress) == 3 and all(line.startswith("counterexamples [") for line in progress), cap.err
    assert code == 3 and got == {"ids": ["W"], "profile": "ci", "seed": 7, "out": str(tmp_path)}
    assert "[1/2] W-no-lambda-min" in cap.err and "[2/2] W-other" in cap.err and "[2/2] done" in cap.err
    table = cx.format_hunt_table(results)
    assert cap.out.count(table) == 2
    assert "1/3 weakenings falsified and certified in " in cap.out and f"; written to {tmp_path}\n" in cap.out
    assert cap.out.rstrip("\n").endswith("NOT falsified/certified (inconclusive or error, exit 3): W-other, W-third")
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert (
        doc["statuses"] == {"falsified": 1, "inconclusive": 1, "error": 1}
        and doc["profile"] == "ci"
        and doc["seed"] == 7
    )
    assert report.read_text(encoding="utf-8") == json.dumps(doc, indent=1) + "\n"
    assert 0 <= doc["seconds"] <= wall
    results[:] = [ok]
    code = cx.hunt_command(_Args(claim=["W"], profile="quick", seed=0, out=str(tmp_path), json=None))
    cap = capsys.readouterr()
    assert code == 0 and "NOT falsified" not in cap.out and "1/1 weakenings falsified" in cap.out
    code = cx.hunt_command(_Args(claim=["W"], profile="quick", seed=0, out=str(tmp_path)))  # no json attribute
    assert code == 0


def test_hunt_command_refuses_unknown_claims_and_empty_selections(monkeypatch):
    from fimtheory.errors import UnknownIdError

    monkeypatch.setattr(cx, "hunt", lambda *a, **k: pytest.fail("must not hunt"))
    with pytest.raises(UnknownIdError):
        cx.hunt_command(_Args(claim=["NO-SUCH-CLAIM"], profile="quick", seed=0, out=".", json=None))
    monkeypatch.setattr(cx, "all_weakenings", lambda ids=None: [] if ids == ["W"] else [("claim", "weakening")])
    with pytest.raises(InputError, match=r"no weakenings for claims \['W'\]"):
        cx.hunt_command(_Args(claim=["W"], profile="quick", seed=0, out=".", json=None))


def test_hunt_command_readings_flag_runs_the_readings(monkeypatch, capsys):
    monkeypatch.setattr(cx, "stronger_readings", lambda *, profile, seed: {"p": profile, "s": seed})
    monkeypatch.setattr(cx, "format_readings", lambda rep: f"READINGS {rep['p']} {rep['s']}")
    monkeypatch.setattr(cx, "hunt", lambda *a, **k: pytest.fail("must not hunt"))
    assert cx.hunt_command(_Args(claim=None, profile="ci", seed=5, out=".", readings=True)) == 0
    assert capsys.readouterr().out == "READINGS ci 5\n"


def test_replay_command_prints_each_file_and_returns_the_worst_code(monkeypatch, capsys):
    table = {
        "a": cx.ReplayResult("a", "reproduced", "reproduces: fine"),
        "b": cx.ReplayResult("b", "not reproduced", "does not reproduce: x"),
        "c": cx.ReplayResult("c", "malformed", "bad"),
    }
    monkeypatch.setattr(cx, "replay_file", lambda f: table[f])
    for files, code in ((["a"], 0), (["a", "b"], 1), (["b", "a"], 1), (["c", "a", "b"], 2), ([], 0)):
        assert cx.replay_command(_Args(files=files)) == code
        out = capsys.readouterr().out
        assert out == "".join(f"{table[f].status:<15} {f}: {table[f].message}\n" for f in files)


def test_main_runs_the_readings_and_writes_json(monkeypatch, tmp_path, capsys):
    seen = []
    monkeypatch.setattr(cx, "stronger_readings", lambda *, profile, seed: seen.append((profile, seed)) or {"k": 1})
    monkeypatch.setattr(cx, "format_readings", lambda rep: f"TABLE {rep['k']}")
    out = tmp_path / "r.json"
    assert cx.main(["readings", "--profile", "ci", "--seed", "3", "--json", str(out)]) == 0
    assert seen == [("ci", 3)] and capsys.readouterr().out == "TABLE 1\n"
    assert out.read_text() == json.dumps({"k": 1}, indent=1) + "\n"
    assert cx.main(["readings"]) == 0 and seen[-1] == ("quick", 0)
    with pytest.raises(SystemExit):
        cx.main(["readings", "--profile", "fast"])
    with pytest.raises(SystemExit):
        cx.main(["other"])


# ----------------------------------------------------------------- stronger readings


def _draw(l0, l1, *, scheme="rtn-int4-sym-tensor", moved=True, key=0, model="linear"):
    theta = np.array([1.0, 2.0 + key])
    return types.SimpleNamespace(
        F=np.diag([l0, l0 / 4]),
        F_q=np.diag([l1, l0 / 8]),
        theta=theta,
        theta_q=theta + (0.5 if moved else 0.0),
        X=np.ones((3, 2)),
        y=np.zeros(3),
        scheme=scheme,
        model=model,
    )


def test_stronger_readings_counts_against_scripted_draws(monkeypatch):
    """Every count of the report recomputed by hand from scripted draws: the draws with
    λ_max(F) > 0, distinct (X, θ, scheme), unchanged θ, σ ties / lowered / raised, the shares,
    σ's min / median / max, lowered per scheme family, the seeds per model (seed + 17·j), and
    the certified example (the lowest σ < 1) with its fields."""
    import properties.strategies as strategies

    draws = [
        _draw(2.0, 1.0, key=0),  # σ = 0.5, lowered
        _draw(2.0, 1.0, key=0),  # same key: not distinct
        _draw(4.0, 4.0, moved=False, key=1, scheme="nf4-channel"),  # σ = 1, tie, unchanged
        _draw(1.0, 3.0, key=2, scheme="sr-int4-sym-tensor-s7"),  # σ = 3, raised
        _draw(0.0, 1.0, key=3),  # λ_max(F) = 0: skipped
        _draw(8.0, 2.0, key=4, scheme="fp4-channel"),  # σ = 0.25, lowered, the worst
        _draw(4.0, 1.0, key=5, scheme="nf4-channel"),  # σ = 0.25 again: the first one stays the example
    ]
    with mpmath.workdps(50):
        third = Certificate(-mpmath.mpf(1) / 3, -mpmath.mpf(1) / 3 + mpmath.mpf(10) ** -40, 50, "eigenvalues")
    collected, strat = [], []
    monkeypatch.setattr(
        strategies, "quantization_noise_matrices", lambda **kw: strat.append(kw) or ("S", tuple(sorted(kw)))
    )
    monkeypatch.setattr(cx, "_collect", lambda strategy, n, seed: collected.append((strategy, n, seed)) or list(draws))
    monkeypatch.setitem(cx.READING_PROFILES, "quick", 6)
    certified = []

    def certify_lowering(q, dps=50):
        certified.append((q, dps))
        return third

    monkeypatch.setattr(cx, "certify_lowering", certify_lowering)
    rep = cx.stronger_readings("quick", seed=10)
    assert (rep["profile"], rep["seed"], rep["draws_per_cell"]) == ("quick", 10, 6)
    assert strat == [
        {"model": m, **kw}
        for kw in ({"bits": 4}, {"bits": (2, 8)}, {"scheme": "sr-int4-sym-tensor"})
        for m in ("linear", "logistic", "softmax")
    ]
    assert [(n, seed) for _, n, seed in collected] == [(6, 10 + 17 * j) for _ in range(3) for j in range(3)]
    assert [e["key"] for e in rep["readings"]] == ["rtn4", "rtn2-8", "sr4"]
    assert [e["reading"] for e in rep["readings"]] == [
        "4-bit RTN never lowers λ_max",
        "σ ≥ 1 under quantization (RTN 2–8 bits)",
        "σ ≥ 1 under 4-bit stochastic rounding",
    ]
    for e in rep["readings"]:
        assert list(e["models"]) == ["linear", "logistic", "softmax"]
        for j, s in enumerate(e["models"].values()):
            assert s == {
                "draws": 6,
                "distinct": 5,
                "unchanged": 1,
                "ties": 1,
                "lowered": 4,
                "raised": 1,
                "share_lowered": 4 / 6,
                "share_lowered_moved": 4 / 5,
                "sigma_min": 0.25,
                "sigma_median": 0.5,
                "sigma_max": 3.0,
                "by_scheme": {
                    "fp4": {"draws": 1, "lowered": 1},
                    "nf4": {"draws": 2, "lowered": 1},
                    "rtn-int4": {"draws": 2, "lowered": 2},
                    "sr-int4": {"draws": 1, "lowered": 0},
                },
                "hypothesis_seed": 10 + 17 * j,
            }
        ex = e["example"]
        assert ex == {
            "model": "linear",
            "scheme": "fp4-channel",
            "sigma": 0.25,
            "theta": [(1.0).hex(), (6.0).hex()],
            "theta_q": [(1.5).hex(), (6.5).hex()],
            "n": 3,
            "d": 2,
            "certified_difference": third.to_json(),
            "certified": True,
            "enclosure": "[-3.3333334e-1, -3.3333333e-1]",
        }
    assert len(certified) == 3 and all(q is draws[5] for q, _ in certified)
    collected.clear()
    rep = cx.stronger_readings()  # the defaults: profile quick, seed 0
    assert (rep["profile"], rep["seed"], rep["draws_per_cell"]) == ("quick", 0, 6)
    assert [seed for _, _, seed in collected] == [0, 17, 34] * 3


def test_stronger_readings_without_lowering_or_draws(monkeypatch):
    import properties.strategies as strategies

    monkeypatch.setattr(strategies, "quantization_noise_matrices", lambda **kw: None)
    batches = {0: [_draw(1.0, 2.0, key=1), _draw(1.0, 1.0, moved=False, key=2)], 17: [], 34: [_draw(0.0, 1.0)]}
    monkeypatch.setattr(cx, "_collect", lambda strategy, n, seed: list(batches[seed]))
    monkeypatch.setattr(cx, "certify_lowering", lambda q, dps=50: pytest.fail("nothing lowered"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty cell is reported as NaN, without numpy's empty-slice warnings
        rep = cx.stronger_readings("ci", seed=0)
    assert rep["draws_per_cell"] == 300
    for e in rep["readings"]:
        assert "example" not in e
        lin, log, soft = (e["models"][m] for m in ("linear", "logistic", "softmax"))
        assert (lin["draws"], lin["lowered"], lin["raised"], lin["ties"], lin["unchanged"]) == (2, 0, 1, 1, 1)
        assert lin["share_lowered"] == 0.0 and lin["share_lowered_moved"] == 0.0
        assert (lin["sigma_min"], lin["sigma_median"], lin["sigma_max"]) == (1.0, 1.5, 2.0)
        for s in (log, soft):
            assert s["draws"] == 0 and s["distinct"] == 0 and s["by_scheme"] == {}
            for key in ("share_lowered", "share_lowered_moved", "sigma_min", "sigma_median", "sigma_max"):
                assert math.isnan(s[key])
    monkeypatch.setattr(cx, "_collect", lambda strategy, n, seed: [_draw(1.0, 2.0, moved=False)])
    rep = cx.stronger_readings("thorough", seed=1)
    s = rep["readings"][0]["models"]["linear"]
    assert rep["draws_per_cell"] == 3000 and s["draws"] == 1 == s["unchanged"] and math.isnan(s["share_lowered_moved"])


def test_format_readings_lines():
    rep = {
        "profile": "ci",
        "seed": 2,
        "draws_per_cell": 5,
        "readings": [
            {
                "reading": "R one",
                "models": {
                    "linear": {
                        "draws": 5,
                        "unchanged": 1,
                        "ties": 1,
                        "lowered": 3,
                        "share_lowered": 0.6,
                        "share_lowered_moved": 0.75,
                        "sigma_min": 0.25,
                        "sigma_median": 0.5,
                        "sigma_max": 3.0,
                    }
                },
                "example": {
                    "model": "linear",
                    "scheme": "fp4",
                    "n": 2,
                    "d": 3,
                    "sigma": 0.25,
                    "enclosure": "[-6, -5]",
                    "certified": True,
                },
            },
            {
                "reading": "R two",
                "models": {},
                "example": {
                    "model": "softmax",
                    "scheme": "nf4",
                    "n": 4,
                    "d": 2,
                    "sigma": 0.5,
                    "enclosure": "[-1, 1]",
                    "certified": False,
                },
            },
            {"reading": "R three", "models": {}},
        ],
    }
    lines = cx.format_readings(rep).split("\n")
    head = (
        "reading".ljust(42)
        + " "
        + "model".ljust(9)
        + " "
        + "draws".rjust(5)
        + " "
        + "Q=id".rjust(4)
        + " "
        + "σ=1".rjust(4)
        + " "
        + "σ<1".rjust(4)
        + " "
        + "share".rjust(6)
        + " "
        + "moved".rjust(6)
        + " "
        + "σ min".rjust(7)
        + " "
        + "σ med".rjust(7)
        + " "
        + "σ max".rjust(7)
    )
    assert lines[0] == "stronger readings (profile ci, seed 2, 5 Hypothesis draws per model)"
    assert lines[1] == head and lines[2] == "-" * len(head)
    assert lines[3] == "R one".ljust(42) + " linear        5    1    1    3  60.0%  75.0%  0.2500  0.5000       3"
    assert (
        lines[4]
        == "    certified example: linear fp4 n=2 d=3 σ=0.250000; λ_max(F_q)−λ_max(F) ∈ [-6, -5] (certified < 0)"
    )
    assert (
        lines[5]
        == "    certified example: softmax nf4 n=4 d=2 σ=0.500000; λ_max(F_q)−λ_max(F) ∈ [-1, 1] (NOT certified)"
    )
    assert len(lines) == 6


def test_collect_draws_n_examples_reproducibly():
    from hypothesis import strategies as st

    a = cx._collect(st.integers(0, 10**12), 25, 3)
    assert len(a) == 25 and a == cx._collect(st.integers(0, 10**12), 25, 3)
    assert a != cx._collect(st.integers(0, 10**12), 25, 4)
    assert len(cx._collect(st.integers(0, 10**12), 7, 3)) == 7


def test_lam_is_the_largest_eigenvalue():
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    F = Q @ np.diag([0.5, 3.0, -1.0, 2.0]) @ Q.T
    F = (F + F.T) / 2
    assert isinstance(cx._lam(F), float) and math.isclose(cx._lam(F), 3.0, rel_tol=1e-14)
    assert cx._lam(np.diag([-3.0, -4.0])) == -3.0


def test_certify_lowering_encloses_the_float_difference():
    """The enclosure of λ_max(F(Q(θ))) − λ_max(F(θ)) from the model's scores in interval
    arithmetic contains the float64 difference of numpy's eigenvalues (to float accuracy) and
    is tight; its precision is the one asked for."""
    from properties.strategies import quantization_noise_matrices

    qs = cx._collect(quantization_noise_matrices(model="logistic", bits=3), 4, 1)
    qs = [q for q in qs if not np.array_equal(q.theta, q.theta_q)]
    assert qs
    for q in qs[:2]:
        for dps in (50, 64):
            cert = cx.certify_lowering(q, dps) if dps != 50 else cx.certify_lowering(q)
            assert cert.dps == dps and cert.method == "eigenvalues" and cert.usable
            diff = cx._lam(q.F_q) - cx._lam(q.F)
            scale = max(abs(cx._lam(q.F)), 1e-300)
            assert abs(float((cert.lo + cert.hi) / 2) - diff) <= 1e-9 * scale
            assert cert.hi - cert.lo <= mpmath.mpf(10) ** (-30) * scale
            assert cert.lo <= cert.hi


# ----------------------------------------------------------------- replay: every branch, every message

_FILE = CORPUS / "AH-accurate.json"


class _Replay:
    """A copy of a corpus file, optionally edited, replayed with scripted steps: the
    weakening's evaluate, the re-certifier and the independent adjudicator (each call and its
    arguments recorded). Unscripted steps are the real ones."""

    def __init__(self, monkeypatch, tmp_path, *, edit=None, evaluate=None, certify=None, adjudicate=None):
        import dataclasses

        self.rec = json.loads(_FILE.read_text(encoding="utf-8"))
        if edit is not None:
            edit(self.rec)
        self.path = tmp_path / "edited.json"
        self.path.write_text(json.dumps(self.rec), encoding="utf-8")
        self.stored = Certificate.from_json(json.loads(_FILE.read_text(encoding="utf-8"))["certificate"])
        self.calls = {"certify": [], "adjudicate": []}
        real = cx._weakening_of(json.loads(_FILE.read_text(encoding="utf-8")))
        self.w = dataclasses.replace(real, evaluate=evaluate) if evaluate is not None else real
        if evaluate is not None:
            monkeypatch.setattr(cx, "_weakening_of", lambda rec: self.w)
        if certify is not None:

            def fake_certify(w, inst, dps, **kw):
                self.calls["certify"].append((w, inst, dps, kw))
                if isinstance(certify, Exception):
                    raise certify
                return certify

            monkeypatch.setattr(cx, "certify", fake_certify)
        if adjudicate is not None:

            def fake_adjudicate(w, inst, out, dps):
                self.calls["adjudicate"].append((w, inst, out, dps))
                if isinstance(adjudicate, Exception):
                    raise adjudicate
                return adjudicate

            monkeypatch.setattr(cx, "adjudicate", fake_adjudicate)

    def run(self, as_path=True):
        return cx.replay_file(self.path if as_path else str(self.path))


_HEX = json.loads(_FILE.read_text(encoding="utf-8"))["float_margin_hex"]


def _stored_margin(inst):
    return Outcome(True, float.fromhex(_HEX))


def _adj(holds=False, enclosure="default", reason="violated at 60 digits", **extra):
    if isinstance(enclosure, str):
        enclosure = (mpmath.mpf(-0.5), mpmath.mpf(-0.4))
    return types.SimpleNamespace(holds=holds, enclosure=enclosure, reason=reason, **extra)


def _nfail(r, path, why):
    assert r.status == "not reproduced" and r.path == str(path) and r.code == 1, r
    assert r.message == f"does not reproduce: {why}", r.message


def test_replay_untouched_file_reproduces_with_the_documented_message(tmp_path, monkeypatch):
    rp = _Replay(monkeypatch, tmp_path)
    r = rp.run()
    assert r.status == "reproduced" and r.code == 0 and r.path == str(rp.path)
    digest = rp.rec["inputs_sha256"]
    w, inst, _ = cx.load_counterexample(rp.path)
    margin = w.evaluate(inst).margin
    from fimtheory.claims import adjudicate

    reason = adjudicate(w, inst, w.evaluate(inst), 50).reason
    assert r.message == (
        f"reproduces: inputs sha256 {digest[:12]}… match, float margin {margin:.6g} bit-identical, "
        f"re-certified at 50 digits {rp.stored.short()} (identical to the stored enclosure), "
        f"independently confirmed ({reason})"
    )


def test_replay_scripted_success_overlapping_and_without_a_reason(tmp_path, monkeypatch):
    """A fresh enclosure that overlaps (not equal) the stored one; an adjudicator result
    without a reason attribute; the arguments of each step: certify(w, inst, stored dps,
    ladder=()) and adjudicate(w, inst, out, stored dps)."""
    lo, hi = rp_lo_hi = (mpmath.mpf(-0.47), mpmath.mpf(-0.466))
    new = Certificate(lo, hi, 50, "eigenvalues")
    adj = types.SimpleNamespace(holds=False, enclosure=(mpmath.mpf(-0.4661), mpmath.mpf(-0.4660)))
    rp = _Replay(monkeypatch, tmp_path, evaluate=_stored_margin, certify=new, adjudicate=adj)
    r = rp.run(as_path=False)
    assert r.status == "reproduced", r
    ((w, inst, dps, kw),) = rp.calls["certify"]
    assert w is rp.w and dps == 50 and kw == {"ladder": ()}
    ((w2, inst2, out, dps2),) = rp.calls["adjudicate"]
    assert w2 is rp.w and inst2 is inst and dps2 == 50 and out.margin == float.fromhex(_HEX)
    assert r.message == (
        f"reproduces: inputs sha256 {rp.rec['inputs_sha256'][:12]}… match, float margin {float.fromhex(_HEX):.6g} "
        f"bit-identical, re-certified at 50 digits {new.short()} (overlaps the stored enclosure), "
        "independently confirmed (violated)"
    )
    assert rp_lo_hi


def test_replay_touching_enclosures_agree(tmp_path, monkeypatch):
    """Intersection is inclusive on both sides: a fresh enclosure and an adjudicator
    enclosure that only touch the stored one at an endpoint still agree."""
    s = Certificate.from_json(json.loads(_FILE.read_text(encoding="utf-8"))["certificate"])
    with mpmath.workdps(60):
        cases = (((s.lo - 1, s.lo), (s.hi, s.hi + 1)), ((s.hi, s.hi / 2), (s.lo - 1, s.lo)))
    for new_enc, adj_enc in cases:
        new = Certificate(new_enc[0], new_enc[1], 50, "eigenvalues")
        rp = _Replay(monkeypatch, tmp_path, evaluate=_stored_margin, certify=new, adjudicate=_adj(enclosure=adj_enc))
        assert rp.run().status == "reproduced"


def _set(path, value):
    def edit(rec):
        d = rec
        for key in path[:-1]:
            d = d[key]
        if value is _DELETE:
            del d[path[-1]]
        else:
            d[path[-1]] = value

    return edit


_DELETE = object()


@pytest.mark.parametrize(
    "edit,words",
    [
        (lambda rec: rec.pop("certificate"), "missing field 'certificate'"),
        (lambda rec: rec.pop("format"), "missing field 'format'"),
        (_set(["format"], 1), "format 1, expected 2 (regenerate the file)"),
        (_set(["format"], "2"), "format '2', expected 2 (regenerate the file)"),
        (_set(["weakening"], "AH-no-such"), "AH-no-such"),
        (_set(["claim"], "NO-SUCH-CLAIM"), "NO-SUCH-CLAIM"),
    ],
)
def test_replay_malformed_records(tmp_path, monkeypatch, edit, words):
    rp = _Replay(monkeypatch, tmp_path, edit=edit)
    r = rp.run()
    assert r.status == "malformed" and r.code == 2 and r.path == str(rp.path) and words in r.message, r


def test_replay_malformed_files(tmp_path):
    for name, text, words in (
        ("list.json", "[1, 2]", "top level is not an object"),
        ("broken.json", "{not json", "not readable JSON ("),
        ("latin.json", b"\xff\xfe{", "not readable JSON ("),
        ("missing.json", None, "not readable JSON ("),
    ):
        f = tmp_path / name
        if isinstance(text, bytes):
            f.write_bytes(text)
        elif text is not None:
            f.write_text(text, encoding="utf-8")
        r = cx.replay_file(f)
        assert r.status == "malformed" and r.path == str(f) and r.message.startswith(words), (name, r)


def test_replay_malformed_margin_hex_and_certificate(tmp_path, monkeypatch):
    """Fields outside the digest that cannot be decoded make the file malformed (not 'changed'),
    the message naming the exception type."""
    rp = _Replay(monkeypatch, tmp_path, edit=_set(["float_margin_hex"], "not-hex"))
    r = rp.run()
    assert r.status == "malformed" and r.path == str(rp.path) and r.message.startswith("ValueError: "), r
    with pytest.raises(cx.MalformedCounterexample, match=r"^ValueError: "):
        cx.load_counterexample(rp.path)
    rp = _Replay(monkeypatch, tmp_path, edit=_set(["certificate"], "not an object"))
    r = rp.run()
    assert r.status == "malformed" and r.code == 2 and r.path == str(rp.path) and r.message, r


def test_load_counterexample_names_the_exception_type(tmp_path):
    """The message is "<exception type>: <exception text>" of what decoding raised (the
    reference: the same decoding step called directly)."""
    rec = json.loads(_FILE.read_text(encoding="utf-8"))
    for key, value, decode in (
        ("instance", {"type": "NoSuchInstance"}, instance_from_json),
        ("instance", 5, instance_from_json),
        ("float_margin_hex", 3.5, float.fromhex),
        ("float_margin_hex", "0x1.zz", float.fromhex),
    ):
        r = json.loads(json.dumps(rec))
        r[key] = value
        f = tmp_path / "x.json"
        f.write_text(json.dumps(r), encoding="utf-8")
        with pytest.raises(Exception) as ref:
            decode(value)
        with pytest.raises(cx.MalformedCounterexample) as exc:
            cx.load_counterexample(f)
        assert str(exc.value) == f"{type(ref.value).__name__}: {ref.value}"
    w, inst, got = cx.load_counterexample(_FILE)
    assert got == rec and w.id == "AH-accurate" and instance_to_json(inst) == rec["instance"]


def test_replay_digest_mismatch_message(tmp_path, monkeypatch):
    def edit(rec):
        rec["inputs_sha256"] = "ab" * 32

    rp = _Replay(monkeypatch, tmp_path, edit=edit)
    r = rp.run()
    digest = inputs_digest(counterexample_inputs("AH", "AH-accurate", rp.rec["instance"]))
    _nfail(r, rp.path, f"inputs changed (digest mismatch: stored {'ab' * 8}…, computed {digest[:16]}…)")


def test_replay_strictness_and_certified_flag(tmp_path, monkeypatch):
    rp = _Replay(monkeypatch, tmp_path, edit=_set(["certificate", "strict"], True))
    _nfail(rp.run(), rp.path, "stored certificate has strict=True, the weakening strict=False")
    for value in (False, "true", 1, _DELETE):
        rp = _Replay(monkeypatch, tmp_path, edit=_set(["certificate", "certified"], value))
        r = rp.run()
        if value is _DELETE:  # a missing flag: from_json may refuse the record or replay must not trust it
            assert r.status in ("not reproduced", "malformed") and r.code != 0, r
            continue
        _nfail(r, rp.path, f"stored enclosure {rp.stored.short()} does not certify a violation")


def test_replay_stored_enclosure_that_does_not_certify(tmp_path, monkeypatch):
    def edit(rec):
        c = Certificate(mpmath.mpf(-1), mpmath.mpf(1), 50, "eigenvalues").to_json()
        c["certified"] = True
        rec["certificate"] = c

    rp = _Replay(monkeypatch, tmp_path, edit=edit)
    r = rp.run()
    if r.status == "malformed":  # from_json may refuse a flag that contradicts the endpoints
        return
    straddling = Certificate(mpmath.mpf(-1), mpmath.mpf(1), 50, "eigenvalues")
    _nfail(r, rp.path, f"stored enclosure {straddling.short()} does not certify a violation")


@pytest.mark.parametrize(
    "exc", [FimTheoryError("fim"), ValueError("val"), ZeroDivisionError("zero"), np.linalg.LinAlgError("lin")]
)
def test_replay_evaluation_error_does_not_reproduce(tmp_path, monkeypatch, exc):
    def evaluate(inst):
        raise exc

    rp = _Replay(monkeypatch, tmp_path, evaluate=evaluate)
    _nfail(rp.run(), rp.path, f"evaluation failed: {type(exc).__name__}: {exc}")


def test_replay_hypotheses_and_float_margin(tmp_path, monkeypatch):
    rp = _Replay(monkeypatch, tmp_path, evaluate=lambda inst: Outcome.not_met("gap closed"))
    _nfail(rp.run(), rp.path, "hypotheses no longer met: gap closed")
    other = math.nextafter(float.fromhex(_HEX), 0.0)
    rp = _Replay(monkeypatch, tmp_path, evaluate=lambda inst: Outcome(True, other))
    _nfail(rp.run(), rp.path, f"float margin {other.hex()} != stored {_HEX}")


def test_replay_stored_precision_below_50_digits(tmp_path, monkeypatch):
    new = Certificate(mpmath.mpf(-0.47), mpmath.mpf(-0.466), 49, "eigenvalues")
    rp = _Replay(monkeypatch, tmp_path, edit=_set(["certificate", "dps"], 49), certify=new, adjudicate=_adj())
    _nfail(rp.run(), rp.path, "stored precision 49 < 50 digits")
    assert not rp.calls["certify"]
    new = Certificate(mpmath.mpf(-0.47), mpmath.mpf(-0.466), 51, "eigenvalues")
    rp = _Replay(monkeypatch, tmp_path, edit=_set(["certificate", "dps"], 51), certify=new, adjudicate=_adj())
    assert rp.run().status == "reproduced"
    assert rp.calls["certify"][0][2] == 51 and rp.calls["adjudicate"][0][3] == 51


@pytest.mark.parametrize(
    "exc", [FimTheoryError("fim"), ValueError("val"), OverflowError("big"), np.linalg.LinAlgError("lin")]
)
def test_replay_recertification_error(tmp_path, monkeypatch, exc):
    rp = _Replay(monkeypatch, tmp_path, evaluate=_stored_margin, certify=exc)
    _nfail(rp.run(), rp.path, f"re-certification failed: {type(exc).__name__}: {exc}")


def test_replay_recertification_that_does_not_certify(tmp_path, monkeypatch):
    for note in ("", "the interval straddles 0"):
        new = Certificate(mpmath.mpf(-0.5), mpmath.mpf(0.25), 50, "eigenvalues", note=note)
        rp = _Replay(monkeypatch, tmp_path, evaluate=_stored_margin, certify=new, adjudicate=_adj())
        suffix = f" ({note})" if note else ""
        _nfail(
            rp.run(), rp.path, f"re-certified enclosure {new.short()} at 50 digits does not certify a violation{suffix}"
        )
        assert not rp.calls["adjudicate"]


@pytest.mark.parametrize("case", ["below", "above", "method"])
def test_replay_recertification_that_disagrees(tmp_path, monkeypatch, case):
    s = Certificate.from_json(json.loads(_FILE.read_text(encoding="utf-8"))["certificate"])
    with mpmath.workdps(60):
        tiny = mpmath.mpf(2) ** -150
        below = Certificate(s.lo - 1, s.lo - tiny, 50, "eigenvalues")
        above = Certificate(s.hi + tiny, s.hi / 2, 50, "eigenvalues")
    new = {
        "below": below,
        "above": above,
        "method": Certificate(s.lo, s.hi, 50, "interval"),
    }[case]
    rp = _Replay(monkeypatch, tmp_path, evaluate=_stored_margin, certify=new, adjudicate=_adj())
    _nfail(
        rp.run(),
        rp.path,
        f"re-certified enclosure {new.short(12)} ({new.method}) disagrees with stored {s.short(12)} (eigenvalues)",
    )
    assert not rp.calls["adjudicate"]


@pytest.mark.parametrize(
    "exc", [FimTheoryError("fim"), ValueError("val"), ArithmeticError("ari"), np.linalg.LinAlgError("lin")]
)
def test_replay_adjudication_error(tmp_path, monkeypatch, exc):
    s = Certificate.from_json(json.loads(_FILE.read_text(encoding="utf-8"))["certificate"])
    rp = _Replay(monkeypatch, tmp_path, evaluate=_stored_margin, certify=s, adjudicate=exc)
    _nfail(rp.run(), rp.path, f"independent adjudication failed: {type(exc).__name__}: {exc}")


def test_replay_adjudicator_that_does_not_certify(tmp_path, monkeypatch):
    s = Certificate.from_json(json.loads(_FILE.read_text(encoding="utf-8"))["certificate"])
    enc = (s.lo, s.hi)
    for adj, why in (
        (_adj(holds=True, enclosure=enc, reason="holds at 60 digits"), "holds at 60 digits"),
        (_adj(holds=None, enclosure=enc, reason="undecided"), "undecided"),
        (_adj(holds=False, enclosure=None, reason="no enclosure"), "no enclosure"),
        (types.SimpleNamespace(holds=None), "None"),
        (types.SimpleNamespace(holds=True, enclosure=enc), "True"),
        (types.SimpleNamespace(enclosure=enc), "None"),
        (_adj(holds=0, enclosure=enc, reason="zero is not False"), "zero is not False"),
    ):
        rp = _Replay(monkeypatch, tmp_path, evaluate=_stored_margin, certify=s, adjudicate=adj)
        _nfail(rp.run(), rp.path, f"the independent adjudicator does not certify the violation: {why}")


@pytest.mark.parametrize("side", ["below", "above"])
def test_replay_adjudicator_enclosure_that_disagrees(tmp_path, monkeypatch, side):
    s = Certificate.from_json(json.loads(_FILE.read_text(encoding="utf-8"))["certificate"])
    with mpmath.workdps(60):
        eps = mpmath.mpf(2) ** -150
        enc = (s.lo - 1, s.lo - eps) if side == "below" else (s.hi + eps, s.hi + 1)
    rp = _Replay(monkeypatch, tmp_path, evaluate=_stored_margin, certify=s, adjudicate=_adj(enclosure=enc))
    _nfail(
        rp.run(),
        rp.path,
        f"the independent adjudicator's enclosure [{mpmath.nstr(enc[0], 12)}, {mpmath.nstr(enc[1], 12)}] "
        f"disagrees with stored {s.short(12)}",
    )


def test_replay_parameter_level_files_are_delegated(tmp_path, monkeypatch):
    import properties.parameter_level as pl

    seen = []
    monkeypatch.setattr(pl, "replay_file_check", lambda p: seen.append(p) or ("not reproduced", "scripted message"))
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"format": "fimtheory.parameter_level/1"}), encoding="utf-8")
    r = cx.replay_file(f)
    assert seen == [f] and r == cx.ReplayResult(str(f), "not reproduced", "scripted message")
    g = tmp_path / "q.json"
    g.write_text(json.dumps({"format": "x-fimtheory.parameter_level/1"}), encoding="utf-8")
    r = cx.replay_file(g)
    assert len(seen) == 1 and r.status == "malformed" and r.message == "missing field 'claim'"


def test_replay_reads_utf8_whatever_the_locale(tmp_path):
    """Stored files are UTF-8: a file with non-ASCII text (outside the digested inputs) replays
    the same under an ASCII locale (LC_ALL=C without Python's UTF-8 mode or locale coercion),
    for a weakening's file and for a parameter-level one (whose format is peeked first)."""
    import os
    import subprocess
    import sys

    files = []
    for name in ("AH-accurate.json", "param-logistic.json"):
        rec = json.loads((CORPUS / name).read_text(encoding="utf-8"))
        rec["remark"] = "λ_max(F_q) − λ_max(F) < 0, σ < 1"
        f = tmp_path / name
        f.write_bytes(json.dumps(rec, ensure_ascii=False).encode("utf-8"))
        files.append(str(f))
    root = str(Path(cx.__file__).resolve().parents[1])
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", PYTHONPATH=root)
    script = (
        "import sys, locale; from properties import counterexamples as cx; "
        "print(locale.getpreferredencoding(False)); "
        "[print(cx.replay_file(f).status) for f in sys.argv[1:]]"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *files], env=env, capture_output=True, text=True, encoding="utf-8", timeout=300
    )
    lines = out.stdout.split("\n")
    assert lines[0].lower() in ("ansi_x3.4-1968", "ascii", "us-ascii"), out
    assert lines[1:3] == ["reproduced", "reproduced"], out


def test_main_usage_text(capsys, monkeypatch):
    """The usage line names the program and the --json metavar PATH (a wide terminal, so
    argparse does not wrap it)."""
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exc:
        cx.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    usage = (
        "usage: python -m properties.counterexamples [-h] [--profile {quick,ci,thorough}] "
        "[--seed SEED] [--json PATH] {readings}"
    )
    assert out.split("\n")[0] == usage, out


def test_replay_calls_an_enclosure_identical_only_when_both_ends_are(tmp_path, monkeypatch):
    s = Certificate.from_json(json.loads(_FILE.read_text(encoding="utf-8"))["certificate"])
    with mpmath.workdps(60):
        cases = ((s.lo, s.hi / 2), (s.lo * 2, s.hi), (s.lo, s.hi))
    for (lo, hi), word in zip(cases, ("overlaps", "overlaps", "identical to")):
        new = Certificate(lo, hi, 50, "eigenvalues")
        rp = _Replay(
            monkeypatch, tmp_path, evaluate=_stored_margin, certify=new, adjudicate=_adj(enclosure=(s.lo, s.hi))
        )
        r = rp.run()
        assert r.status == "reproduced" and f"({word} the stored enclosure)" in r.message, r.message
