"""Where the server path's semantic hit loses time against the Lambda path's: handing a text to a runner thread
and the vector back to the event loop.

    python bench/handoff.py [--iterations 200] [--idle-ms 10]

The shipped embedder embeds the same kind of text two ways, taking turns, each after --idle-ms of idleness (as
a lone request finds the process): inline on the event loop's thread (the Lambda handler's path), and through
the EmbedBatcher's runner thread (the server's). For the runner, the time is split at the model run's start and
end, recorded on the runner thread: hand-over (tokenising the text, queueing it, waking the runner), the run, and
hand-back (waking the event loop, then the caller). Tokenising alone is timed too, so that hand-over minus it is
the wake-up. Results: a line on stdout and JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence, Sized

import numpy as np
import numpy.typing as npt
from _common import pct, save_result, shipped_embedder

from semcache.adapters.onnx_embedder import OnnxEmbedder
from semcache.bootstrap import limit_blas_threads
from semcache.core.batching import EmbedBatcher


class _Marked:
    """The embedder, noting when each model run starts and ends (on the thread that runs it)."""

    def __init__(self, embedder: OnnxEmbedder) -> None:
        self._embedder = embedder
        self.id, self.dim = embedder.id, embedder.dim
        self.started = self.ended = 0.0

    def prepare(self, text: str) -> Sized | None:
        return self._embedder.prepare(text)

    def unread(self, text: str) -> tuple[str, ...]:
        return self._embedder.unread(text)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self._embedder.embed(texts)

    def embed_prepared(self, prepared: Sequence[Sized]) -> npt.NDArray[np.float32]:
        self.started = time.perf_counter()
        try:
            return self._embedder.embed_prepared(prepared)
        finally:
            self.ended = time.perf_counter()


async def run(iterations: int, idle_s: float) -> dict[str, dict[str, float]]:
    embedder = shipped_embedder()
    marked = _Marked(embedder)
    runner = EmbedBatcher(marked, concurrency=1)
    timings: dict[str, list[float]] = {k: [] for k in ("inline", "runner", "hand_over", "run", "hand_back", "tokenise")}
    for i in range(iterations):
        text = f"How do I set the retry policy of message queue client number {i} in production?"
        await asyncio.sleep(idle_s)
        started = time.perf_counter()
        if i % 3 == 0:
            embedder.embed([text])
            timings["inline"].append(time.perf_counter() - started)
        elif i % 3 == 1:
            await runner.embed(marked.prepare(text))  # tokenised on the loop's thread, as the service does
            done = time.perf_counter()
            timings["runner"].append(done - started)
            timings["hand_over"].append(marked.started - started)
            timings["run"].append(marked.ended - marked.started)
            timings["hand_back"].append(done - marked.ended)
        else:
            embedder.prepare(text)
            timings["tokenise"].append(time.perf_counter() - started)
    ms = {k: [v * 1e3 for v in vs] for k, vs in timings.items()}
    return {k: {"p50": pct(vs, 0.5), "p99": pct(vs, 0.99)} for k, vs in ms.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--idle-ms", type=float, default=10.0)
    args = parser.parse_args()
    limit_blas_threads()
    result = asyncio.run(run(args.iterations, args.idle_ms / 1000))
    p50 = {k: v["p50"] for k, v in result.items()}
    print(
        f"p50 ms: inline {p50['inline']:.2f} | runner {p50['runner']:.2f} = hand-over {p50['hand_over']:.3f}"
        f" (tokenising alone {p50['tokenise']:.3f}) + run {p50['run']:.2f} + hand-back {p50['hand_back']:.3f}"
        f" | runner - inline {p50['runner'] - p50['inline']:.3f}"
    )
    save_result("handoff", {"iterations": args.iterations, "idle_ms": args.idle_ms, "ms": result})


if __name__ == "__main__":
    main()
