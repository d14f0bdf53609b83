"""What a batch costs per text: does embedding texts together pay on this machine?

    python bench/batching.py [--texts 128]          (part of make bench; half a minute)

The shipped embedder (one onnxruntime thread) embeds the same texts one by one and in batches of 4, 8 and 16, in
their order and sorted by length (less padding): GPTCache's statements (long) and Quora questions (short).
Prints ms per text for each, and writes them as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time

from _common import DATA, save_result, shipped_embedder, statements


def per_text_ms(embed, texts: list[str], batch: int) -> float:  # type: ignore[no-untyped-def]
    embed(texts[:batch])  # warm
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        embed(texts[i : i + batch])
    return round((time.perf_counter() - started) / len(texts) * 1e3, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=128)
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
    save_result("batching", {"benchmark": "batching", "ms_per_text": result})


if __name__ == "__main__":
    main()
