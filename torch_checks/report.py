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
  (``examples``, ``not_met``), the fields of ``verify``'s per-claim report — ``examples``,
  ``not_met``, ``not_met_reasons`` (reason → count), ``adjudicated`` (instances decided at
  high precision or exactly), ``worst_margin``, ``reason`` (why a row is inconclusive, an
  error, skipped or not met) — ``seconds`` and ``details`` (``perturbation``: ``no-op``,
  ``below rounding`` or ``resolved`` for the quantization rows; ``verdict``,
  ``mp_margin``, ``enclosure`` where adjudicated);
* ``summary``: the number of rows per status and ``exit_status``: 1 on a certified
  falsification; else, under a strict profile (``ci``, ``thorough``, ``full``), 3 when a
  row is inconclusive or an error; else 0.

Status words of the claims: ``verified``, ``falsified``, ``inconclusive``, ``hypotheses not
met``, ``error``; rows that state no claim are ``measured`` or ``skipped``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter

ROW_KEYS = (
    "model",
    "scheme",
    "bits",
    "claim",
    "status",
    "margin",
    "counts",
    "examples",
    "not_met",
    "not_met_reasons",
    "adjudicated",
    "worst_margin",
    "reason",
    "seconds",
    "details",
)

#: Profiles under which an inconclusive or error row fails the run (exit status 3).
STRICT_PROFILES = ("ci", "thorough", "full")


def _fmt_margin(m) -> str:
    if isinstance(m, str):
        return "-" if m == "nan" else m
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{m:+.3e}"


def _note(row: dict) -> str:
    d = row["details"]
    st = row["status"]
    if st in ("skipped", "hypotheses not met", "error", "inconclusive"):
        why = row.get("reason") or d.get("reason") or d.get("error") or (d.get("reasons") or [""])[0]
        if st == "hypotheses not met" and "2η < γ" in str(why) and "eta" in d and "gap" in d:
            why = f"{why} (η = {d['eta']:.3g}, γ = {d['gap']:.3g})"
        return str(why)[:90]
    c = row["claim"]
    kind = d.get("perturbation")
    if kind in ("no-op", "below rounding") and c != "lowers-lambda-max":
        return f"{kind}: η = {d.get('eta', 0.0):.2g}; {d.get('verdict', 'decided')}"
    if c == "T4.3-SR":
        lo, hi = d.get("ci95_relative", ["nan", "nan"])
        return f"95% CI rel [{lo:+.2e}, {hi:+.2e}], {d.get('draws_lowering')} draws lower"
    if c == "lowers-lambda-max" and row["model"] == "*":
        neither = sum((d.get("neither") or {}).values())
        return (
            f"{d['count']} lower, {d.get('raising', '?')} raise λ_max, {neither} neither "
            f"(no-op/below rounding) of {d['total']}"
        )
    if c == "lowers-lambda-max":
        eff = d.get("effect") or ("lowers" if d.get("lowers") else "raises")
        return {"lowers": "lowers λ_max", "raises": "raises λ_max"}.get(eff, f"{eff}: neither")
    if c == "P3.2" or (c == "P3.2-other-corpus" and "lcm_share" in d):  # the other-corpus path is a P3.2 row
        fail = d["conclusion_on_lcm_failing_inputs"]
        held_anyway = fail.get("pointwise_share")
        if not isinstance(held_anyway, float):  # NaN is stored as the string 'nan' (no LCM-failing input)
            held_anyway = float("nan")
        extra = "" if held_anyway != held_anyway else f"; conclusion held on {held_anyway:.0%} of LCM-failing"
        return f"LCM share {d['lcm_share']:.0%} (res {d['resolution']:.3g}){extra}"
    if c == "P3.2-other-corpus":
        return f"mean Λ {d['mean'][0]:.3g} → {d['mean'][1]:.3g} ({d['other_corpus']})"
    if c == "C":
        return (
            f"{row['counts']['examples']} σ, {len(d['thresholds'])} thresholds, "
            f"{d['non_finite_in_stream']} non-finite in the real stream"
        )
    if d.get("adjudicated") and d.get("verdict"):
        return f"adjudicated: {d['verdict']} ({d.get('mp_dps')} digits)"
    if row.get("adjudicated") and c not in ("P3.2", "C"):
        return f"{row['adjudicated']} adjudicated"
    if "path" in d and c in ("T4.3a", "S2"):
        return f"{d['path']} path"
    return ""


def format_table(rows: list[dict]) -> str:
    """Fixed-width text table of JSON rows."""
    head = ("model", "scheme", "bits", "claim", "status", "margin", "examples", "not met", "s", "note")
    body = []
    for r in rows:
        body.append(
            (
                r["model"],
                r["scheme"],
                "-" if r["bits"] is None else str(r["bits"]),
                r["claim"],
                r["status"],
                _fmt_margin(r["margin"]),
                str(r["counts"]["examples"]),
                str(r["counts"]["not_met"]),
                f"{r['seconds']:.1f}",
                _note(r),
            )
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    return "\n".join(out)


def format_header(header: dict) -> str:
    """Lines describing the run and each model (held-out bits/byte of the byte LM...)."""
    lines = [
        f"fimtheory check-models: profile {header.get('profile')}, device "
        f"{header.get('device')}, seed {header.get('seed')}, torch {header.get('torch')}"
    ]
    for name, facts in header.get("models", {}).items():
        if "skipped" in facts:
            lines.append(f"  {name}: skipped ({facts['skipped']})")
            continue
        bits = ""
        if "held_out_bits_per_byte" in facts:
            bits = f"held-out {facts['held_out_bits_per_byte']:.4f} bits/byte, "
        if "test_accuracy" in facts:
            bits += f"test accuracy {facts['test_accuracy']:.4f}, "
        lines.append(
            f"  {name}: {bits}P = {facts.get('P')} ({', '.join(facts.get('param_subset', []))[:60]}), "
            f"n = {facts.get('n')}, λ1 = {facts.get('lambda1', float('nan')):.4g}, "
            f"γ = {facts.get('gap', float('nan')):.3g}"
        )
    if header.get("peak_rss_mib") is not None:
        lines.append(
            f"  peak RSS {header['peak_rss_mib']:.0f} MiB, "
            f"{header.get('mp_adjudications', 0)} high-precision adjudications"
        )
    return "\n".join(lines)


def exit_status(counts: Counter | dict, profile: str | None = None) -> int:
    """1 on a (certified) falsification; 3 for an inconclusive or error row under a strict
    profile (:data:`STRICT_PROFILES`); else 0."""
    if counts.get("falsified"):
        return 1
    if profile in STRICT_PROFILES and (counts.get("inconclusive") or counts.get("error")):
        return 3
    return 0


def summary(rows: list[dict], profile: str | None = None) -> dict:
    """Counts per status and the exit status (:func:`exit_status`)."""
    counts = Counter(r["status"] for r in rows)
    out = {"statuses": dict(sorted(counts.items())), "exit_status": exit_status(counts, profile)}
    incon = [
        f"{r['model']} {r['scheme']} {r['claim']}: {r.get('reason', '')}"
        for r in rows
        if r["status"] in ("inconclusive", "error")
    ]
    if incon:
        out["inconclusive_or_error"] = incon
    return out


def write_json(path: str, header: dict, rows: list[dict]) -> None:
    """Write the JSON document (see the module docstring) atomically."""
    doc = {"header": header, "rows": rows, "summary": summary(rows, header.get("profile"))}
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)


class Progress:
    """Progress on stderr: a tqdm bar when stderr is a TTY, else one plain line per step
    (``check-models [k/N] 12.3 s: message``), flushed, so logs and CI show it too.

    Calling it advances one step; :meth:`note` writes a line (or the bar's postfix)
    without advancing.
    """

    def __init__(self, total: int, desc: str = "check-models", *, stream=None):
        self._bar = None
        self._stream = stream or sys.stderr
        self._total = total
        self._done = 0
        self._desc = desc
        self._t0 = time.perf_counter()
        if stream is None and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, file=sys.stderr, unit="step", leave=False)
            except ImportError:  # pragma: no cover - tqdm is in the [torch] extra
                self._bar = None

    def _line(self, message: str) -> None:
        self._stream.write(
            f"{self._desc} [{self._done}/{self._total}] {time.perf_counter() - self._t0:.1f} s: {message}\n"
        )
        self._stream.flush()

    def __call__(self, message: str) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(message[:40], refresh=False)
            self._bar.update(1)
        else:
            self._line(message)

    def note(self, message: str) -> None:
        """Report a sub-step without advancing."""
        if self._bar is not None:
            self._bar.set_postfix_str(message[:40])
        else:
            self._line(message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
