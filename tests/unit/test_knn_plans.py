"""The per-scope choice between RediSearch's own hybrid plan and forced batches."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from redis.exceptions import ResponseError

from semcache.adapters.knn_plans import PlanChooser
from semcache.adapters.redis_store import RedisStore


def run(chooser: PlanChooser, scope: str, searches: int, server_s: float, batches_s: float) -> list[bool]:
    """searches searches of scope, each taking the given time for the plan chosen; the choices made."""
    chosen = []
    for _ in range(searches):
        batches = chooser.batches(scope)
        chooser.record(scope, batches, batches_s if batches else server_s)
        chosen.append(batches)
    return chosen


def test_a_fast_server_plan_is_kept_and_batches_never_forced() -> None:
    chooser = PlanChooser(good_s=0.002)
    assert run(chooser, "small", 300, server_s=0.0006, batches_s=0.037) == [False] * 300


def test_a_slow_server_plan_makes_it_try_batches_and_keep_them_when_fast() -> None:
    chooser = PlanChooser(good_s=0.002, explore_every=8)
    assert run(chooser, "big", 64, server_s=0.007, batches_s=0.001) == [False] + [True] * 63


def test_while_both_are_slow_the_slower_is_timed_again_now_and_then() -> None:
    chooser = PlanChooser(good_s=0.002, explore_every=8, far_factor=8)
    chosen = run(chooser, "big", 64, server_s=0.009, batches_s=0.003)  # 3x: not "far"
    assert chosen[:2] == [False, True]
    assert chosen[2:].count(False) == 64 // 8  # the server's plan again at every 8th search
    assert all(chosen[i] for i in range(2, 64) if (i + 1) % 8)


def test_a_plan_far_slower_is_timed_again_far_more_rarely() -> None:
    chooser = PlanChooser(good_s=0.002, explore_every=8, far_factor=8)
    chosen = run(chooser, "s", 200, server_s=0.003, batches_s=0.037)
    assert chosen[:2] == [False, True]
    assert chosen[2:].count(True) == 200 // 64  # every 64th search, not every 8th


def test_scopes_are_timed_apart() -> None:
    chooser = PlanChooser()
    run(chooser, "big", 10, server_s=0.007, batches_s=0.001)
    run(chooser, "small", 10, server_s=0.0006, batches_s=0.037)
    assert chooser.batches("big") is True
    assert chooser.batches("small") is False


def test_follows_a_scope_that_grows() -> None:
    chooser = PlanChooser(good_s=0.002, alpha=0.5)
    assert True not in run(chooser, "s", 20, server_s=0.0006, batches_s=0.004)
    # The scope grows: the server's brute force gets slow, so batches are tried, and kept.
    chosen = run(chooser, "s", 20, server_s=0.009, batches_s=0.001)
    assert chosen[-15:] == [True] * 15


def test_remembers_at_most_max_scopes() -> None:
    chooser = PlanChooser(max_scopes=2)
    for scope in ("a", "b", "c"):
        run(chooser, scope, 3, server_s=0.009, batches_s=0.001)
    assert chooser.batches("a") is False  # forgotten: timed afresh, the server's plan first
    assert chooser.batches("c") is True


@pytest.mark.parametrize(
    "kwargs",
    [{"good_s": -1}, {"explore_every": 1}, {"far_factor": 0.5}, {"alpha": 0}, {"alpha": 1.5}, {"max_scopes": 0}],
)
def test_rejects_settings_that_make_no_sense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="are required"):
        PlanChooser(**kwargs)  # type: ignore[arg-type]


class _Server:
    """Answers FT.SEARCH like a server that knows only the KNN attributes it is given."""

    def __init__(self, *known: str) -> None:
        self.known = known
        self.queries: list[str] = []

    async def execute_command(self, *args: object) -> list[object]:
        query = str(args[2])
        self.queries.append(query)
        for attribute in ("EF_RUNTIME", "HYBRID_POLICY"):
            if attribute in query and attribute not in self.known:
                raise ResponseError("Invalid option")
        if "KNN" in query and "HYBRID_POLICY" not in query:
            await asyncio.sleep(0.005)  # the server's own plan is slow here: the store tries batches if it can
        return [0]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("known", "used"),
    [
        (("EF_RUNTIME", "HYBRID_POLICY"), ("EF_RUNTIME", "HYBRID_POLICY")),
        (("EF_RUNTIME",), ("EF_RUNTIME",)),
        ((), ()),
    ],
)
async def test_the_store_uses_only_the_knn_attributes_the_server_accepts(
    known: tuple[str, ...], used: tuple[str, ...]
) -> None:
    server = _Server(*known)
    store = RedisStore(server, prefix="p:", embedder_id="e", dim=4)  # type: ignore[arg-type]
    await store.ensure_index()  # creates the index, then asks which attributes the server takes
    assert store.query_attributes == used
    server.queries.clear()
    for _ in range(3):
        await store.search("s", np.ones(4, dtype=np.float32), 3)
    assert all(("HYBRID_POLICY" in q) <= ("HYBRID_POLICY" in used) for q in server.queries)
    assert all(("EF_RUNTIME" in q) == ("EF_RUNTIME" in used) for q in server.queries)
    assert any("HYBRID_POLICY" in q for q in server.queries) == ("HYBRID_POLICY" in used)


@pytest.mark.anyio
async def test_a_server_that_later_refuses_the_attributes_is_searched_without_them() -> None:
    server = _Server("EF_RUNTIME", "HYBRID_POLICY")
    store = RedisStore(server, prefix="p:", embedder_id="e", dim=4)  # type: ignore[arg-type]
    await store.ensure_index()
    server.known = ()  # swapped for a server without them
    assert await store.search("s", np.ones(4, dtype=np.float32), 3) == []
    assert store.query_attributes == ()
    server.queries.clear()
    await store.search("s", np.ones(4, dtype=np.float32), 3)
    assert server.queries == ["(@scope:{s})=>[KNN 3 @vec $v AS dist]"]
