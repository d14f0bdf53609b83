"""Load over loopback HTTP against the local server: hit throughput at p99 < 50 ms, a miss storm, a burst.

    python bench/load.py [--seconds 5] [--storm 1000]               (make bench-load)

Starts everything itself and stops it afterwards: the bundled Redis Stack, the fake OpenAI server answering after
--llm-delay-ms (1 s: a realistic model), and `semcache serve` (one uvicorn process, as `make run` starts it). The
load generator is an aiohttp client in this process (the `bench` group), bounded by time and request counts; it
shares the machine's two cores with the server, so the figures are a floor for what the server does on its own.
Not httpx: in the storm it spent 14 s of CPU on 1,000 requests (the server 9.5 s), so the figures measured the
client; aiohttp spends 0.6-1.2 s (`docs/performance.md`).

1. Hit path: closed-loop clients (1, 2, 4, ... --max-clients) sending exact repeats, then paraphrases the matcher
   serves (semantic hits); per level: throughput, p50, p99. Reported: the highest throughput whose p99 < 50 ms.
2. Miss storm: --storm distinct questions at once, each a miss the LLM takes --llm-delay-ms to answer.
3. Burst: --storm identical new questions at once: single-flight should make one LLM call for all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import httpx
from _common import DATA, ROOT, bundled_redis, free_port, pct, save_result


def wait_for(url: str, what: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start at {url}")


async def query(client: aiohttp.ClientSession, text: str) -> tuple[float, int, dict[str, Any]]:
    started = time.perf_counter()
    try:
        async with client.post("/api/query", json={"query": text}) as reply:
            json_reply = reply.content_type == "application/json"
            body = await reply.json() if json_reply else {}
            status = reply.status
    except (aiohttp.ClientError, TimeoutError) as exc:  # counted as an error (status 0), not a crash of the bench
        return (time.perf_counter() - started) * 1e3, 0, {"error": repr(exc)}
    return (time.perf_counter() - started) * 1e3, status, body


def session(base_url: str, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=base_url,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def closed_loop(client: aiohttp.ClientSession, texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    served = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal errors, served
        while time.perf_counter() < deadline:
            i = next(counter)
            elapsed, status, body = await query(client, texts[i % len(texts)])
            latencies.append(elapsed)
            errors += status != 200
            served += body.get("cache", {}).get("status") == "hit"

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "per_s": round(len(latencies) / wall, 1),
        "p50_ms": pct(latencies, 0.5),
        "p99_ms": pct(latencies, 0.99),
        "hit_share": round(served / max(1, len(latencies)), 3),
        "errors": errors,
    }


async def run(args: argparse.Namespace, api: str, fake: str) -> dict[str, Any]:
    pairs = json.loads((DATA / "gptcache" / "mock_data.json").read_text())[: args.questions]
    connections = args.storm + 16
    async with session(api, connections) as client:
        # Store the statements (misses, concurrently), then find the paraphrases the matcher serves. A zero-width
        # space makes each paraphrase request new to the exact tier (the tokenizer drops it), so a paraphrase
        # never becomes an exact hit of itself.
        await asyncio.gather(*(query(client, p["origin"]) for p in pairs))
        # Asked at once, a statement may have been served from a similar one stored a moment earlier (and so not
        # stored itself): ask each again, one at a time, and keep the ones that are now exact hits.
        exact = []
        for p in pairs:
            _, _, body = await query(client, p["origin"])
            if body.get("cache", {}).get("tier") != "exact":
                _, _, body = await query(client, p["origin"])
            if body.get("cache", {}).get("tier") == "exact":
                exact.append(p["origin"])
        # Twice: a paraphrase missed the first time is stored, and could become the nearest entry of one served
        # before it; the second time it is an exact hit (not kept), and what is served then stays served.
        semantic = []
        for _ in range(2):
            semantic.clear()
            for p in pairs:
                _, _, body = await query(client, p["similar"] + "\u200b")
                if body.get("cache", {}).get("tier") == "semantic":
                    semantic.append(p["similar"])
        print(f"  .. {len(exact)} statements stored; {len(semantic)} paraphrases served", file=sys.stderr)

        # A semantic hit stores nothing, so a paraphrase asked again is a semantic hit again; 1 to 16 zero-width
        # spaces only keep concurrent clients from asking the very same text at once (which would coalesce).
        def variants(text: str) -> list[str]:
            return [text + "\u200b" * k for k in range(1, 17)]

        levels = []
        clients = 1
        while clients <= args.max_clients:
            levels.append(clients)
            clients *= 2
        hit_path: dict[str, list[dict[str, Any]]] = {"exact": [], "semantic": []}
        for level in levels:
            hit_path["exact"].append(await closed_loop(client, exact, level, args.seconds))
            texts = [v for k in range(16) for v in (variants(t)[k] for t in semantic)]
            hit_path["semantic"].append(await closed_loop(client, texts, level, args.seconds))
            for tier in ("exact", "semantic"):
                r = hit_path[tier][-1]
                print(f"  .. {tier:8} {level:3} clients: {r['per_s']:7.1f}/s p50 {r['p50_ms']:7.2f} "
                      f"p99 {r['p99_ms']:7.2f} ms, hits {r['hit_share']:.2f}, errors {r['errors']}",
                      file=sys.stderr)  # fmt: skip

    # Miss storm and burst: every request in flight at once, each on fresh connections (the server closes idle
    # keep-alive connections after 5 s; reusing one it is closing would be the client's error, not the server's).
    out: dict[str, Any] = {}
    for label in ("distinct", "identical"):
        async with session(api, connections) as client, session(fake, 4) as control:
            async with control.post("/_fake/reset") as reply:
                reply.raise_for_status()
            tag = uuid.uuid4().hex[:8]
            if label == "distinct":
                texts = [f"Storm question {i} of run {tag}: what is {i} squared?" for i in range(args.storm)]
            else:
                texts = [f"Burst question of run {tag}: what is the airspeed of a swallow?"] * args.storm
            started = time.perf_counter()
            results = await asyncio.gather(*(query(client, t) for t in texts))
            wall = time.perf_counter() - started
            async with control.get("/_fake/stats") as reply:
                stats = await reply.json()
            out[label] = {
                "requests": len(texts),
                "wall_s": round(wall, 2),
                "p50_ms": pct([r[0] for r in results], 0.5),
                "p99_ms": pct([r[0] for r in results], 0.99),
                "errors": sum(r[1] != 200 for r in results),
                "llm_calls": stats["calls"],
                "statuses": dict(Counter(r[2].get("cache", {}).get("status", "error") for r in results)),
                # by kind: "nearest stored question too far (similarity 0.202 < 0.5)" counts as "... too far"
                "reasons": dict(Counter(str(r[2].get("cache", {}).get("reason")).split(" (")[0] for r in results)),
                "error_samples": sorted({f"{r[1]} {r[2].get('error', r[2])}"[:160] for r in results if r[1] != 200})[
                    :3
                ],
            }
            print(f"  .. {label} storm: {out[label]}", file=sys.stderr)

    best = {
        tier: max((r for r in rows if r["p99_ms"] < 50 and r["errors"] == 0), key=lambda r: r["per_s"], default=None)
        for tier, rows in hit_path.items()
    }
    return {"benchmark": "load", "llm_delay_ms": args.llm_delay_ms, "hit_path": hit_path,
            "best_under_50ms_p99": best, "storm": out}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per load level")
    parser.add_argument("--max-clients", type=int, default=32)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--storm", type=int, default=1000)
    parser.add_argument("--llm-delay-ms", type=float, default=1000.0)
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    server_log = (ROOT / ".local" / "bench-load-server.log").open("wb")  # read it if errors are reported
    try:
        with bundled_redis() as redis_url:
            fake_port, api_port = free_port(), free_port()
            fake = f"http://127.0.0.1:{fake_port}"
            fake_cmd = [sys.executable, str(ROOT / "local/fake_openai.py"), "--port", str(fake_port),
                        "--delay-ms", str(args.llm_delay_ms)]  # fmt: skip
            procs.append(subprocess.Popen(fake_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(fake + "/_fake/stats", "the fake OpenAI server")
            env = {**os.environ, "SEMCACHE_REDIS_URL": redis_url, "SEMCACHE_MODEL_DIR": str(ROOT / ".local/models"),
                   "SEMCACHE_KEY_PREFIX": f"load{uuid.uuid4().hex[:6]}:", "OPENAI_API_KEY": "sk-bench",
                   "OPENAI_BASE_URL": fake + "/v1",
                   # the semantic workload asks its paraphrases again and again: each must cost a model run, as a
                   # new paraphrase would, not reuse its text's recent vector
                   "SEMCACHE_RECENT_EMBEDDINGS": "0"}  # fmt: skip
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "semcache.cli", "--log-level", "warning", "serve", "--port", str(api_port)],
                env=env, stdout=server_log, stderr=subprocess.STDOUT))  # fmt: skip
            api = f"http://127.0.0.1:{api_port}"
            wait_for(api + "/", "semcache")
            result = asyncio.run(run(args, api, fake))
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    print(f"\n{'tier':9}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for tier, rows in result["hit_path"].items():
        for r in rows:
            print(f"{tier:9}{r['clients']:>8}{r['per_s']:>9}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}")
    print(json.dumps({"best_under_50ms_p99": result["best_under_50ms_p99"], "storm": result["storm"]}, indent=1))
    save_result("load", result)


if __name__ == "__main__":
    main()
