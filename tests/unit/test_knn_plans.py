"""The per-scope choice between RediSearch's own hybrid plan and forced batches."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from redis.exceptions import ResponseError

from semcache.adapters.knn_plans import PlanChooser
from semcache.adapters.redis_store import RedisStore
from semcache.core.errors import StoreError


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
    """Answers FT.SEARCH (and HMGET) like a server that knows only the query options it is given, holding at most
    one entry; omits_unindexed: it accepts RETURN of unindexed fields but leaves them out of the reply."""

    def __init__(self, *known: str, omits_unindexed: bool = False) -> None:
        self.known = known
        self.omits_unindexed = omits_unindexed
        self.entry: tuple[str, dict[bytes, bytes]] | None = None
        self.queries: list[str] = []
        self.reads = 0
        self.pipelines = 0
        self.timeout = False

    async def execute_command(self, *args: object) -> list[object]:
        if args[0] == "HMGET":
            return list(await self.hmget(str(args[1]), tuple(str(a) for a in args[2:])))
        query = str(args[2])
        self.queries.append(query)
        if self.timeout:
            raise ResponseError("Timeout limit was reached")
        returned = [str(a) for a in args[args.index("RETURN") + 2 : args.index("LIMIT")]] if "RETURN" in args else []
        for option in ("EF_RUNTIME", "HYBRID_POLICY"):
            if option in query and option not in self.known:
                raise ResponseError("Invalid option")
        if len(returned) > 1 and "RETURN" not in self.known:
            raise ResponseError("Unknown field")
        if "KNN" in query and "HYBRID_POLICY" not in query:
            await asyncio.sleep(0.005)  # the server's own plan is slow here: the store tries batches if it can
        if self.entry is None or "{probe}" in query:
            return [0]
        key, fields = self.entry
        reply: list[bytes] = [b"dist", b"0.1"]
        for name in returned[1:]:
            if name == "vec" or not self.omits_unindexed:
                reply += [name.encode(), fields[name.encode()]]
        return [1, key.encode(), reply]

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        self.pipelines += 1
        return _Pipeline(self)

    @property
    def connection_pool(self) -> _Pool:
        return _Pool(self)

    async def hmget(self, key: str, names: tuple[str, ...]) -> list[bytes | None]:
        self.reads += 1
        assert self.entry is not None
        return [self.entry[1].get(n.encode()) for n in names]


class _Pool:
    """redis-py's connection pool and its connections, as far as the store's lone commands use them."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.sent: tuple[object, ...] = ()

    async def get_connection(self) -> _Pool:
        return self

    async def ensure_connection(self, connection: _Pool) -> None:
        pass

    async def send_packed_command(self, data: bytes) -> None:
        # RESP back into arguments: an array of bulk strings ("*n", then "$len" and the bytes of each)
        count, rest = data[1:].split(b"\r\n", 1)
        args: list[object] = []
        for _ in range(int(count)):
            size, rest = rest[1:].split(b"\r\n", 1)
            value, rest = rest[: int(size)], rest[int(size) + 2 :]
            try:
                args.append(value.decode())
            except UnicodeDecodeError:  # the vector
                args.append(value)
        self.sent = tuple(args)

    async def read_response(self) -> object:
        return await self.server.execute_command(*self.sent)

    async def disconnect(self, nowait: bool = False) -> None:
        pass


class _Pipeline:
    """redis-py's pipeline, as far as the store's probe uses it."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.commands: list[tuple[object, ...]] = []

    def execute_command(self, *args: object) -> None:
        self.commands.append(args)

    async def execute(self, raise_on_error: bool = True) -> list[object]:
        replies: list[object] = []
        for args in self.commands:
            try:
                replies.append(await self.server.execute_command(*args))
            except ResponseError as exc:
                if raise_on_error:
                    raise
                replies.append(exc)
        return replies


def stored(store: RedisStore, server: _Server) -> None:
    """One live entry "a" of scope "s" on the server."""
    fields = {b"v": b"3", b"scope": b"s", b"query": b"q", b"response": b"r", b"model": b"m", b"usage": b"[1, 2]",
              b"created_at": b"1.0", b"tenant": b"", b"expires_at": str(time.time() + 100).encode(),
              b"vec": np.ones(4, dtype=np.float32).tobytes()}  # fmt: skip
    server.entry = (store.key("a"), fields)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("known", "used"),
    [
        (("EF_RUNTIME", "HYBRID_POLICY", "RETURN"), ("EF_RUNTIME", "HYBRID_POLICY", "RETURN")),
        (("EF_RUNTIME", "HYBRID_POLICY"), ("EF_RUNTIME", "HYBRID_POLICY")),
        (("EF_RUNTIME",), ("EF_RUNTIME",)),
        (("RETURN",), ("RETURN",)),
        ((), ()),
    ],
)
async def test_the_store_uses_only_the_query_options_the_server_accepts(
    known: tuple[str, ...], used: tuple[str, ...]
) -> None:
    server = _Server(*known)
    store = RedisStore(server, prefix="p:", embedder_id="e", dim=4)  # type: ignore[arg-type]
    await store.ensure_index()  # creates the index, then asks which options the server takes
    assert store.query_options == used
    assert server.pipelines == 1  # all three asked in one round trip
    server.queries.clear()
    for _ in range(3):
        await store.search("s", np.ones(4, dtype=np.float32), 3)
    assert all(("HYBRID_POLICY" in q) <= ("HYBRID_POLICY" in used) for q in server.queries)
    assert all(("EF_RUNTIME" in q) == ("EF_RUNTIME" in used) for q in server.queries)
    assert any("HYBRID_POLICY" in q for q in server.queries) == ("HYBRID_POLICY" in used)


@pytest.mark.anyio
async def test_a_server_that_later_refuses_the_options_is_searched_without_them() -> None:
    server = _Server("EF_RUNTIME", "HYBRID_POLICY", "RETURN")
    store = RedisStore(server, prefix="p:", embedder_id="e", dim=4)  # type: ignore[arg-type]
    await store.ensure_index()
    server.known = ()  # swapped for a server without them
    assert await store.search("s", np.ones(4, dtype=np.float32), 3) == []
    assert store.query_options == ()
    server.queries.clear()
    await store.search("s", np.ones(4, dtype=np.float32), 3)
    assert server.queries == ["(@scope:{s})=>[KNN 3 @vec $v AS dist]"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("known", "omits_unindexed", "reads"),
    [
        (("RETURN",), False, 0),  # the candidates come whole with the KNN reply
        (("RETURN",), True, 1),  # accepted, but the texts left out: read with HMGET
        ((), False, 1),  # not accepted: read with HMGET
    ],
)
async def test_candidates_are_read_once_however_the_server_returns_them(
    known: tuple[str, ...], omits_unindexed: bool, reads: int
) -> None:
    server = _Server(*known, omits_unindexed=omits_unindexed)
    store = RedisStore(server, prefix="p:", embedder_id="e", dim=4)  # type: ignore[arg-type]
    await store.ensure_index()
    stored(store, server)
    [match] = await store.search("s", np.ones(4, dtype=np.float32), 3)
    assert (match.entry.id, match.entry.query, match.entry.response) == ("a", "q", "r")
    assert match.similarity == pytest.approx(0.9)
    assert match.vector is not None
    assert server.reads == reads


@pytest.mark.anyio
async def test_a_query_that_times_out_keeps_the_options() -> None:
    server = _Server("EF_RUNTIME", "HYBRID_POLICY", "RETURN")
    store = RedisStore(server, prefix="p:", embedder_id="e", dim=4)  # type: ignore[arg-type]
    await store.ensure_index()
    server.timeout = True  # a slow query, not a refusal
    with pytest.raises(StoreError, match="Timeout"):
        await store.search("s", np.ones(4, dtype=np.float32), 3)
    assert store.query_options == ("EF_RUNTIME", "HYBRID_POLICY", "RETURN")
