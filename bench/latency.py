"""Latency, throughput and coalescing of semcache's own request path, in one run, side by side.

    python bench/latency.py [--sizes 1000,10000] [--iterations 200]      (make bench; --sizes 1000,10000,100000
                                                                          for the full profile)

In-process: the real CacheService, the real ONNX embedder and verifier, the real Redis Stack (bundled, started
here on a free port), and an LLM stand-in that answers at once (or after --llm-delay-s for the storm), so what is
measured is semcache, not the network or a model. Figures are p50/p99 in milliseconds over interleaved
iterations (exact hit, semantic hit, the same semantic hit as the Lambda handler serves it with the embedding on
the event loop's thread, the same words asked again of a service that keeps recent vectors, miss overhead and a
bare embedding of the same text take turns), so machine noise hits all of them alike; ratios are against the bare
embedding, the floor of any semantic lookup (the words asked again: against a first semantic hit).
Index fill: real embeddings of GPTCache's 999 source statements plus synthetic unit vectors up to the size.
Throughput (semantic hits/s with concurrent callers: micro-batched, unbatched, one model run at a time) is measured
on GPTCache's paraphrases and on Quora duplicates (qqp/dev, stored in a scope of their own), with the CPU time per
hit of the model runs, the rest of the process and the Redis server.
Results: a table on stdout and JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gzip
import itertools
import json
import math
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence, Sized
from dataclasses import replace
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from _common import (
    DATA,
    InstantLLM,
    ask,
    bench_store,
    bundled_redis,
    drop_store,
    fill,
    log,
    pct,
    save_result,
    shipped_embedder,
    shipped_policy,
    statements,
)

from semcache.adapters.onnx_embedder import OnnxEmbedder
from semcache.adapters.redis_store import RedisStore, _knn_command, _parse_knn
from semcache.core.fingerprint import entry_id, normalize_text, scope_fingerprint
from semcache.core.models import Answer
from semcache.core.service import BUSY_REASONS, STORED_LATER, CacheService, Policy

_counter = itertools.count()


class _Metered:
    """The embedder, counting its model runs, the texts and the CPU time they take (on the calling thread)."""

    def __init__(self, embedder: OnnxEmbedder) -> None:
        self._embedder = embedder
        self.id, self.dim = embedder.id, embedder.dim
        self.runs = self.texts = 0
        self.cpu_s = 0.0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self._timed(self._embedder.embed, texts)

    def prepare(self, text: str) -> Sized | None:
        return self._embedder.prepare(text)

    def unread(self, text: str) -> tuple[str, ...]:
        return self._embedder.unread(text)

    def embed_prepared(self, prepared: Sequence[Sized]) -> npt.NDArray[np.float32]:
        return self._timed(self._embedder.embed_prepared, prepared)

    def _timed(self, run: Callable[[Any], npt.NDArray[np.float32]], inputs: Sequence[Any]) -> npt.NDArray[np.float32]:
        started = time.thread_time()
        try:
            return run(inputs)
        finally:
            self.cpu_s += time.thread_time() - started
            self.runs += 1
            self.texts += len(inputs)


async def _redis_cpu_s(store: RedisStore) -> float:
    info = await store.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _unique(text: str) -> str:
    """text made unique by a binary counter in zero-width characters (at most 16 of them): the tokenizer drops them
    and the exact tier does not, so the same paraphrase is neither an exact hit nor coalesced: every one is
    embedded and searched, as a new paraphrase would be."""
    return text + format(next(_counter) % 65536, "b").replace("0", "\u200b").replace("1", "\u200c")


async def _throughput(
    svc: CacheService, hits: list[dict[str, str]], tenant: str, clients: int, seconds: float
) -> float:
    """Semantic hits per second (asserted: a request served otherwise fails the run, after the round, with what
    is known about it)."""
    done = 0
    deadline = time.perf_counter() + seconds
    missed: list[tuple[dict[str, str], str, Answer, str]] = []

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            p = hits[i % len(hits)]
            text = _unique(p["similar"])
            a = await svc.answer(ask(text), tenant=tenant)
            if a.cache.tier != "semantic":
                missed.append((p, text, a, await _at_miss(svc, tenant, text)))
            done += 1
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    rate = done / (time.perf_counter() - started)
    if missed:
        raise AssertionError(await _diagnosis(svc, tenant, missed, done))
    return rate


async def _at_miss(svc: CacheService, tenant: str, text: str) -> str:
    """Right after a lookup that should have hit and did not, with the load still running: the KNN plan state of its
    scope (the store's PlanChooser, read from outside: a measurement) and what the scope's 3 nearest are by each
    plan, searched again at once. Session 19 saw the session 14 miss (its nearest at cosine 0.283) once more."""
    store = cast(RedisStore, svc.store)
    scope = scope_fingerprint(ask(text), tenant=tenant, embedder_id=svc.embedder.id)
    plans = store._plans
    timings = plans._scopes.get(scope) if plans is not None else None
    state = dataclasses.asdict(timings) if timings is not None else None
    blob = np.asarray(svc.embedder.embed([normalize_text(text)])[0], dtype=np.float32).tobytes()
    found = {}
    for label, attributes in (("server", store._ef), ("batches", " HYBRID_POLICY BATCHES" + store._ef)):
        reply = await store.client.execute_command(*_knn_command(store.index_name, scope, 3, blob, attributes))
        found[label] = sorted(
            ((round(1 - (dist or 0.0), 3), key[-8:]) for key, dist, _ in _parse_knn(reply)), reverse=True
        )
    return f"plan state then {state}; searched again: {found}"


async def _diagnosis(
    svc: CacheService, tenant: str, missed: list[tuple[dict[str, str], str, Answer, str]], done: int
) -> str:
    """What is known of lookups that should have hit and did not (session 14 saw one, twice, and could not make it
    happen again): each one's cache info, its text's cosine with its stored question's now, whether that entry
    is still there, and what a search for it finds now, with no other request under way."""
    embedder, store = svc.embedder, cast(RedisStore, svc.store)
    lines = [f"{len(missed)} of {done} lookups were not semantic hits:"]
    for p, text, a, then in missed[:5]:
        asked, stored = embedder.embed([normalize_text(text), normalize_text(p["origin"])])
        scope = scope_fingerprint(ask(p["origin"]), tenant=tenant, embedder_id=embedder.id)
        entry = await store.get(entry_id(scope, normalize_text(p["origin"])))
        found = await store.search(scope, asked, 3)  # its own miss may be stored: the throughput's LLM keeps answers
        nearest = "; ".join(f"{m.similarity:.3f} {m.entry.query!r}" for m in found)
        lines.append(
            f"  {text!r}: {a.cache}; cosine with its stored question now {float(asked @ stored):.3f}; stored entry"
            f" {'present' if entry is not None else 'GONE'}; nearest now: {nearest}; at the miss: {then}"
        )
    return "\n".join(lines)


async def _served_questions(
    service: CacheService, probe: CacheService, tenant: str, wanted: int = 40
) -> list[dict[str, str]]:
    """Duplicate pairs of qqp/dev whose first question is stored (tenant's own scope) and whose second the shipped
    matcher serves from it (asked of probe, which stores nothing): the question workload."""
    with gzip.open(DATA / "qqp" / "dev.jsonl.gz", "rt") as lines:
        rows = [json.loads(line) for line in lines]
    pairs = [{"origin": r["a"], "similar": r["b"]} for r in rows if r["duplicate"]][:400]
    for p in pairs:
        await service.answer(ask(p["origin"]), tenant=tenant)
    served = []
    for p in pairs:
        if (await probe.answer(ask(_unique(p["similar"])), tenant=tenant)).cache.tier == "semantic":
            served.append(p)
            if len(served) >= wanted:
                break
    return served


async def _rates(
    service: CacheService, policy: Policy, hits: list[dict[str, str]], tenant: str, args: argparse.Namespace
) -> dict:
    """Semantic hits/s micro-batched, unbatched (2 runners) and one at a time, in alternating rounds (the machine is
    shared: interleaving spreads its noise over all three), with where the CPU went per hit (core-milliseconds, so
    2 cores give 2,000 a second): the model runs (tokenizer, ONNX, pooling, on the runner threads), the rest of this
    process (event loop, redis-py, verifier, the load itself) and the Redis server. 2 cores over their sum caps the
    batched rate."""
    store = cast(RedisStore, service.store)
    policy = replace(policy, embed_wait_budget_s=math.inf)  # capacity is measured: no request may skip its lookup
    rates: dict[str, list[float]] = {"batched": [], "unbatched": [], "one_at_a_time": []}
    cpu: dict[str, list[dict[str, float]]] = {label: [] for label in rates}
    variants = (("batched", args.embed_batch, args.concurrency), ("unbatched", 1, args.concurrency),
                ("one_at_a_time", 1, 1))  # fmt: skip
    for _ in range(args.rounds):
        for label, batch, runs in variants:
            metered = _Metered(cast(OnnxEmbedder, service.embedder))
            svc = CacheService(embedder=metered, store=store, llm=InstantLLM(), policy=policy, embed_batch=batch,
                               embed_concurrency=runs)  # fmt: skip
            process, server, started = time.process_time(), await _redis_cpu_s(store), time.perf_counter()
            rate = await _throughput(svc, hits, tenant, args.clients, args.seconds)
            n = rate * (time.perf_counter() - started)
            process, server = time.process_time() - process, await _redis_cpu_s(store) - server
            rates[label].append(rate)
            cpu[label].append({
                "embedding": metered.cpu_s / n * 1e3,
                "rest_of_process": (process - metered.cpu_s) / n * 1e3,
                "redis": server / n * 1e3,
                "texts_per_run": metered.texts / max(metered.runs, 1),
            })  # fmt: skip
    result: dict[str, object] = {}
    for label, values in rates.items():
        result[f"semantic_hits_per_s_{label}"] = round(statistics.median(values), 1)
        result[f"cpu_ms_per_hit_{label}"] = {
            k: round(statistics.median(c[k] for c in cpu[label]), 2) for k in cpu[label][0]
        }
    batched = statistics.median(rates["batched"])
    result["batched_over_unbatched"] = round(batched / statistics.median(rates["unbatched"]), 2)
    result["batched_over_one_at_a_time"] = round(batched / statistics.median(rates["one_at_a_time"]), 2)
    return result


async def run_size(size: int, args: argparse.Namespace, url: str, embedder: OnnxEmbedder, policy: Policy) -> dict:
    pairs, origins, vectors = statements(embedder)
    log(f"{size}: embedded {len(origins)} source statements")
    store = await bench_store(url, embedder, "bench")
    client = store.client
    llm = InstantLLM()
    service = CacheService(embedder=embedder, store=store, llm=llm, policy=policy, embed_concurrency=args.concurrency)
    # As the Lambda handler builds it: one request at a time, the embedding on the event loop's thread.
    lone = CacheService(embedder=embedder, store=store, llm=llm, policy=policy, embed_inline=True)
    # As the server builds it by default: a paraphrase asked again in the same words reuses its recent vector. The
    # two above keep none, so that each of their semantic hits costs a model run, as a new paraphrase's does.
    remembering = CacheService(embedder=embedder, store=store, llm=llm, policy=policy, recent_embeddings=4096)
    scope = scope_fingerprint(ask("x"), tenant="bench", embedder_id=embedder.id)
    before = int((await client.info("memory"))["used_memory"])
    await fill(store, scope, size, origins, vectors)
    await asyncio.sleep(0.5)  # let the index catch up
    log(f"{size}: index filled")
    after = int((await client.info("memory"))["used_memory"])

    # Paraphrases the shipped matcher serves (found once, then timed): the semantic-hit workload. Found by a probe
    # that stores nothing: a missed paraphrase stored could become the nearest entry of one found before it.
    probe = CacheService(embedder=embedder, store=store, llm=InstantLLM(kept=False), policy=policy)
    hits = []
    for p in pairs[:300]:
        a = await probe.answer(ask(p["similar"]), tenant="bench")
        if a.cache.tier == "semantic":
            hits.append(p)
        if len(hits) >= 40:
            break
    log(f"{size}: {len(hits)} served paraphrases found")
    for p in hits:  # each asked once before: what is timed below is the same words asked again
        assert (await remembering.answer(ask(p["similar"]), tenant="bench")).cache.tier == "semantic"
    timings: dict[str, list[float]] = {
        "embed": [], "exact": [], "semantic": [], "semantic_inline": [], "semantic_again": [], "miss": []
    }  # fmt: skip
    turns = ((service, "semantic"), (lone, "semantic_inline"), (remembering, "semantic_again"))
    for i in range(args.iterations):
        p = hits[i % len(hits)]
        started = time.perf_counter()
        embedder.embed([normalize_text(p["similar"])])
        timings["embed"].append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        a = await service.answer(ask(p["origin"]), tenant="bench")
        timings["exact"].append((time.perf_counter() - started) * 1e3)
        assert a.cache.tier == "exact"
        for svc, label in turns[i % 3 :] + turns[: i % 3]:  # each first in turn
            started = time.perf_counter()
            a = await svc.answer(ask(p["similar"]), tenant="bench")
            timings[label].append((time.perf_counter() - started) * 1e3)
            assert a.cache.tier == "semantic", a.cache
        started = time.perf_counter()
        # another tenant: the misses stored here must not crowd the measured scope's nearest neighbours
        a = await service.answer(ask(f"{p['similar']} ({uuid.uuid4().hex[:8]} variant)"), tenant="bench-miss")
        timings["miss"].append((time.perf_counter() - started) * 1e3)
    result = {
        "entries": size,
        "memory_per_entry_bytes": round((after - before) / size),
        **{f"{k}_ms": {"p50": pct(v, 0.5), "p99": pct(v, 0.99)} for k, v in timings.items()},
    }
    result["semantic_over_embed_p50"] = round(result["semantic_ms"]["p50"] / result["embed_ms"]["p50"], 3)
    result["exact_over_embed_p50"] = round(result["exact_ms"]["p50"] / result["embed_ms"]["p50"], 3)
    result["semantic_inline_over_embed_p50"] = round(result["semantic_inline_ms"]["p50"] / result["embed_ms"]["p50"], 3)
    again = result["semantic_again_ms"]["p50"] / result["semantic_ms"]["p50"]
    result["semantic_again_over_semantic_p50"] = round(again, 3)

    # Throughput of semantic hits with `clients` concurrent callers, on two kinds of text: these statements (about
    # 30 word pieces, where the model is compute-bound) and Quora questions (about 15, where reading the weights
    # dominates a lone run and batching pays most).
    result.update(await _rates(service, policy, hits, "bench", args))
    questions = await _served_questions(service, probe, "bench-questions")
    log(f"{size}: {len(questions)} served Quora paraphrases found")
    result["questions"] = await _rates(service, policy, questions, "bench-questions", args)
    await drop_store(store)
    return result


async def _storm(service: CacheService, llm: InstantLLM, texts: list[str], tenant: str) -> dict[str, object]:
    """Every text asked at once: wall time, latency percentiles, LLM calls, errors, skipped lookups, answers stored
    with the response or later (when the model was free), and when the last of those was stored."""
    calls, took = llm.calls, []
    started = time.perf_counter()

    async def timed(text: str) -> Answer:
        try:
            return await service.answer(ask(text), tenant=tenant)
        finally:
            took.append(time.perf_counter() - started)

    results = await asyncio.gather(*(timed(t) for t in texts), return_exceptions=True)
    wall = time.perf_counter() - started
    answers = [r for r in results if isinstance(r, Answer)]
    await service.stored()  # the answers kept for a free model
    return {
        "wall_s": round(wall, 2),
        "all_stored_s": round(time.perf_counter() - started, 2),
        "p50_s": round(pct(took, 0.5), 2),
        "p99_s": round(pct(took, 0.99), 2),
        "llm_calls": llm.calls - calls,
        "errors": len(results) - len(answers),
        "lookup_skipped": sum(a.cache.reason in BUSY_REASONS for a in answers),
        "stored_at_once": sum(a.cache.status == "miss" and a.cache.entry_id is not None for a in answers),
        "stored_later": sum(a.cache.reason == STORED_LATER for a in answers),
    }


async def storm(url: str, embedder: OnnxEmbedder, policy: Policy, n: int, delay_s: float) -> dict:
    """n identical concurrent misses, n distinct ones, and n distinct ones again with every lookup waiting for the
    model however long its queue (no wait budget), against an LLM that takes delay_s. Each service first answers
    one question, as a running server would have: the batcher's cost per text is known when the storm comes."""
    store = await bench_store(url, embedder, "storm")
    out: dict[str, object] = {"requests": n, "llm_delay_s": delay_s, "wait_budget_s": policy.embed_wait_budget_s}
    waiting = replace(policy, embed_wait_budget_s=math.inf)
    distinct = [f"Distinct question number {i}?" for i in range(n)]
    for label, texts, pol in (("identical", ["What is the meaning of life?"] * n, policy),
                              ("distinct", distinct, policy), ("distinct_no_budget", distinct, waiting)):  # fmt: skip
        llm = InstantLLM(delay_s)
        service = CacheService(embedder=embedder, store=store, llm=llm, policy=pol, embed_concurrency=2)
        await service.answer(ask(f"A question asked before the {label} storm"), tenant=f"bench-{label}")
        out[label] = await _storm(service, llm, texts, tenant=f"bench-{label}")
    await drop_store(store)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16, help="concurrent callers in the throughput test")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds per variant")
    parser.add_argument("--concurrency", type=int, default=2, help="model runs at a time (cores)")
    parser.add_argument("--embed-batch", type=int, default=16, help="micro-batch size compared with 1")
    parser.add_argument("--storm", type=int, default=1000, help="concurrent misses in the storm test")
    parser.add_argument("--llm-delay-s", type=float, default=1.0)
    args = parser.parse_args()
    embedder, policy = shipped_embedder(), shipped_policy()
    with bundled_redis() as url:
        report: dict[str, object] = {"machine": f"{os.cpu_count()} cores", "sizes": []}
        for size in (int(s) for s in args.sizes.split(",")):
            r = asyncio.run(run_size(size, args, url, embedder, policy))
            report["sizes"].append(r)  # type: ignore[union-attr]
            print(
                f"{size:>7} entries: embed p50 {r['embed_ms']['p50']:6.2f} ms | exact p50 {r['exact_ms']['p50']:5.2f}"
                f" p99 {r['exact_ms']['p99']:5.2f} | semantic p50 {r['semantic_ms']['p50']:6.2f} p99"
                f" {r['semantic_ms']['p99']:6.2f} ({r['semantic_over_embed_p50']}x embed) | miss overhead p50"
                f" {r['miss_ms']['p50']:6.2f} | {r['memory_per_entry_bytes']} B/entry",
                flush=True,
            )
            print(f"{'':>16}semantic, embedding on the loop's thread (the Lambda handler): p50"
                  f" {r['semantic_inline_ms']['p50']:6.2f} p99 {r['semantic_inline_ms']['p99']:6.2f}"
                  f" ({r['semantic_inline_over_embed_p50']}x embed)", flush=True)  # fmt: skip
            print(f"{'':>16}semantic, the same words asked again (their vector kept): p50"
                  f" {r['semantic_again_ms']['p50']:6.2f} p99 {r['semantic_again_ms']['p99']:6.2f}"
                  f" ({r['semantic_again_over_semantic_p50']}x a first semantic hit)", flush=True)  # fmt: skip
            for workload, w in (("statements", r), ("questions", r["questions"])):
                print(f"{'':>16}{workload}: semantic hits/s {w['semantic_hits_per_s_batched']} batched,"
                      f" {w['semantic_hits_per_s_unbatched']} unbatched, {w['semantic_hits_per_s_one_at_a_time']}"
                      f" one at a time ({w['batched_over_one_at_a_time']}x)", flush=True)  # fmt: skip
                for label in ("batched", "unbatched", "one_at_a_time"):
                    c = w[f"cpu_ms_per_hit_{label}"]
                    print(f"{'':>20}CPU per hit, {label}: embedding {c['embedding']} core-ms"
                          f" ({c['texts_per_run']} texts a run), rest of this process {c['rest_of_process']},"
                          f" Redis {c['redis']}", flush=True)  # fmt: skip
        s = asyncio.run(storm(url, embedder, policy, args.storm, args.llm_delay_s))
        report["storm"] = s
        print(f"storm of {args.storm} concurrent misses, LLM {args.llm_delay_s}s: identical {s['identical']}, "
              f"distinct {s['distinct']}, distinct with no wait budget {s['distinct_no_budget']}")  # fmt: skip
        save_result("latency", report)


if __name__ == "__main__":
    main()
