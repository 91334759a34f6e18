"""Results table, JSON file and progress bar of ``fimtheory check-models``.

Nothing here imports torch.

JSON document (``--json PATH``)
-------------------------------
``{"header": {...}, "rows": [...], "summary": {...}}`` where

* ``header``: profile, device, seed, torch version, wall seconds, load average, and per
  model facts (``held_out_bits_per_byte`` for the byte LM, ``test_accuracy`` for the
  classifiers, P, n, λ1, γ, or ``skipped`` with the reason);
* each row (one per model × scheme × claim): ``model``, ``scheme``, ``bits``, ``claim``,
  ``status``, ``margin`` (relative; non-finite values as strings), ``counts``
  (``examples``, ``not_met``), ``seconds``, ``details``;
* ``summary``: the number of rows per status and ``exit_status`` (0 iff nothing falsified).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter

ROW_KEYS = ("model", "scheme", "bits", "claim", "status", "margin", "counts", "seconds", "details")


def _fmt_margin(m) -> str:
    if isinstance(m, str):
        return "-" if m == "nan" else m
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{m:+.3e}"


def _note(row: dict) -> str:
    d = row["details"]
    st = row["status"]
    if st in ("skipped", "hypotheses not met", "error"):
        why = d.get("reason") or d.get("error") or (d.get("reasons") or [""])[0]
        return str(why)[:70]
    c = row["claim"]
    if c == "T4.3-SR":
        lo, hi = d.get("ci95_relative", ["nan", "nan"])
        return f"95% CI rel [{lo:+.2e}, {hi:+.2e}], {d.get('draws_lowering')} draws lower"
    if c == "lowers-lambda-max" and row["model"] == "*":
        return (f"{d['count']}/{d['total']} lower λ_max (RTN {d['rtn_count']}/{d['rtn_total']})")
    if c == "lowers-lambda-max":
        return "lowers λ_max" if d.get("lowers") else "raises λ_max"
    if c == "P3.2":
        fail = d["conclusion_on_lcm_failing_inputs"]
        held_anyway = fail.get("pointwise_share")
        extra = "" if held_anyway != held_anyway else f"; conclusion held on {held_anyway:.0%} of LCM-failing"
        return f"LCM share {d['lcm_share']:.0%} (res {d['resolution']:.3g}){extra}"
    if c == "P3.2-other-corpus":
        return f"mean Λ {d['mean'][0]:.3g} → {d['mean'][1]:.3g} ({d['other_corpus']})"
    if c == "C":
        return (f"{row['counts']['examples']} σ, {len(d['thresholds'])} thresholds, "
                f"{d['non_finite_in_stream']} non-finite in the real stream")
    if st == "inconclusive":
        return f"within error {d.get('error_estimate', d.get('relative_error_estimate', 0)):.1e}"
    if "adjudicated" in d:
        return f"mp-adjudicated ({d.get('mp_dps')} digits)"
    if "path" in d and c in ("T4.3a", "S2"):
        return f"{d['path']} path"
    return ""


def format_table(rows: list[dict]) -> str:
    """Fixed-width text table of JSON rows."""
    head = ("model", "scheme", "bits", "claim", "status", "margin", "examples", "not met", "s", "note")
    body = []
    for r in rows:
        body.append((r["model"], r["scheme"], "-" if r["bits"] is None else str(r["bits"]),
                     r["claim"], r["status"], _fmt_margin(r["margin"]),
                     str(r["counts"]["examples"]), str(r["counts"]["not_met"]),
                     f"{r['seconds']:.1f}", _note(r)))
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    return "\n".join(out)


def format_header(header: dict) -> str:
    """Lines describing the run and each model (held-out bits/byte of the byte LM...)."""
    lines = [f"fimtheory check-models: profile {header.get('profile')}, device "
             f"{header.get('device')}, seed {header.get('seed')}, torch {header.get('torch')}"]
    for name, facts in header.get("models", {}).items():
        if "skipped" in facts:
            lines.append(f"  {name}: skipped ({facts['skipped']})")
            continue
        bits = ""
        if "held_out_bits_per_byte" in facts:
            bits = f"held-out {facts['held_out_bits_per_byte']:.4f} bits/byte, "
        if "test_accuracy" in facts:
            bits += f"test accuracy {facts['test_accuracy']:.4f}, "
        lines.append(f"  {name}: {bits}P = {facts.get('P')} ({', '.join(facts.get('param_subset', []))[:60]}), "
                     f"n = {facts.get('n')}, λ1 = {facts.get('lambda1', float('nan')):.4g}, "
                     f"γ = {facts.get('gap', float('nan')):.3g}")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    """Counts per status and the exit status (0 iff nothing falsified)."""
    counts = Counter(r["status"] for r in rows)
    return {"statuses": dict(sorted(counts.items())),
            "exit_status": 1 if counts.get("falsified") else 0}


def write_json(path: str, header: dict, rows: list[dict]) -> None:
    """Write the JSON document (see the module docstring) atomically."""
    doc = {"header": header, "rows": rows, "summary": summary(rows)}
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)


class Progress:
    """A tqdm bar on stderr, disabled when stderr is not a TTY (or tqdm is missing)."""

    def __init__(self, total: int, desc: str = "check-models"):
        self._bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, file=sys.stderr, unit="step",
                                 leave=False)
            except ImportError:  # pragma: no cover - tqdm is in the [torch] extra
                self._bar = None

    def __call__(self, message: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(message[:40], refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
