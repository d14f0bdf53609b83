"""Micro-batching of embeddings: simultaneous requests share one model run, and a lone request waits for nothing.

While a batch is being embedded, newly arriving texts queue; when a runner frees up, it takes the oldest queued
text and the queued texts of about its length (up to max_batch) in one call. A text is tokenised once, before it is
queued (Embedder.prepare): its length in word pieces, which is what a run pays for, forms the batches, and the
runner pads the tokens without tokenising again. An idle service embeds a single text
at once, so batching adds no latency; a busy one amortises the per-call overhead of streaming the weights, which
pays for similar lengths only: padding to a much longer text costs more than it saves.

The batcher also says how long a text queued now would wait (backlog_s), from the recent cost of a text in a run,
so that a caller can choose not to wait: under a burst of new questions the model is the bottleneck, and a
request is better answered by the LLM at once than after a long queue for a lookup that may miss anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sized

import numpy as np

from semcache.core.errors import EmbedderError
from semcache.core.ports import Embedder, Vector

SCAN_LIMIT = 256  # how far down the queue a batch is looked for
COST_WEIGHT = 0.2  # weight of the latest run in the running estimate of a text's cost


class EmbedBatcher:
    """Embeds texts for many concurrent callers with at most `concurrency` model runs at a time."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_batch: int = 16,
        concurrency: int = 1,
        length_spread: float = 1.3,
        inline: bool = False,
    ) -> None:
        """length_spread: texts share a run only when their lengths (the embedder's: word pieces for the ONNX model)
        are within this ratio of the oldest waiting text's (infinity batches regardless of length). 1.3 in word
        pieces beat 1.5 in characters (the rule until session 8) by 18% on long statements and 14% on Quora
        questions (hand A/B, 16 callers, 6 alternating rounds; docs/performance.md).
        inline: embed on the caller's thread, blocking the event loop, for a process that serves one request at a
        time (a Lambda instance): no hand-off to a runner thread and back, nothing to batch."""
        if max_batch < 1 or concurrency < 1 or length_spread < 1:
            raise ValueError("max_batch and concurrency must be at least 1, length_spread at least 1.0")
        self._embedder = embedder
        self._inline = inline
        self._max_batch = max_batch
        self._length_spread = length_spread
        self._concurrency = concurrency
        self._queue: deque[tuple[Sized, asyncio.Future[Vector]]] = deque()
        self._running = 0  # runners (drain tasks)
        self._in_runs = 0  # texts in model runs under way
        self._text_cost_s: float | None = None  # seconds of a run per text, recent runs weighted most

    @property
    def max_batch(self) -> int:
        """The most texts one model run takes."""
        return self._max_batch

    def backlog_s(self) -> float:
        """About how long a text queued now would wait for its model run to start: the texts waiting and in runs,
        shared among the runners, at the recent cost per text. 0 while a runner is free, and until a run has
        been timed."""
        if self._text_cost_s is None or self._running < self._concurrency:
            return 0.0
        return (len(self._queue) + self._in_runs) * self._text_cost_s / self._concurrency

    async def embed(self, prepared: Sized) -> Vector:
        """The unit vector of a text, given as the embedder prepared it (Embedder.prepare: tokenised once, by the
        caller, whose length forms the batches)."""
        if self._inline:
            try:
                return np.asarray(self._embedder.embed_prepared([prepared])[0], dtype=np.float32)
            except EmbedderError:
                raise
            except Exception as exc:  # the caller degrades to no cache
                raise embedder_error(exc) from exc
        future: asyncio.Future[Vector] = asyncio.get_running_loop().create_future()
        self._queue.append((prepared, future))
        if self._running < self._concurrency:
            self._running += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _take_batch(self) -> list[tuple[Sized, asyncio.Future[Vector]]]:
        """The oldest waiting text, with waiting texts of about its length (up to max_batch; the rest keep their place).

        A run costs about as much as its longest text times the batch size: one long text padding fifteen short
        ones makes the batch slower than embedding them one by one (bench/batching.py measures both).
        """
        head = self._queue.popleft()
        if head[1].cancelled():
            return []
        batch = [head]
        low, high = len(head[0]) / self._length_spread, len(head[0]) * self._length_spread
        passed: list[tuple[Sized, asyncio.Future[Vector]]] = []
        looked = 0
        while self._queue and len(batch) < self._max_batch and looked < SCAN_LIMIT:
            item = self._queue.popleft()
            looked += 1
            if item[1].cancelled():
                continue
            (batch if low <= len(item[0]) <= high else passed).append(item)
        self._queue.extendleft(reversed(passed))
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take_batch()
                if batch:
                    await self._run(batch)
        finally:
            self._running -= 1

    async def _run(self, batch: list[tuple[Sized, asyncio.Future[Vector]]]) -> None:
        """One model run for batch (shortest text first); each caller still waiting gets its vector or the error."""
        order = sorted(range(len(batch)), key=lambda i: len(batch[i][0]))
        started = time.perf_counter()
        self._in_runs += len(batch)
        try:
            vectors = await asyncio.to_thread(self._embedder.embed_prepared, [batch[i][0] for i in order])
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller, who degrade to no cache
            error = embedder_error(exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            self._in_runs -= len(batch)
        cost = (time.perf_counter() - started) / len(batch)
        known = self._text_cost_s
        self._text_cost_s = cost if known is None else known + COST_WEIGHT * (cost - known)
        for row, i in enumerate(order):
            future = batch[i][1]
            if not future.done():
                future.set_result(np.asarray(vectors[row], dtype=np.float32))


def embedder_error(exc: Exception) -> EmbedderError:
    """exc as the EmbedderError callers expect (itself if it is one)."""
    return exc if isinstance(exc, EmbedderError) else EmbedderError(f"embedding failed: {exc!r}")
