"""Counterexample search for every weakening, certification, storage and bit-exact replay.

``fimtheory counterexamples`` hunts each weakening of the claim registry
(:data:`fimtheory.claims.REGISTRY`): first as a Hypothesis property
(:func:`properties.verify.check_property`: ``target`` toward violation, mpmath adjudication,
shrinking), then — if Hypothesis found none within the profile's budget — by Nelder–Mead
minimisation of the float margin over a low-dimensional parametrisation around the best
Hypothesis example. A found counterexample is kept only with a certified sign
(:func:`properties.certify.certify`) and written as ``<weakening-id>.json``.
A weakening not falsified (or not certified) within budget is reported and makes the
command exit non-zero.

``fimtheory replay FILE...`` re-checks stored files (:func:`replay_file`): the digest of the
exact inputs must match, the stored enclosure must certify, the float margin must be
bit-identical, and a fresh certification at the stored precision must certify and agree with
the stored enclosure (exit 1 otherwise; exit 2 for a malformed file).

:func:`stronger_readings` measures how often two readings of the paper's abstract fail on
small quantized models (see ``docs/counterexamples.md``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import mpmath
import numpy as np

from fimtheory.claims import REGISTRY, Weakening, adjudicate, get_claim
from fimtheory.errors import FimTheoryError, InputError, UnknownIdError
from fimtheory.instances import MatrixPerturbation, NoiseEnsemble, ScoreInstance
from properties.certify import Certificate, certify
from properties.serialize import (
    DIGEST_ALGORITHM,
    counterexample_inputs,
    inputs_digest,
    instance_from_json,
    instance_to_json,
)

EXIT_OK, EXIT_FAILED, EXIT_MALFORMED = 0, 1, 2
#: ``fimtheory counterexamples``: some weakening inconclusive (not falsified within budget, or
#: not certified) or an error — the contract's "inconclusive or error" code.
EXIT_UNSETTLED = 3
#: Format 2 adds ``inputs_sha256`` (digest of claim, weakening and instance).
FORMAT_VERSION = 2

#: Per-weakening budget: Hypothesis examples, optimiser evaluations, extra Hypothesis seeds.
BUDGETS = {
    "quick": {"max_examples": 100, "opt_evals": 200, "extra_seeds": 1},
    "ci": {"max_examples": 150, "opt_evals": 400, "extra_seeds": 2},
    "thorough": {"max_examples": 2000, "opt_evals": 3000, "extra_seeds": 4},
}


# --------------------------------------------------------------------------------------
# the hunt
# --------------------------------------------------------------------------------------


@dataclass
class HuntResult:
    """Outcome of hunting one weakening.

    Attributes
    ----------
    claim_id, weakening_id : str
    status : str
        The report words shared by every command: ``'falsified'`` (a counterexample found
        and its violation certified), ``'inconclusive'`` (none found within the budget, or
        one found whose sign could not be certified; ``reason`` says which), ``'error'``.
    reason : str
        Why the status is inconclusive (empty otherwise).
    source : str
        ``'hypothesis'`` or ``'optimizer'``.
    instance : object or None
    float_margin : float
    certificate : Certificate or None
    seconds : float
    examples, rejected : int
        Hypothesis examples tried and rejected (hypotheses not met).
    error : str
    path : str
        Where the counterexample was written.
    """

    claim_id: str
    weakening_id: str
    status: str = "inconclusive"
    reason: str = ""
    source: str = ""
    instance: object = None
    float_margin: float = math.nan
    certificate: Certificate | None = None
    seconds: float = 0.0
    examples: int = 0
    rejected: int = 0
    best_margin: float = math.inf
    error: str = ""
    path: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "falsified"


class _Recorder:
    """Wraps a weakening for check_property and remembers the example with the lowest
    finite margin (the optimiser's seed when Hypothesis finds no violation)."""

    def __init__(self, w: Weakening):
        self._w = w
        self.id = w.id
        self.strict = w.strict
        # a weakening's own rigorous evaluator (claims declared with an enclosure); the
        # built-ins' are found by id in fimtheory.enclosures.ENCLOSURES
        self.evaluate_iv = getattr(w, "evaluate_iv", None)
        self.best = None
        self.best_margin = math.inf

    def evaluate(self, inst):
        out = self._w.evaluate(inst)
        if out.hypotheses_met and math.isfinite(out.margin) and out.margin < self.best_margin:
            self.best, self.best_margin = inst, out.margin
        return out

    def evaluate_mp(self, inst, dps):
        return self._w.evaluate_mp(inst, dps)


def all_weakenings(claim_ids=None) -> list[tuple]:
    """(claim, weakening) pairs of the registry, or of the given claim ids."""
    claims = [get_claim(c) for c in claim_ids] if claim_ids else list(REGISTRY.values())
    return [(c, w) for c in claims for w in c.weakenings]


def _rand_sym(rng, n):
    b = rng.standard_normal((n, n))
    b = 0.5 * (b + b.T)
    return b / np.linalg.norm(b)


def parametrise(instance, rng, k: int = 6):
    """A low-dimensional family c ↦ instance(c) through ``instance`` (c = 0), or None.

    Matrix pairs: E + ‖E‖Σ c_j B_j (B_j random symmetric, unit Frobenius norm); ensembles:
    the same on each independent draw, keeping the antithetic (±E) and diagonal structure;
    scores: G + ‖G‖Σ c_j B_j. Quantization-born instances are not parametrised (an arbitrary
    E would no longer come from a quantizer), nor are partitions (discrete, exact).
    """
    pair = type(instance).__name__ == "_IndefinitePair"
    if pair or (isinstance(instance, MatrixPerturbation) and instance.delta is None):
        E0 = np.asarray(instance.E)
        n = E0.shape[0]
        s = float(np.linalg.norm(E0)) or 1.0
        basis = [_rand_sym(rng, n) for _ in range(k)]

        def make(c):
            E = E0 + s * sum(cj * b for cj, b in zip(c, basis))
            if type(instance).__name__ == "_IndefinitePair":
                return type(instance)(instance.A, E)
            return MatrixPerturbation(instance.A, E, v=instance.v, origin=instance.origin + "+opt")

        return make, k
    if isinstance(instance, NoiseEnsemble):
        Es = list(instance.perturbations)
        m = len(Es)
        anti = m % 2 == 0 and all(np.array_equal(Es[i + m // 2], -Es[i]) for i in range(m // 2))
        free = Es[: m // 2] if anti else Es
        n = instance.F.shape[0]
        diag = all(not np.count_nonzero(E - np.diag(np.diag(E))) for E in Es)
        dirs = []
        for _ in free:
            if diag:
                dirs.append([np.diag(rng.standard_normal(n)) for _ in range(min(k, n))])
            else:
                dirs.append([_rand_sym(rng, n) for _ in range(k)])
        sizes = [len(d) for d in dirs]

        def make(c):
            out, pos = [], 0
            for E, d, sz in zip(free, dirs, sizes):
                s = float(np.linalg.norm(E)) or 1.0
                out.append(E + s * sum(cj * b for cj, b in zip(c[pos : pos + sz], d)))
                pos += sz
            if anti:
                out = out + [-e for e in out]
            return NoiseEnsemble(instance.F, tuple(out), t=instance.t, origin=instance.origin + "+opt")

        return make, sum(sizes)
    if isinstance(instance, ScoreInstance):
        G0 = instance.G
        s = float(np.linalg.norm(G0)) or 1.0
        basis = [rng.standard_normal(G0.shape) / math.sqrt(G0.size) for _ in range(k)]

        def make(c):
            return ScoreInstance(
                G0 + s * sum(cj * b for cj, b in zip(c, basis)),
                instance.power_steps,
                instance.lanczos_steps,
                instance.q,
                instance.origin + "+opt",
            )

        return make, k
    return None


def optimise(w: Weakening, seed_instance, *, evals: int = 200, seed: int = 0):
    """Minimise ``w``'s float margin around ``seed_instance`` with Nelder–Mead.

    Returns
    -------
    (instance, margin) of the best point, or (None, inf) when the instance type has no
    parametrisation. Points whose hypotheses fail score +1e3.
    """
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    fam = parametrise(seed_instance, rng)
    if fam is None:
        return None, math.inf
    make, k = fam
    best = {"m": math.inf, "inst": None}

    def f(c):
        try:
            inst = make(np.asarray(c))
            out = w.evaluate(inst)
        except (FimTheoryError, ValueError, np.linalg.LinAlgError):
            return 1e3
        if not out.hypotheses_met or not math.isfinite(out.margin):
            return 1e3
        if out.margin < best["m"]:
            best.update(m=out.margin, inst=inst)
        return out.margin

    x0 = np.zeros(k)
    simplex = np.vstack([x0] + [0.1 * np.eye(k)[i] for i in range(k)])
    minimize(
        f,
        x0,
        method="Nelder-Mead",
        options={"maxfev": evals, "initial_simplex": simplex, "xatol": 1e-12, "fatol": 1e-14},
    )
    return best["inst"], best["m"]


def _confirm(w, inst, dps):
    """Adjudicated violation? Returns (violated, float_margin).

    A float margin that reads as a violation (or needs adjudication) goes to
    :func:`fimtheory.claims.adjudicate`; only ``holds is False`` (verdict "violated") counts.
    An undecided adjudication (``holds is None``) is not a counterexample.
    """
    out = w.evaluate(inst)
    if not out.hypotheses_met:
        return False, out.margin
    holds = (out.margin > 0) if w.strict else (out.margin >= 0)
    if out.needs_adjudication or not holds:
        holds, _ = adjudicate(w, inst, out, dps)
    return holds is False, out.margin


def hunt_weakening(claim, w: Weakening, *, profile: str = "quick", seed: int = 0, dps: int = 50) -> HuntResult:
    """Search for a certified counterexample to one weakening within the profile's budget."""
    from properties.claim_strategies import strategy_for
    from properties.verify import check_property

    if profile not in BUDGETS:
        raise InputError(f"unknown profile {profile!r}; known: {', '.join(BUDGETS)}")
    budget = BUDGETS[profile]
    res = HuntResult(claim.id, w.id)
    t0 = time.perf_counter()
    candidates = []
    rec = _Recorder(w)
    for s in [seed] + [seed + 1000 * (j + 1) for j in range(budget["extra_seeds"])]:
        rep = check_property(
            rec,
            strategy_for(w.strategy),
            profile=profile,
            seed=s,
            dps=dps,
            max_examples=budget["max_examples"],
            report_id=w.id,
        )
        res.examples += rep.examples
        res.rejected += rep.rejected
        if rep.status == "error":
            res.status, res.error = "error", rep.error
            break
        if rep.status == "falsified":
            candidates.append((instance_from_json(rep.counterexample["instance"]), "hypothesis", s))
            break
    res.best_margin = rec.best_margin
    if not candidates and res.status != "error" and rec.best is not None:
        inst, m = optimise(w, rec.best, evals=budget["opt_evals"], seed=seed)
        if inst is not None and m < 0:
            # round-trip through JSON so the stored instance is exactly the certified one
            inst = instance_from_json(instance_to_json(inst))
            if _confirm(w, inst, dps)[0]:
                candidates.append((inst, "optimizer", seed))
        res.best_margin = min(res.best_margin, m)
    if res.status != "error":
        bm = "none met the hypotheses" if math.isinf(res.best_margin) else f"best float margin {res.best_margin:.3e}"
        res.reason = (
            f"no counterexample within the {profile} budget ({res.examples} examples, {res.rejected} "
            f"not meeting the hypotheses, {budget['opt_evals']} optimiser evaluations; {bm})"
        )
    for inst, source, s in candidates:
        try:
            cert = certify(w, inst, dps)
        except FimTheoryError as exc:
            res.status, res.reason = "inconclusive", f"a violation was found but certification failed: {exc}"
            continue
        res.instance, res.source, res.certificate = inst, source, cert
        res.float_margin = w.evaluate(inst).margin
        res.extra["hypothesis_seed"] = s
        if cert.certified:
            res.status, res.reason = "falsified", ""
            break
        res.status = "inconclusive"
        res.reason = (
            f"a violation was found (float margin {res.float_margin:.3e}) but its enclosure "
            f"{cert.short()} at {cert.dps} digits does not certify it" + (f" ({cert.note})" if cert.note else "")
        )
    res.seconds = time.perf_counter() - t0
    return res


def library_versions() -> dict:
    """Versions of the libraries a replay depends on."""
    import hypothesis
    import mpmath
    import scipy

    import fimtheory

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "mpmath": mpmath.__version__,
        "hypothesis": hypothesis.__version__,
        "fimtheory": getattr(fimtheory, "__version__", "unknown"),
    }


def result_to_json(res: HuntResult, *, profile: str, seed: int) -> dict:
    """The stored form of a certified counterexample (see module docstring)."""
    cert = res.certificate
    inst_json = instance_to_json(res.instance)
    return {
        "format": FORMAT_VERSION,
        "claim": res.claim_id,
        "weakening": res.weakening_id,
        "instance": inst_json,
        "inputs_digest": DIGEST_ALGORITHM,
        "inputs_sha256": inputs_digest(counterexample_inputs(res.claim_id, res.weakening_id, inst_json)),
        "float_margin": res.float_margin,
        "float_margin_hex": float(res.float_margin).hex(),
        "certificate": cert.to_json(),
        "dps": cert.dps,
        "source": res.source,
        "seed": seed,
        "hypothesis_seed": res.extra.get("hypothesis_seed", seed),
        "profile": profile,
        "versions": library_versions(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_counterexample(res: HuntResult, out_dir, *, profile: str, seed: int) -> Path:
    """Write ``<weakening-id>.json`` under ``out_dir``; returns the path."""
    rec = result_to_json(res, profile=profile, seed=seed)
    # the stored form must be a faithful image of the certified instance
    again = instance_from_json(json.loads(json.dumps(rec["instance"])))
    if instance_to_json(again) != rec["instance"]:
        raise InputError(f"{res.weakening_id}: instance does not round-trip through its stored form")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{res.weakening_id}.json"
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return path


def hunt(claim_ids=None, *, profile="quick", seed=0, dps=50, out_dir=None, progress=None) -> list[HuntResult]:
    """Hunt every weakening (of ``claim_ids``), writing certified ones under ``out_dir``."""
    pairs = all_weakenings(claim_ids)
    results = []
    for i, (claim, w) in enumerate(pairs):
        if progress:
            progress(i, len(pairs), w.id)
        res = hunt_weakening(claim, w, profile=profile, seed=seed, dps=dps)
        if res.ok and out_dir is not None:
            res.path = str(write_counterexample(res, out_dir, profile=profile, seed=seed))
        results.append(res)
    if progress:
        progress(len(pairs), len(pairs), "")
    return results


def format_hunt_table(results: list[HuntResult]) -> str:
    """Plain-text table: weakening, found?, source, certified margin enclosure, seconds."""
    head = (
        f"{'weakening':<26} {'claim':<6} {'found':<5} {'status':<14} {'source':<10} "
        f"{'certified margin enclosure':<32} {'method':<11} {'s':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        found = "yes" if r.instance is not None else "no"
        encl = r.certificate.short() if r.certificate is not None else "—"
        meth = r.certificate.method if r.certificate is not None else "—"
        lines.append(
            f"{r.weakening_id:<26} {r.claim_id:<6} {found:<5} {r.status:<14} {r.source or '—':<10} "
            f"{encl:<32} {meth:<11} {r.seconds:>6.2f}"
        )
        if r.status == "error":
            lines.append(f"    error: {r.error}")
        elif r.status == "inconclusive":
            lines.append(f"    inconclusive: {r.reason}")
    return "\n".join(lines)


def hunt_document(results: list[HuntResult], *, profile: str, seed: int, seconds: float) -> dict:
    """The JSON report of a hunt (``fimtheory counterexamples --json PATH``)."""
    statuses: dict = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    rows = []
    for r in results:
        c = r.certificate
        rows.append(
            {
                "claim": r.claim_id,
                "weakening": r.weakening_id,
                "status": r.status,
                "reason": r.reason,
                "error": r.error,
                "source": r.source,
                "path": r.path,
                "examples": r.examples,
                "rejected": r.rejected,
                "best_float_margin": None if math.isinf(r.best_margin) else r.best_margin,
                "certificate": None if c is None else c.to_json(),
                "seconds": r.seconds,
            }
        )
    return {
        "profile": profile,
        "seed": seed,
        "seconds": seconds,
        "weakenings": rows,
        "statuses": statuses,
        "all_falsified": bool(results) and all(r.ok for r in results),
        "exit_status": EXIT_OK if results and all(r.ok for r in results) else EXIT_UNSETTLED,
        "versions": library_versions(),
    }


def hunt_command(args) -> int:
    """CLI: ``fimtheory counterexamples``: exit 0 iff every requested weakening was falsified
    with a certified margin, else 3 (some weakening inconclusive, with its reason, or an
    error). ``--json PATH`` (when the plugin declares it) writes :func:`hunt_document`."""
    for cid in args.claim or []:
        get_claim(cid)
    if getattr(args, "readings", False):
        rep = stronger_readings(profile=args.profile, seed=args.seed)
        print(format_readings(rep))
        return EXIT_OK
    pairs = all_weakenings(args.claim)
    if not pairs:
        raise InputError(f"no weakenings for claims {args.claim}")

    from fimtheory.cli import ProgressLines

    lines = ProgressLines("counterexamples")  # a bar on a terminal, plain lines otherwise

    def progress(i, n, wid):
        if wid:
            lines.step(f"[{i + 1}/{n}] {wid}")
        else:
            lines.close(f"[{n}/{n}] done")

    t0 = time.perf_counter()
    results = hunt(args.claim, profile=args.profile, seed=args.seed, out_dir=args.out, progress=progress)
    print(format_hunt_table(results))
    seconds = time.perf_counter() - t0
    json_path = getattr(args, "json", None)
    if json_path:  # before printing: a closed stdout must not lose the report
        doc = hunt_document(results, profile=args.profile, seed=args.seed, seconds=seconds)
        Path(json_path).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(format_hunt_table(results))
    bad = [r.weakening_id for r in results if not r.ok]
    print(
        f"{sum(r.ok for r in results)}/{len(results)} weakenings falsified and certified "
        f"in {seconds:.1f} s; written to {args.out}"
    )
    if bad:
        print(f"NOT falsified/certified (inconclusive or error, exit 3): {', '.join(bad)}")
    return EXIT_OK if not bad else EXIT_UNSETTLED


# --------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------


class MalformedCounterexample(InputError):
    """A stored counterexample file that cannot be read as one."""


_REQUIRED = ("format", "claim", "weakening", "instance", "inputs_sha256", "float_margin_hex", "certificate")


def load_counterexample(path):
    """Parse a stored file: (weakening, instance, record). Raises MalformedCounterexample.

    Does not check the digest (:func:`replay_file` does, before decoding the instance)."""
    rec = _read_record(path)
    try:
        w = _weakening_of(rec)
        inst = instance_from_json(rec["instance"])
        float.fromhex(rec["float_margin_hex"])
    except (UnknownIdError, FimTheoryError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise MalformedCounterexample(f"{type(exc).__name__}: {exc}") from None
    return w, inst, rec


def _weakening_of(rec: dict):
    """The weakening a stored record names. An id ``CLAIM@module:callable`` is the claim bound
    to a user's implementation (:func:`properties.subjects.resolve` imports it again)."""
    if "@" in str(rec["weakening"]):
        from properties.subjects import resolve

        return resolve(rec["claim"], rec["weakening"])
    return get_claim(rec["claim"]).weakening(rec["weakening"])


def _read_record(path) -> dict:
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedCounterexample(f"not readable JSON ({exc})") from None
    if not isinstance(rec, dict):
        raise MalformedCounterexample("top level is not an object")
    for key in _REQUIRED:
        if key not in rec:
            raise MalformedCounterexample(f"missing field {key!r}")
    if rec["format"] != FORMAT_VERSION:
        raise MalformedCounterexample(f"format {rec['format']!r}, expected {FORMAT_VERSION} (regenerate the file)")
    return rec


@dataclass
class ReplayResult:
    """Outcome of replaying one file: ``status`` is 'reproduced', 'not reproduced' or
    'malformed'; ``message`` starts with "reproduces:", "does not reproduce:" or says why
    the file is malformed."""

    path: str
    status: str  # 'reproduced' | 'not reproduced' | 'malformed'
    message: str = ""

    @property
    def code(self) -> int:
        return {"reproduced": EXIT_OK, "not reproduced": EXIT_FAILED}.get(self.status, EXIT_MALFORMED)


#: What evaluating edited inputs may raise; replay reports it as "does not reproduce".
_EVAL_ERRORS = (FimTheoryError, ValueError, ArithmeticError, np.linalg.LinAlgError)


def _fail(path, why: str) -> ReplayResult:
    return ReplayResult(str(path), "not reproduced", f"does not reproduce: {why}")


def same_method(stored: str, new: str) -> bool:
    """Whether a stored certificate's method names the method of a fresh one: equal names, or
    a stored older spelling of it (:data:`properties.certify.LEGACY_METHODS`: files written
    before ``declared-enclosure`` existed say ``eigenvalues`` for a weakening's own enclosure)."""
    from properties.certify import LEGACY_METHODS

    return stored == new or LEGACY_METHODS.get(stored) == new


def enclosures_agree(stored: Certificate, new: Certificate) -> bool:
    """The agreement rule of replay: both enclosures usable and certifying, same method
    (:func:`same_method`), same exact-zero proof, and the intervals intersect (stored.lo ≤
    new.hi and new.lo ≤ stored.hi). Two rigorous enclosures of the same exact margin always
    intersect, so disjoint intervals mean that the inputs or the certifier changed."""
    return (
        stored.certified
        and new.certified
        and same_method(stored.method, new.method)
        and stored.exact_zero == new.exact_zero
        and stored.lo <= new.hi
        and new.lo <= stored.hi
    )


def replay_file(path) -> ReplayResult:
    """Replay one stored counterexample. ``reproduced`` iff, in this order,

    1. the SHA-256 of the canonical bytes of its inputs (claim id, weakening id, instance:
       every array with dtype, shape and each float's ``float.hex``; every scalar) equals
       the stored ``inputs_sha256``;
    2. the stored enclosure [lo, hi] (exact binary endpoints, enclosed by the outward-rounded
       decimal ones) certifies a violation by :attr:`Certificate.certified`;
    3. the weakening's hypotheses hold and its float margin is bit-identical to the stored one;
    4. a fresh certification from scratch at the stored precision (no escalation) certifies a
       violation and agrees with the stored enclosure (:func:`enclosures_agree`);
    5. the adjudicator :func:`fimtheory.claims.adjudicate` — an independent implementation of
       the interval evaluators (:mod:`fimtheory.enclosures`) — returns "violated" with an
       enclosure that intersects the stored one.

    Parameter-level files (format ``fimtheory.parameter_level/…``) are replayed by
    :func:`properties.parameter_level.replay_file_check` under steps 1–4.
    """
    try:
        head = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        head = None
    if isinstance(head, dict) and str(head.get("format", "")).startswith("fimtheory.parameter_level/"):
        from properties.parameter_level import replay_file_check

        status, message = replay_file_check(path)
        return ReplayResult(str(path), status, message)
    try:
        rec = _read_record(path)
        _weakening_of(rec)  # unknown ids: malformed, not "changed"
        digest = inputs_digest(counterexample_inputs(rec["claim"], rec["weakening"], rec["instance"]))
    except (MalformedCounterexample, InputError, UnknownIdError, TypeError, AttributeError) as exc:
        return ReplayResult(str(path), "malformed", str(exc))
    if digest != rec["inputs_sha256"]:
        return _fail(
            path, f"inputs changed (digest mismatch: stored {str(rec['inputs_sha256'])[:16]}…, computed {digest[:16]}…)"
        )
    try:
        w, inst, rec = load_counterexample(path)
        stored = Certificate.from_json(rec["certificate"])
    except (MalformedCounterexample, InputError) as exc:
        return ReplayResult(str(path), "malformed", str(exc))
    if stored.strict != bool(w.strict):
        return _fail(path, f"stored certificate has strict={stored.strict}, the weakening strict={w.strict}")
    if not stored.certified or rec["certificate"].get("certified") is not True:
        return _fail(path, f"stored enclosure {stored.short()} does not certify a violation")
    try:
        out = w.evaluate(inst)
    except _EVAL_ERRORS as exc:
        return _fail(path, f"evaluation failed: {type(exc).__name__}: {exc}")
    if not out.hypotheses_met:
        return _fail(path, f"hypotheses no longer met: {out.reason}")
    stored_hex = rec["float_margin_hex"]
    if float(out.margin).hex() != stored_hex:
        return _fail(path, f"float margin {float(out.margin).hex()} != stored {stored_hex}")
    if stored.dps < 50:
        return _fail(path, f"stored precision {stored.dps} < 50 digits")
    try:
        new = certify(w, inst, stored.dps, ladder=())
    except _EVAL_ERRORS as exc:
        return _fail(path, f"re-certification failed: {type(exc).__name__}: {exc}")
    if not new.certified:
        return _fail(
            path,
            f"re-certified enclosure {new.short()} at {new.dps} digits does not certify a violation"
            + (f" ({new.note})" if new.note else ""),
        )
    if not enclosures_agree(stored, new):
        return _fail(
            path,
            f"re-certified enclosure {new.short(12)} ({new.method}) disagrees with stored "
            f"{stored.short(12)} ({stored.method})",
        )
    # an independent second certifier: the adjudicator's own interval evaluators
    try:
        adj = adjudicate(w, inst, out, stored.dps)
    except _EVAL_ERRORS as exc:
        return _fail(path, f"independent adjudication failed: {type(exc).__name__}: {exc}")
    adj_holds = getattr(adj, "holds", None)
    adj_enc = getattr(adj, "enclosure", None)
    if adj_holds is not False or adj_enc is None:
        return _fail(
            path, f"the independent adjudicator does not certify the violation: {getattr(adj, 'reason', adj_holds)}"
        )
    if not (stored.lo <= adj_enc[1] and adj_enc[0] <= stored.hi):
        return _fail(
            path,
            f"the independent adjudicator's enclosure [{mpmath.nstr(adj_enc[0], 12)}, "
            f"{mpmath.nstr(adj_enc[1], 12)}] disagrees with stored {stored.short(12)}",
        )
    same = stored.lo == new.lo and stored.hi == new.hi
    return ReplayResult(
        str(path),
        "reproduced",
        f"reproduces: inputs sha256 {digest[:12]}… match, float margin {out.margin:.6g} bit-identical, "
        f"re-certified at {new.dps} digits {new.short()} ({'identical to' if same else 'overlaps'} "
        f"the stored enclosure), independently confirmed ({getattr(adj, 'reason', 'violated')})",
    )


def replay_command(args) -> int:
    """CLI: ``fimtheory replay FILE...``: exit 0 all reproduced, 1 one did not, 2 malformed."""
    code = EXIT_OK
    for f in args.files:
        r = replay_file(f)
        print(f"{r.status:<15} {f}: {r.message}")
        code = max(code, r.code)
    return code


# --------------------------------------------------------------------------------------
# stronger readings of the abstract
# --------------------------------------------------------------------------------------

READING_PROFILES = {"quick": 150, "ci": 300, "thorough": 3000}


def _collect(strategy, n: int, seed: int) -> list:
    """``n`` Hypothesis draws of ``strategy`` (generate phase only, fixed seed)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    got = []

    @hseed(seed)
    @settings(
        max_examples=n, phases=[Phase.generate], database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(strategy)
    def run(x):
        got.append(x)

    run()
    return got


def _lam(F):
    return float(np.linalg.eigvalsh(F)[-1])


def certify_lowering(q, dps: int = 50) -> Certificate:
    """Enclosure of λ_max(F(Q(θ))) − λ_max(F(θ)) with both FIMs built from the model's scores
    in interval arithmetic at the exact float θ, Q(θ), X, y (negative ⇒ quantization lowered
    λ_max)."""
    from properties.certify import _hi, _lo, iv_batch_lambda_max, working_precision

    with working_precision(dps):
        lq = iv_batch_lambda_max(q.model, q.X, q.y, q.theta_q)
        l0 = iv_batch_lambda_max(q.model, q.X, q.y, q.theta)
        d = lq - l0
        return Certificate(_lo(d), _hi(d), dps, "eigenvalues")


def stronger_readings(profile: str = "quick", seed: int = 0) -> dict:
    """Measure two readings of the abstract on small quantized models.

    1. "4-bit round-to-nearest never lowers λ_max": share of 4-bit RTN draws (integer grids,
       NF4, FP4) of linear/logistic/softmax models with λ_max(F(Q(θ))) < λ_max(F(θ)).
    2. "σ = λ_max(F_q)/λ_max(F) is always ≥ 1": share with σ < 1 over RTN at 2–8 bits and
       4-bit stochastic rounding, with the distribution of σ.

    Draws are Hypothesis draws (generate phase, ``seed``), so they are reproducible but not
    i.i.d. from a natural distribution; the counts are what was seen.

    Returns
    -------
    dict with per-reading, per-model counts, shares, σ quantiles and one certified example.
    """
    from properties.strategies import quantization_noise_matrices

    n = READING_PROFILES[profile]
    out = {"profile": profile, "seed": seed, "draws_per_cell": n, "readings": []}
    specs = [
        ("4-bit RTN never lowers λ_max", {"bits": 4}, "rtn4"),
        ("σ ≥ 1 under quantization (RTN 2–8 bits)", {"bits": (2, 8)}, "rtn2-8"),
        ("σ ≥ 1 under 4-bit stochastic rounding", {"scheme": "sr-int4-sym-tensor"}, "sr4"),
    ]
    for title, kw, key in specs:
        entry = {"reading": title, "key": key, "models": {}}
        worst = None
        for j, model in enumerate(("linear", "logistic", "softmax")):
            draws = _collect(quantization_noise_matrices(model=model, **kw), n, seed + 17 * j)
            sig, unchanged, keys = [], 0, set()
            by_scheme: dict = {}
            for q in draws:
                l0, l1 = _lam(q.F), _lam(q.F_q)
                if not l0 > 0:
                    continue
                s = l1 / l0
                sig.append(s)
                unchanged += bool(np.array_equal(q.theta, q.theta_q))
                keys.add((q.X.tobytes(), q.theta.tobytes(), q.scheme))
                parts = q.scheme.split("-")
                fam = "-".join(parts[:2]) if parts[0] in ("rtn", "sr") else parts[0]
                c = by_scheme.setdefault(fam, [0, 0])
                c[0] += 1
                c[1] += s < 1
                if s < 1 and (worst is None or s < worst[0]):
                    worst = (s, q)
            sig = np.array(sig)
            low = int(np.sum(sig < 1))
            entry["models"][model] = {
                "draws": int(sig.size),
                "distinct": len(keys),
                "unchanged": unchanged,
                "ties": int(np.sum(sig == 1)),
                "lowered": low,
                "raised": int(np.sum(sig > 1)),
                "share_lowered": low / sig.size if sig.size else math.nan,
                "share_lowered_moved": low / (sig.size - unchanged) if sig.size > unchanged else math.nan,
                "sigma_min": float(sig.min()) if sig.size else math.nan,
                "sigma_median": float(np.median(sig)) if sig.size else math.nan,
                "sigma_max": float(sig.max()) if sig.size else math.nan,
                "by_scheme": {k: {"draws": v[0], "lowered": v[1]} for k, v in sorted(by_scheme.items())},
                "hypothesis_seed": seed + 17 * j,
            }
        if worst is not None:
            s, q = worst
            cert = certify_lowering(q)
            entry["example"] = {
                "model": q.model,
                "scheme": q.scheme,
                "sigma": s,
                "theta": [float(x).hex() for x in q.theta],
                "theta_q": [float(x).hex() for x in q.theta_q],
                "n": int(q.X.shape[0]),
                "d": int(q.X.shape[1]),
                "certified_difference": cert.to_json(),
                "certified": cert.certified,
                "enclosure": cert.short(8),
            }
        out["readings"].append(entry)
    return out


def format_readings(rep: dict) -> str:
    lines = [
        f"stronger readings (profile {rep['profile']}, seed {rep['seed']}, "
        f"{rep['draws_per_cell']} Hypothesis draws per model)"
    ]
    head = (
        f"{'reading':<42} {'model':<9} {'draws':>5} {'Q=id':>4} {'σ=1':>4} {'σ<1':>4} {'share':>6} "
        f"{'moved':>6} {'σ min':>7} {'σ med':>7} {'σ max':>7}"
    )
    lines += [head, "-" * len(head)]
    for e in rep["readings"]:
        for m, s in e["models"].items():
            lines.append(
                f"{e['reading']:<42} {m:<9} {s['draws']:>5} {s['unchanged']:>4} {s['ties']:>4} "
                f"{s['lowered']:>4} {s['share_lowered']:>6.1%} {s['share_lowered_moved']:>6.1%} "
                f"{s['sigma_min']:>7.4f} {s['sigma_median']:>7.4f} {s['sigma_max']:>7.3g}"
            )
        ex = e.get("example")
        if ex:
            lines.append(
                f"    certified example: {ex['model']} {ex['scheme']} n={ex['n']} d={ex['d']} "
                f"σ={ex['sigma']:.6f}; λ_max(F_q)−λ_max(F) ∈ {ex['enclosure']} "
                f"({'certified < 0' if ex['certified'] else 'NOT certified'})"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m properties.counterexamples readings [--profile P] [--seed N] [--json PATH]``:
    the stronger-readings measurement (the ``fimtheory counterexamples`` plugin declares no
    ``--readings`` flag)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m properties.counterexamples")
    p.add_argument("what", choices=["readings"])
    p.add_argument("--profile", choices=list(READING_PROFILES), default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH")
    a = p.parse_args(argv)
    rep = stronger_readings(profile=a.profile, seed=a.seed)
    print(format_readings(rep))
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1) + "\n")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
