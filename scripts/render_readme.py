"""Render README.md's result regions (and docs/theory.md's code table) from what is committed.

Usage (from the repository root)::

    python scripts/render_readme.py           # rewrite the regions of README.md and docs/theory.md
    python scripts/render_readme.py --check   # exit 1 and show a diff if either is stale

A region is the text between ``<!-- results:NAME -->`` and ``<!-- /results -->``; everything
between the two markers is generated, everything outside them is left alone. Each NAME is
rendered from one committed source (see :data:`SOURCES`): a JSON report written by a
``fimtheory`` command, or the stored counterexample files. A source that is not committed yet
renders as a "not yet run" note naming the command that produces it, never as old numbers.

The results regions need only the standard library; the ``claims-code`` region of
docs/theory.md imports the claim registry (numpy, scipy, mpmath: the core dependencies).
``tests/test_readme_figures.py`` fails when a file differs from what this script renders.
"""

from __future__ import annotations

import argparse
import decimal
import difflib
import glob
import json
import math
import os
import re
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = "README.md"
THEORY = "docs/theory.md"
BEGIN = re.compile(r"^<!-- results:([A-Za-z0-9_.-]+) -->$")
END = "<!-- /results -->"

#: region name -> (committed source path(s), the command that writes it)
SOURCES = {
    "verify-quick": (
        ["results/verify-quick.json"],
        "fimtheory verify --profile quick --seed 0 --json results/verify-quick.json",
    ),
    "verify-thorough": (
        ["results/verify-thorough.json"],
        "fimtheory verify --profile thorough --seed 1 --json results/verify-thorough.json",
    ),
    "counterexamples": (
        ["tests/counterexamples"],
        "fimtheory counterexamples --profile quick --seed 0 --out tests/counterexamples",
    ),
    "parameter-level": (
        ["tests/counterexamples/param-logistic.json"],
        "python -m properties.parameter_level (see docs/parameter_level.md)",
    ),
    "readings": (
        ["results/readings-ci.json"],
        "python -m properties.counterexamples readings --profile ci --seed 0 --json results/readings-ci.json",
    ),
    "check-models-quick": (
        ["results/check-models-quick.json"],
        "fimtheory check-models --profile quick --seed 0 --json results/check-models-quick.json",
    ),
    "check-models-smollm2-quick": (
        ["results/check-models-smollm2-quick.json"],
        "fimtheory check-models --model smollm2 --profile quick --seed 0 "
        "--json results/check-models-smollm2-quick.json",
    ),
    "inflation-quick": (
        ["results/inflation-quick/report.json", "results/inflation-quick.json"],
        "fimtheory inflation --profile quick --seed 0 --out results/inflation-quick",
    ),
    "paper-data": (
        ["results/paper-data.json"],
        "fimtheory paper-data --json results/paper-data.json",
    ),
    "eq1-study": (
        ["results/eq1-study-byte-lm-full.json"],
        "fimtheory eq1-study --model byte-lm --profile full --seed 0 --json results/eq1-study-byte-lm-full.json",
    ),
    "eq1-study-smollm2-quick": (
        ["results/eq1-study-smollm2-quick.json"],
        "fimtheory eq1-study --model smollm2 --profile quick --seed 0 --json results/eq1-study-smollm2-quick.json",
    ),
    "verify-thorough-sharp": (
        [
            "results/verify-thorough-sharp-kt-ll.json",
            "results/verify-thorough-sharp-s3.json",
            "results/verify-thorough-sharp-s3l.json",
            "results/verify-thorough-sharp-t43b.json",
            "results/verify-thorough-sharp-t43c.json",
        ],
        "fimtheory verify --claim KT --claim LL --profile thorough --seed 1 "
        "--json results/verify-thorough-sharp-kt-ll.json (likewise --claim S3, S3L, T4.3b-S, T4.3c-S)",
    ),
    "sharp-conjecture": (
        ["results/sharp-conjecture.json"],
        "python -m properties.sharp_conjecture --profile full --seed 0 --json results/sharp-conjecture.json",
    ),
    "sharp-critical-scale": (
        ["results/sharp-critical-scale.json"],
        "python -m properties.sharp_critical_scale --n-instances 400 --seed 0 --json results/sharp-critical-scale.json",
    ),
    "check-models-smollm2-block-quick": (
        ["results/check-models-smollm2-block-quick.json"],
        "fimtheory check-models --model smollm2-block --profile quick --seed 0 "
        "--json results/check-models-smollm2-block-quick.json",
    ),
    "check-models-gemma3-quick": (
        ["results/check-models-gemma3-quick.json"],
        "fimtheory check-models --model gemma3 --profile quick --seed 0 --json results/check-models-gemma3-quick.json",
    ),
    "check-models-textgenrnn-quick": (
        ["results/check-models-textgenrnn-quick.json"],
        "fimtheory check-models --model textgenrnn --profile quick --seed 0 "
        "--json results/check-models-textgenrnn-quick.json",
    ),
    "inflation-paper": (
        ["results/inflation-paper/report.json"],
        "fimtheory inflation --profile paper --seed 0 --out results/inflation-paper",
    ),
    "inflation-real": (
        ["results/inflation-real/report.json"],
        "fimtheory inflation --profile quick --model gemma3 --model textgenrnn --out results/inflation-real",
    ),
    "inflation-ci4": (
        ["results/inflation-paper-ci4-s2/report.json"],
        "fimtheory inflation --ci-pilot results/inflation-paper-ci4-s1 --out results/inflation-paper-ci4-s2 "
        "(one process per model with --model M --resume, then --report-only)",
    ),
    "inflation-ci4-smollm2": (
        ["results/inflation-paper-ci4-smollm2/report.json"],
        "fimtheory inflation --ci-pilot results/inflation-paper-v1 --model smollm2 "
        "--out results/inflation-paper-ci4-smollm2 --resume (then --report-only)",
    ),
    "inflation-ci4-smollm2-s2": (
        ["results/inflation-paper-ci4-smollm2-s2/report.json"],
        "fimtheory inflation --ci-pilot results/inflation-paper-ci4-smollm2 --model smollm2 "
        "--out results/inflation-paper-ci4-smollm2-s2 --resume (stopped at a preset time; then --report-only)",
    ),
    "inflation-ci4-gemma3": (
        ["results/inflation-paper-ci4-gemma3/report.json"],
        "fimtheory inflation --ci-pilot results/inflation-paper --model gemma3 "
        "--out results/inflation-paper-ci4-gemma3 --ci-no-first-order --resume (then --report-only)",
    ),
    "check-models-smollm2-kquant-quick": (
        ["results/check-models-smollm2-kquant-quick.json"],
        "fimtheory check-models --model smollm2 --scheme gguf-q4_k-or-q5_0 --scheme gguf-q5_k-or-q5_1 "
        "--scheme gguf-q6_k-or-q8_0 --scheme gguf-q8_0 --json results/check-models-smollm2-kquant-quick.json",
    ),
    "verify-throughput": (
        ["benchmarks/verify-thorough-throughput.json", "benchmarks/verify-thorough-throughput-plain-mpmath.json"],
        "python -m benchmarks.verify_throughput full (and MPMATH_NOGMPY=1 python -m benchmarks.verify_throughput "
        "full --out benchmarks/verify-thorough-throughput-plain-mpmath.json)",
    ),
    "sharp-sc-real": (
        ["results/sharp-sc-real.json"],
        "fimtheory sharp-study sc --model byte-lm --model smollm2 --seed 0 --json results/sharp-sc-real.json",
    ),
    "ab-tightness": (
        ["results/ab-tightness.json"],
        "fimtheory sharp-study ab --model byte-lm --model smollm2 --seed 0 --json results/ab-tightness.json",
    ),
    "streaming": (
        ["results/streaming.json"],
        "fimtheory monitor bench-streaming --json results/streaming.json",
    ),
    "inflation-quick-report": (
        ["results/inflation-quick/report.md"],
        "fimtheory inflation --profile quick --seed 0 --out results/inflation-quick",
    ),
    "benchmarks": (
        ["benchmarks/results.json"],
        "python -m benchmarks.run --device auto --threads 1 --sizes 128,512 "
        '--sizes-for "byte-lm-all:128,512,2048;gpt2-all:128,512,2048" '
        '--skip-at "2048:power,kron,kron_lanczos" --repeats 5 --min-repeats 3 --case-budget 60',
    ),
    "mutation": (
        ["results/mutation"],
        "python scripts/mutation_ledger.py collect MODULE RUN_DIR… --equivalent results/mutation/equivalent/NAME.json "
        "(one file per module, from the runs of scripts/mutation.sh and their recorded kill checks)",
    ),
    "claims-code": (
        ["fimtheory/claims.py"],
        "the claim registry fimtheory.claims.REGISTRY",
    ),
}

#: file -> the regions it holds (every region of SOURCES is in at least one file)
FILES = {
    README: [n for n in SOURCES if n not in ("claims-code", "inflation-quick-report")],
    THEORY: ["claims-code"],
    "docs/counterexamples.md": ["counterexamples", "readings"],
    "docs/inflation.md": ["inflation-quick-report"],
    "docs/mutation.md": ["mutation"],
}


class RenderError(Exception):
    """README.md's markers are malformed or name an unknown region."""


# ----------------------------------------------------------------------------- formatting


def _num(x, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; strings (e.g. "nan", "inf") pass through."""
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def _secs(x) -> str:
    if x is None:
        return "—"
    return f"{x:.2f}" if x < 10 else f"{x:.0f}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _cell(text) -> str:
    """Text safe inside a markdown table cell (no pipes, no newlines)."""
    return str(text).replace("|", "/").replace("\n", " ").strip()


def _table(head: list[str], rows: list[list], align: str | None = None) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join((align or "---") for _ in head) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def _load(path: str):
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        return json.load(fh)


def _first_existing(paths: list[str]) -> str | None:
    for p in paths:
        if os.path.exists(os.path.join(ROOT, p)):
            return p
    return None


def _not_yet_run(name: str) -> list[str]:
    paths, command = SOURCES[name]
    return [
        f"> **Not yet run.** `{paths[0]}` is not committed. Produce it with `{command}`, "
        "commit it, then run `python scripts/render_readme.py`."
    ]


def _source_line(path: str, command: str) -> str:
    return f"*Rendered from `{path}` (written by `{command}`).*"


# ----------------------------------------------------------------------------- regions


def _status_summary(statuses) -> str:
    counts = Counter(statuses)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


_VERIFY_HEAD = [
    "claim",
    "status",
    "examples",
    "hypotheses not met",
    "worst relative margin",
    "adjudicated",
    "max digits",
    "s",
    "note",
]


def _verify_rows(doc: dict) -> list[list]:
    rows = []
    for c in doc.get("claims", []):
        examples = c.get("examples")
        requested = c.get("examples_requested", c.get("requested"))
        ex = f"{examples} of {requested}" if requested not in (None, 0, examples) else str(examples)
        adjudicated = str(c.get("adjudicated", 0))
        extra = [f"{c[k]} {k}" for k in ("ties", "undecided") if c.get(k)]
        if extra:
            adjudicated += f" ({', '.join(extra)})"
        note = c.get("stop_reason") or c.get("reason") or c.get("error") or ""
        if c.get("counterexample") and not note:
            note = "counterexample found"
        rows.append(
            [
                c.get("id"),
                c.get("status"),
                ex,
                c.get("rejected", 0),
                _num(c.get("worst_margin")),
                adjudicated,
                c.get("max_dps") or doc.get("dps", "—"),
                _secs(c.get("seconds")),
                note,
            ]
        )
    return rows


def _verify_summary(doc: dict) -> str:
    claims = doc.get("claims", [])
    total = sum(c.get("seconds") or 0.0 for c in claims)
    return (
        f"profile {doc.get('profile')}, seed {doc.get('seed')}, adjudication from "
        f"{doc.get('dps', '—')} digits; {_status_summary(c.get('status') for c in claims)}; "
        f"{total:.1f} s summed over claims"
        + (f"; exit status {doc['exit_status']}" if "exit_status" in doc else "")
        + (
            "; **incomplete**: the file was written before the run finished (it is rewritten after each claim)"
            if doc.get("complete") is False
            else ""
        )
    )


def render_verify(path: str, command: str) -> list[str]:
    doc = _load(path)
    lines = [f"`{command}` — {_verify_summary(doc)}.", ""]
    lines += _table(_VERIFY_HEAD, _verify_rows(doc))
    lines += ["", _source_line(path, command)]
    return lines


def render_verify_several(name: str) -> list[str]:
    """One table over several committed verify reports (each named with its own summary)."""
    paths, command = SOURCES[name]
    present = [p for p in paths if os.path.exists(os.path.join(ROOT, p))]
    lines, rows = [], []
    for p in present:
        doc = _load(p)
        ids = ", ".join(str(c.get("id")) for c in doc.get("claims", []))
        lines.append(f"- `{p}` ({ids}): {_verify_summary(doc)}.")
        rows += _verify_rows(doc)
    missing = [p for p in paths if p not in present]
    if missing:
        lines.append(f"- not committed: {', '.join(f'`{p}`' for p in missing)}.")
    lines += [
        "",
        *_table(_VERIFY_HEAD, rows),
        "",
        f"*Rendered from {', '.join(f'`{p}`' for p in present)} (written by `{command}`).*",
    ]
    return lines


def _outward(value: str, rounding: str, digits: int = 6) -> str:
    """A decimal string rounded outward (down for a lower end, up for an upper end) to
    ``digits`` significant digits, so the shortened interval still contains the stored one."""
    d = decimal.Decimal(value)
    if d == 0 or not d.is_finite():
        return str(d)
    q = decimal.Decimal(1).scaleb(d.adjusted() - digits + 1)
    r = d.quantize(q, rounding=rounding).normalize()
    return _short(r)


def _short(d: decimal.Decimal) -> str:
    mant, _, exp = f"{d:e}".partition("e")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    e = int(exp)
    return mant if e == 0 else f"{mant}e{e}"


def _enclosure(cert: dict) -> str:
    if cert.get("exact_zero"):
        return "= 0 (exact)"
    lo = _outward(cert["lo"], decimal.ROUND_FLOOR)
    hi = _outward(cert["hi"], decimal.ROUND_CEILING)
    return f"[{lo}, {hi}]"


def render_counterexamples(path: str, command: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(ROOT, path, "*.json")))
    rows = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            doc = json.load(fh)
        if "weakening" not in doc or "certificate" not in doc:
            continue  # other stored findings (the parameter-level ones) have their own region
        cert = doc["certificate"]
        rows.append(
            [
                doc["weakening"],
                doc.get("claim"),
                "yes" if cert.get("certified") else "**no**",
                _enclosure(cert),
                cert.get("method", ""),
                cert.get("dps", doc.get("dps")),
                f"{doc.get('source', '')} ({doc.get('profile', '')}, seed {doc.get('seed', '')})",
            ]
        )
    n_cert = sum(r[2] == "yes" for r in rows)
    lines = [
        f"{len(rows)} stored counterexamples, {n_cert} with a certified enclosure of the margin "
        f"(`{path}/`, written by `{command}`; `fimtheory replay {path}/*.json` re-checks them):",
        "",
    ]
    lines += _table(
        ["weakening", "claim", "certified", "enclosure of the margin", "method", "digits", "found by"], rows
    )
    run = _first_existing(["results/counterexamples-quick.json"])
    if run:
        lines += ["", _counterexample_run_line(run)]
    return lines


def _counterexample_run_line(path: str) -> str:
    doc = _load(path)
    items = None
    if isinstance(doc, dict):
        for key in ("weakenings", "results", "rows"):
            if isinstance(doc.get(key), list):
                items = doc[key]
                break
    elif isinstance(doc, list):
        items = doc
    if not items:
        return f"*Last search run: `{path}`.*"
    statuses = _status_summary(str(i.get("status")) for i in items if isinstance(i, dict))
    secs = doc.get("seconds", doc.get("wall_seconds")) if isinstance(doc, dict) else None
    tail = f" in {secs:.1f} s" if isinstance(secs, (int, float)) else ""
    prof = f" (profile {doc.get('profile')}, seed {doc.get('seed')})" if isinstance(doc, dict) else ""
    return f"*Last search run{prof}: {len(items)} weakenings, {statuses}{tail} — `{path}`.*"


def render_parameter_level(path: str, command: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(ROOT, "tests/counterexamples/param-*.json")))
    rows, mc, draws = [], [], set()
    for f in files:
        with open(f, encoding="utf-8") as fh:
            doc = json.load(fh)
        draws.add(doc.get("draws"))
        cert = doc.get("c2_certificate", {})
        parts = doc.get("parts_float64", {})
        rows.append(
            [
                doc.get("name"),
                doc.get("model"),
                _num(float(cert["c2"]), 4) if "c2" in cert else "—",
                f"[{_num(float(cert['c2_lo']), 6)}, {_num(float(cert['c2_hi']), 6)}]" if "c2_lo" in cert else "—",
                _num(parts.get("curvature")),
                _num(parts.get("cross")),
                _num(parts.get("eigvec")),
            ]
        )
        for r in (doc.get("widrow_table") or {}).get("rows", []):
            cv = r.get("cv") or [None, None, None]
            mc.append(
                [
                    doc.get("name"),
                    _num(r.get("s")),
                    _num(r.get("predicted"), 4),
                    _num(cv[0], 5),
                    f"[{_num(cv[1], 4)}, {_num(cv[2], 4)}]",
                ]
            )
    lines = ["Certified c2 (per unit s², Widrow noise) of the stored parameter-level counterexamples:", ""]
    lines += _table(
        [
            "file",
            "model",
            "c2",
            "certified enclosure",
            "curvature term (≥ 0)",
            "cross term (no sign)",
            "eigenvector term (≥ 0)",
        ],
        rows,
    )
    if mc:
        lines += [
            "",
            f"Monte Carlo check of E λ_max(F(θ+δ)) − λ1 ({', '.join(str(d) for d in sorted(draws, key=str))} "
            "draws, control variate, 99% CI) against the prediction c2·s²:",
            "",
        ]
        lines += _table(["file", "s", "c2·s² (predicted)", "measured", "99% CI"], mc)
    lines += ["", f"*Rendered from `tests/counterexamples/param-*.json` (written by `{command}`).*"]
    return lines


def render_readings(path: str, command: str) -> list[str]:
    doc = _load(path)
    rows, examples, by_scheme = [], [], []
    for r in doc.get("readings", []):
        for model, m in r.get("models", {}).items():
            rows.append(
                [
                    r.get("reading"),
                    model,
                    m.get("draws"),
                    m.get("unchanged"),
                    m.get("ties"),
                    m.get("lowered"),
                    _pct(m.get("share_lowered")),
                    _pct(m.get("share_lowered_moved")),
                    _num(m.get("sigma_min"), 4),
                    _num(m.get("sigma_median"), 4),
                    _num(m.get("sigma_max"), 3),
                ]
            )
            schemes = m.get("by_scheme") or {}
            if schemes:
                parts = ", ".join(f"{k} {v.get('lowered')}/{v.get('draws')}" for k, v in schemes.items())
                by_scheme.append(f"- {r.get('reading')}, {model}: {parts}")
        ex = r.get("example")
        if ex:
            examples.append(
                f"- {r.get('reading')}: {ex.get('model')} {ex.get('scheme')} (n = {ex.get('n')}, "
                f"d = {ex.get('d')}), σ = {_num(ex.get('sigma'), 4)}, λ_max(F_q) − λ_max(F) ∈ "
                f"{ex.get('enclosure')} ({'certified < 0' if ex.get('certified') else 'not certified'})"
            )
    lines = [
        f"`{command}` — profile {doc.get('profile')}, seed {doc.get('seed')}, "
        f"{doc.get('draws_per_cell')} Hypothesis draws per model and reading:",
        "",
    ]
    lines += _table(
        ["reading (falsified)", "model", "draws", "Q=id", "σ=1", "σ<1", "share", "moved", "σ min", "σ median", "σ max"],
        rows,
    )
    if by_scheme:
        lines += ["", "By scheme (draws with σ < 1 / draws):", "", *by_scheme]
    if examples:
        lines += ["", "Certified examples:", ""] + examples
    lines += ["", _source_line(path, command)]
    return lines


def render_check_models(path: str, command: str) -> list[str]:
    doc = _load(path)
    header, rows = doc.get("header", {}), doc.get("rows", [])
    lines = [
        f"`{command}` — profile {header.get('profile')}, device {header.get('device')}, seed "
        f"{header.get('seed')}, torch {header.get('torch')}, {_secs(header.get('wall_seconds'))} s wall"
        + (f", {_secs(header['cpu_seconds'])} s CPU" if isinstance(header.get("cpu_seconds"), (int, float)) else "")
        + (
            f", load average {', '.join(str(x) for x in header['load_average'])} (1, 5, 15 min) on this shared machine"
            if header.get("load_average")
            else ""
        )
        + (f", peak RSS {header['peak_rss_mib']} MiB" if header.get("peak_rss_mib") else "")
        + ".",
        "",
    ]
    facts = []
    for name, f in header.get("models", {}).items():
        if "skipped" in f:
            facts.append([name, f"skipped: {f['skipped']}", "—", "—", "—", "—", "—"])
            continue
        quality = []
        if "held_out_bits_per_byte" in f:
            quality.append(f"held-out {f['held_out_bits_per_byte']:.3f} bits/byte")
        if "perplexity" in f:
            quality.append(f"perplexity {_num(f['perplexity'])}")
        if "test_accuracy" in f:
            quality.append(f"test accuracy {f['test_accuracy']:.3f}")
        corpus = f.get("corpus")
        if corpus:
            fp = f.get("corpus_fingerprint")
            corpus = f"{corpus} ({fp})" if fp else corpus
        facts.append(
            [
                name,
                "; ".join(quality) or "—",
                corpus or "—",
                f.get("P"),
                f.get("n"),
                _num(f.get("lambda1"), 4),
                _num(f.get("gap"), 3),
            ]
        )
    lines += _table(["model", "quality", "corpus", "P", "n", "λ1", "γ"], facts)
    subsets = [
        f"{name}: {', '.join(f['param_subset'])}"
        for name, f in header.get("models", {}).items()
        if isinstance(f.get("param_subset"), list)
    ]
    if subsets:
        lines += ["", "Parameters scored (P counts them): " + "; ".join(subsets) + "."]
    models = list(dict.fromkeys(r.get("model") for r in rows))
    claims = list(dict.fromkeys(r.get("claim") for r in rows))
    grid = []
    for c in claims:
        line = [c]
        for m in models:
            st = [r.get("status") for r in rows if r.get("claim") == c and r.get("model") == m]
            line.append(_status_summary(st) if st else "")
        grid.append(line)
    lines += ["", "Rows per status (claim × model; one row per quantization scheme where the check quantizes):", ""]
    lines += _table(["check", *models], grid)
    measured = []
    for r in rows:
        d = r.get("details") or {}
        if r.get("claim") == "lowers-lambda-max" and r.get("model") == "*" and "count" in d:
            measured.append(
                f"- {d['count']} of {d['total']} deterministic (model, scheme) pairs lower λ_max "
                f"(RTN alone: {d.get('rtn_count')} of {d.get('rtn_total')})."
            )
        elif r.get("claim") == "P3.2" and "lcm_share" in d:
            fail = (d.get("conclusion_on_lcm_failing_inputs") or {}).get("pointwise_share")
            tail = (
                f"; on the paths where it failed, the conclusion held on {_pct(fail)}"
                if isinstance(fail, (int, float)) and fail == fail
                else ""
            )
            measured.append(
                f"- {r.get('model')}: LCM held on {_pct(d['lcm_share'])} of displacement paths "
                f"(grid resolution {_num(d.get('resolution'))}){tail}."
            )
        elif r.get("claim") == "T4.3-SR" and "ci95_relative" in d:
            lo, hi = d["ci95_relative"]
            mean = (
                f" = {_num(d['mean_elevation'] / d['lambda1'])}"
                if isinstance(d.get("mean_elevation"), (int, float)) and d.get("lambda1")
                else ""
            )
            measured.append(
                f"- {r.get('model')}, {r.get('scheme')}: stochastic-rounding mean (E λ_max − λ1)/λ1{mean}, 95% CI "
                f"[{_num(lo)}, {_num(hi)}] ({d.get('draws_lowering')} draws lower λ_max)."
            )
    changes = []
    for r in rows:
        d = r.get("details") or {}
        if r.get("claim") != "lowers-lambda-max" or d.get("lambda_q") is None or not d.get("lambda1"):
            continue
        eta = next(
            (
                (x.get("details") or {}).get("eta")
                for x in rows
                if x.get("claim") == "T4.3a" and x.get("model") == r.get("model") and x.get("scheme") == r.get("scheme")
            ),
            None,
        )
        rel = d["lambda_q"] / d["lambda1"] - 1
        change = "0 (no-op: E = 0)" if d.get("effect") == "no-op" else f"{100 * rel:+.1f}%"
        changes.append(
            [
                r.get("model"),
                r.get("scheme"),
                _num(eta, 3),
                _num(d["lambda1"], 4),
                _num(d["lambda_q"], 4),
                change,
                d.get("effect") or "—",
            ]
        )
    if changes:
        lines += ["", "λ_max of the quantized model's FIM per deterministic scheme (η = ‖E‖₂):", ""]
        lines += _table(["model", "scheme", "η", "λ1", "λ_max(F(Q(θ)))", "change", "effect"], changes)
    if measured:
        lines += ["", "Measured:", "", *measured]
    summary = doc.get("summary", {})
    if summary:
        st = summary.get("statuses", {})
        lines += [
            "",
            f"Totals: {', '.join(f'{n} {s}' for s, n in st.items())}; exit status {summary.get('exit_status')}.",
        ]
    lines += ["", _source_line(path, command)]
    return lines


def render_check_models_smollm2(path: str, command: str) -> list[str]:
    """A pretrained model's check-models report, and the GNU time measurement of the same run
    when ``<report>-time.json`` is committed beside it."""
    lines = render_check_models(path, command)
    timing = path[: -len(".json")] + "-time.json"
    if os.path.exists(os.path.join(ROOT, timing)):
        t = _load(timing)
        lines += [
            "",
            f"Time and memory, measured by `{t.get('command')}` (GNU time -v): peak resident "
            f"memory {t.get('max_rss_gib')} GiB ({t.get('max_rss_kbytes')} kB), elapsed {t.get('elapsed_wall')}, "
            f"{t.get('user_seconds')} s user + {t.get('system_seconds')} s system CPU, exit status "
            f"{t.get('exit_status')} — *`{timing}`*.",
        ]
    return lines


_INFLATION_COLUMNS = (
    ("rtn-channel", 8, "8 bits (RTN/ch)"),
    ("rtn-channel", 4, "4 bits (RTN/ch)"),
    ("nf4", 4, "4 bits (NF4)"),
    ("rtn-channel", 3, "3 bits (RTN/ch)"),
    ("rtn-channel", 2, "2 bits (RTN/ch)"),
)


def _pct2(x) -> str:
    """A fraction as a percentage with two significant digits ("—" when absent)."""
    return "—" if x is None else f"{_num(100 * x, 2)}%"


def _inflation_skill_lines(summary: dict) -> list[str]:
    """Each prediction's skill against the constant ρ = 1, per bit width, and the CI widths."""
    skill = summary.get("skill") or {}
    if not skill:
        return []

    def cell(p):
        if not p:
            return "—"
        cov = p.get("coverage") or ["—", "—"]
        return f"{_pct2(p.get('median_abs_error'))} (×{_num(p.get('ratio_to_constant'), 2)}), {cov[0]}/{cov[1]}"

    rows = []
    for bits in sorted(skill, key=int, reverse=True):
        s = skill[bits]
        c = s.get("constant") or {}
        cov = c.get("coverage") or ["—", "—"]
        rows.append(
            [
                bits,
                s.get("cells"),
                cell(s.get("first_order")),
                cell(s.get("pred")),
                f"{_pct2(c.get('median_abs_error'))}, {cov[0]}/{cov[1]}",
                cell(s.get("second_real")),
            ]
        )
    lines = [
        "",
        "Skill of each prediction of ρ_fixed (the quantized model scoring the full-precision model's "
        "trajectories) against the constant ρ = 1: median |ρ_pred/ρ_fixed − 1| over the cells, "
        "(× that of ρ = 1), and how many of the cells' 95% CIs contain the prediction:",
        "",
        *_table(
            [
                "bits",
                "cells",
                "first order, realised δ",
                "expectation E_δ (second order)",
                "constant ρ = 1",
                "exact realised second order",
            ],
            rows,
        ),
    ]
    ci = summary.get("ci") or {}
    by_bits = ci.get("by_bits") or {}
    target_bits = str(ci.get("target_bits"))
    if target_bits in by_bits:
        b = by_bits[target_bits]
        lines += [
            "",
            f"CI half-width target at {target_bits} bits: ≤ {_pct2(ci.get('target'))} of ρ. Measured (fixed data): "
            f"median {_pct2(b.get('fixed_median'))}, largest {_pct2(b.get('fixed_max'))}; "
            f"**{b.get('fixed_over_target')} of {b.get('cells')} cells miss the target** "
            "(listed under `summary.ci.missed`).",
        ]
    ratios = [
        v.get("measured")
        for per_model in (summary.get("delta_ratio_sr_rtn") or {}).values()
        for v in per_model.values()
        if v.get("measured") is not None
    ]
    if ratios:
        lines += [
            "",
            f"‖δ_SR‖/‖δ_RTN‖ over every model and bit width: {_num(min(ratios), 3)}–{_num(max(ratios), 3)} "
            "(stochastic rounding's variance r(1−r)s² averages s²/6 against RTN's s²/12: √2 = 1.414).",
        ]
    return lines


def _inflation_rho_table(summary: dict) -> list[str]:
    rows = []
    for label, ms in summary.get("models", {}).items():
        if "skipped" in ms:
            rows.append([label] + [f"skipped: {ms['skipped']}"] + [""] * (len(_INFLATION_COLUMNS) - 1))
            continue
        line = [label]
        for family, bits, _ in _INFLATION_COLUMNS:
            s = next(
                (s for s in ms.get("configs", {}).values() if s.get("family") == family and s.get("bits") == bits),
                None,
            )
            line.append(
                "—" if s is None else f"{_num(s['rho_self'])} [{_num(s['rho_self_lo'])}, {_num(s['rho_self_hi'])}]"
            )
        rows.append(line)
    return _table(["model", *(c[2] for c in _INFLATION_COLUMNS)], rows)


def _inflation_trajectories(raw: dict, summary: dict) -> str:
    counts = Counter(ms.get("n_trajectories", raw.get("n_trajectories")) for ms in summary.get("models", {}).values())
    if len(counts) <= 1:
        return f"{raw.get('n_trajectories')} trajectories per model"
    return ", ".join(f"{n} trajectories for {k} model{'s' if k > 1 else ''}" for n, k in counts.most_common())


def _inflation_cold_time(path: str) -> list[str]:
    tpath = os.path.join(os.path.dirname(path), "time.json")
    if not os.path.exists(os.path.join(ROOT, tpath)):
        return []
    runs = _load(tpath).get("runs", [])
    parts = [
        f"{_secs(r.get('elapsed_seconds'))} s wall ({_secs(r.get('user_seconds'))} s CPU, load {r.get('load_average')})"
        for r in runs
    ]
    return ["", f"Cold-cache runs of this command (`{tpath}`): " + "; ".join(parts) + "."] if parts else []


def render_inflation(path: str, command: str) -> list[str]:
    doc = _load(path)
    raw, summary = doc.get("raw", {}), doc.get("summary", {})
    lines = [
        f"`{command}` — profile {raw.get('profile')}, seed {raw.get('seed')}; "
        f"ρ = τ_q(quantized)/τ_q(full precision), q = {raw.get('quantile')}, "
        f"{_inflation_trajectories(raw, summary)}, the quantized model scoring its own "
        f'generations ("self"), paired bootstrap 95% CI ({raw.get("n_boot")} resamples), '
        f"device {raw.get('device')}"
        + ("" if doc.get("complete", True) else "; **PARTIAL: " + json.dumps(summary.get("missing")) + "**")
        + ":",
        "",
    ]
    lines += _inflation_rho_table(summary)
    lines += _inflation_skill_lines(summary)
    lines += _inflation_cold_time(path)
    lines += ["", _source_line(path, command)]
    return lines


def render_inflation_ci_design(path: str, command: str) -> list[str]:
    """The reported stage of the two-stage 4-bit CI design: per model n, per cell ρ_fixed, CI, half-width."""
    doc = _load(path)
    raw, summary = doc.get("raw", {}), doc.get("summary", {})
    design = raw.get("design", {})
    check = summary.get("design_check", {})
    rows = []
    for model, entry in summary.get("models", {}).items():
        d = check.get(model, {})
        for cell, c in entry.get("configs", {}).items():
            if c.get("bits") != design.get("bits"):
                continue
            hw = c.get("halfwidth_fixed")
            rows.append(
                [
                    model,
                    cell,
                    f"{d.get('n_pilot')} → {d.get('n_run')}",
                    f"{_num(c.get('rho_fixed'), 4)} "
                    f"[{_num(c.get('rho_fixed_lo'), 4)}, {_num(c.get('rho_fixed_hi'), 4)}]",
                    "—" if hw is None else f"{100 * hw:.1f}%",
                    "missed" if c.get("ci_target_missed") else "met",
                    _num(c.get("rho_first_order"), 4),
                ]
            )
    by_bits = summary.get("ci", {}).get("by_bits", {}).get(str(design.get("bits")), {})
    skill = summary.get("skill", {}).get(str(design.get("bits")), {})
    first = skill.get("first_order") or {}
    cov, ccov = first.get("coverage") or [None, None], first.get("constant_coverage") or [None, None]
    lines = [
        f"`{command}` — fresh sample stream {raw.get('sample_stream')}, sized from "
        f"`{design.get('pilot')}` by n = max({design.get('min_n')}, ⌈{design.get('margin')}·n₁·(hw₁/"
        f"{100 * design.get('target', 0):.0f}%)²⌉) over each model's {design.get('bits')}-bit cells; "
        f"ρ_fixed = τ_q(quantized)/τ_q(full precision) on the same prompts, q = {raw.get('quantile')}, "
        f"paired bootstrap 95% CI ({raw.get('n_boot')} resamples); the CIs come from this sample alone:",
        "",
    ]
    lines += _table(
        ["model", "cell", "n (sizing → reported)", "ρ_fixed [95% CI]", "half-width", "≤ 5%", "ρ first order"], rows
    )
    if first.get("median_abs_error") is None:
        prediction = "First-order prediction: not measured in this stage (a ρ_fixed-only stage, --ci-no-first-order)."
    else:
        prediction = (
            f"First-order prediction: median |error| {100 * first['median_abs_error']:.2f}% against "
            f"{100 * first.get('constant_median_abs_error', float('nan')):.2f}% for ρ = 1 (ratio "
            f"{_num(first.get('ratio_to_constant'), 2)}); inside {cov[0]} of {cov[1]} CIs, "
            f"ρ = 1 inside {ccov[0]} of {ccov[1]}."
        )
    lines += [
        "",
        f"Half-width ≤ {100 * design.get('target', 0):.0f}% in "
        f"{by_bits.get('cells', 0) - by_bits.get('fixed_over_target', 0)} "
        f"of {by_bits.get('cells')} cells (median {100 * by_bits.get('fixed_median', float('nan')):.1f}%, "
        f"max {100 * by_bits.get('fixed_max', float('nan')):.1f}%); missed: "
        f"{', '.join(summary.get('ci', {}).get('missed', [])) or 'none'}. {prediction}",
    ]
    for model, m in raw.get("models", {}).items():
        n_run = check.get(model, {}).get("n_run")
        if m.get("cpu_seconds") and n_run:
            lines.append(
                f"Cost of {model}: {_num(m['cpu_seconds'], 4)} CPU-s for {n_run} trajectories, "
                f"{_num(m['cpu_seconds'] / n_run, 3)} CPU-s per trajectory (one thread, float64)."
            )
    lines += ["", _source_line(path, command)]
    return lines


def render_verify_throughput(name: str) -> list[str]:
    """Wall and CPU seconds of the sharded thorough verification, one row per recorded run."""
    paths, command = SOURCES[name]
    rows = []
    for path in paths:
        doc = _load(path)
        cpu = doc.get("cpu_seconds_per_shard") or {}
        samples = doc.get("load_average_1min_samples_every_30s") or {}
        rows.append(
            [
                doc.get("mpmath_backend"),
                f"{_num(doc.get('wall_seconds'), 4)} s",
                f"{_num(doc.get('target_seconds'), 3)} s",
                "met" if doc.get("target_met_measured") else "missed",
                ", ".join(f"{_num(v, 4)}" for v in cpu.values()),
                f"{_num(samples.get('min'), 3)}–{_num(samples.get('max'), 3)}",
                doc.get("merged_status"),
                str(doc.get("git_head", ""))[:7],
            ]
        )
    lines = [
        "`fimtheory verify --profile thorough` (every claim at 10⁴ examples) as 2 `--shard I/2 "
        "--seeds-per-claim 4` processes (threads 1) and `--merge`, on the project's 2-core machine with "
        "nothing else running:",
        "",
    ]
    lines += _table(
        [
            "mpmath backend",
            "wall",
            "target",
            "",
            "CPU s per shard (GNU time)",
            "load (1 min, every 30 s)",
            "merged",
            "commit",
        ],
        rows,
    )
    lines += ["", "*Rendered from " + ", ".join(f"`{p}`" for p in paths) + f" (written by `{command}`).*"]
    return lines


def render_inflation_report(path: str, command: str) -> list[str]:
    """The report.md the inflation command writes, its headings moved two levels down."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        text = fh.read().strip("\n")
    lines = []
    for line in text.split("\n"):
        if line.startswith("#"):
            line = "##" + line
        lines.append(line)
    return [*lines, "", _source_line(path, command)]


def render_eq1_study(path: str, command: str) -> list[str]:
    doc = _load(path)
    cfg, prof = doc.get("config", {}), doc.get("profile", {})
    rows = []
    for arm, sm in doc.get("summary", {}).items():
        soft = sm.get("eq1_vs_lambda_softmax", {})
        emp = sm.get("eq1_vs_lambda_empirical", {})
        par = sm.get("eq1_vs_lambda_param", {})
        rows.append(
            [
                arm,
                sm.get("steps"),
                f"{_num(soft.get('median_rel_error'), 2)} / {_num(soft.get('p95_rel_error'), 2)}",
                f"[{_num(soft.get('min_ratio'), 3)}, {_num(soft.get('max_ratio'), 3)}]",
                _num(soft.get("spearman"), 2),
                _num(emp.get("median_rel_error"), 2),
                f"[{_num(emp.get('min_ratio'), 3)}, {_num(emp.get('max_ratio'), 3)}]",
                _num(par.get("median_rel_error"), 2),
                _num(sm.get("kl_sorted_padded_p95"), 3),
                _num(sm.get("kl_full_p95"), 3),
            ]
        )
    lines = [
        f"`{command}` — {cfg.get('model')}, {prof.get('prompts')} prompts × {prof.get('samples')} samples × "
        f"{prof.get('new_tokens')} tokens, temperature {cfg.get('temperature')}, top-K {cfg.get('top_k')}, "
        f"scheme {cfg.get('scheme')}, seed {cfg.get('seed')}, {_secs(doc.get('seconds'))} s:",
        "",
    ]
    lines += _table(
        [
            "arm",
            "steps",
            "Eq. 1 vs λ_max(M(p)): median / p95 rel. error",
            "λ̂/λ_max(M(p)) range",
            "Spearman",
            "vs empirical: median rel. error",
            "λ̂/‖e_y−p‖² range",
            "vs parameter FIM: median rel. error",
            "p95 sorted-padded KL",
            "p95 plain KL",
        ],
        rows,
    )
    ratios = doc.get("kl_p95_ratio_quantized_vs_reference", {})
    if ratios:
        parts = [
            f"{arm} {_num(r.get('ratio'), 4)} [{_num(r['ci95'][0], 3)}, {_num(r['ci95'][1], 3)}]"
            for arm, r in ratios.items()
            if r.get("ci95")
        ]
        lines += [
            "",
            "p95 sorted-padded KL, quantized arm / reference arm on the same prompts and seeds (95% bootstrap CI): "
            + "; ".join(parts)
            + ".",
        ]
    lines += ["", _source_line(path, command)]
    return lines


def _times(x) -> str:
    """A speed ratio with three significant digits and a ×, or a dash where it was not measured."""
    return "—" if x is None else f"{_num(x, 3)}×"


def render_benchmarks(path: str, command: str) -> list[str]:
    doc = _load(path)
    best = {}
    memory = {}
    for t in doc.get("targets", []):
        key = (t.get("workload"), t.get("n"))
        if str(t.get("target", "")).startswith("best exact path ≥"):
            best[key] = t
        elif str(t.get("target", "")).startswith("best exact path peak memory"):
            memory[key] = t
    rows = []
    for c in doc.get("cases", []):
        r = c.get("ratios", {})
        cpu = c.get("cpu_ratios", {})
        methods = c.get("methods", {})
        key = (c.get("workload"), c.get("n"))

        def med(ratios, name):
            v = ratios.get(name)
            return None if v is None else v.get("median")

        def mib(method, methods=methods):
            b = (methods.get(method) or {}).get("peak_bytes")
            return "—" if b is None else f"{b / 2**20:.0f}"

        b = best.get(key, {})
        m = memory.get(key)
        rows.append(
            [
                c.get("workload"),
                c.get("P"),
                c.get("n"),
                b.get("path", "—"),
                f"{_times(b.get('value'))} / {_times(b.get('cpu_value'))}",
                "met" if b.get("met") else "missed",
                _times(med(r, "curvlinops/kron")),
                f"{_times(med(r, 'curvlinops/autodiff'))} / {_times(med(cpu, 'curvlinops/autodiff'))}",
                f"{mib(b.get('path', 'autodiff'))} / {mib('curvlinops')}"
                + ("" if m is None else (" (met)" if m.get("met") else " (missed)")),
            ]
        )
    targets = [t for t in doc.get("targets", []) if t.get("met") is not None]  # "reported" rows have no verdict
    met = sum(1 for t in targets if t.get("met"))
    stream = doc.get("streaming", {})
    monitors = stream.get("monitors", [])
    speed = monitors[0].get("recompute/push", {}).get("median") if monitors else None
    machine = doc.get("machine", {})
    corpora = {
        (c.get("model_info") or {}).get("corpus")
        for c in doc.get("cases", [])
        if (c.get("model_info") or {}).get("corpus")
    }
    lines = [
        f"`{doc.get('command', command)}` at commit {str(doc.get('git_commit', ''))[:7]}, started "
        f"{doc.get('started')}, device {machine.get('device')}, {machine.get('logical_cores')} logical cores, "
        f"torch {machine.get('torch')}; medians of per-repeat ratios (float64, every method at relative "
        "error ≤ 1e-6):",
        "",
    ]
    lines += _table(
        [
            "workload",
            "P",
            "n",
            "best exact path",
            "curvlinops+eigsh / best (wall / CPU)",
            "≥ 3×",
            "curvlinops / structured",
            "curvlinops / autodiff (wall / CPU)",
            "peak MiB best / curvlinops",
        ],
        rows,
    )
    lines += [
        "",
        f"{met} of {len(targets)} (method, case) targets met (relative error ≤ 1e-6; best exact path ≥ 3× faster "
        "than curvlinops + eigsh; its peak memory ≤ curvlinops' on the every-layer LMs). "
        + (
            f"Streaming σ_t update at t = {stream.get('t')}: {_num(speed, 3)}× faster than recomputing. "
            if speed
            else ""
        )
        + (f"Byte-LM corpus of this run: {', '.join(sorted(corpora))}." if corpora else "")
        + (
            " This run predates the pinned byte-LM corpus (torch_checks.data); re-run to refresh."
            if corpora - {"pydoc"}
            else ""
        ),
        "",
        _source_line(path, command),
    ]
    return lines


#: the figures of results/paper-data.json shown in README (the headline, the pooled drift, and
#: the ones whose "what it is not" changes their reading)
PAPER_DATA_KEY_FIGURES = (
    "calibration.original.drift_p95",
    "calibration.pooled.drift_factor_p95",
    "calibration.range.min",
    "calibration.range.max",
    "stability.passing",
    "correlation.max",
    "leadtime.detection_pct",
    "leadtime.t",
    "intervention.reduction_pct",
    "intervention.cohens_d",
)


def render_paper_data(path: str, command: str) -> list[str]:
    doc = _load(path)
    figures = doc.get("figures", [])
    failed = doc.get("not_reproduced", [])
    lines = [
        f"{len(figures) - len(failed) if figures else doc.get('reproduced')} of {doc.get('total', len(figures))} "
        f"published figures of the companion release recomputed from its raw rows and reproduced "
        f"(source: {doc.get('source')}); baseline τ = {doc.get('tau_theory')}.",
        "",
    ]
    by_key = {f.get("key"): f for f in figures}
    key = [by_key[k] for k in PAPER_DATA_KEY_FIGURES if k in by_key]
    if key:
        rows, previous = [], None
        for f in key:
            is_not = f.get("is_not") or "—"
            rows.append(
                [
                    f.get("label"),
                    _num(f.get("published"), 6),
                    _num(f.get("recomputed"), 6),
                    "yes" if f.get("reproduced") else "**no**",
                    f.get("statistic", ""),
                    "as the row above" if is_not == previous and is_not != "—" else is_not,
                ]
            )
            previous = is_not
        lines += [f"Key figures ({len(key)} of {len(figures)}; every figure is in the file):", ""]
        lines += _table(["figure", "published", "recomputed", "reproduced", "what it is", "what it is not"], rows)
        lines.append("")
    if failed:
        lines += [
            "Not reproduced: " + ", ".join(str(f.get("key", f)) if isinstance(f, dict) else str(f) for f in failed),
            "",
        ]
    lines.append(_source_line(path, command))
    return lines


def _ratio_enclosure(w: dict) -> str:
    c = w.get("certified_ratio")
    if not c:
        return "not certified"
    lo = _outward(c[0], decimal.ROUND_FLOOR, 12)
    hi = _outward(c[1], decimal.ROUND_CEILING, 12)
    return f"[{lo}, {hi}]"


def render_sharp_conjecture(path: str, command: str) -> list[str]:
    doc = _load(path)
    settings = doc.get("settings", [])
    ns = sorted({s.get("n") for s in settings})
    etas = sorted({s.get("eta_over_gap") for s in settings})
    spectra = sorted({s.get("spectrum") for s in settings})
    best = max((s.get("best_ratio") for s in settings), default=None)
    lines = [
        f"`{command}` — {doc.get('conjecture')}: the largest ratio |λ'−λ1−a1−a2| / ((4/(3√3))η³/(γ(γ−2η))) "
        f"found by a targeted search over {len(settings)} settings (n ∈ {{{', '.join(map(str, ns))}}}, "
        f"η/γ ∈ {{{', '.join(_num(e) for e in etas)}}}, lower spectra {', '.join(spectra)}), "
        f"{_secs(doc.get('seconds'))} s; largest ratio in any setting {_num(best, 8)}; counterexample found: "
        f"{'yes' if doc.get('counterexample_found') else 'no'}.",
        "",
    ]
    rows = []
    for label in ("worst n=2", "worst n>=3"):
        w = doc.get(label)
        if w:
            rows.append(
                [
                    {"worst n=2": "n = 2", "worst n>=3": "n ≥ 3"}[label],
                    _num(w.get("eta_over_gap"), 3),
                    _num(w.get("ratio"), 12),
                    _ratio_enclosure(w),
                    "yes" if w.get("violation") else "no",
                ]
            )
    lines += _table(["n", "η/γ", "largest ratio", "certified enclosure of that ratio", "above 1"], rows)
    per_eta = []
    for e in etas:
        two = [x.get("best_ratio") for x in settings if x.get("eta_over_gap") == e and x.get("n") == 2]
        more = [x.get("best_ratio") for x in settings if x.get("eta_over_gap") == e and (x.get("n") or 0) >= 3]
        if two and more:
            b2, b3 = max(two), max(more)
            per_eta.append([_num(e), _num(b2, 12), _num(b3, 12), _num(b3 - b2, 2)])
    if per_eta:
        lines += ["", "Largest ratio per η/γ, n = 2 against n = 3…6 (float64 values of the search):", ""]
        lines += _table(["η/γ", "n = 2", "n ≥ 3", "difference"], per_eta)
    lines += ["", _source_line(path, command)]
    return lines


def render_sharp_critical_scale(path: str, command: str) -> list[str]:
    doc = _load(path)

    def stats(d):
        return ", ".join(f"{k} {_num(d.get(k), 3)}" for k in ("min", "median", "p90", "max") if k in d)

    lines = [
        f"`{command}` — {doc.get('instances')} seeded zero-mean ensembles (seed {doc.get('seed')}); "
        "T4.3c's critical scale s_c (strict elevation E λ_max(F+sE) > λ_max(F) certified for 0 < s < s_c):",
        "",
        f"- s_c from S3's proved bound / s_c from S2's bound: {stats(doc.get('sharp_over_old', {}))} "
        f"(upper limit 4/K = {_num(doc.get('upper_limit_4_over_K'), 4)});",
        f"- s_c from the conjectured bound / s_c from S2's bound: {stats(doc.get('conjectured_over_old', {}))}.",
    ]
    if doc.get("t43c_s_over_old"):
        lines.append(f"- T4.3c-S's s_c^S (no disc condition) / s_c from S2's bound: {stats(doc['t43c_s_over_old'])}.")
    if doc.get("t43b_s_at_s1_all_instances"):
        t = doc["t43b_s_at_s1_all_instances"]
        lines.append(
            f"- T4.3b-S's lower bound at s = 1 is positive (elevation certified) on {t.get('bound_positive')} of "
            f"all {t.get('instances')} ensembles."
        )
    t = doc.get("t43b_second_order_at_s1")
    if t:
        lines.append(
            f"- T4.3b's second-order lower bound at s = 1, on the {t.get('instances_with_2eta_bar_below_gap')} "
            f"ensembles with 2η̄ < γ: positive (elevation certified) on {t.get('sharp_bound_positive')} with S3's "
            f"remainder vs {t.get('old_bound_positive')} with S2's; share of the gap to the true elevation closed: "
            f"{stats(t.get('share_of_gap_to_true_elevation_closed', {}))}."
        )
    lines += ["", _source_line(path, command)]
    return lines


def _fn_name(f) -> str:
    """A readable reference to a registry callable: module.function, with the arguments of a
    factory (``_c_weak('repeated')``) or the function a lambda calls."""
    if f is None:
        return "—"
    mod = getattr(f, "__module__", "?")
    q = getattr(f, "__qualname__", repr(f))
    if q == "<lambda>":
        module = sys.modules.get(mod)
        called = [n for n in f.__code__.co_names if callable(getattr(module, n, None))]
        return f"{called[0]} (through a lambda)" if called else "a lambda"
    if "<locals>" in q:
        args = []
        for cell in f.__closure__ or ():
            v = cell.cell_contents
            args.append(_fn_name(v) if callable(v) else repr(v))
        return f"{q.split('.<locals>')[0]}({', '.join(args)})"
    return q


def _fn_ref(f) -> str:
    if f is None:
        return "—"
    return f"`{f.__module__}.{_fn_name(f)}`"


def render_claims_code(path: str, command: str) -> list[str]:
    sys.path.insert(0, ROOT)
    try:
        from fimtheory.claims import REGISTRY
    finally:
        sys.path.remove(ROOT)
    rows = []
    for c in REGISTRY.values():
        items = [(c.id, "claim", c), *((w.id, f"weakening of {c.id}", w) for w in c.weakenings)]
        for ident, kind, obj in items:
            stored = f"tests/counterexamples/{ident}.json"
            stored = f"[`{stored}`](../{stored})" if os.path.exists(os.path.join(ROOT, stored)) else "—"
            anchor = f"[{ident}](#claim-{c.id})" if kind == "claim" else ident
            rows.append(
                [
                    anchor,
                    kind,
                    _fn_ref(obj.evaluate),
                    _fn_ref(obj.evaluate_mp),
                    f"`{obj.strategy}`",
                    stored,
                ]
            )
    lines = [
        "| id | kind | float64 evaluator | high-precision evaluator | strategy | stored counterexample |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(str(x).replace("|", "/") for x in r) + " |" for r in rows]
    return lines


def render_sharp_sc_real(path: str, command: str) -> list[str]:
    doc = _load(path)
    rows = []
    for model, m in doc.get("models", {}).items():
        for scheme, r in m.get("schemes", {}).items():
            if r.get("status") != "measured":
                rows.append([model, scheme, r.get("status"), "", "", "", "", "", ""])
                continue
            sc = r.get("s_c", {})
            chk = r.get("check_at_0.9_sc_sharp") or {}
            rows.append(
                [
                    model,
                    scheme,
                    r.get("draws"),
                    _num(sc.get("old")),
                    _num(sc.get("s3")),
                    _num(sc.get("sharp")),
                    f"{_num(r.get('ratio_sharp_over_old'), 3)}×",
                    _num(r.get("eta_bar_over_gap"), 3),
                    "yes" if chk.get("positive") else "no",
                ]
            )
    a = doc.get("ratio_sharp_over_old_all", {})
    inside = sum(
        bool((r.get("s1_inside") or {}).get("sharp"))
        for m in doc.get("models", {}).values()
        for r in m.get("schemes", {}).values()
    )
    lines = [
        f"`{command}` — T4.3c's critical scale on real FIMs (the scored matrix's per-token Gram, float64; "
        "the quantizers' δ as the noise direction), s_c from S2's remainder (old), from S3's, and T4.3c-S's s_c^S:",
        "",
        *_table(
            [
                "model",
                "scheme",
                "draws",
                "s_c old",
                "s_c S3",
                "s_c^S",
                "s_c^S / old",
                "η̄/γ at s = 1",
                "elevated at 0.9·s_c^S",
            ],
            rows,
        ),
        "",
        f"s_c^S / s_c over the {a.get('n')} cells: min {_num(a.get('min'), 3)}, median {_num(a.get('median'), 3)}, "
        f"max {_num(a.get('max'), 3)}. Cells where the real quantizer itself (s = 1) lies inside the certified "
        f"region: {inside} of {len(rows)}. These s_c are float64 values, not interval-certified.",
        "",
        _source_line(path, command),
    ]
    return lines


def render_ab_tightness(path: str, command: str) -> list[str]:
    doc = _load(path)
    rows = []
    for model, m in doc.get("models", {}).items():
        d, c = m.get("default_k3_q4", {}), m.get("cheapest") or {}
        rows.append(
            [
                model,
                m.get("n"),
                m.get("P"),
                _num(m.get("lambda_max_exact"), 6),
                _num(d.get("U_over_L"), 4),
                f"({c.get('k')}, {c.get('q')})" if c else "none in the grid",
                _num(c.get("U_over_L"), 5),
                _num(c.get("L_over_lambda"), 5),
                _num(c.get("U_over_lambda"), 5),
            ]
        )
    target = doc.get("target_U_over_L")
    return [
        f"`{command}` — AB's two-sided bracket L ≤ λ_max ≤ U on the unquantized FIMs over Lanczos steps k and "
        f"trace powers q, against the float64 eigvalsh of the n×n Gram; cheapest = fewest flops beyond the Gram "
        f"with U/L ≤ {_num(target, 3)}:",
        "",
        *_table(
            ["model", "n", "P", "λ_max", "U/L at (k, q) = (3, 4)", "cheapest (k, q)", "U/L", "L/λ_max", "U/λ_max"],
            rows,
        ),
        "",
        _source_line(path, command),
    ]


def render_streaming(path: str, command: str) -> list[str]:
    doc = _load(path)
    rows = []
    for r in doc.get("runs", []):
        at = {a.get("t"): a for a in r.get("at", [])}
        lo, hi = at.get(min(at)) if at else {}, at.get(max(at)) if at else {}
        rows.append(
            [
                r.get("model"),
                r.get("group"),
                r.get("window") or "none",
                r.get("mode"),
                f"{_num(lo.get('median_push_cpu_ms'), 3)} ms",
                f"{_num(hi.get('median_push_cpu_ms'), 3)} ms",
                f"**{_num(r.get('ratio'), 3)}**",
                f"{_num(lo.get('bare_forward_cpu_ms'), 3)} → {_num(hi.get('bare_forward_cpu_ms'), 3)} ms",
            ]
        )
    errs = [v.get("max_rel_error") for v in doc.get("validation", []) if v.get("max_rel_error") is not None]
    load = (doc.get("machine") or {}).get("load_average")
    ts = sorted({a.get("t") for r in doc.get("runs", []) for a in r.get("at", [])})
    lines = [
        f"`{command}` — per-token σ_t push time (median CPU ms over 16 pushes) at t = "
        f"{' and '.join(str(t) for t in ts)}; target: {doc.get('target')}; load average {load} on 2 cores:",
        "",
    ]
    if ts:
        head = ["model", "group", "window", "path", f"push at t={ts[0]}", f"push at t={ts[-1]}"]
        head += ["ratio", "bare forward"]
        lines += _table(head, rows)
    if errs:
        lines += [
            "",
            f"Streaming λ_max against the dense float64 full-prefix Gram: max relative error {_num(max(errs), 2)} "
            f"over {len(errs)} validation streams.",
        ]
    lines += ["", _source_line(path, command)]
    return lines


def render_mutation(path: str, command: str) -> list[str]:
    entries = []
    for f in sorted(os.listdir(path)):
        if f.endswith(".json"):
            entries.append(_load(os.path.join(path, f)))
    entries.sort(key=lambda e: e["module"])
    rows = []
    for e in entries:
        c = e["counts"]
        run = e["runs"][-1]
        heads = sorted({r.get("head") or "a stopped run" for r in e["runs"]})
        wall = sum(int(r.get("wall_s", 0)) for r in e["runs"])
        rows.append(
            [
                f"`{e['module']}`",
                f"{c['mutants']:,}",
                f"{c['checked']:,}",
                f"{c['killed_by_run'] + c['killed_by_checked_tests']:,} "
                f"({c['killed_by_run']:,} + {c['killed_by_checked_tests']:,})",
                c["equivalent"],
                c["open"],
                c["not_reached"],
                f"**{_pct(c['score'])}**",
                _pct(c["score_excluding_equivalent"]),
                f"{', '.join(heads)}{' (changed since)' if e.get('changed_since_run') else ''}",
                f"{len(e['runs'])} run(s), {wall / 60:.0f} min wall"
                + (f", last group {run.get('group')}" if run.get("head") else ""),
            ]
        )
    lines = [
        "Per module, from the committed ledger `results/mutation/*.json`: **killed** = killed by the mutmut run "
        "(timeouts included) + survivors killed by a kill check recorded by `scripts/mutation.sh check` (the "
        "selection passed on the original and failed with the mutant active); **equivalent** = survivors with a "
        "written argument (`results/mutation/equivalent/`); **score** = killed / checked, and with the equivalent "
        "mutants counted out. A module marked *changed since* was edited after its run: the score is that of "
        "the version the run mutated.",
        "",
    ]
    head = ["module", "mutants", "checked", "killed (run + checks)", "equivalent", "open", "not reached"]
    head += ["score", "excl. equiv.", "HEAD of the run", "runs"]
    lines += _table(head, rows)
    lines += ["", "Reproduce a row (each run on a `git archive` copy of HEAD, then the recorded kill checks):", ""]
    lines += ["```bash"]
    for e in entries:
        lines.append(f"# {e['module']}")
        dirs = []
        for r in e["runs"]:
            if not r.get("head"):
                lines.append(f"# /tmp/{r['dir']}: stopped before it wrote run-info.txt (command: the module's page)")
                dirs.append(f"/tmp/{r['dir']}")
                continue
            group = "" if r.get("group") in (None, "core") else f" --group {r['group']}"
            filt = "" if r.get("filter", "all") == "all" else " " + " ".join(f"'{g}'" for g in r["filter"].split())
            lines.append(f"MUT_CHILDREN=1 MUT_WORKDIR=/tmp/{r['dir']} scripts/mutation.sh{group}{filt}")
            dirs.append(f"/tmp/{r['dir']}")
        dotted = e["module"][:-3].replace("/", ".")
        eq = f" --equivalent results/mutation/equivalent/{dotted}.json"
        eq = eq if e["counts"]["equivalent"] else ""
        checks = "".join(f" --checks-from /tmp/{c}" for c in e.get("check_dirs", []))
        lines.append(f"python scripts/mutation_ledger.py collect {e['module']} {' '.join(dirs)}{eq}{checks}")
        if e["counts"]["killed_by_checked_tests"]:
            lines.append(f"python scripts/mutation_ledger.py recheck results/mutation/{dotted}.json")
    lines += ["```", "", _source_line(path, command)]
    return lines


RENDERERS = {
    "mutation": render_mutation,
    "verify-quick": render_verify,
    "verify-thorough": render_verify,
    "counterexamples": render_counterexamples,
    "parameter-level": render_parameter_level,
    "readings": render_readings,
    "check-models-quick": render_check_models,
    "check-models-smollm2-quick": render_check_models_smollm2,
    "inflation-quick": render_inflation,
    "inflation-paper": render_inflation,
    "inflation-real": render_inflation,
    "check-models-smollm2-block-quick": render_check_models_smollm2,
    "check-models-gemma3-quick": render_check_models_smollm2,
    "check-models-textgenrnn-quick": render_check_models_smollm2,
    "inflation-ci4": render_inflation_ci_design,
    "inflation-ci4-smollm2": render_inflation_ci_design,
    "inflation-ci4-smollm2-s2": render_inflation_ci_design,
    "inflation-ci4-gemma3": render_inflation_ci_design,
    "check-models-smollm2-kquant-quick": render_check_models_smollm2,
    "verify-throughput": lambda path, command: render_verify_throughput("verify-throughput"),
    "sharp-sc-real": render_sharp_sc_real,
    "ab-tightness": render_ab_tightness,
    "streaming": render_streaming,
    "inflation-quick-report": render_inflation_report,
    "eq1-study": render_eq1_study,
    "eq1-study-smollm2-quick": render_eq1_study,
    "verify-thorough-sharp": lambda path, command: render_verify_several("verify-thorough-sharp"),
    "sharp-conjecture": render_sharp_conjecture,
    "sharp-critical-scale": render_sharp_critical_scale,
    "paper-data": render_paper_data,
    "benchmarks": render_benchmarks,
    "claims-code": render_claims_code,
}


def render_region(name: str) -> list[str]:
    """The generated lines of region ``name`` from its committed source."""
    if name not in RENDERERS:
        raise RenderError(f"unknown results region {name!r}; known: {', '.join(RENDERERS)}")
    paths, command = SOURCES[name]
    path = _first_existing(paths)
    if path is None:
        return _not_yet_run(name)
    return RENDERERS[name](path, command)


# ----------------------------------------------------------------------------- README


def regions(text: str) -> list[tuple[str, int, int]]:
    """(name, first generated line, end marker line) of every region, in order."""
    lines = text.split("\n")
    out, open_name, open_at = [], None, 0
    for i, line in enumerate(lines):
        m = BEGIN.match(line.strip())
        if m:
            if open_name is not None:
                raise RenderError(f"line {i + 1}: region {m.group(1)!r} opened inside region {open_name!r}")
            open_name, open_at = m.group(1), i + 1
        elif line.strip() == END:
            if open_name is None:
                raise RenderError(f"line {i + 1}: {END} without an opening marker")
            out.append((open_name, open_at, i))
            open_name = None
    if open_name is not None:
        raise RenderError(f"region {open_name!r} is never closed with {END}")
    return out


def render(text: str) -> str:
    """``text`` with every region regenerated (blank line after the opening marker and before the end)."""
    lines = text.split("\n")
    out, pos = [], 0
    for name, start, end in regions(text):
        out += lines[pos:start]
        out += ["", *render_region(name), ""]
        pos = end
    out += lines[pos:]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 with a diff if a file is stale")
    args = ap.parse_args(argv)
    stale = []
    for rel in FILES:
        path = os.path.join(ROOT, rel)
        try:
            with open(path, encoding="utf-8") as fh:
                old = fh.read()
            new = render(old)
        except (OSError, RenderError, ValueError, KeyError) as exc:
            print(f"render_readme: {rel}: {exc}", file=sys.stderr)
            return 2
        names = [n for n, _, _ in regions(new)]
        if new != old:
            stale.append(rel)
            if args.check:
                sys.stdout.writelines(
                    difflib.unified_diff(old.splitlines(True), new.splitlines(True), rel, rel + " (rendered)")
                )
            else:
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(new)
        if not args.check:
            print(f"render_readme: {rel}: {len(names)} regions ({', '.join(names)})")
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run python scripts/render_readme.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
