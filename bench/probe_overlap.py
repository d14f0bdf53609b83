import asyncio, sys, time, statistics
sys.path.insert(0, "bench")
from _common import *  # noqa
from semcache.core.service import CacheService
from semcache.core.fingerprint import scope_fingerprint

class Sequential(CacheService):
    async def _probe_while_preparing(self, asked):
        entry = await self._store.get(asked.eid)
        return entry, None

async def main():
    embedder, policy = shipped_embedder(), shipped_policy()
    with bundled_redis() as url:
        pairs, origins, vectors = statements(embedder)
        svcs = {}
        for name, cls, inline in (("overlap-lambda", CacheService, True), ("seq-lambda", Sequential, True), ("overlap-server", CacheService, False), ("seq-server", Sequential, False)):
            store = await bench_store(url, embedder, "ab" + name[:3] + str(inline))
            await fill(store, scope_fingerprint(ask("x"), tenant="bench", embedder_id=embedder.id), len(origins), origins, vectors)
            svcs[name] = CacheService.__new__(cls); cls.__init__(svcs[name], embedder=embedder, store=store, llm=InstantLLM(), policy=policy, embed_inline=inline)
        await asyncio.sleep(0.5)
        probe = svcs["seq-server"]
        hits = [p for p in pairs[:150] if (await CacheService(embedder=embedder, store=probe.store, llm=InstantLLM(kept=False), policy=policy).answer(ask(p["similar"]), tenant="bench")).cache.tier == "semantic"]
        T = {}
        names = list(svcs)
        for i in range(int(sys.argv[1])):
            p = hits[i % len(hits)]
            for j, name in enumerate(names[i % 4:] + names[:i % 4]):
                embedder.embed(["another request's text, embedded first: " + p["origin"]])
                for kind, text in (("semantic", p["similar"]), ("exact", p["origin"])) if j % 2 == 0 else (("exact", p["origin"]), ("semantic", p["similar"])):
                    if kind == "exact": embedder.embed(["another request: " + p["similar"]])
                    t = time.perf_counter(); a = await svcs[name].answer(ask(text), tenant="bench")
                    T.setdefault((name, kind), []).append((time.perf_counter() - t) * 1e3)
                    assert a.cache.tier == kind, (name, kind, a.cache)
        for k, v in sorted(T.items()): print(k, round(statistics.median(v), 3))
        for kind in ("semantic", "exact"):
            for path in ("lambda", "server"):
                print(kind, path, "overlap/seq", round(statistics.median(T[(f"overlap-{path}", kind)]) / statistics.median(T[(f"seq-{path}", kind)]), 3),
                      "diff ms", round(statistics.median(T[(f"overlap-{path}", kind)]) - statistics.median(T[(f"seq-{path}", kind)]), 3))
asyncio.run(main())
