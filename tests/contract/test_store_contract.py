"""One suite, run against every VectorStore: the in-memory fake must behave like the real Redis store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import numpy as np
import pytest

from semcache.adapters import redis_store
from semcache.adapters.memory_store import MemoryStore
from semcache.adapters.redis_store import RedisStore
from semcache.core.errors import StoreError, StoreFull
from semcache.core.models import Entry, Usage
from semcache.core.ports import Vector, VectorStore

pytestmark = pytest.mark.anyio
DIM = 8

Advance = Callable[[float], Awaitable[None]]


def unit(*values: float) -> Vector:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def entry(eid: str, scope: str = "s1", response: str = "r", query: str = "q") -> Entry:
    return Entry(id=eid, scope=scope, query=query, response=response, model="m", usage=Usage(3, 4), created_at=1234.5)


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def backend(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[tuple[VectorStore, Advance]]:
    # redis-cluster: one shard in cluster mode (MemoryDB, ElastiCache), where no command or transaction may name keys
    # of two hash slots
    if request.param == "memory":
        now = [1_000.0]
        store = MemoryStore(clock=lambda: now[0])

        async def advance_clock(seconds: float) -> None:
            now[0] += seconds

        yield store, advance_clock
        return
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    client = redis_store.connect(url, timeout_s=2, connect_timeout_s=2)
    rstore = RedisStore(client, prefix=key_prefix, embedder_id="test-embedder", dim=DIM)
    await rstore.ensure_index()

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    yield rstore, sleep
    await client.execute_command("FT.DROPINDEX", rstore.index_name, "DD")  # type: ignore[no-untyped-call]
    await rstore.close()


async def test_put_then_get(backend: tuple[VectorStore, Advance]) -> None:
    store, _ = backend
    await store.put(entry("a"), unit(1), ttl_seconds=100)
    got = await store.get("a")
    assert got is not None
    assert replace(got, ttl_seconds=None) == entry("a")
    assert got.ttl_seconds is not None
    assert 98 <= got.ttl_seconds <= 100
    assert await store.get("missing") is None


async def test_get_with_vector_returns_the_stored_vector(backend: tuple[VectorStore, Advance]) -> None:
    store, _ = backend
    await store.put(entry("a"), unit(1, 2, 3), ttl_seconds=100)
    found = await store.get_with_vector("a")
    assert found is not None
    got, vector = found
    assert got == await store.get("a")
    assert vector is not None
    np.testing.assert_array_equal(vector, unit(1, 2, 3))
    assert await store.get_with_vector("missing") is None


async def test_search_is_nearest_first_within_scope_and_k(backend: tuple[VectorStore, Advance]) -> None:
    store, _ = backend
    await store.put(entry("near", response="near"), unit(1, 0.1), 100)
    await store.put(entry("far", response="far"), unit(1, 1), 100)
    await store.put(entry("other", scope="s2"), unit(1), 100)
    matches = await store.search("s1", unit(1), k=2)
    assert [m.entry.id for m in matches] == ["near", "far"]
    assert matches[0].similarity == pytest.approx(float(unit(1) @ unit(1, 0.1)), abs=1e-5)
    assert matches[1].similarity == pytest.approx(float(unit(1) @ unit(1, 1)), abs=1e-5)
    assert [m.entry.id for m in await store.search("s1", unit(1), k=1)] == ["near"]
    assert [m.entry.id for m in await store.search("s2", unit(0, 1), k=3)] == ["other"]
    assert await store.search("nobody", unit(1), k=3) == []


async def test_put_replaces_the_entry_with_the_same_id(backend: tuple[VectorStore, Advance]) -> None:
    store, _ = backend
    await store.put(entry("a", response="old"), unit(1), 100)
    await store.put(entry("a", response="new"), unit(0, 1), 100)
    got = await store.get("a")
    assert got is not None
    assert got.response == "new"
    matches = await store.search("s1", unit(0, 1), k=5)
    assert [(m.entry.id, m.entry.response) for m in matches] == [("a", "new")]
    assert matches[0].similarity == pytest.approx(1.0, abs=1e-5)


async def test_delete(backend: tuple[VectorStore, Advance]) -> None:
    store, _ = backend
    await store.put(entry("a"), unit(1), 100)
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await store.get("a") is None
    assert await store.search("s1", unit(1), k=1) == []


async def test_entries_expire(backend: tuple[VectorStore, Advance]) -> None:
    store, advance = backend
    await store.put(entry("a"), unit(1), ttl_seconds=1)
    await advance(1.6)
    assert await store.get("a") is None
    assert await store.search("s1", unit(1), k=1) == []


async def test_an_entry_without_a_vector_is_found_by_id_and_never_by_search(
    backend: tuple[VectorStore, Advance],
) -> None:
    """An entry whose text is too long to embed: served to an exact repeat, never a semantic candidate, even where
    it replaces an entry that had a vector; deleted by a flush like any other."""
    store, _ = backend
    await store.put(entry("long"), unit(1), 100)
    await store.put(entry("long", response="whole"), None, 100)
    await store.put(entry("near"), unit(1, 0.5), 100)
    got = await store.get("long")
    assert got is not None
    assert got.response == "whole"
    assert await store.get_with_vector("long") == (got, None)
    assert [m.entry.id for m in await store.search("s1", unit(1), k=5)] == ["near"]
    assert await store.flush(scope="s1") == 2
    assert await store.get("long") is None


async def test_ping_reports_entries(backend: tuple[VectorStore, Advance]) -> None:
    store, _ = backend
    await store.put(entry("a"), unit(1), 100)
    state = await store.ping()
    assert state["entries"] == 1


# Redis only: what a real server adds (concurrency, partial writes, outages).


@pytest.fixture
async def rstore(redis_url: str, key_prefix: str) -> AsyncIterator[RedisStore]:
    client = redis_store.connect(redis_url, timeout_s=2, connect_timeout_s=2)
    store = RedisStore(client, prefix=key_prefix, embedder_id="test-embedder", dim=DIM)
    await store.ensure_index()
    yield store
    await client.execute_command("FT.DROPINDEX", store.index_name, "DD")  # type: ignore[no-untyped-call]
    await store.close()


async def test_concurrent_writers_leave_one_consistent_entry(redis_url: str, key_prefix: str) -> None:
    clients = [redis_store.connect(redis_url, timeout_s=2, connect_timeout_s=2) for _ in range(8)]
    stores = [RedisStore(c, prefix=key_prefix, embedder_id="test-embedder", dim=DIM) for c in clients]
    await stores[0].ensure_index()
    writes = [stores[i % 8].put(entry("same", query=f"q{i}", response=f"r{i}"), unit(1, i), 100) for i in range(64)]
    await asyncio.gather(*writes)
    got = await stores[0].get("same")
    assert got is not None
    assert got.response == "r" + got.query.removeprefix("q"), "fields of different writes were mixed"
    await clients[0].execute_command("FT.DROPINDEX", stores[0].index_name, "DD")  # type: ignore[no-untyped-call]
    for s in stores:
        await s.close()


async def test_a_store_out_of_memory_refuses_writes_as_full_and_still_serves_reads(rstore: RedisStore) -> None:
    client = rstore._client
    await rstore.put(entry("kept"), unit(1), 100)
    saved = await client.config_get("maxmemory*")
    try:
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", 1)  # every write refused with OOM, reads still answered
        with pytest.raises(StoreFull, match="want of memory"):
            await rstore.put(entry("new"), unit(0, 1), 100)
        kept = await rstore.get("kept")
        assert kept is not None
        assert [m.entry.id for m in await rstore.search("s1", unit(1), k=3)] == ["kept"]
    finally:
        for name in ("maxmemory", "maxmemory-policy"):
            await client.config_set(name, saved[name])
    assert await rstore.get("new") is None, "nothing half-written"
    await rstore.put(entry("new"), unit(0, 1), 100)
    assert await rstore.get("new") is not None


async def test_a_half_written_entry_is_never_served(rstore: RedisStore) -> None:
    client = rstore._client
    await client.hset(rstore.key("half"), mapping={"v": "1", "scope": "s1", "vec": unit(1).tobytes()})
    assert await rstore.get("half") is None
    assert await rstore.search("s1", unit(1), k=3) == []


async def test_an_entry_past_its_deadline_is_not_served_before_redis_reaps_it(rstore: RedisStore) -> None:
    await rstore.put(entry("a"), unit(1), ttl_seconds=100)
    assert await rstore.get("a") is not None
    await rstore._client.hset(rstore.key("a"), "expires_at", time.time() - 1)  # the key itself still lives
    assert await rstore.get("a") is None
    assert await rstore.search("s1", unit(1), k=3) == []


async def test_an_unreachable_server_raises_store_error_quickly() -> None:
    client = redis_store.connect("redis://127.0.0.1:1/0", timeout_s=0.2, connect_timeout_s=0.2)
    store = RedisStore(client, prefix="x:", embedder_id="e", dim=DIM)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoreError):
        await store.get("a")
    with pytest.raises(StoreError):
        await store.search("s1", unit(1), k=1)
    assert loop.time() - started < 2
    await store.close()


async def test_index_is_recreated_after_the_server_lost_it(rstore: RedisStore) -> None:
    client = rstore._client
    await client.execute_command("FT.DROPINDEX", rstore.index_name)  # type: ignore[no-untyped-call]
    assert await rstore.search("s1", unit(1), k=1) == []
    await rstore.put(entry("a"), unit(1), 100)
    assert [m.entry.id for m in await rstore.search("s1", unit(1), k=1)] == ["a"]


async def test_an_index_with_another_schema_is_refused_with_a_clear_message(redis_url: str, key_prefix: str) -> None:
    from semcache.adapters.redis_store import IndexMismatch

    client = redis_store.connect(redis_url, timeout_s=2, connect_timeout_s=2)
    other = RedisStore(client, prefix=key_prefix, embedder_id="test-embedder", dim=DIM)
    # Someone created our index name with 16-dimensional vectors.
    await client.execute_command(  # type: ignore[no-untyped-call]
        "FT.CREATE", other.index_name, "ON", "HASH", "PREFIX", "1", f"{key_prefix}x:", "SCHEMA",
        "scope", "TAG", "vec", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "16", "DISTANCE_METRIC", "COSINE",
    )  # fmt: skip
    try:
        with pytest.raises(IndexMismatch, match=r"dimension 16, ours 8.*FT.DROPINDEX"):
            await other.ensure_index()
        other.refuse("refused for the test")
        with pytest.raises(StoreError, match="refused"):
            await other.get("a")
        with pytest.raises(StoreError, match="refused"):
            await other.search("s1", unit(1), k=1)
    finally:
        await client.execute_command("FT.DROPINDEX", other.index_name)  # type: ignore[no-untyped-call]
        await other.close()


async def test_ensure_index_accepts_its_own_index(rstore: RedisStore) -> None:
    assert await rstore.ensure_index() is False


async def test_both_knn_plans_find_the_same_nearest_entries(
    rstore: RedisStore, redis_url: str, key_prefix: str
) -> None:
    assert rstore.query_options == ("EF_RUNTIME", "HYBRID_POLICY", "RETURN")  # Redis Stack accepts all
    assert (await rstore.ping())["query_options"] == ["EF_RUNTIME", "HYBRID_POLICY", "RETURN"]  # in the health check
    client = redis_store.connect(redis_url, timeout_s=2, connect_timeout_s=2)
    batches = RedisStore(client, prefix=key_prefix, embedder_id="test-embedder", dim=DIM, knn_plan="batches")
    server = RedisStore(client, prefix=key_prefix, embedder_id="test-embedder", dim=DIM, knn_plan="server")
    for store in (batches, server):
        await store.ensure_index()
    assert batches.query_options == ("EF_RUNTIME", "HYBRID_POLICY", "RETURN")
    assert server.query_options == ("EF_RUNTIME", "RETURN")
    rng = np.random.default_rng(3)
    for i in range(40):
        await rstore.put(entry(f"e{i}", scope="s1" if i % 2 else "s2"), rng.normal(size=DIM).astype(np.float32), 100)
    for query in rng.normal(size=(5, DIM)).astype(np.float32):
        found = [[m.entry.id for m in await store.search("s1", query, k=3)] for store in (server, batches, rstore)]
        assert len(found[0]) == 3
        assert all(int(eid[1:]) % 2 for eid in found[0])  # odd ids are scope s1's
        assert found[1:] == [found[0]] * 2
    await server.close()  # the client both share


async def test_the_knn_settings_reach_the_store(redis_url: str, key_prefix: str) -> None:
    from types import SimpleNamespace

    from pydantic import ValidationError

    from semcache.bootstrap import build_store
    from semcache.settings import Settings

    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, knn_plan="server", knn_ef_runtime=7)
    store = build_store(settings, SimpleNamespace(id="test-embedder", dim=DIM))  # type: ignore[arg-type]
    await store.ensure_index()
    assert store.query_options == ("EF_RUNTIME", "RETURN")  # the server's own plan: HYBRID_POLICY never forced
    assert store._ef_runtime == 7
    await store.client.execute_command("FT.DROPINDEX", store.index_name, "DD")  # type: ignore[no-untyped-call]
    await store.close()
    with pytest.raises(ValidationError, match="knn_ef_runtime"):
        Settings(knn_ef_runtime=0)
    with pytest.raises(ValidationError, match="knn_plan"):
        Settings(knn_plan="fastest")  # type: ignore[arg-type]


async def test_a_mismatch_mark_flags_the_entry_for_that_question_only(backend: tuple[VectorStore, Advance]) -> None:
    store, _ = backend
    await store.put(entry("a"), unit(1), 100)
    assert await store.mark_mismatch("a", "f" * 32)
    assert await store.mark_mismatch("missing", "f" * 32) is False
    flags = {asked: [m.mismatched for m in await store.search("s1", unit(1), k=1, asked=asked)]
             for asked in ("f" * 32, "e" * 32, None)}  # fmt: skip
    assert flags == {"f" * 32: [True], "e" * 32: [False], None: [False]}
    got = await store.get("a")  # the entry itself is intact, and still served to everyone else
    assert got is not None
    assert got.response == "r"
    await store.put(entry("a", response="new"), unit(1), 100)  # a new answer under the id: the mark goes with the old
    assert [m.mismatched for m in await store.search("s1", unit(1), k=1, asked="f" * 32)] == [False]


async def test_a_mismatch_mark_read_with_hmget_where_the_knn_reply_has_no_fields(
    redis_url: str, key_prefix: str
) -> None:
    client = redis_store.connect(redis_url, timeout_s=2, connect_timeout_s=2)
    store = RedisStore(client, prefix=key_prefix, embedder_id="test-embedder", dim=DIM)
    await store.ensure_index()
    store._inline = False  # as on a server that does not return unindexed fields with the KNN reply
    try:
        await store.put(entry("a"), unit(1), 100)
        await store.mark_mismatch("a", "f" * 32)
        assert [m.mismatched for m in await store.search("s1", unit(1), k=1, asked="f" * 32)] == [True]
        assert [m.mismatched for m in await store.search("s1", unit(1), k=1, asked="e" * 32)] == [False]
        ttl = await client.pttl(store.key("a"))
        assert 0 < ttl <= 100_000  # the mark kept the entry's deadline
        assert await store.mark_mismatch("gone", "f" * 32) is False
        assert not await client.exists(store.key("gone"))  # no lone field left without a deadline
    finally:
        await client.execute_command("FT.DROPINDEX", store.index_name, "DD")  # type: ignore[no-untyped-call]
        await store.close()


async def test_concurrent_writes_of_different_entries_all_land(backend: tuple[VectorStore, Advance]) -> None:
    # Concurrent writes share a round trip. On a cluster-mode server (MemoryDB, ElastiCache) one transaction may not
    # name keys of two hash slots, so each entry's write must be a transaction of its own.
    store, _ = backend
    ids = [f"e{i}" for i in range(40)]
    await asyncio.gather(*(store.put(entry(eid, response=f"r{eid}"), unit(1, i + 1), 100) for i, eid in enumerate(ids)))
    got = await asyncio.gather(*(store.get(eid) for eid in ids))
    assert [g.response if g else None for g in got] == [f"r{eid}" for eid in ids]
    marked = await asyncio.gather(*(store.mark_mismatch(eid, f"other-{eid}") for eid in ids[:10]))
    assert all(marked)
    assert await store.flush(scope="s1") == len(ids)
    assert await store.get(ids[0]) is None


async def test_verdicts_are_counted_and_logged(backend: tuple[VectorStore, Advance]) -> None:
    store, _ = backend
    example = {"a": "stored", "b": "asked", "duplicate": False}
    await asyncio.gather(
        store.record_verdict("v1|t1", 8, wrong=True, example=example, tenant="t1"),
        store.record_verdict("v1|t1", 8, wrong=False, example=example, tenant="t1"),
        store.record_verdict("v1|t2", 3, wrong=True, example=example, tenant="t2"),
    )
    assert await store.verdicts("v1|t1") == {8: (1, 1)}
    assert await store.verdicts("v1|t2") == {3: (0, 1)}
    assert len(await store.feedback_log("t1", 10)) == 2
    assert await store.feedback_log("t2", 10) == [example]
