"""Micro-batching of embeddings: simultaneous requests share one model run, and a lone request waits for nothing.

While a batch is being embedded, newly arriving texts queue; when a runner frees up, it takes everything queued
(up to max_batch) in one call. An idle service embeds a single text at once, so batching adds no latency; a busy
one amortises the per-call overhead (a batch of 8 similar-length texts costs about half as much per text).
"""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np

from semcache.core.errors import EmbedderError
from semcache.core.ports import Embedder, Vector


class EmbedBatcher:
    """Embeds texts for many concurrent callers with at most `concurrency` model runs at a time."""

    def __init__(self, embedder: Embedder, *, max_batch: int = 16, concurrency: int = 1) -> None:
        if max_batch < 1 or concurrency < 1:
            raise ValueError("max_batch and concurrency must be at least 1")
        self._embedder = embedder
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._queue: deque[tuple[str, asyncio.Future[Vector]]] = deque()
        self._running = 0

    async def embed(self, text: str) -> Vector:
        """The unit vector of text."""
        future: asyncio.Future[Vector] = asyncio.get_running_loop().create_future()
        self._queue.append((text, future))
        if self._running < self._concurrency:
            self._running += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
                batch = [(t, f) for t, f in batch if not f.cancelled()]
                if not batch:
                    continue
                order = sorted(range(len(batch)), key=lambda i: len(batch[i][0]))  # similar lengths: less padding
                try:
                    vectors = await asyncio.to_thread(self._embedder.embed, [batch[i][0] for i in order])
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller, who degrade to no cache
                    error = exc if isinstance(exc, EmbedderError) else EmbedderError(f"embedding failed: {exc!r}")
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for row, i in enumerate(order):
                    future = batch[i][1]
                    if not future.done():
                        future.set_result(np.asarray(vectors[row], dtype=np.float32))
        finally:
            self._running -= 1
