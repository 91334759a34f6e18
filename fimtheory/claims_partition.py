"""The partition family: completeness of the monitor's threshold partition of float64 (C).

The claim with its hypothesis, its (exact) float64 evaluator and its weakenings — each a
partition as a user might write it, with one safeguard removed — declared through
:mod:`fimtheory.claim_api`; the partition is :class:`fimtheory.monitor.ThresholdPartition`.
The float evaluation is a finite sequence of exact float comparisons, so its margin (±1) is
exact (``exact_mp``; the enclosures in :data:`fimtheory.enclosures.ENCLOSURES` reuse it).
"""

from __future__ import annotations

import math

import numpy as np

from fimtheory.claim_api import Outcome, declare_claim, declare_weakening, exact_mp
from fimtheory.instances import PartitionInstance
from fimtheory.monitor import ThresholdPartition

_S = "properties.claim_strategies:"


def _partition_conclusion(part, sigmas, contains, n_cells) -> tuple[bool, str]:
    for s in sigmas:
        owners = [k for k in range(n_cells) if contains(k, s)]
        if len(owners) != 1:
            return False, f"σ = {s!r} lies in {len(owners)} cells {owners}"
        c = part(s)
        if c != owners[0]:
            return False, f"cell({s!r}) = {c} but σ lies in cell {owners[0]}"
    ordered = sorted(s for s in sigmas if not math.isnan(s))
    cells = [part(s) for s in ordered]
    if any(a > b for a, b in zip(cells, cells[1:])):
        return False, "cell index not monotone in σ"
    return True, ""


def _c(inst: PartitionInstance) -> Outcome:
    t = np.asarray(inst.thresholds, dtype=float)
    if not np.all(np.isfinite(t)) or (t.size > 1 and not np.all(np.diff(t) > 0)):
        return Outcome.not_met("thresholds not finite and strictly increasing")
    p = ThresholdPartition(t)
    ok, why = _partition_conclusion(p.cell, inst.sigmas, p.contains, p.n_cells)
    if ok:
        vec = p.cell(np.array(inst.sigmas)) if inst.sigmas else np.array([], dtype=np.int64)
        if list(vec) != [p.cell(s) for s in inst.sigmas]:
            ok, why = False, "vectorised cell() disagrees with scalar cell()"
    if ok:  # every ordered cell is non-empty: its lower end belongs to it
        for k in range(p.nan_cell):
            lo = -math.inf if k == 0 else float(t[k - 1])
            if p.cell(lo) != k:
                ok, why = False, f"cell {k} is empty"
                break
    if ok and inst.second_thresholds:
        t2 = np.asarray(inst.second_thresholds)
        if t2.size > 1 and not np.all(np.diff(t2) > 0):
            return Outcome.not_met("second thresholds not strictly increasing")
        from fimtheory.monitor import ProductPartition

        q = ThresholdPartition(t2)
        prod = ProductPartition([p, q])
        for a in inst.sigmas:
            for b in inst.sigmas[:4]:
                if prod.cell([a, b]) != (p.cell(a), q.cell(b)):
                    ok, why = False, "product partition disagrees with its factors"
    return Outcome(True, 1.0 if ok else -1.0, False, why, {})


def _naive_partition(thresholds, *, nan_cell: bool, top_closed: bool, closed_cells: bool):
    """A partition as a user might write it, with switches for each weakening."""
    t = list(thresholds)
    K = len(t) + 1

    def contains(k, s):
        if k == K:
            return nan_cell and math.isnan(s)
        lo = -math.inf if k == 0 else t[k - 1]
        hi = math.inf if k == K - 1 else t[k]
        if closed_cells or (top_closed and k == K - 1):
            return lo <= s <= hi
        return lo <= s < hi

    def cell(s):
        for k in range(K + 1):
            if contains(k, s):
                return k
        return -1

    return cell, contains, K + 1


def _c_weak(kind: str):
    def evaluate(inst: PartitionInstance) -> Outcome:
        t = np.asarray(inst.thresholds, dtype=float)
        if not np.all(np.isfinite(t)):
            return Outcome.not_met("thresholds must be finite")
        if kind == "repeated":
            if t.size > 1 and not np.all(np.diff(t) >= 0):
                return Outcome.not_met("thresholds must be non-decreasing")
        elif t.size > 1 and not np.all(np.diff(t) > 0):
            return Outcome.not_met("thresholds not strictly increasing")
        cell, contains, n = _naive_partition(
            t.tolist(),
            nan_cell=kind != "no-nan-cell",
            top_closed=kind != "open-top",
            closed_cells=kind == "closed-cells",
        )
        ok, why = _partition_conclusion(cell, inst.sigmas, contains, n)
        if ok and kind == "repeated":
            for k in range(n - 1):
                lo = -math.inf if k == 0 else float(t[k - 1])
                if cell(lo) != k:
                    ok, why = False, f"cell {k} is empty (repeated threshold)"
                    break
        return Outcome(True, 1.0 if ok else -1.0, False, why, {})

    return evaluate


def _weakening(wid: str, kind: str, title: str, dropped: str, strategy: str):
    evaluate = _c_weak(kind)
    return declare_weakening(
        wid, title=title, dropped=dropped, evaluate=evaluate, evaluate_mp=exact_mp(evaluate), strategy=_S + strategy
    )


C = declare_claim(
    "C",
    title="completeness: every float64 σ (NaN, ±inf, ±0, subnormal) lies in exactly one cell",
    statement="For finite strictly increasing thresholds, the cells [τ_{k−1}, τ_k) (top cell closed at "
    "+∞) and a NaN cell partition float64: each σ in exactly one cell, cell(σ) agrees with "
    "membership, is monotone in σ, every cell is non-empty, and products of partitions are "
    "complete.",
    hypotheses=("thresholds finite and strictly increasing",),
    evaluate=_c,
    evaluate_mp=exact_mp(_c),
    strategy=_S + "C",
    paper_label="completeness of the threshold partition",
    note="A top cell written C_K = {τ_{K−1} ≤ σ < +∞} leaves σ = +∞ in no cell; the "
    "suite closes the top cell and shows the open version is falsified (C-open-top).",
    weakenings=(
        _weakening(
            "C-repeated-thresholds",
            "repeated",
            "partition with repeated thresholds",
            "strictly increasing thresholds",
            "C-repeated-thresholds",
        ),
        _weakening("C-no-nan-cell", "no-nan-cell", "partition without a NaN cell", "the NaN cell", "C"),
        _weakening(
            "C-open-top",
            "open-top",
            "top cell [τ_{K−1}, +∞) open at +∞ (the literal σ < +∞)",
            "the closed top cell",
            "C",
        ),
        _weakening(
            "C-closed-cells", "closed-cells", "cells closed at both ends [τ_{k−1}, τ_k]", "half-open cells", "C"
        ),
    ),
)


def claims() -> list:
    """The family's claims, in registry order."""
    return [C]
