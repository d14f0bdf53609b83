"""What a batch costs per text, and what the micro-batcher makes of it: does embedding texts together pay here?

    python bench/batching.py [--texts 128] [--rounds 3]          (part of make bench; about two minutes)

1. The shipped embedder (one onnxruntime thread) embeds the same texts one by one and in batches of 4, 8 and 16, in
   their order and sorted by length (less padding): GPTCache's statements (long, varied) and Quora questions
   (short). Prints ms per text.
2. Throughput of semcache's EmbedBatcher with 16 concurrent callers, each embedding distinct texts: one run at a
   time without batching (the baseline), two runners without batching, two runners batching up to 16 texts of
   similar length in word pieces (the shipped batcher), and two runners batching up to 16 regardless of length.
   Rounds alternate the variants; medians and ratios to the baseline are printed. Results are written as JSON
   under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import statistics
import time

from _common import DATA, save_result, shipped_embedder, statements

from semcache.core.batching import EmbedBatcher


def per_text_ms(embed, texts: list[str], batch: int) -> float:  # type: ignore[no-untyped-def]
    embed(texts[:batch])  # warm
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        embed(texts[i : i + batch])
    return round((time.perf_counter() - started) / len(texts) * 1e3, 2)


VARIANTS = {  # name: (runners, max batch, length spread)
    "one at a time": (1, 1, 1.3),
    "2 runners, no batching": (2, 1, 1.3),
    "2 runners, batches of similar length (shipped)": (2, 16, 1.3),
    "2 runners, batches regardless of length": (2, 16, math.inf),
}


async def texts_per_s(embedder, texts: list[str], runners: int, batch: int, spread: float) -> float:  # type: ignore[no-untyped-def]
    batcher = EmbedBatcher(embedder, max_batch=batch, concurrency=runners, length_spread=spread)
    queue = list(texts)

    async def caller() -> None:
        while queue:
            await batcher.embed(embedder.prepare(queue.pop()))  # (the bench's texts are all short enough)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(16)))
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    embedder = shipped_embedder()
    pairs, _, _ = statements(embedder)
    with gzip.open(DATA / "qqp" / "dev.jsonl.gz", "rt") as fh:
        questions = [json.loads(line)["a"] for line, _ in zip(fh, range(args.texts), strict=False)]
    sets = {"gptcache statements": [p["similar"] for p in pairs][: args.texts], "quora questions": questions}
    result: dict[str, dict[str, float]] = {}
    for name, texts in sets.items():
        for order, ordered in (("as given", texts), ("sorted by length", sorted(texts, key=len))):
            row = {f"batch {b}": per_text_ms(embedder.embed, ordered, b) for b in (1, 4, 8, 16)}
            result[f"{name}, {order}"] = row
            print(f"{name + ', ' + order:40}" + "".join(f"{k}: {v:6.2f} ms  " for k, v in row.items()))
    throughput: dict[str, dict[str, float]] = {}
    for name, texts in sets.items():
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant, config in VARIANTS.items():
                rates[variant].append(asyncio.run(texts_per_s(embedder, texts, *config)))
        medians = {v: round(statistics.median(r), 1) for v, r in rates.items()}
        base = medians["one at a time"]
        throughput[name] = {**medians, **{f"{v} / one at a time": round(m / base, 2) for v, m in medians.items()}}
        print(f"{name}, texts/s with 16 callers (median of {args.rounds}):")
        for variant, rate in medians.items():
            print(f"  {variant:48} {rate:7.1f}  ({rate / base:.2f}x one at a time)")
    save_result("batching", {"benchmark": "batching", "ms_per_text": result, "batcher_texts_per_s": throughput})


if __name__ == "__main__":
    main()
