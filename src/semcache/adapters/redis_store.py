"""A VectorStore on a Redis vector index: Redis Stack, Redis 8, Redis Cloud, MemoryDB, ElastiCache for Valkey.

Only the portable subset of FT.* is used: HASH documents with a TAG (scope digest) and a VECTOR (HNSW, FLOAT32,
COSINE) field; `(@scope:{..})=>[KNN k @vec $v AS dist]` with PARAMS, RETURN of the score, LIMIT and DIALECT 2.
Texts live in unindexed hash fields read with HMGET. Keys and the index carry a tag derived from the embedder's id,
so vectors of different embedders never share an index.

Three options beyond that subset are used where the server accepts them, asked once when the index is ensured:
`EF_RUNTIME` (a wider HNSW search: more of the true nearest entries found), RediSearch's `HYBRID_POLICY BATCHES`,
forced for the scopes where it has been faster (semcache.adapters.knn_plans), and RETURN of the unindexed fields,
which brings the candidates with the KNN reply instead of a second round trip (a server that accepts it but
leaves them out is read with HMGET all the same).

One entry is one hash, written with DEL + HSET + EXPIRE in one MULTI/EXEC: a reader sees all of it or none.
The commands of concurrent requests (exact probes, KNN queries, writes) leave together as one pipeline per turn
of the event loop (semcache.adapters.redis_pipelining): a burst does not run the connection pool dry.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Literal, cast

import numpy as np
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from semcache.adapters.knn_plans import PlanChooser
from semcache.adapters.loop_deadline import within
from semcache.adapters.redis_pipelining import AutoPipeline
from semcache.core.calibration import FEEDBACK_LOG_LIMIT, VERDICTS_TTL_S
from semcache.core.errors import StoreError, StoreFull
from semcache.core.models import JSON, Entry, Match, Usage
from semcache.core.ports import Vector

log = logging.getLogger("semcache")

SCHEMA_VERSION = "3"
EF_RUNTIME = 50
"""Candidates an HNSW search keeps (RediSearch's default is 10). Measured on 30,000 Quora questions in one scope
(`python bench/knn.py`, knn-20261126-135519.json): the graph search returned the true nearest entry first for 97%
of 200 queries at 10 and for all of them at 50, for 0.2-0.4 ms more."""


class IndexMismatch(StoreError):
    """An index of our name exists with a schema we cannot use."""


_FIELDS = ("v", "scope", "query", "response", "model", "usage", "created_at", "tenant", "expires_at")
_FIELD_KEYS = tuple(f.encode() for f in _FIELDS)
_RETURNED = ("dist", *_FIELDS, "vec")
"""What FT.SEARCH's RETURN clause brings of each candidate, whole: distance, fields, vector."""


def _mismatch_field(asked: str) -> str:
    """The entry's field that says it must not serve the question whose entry id is asked (a mismatch verdict)."""
    return f"mismatch_{asked}"


def connect(url: str, *, timeout_s: float, connect_timeout_s: float, max_connections: int = 64) -> Redis:
    """A client that fails fast: no retries (the cache is optional, the LLM is not) and a bounded pool whose callers
    wait for a free connection instead of failing at once.

    timeout_s is the budget of a round trip, which RedisStore(timeout_s=...) enforces without counting the event
    loop's own lateness (semcache.adapters.loop_deadline); the socket and pool timeouts here are only a backstop
    (backstop_s(timeout_s)) that frees a connection nobody waits for any more.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=backstop_s(timeout_s),
        socket_timeout=backstop_s(timeout_s),
        socket_connect_timeout=connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
        protocol=2,  # RESP2 replies to FT.* are the same on every managed service
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)


def backstop_s(timeout_s: float) -> float:
    """The socket timeout under a store's budget of timeout_s: long enough that a busy event loop never trips it."""
    return max(5.0, 4 * timeout_s)


class RedisStore:
    """Entries as Redis hashes under one key prefix, found by key (exact) or by KNN (semantic)."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str,
        embedder_id: str,
        dim: int,
        ef_runtime: int = EF_RUNTIME,
        knn_plan: Literal["auto", "server", "batches"] = "auto",
        timeout_s: float | None = None,
    ) -> None:
        """knn_plan: "auto" times both plans per scope (semcache.adapters.knn_plans); "server" leaves the choice to
        the server, "batches" forces HYBRID_POLICY BATCHES (where accepted). ef_runtime: see EF_RUNTIME.
        timeout_s: the budget of each operation (not counting the event loop's own lateness); None leaves it to
        the client's socket timeouts."""
        if not prefix or any(c in prefix for c in " {}"):
            raise ValueError(f"key prefix must be non-empty without spaces or braces, got {prefix!r}")
        if ef_runtime < 1 or knn_plan not in ("auto", "server", "batches"):
            raise ValueError(f"ef_runtime must be >= 1 and knn_plan auto, server or batches: {ef_runtime}, {knn_plan}")
        self._ef_runtime, self._knn_plan = ef_runtime, knn_plan
        self._timeout_s = timeout_s
        tag = hashlib.sha256(f"{embedder_id}|{dim}|{SCHEMA_VERSION}".encode()).hexdigest()[:10]
        self._client = client
        self._reads = AutoPipeline(client)
        self._writes = AutoPipeline(client, transaction=True)
        self._dim = dim
        self._key_prefix = f"{prefix}{tag}:e:"
        self._verdict_prefix = f"{prefix}{tag}:verdicts:"
        self._log_prefix = f"{prefix}{tag}:feedback:"
        self.index_name = f"{prefix}{tag}:idx"
        self._index_ready = False
        self._refused: str | None = None
        self._ef = ""  # " EF_RUNTIME n" once the server has accepted it
        self._plans: PlanChooser | None = None  # once the server has accepted HYBRID_POLICY (auto)
        self._force_batches = False  # once the server has accepted HYBRID_POLICY (batches)
        self._inline = False  # once the server has accepted RETURN of the entries' (unindexed) fields

    @asynccontextmanager
    async def _translated(self, what: str) -> AsyncIterator[None]:
        """Within the budget; Redis's errors (and running out of budget) raised as StoreError."""
        try:
            async with within(self._timeout_s):
                yield
        except OutOfMemoryError as exc:  # at maxmemory under noeviction: writes refused, reads still served
            raise StoreFull(f"redis {what} refused for want of memory: {exc}") from exc
        except (RedisError, OSError, TimeoutError) as exc:
            failed = f"redis {what} failed: {exc.__class__.__name__}"
            raise StoreError(f"{failed}: {exc}", public=failed) from exc

    def refuse(self, reason: str) -> None:
        """Turn the cache off for good (until restart): every operation fails with reason, so requests bypass it."""
        self._refused = reason

    def _check_refused(self) -> None:
        if self._refused is not None:
            raise StoreError(self._refused)

    @property
    def client(self) -> Redis:
        """The Redis client this store uses."""
        return self._client

    def key(self, entry_id: str) -> str:
        """The Redis key of an entry."""
        return self._key_prefix + entry_id

    async def ensure_index(self) -> bool:
        """Create the index if it does not exist, or check the one there; True if it was created.

        Call at start or deploy, not per request. An index of this name with another schema (another vector
        dimension, metric or fields) is refused with IndexMismatch: vectors it holds are never compared with ours.
        """
        created = await self._create_index()
        if not created:
            await self._check_index()
        await self._probe_query_options()
        self._index_ready = True
        return created

    async def _probe_query_options(self) -> None:
        """Which optional query features the server accepts (KNN attributes, RETURN of unindexed fields): a query
        each, on a scope nothing is stored in, all in one round trip (it is part of a Lambda's init)."""
        blob = np.eye(1, self._dim, dtype=np.float32).tobytes()
        ef = f" EF_RUNTIME {self._ef_runtime}"
        pipe = self._client.pipeline(transaction=False)
        pipe.execute_command(*_knn_command(self.index_name, "probe", 1, blob, whole=True))
        pipe.execute_command(*_knn_command(self.index_name, "probe", 1, blob, ef))
        pipe.execute_command(*_knn_command(self.index_name, "probe", 1, blob, f" HYBRID_POLICY BATCHES{ef}"))
        async with self._translated("FT.SEARCH"):
            replies = await pipe.execute(raise_on_error=False)
            for reply in replies:
                if isinstance(reply, Exception) and not isinstance(reply, ResponseError):
                    raise reply  # not a refusal: the server is not answering as it should
        inline, ef_ok, hybrid_ok = (not isinstance(reply, ResponseError) for reply in replies)
        self._inline = inline
        self._ef = ef if ef_ok else ""
        hybrid = ef_ok and hybrid_ok
        self._plans = PlanChooser() if hybrid and self._knn_plan == "auto" else None
        self._force_batches = hybrid and self._knn_plan == "batches"

    @property
    def query_options(self) -> tuple[str, ...]:
        """The optional query features in use (what the server accepted): EF_RUNTIME and HYBRID_POLICY in the KNN
        clause, RETURN of the entries' fields (the candidates then come with the KNN reply: no second read)."""
        hybrid = self._plans is not None or self._force_batches
        return (
            *(("EF_RUNTIME",) if self._ef else ()),
            *(("HYBRID_POLICY",) if hybrid else ()),
            *(("RETURN",) if self._inline else ()),
        )

    async def _check_index(self) -> None:
        async with self._translated("FT.INFO"):
            info = await self._client.execute_command("FT.INFO", self.index_name)  # type: ignore[no-untyped-call]
        fields = dict(zip(info[::2], info[1::2], strict=False)) if isinstance(info, list) else {}
        definition = _pairs(fields.get(b"index_definition"))
        found = {}
        for attribute in fields.get(b"attributes") or []:
            values = _pairs(attribute)
            identifier = values.get(b"identifier")
            if isinstance(identifier, bytes):
                found[identifier.decode()] = values
        vec, scope = found.get("vec", {}), found.get("scope", {})
        problems = []
        if definition.get(b"key_type", b"HASH") != b"HASH":
            problems.append("it is not on HASH documents")
        if scope.get(b"type") != b"TAG":
            problems.append("its scope field is not a TAG")
        if vec.get(b"type") != b"VECTOR":
            problems.append("it has no vector field vec")
        else:
            raw_dim = vec.get(b"dim")
            dim = int(raw_dim) if isinstance(raw_dim, bytes | int) else -1
            if dim != self._dim:
                problems.append(f"its vectors have dimension {dim}, ours {self._dim}")
            metric = vec.get(b"distance_metric", b"COSINE")
            if not isinstance(metric, bytes) or metric.upper() != b"COSINE":
                problems.append("its distance metric is not COSINE")
        if problems:
            raise IndexMismatch(
                f"index {self.index_name} exists with another schema ({'; '.join(problems)}): drop it "
                f"(FT.DROPINDEX {self.index_name}) or set SEMCACHE_KEY_PREFIX to start a new one"
            )

    async def _create_index(self) -> bool:
        async with self._translated("FT.CREATE"):
            try:
                await self._client.execute_command(  # type: ignore[no-untyped-call]
                    "FT.CREATE", self.index_name, "ON", "HASH", "PREFIX", "1", self._key_prefix,
                    "SCHEMA", "scope", "TAG",
                    "vec", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", str(self._dim),
                    "DISTANCE_METRIC", "COSINE",
                )  # fmt: skip
            except ResponseError as exc:
                if "already exists" in str(exc).lower():
                    return False
                raise
        return True

    async def get(self, entry_id: str) -> Entry | None:
        """The entry with this id, or None."""
        self._check_refused()
        async with self._translated("HMGET"):
            read = await self._read([self.key(entry_id)])
        return read[0][0]

    async def get_with_vector(self, entry_id: str) -> tuple[Entry, Vector | None] | None:
        """The entry with this id and its stored vector, or None; one HMGET."""
        self._check_refused()
        async with self._translated("HMGET"):
            ((entry, vector, _),) = await self._read([self.key(entry_id)], with_vector=True)
        return None if entry is None else (entry, vector)

    async def mark_mismatch(self, entry_id: str, asked: str) -> bool:
        """Mark the entry as not serving the question whose entry id is asked: a field of its hash, read back with
        the KNN reply (no extra round trip on lookups), gone with the entry. False if the entry is gone."""
        self._check_refused()
        key = self.key(entry_id)
        async with self._translated("HGET/MULTI/EXEC"):
            (expires_at,) = await self._reads.execute(("HGET", key, "expires_at"))
            if expires_at is None:
                return False
            # The entry's own deadline again, in the same transaction: if it expired meanwhile, the lone field is
            # removed at once instead of living on without one. (Were the entry replaced in between, the new one
            # would take the old deadline for its key; its stored expires_at still bounds what is served.)
            deadline_ms = int(float(expires_at) * 1000)
            await self._writes.execute(("HSET", key, _mismatch_field(asked), "1"), ("PEXPIREAT", key, deadline_ms))
        return True

    async def search(self, scope: str, vector: Vector, k: int, *, asked: str | None = None) -> list[Match]:
        """Up to k entries of this scope nearest to vector, most similar first (mismatched: see mark_mismatch)."""
        self._check_refused()
        if not self._index_ready:  # Redis was down at start: create the index as soon as it is back
            await self.ensure_index()
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        batches = self._force_batches or (self._plans is not None and self._plans.batches(scope))
        attributes = (" HYBRID_POLICY BATCHES" if batches else "") + self._ef
        mismatch = _mismatch_field(asked) if asked is not None else None
        command = _knn_command(self.index_name, scope, k, blob, attributes, whole=self._inline, extra=mismatch)
        async with self._translated("FT.SEARCH"):
            try:
                started = time.perf_counter()
                (reply,) = await self._reads.execute(command)
                if self._plans is not None:
                    # Under load the round trip may be shared with other commands: both plans are timed alike
                    # then, and the comparison holds (recording only lone searches would starve a busy scope).
                    self._plans.record(scope, batches, time.perf_counter() - started)
            except ResponseError as exc:
                if _is_missing_index(exc):
                    # The server restarted empty or the index was dropped: recreate it, then ask again.
                    await self._create_index()
                elif (attributes or self._inline) and "timeout" not in str(exc).lower():
                    # It took these options when asked at start, and now refuses them (a server swapped under us,
                    # say): go without them from now on rather than fail every lookup.
                    log.warning("FT.SEARCH refused %s (%s): searching without them", self.query_options, exc)
                    self._ef, self._plans, self._force_batches, self._inline = "", None, False, False
                    command = _knn_command(self.index_name, scope, k, blob)
                else:
                    raise
                (reply,) = await self._reads.execute(command)
            hits = _parse_knn(reply)
            now = time.time()
            rows: list[tuple[Entry | None, Vector | None, bool]] = []
            unread: list[int] = []  # no RETURN, or a server that left the unindexed fields out: read with HMGET
            for key, _, values in hits:
                if b"v" in values:
                    entry, vec = self._decode(key, [values.get(f) for f in _FIELD_KEYS], values.get(b"vec"), now)
                    rows.append((entry, vec, mismatch is not None and mismatch.encode() in values))
                else:
                    unread.append(len(rows))
                    rows.append((None, None, False))
            if unread:
                read = await self._read([hits[i][0] for i in unread], with_vector=True, mismatch=mismatch)
                for i, row in zip(unread, read, strict=True):
                    rows[i] = row
        matches = [
            Match(entry, _similarity(distance, vector, vec), vec, mismatched)
            for (entry, vec, mismatched), (_, distance, _) in zip(rows, hits, strict=True)
            if entry is not None and entry.scope == scope and (distance is not None or vec is not None)
        ]
        matches.sort(key=lambda m: m.similarity, reverse=True)
        return matches

    async def _read(
        self, keys: Sequence[str], *, with_vector: bool = False, mismatch: str | None = None
    ) -> list[tuple[Entry | None, Vector | None, bool]]:
        """Each key's entry, its vector if asked for, and whether it has the mismatch field (one HMGET per key)."""
        fields = (*_FIELDS, *(("vec",) if with_vector else ()), *((mismatch,) if mismatch else ()))
        replies = cast(list[list[bytes | None]], await self._reads.execute(*(("HMGET", key, *fields) for key in keys)))
        now = time.time()
        n = len(_FIELDS)
        return [
            (
                *self._decode(key, values[:n], values[n] if with_vector else None, now),
                mismatch is not None and values[-1] is not None,
            )
            for key, values in zip(keys, replies, strict=True)
        ]

    def _decode(
        self, key: str, fields: list[bytes | None], blob: bytes | None, now: float
    ) -> tuple[Entry | None, Vector | None]:
        """An entry from its _FIELDS' values (None unless all are there and it is live), and its vector."""
        vector = np.frombuffer(blob, dtype=np.float32) if blob and len(blob) == 4 * self._dim else None
        return _entry(key, fields, now), vector

    async def put(self, entry: Entry, vector: Vector | None, ttl_seconds: int) -> None:
        """Store entry atomically, replacing any entry with its id; it expires after ttl_seconds. Without a vector
        the hash has no vec field: the index holds no vector for it, so no KNN query returns it."""
        self._check_refused()
        if not self._index_ready:
            await self.ensure_index()
        key = self.key(entry.id)
        mapping: dict[str | bytes, str | bytes | int | float] = {
            "v": SCHEMA_VERSION,
            "scope": entry.scope,
            "query": entry.query,
            "response": entry.response,
            "model": entry.model,
            "usage": json.dumps([entry.usage.input_tokens, entry.usage.output_tokens]),
            "created_at": entry.created_at,
            "tenant": entry.tenant,
            # Redis expires the key; the deadline is also stored so a read needs no TTL command per key.
            "expires_at": round(time.time() + ttl_seconds, 3),
        }
        if vector is not None:
            mapping["vec"] = np.asarray(vector, dtype=np.float32).tobytes()
        async with self._translated("MULTI/EXEC"):
            fields = (x for pair in mapping.items() for x in pair)
            await self._writes.execute(("DEL", key), ("HSET", key, *fields), ("EXPIRE", key, ttl_seconds))

    async def delete(self, entry_id: str) -> bool:
        """Remove an entry; True if it existed."""
        self._check_refused()
        async with self._translated("DEL"):
            return bool(await self._client.delete(self.key(entry_id)))

    async def flush(self, *, tenant: str | None = None, scope: str | None = None) -> int:
        """Remove every entry of tenant and/or scope (SCAN over this store's keys; meant for rare admin use)."""
        removed = 0
        async with self._translated("SCAN/UNLINK"):
            async for batch in _batches(self._client.scan_iter(match=f"{self._key_prefix}*", count=500), 500):
                if tenant is None and scope is None:
                    doomed = batch
                else:
                    pipe = self._client.pipeline(transaction=False)
                    for key in batch:
                        pipe.hmget(key, ("tenant", "scope"))
                    owners = await pipe.execute()
                    doomed = [
                        key
                        for key, (t, s) in zip(batch, owners, strict=True)
                        if (tenant is None or t == tenant.encode()) and (scope is None or s == scope.encode())
                    ]
                if doomed:  # one key a command: a cluster-mode server refuses one naming keys of several slots
                    pipe = self._client.pipeline(transaction=False)
                    for key in doomed:
                        pipe.unlink(key)
                    removed += sum(int(n) for n in await pipe.execute())
        return removed

    async def ping(self) -> dict[str, object]:
        """Reachability, entry count and the optional query features in use, for the health check."""
        self._check_refused()
        async with self._translated("PING"):
            await self._client.ping()
            info = await self._client.execute_command("FT.INFO", self.index_name)  # type: ignore[no-untyped-call]
        fields = dict(zip(info[::2], info[1::2], strict=False)) if isinstance(info, list) else {}
        docs = fields.get(b"num_docs", fields.get("num_docs"))
        return {
            "backend": "redis",
            "index": self.index_name,
            "entries": int(docs) if docs is not None else None,
            "query_options": list(self.query_options),
        }

    async def record_verdict(
        self, calibration: str, bucket: int, *, wrong: bool, example: Mapping[str, JSON], tenant: str
    ) -> None:
        """HINCRBY the bucket's count (the hash expires VERDICTS_TTL_S after the last verdict) and LPUSH the example
        (capped by LTRIM): a MULTI/EXEC for each key (one naming both would be refused by a cluster-mode server),
        sent together."""
        self._check_refused()
        counts_key, log_key = self._verdict_prefix + calibration, self._log_prefix + tenant
        async with self._translated("MULTI/EXEC"):
            await asyncio.gather(
                self._writes.execute(
                    ("HINCRBY", counts_key, f"{bucket}:{'w' if wrong else 'r'}", 1),
                    ("EXPIRE", counts_key, VERDICTS_TTL_S),
                ),
                self._writes.execute(
                    ("LPUSH", log_key, json.dumps(example)), ("LTRIM", log_key, 0, FEEDBACK_LOG_LIMIT - 1)
                ),
            )

    async def verdicts(self, calibration: str) -> dict[int, tuple[int, int]]:
        """Bucket -> (right, wrong) from the calibration's hash."""
        self._check_refused()
        async with self._translated("HGETALL"):
            raw = await self._client.hgetall(self._verdict_prefix + calibration)
        counts: dict[int, tuple[int, int]] = {}
        for field, value in raw.items():
            bucket, kind = (field.decode() if isinstance(field, bytes) else field).split(":")
            right, wrong = counts.get(int(bucket), (0, 0))
            counts[int(bucket)] = (right + int(value), wrong) if kind == "r" else (right, wrong + int(value))
        return counts

    async def feedback_log(self, tenant: str, limit: int) -> list[dict[str, JSON]]:
        """The newest examples first (LRANGE)."""
        self._check_refused()
        async with self._translated("LRANGE"):
            raw = await self._client.lrange(self._log_prefix + tenant, 0, limit - 1)
        return [json.loads(item) for item in raw]

    async def close(self) -> None:
        """Close the client and its connection pool (after the pipelines being sent)."""
        await self._reads.aclose()
        await self._writes.aclose()
        await self._client.aclose()
        await self._client.connection_pool.disconnect()


async def _batches(keys: AsyncIterator[bytes], size: int) -> AsyncIterator[list[bytes]]:
    batch: list[bytes] = []
    async for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _pairs(value: object) -> dict[bytes, object]:
    """A flat RESP2 [key, value, key, value, ...] reply as a dict (bytes keys)."""
    if not isinstance(value, list):
        return {}
    return {k: v for k, v in zip(value[::2], value[1::2], strict=False) if isinstance(k, bytes)}


def _is_missing_index(exc: ResponseError) -> bool:
    message = str(exc).lower()
    return "index" in message and ("no such" in message or "unknown" in message or "not found" in message)


def _knn_command(
    index: str, scope: str, k: int, blob: bytes, attributes: str = "", *, whole: bool = False, extra: str | None = None
) -> tuple[str | bytes, ...]:
    """FT.SEARCH for the k entries of scope nearest to the vector blob, with optional KNN attributes; returning the
    candidates whole (their fields and vector, and the extra field if they have it: RETURN of unindexed fields) or
    only their distance."""
    returned = (*_RETURNED, *((extra,) if extra else ())) if whole else ("dist",)
    return (
        "FT.SEARCH", index, f"(@scope:{{{scope}}})=>[KNN {k} @vec $v{attributes} AS dist]", "PARAMS", "2", "v", blob,
        "RETURN", str(len(returned)), *returned, "LIMIT", "0", str(k), "DIALECT", "2",
    )  # fmt: skip


def _parse_knn(reply: list[object]) -> list[tuple[str, float | None, dict[bytes, bytes]]]:
    """(key, distance, the other returned fields) per hit of a KNN reply. A hit may come without any field (Redis
    Stack in cluster mode returns the keys alone): its distance is then None, to be worked out from its vector."""
    hits: list[tuple[str, float | None, dict[bytes, bytes]]] = []
    for i in range(1, len(reply) - 1, 2):
        key, fields = reply[i], reply[i + 1]
        if not isinstance(key, bytes) or not isinstance(fields, list | None):
            raise StoreError(f"unexpected FT.SEARCH reply: {reply!r:.200}")
        values = dict(zip(fields[::2], fields[1::2], strict=True)) if fields else {}
        distance = values.get(b"dist")
        hits.append((key.decode(), None if distance is None else float(distance), values))
    return hits


def _similarity(distance: float | None, query: Vector, stored: Vector | None) -> float:
    """The cosine similarity: from the server's cosine distance, or from the two vectors where the reply gave none."""
    if distance is not None:
        return 1.0 - distance
    assert stored is not None
    q = np.asarray(query, dtype=np.float32)
    return float(np.dot(q, stored) / (np.linalg.norm(q) * np.linalg.norm(stored) or 1.0))


def _entry(key: str, fields: list[bytes | None], now: float) -> Entry | None:
    values = [f for f in fields if f is not None]
    if len(values) != len(fields) or values[0] != SCHEMA_VERSION.encode():
        return None  # absent, expired, or written by another schema: never served
    _, scope, query, response, model, usage, created_at, tenant, expires_at = values
    left = float(expires_at) - now
    if left <= 0:
        return None  # Redis has not reaped it yet: expired all the same
    tokens_in, tokens_out = json.loads(usage)
    return Entry(
        id=key.rsplit(":", 1)[1],
        scope=scope.decode(),
        query=query.decode(),
        response=response.decode(),
        model=model.decode(),
        usage=Usage(int(tokens_in), int(tokens_out)),
        created_at=float(created_at),
        ttl_seconds=math.ceil(left),
        tenant=tenant.decode(),
    )
