"""semcache against its peers, in one run, on one machine, one embedder, one Redis Stack: lookup latency as ratios.

    python bench/peers.py [--iterations 200] [--cosine 0.85]        (make bench-peers; the `bench` dependency group)

Peers, used through their own public APIs:
  - RedisVL `SemanticCache` (`check` / `store`), on the same Redis Stack, given our ONNX embedder through its
    `CustomVectorizer`;
  - GPTCache (`gptcache.adapter.api.get` / `put`) with our embedder as its embedding function, FAISS + SQLite.
Both get the same 999 stored statements (GPTCache's mock_data origins) and the same questions; their single cosine
threshold is --cosine (RedisVL: distance 1 - cosine; GPTCache: similarity_threshold (1 + cosine) / 2, since its FAISS
distance is the squared L2 of unit vectors, 2 - 2 cosine, scored as 4 - distance over the range 0..4).
semcache runs its shipped matcher (verifier), as the local server runs it (runner threads) and as the Lambda handler
does (the embedding on the event loop's thread), once more without the exact tier's probe (what that probe costs a
semantic hit), and once doing only what RedisVL's check does (no exact probe, no verifier, the peers' cosine
threshold, the embedding on the event loop's thread: what our lookup machinery costs for the same work). The last
two are measurements, not modes of semcache. Each semcache contestant has an index of its own holding the same 999
statements in one scope, as RedisVL's does. Timings interleave every contestant on every question, in an order that
rotates, so the machine's noise falls on all alike; figures are p50 / p99 in ms and ratios of medians. Hit rates are
printed too: a fast miss is not a hit. Semantic lookups are timed only on the paraphrases every contestant serves
(found first, in a pass that keeps nothing of semcache's: its LLM stand-in's answers are never stored), so each time
is a semantic hit's, never a miss's (which would store, making the next round's lookup an exact hit).
Results: a table, and JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
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
from semcache.core.fingerprint import normalize_text, scope_fingerprint
from semcache.core.service import CacheService, Policy


def redisvl_cache(url: str, embedder: OnnxEmbedder, cosine: float, texts: list[str], vectors: np.ndarray) -> Any:
    """RedisVL's SemanticCache over our embedder, holding texts (answered "answer to <text>"), stored with their
    vectors already computed (its store embeds otherwise; only lookups are timed)."""
    from redisvl.extensions.cache.llm import SemanticCache
    from redisvl.utils.vectorize import CustomVectorizer

    vectorizer = CustomVectorizer(
        embed=lambda text, **_: embedder.embed([text])[0].tolist(),
        embed_many=lambda texts, **_: embedder.embed(texts).tolist(),
    )
    cache = SemanticCache(
        name=f"rvl{uuid.uuid4().hex[:6]}", distance_threshold=1 - cosine, vectorizer=vectorizer, redis_url=url
    )
    for text, vector in zip(texts, vectors, strict=True):
        cache.store(prompt=text, response=f"answer to {text}", vector=vector.tolist())
    return cache


def gptcache_cache(folder: Path, embed: Callable[[str], np.ndarray], cosine: float) -> Any:
    from gptcache import Cache, Config
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

    cache = Cache()
    cache.init(
        pre_embedding_func=get_prompt,
        embedding_func=lambda text, **_: embed(text),
        data_manager=get_data_manager(
            CacheBase("sqlite", sql_url=f"sqlite:///{folder / 'gptcache.db'}"),
            VectorBase("faiss", dimension=384, index_path=str(folder / "faiss.index")),
        ),
        similarity_evaluation=SearchDistanceEvaluation(),
        config=Config(similarity_threshold=(1 + cosine) / 2),
    )
    return cache


TIMED = ("embed", "semcache_exact", "redisvl_exact", "gptcache_exact", "semcache_semantic",
         "semcache_lambda_semantic", "semcache_semantic_without_exact_probe", "semcache_peer_work_semantic",
         "redisvl_semantic",
         "gptcache_semantic")  # fmt: skip
"""What is timed, in turn, on every question."""


class WithoutExactProbe:
    """The store minus the exact tier's round trip (get answers None at once, as a miss would): what the exact probe
    costs a semantic hit. A measurement only; semcache has no such mode (an exact repeat would then pay an
    embedding)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def get(self, entry_id: str) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from gptcache.adapter.api import get as gpt_get
    from gptcache.adapter.api import put as gpt_put

    embedder = shipped_embedder()
    pairs, origins, vectors = statements(embedder)
    log(f"embedded {len(origins)} statements")

    # semcache: each contestant with a store (an index) of its own holding the 999 statements in one scope, as
    # RedisVL's index holds them (sharing one index, each would search 5,000 entries through its scope filter).
    stores = {name: await bench_store(url, embedder, f"peers-{name}")
              for name in ("server", "lambda", "probeless", "peer-work")}  # fmt: skip
    for store in stores.values():
        await fill(store, scope_fingerprint(ask("x"), tenant="bench", embedder_id=embedder.id), len(origins),
                   origins, vectors)  # fmt: skip
    service = CacheService(embedder=embedder, store=stores["server"], llm=InstantLLM(), policy=shipped_policy())
    # As the Lambda handler builds it (the embedding on the event loop's thread).
    lone = CacheService(embedder=embedder, store=stores["lambda"], llm=InstantLLM(), policy=shipped_policy(),
                        embed_inline=True)  # fmt: skip
    # Finds the paraphrases semcache serves: its LLM's answers are never kept, so a paraphrase it misses cannot
    # serve a later one that the timed services (without it) would miss.
    prober = CacheService(embedder=embedder, store=stores["server"], llm=InstantLLM(kept=False),
                          policy=shipped_policy())  # fmt: skip
    probeless = CacheService(embedder=embedder, store=WithoutExactProbe(stores["probeless"]), llm=InstantLLM(),
                             policy=shipped_policy())  # fmt: skip
    # What RedisVL's check does and no more: no exact probe, no verifier, its cosine threshold; the embedding on the
    # event loop's thread as RedisVL's (synchronous) check has it. Not a mode of semcache either: the measurement of
    # what our lookup machinery costs for the same work, so that the rest of the gap is the work RedisVL skips.
    peer_work = CacheService(embedder=embedder, store=WithoutExactProbe(stores["peer-work"]), llm=InstantLLM(),
                             policy=Policy(min_similarity=args.cosine), embed_inline=True)  # fmt: skip

    rvl = redisvl_cache(url, embedder, args.cosine, origins, vectors)

    # GPTCache: while filling, its embedding function looks the vectors up; when timed, it embeds
    known = {normalize_text(t): v for t, v in zip(origins, vectors, strict=True)}
    filling = True

    def gpt_embed(text: str) -> np.ndarray:
        if filling:
            return known[normalize_text(text)]
        return embedder.embed([text])[0]

    folder = Path(tempfile.mkdtemp(prefix="semcache-gptcache-"))
    gpt = gptcache_cache(folder, gpt_embed, args.cosine)
    for text in origins:
        gpt_put(text, f"answer to {text}", cache_obj=gpt)
    filling = False
    await asyncio.sleep(0.5)
    log("three caches filled with the same statements")

    questions = pairs[: args.questions]

    # Which paraphrases each serves
    served = {
        "semcache": [(await prober.answer(ask(p["similar"]), tenant="bench")).cache.status == "hit" for p in questions],
        "redisvl": [bool(rvl.check(prompt=p["similar"], num_results=1)) for p in questions],
        "gptcache": [gpt_get(p["similar"], cache_obj=gpt) is not None for p in questions],
    }  # fmt: skip
    common = [p for p, *hit in zip(questions, *served.values(), strict=True) if all(hit)]
    log(f"{len(common)} of {len(questions)} paraphrases served by all three: their lookups are timed")
    names = TIMED
    timings: dict[str, list[float]] = {k: [] for k in names}
    missed: dict[str, int] = {k: 0 for k in names if k != "embed"}  # a timed lookup that did not hit
    for i in range(args.iterations):
        # Each iteration starts one contestant further on: none always follows the same one (which may have warmed
        # or cooled the caches for it).
        for name in names[i % len(names) :] + names[: i % len(names)]:
            exact = name.endswith("exact")
            p = questions[i % len(questions)] if exact else common[i % len(common)]
            text = p["origin"] if exact else p["similar"]
            started = time.perf_counter()
            if name == "embed":
                embedder.embed([normalize_text(text)])
                hit = None
            elif name == "semcache_lambda_semantic":
                a = await lone.answer(ask(text), tenant="bench")
                hit = a.cache.status == "hit"
            elif name == "semcache_peer_work_semantic":
                a = await peer_work.answer(ask(text), tenant="bench")
                hit = a.cache.status == "hit"
            elif name == "semcache_semantic_without_exact_probe":
                a = await probeless.answer(ask(text), tenant="bench")
                hit = a.cache.status == "hit"
            elif name.startswith("semcache"):
                a = await service.answer(ask(text), tenant="bench")
                hit = a.cache.status == "hit"
            elif name.startswith("redisvl"):
                hit = bool(rvl.check(prompt=text, num_results=1))
            else:
                hit = gpt_get(text, cache_obj=gpt) is not None
            timings[name].append((time.perf_counter() - started) * 1e3)
            if hit is not None:
                missed[name] += not hit
    rvl.delete()
    for store in stores.values():
        await drop_store(store)

    result: dict[str, Any] = {
        "benchmark": "peers",
        "entries": len(origins),
        "questions": len(questions),
        "timed_paraphrases": len(common),
        "iterations": args.iterations,
        "peer_cosine_threshold": args.cosine,
        **{f"{k}_ms": {"p50": pct(v, 0.5), "p99": pct(v, 0.99)} for k, v in timings.items()},
        "semantic_hit_rate": {k: round(sum(v) / len(v), 3) for k, v in served.items()},
        "timed_lookups_that_missed": missed,
    }
    p50 = {k: result[f"{k}_ms"]["p50"] for k in names}
    result["ratios"] = {
        "redisvl_exact_over_semcache_exact": round(p50["redisvl_exact"] / p50["semcache_exact"], 2),
        "gptcache_exact_over_semcache_exact": round(p50["gptcache_exact"] / p50["semcache_exact"], 2),
        "semcache_semantic_over_redisvl_semantic": round(p50["semcache_semantic"] / p50["redisvl_semantic"], 3),
        "semcache_semantic_over_gptcache_semantic": round(p50["semcache_semantic"] / p50["gptcache_semantic"], 3),
        "semcache_semantic_over_embed": round(p50["semcache_semantic"] / p50["embed"], 3),
        "semcache_lambda_semantic_over_redisvl_semantic": round(
            p50["semcache_lambda_semantic"] / p50["redisvl_semantic"], 3
        ),
        "semcache_lambda_semantic_over_embed": round(p50["semcache_lambda_semantic"] / p50["embed"], 3),
        "semcache_semantic_without_exact_probe_over_redisvl_semantic": round(
            p50["semcache_semantic_without_exact_probe"] / p50["redisvl_semantic"], 3
        ),
        "semcache_peer_work_semantic_over_redisvl_semantic": round(
            p50["semcache_peer_work_semantic"] / p50["redisvl_semantic"], 3
        ),
    }
    return result


def peer_arguments(description: str, iterations: int) -> argparse.Namespace:
    """The command line of a bench that times semcache beside its peers on GPTCache's paraphrases."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--iterations", type=int, default=iterations)
    parser.add_argument("--questions", type=int, default=100, help="the first N paraphrase pairs of mock_data")
    parser.add_argument("--cosine", type=float, default=0.85, help="the peers' single cosine threshold")
    return parser.parse_args()


def main() -> None:
    args = peer_arguments(__doc__.splitlines()[0], iterations=200)
    with bundled_redis() as url:
        result = asyncio.run(run(args, url))
    print(f"\n{'':40}{'p50 ms':>10}{'p99 ms':>10}{'missed':>8}")
    for key in TIMED:
        print(f"{key:40}{result[f'{key}_ms']['p50']:>10}{result[f'{key}_ms']['p99']:>10}"
              f"{result['timed_lookups_that_missed'].get(key, ''):>8}")  # fmt: skip
    print(f"semantic hit rates on {result['questions']} paraphrases: {result['semantic_hit_rate']}; the"
          f" {result['timed_paraphrases']} all three serve were timed")  # fmt: skip
    print(json.dumps(result["ratios"], indent=1))
    save_result("peers", result)


if __name__ == "__main__":
    main()
