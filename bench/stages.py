"""Where a semantic hit on the Lambda path spends its time, stage by stage, right after a model run (which leaves
the CPU's caches cold, as the previous request's embedding does), beside RedisVL's `check` and the bare embedding.

    python bench/stages.py [--iterations 300]                              (the `bench` dependency group)

GPTCache's 999 statements are stored in semcache (one scope) and in RedisVL's cache; the paraphrases semcache serves
are asked in turn of semcache's Lambda path (the embedding on the event loop's thread), of RedisVL's `check` and of
the bare embedding, each after a model run on another text. Reported, as medians in ms:
  - semcache's stages: the exact probe, tokenising (and the verifier's profile of the text), the model run with its
    pooling, the KNN search (sending, Redis, reading and decoding the candidate), the judging step (rules and
    networks), and the rest of the lookup and of the request;
  - Redis's own time per FT.SEARCH (its SLOWLOG, in us) for semcache's scope-filtered KNN and RedisVL's range query;
  - the raw round trip of a one-key command on a plain socket, back to back and right after a model run (what the
    VM's idle core costs to wake), against the same command on the store's connection and through its get.
Stage timers wrap the service's and the store's own methods on these instances only (a measurement; nothing of
semcache is changed). Results on stdout and under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import select
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis
from _common import (
    InstantLLM,
    ask,
    bench_store,
    bundled_redis,
    drop_store,
    fill,
    save_result,
    shipped_embedder,
    shipped_policy,
    statements,
    time_calls,
)
from peers import peer_arguments, redisvl_cache

from semcache.adapters.redis_pipelining import packed
from semcache.core.fingerprint import scope_fingerprint
from semcache.core.service import CacheService

STAGES = {  # (object attribute, method): stage
    ("store", "get"): "exact_probe",
    ("service", "_prepare"): "tokenise",
    ("service", "_embed_prepared"): "model_run",
    ("store", "search"): "knn_search",
    ("service", "_judge"): "judge",
    ("service", "_lookup"): "lookup",
}


def _slowlog_us(client: redis.Redis, index: str) -> list[float]:
    """Redis's own time (us) of each FT.SEARCH on index since the log was reset."""
    return [
        float(e["duration"])
        for e in client.slowlog_get(100_000)
        if e["command"].startswith(b"FT.SEARCH " + index.encode() + b" ")
    ]


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    embedder, policy = shipped_embedder(), shipped_policy()
    pairs, origins, vectors = statements(embedder)
    store = await bench_store(url, embedder, "stages")
    await fill(store, scope_fingerprint(ask("x"), tenant="bench", embedder_id=embedder.id), len(origins), origins,
               vectors)  # fmt: skip
    service = CacheService(embedder=embedder, store=store, llm=InstantLLM(kept=False), policy=policy,
                           embed_inline=True)  # fmt: skip
    rvl = redisvl_cache(url, embedder, args.cosine, origins, vectors)
    await asyncio.sleep(0.5)
    served = [p for p in pairs[: args.questions]
              if (await service.answer(ask(p["similar"]), tenant="bench")).cache.tier == "semantic"
              and rvl.check(prompt=p["similar"], num_results=1)]  # fmt: skip

    timings: dict[str, list[float]] = {s: [] for s in (*STAGES.values(), "answer", "rvl_check", "embed")}
    owners = {"store": store, "service": service}
    for (owner, name), stage in STAGES.items():
        time_calls(timings[stage], owners[owner], name)
    client = redis.Redis.from_url(url)
    client.config_set("slowlog-max-len", 100_000)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    contestants: list[tuple[str, Callable[[str], Any]]] = [
        ("answer", lambda text: service.answer(ask(text), tenant="bench")),
        ("rvl_check", lambda text: rvl.check(prompt=text, num_results=1)),
        ("embed", lambda text: embedder.embed([text])),
    ]
    rest: dict[str, list[float]] = {"rest_of_lookup": [], "rest_of_request": []}  # per request
    for i in range(args.iterations):
        p = served[i % len(served)]
        for label, call in contestants[i % 3 :] + contestants[: i % 3]:
            embedder.embed([f"another request's text: {p['origin']}"])  # cold caches, as after another request
            started = time.perf_counter()
            result = call(p["similar"])
            if asyncio.iscoroutine(result):
                result = await result
            timings[label].append((time.perf_counter() - started) * 1e3)
            if label == "answer":
                assert result.cache.tier == "semantic", result.cache  # every timed lookup is a hit
                last = {stage: timings[stage][-1] for stage in (*STAGES.values(), "answer")}
                rest["rest_of_lookup"].append(last["lookup"] - sum(last[s] for s in STAGES.values() if s != "lookup"))
                rest["rest_of_request"].append(last["answer"] - last["lookup"])
            elif label == "rvl_check":
                assert result, "RedisVL missed"
    server_us = {
        "semcache_knn": _slowlog_us(client, store.index_name),
        "redisvl_range": _slowlog_us(client, rvl.index.name),
    }
    client.config_set("slowlog-log-slower-than", 10_000)
    p50 = {k: round(statistics.median(v), 3) for k, v in (*timings.items(), *rest.items())}
    rtt = await _round_trips(url, store, embedder, args.iterations)
    rvl.delete()
    await drop_store(store)

    return {
        "benchmark": "stages",
        "timed_paraphrases": len(served),
        "iterations": args.iterations,
        "p50_ms": p50,
        "answer_over_rvl_check": round(p50["answer"] / p50["rvl_check"], 3),
        "redis_us_per_ft_search_p50": {k: round(statistics.median(v), 1) for k, v in server_us.items() if v},
        "round_trip_p50_ms": rtt,
    }


async def _round_trips(url: str, store: Any, embedder: Any, n: int) -> dict[str, float]:
    """A one-key command's round trip (HMGET of an absent key): on a plain socket back to back, and right after a
    model run; right after a model run through the store's connection for lone commands (redis-py's asyncio
    connection, our packing), and through the store's get (its time budget, error translation and decoding too)."""
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    command = packed(("HMGET", "semcache:no-such-1", "v"))

    def raw() -> None:
        sock.sendall(command)
        select.select([sock], [], [])
        sock.recv(4096)

    out: dict[str, list[float]] = {
        "socket_back_to_back": [],
        "socket_after_model_run": [],
        "lone_connection_after_model_run": [],
        "store_after_model_run": [],
    }
    for _ in range(n):
        started = time.perf_counter()
        raw()
        out["socket_back_to_back"].append((time.perf_counter() - started) * 1e3)
    for i in range(n):
        for label in ("socket_after_model_run", "lone_connection_after_model_run", "store_after_model_run"):
            embedder.embed([f"a statement of some typical length, embedded before the command ({i})"])
            started = time.perf_counter()
            if label == "store_after_model_run":
                await store.get("0" * 32)
            elif label == "lone_connection_after_model_run":  # the store's command, without its budget and decoding
                await store._reads.execute(("HMGET", store.key("0" * 32), "v"))
            else:
                raw()
            out[label].append((time.perf_counter() - started) * 1e3)
    sock.close()
    return {k: round(statistics.median(v), 3) for k, v in out.items()}


def main() -> None:
    args = peer_arguments(__doc__.splitlines()[0], iterations=300)
    with bundled_redis() as url:
        result = asyncio.run(run(args, url))
    p50 = result["p50_ms"]
    print(f"semantic hit on the Lambda path, {result['timed_paraphrases']} paraphrases, medians after a model run:")
    for k, v in p50.items():
        print(f"  {k:18s} {v:8.3f} ms")
    print(f"  over RedisVL's check: {result['answer_over_rvl_check']}")
    print(f"Redis's own time per FT.SEARCH (us): {result['redis_us_per_ft_search_p50']}")
    print(f"one-key round trip (ms): {result['round_trip_p50_ms']}")
    save_result("stages", result)


if __name__ == "__main__":
    main()
