"""pytest plugin: fimtheory's claims as checks inside your own test suite.

Installed with the package (entry point ``pytest11: fimtheory``); without the installed
entry point, load it with ``-p properties.pytest_plugin``. It adds nothing to a test that
does not ask for it: no autouse fixture, no Hypothesis profile loaded.

Use
---
Decorate a test (or use the ``fimtheory`` marker directly)::

    from properties.pytest_plugin import check

    @check("R", subject=my_lambda_max)          # a claim evaluated on your engine
    def test_engine_directional(fimtheory_report):
        assert fimtheory_report.examples > 0     # the body runs after the check passed

    @check(my_claim, strategy=my_instances)      # any object with the claim protocol

or call the ``fimtheory_check`` fixture: ``fimtheory_check("T4.3b", subject=my_rounding)``.
The check is :func:`properties.verify.check_property` — the machinery of ``fimtheory
verify`` — so adjudication and the inconclusive rules are the same. The test passes only
when the claim is *verified*; *falsified*, *inconclusive* (with its stop reason), *hypotheses
not met* and *error* fail it. A weakening (``Weakening`` object or id) is expected to be
falsified with a certificate, and passes then.

On a certified falsification the failure report prints the shrunk instance, the certified
margin enclosure and the path of the stored counterexample file (``--fimtheory-counterexamples
DIR``, default ``.fimtheory/counterexamples`` under the rootdir), which ``fimtheory replay``
re-checks.

Options: ``--fimtheory-profile quick|ci|thorough`` (examples per claim as in ``fimtheory
verify``: 100, 150 derandomized, 10,000; ini ``fimtheory_profile``), ``--fimtheory-seed N``
(Hypothesis seed, default 0), ``--fimtheory-counterexamples DIR`` (ini
``fimtheory_counterexamples``).

Hypothesis settings of a check come from the profile (:func:`properties.verify.hypothesis_settings`):
no deadline, no example database (every run of a seed draws the same examples, so a
database adds nothing to reproducibility), and health checks suppressed because the
strategies reject by design (draws that miss a hypothesis are counted and reported as "not
met" rather than raised). Fixtures ``fimtheory_strategies`` (the public strategies, and
``for_claim(id)``) and ``fimtheory_settings`` (the profile's settings, for your own
``@given`` tests) expose the same pieces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

PROFILES = ("quick", "ci", "thorough")
DEFAULT_COUNTEREXAMPLE_DIR = ".fimtheory/counterexamples"
MARKER = "fimtheory"


# --------------------------------------------------------------------------------------
# options and configuration
# --------------------------------------------------------------------------------------


def pytest_addoption(parser):
    group = parser.getgroup("fimtheory", "fimtheory claims as checks")
    group.addoption(
        "--fimtheory-profile",
        choices=PROFILES,
        default=None,
        help="examples per fimtheory check: quick (100), ci (150, derandomized), thorough (10,000); default quick",
    )
    group.addoption("--fimtheory-seed", type=int, default=None, help="Hypothesis seed of fimtheory checks (default 0)")
    group.addoption(
        "--fimtheory-counterexamples",
        metavar="DIR",
        default=None,
        help=f"where certified counterexamples are written (default {DEFAULT_COUNTEREXAMPLE_DIR} under the rootdir)",
    )
    parser.addini("fimtheory_profile", "default --fimtheory-profile", default="quick")
    parser.addini("fimtheory_counterexamples", "default --fimtheory-counterexamples", default="")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{MARKER}(claim, *, subject=None, strategy=None, max_examples=None, expect=None): "
        "check a fimtheory claim (id or object), optionally on your implementation (subject)",
    )
    _config_of(config)  # bad option values fail before collection


@dataclass(frozen=True)
class FimtheoryConfig:
    """The run's settings for every check: profile, seed, dps, counterexample directory."""

    profile: str
    seed: int
    counterexample_dir: Path
    dps: int = 50


def _config_of(config) -> FimtheoryConfig:
    cached = getattr(config, "_fimtheory_config", None)
    if cached is not None:
        return cached
    profile = config.getoption("--fimtheory-profile") or config.getini("fimtheory_profile") or "quick"
    if profile not in PROFILES:
        raise pytest.UsageError(f"fimtheory_profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    seed = config.getoption("--fimtheory-seed")
    seed = 0 if seed is None else seed
    if seed < 0:
        raise pytest.UsageError(f"--fimtheory-seed must be a non-negative integer, got {seed}")
    raw = config.getoption("--fimtheory-counterexamples") or config.getini("fimtheory_counterexamples")
    d = Path(raw or DEFAULT_COUNTEREXAMPLE_DIR)
    if not d.is_absolute():
        d = Path(config.rootpath) / d
    cfg = FimtheoryConfig(profile, int(seed), d)
    config._fimtheory_config = cfg
    return cfg


# --------------------------------------------------------------------------------------
# resolving what to check
# --------------------------------------------------------------------------------------


def _find_weakening(wid: str):
    from fimtheory.claims import REGISTRY

    for claim in REGISTRY.values():
        for w in claim.weakenings:
            if w.id == wid:
                return claim, w
    return None


def resolve_check(claim, *, subject=None, strategy=None):
    """(object to check, its base claim id, strategy, expected status).

    ``claim``: a claim id, a weakening id, a :class:`fimtheory.claims.Claim` /
    ``Weakening``, a :class:`properties.subjects.SubjectClaim`, or any object with the
    claim protocol (``id``, ``strict``, ``evaluate``, ``evaluate_mp``; ``evaluate_iv`` for
    certificates) — then ``strategy`` (a Hypothesis strategy) is required unless its
    ``strategy`` attribute names a registered one.
    """
    from fimtheory.claims import Weakening, get_claim
    from fimtheory.errors import UnknownIdError
    from properties import subjects
    from properties.claim_strategies import strategy_for

    expect = "verified"
    base_id = None
    if isinstance(claim, str):
        if subject is not None:
            obj = subjects.bind(claim, subject)
        else:
            found = _find_weakening(claim)
            if found is not None:
                base_id, obj = found[0].id, found[1]
            else:
                obj = get_claim(claim)
    elif subject is not None:
        obj = subjects.bind(claim.id, subject)
    else:
        obj = claim
    if isinstance(obj, Weakening):
        expect = "falsified"
        if base_id is None:
            found = _find_weakening(obj.id)
            base_id = found[0].id if found else obj.id
    if isinstance(obj, subjects.SubjectClaim):
        base_id = obj.claim_id
        strat = strategy if strategy is not None else obj.strategy()
    elif strategy is not None:
        strat = strategy
    else:
        name = getattr(obj, "strategy", None)
        if not isinstance(name, str):
            raise UnknownIdError(
                f"{getattr(obj, 'id', obj)!r}: pass strategy= (a Hypothesis strategy of its instances)"
            )
        strat = strategy_for(name)
    return obj, base_id or obj.id, strat, expect


# --------------------------------------------------------------------------------------
# running one check and reporting
# --------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    """A check's report plus what the plugin stored."""

    report: object
    subject_id: str
    expect: str
    path: Path | None = None
    certificate: object = None
    note: str = ""

    @property
    def passed(self) -> bool:
        if self.expect == "falsified":
            return self.report.status == "falsified" and self.path is not None
        return self.report.status == "verified"


def _safe_name(sid: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", sid)


def store_counterexample(obj, base_id: str, report, out_dir: Path, *, profile: str, seed: int, dps: int = 50):
    """Certify the falsifying instance of ``report`` again (:func:`properties.certify.certify`)
    and write it in the format ``fimtheory replay`` reads; returns (path or None, certificate, note)."""
    from properties.certify import certify
    from properties.counterexamples import HuntResult, result_to_json
    from properties.serialize import instance_from_json

    cx = report.counterexample or {}
    try:
        inst = instance_from_json(cx["instance"])
    except Exception as exc:  # an instance type the serialiser does not know
        return None, None, f"the instance cannot be stored ({type(exc).__name__}: {exc})"
    try:
        cert = certify(obj, inst, max(dps, 50))
    except Exception as exc:
        return None, None, f"certification for the stored file failed: {type(exc).__name__}: {exc}"
    if not cert.certified:
        return None, cert, f"the file certifier does not certify it: {cert.short()} ({cert.note})"
    res = HuntResult(base_id, obj.id, status="falsified", source="hypothesis", instance=inst, certificate=cert)
    res.float_margin = obj.evaluate(inst).margin
    res.extra["hypothesis_seed"] = seed
    rec = result_to_json(res, profile=profile, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{_safe_name(obj.id)}.json"
    path.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    note = ""
    if "@<" in obj.id:
        note = (
            "the subject is not importable by name (define it at module level), so `fimtheory replay` cannot re-run it"
        )
    return path, cert, note


def run_check(claim, cfg: FimtheoryConfig, *, subject=None, strategy=None, max_examples=None, expect=None):
    """Run one check with the plugin's configuration; returns a :class:`CheckResult`."""
    from properties.verify import check_property

    obj, base_id, strat, default_expect = resolve_check(claim, subject=subject, strategy=strategy)
    report = check_property(
        obj, strat, profile=cfg.profile, seed=cfg.seed, dps=cfg.dps, max_examples=max_examples, report_id=obj.id
    )
    result = CheckResult(report, obj.id, expect or default_expect)
    if report.status == "falsified":
        result.path, result.certificate, result.note = store_counterexample(
            obj, base_id, report, cfg.counterexample_dir, profile=cfg.profile, seed=cfg.seed, dps=cfg.dps
        )
    return result


def _instance_text(cx: dict) -> str:
    from properties.serialize import instance_from_json

    try:
        inst = instance_from_json(cx["instance"])
    except Exception:
        return json.dumps(cx.get("instance"))[:2000]
    import numpy as np

    with np.printoptions(precision=17, threshold=200, linewidth=100):
        parts = []
        for k, v in vars(inst).items():
            if v is None or (isinstance(v, str) and not v):
                continue
            if isinstance(v, tuple) and v and isinstance(v[0], np.ndarray):
                v = "\n".join(f"[{i}] {np.array2string(a)}" for i, a in enumerate(v))
            elif isinstance(v, np.ndarray):
                v = np.array2string(v)
            text = str(v).replace("\n", "\n      ")
            parts.append(f"    {k} =\n      {text}" if "\n" in text else f"    {k} = {text}")
    return f"  {type(inst).__name__}\n" + "\n".join(parts)


def format_result(result: CheckResult, cfg: FimtheoryConfig) -> str:
    """The failure (or pass) report of a check."""
    r = result.report
    head = (
        f"fimtheory check {result.subject_id}: {r.status.upper()} "
        f"({r.examples}/{r.examples_requested} examples, {r.rejected} not meeting the hypotheses, "
        f"{r.adjudicated} adjudicated; profile {cfg.profile}, seed {cfg.seed}, {r.seconds:.2f} s)"
    )
    lines = [head]
    if r.status == "falsified":
        cx = r.counterexample or {}
        lines.append("shrunk instance:")
        lines.append(_instance_text(cx))
        lines.append(f"float margin: {cx.get('float_margin')!r}")
        details = cx.get("details") or {}
        if details:
            lines.append("details: " + ", ".join(f"{k} = {v!r}" for k, v in details.items()))
        cert = result.certificate
        if cert is not None:
            lines.append(
                f"certified margin enclosure: {cert.short(8)} at {cert.dps} digits ({cert.method}); "
                f"exact endpoints {cert.to_json().get('lo_exact')} .. {cert.to_json().get('hi_exact')}"
            )
        elif cx.get("enclosure"):
            enc = cx["enclosure"]
            lines.append(
                f"certified margin enclosure (adjudicator): [{enc['lo']}, {enc['hi']}] at {cx.get('dps')} digits"
            )
        if cx.get("adjudication_reason"):
            lines.append(f"adjudication: {cx['adjudication_reason']}")
        if result.path is not None:
            lines.append(f"counterexample file: {result.path}")
            lines.append(f"replay: fimtheory replay {result.path}")
        if result.note:
            lines.append(f"note: {result.note}")
    elif r.status in ("inconclusive", "hypotheses not met"):
        lines.append(f"reason: {r.stop_reason or 'no reason recorded'}")
    elif r.status == "error":
        lines.append(f"error: {r.error}")
        if r.counterexample:
            lines.append("instance:")
            lines.append(_instance_text(r.counterexample))
    if result.expect == "falsified" and r.status != "falsified":
        lines.append("expected: a certified counterexample (this is a weakening)")
    return "\n".join(lines)


def _check_or_fail(claim, cfg, **kw):
    result = run_check(claim, cfg, **kw)
    if not result.passed:
        pytest.fail(format_result(result, cfg), pytrace=False)
    return result


def check(claim, *, subject=None, strategy=None, max_examples=None, expect=None):
    """Decorator: the test checks ``claim`` (on ``subject``) before its body runs; a test
    argument ``fimtheory_report`` receives the :class:`properties.verify.ClaimReport`.
    Equivalent to ``@pytest.mark.fimtheory(claim, subject=..., ...)``."""
    return getattr(pytest.mark, MARKER)(
        claim, subject=subject, strategy=strategy, max_examples=max_examples, expect=expect
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    marker = pyfuncitem.get_closest_marker(MARKER)
    if marker is None:
        return None
    if len(marker.args) != 1:
        raise pytest.UsageError(f"{pyfuncitem.nodeid}: @pytest.mark.{MARKER} takes exactly one claim (id or object)")
    unknown = set(marker.kwargs) - {"subject", "strategy", "max_examples", "expect"}
    if unknown:
        raise pytest.UsageError(f"{pyfuncitem.nodeid}: unknown {MARKER} marker arguments {sorted(unknown)}")
    result = _check_or_fail(marker.args[0], _config_of(pyfuncitem.config), **marker.kwargs)
    if "fimtheory_report" in pyfuncitem.funcargs:
        pyfuncitem.funcargs["fimtheory_report"] = result.report
    return None  # the test body runs next (pytest's own implementation)


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fimtheory_config(pytestconfig) -> FimtheoryConfig:
    """The profile, seed and counterexample directory of this run."""
    return _config_of(pytestconfig)


@pytest.fixture
def fimtheory_check(fimtheory_config):
    """``fimtheory_check(claim, *, subject=None, strategy=None, max_examples=None, expect=None)``:
    run a check now; fails the test unless it passes; returns the :class:`CheckResult`."""

    def run(claim, **kw):
        return _check_or_fail(claim, fimtheory_config, **kw)

    return run


@pytest.fixture
def fimtheory_report(request):
    """The ClaimReport of the test's ``@check`` (filled in when the check has passed)."""
    if request.node.get_closest_marker(MARKER) is None:
        pytest.fail(
            f"fimtheory_report is filled in by @check(...) or @pytest.mark.{MARKER}(...); "
            f"{request.node.name} has neither"
        )
    return None


class _Strategies:
    """The public strategies (:mod:`properties.strategies`), ``for_claim(id)`` (the strategy
    a claim or weakening is checked on) and ``for_subject(id, subject)``."""

    def __getattr__(self, name):
        from properties import strategies

        try:
            return getattr(strategies, name)
        except AttributeError:
            raise AttributeError(f"properties.strategies has no strategy {name!r}") from None

    @staticmethod
    def for_claim(claim_id: str):
        from properties.claim_strategies import strategy_for

        found = _find_weakening(claim_id)
        if found is not None:
            return strategy_for(found[1].strategy)
        from fimtheory.claims import get_claim

        return strategy_for(get_claim(claim_id).strategy)

    @staticmethod
    def for_subject(claim_id: str, subject):
        from properties.subjects import bind

        return bind(claim_id, subject).strategy()


@pytest.fixture(scope="session")
def fimtheory_strategies():
    """Namespace of the Hypothesis strategies (see :class:`_Strategies`)."""
    return _Strategies()


@pytest.fixture(scope="session")
def fimtheory_settings(fimtheory_config):
    """The Hypothesis ``settings`` of the run's profile, for a user's own ``@given`` test run
    inside a test body: ``settings(fimtheory_settings)(given(...)(prop))()``."""
    from properties.verify import hypothesis_settings

    return hypothesis_settings(fimtheory_config.profile)
