"""The public Claim API (fimtheory.claim_api) and the claim registry's plugins.

- the built-in claims are declared through the API, one family per module, in the registry's
  historical order, and every name callers imported from fimtheory.claims still resolves;
- a declaration is validated (bad ids, evaluators, strategies, instance types, duplicate ids
  fail loudly), its Hypothesis checks run per instance, its enclosure is wrapped rigorously;
- a user claim declared through the API runs through ``fimtheory verify``, ``counterexamples``
  (with certification) and ``replay`` unchanged: the true one verifies, a deliberately false one
  is falsified with a certified enclosure, and its weakening's stored counterexample replays
  and rejects tampering;
- entry-point discovery for real: a ``*.dist-info`` with ``entry_points.txt`` on the path of a
  subprocess registers the example plugin (examples/custom_claim); broken, raising, mistyped and
  duplicate plugins fail with one line naming the entry point;
- the example project's own tests pass through the pytest plugin, installed or not.

References are independent of the claim's own evaluators: λ_max from mpmath.eigsy at 60 digits
and row sums in exact rational arithmetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest

from fimtheory import claim_api, claims, enclosures
from fimtheory.claim_api import (
    REGISTRY,
    ClaimDeclarationError,
    Hypothesis,
    declare_claim,
    declare_weakening,
    exact_mp,
    get_claim,
    outcome,
    register_claim,
    unregister_claim,
)
from fimtheory.cli import main as cli_main
from fimtheory.errors import InputError, UnknownIdError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom_claim"
sys.path.insert(0, str(EXAMPLE))  # the example plugin's package custom_claim

from custom_claim import claims as cc  # noqa: E402
from custom_claim.instances import SymmetricMatrix  # noqa: E402

STRATEGY = "custom_claim.strategies:symmetric_matrices"

FAMILY_OF = {
    "W": "fimtheory.claims_weyl",
    "R": "fimtheory.claims_weyl",
    "S": "fimtheory.claims_series",
    "S2": "fimtheory.claims_series",
    "SIGN": "fimtheory.claims_series",
    "T4.3a": "fimtheory.claims_quantization",
    "T4.3b": "fimtheory.claims_quantization",
    "T4.3c": "fimtheory.claims_quantization",
    "T4.3d": "fimtheory.claims_quantization",
    "P3.2": "fimtheory.claims_departure",
    "AH": "fimtheory.claims_approx",
    "AB": "fimtheory.claims_approx",
    "C": "fimtheory.claims_partition",
}


# --------------------------------------------------------------------------------------
# the built-ins: one family per module, declared through the API
# --------------------------------------------------------------------------------------


def test_builtin_families_register_in_the_historical_order_from_their_modules():
    import importlib

    ids = list(REGISTRY)
    assert ids[:13] == list(FAMILY_OF)
    assert ids.index("C") < ids.index("KT") < ids.index("EQ1-M-BOUNDS")
    for cid, module in FAMILY_OF.items():
        claim = REGISTRY[cid]
        assert claim.source == module
        declared = {c.id: c for c in importlib.import_module(module).claims()}[cid]
        if cid == "S":  # the sharp family appended its weakening S-no-disc through add_weakenings
            assert claim.weakenings[:-1] == declared.weakenings and claim.evaluate is declared.evaluate
        else:
            assert claim is declared


def test_family_modules_use_the_public_declarations_only():
    for module in set(FAMILY_OF.values()):
        text = (ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
        assert "declare_claim(" in text
        assert "Claim(" not in text.replace("declare_claim(", "")
        assert "Weakening(" not in text.replace("declare_weakening(", "")
        assert "REGISTRY" not in text and "_CLAIMS" not in text
    facade = (ROOT / "fimtheory" / "claims.py").read_text(encoding="utf-8")
    assert "Claim(" not in facade and "def _weyl" not in facade


def test_hypothesis_margins_are_attached_by_the_declaration():
    # S2's near-boundary hypotheses (γ > 0, 2η < γ) through declare_claim(hypothesis_margins=...)
    from fimtheory.instances import MatrixPerturbation

    A = np.diag([1.0, 1.0 - 1e-12, 0.2])
    out = get_claim("S2").evaluate(MatrixPerturbation(A, 1e-16 * np.eye(3)))
    assert out.hypotheses_met
    assert set(out.hypothesis_margins) == {"γ > 0", "2η < γ"}
    assert out.needs_adjudication  # γ/(n‖A‖) ≈ 3e-13 lies within HYPOTHESIS_BAND


def test_names_imported_from_fimtheory_claims_still_resolve():
    from fimtheory import adjudication, claims_approx, claims_quantization, claims_series
    from fimtheory.claims import (  # noqa: F401
        ADJUDICATION_RTOL,
        Adjudication,
        Claim,
        Outcome,
        ReferenceDisagreement,
        Weakening,
        adjudicate,
        critical_scale,
        disagrees,
        numerical_rank,
        start_dps,
    )
    from fimtheory.claims import REGISTRY as R

    assert adjudicate is adjudication.adjudicate and R is REGISTRY
    assert critical_scale is claims_quantization.critical_scale
    assert numerical_rank is claims_approx.numerical_rank
    assert claims._series_order is claims_series._series_order
    assert claims._t43c_core is claims_quantization._t43c_core
    assert claims._lanczos_start is claims_approx._lanczos_start
    assert claims.bounds.__name__ == "fimtheory.bounds"
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = claims.no_such_name


@pytest.mark.parametrize("first", ["fimtheory.claims_sharp", "fimtheory.claims_eq1", "fimtheory.claims_series"])
def test_registry_order_does_not_depend_on_which_family_is_imported_first(first):
    code = f"import {first}; from fimtheory.claims import REGISTRY; print(' '.join(REGISTRY))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == list(REGISTRY)
    assert [w.id for w in REGISTRY["S"].weakenings] == ["S-no-disc"]


def test_importing_the_registry_imports_no_torch_sympy_or_hypothesis():
    code = (
        "import sys, fimtheory.claims as c; c.get_claim('W'); "
        "print(sorted(m for m in ('torch', 'sympy', 'hypothesis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------
# declarations
# --------------------------------------------------------------------------------------


def _margin_of(value):
    def evaluate(inst):
        return outcome(value)

    return evaluate


def _false_weakening(wid: str):
    return declare_weakening(
        wid,
        title="t",
        dropped="d",
        evaluate=_margin_of(-1.0),
        evaluate_mp=exact_mp(_margin_of(-1.0)),
        strategy=STRATEGY,
    )


def _declare(**kw):
    base = dict(
        title="t",
        statement="s",
        hypotheses=(),
        evaluate=_margin_of(1.0),
        evaluate_mp=exact_mp(_margin_of(1.0)),
        strategy=STRATEGY,
    )
    base.update(kw)
    return declare_claim(kw.pop("id", "CC-TEST"), **{k: v for k, v in base.items() if k != "id"})


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"id": "has space"}, "without spaces"),
        ({"id": "a@b"}, "without spaces or '@'"),
        ({"id": ""}, "non-empty"),
        ({"evaluate": 3.0}, "evaluate must be callable"),
        ({"evaluate_mp": None}, "evaluate_mp must be callable"),
        ({"strategy": "no_colon"}, "not 'module:name'"),
        ({"strategy": lambda: None}, "strategy must be 'module:name'"),
        ({"enclosure": "x"}, "enclosure must be callable"),
        ({"hypotheses": (3,)}, "a hypothesis must be a str or a Hypothesis"),
        ({"instance_type": dict}, "instance_type must be a dataclass"),
        ({"weakenings": ("W-no-lambda-min",)}, "weakenings must be declare_weakening"),
    ],
)
def test_malformed_declarations_are_refused(kw, match):
    with pytest.raises(ClaimDeclarationError, match=match):
        _declare(**kw)
    assert issubclass(ClaimDeclarationError, InputError)


def test_duplicate_weakening_ids_in_one_claim_are_refused():
    w = declare_weakening(
        "CC-W",
        title="t",
        dropped="d",
        evaluate=_margin_of(-1.0),
        evaluate_mp=exact_mp(_margin_of(-1.0)),
        strategy=STRATEGY,
    )
    with pytest.raises(ClaimDeclarationError, match="used twice"):
        _declare(weakenings=(w, w))


def test_module_level_strategy_function_is_taken_by_name():
    from custom_claim.strategies import symmetric_matrices

    assert _declare(strategy=symmetric_matrices).strategy == STRATEGY


def test_outcome_marks_small_or_unresolved_margins_for_adjudication():
    assert not outcome(0.5).needs_adjudication and outcome(0.5).float_resolved
    assert outcome(0.0).needs_adjudication and outcome(claims.ADJUDICATION_RTOL).needs_adjudication
    unresolved = outcome(0.5, False, x=1.0)
    assert unresolved.needs_adjudication and not unresolved.float_resolved and unresolved.details == {"x": 1.0}


def test_hypotheses_are_checked_per_instance_before_the_evaluator_runs():
    calls = []

    def evaluate(inst):
        calls.append(inst)
        return outcome(1.0)

    claim = _declare(
        evaluate=evaluate,
        hypotheses=(
            "stated only",
            Hypothesis("x positive", holds=lambda inst: inst > 0),
            Hypothesis("x below 1", margin=lambda inst: 1.0 - inst),
        ),
    )
    assert claim.hypotheses == ("stated only", "x positive", "x below 1")
    out = claim.evaluate(-1.0)
    assert not out.hypotheses_met and out.reason == "hypothesis not met: x positive" and calls == []
    out = claim.evaluate(2.0)
    assert not out.hypotheses_met and "x below 1" in out.reason and calls == []
    out = claim.evaluate(0.5)
    assert out.hypotheses_met and not out.needs_adjudication and out.hypothesis_margins == {"x below 1": 0.5}
    near = claim.evaluate(1.0 - 1e-15)  # the hypothesis margin is within HYPOTHESIS_BAND of 0
    assert near.hypotheses_met and near.needs_adjudication and len(calls) == 2


def test_enclosure_is_wrapped_with_the_registry_checks():
    def not_an_interval(inst):
        return mpmath.mpf(1)

    def divides_by_zero(inst):
        raise ZeroDivisionError

    for fn, match in ((not_an_interval, "did not return an mpmath.iv interval"), (divides_by_zero, "division")):
        claim = _declare(enclosure=fn)
        with pytest.raises(enclosures.EnclosureError, match=match):
            enclosures.margin_enclosure(claim, 0.5, 30)


def test_strategy_references_outside_properties_resolve_or_fail_clearly():
    from hypothesis import strategies as st

    from properties.claim_strategies import strategy_for

    assert isinstance(strategy_for(STRATEGY), st.SearchStrategy)
    assert isinstance(strategy_for("properties.claim_strategies:W"), st.SearchStrategy)
    for ref, match in (
        ("no_such_module_xyz:s", "cannot import"),
        ("custom_claim.strategies:nope", "has no attribute"),
        ("custom_claim.instances:SymmetricMatrix", "is not a Hypothesis strategy"),
        ("custom_claim.claims:_row_sum_bound", "without arguments"),
        ("custom_claim.claims:STRATEGY", "is not a Hypothesis strategy"),
    ):
        with pytest.raises(UnknownIdError, match=match):
            strategy_for(ref)


def test_only_declared_instance_types_are_serialised_and_rebuilt():
    from dataclasses import dataclass

    from properties.serialize import instance_from_json, instance_to_json

    inst = SymmetricMatrix(np.array([[1.0, 2.0**-1074], [2.0**-1074, -0.0]]), origin="x")
    js = instance_to_json(inst)
    assert js["type"] == "custom_claim.instances:SymmetricMatrix"
    back = instance_from_json(json.loads(json.dumps(js)))
    assert isinstance(back, SymmetricMatrix) and back.origin == "x"
    assert np.array_equal(back.A, inst.A) and np.signbit(back.A[1, 1])  # bit-exact, -0.0 kept

    @dataclass
    class Undeclared:
        A: np.ndarray

    with pytest.raises(InputError, match="instance_type"):
        instance_to_json(Undeclared(np.eye(2)))
    with pytest.raises(InputError, match="unknown instance type"):
        instance_from_json({"type": "os:system", "fields": {}})


# --------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------


@pytest.fixture
def registered():
    """Register claims for one test and remove them afterwards."""
    added = []

    def add(claim):
        added.append(register_claim(claim, source="tests/test_claim_api.py"))
        return added[-1]

    yield add
    for claim in added:
        unregister_claim(claim.id)
    assert not any(c.id in REGISTRY for c in added)


def test_duplicate_ids_name_the_claim_that_holds_them(registered):
    with pytest.raises(
        ClaimDeclarationError, match=r"'W' \(from test_claim_api\) is already registered from fimtheory.claims_weyl"
    ):
        register_claim(_declare(id="W"), source="mine")
    w = _false_weakening("W-no-lambda-min")
    with pytest.raises(ClaimDeclarationError, match="already taken .by claim W"):
        register_claim(_declare(id="CC-NEW", weakenings=(w,)))
    assert "CC-NEW" not in REGISTRY
    claim = registered(_declare(id="CC-NEW"))
    assert get_claim("CC-NEW") is claim and list(REGISTRY)[-1] == "CC-NEW"
    assert register_claim(claim) is claim  # the same object again: idempotent
    with pytest.raises(ClaimDeclarationError, match="built in"):
        unregister_claim("W")
    with pytest.raises(UnknownIdError):
        unregister_claim("CC-NEVER")


def test_add_weakenings_extends_a_registered_claim(registered):
    registered(_declare(id="CC-BASE"))
    w = declare_weakening(
        "CC-BASE-w",
        title="t",
        dropped="d",
        evaluate=_margin_of(-1.0),
        evaluate_mp=exact_mp(_margin_of(-1.0)),
        strategy=STRATEGY,
    )
    updated = claim_api.add_weakenings("CC-BASE", w)
    assert get_claim("CC-BASE") is updated and updated.weakening("CC-BASE-w") is w
    assert claim_api.add_weakenings("CC-BASE", w) is updated  # idempotent per id
    assert get_claim("S").weakening("S-no-disc").id == "S-no-disc"  # the sharp family's addition to S


# --------------------------------------------------------------------------------------
# a user claim through verify, counterexamples + certification, replay
# --------------------------------------------------------------------------------------


def _mp_reference_margin(A: np.ndarray, *, diagonal: bool) -> mpmath.mpf:
    """(bound − λ_max)/G with λ_max from mpmath.eigsy at 60 digits, the row sums exact."""
    with mpmath.workdps(60):
        lam = max(mpmath.eigsy(mpmath.matrix(A.tolist()), eigvals_only=True))
        g = max(sum((abs(Fraction(float(x))) for x in row), Fraction(0)) for row in A)
        bound = max(Fraction(float(x)) for x in np.diag(A)) if diagonal else g
        return (mpmath.mpf(bound.numerator) / bound.denominator - lam) / (mpmath.mpf(g.numerator) / g.denominator)


@pytest.mark.parametrize("seed", range(4))
def test_example_evaluators_agree_with_an_independent_reference(seed):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((4, 4))
    inst = SymmetricMatrix(0.5 * (B + B.T) * 10.0 ** (3 * seed - 4))
    w = cc.GERSHGORIN.weakening("CC-GERSHGORIN-diagonal")
    for subject, diagonal in ((cc.GERSHGORIN, False), (w, True)):
        ref = _mp_reference_margin(inst.A, diagonal=diagonal)
        assert abs(subject.evaluate(inst).margin - float(ref)) <= 64 * 4 * np.finfo(float).eps
        assert abs(subject.evaluate_mp(inst, 40) - ref) < mpmath.mpf(10) ** -35
        lo, hi = enclosures.margin_enclosure(subject, inst, 50)
        assert lo <= ref <= hi and hi - lo < mpmath.mpf(10) ** -40


def _false_claim():
    """The weakening's statement declared as a claim: deliberately false."""
    w = cc.GERSHGORIN.weakening("CC-GERSHGORIN-diagonal")
    return declare_claim(
        "CC-DIAGONAL-BOUND",
        title="λ_max(A) ≤ max_i A_ii (false)",
        statement="deliberately false: for symmetric A, λ_max(A) ≤ max_i A_ii",
        hypotheses=cc.HYPOTHESES,
        evaluate=cc.gershgorin_diagonal,
        evaluate_mp=cc.gershgorin_diagonal_mp,
        enclosure=cc.gershgorin_diagonal_iv,
        strategy=w.strategy,
        instance_type=SymmetricMatrix,
    )


def test_user_claims_run_through_verify(registered, tmp_path):
    registered(cc.GERSHGORIN)
    registered(_false_claim())
    report = tmp_path / "verify.json"
    argv = ["verify", "--claim", "CC-GERSHGORIN", "--claim", "CC-DIAGONAL-BOUND", "--profile", "quick"]
    rc = cli_main([*argv, "--seed", "0", "--json", str(report)])
    assert rc == 1  # a certified violation
    rows = {r["id"]: r for r in json.loads(report.read_text())["claims"]}
    true, false = rows["CC-GERSHGORIN"], rows["CC-DIAGONAL-BOUND"]
    assert true["status"] == "verified" and true["examples"] == 100
    assert false["status"] == "falsified"
    cx = false["counterexample"]
    assert cx["instance"]["type"] == "custom_claim.instances:SymmetricMatrix"
    assert mpmath.mpf(cx["enclosure"]["hi"]) < 0  # certified by the adjudicator's enclosure
    from properties.serialize import instance_from_json

    inst = instance_from_json(cx["instance"])
    assert _mp_reference_margin(inst.A, diagonal=True) < 0


def test_user_weakening_is_hunted_certified_stored_and_replayed(registered, tmp_path):
    from properties.certify import certify
    from properties.counterexamples import load_counterexample

    registered(cc.GERSHGORIN)
    out = tmp_path / "cx"
    assert cli_main(["counterexamples", "--claim", "CC-GERSHGORIN", "--out", str(out), "--seed", "0"]) == 0
    path = out / "CC-GERSHGORIN-diagonal.json"
    rec = json.loads(path.read_text())
    assert rec["claim"] == "CC-GERSHGORIN" and rec["instance"]["type"] == "custom_claim.instances:SymmetricMatrix"
    w, inst, _ = load_counterexample(path)
    assert isinstance(inst, SymmetricMatrix) and w is cc.GERSHGORIN.weakening("CC-GERSHGORIN-diagonal")
    cert = certify(w, inst, 50)
    ref = _mp_reference_margin(inst.A, diagonal=True)
    assert cert.certified and cert.lo <= ref <= cert.hi < 0
    assert cli_main(["replay", str(path)]) == 0
    # tamper-evident: one changed bit of an input is rejected
    a = rec["instance"]["fields"]["A"]["ndarray"]
    a[0] = float(float.fromhex(a[0]) * (1 + 2**-40)).hex()
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(rec))
    assert cli_main(["replay", str(bad)]) != 0


def test_user_claim_runs_through_the_pytest_plugin_api(registered, tmp_path):
    from properties.pytest_plugin import FimtheoryConfig, run_check

    registered(cc.GERSHGORIN)
    cfg = FimtheoryConfig(profile="quick", seed=0, counterexample_dir=tmp_path, dps=50)
    assert run_check("CC-GERSHGORIN", cfg).passed
    res = run_check("CC-GERSHGORIN-diagonal", cfg)
    assert res.passed and res.certificate.certified and res.path is not None
    assert cli_main(["replay", str(res.path)]) == 0


# --------------------------------------------------------------------------------------
# entry points, for real: a *.dist-info on the path of a subprocess
# --------------------------------------------------------------------------------------


def _site(tmp_path: Path, entry: str, modules: dict | None = None) -> Path:
    site = tmp_path / "site"
    info = site / "fimtheory_plugin_under_test-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fimtheory-plugin-under-test\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[fimtheory.claims]\n{entry}\n")
    for name, text in (modules or {}).items():
        (site / f"{name}.py").write_text(text)
    return site


def _fimtheory(site: Path, *args, cwd: Path, env_extra=None, timeout=300):
    path = os.pathsep.join([str(site), str(EXAMPLE), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {k: v for k, v in os.environ.items() if k != "FIMTHEORY_CLAIM_PLUGINS"}
    env.update(PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_entry_point_registers_the_example_plugin_for_every_command(tmp_path):
    site = _site(tmp_path, "custom-claim = custom_claim.claims:CLAIMS")
    listed = _fimtheory(site, "fimtheory", "claims", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    ids = [c["id"] for c in json.loads(listed.stdout)]
    assert ids[-1] == "CC-GERSHGORIN" and ids[:13] == list(FAMILY_OF)
    report = tmp_path / "v.json"
    v = _fimtheory(site, "fimtheory", "verify", "--claim", "CC-GERSHGORIN", "--json", str(report), cwd=tmp_path)
    assert v.returncode == 0, v.stderr
    assert json.loads(report.read_text())["claims"][0]["status"] == "verified"
    cx = _fimtheory(site, "fimtheory", "counterexamples", "--claim", "CC-GERSHGORIN", "--out", "cx", cwd=tmp_path)
    assert cx.returncode == 0, cx.stdout + cx.stderr
    stored = tmp_path / "cx" / "CC-GERSHGORIN-diagonal.json"
    rp = _fimtheory(site, "fimtheory", "replay", str(stored), cwd=tmp_path)
    assert rp.returncode == 0 and rp.stdout.startswith("reproduced"), rp.stdout + rp.stderr
    # without the entry point the stored file names a claim nobody registers
    bare = _fimtheory(tmp_path / "no-site", "fimtheory", "replay", str(stored), cwd=tmp_path)
    assert bare.returncode != 0 and "CC-GERSHGORIN" in bare.stdout + bare.stderr


BROKEN = [
    ("broken = no_such_module_xyz:CLAIMS", None, "cannot be loaded: ModuleNotFoundError"),
    ("raising = raising_plugin:CLAIMS", {"raising_plugin": "raise RuntimeError('plugin bug')\n"}, "RuntimeError"),
    ("mistyped = mistyped_plugin:CLAIMS", {"mistyped_plugin": "CLAIMS = 42\n"}, "is not a fimtheory Claim"),
    (
        "duplicate = duplicate_plugin:CLAIMS",
        {
            "duplicate_plugin": (
                "from custom_claim.claims import GERSHGORIN\nfrom dataclasses import replace\n"
                "CLAIMS = [replace(GERSHGORIN, id='W', weakenings=())]\n"
            )
        },
        "claim id 'W' (from custom_claim.claims) is already registered from fimtheory.claims_weyl",
    ),
]


@pytest.mark.parametrize("entry, modules, match", BROKEN, ids=[b[0].split(" ")[0] for b in BROKEN])
def test_a_broken_plugin_fails_with_one_line_naming_it(tmp_path, entry, modules, match):
    site = _site(tmp_path, entry, modules)
    proc = _fimtheory(site, "fimtheory", "verify", "--claim", "W", "--profile", "quick", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fimtheory: error: claim plugin entry point "), proc.stderr
    assert entry.split(" = ")[0] in lines[0] and "fimtheory-plugin-under-test" in lines[0]
    assert match in lines[0]
    if "duplicate" in entry:
        assert "already registered from fimtheory.claims_weyl" in lines[0]
    off = _fimtheory(site, "fimtheory", "claims", cwd=tmp_path, env_extra={"FIMTHEORY_CLAIM_PLUGINS": "0"})
    assert off.returncode == 0 and "W " in off.stdout


# --------------------------------------------------------------------------------------
# the example project's own tests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("installed", [True, False], ids=["installed", "not-installed"])
def test_example_project_tests_pass_through_the_plugin(tmp_path, installed):
    site = _site(tmp_path, "custom-claim = custom_claim.claims:CLAIMS") if installed else tmp_path / "no-site"
    out = tmp_path / "cx"
    args = ["pytest", str(EXAMPLE), "-p", "no:cacheprovider", "-q", "-rA", "--fimtheory-seed", "0"]
    proc = _fimtheory(site, *args, "--fimtheory-counterexamples", str(out), cwd=EXAMPLE)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
    stored = out / "CC-GERSHGORIN-diagonal.json"
    assert stored.exists()
    rec = json.loads(stored.read_text())
    assert rec["certificate"]["hi_exact"].startswith("-")
    if installed:
        rp = _fimtheory(site, "fimtheory", "replay", str(stored), cwd=tmp_path)
        assert rp.returncode == 0 and rp.stdout.startswith("reproduced"), rp.stdout + rp.stderr
