"""Auto-pipelining against the real Redis Stack: concurrent callers share round trips, and each gets its own replies
and its own errors, never another caller's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from semcache.adapters import redis_pipelining, redis_store
from semcache.adapters.redis_pipelining import AutoPipeline
from semcache.adapters.redis_store import RedisStore
from semcache.core.models import Entry, Usage

from .test_store_contract import DIM, unit

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    c = redis_store.connect(redis_url, timeout_s=2, connect_timeout_s=2)
    yield c
    await c.aclose()
    await c.connection_pool.disconnect()


async def _connections_received(client: Redis) -> int:
    return int((await client.info("stats"))["total_connections_received"])


async def test_concurrent_lookups_share_round_trips_and_connections(redis_url: str, key_prefix: str) -> None:
    client = redis_store.connect(redis_url, timeout_s=2, connect_timeout_s=2)
    store = RedisStore(client, prefix=key_prefix, embedder_id="test-embedder", dim=DIM)
    await store.ensure_index()
    for i in range(200):
        await store.put(Entry(f"e{i}", "s1", f"q{i}", f"r{i}", "m", Usage(1, 1), 1.0), unit(1, i), 100)
    observer = redis_store.connect(redis_url, timeout_s=2, connect_timeout_s=2)
    before = await _connections_received(observer)
    got = await asyncio.gather(*(store.get(f"e{i}") for i in range(200)))
    opened = await _connections_received(observer) - before
    assert [e.response if e else None for e in got] == [f"r{i}" for i in range(200)]
    # One command each, sent one by one, 200 callers would hold up to 64 connections (the pool) at once. Here the
    # first goes alone and the other 199 in 4 pipelines of at most 64: at most 5 connections, one already open.
    assert opened <= 5, f"{opened} new connections for 200 concurrent lookups"
    hits = await asyncio.gather(*(store.search("s1", unit(1, i), k=1) for i in range(40)))
    assert [h[0].entry.response for h in hits] == [f"r{i}" for i in range(40)]
    await client.execute_command("FT.DROPINDEX", store.index_name, "DD")  # type: ignore[no-untyped-call]
    await store.close()
    await observer.aclose()
    await observer.connection_pool.disconnect()


async def test_each_caller_gets_its_own_replies_in_order_across_pipelines(client: Redis, key_prefix: str) -> None:
    pipeline = AutoPipeline(client, max_commands=3)
    await client.mset({f"{key_prefix}{i}": str(i) for i in range(10)})
    groups = [tuple(("GET", f"{key_prefix}{j}") for j in range(i, i + n)) for i, n in ((0, 1), (1, 2), (3, 3), (6, 4))]
    replies = await asyncio.gather(*(pipeline.execute(*g) for g in groups))
    assert replies == [[b"0"], [b"1", b"2"], [b"3", b"4", b"5"], [b"6", b"7", b"8", b"9"]]
    # The first group goes at once; the others wait for the end of the turn and are never split: 2, 3, then 4 (a
    # group larger than a pipeline goes in one of its own).
    assert pipeline.pipelines == 4


async def test_an_error_reaches_only_its_own_caller(client: Redis, key_prefix: str) -> None:
    pipeline = AutoPipeline(client)
    await client.set(f"{key_prefix}a", "1")
    ok, refused, also_ok = await asyncio.gather(
        pipeline.execute(("GET", f"{key_prefix}a")),
        pipeline.execute(("FT.SEARCH", f"{key_prefix}no-such-index", "*")),
        pipeline.execute(("GET", f"{key_prefix}a"), ("GET", f"{key_prefix}missing")),
        return_exceptions=True,
    )
    assert ok == [b"1"]
    assert isinstance(refused, ResponseError)
    assert also_ok == [b"1", None]
    assert pipeline.pipelines == 2  # the first alone, then the other two together


async def test_a_caller_that_gives_up_does_not_disturb_the_others(client: Redis, key_prefix: str) -> None:
    pipeline = AutoPipeline(client)
    await client.set(f"{key_prefix}a", "1")
    gone = asyncio.ensure_future(pipeline.execute(("GET", f"{key_prefix}a")))
    staying = asyncio.ensure_future(pipeline.execute(("GET", f"{key_prefix}a")))
    await asyncio.sleep(0)  # both queued, the pipeline not yet sent
    gone.cancel()
    assert await staying == [b"1"]
    assert gone.cancelled()


async def test_a_connection_failure_reaches_every_caller_at_once() -> None:
    dead = redis_store.connect("redis://127.0.0.1:1/0", timeout_s=0.2, connect_timeout_s=0.2)
    pipeline = AutoPipeline(dead)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(pipeline.execute(("GET", "k")) for _ in range(100)), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    assert loop.time() - started < 2
    await pipeline.aclose()
    await dead.aclose()
    await dead.connection_pool.disconnect()


async def test_transaction_groups_are_written_whole(client: Redis, key_prefix: str) -> None:
    pipeline = AutoPipeline(client, transaction=True, max_commands=4)
    keys = [f"{key_prefix}h{i}" for i in range(20)]
    writes = [pipeline.execute(("DEL", k), ("HSET", k, "a", i, "b", i), ("EXPIRE", k, 60)) for i, k in enumerate(keys)]
    results = await asyncio.gather(*writes)
    assert all(r[1:] == [2, True] for r in results)
    for i, k in enumerate(keys):
        assert await client.hgetall(k) == {b"a": str(i).encode(), b"b": str(i).encode()}


async def test_a_transaction_group_that_fails_fails_only_its_own_caller(client: Redis, key_prefix: str) -> None:
    # Each group is a MULTI/EXEC of its own: one refused as it is queued (an unknown command: EXECABORT) or failing
    # inside EXEC (WRONGTYPE) costs only its own caller, not the other writes sharing the round trip.
    pipeline = AutoPipeline(client, transaction=True)
    await client.rpush(f"{key_prefix}list", "x")
    keys = [f"{key_prefix}g{i}" for i in range(6)]
    writes = [pipeline.execute(("HSET", k, "a", i), ("EXPIRE", k, 60)) for i, k in enumerate(keys)]
    refused = pipeline.execute(("HSET", f"{key_prefix}h", "a", 1), ("NOSUCHCOMMAND", f"{key_prefix}h"))
    wrong = pipeline.execute(
        ("HSET", f"{key_prefix}list", "a", 1),
    )
    results = await asyncio.gather(*writes, refused, wrong, return_exceptions=True)
    assert results[:6] == [[1, 1]] * 6
    assert isinstance(results[6], ResponseError)
    assert "unknown command" in str(results[6]).lower()
    assert isinstance(results[7], ResponseError)
    assert "WRONGTYPE" in str(results[7])
    assert await client.exists(f"{key_prefix}h") == 0, "a refused group writes nothing"
    assert [await client.hget(k, "a") for k in keys] == [str(i).encode() for i in range(6)]


async def test_a_busy_event_loop_is_not_taken_for_a_slow_redis(redis_url: str, key_prefix: str) -> None:
    client = redis_store.connect(redis_url, timeout_s=0.25, connect_timeout_s=1)
    store = RedisStore(client, prefix=key_prefix, embedder_id="test-embedder", dim=DIM, timeout_s=0.25)
    await store.ensure_index()
    await store.put(Entry("a", "s1", "q", "r", "m", Usage(1, 1), 1.0), unit(1), 100)
    for lookup in (lambda: store.get("a"), lambda: store.search("s1", unit(1), k=1)):
        task = asyncio.ensure_future(lookup())
        await asyncio.sleep(0)  # the command is on its way
        time.sleep(0.75)  # noqa: ASYNC251  (the loop busy for 3 budgets: the reply waits in the socket meanwhile)
        assert await task, "a reply that came in time was taken for a timeout"
    await client.execute_command("FT.DROPINDEX", store.index_name, "DD")  # type: ignore[no-untyped-call]
    await store.close()


async def test_a_lone_command_in_flight_never_shares_its_connection(client: Redis, key_prefix: str) -> None:
    pipeline = AutoPipeline(client)
    await client.set(f"{key_prefix}a", "1")
    blocked = asyncio.ensure_future(pipeline.execute(("BLPOP", f"{key_prefix}list", "0.5")))
    await asyncio.sleep(0.05)  # BLPOP went alone, on the lone commands' connection, and waits there
    started = time.monotonic()
    # Issued while it is in flight, this one goes as a batch of its own: on another connection, at once.
    assert await pipeline.execute(("GET", f"{key_prefix}a")) == [b"1"]
    assert time.monotonic() - started < 0.4
    assert await blocked == [None]


async def test_a_lone_command_given_up_leaves_no_reply_for_the_next(client: Redis, key_prefix: str) -> None:
    pipeline = AutoPipeline(client)
    queue = f"{key_prefix}list"
    waiting = asyncio.ensure_future(pipeline.execute(("BLPOP", queue, "5")))
    await asyncio.sleep(0.05)  # sent; its reply has not come
    waiting.cancel()
    await asyncio.sleep(0.05)  # the server sees the connection close
    await client.rpush(queue, "x")  # type: ignore[misc]
    # Had the connection been kept, the server would have handed x to the abandoned BLPOP, and the next command
    # would have read that reply as its own.
    assert await pipeline.execute(("LRANGE", queue, "0", "-1")) == [[b"x"]]
    assert waiting.cancelled()
    await pipeline.aclose()


async def test_a_lone_command_given_up_drops_its_connection_whatever_the_driver_does(client: Redis) -> None:
    # The test above passes on redis-py's own care too: its read_response disconnects when cancelled. This one
    # takes that care away (a read that waits, then lets go without closing anything) to check ours.
    pipeline = AutoPipeline(client)
    await pipeline.execute(("PING",))
    conn = pipeline._lone
    assert conn is not None
    assert conn.is_connected

    async def careless_read(*args: object, **kwargs: object) -> object:
        await asyncio.sleep(10)
        return None

    conn.read_response = careless_read  # type: ignore[method-assign]
    waiting = asyncio.ensure_future(pipeline.execute(("PING",)))
    await asyncio.sleep(0.05)  # sent; "reading"
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not conn.is_connected, "a reply may still come: the connection must not be used again"
    del conn.read_response  # the class's own again
    assert await pipeline.execute(("PING",)) == [b"PONG"], "the next command reconnects"
    await pipeline.aclose()


async def test_closing_with_a_lone_command_in_flight_hands_the_pool_no_pending_reply(
    client: Redis, key_prefix: str
) -> None:
    pipeline = AutoPipeline(client)
    queue = f"{key_prefix}closing"
    waiting = asyncio.ensure_future(pipeline.execute(("BLPOP", queue, "5")))
    await asyncio.sleep(0.05)  # sent; its reply has not come
    await pipeline.aclose()
    with pytest.raises(RedisConnectionError):
        await waiting
    await client.rpush(queue, "x")  # type: ignore[misc]
    # Had the connection gone back to the pool still open, its BLPOP would have taken x, and the pool's next user
    # would have read that reply as its own.
    assert await client.lrange(queue, 0, -1) == [b"x"]  # type: ignore[misc]


async def test_the_lone_connection_closed_by_the_server_while_idle_is_reopened(
    client: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_pipelining, "IDLE_CHECK_S", 0.0)
    pipeline = AutoPipeline(client)
    await client.set(f"{key_prefix}a", "1")
    (lone_id,) = await pipeline.execute(("CLIENT", "ID"))  # a lone command: the lone commands' connection's id
    # An idle timeout on the server's side, or a Lambda environment thawed after minutes: the socket is dead.
    await client.execute_command("CLIENT", "KILL", "ID", lone_id)  # type: ignore[no-untyped-call]
    await asyncio.sleep(0.05)
    assert await pipeline.execute(("GET", f"{key_prefix}a")) == [b"1"]
    await pipeline.aclose()
