"""properties.shard deals claim × seed tasks longest-processing-time first: every task exactly
once, deterministic, and the shards' summed costs within one task of each other (LPT's bound)
whatever the number of shards and of seeds per claim."""

from __future__ import annotations

import pytest

from fimtheory.claims import REGISTRY
from properties import shard as S


def _plan(k=4):
    return S.plan_tasks(list(REGISTRY), profile="thorough", run_seed=0, seeds_per_claim=k)


def _loads(tasks, count):
    loads = [0.0] * count
    for t, s in zip(tasks, S.assign_shards(tasks, count)):
        loads[s - 1] += S.task_cost(t)
    return loads


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_every_task_once_and_deterministic(count):
    tasks = _plan()
    dealt = [t for i in range(1, count + 1) for t in S.shard_of(tasks, i, count)]
    key = lambda t: (t["claim"], t["j"])  # noqa: E731
    assert sorted(dealt, key=key) == sorted(tasks, key=key)
    assert S.assign_shards(tasks, count) == S.assign_shards(_plan(), count)
    for i in range(1, count + 1):  # each shard keeps the plan's order
        mine = S.shard_of(tasks, i, count)
        assert mine == [t for t in tasks if t in mine]


@pytest.mark.parametrize("count", [2, 3])
def test_loads_within_one_task_of_each_other(count):
    tasks = _plan()
    loads = _loads(tasks, count)
    biggest = max(S.task_cost(t) for t in tasks)
    assert max(loads) - min(loads) <= biggest
    # LPT's guarantee against the optimum (≥ the mean load and ≥ the biggest task): ≤ 4/3 − 1/(3m)
    assert max(loads) <= (4 / 3 - 1 / (3 * count)) * max(sum(loads) / count, biggest) + 1e-9


def test_unlisted_claims_weigh_the_median_and_costs_scale_with_examples():
    known = sorted(S.CLAIM_COST.values())
    t = {"claim": "NOT-A-CLAIM", "j": 0, "max_examples": 100}
    assert S.task_cost(t) == known[len(known) // 2] * 100
    assert S.task_cost({"claim": "W", "j": 0, "max_examples": 200}) == 2 * S.task_cost({**t, "claim": "W"})
    assert set(S.CLAIM_COST) == set(REGISTRY)  # every built-in claim has a measured weight
