"""The scope-filtered KNN query: which plan, how wide a search, at what cost and with what recall, side by side.

    python bench/knn.py [--iterations 100]          (make bench-full; make bench runs it with --quick, a tenth of the
                                                    sizes below)

The real RedisStore.search (the KNN query, with the candidates' fields where the server returns them) on the
bundled Redis Stack, in three ways that take turns on every query, in every order in turn: the server's own plan
("server", what semcache did before), forced HYBRID_POLICY BATCHES ("batches"), and the per-scope choice by
measured time that semcache ships ("auto"; see semcache.adapters.knn_plans). Layouts:

- recall: 30,000 qqp/train questions (embedded by the shipped model, cached under .local/eval) in one scope;
  queries are the questions Quora paired with some of them. Also reports how often the true nearest entry
  (exact, numpy) comes first, with RediSearch's default EF_RUNTIME (10) and semcache's (EF_RUNTIME in
  redis_store).
- one scope of 1,000 / 10,000 / 30,000 random unit vectors (a single application's cache);
- 100,000 vectors in scopes of 100 / 1,000 / 10,000 / 88,900 (a shared index of many tenants).
Figures are p50 milliseconds per search. Results: a table on stdout and JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
import uuid
from typing import Literal

import numpy as np
from _common import ROOT, bundled_redis, drop_store, log, save_result, shipped_embedder

from semcache.adapters import redis_store
from semcache.adapters.redis_store import EF_RUNTIME, RedisStore
from semcache.core.models import Entry, Usage

sys.path.insert(0, str(ROOT / "eval"))
from data import embed_cached, qqp

Plan = Literal["auto", "server", "batches"]
DIM = 384


async def stores(url: str, prefix: str, variants: list[tuple[Plan, int]]) -> list[RedisStore]:
    """One store per (plan, ef_runtime), all on the same index (same key prefix)."""
    out = []
    for plan, ef in variants:
        client = redis_store.connect(url, timeout_s=5, connect_timeout_s=2)
        store = RedisStore(client, prefix=prefix, embedder_id="knn-bench", dim=DIM, ef_runtime=ef, knn_plan=plan)
        await store.ensure_index()
        out.append(store)
    return out


async def put_many(store: RedisStore, start: int, vectors: np.ndarray, scope: str) -> None:
    """Entries start.. for vectors, written 500 at a time."""
    for offset in range(0, len(vectors), 500):
        chunk = vectors[offset : offset + 500]
        ids = [f"e{start + offset + i}" for i in range(len(chunk))]
        entries = [Entry(eid, scope, f"question {eid}", "answer", "m", Usage(1, 1), time.time()) for eid in ids]
        await asyncio.gather(*(store.put(e, v, 3600) for e, v in zip(entries, chunk, strict=True)))


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def time_scope(
    contestants: list[RedisStore], labels: list[str], scope: str, queries: np.ndarray, iterations: int
) -> tuple[dict[str, float], dict[str, list[list[str]]]]:
    """p50 ms per contestant (taking turns on each query) and the ids each found."""
    orders = list(itertools.permutations(range(len(contestants))))
    times: dict[str, list[float]] = {label: [] for label in labels}
    found: dict[str, list[list[str]]] = {label: [] for label in labels}
    for i in range(iterations):
        q = queries[i % len(queries)]
        # Every order in turn: each follows each other equally often (a slow plan's query slows the next one).
        pairs = list(zip(contestants, labels, strict=True))
        for store, label in (pairs[j] for j in orders[i % len(orders)]):
            started = time.perf_counter()
            matches = await store.search(scope, q, 3)
            times[label].append((time.perf_counter() - started) * 1e3)
            found[label].append([m.entry.id for m in matches])
    return {label: round(statistics.median(v), 3) for label, v in times.items()}, found


async def recall_layout(url: str, n: int, iterations: int) -> dict[str, object]:
    embedder = shipped_embedder()
    pairs = qqp("train")
    vectors = embed_cached(pairs.a[:n] + pairs.b[:iterations], embedder.embed, embedder.id, batch=8)
    stored, queries = vectors[:n], vectors[n:]  # queries: the questions paired with the first stored ones
    exact = [f"e{int(np.argmax(stored @ q))}" for q in queries]
    variants: list[tuple[Plan, int]] = [("server", 10), ("batches", 10), ("batches", EF_RUNTIME), ("auto", EF_RUNTIME)]
    labels = [f"{plan} ef{ef}" for plan, ef in variants]
    contestants = await stores(url, f"knnr{uuid.uuid4().hex[:6]}:", variants)
    await put_many(contestants[0], 0, stored, "s")
    await asyncio.sleep(1)
    log(f"recall: {n} qqp/train questions stored")
    p50, found = await time_scope(contestants, labels, "s", queries, iterations)
    top1 = {label: round(float(np.mean([f[:1] == [e] for f, e in zip(found[label], exact, strict=True)])), 3)
            for label in labels}  # fmt: skip
    await drop(contestants)
    return {"layout": f"{n} qqp/train questions, one scope", "p50_ms": p50, "nearest_found_first": top1}


async def synthetic_layouts(url: str, iterations: int, scale: float) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    queries = unit_vectors(rng, 50)
    variants: list[tuple[Plan, int]] = [("server", EF_RUNTIME), ("batches", EF_RUNTIME), ("auto", EF_RUNTIME)]
    labels = [plan for plan, _ in variants]
    out: list[dict[str, object]] = []
    contestants = await stores(url, f"knn1{uuid.uuid4().hex[:6]}:", variants)
    have = 0
    for size in (int(1_000 * scale), int(10_000 * scale), int(30_000 * scale)):  # one scope, growing
        await put_many(contestants[0], have, unit_vectors(rng, size - have), "s")
        have = size
        await asyncio.sleep(1)
        p50, _ = await time_scope(contestants, labels, "s", queries, iterations)
        out.append({"layout": f"one scope of {size}", "index": size, "scope": size, "p50_ms": p50})
        log(out[-1])
    await drop(contestants)
    contestants = await stores(url, f"knn2{uuid.uuid4().hex[:6]}:", variants)
    scopes = {f"t{size}": int(size * scale) for size in (100, 1_000, 10_000, 88_900)}
    have = 0
    for scope, size in scopes.items():
        await put_many(contestants[0], have, unit_vectors(rng, size), scope)
        have += size
    await asyncio.sleep(2)
    for scope, size in scopes.items():
        p50, _ = await time_scope(contestants, labels, scope, queries, iterations)
        out.append({"layout": f"scope of {size} in an index of {have}", "index": have, "scope": size, "p50_ms": p50})
        log(out[-1])
    await drop(contestants)
    return out


async def drop(contestants: list[RedisStore]) -> None:
    """Drop the index they share and close them all."""
    await drop_store(contestants[0])
    for store in contestants[1:]:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100, help="queries per layout (each run by every way)")
    parser.add_argument("--quick", action="store_true", help="every layout a tenth of its size (about 2 minutes)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    with bundled_redis() as url:
        recall = asyncio.run(recall_layout(url, int(30_000 * scale), max(args.iterations, 200)))
        layouts = asyncio.run(synthetic_layouts(url, args.iterations, scale))
    print(f"{recall['layout']}: p50 ms {recall['p50_ms']}; nearest entry found first {recall['nearest_found_first']}")
    print(f"{'layout':<40} {'server':>8} {'batches':>8} {'auto':>8}  (p50 ms per search, EF_RUNTIME {EF_RUNTIME})")
    for row in layouts:
        p = row["p50_ms"]
        assert isinstance(p, dict)
        print(f"{row['layout']:<40} {p['server']:>8} {p['batches']:>8} {p['auto']:>8}")
    save_result("knn", {"ef_runtime": EF_RUNTIME, "recall": recall, "layouts": layouts})


if __name__ == "__main__":
    main()
