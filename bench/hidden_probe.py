"""What hiding the exact tier's round trip behind the model run would save a semantic hit on the Lambda path: a
measurement of a design semcache does not ship, beside what it ships, RedisVL's `check` and the bare embedding.

    python bench/hidden_probe.py [--iterations 300]                      (the `bench` dependency group)

Contestants, each with an index of its own holding GPTCache's 999 statements, timed in turn on the paraphrases
all of them serve (the embedding on the event loop's thread, as the Lambda handler has it):
  - lambda: semcache as shipped (exact probe, then the embedding, the KNN and the verifier);
  - hidden: the exact probe handed to a helper thread with a connection of its own, which asks Redis while the
    model runs (onnxruntime lets go of the GIL); its reply is awaited before the KNN. A design that would also need
    the model run stopped on an exact hit (onnxruntime's RunOptions.terminate), not built here: only the semantic
    hit's cost is measured;
  - probeless: no exact probe at all (what the probe costs);
  - peer_work: no probe and no verifier, the peers' cosine threshold (what our machinery costs for RedisVL's work);
  - rvl: RedisVL's SemanticCache.check with the same embedder; embed: the bare embedding.
It also times the service's judging step (the verifier and the rules, `CacheService._judge`) per contestant.
Medians in ms, and each over RedisVL's, on stdout and under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import statistics
import threading
import time
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
from peers import WithoutExactProbe, peer_arguments, redisvl_cache

from semcache.adapters.redis_store import RedisStore
from semcache.core.fingerprint import normalize_text, scope_fingerprint
from semcache.core.service import CacheService, Policy

NAMES = ("embed", "lambda", "hidden", "probeless", "peer_work", "rvl")
FIELDS = ("v", "scope", "query", "response", "model", "usage", "created_at", "tenant", "expires_at")


class ProbeThread:
    """Asks Redis for an entry's fields on a thread and connection of its own."""

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)
        self._redis.ping()
        self._asks: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            key, box = self._asks.get()
            box["reply"] = self._redis.hmget(key, *FIELDS)
            box["done"].set()

    def ask(self, key: str) -> dict[str, Any]:
        box: dict[str, Any] = {"done": threading.Event()}
        self._asks.put((key, box))
        return box


class HiddenProbe:
    """A store whose exact probe goes to a ProbeThread and answers "no entry" at once; the reply is awaited (and
    must be "no entry": only semantic hits are timed) before the KNN, after the model run."""

    def __init__(self, store: RedisStore, thread: ProbeThread) -> None:
        self._store, self._thread = store, thread
        self._box: dict[str, Any] | None = None

    async def get(self, entry_id: str) -> None:
        self._box = self._thread.ask(self._store.key(entry_id))

    async def search(self, *args: Any, **kwargs: Any) -> Any:
        assert self._box is not None
        self._box["done"].wait()
        assert self._box["reply"][0] is None, "an exact hit: only semantic hits are timed"
        return await self._store.search(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    embedder = shipped_embedder()
    pairs, origins, vectors = statements(embedder)
    stores = {name: await bench_store(url, embedder, f"hidden-{name}") for name in NAMES[1:-1]}
    scope = scope_fingerprint(ask("x"), tenant="bench", embedder_id=embedder.id)
    for store in stores.values():
        await fill(store, scope, len(origins), origins, vectors)

    def service(store: Any, policy: Policy | None = None) -> CacheService:
        return CacheService(embedder=embedder, store=store, llm=InstantLLM(kept=False),
                            policy=policy or shipped_policy(), embed_inline=True)  # fmt: skip

    services = {
        "lambda": service(stores["lambda"]),
        "hidden": service(HiddenProbe(stores["hidden"], ProbeThread(url))),
        "probeless": service(WithoutExactProbe(stores["probeless"])),
        "peer_work": service(WithoutExactProbe(stores["peer_work"]), Policy(min_similarity=args.cosine)),
    }
    rvl = redisvl_cache(url, embedder, args.cosine, origins, vectors)
    common = []
    for p in pairs[: args.questions]:
        served = [(await s.answer(ask(p["similar"]), tenant="bench")).cache.status == "hit" for s in services.values()]
        if all(served) and rvl.check(prompt=p["similar"], num_results=1):
            common.append(p["similar"])

    judged: dict[str, list[float]] = {name: [] for name in services}
    for name, svc in services.items():
        time_calls(judged[name], svc, "_judge")
    timings: dict[str, list[float]] = {name: [] for name in NAMES}
    for i in range(args.iterations):
        text = common[i % len(common)]
        for name in NAMES[i % len(NAMES) :] + NAMES[: i % len(NAMES)]:
            started = time.perf_counter()
            if name == "embed":
                embedder.embed([normalize_text(text)])
            elif name == "rvl":
                assert rvl.check(prompt=text, num_results=1)
            else:
                answer = await services[name].answer(ask(text), tenant="bench")
                assert answer.cache.status == "hit", (name, answer.cache)
            timings[name].append((time.perf_counter() - started) * 1e3)
    rvl.delete()
    for store in stores.values():
        await drop_store(store)
    p50 = {name: round(statistics.median(v), 3) for name, v in timings.items()}
    return {
        "benchmark": "hidden_probe",
        "timed_paraphrases": len(common),
        "iterations": args.iterations,
        "p50_ms": p50,
        "over_redisvl": {name: round(v / p50["rvl"], 3) for name, v in p50.items()},
        "judge_p50_ms": {name: round(statistics.median(v), 3) for name, v in judged.items() if v},
    }


def main() -> None:
    args = peer_arguments(__doc__.splitlines()[0], iterations=300)
    with bundled_redis() as url:
        result = asyncio.run(run(args, url))
    for key in ("p50_ms", "over_redisvl", "judge_p50_ms"):
        print(key, result[key])
    save_result("hidden_probe", result)


if __name__ == "__main__":
    main()
