"""An in-memory VectorStore for unit tests and single-process experiments; not shared, not durable."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from semcache.core.calibration import FEEDBACK_LOG_LIMIT, VERDICTS_TTL_S
from semcache.core.models import JSON, Entry, Match
from semcache.core.ports import Vector


class MemoryStore:
    """Entries in a dict, brute-force cosine search, expiry by the given clock."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # entry id -> the entry, its vector, its deadline, and the asked ids it must not serve (see mark_mismatch),
        # which go with the entry as a Redis hash's fields do
        self._entries: dict[str, tuple[Entry, Vector | None, float, set[str]]] = {}
        self._verdicts: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
        self._last_verdict: dict[str, float] = {}
        self._log: dict[str, deque[dict[str, JSON]]] = defaultdict(lambda: deque(maxlen=FEEDBACK_LOG_LIMIT))

    def _live(self, entry_id: str) -> tuple[Entry, Vector | None, float, set[str]] | None:
        item = self._entries.get(entry_id)
        if item is not None and item[2] <= self._clock():
            del self._entries[entry_id]
            return None
        return item

    def _with_ttl(self, entry: Entry, expires_at: float) -> Entry:
        return replace(entry, ttl_seconds=max(0, math.ceil(expires_at - self._clock())))

    async def get(self, entry_id: str) -> Entry | None:
        """The entry with this id, or None."""
        item = self._live(entry_id)
        return None if item is None else self._with_ttl(item[0], item[2])

    async def get_with_vector(self, entry_id: str) -> tuple[Entry, Vector | None] | None:
        """The entry with this id and its stored vector, or None."""
        item = self._live(entry_id)
        return None if item is None else (self._with_ttl(item[0], item[2]), item[1])

    async def search(self, scope: str, vector: Vector, k: int, *, asked: str | None = None) -> list[Match]:
        """Up to k entries of this scope nearest to vector, most similar first (mismatched: see mark_mismatch)."""
        matches = []
        for entry_id in list(self._entries):
            item = self._live(entry_id)
            if item is None or item[0].scope != scope or item[1] is None:
                continue  # (an entry without a vector is served only to its own text: see VectorStore.put)
            similarity = float(np.dot(item[1], vector))
            mismatched = asked is not None and asked in item[3]
            matches.append(Match(self._with_ttl(item[0], item[2]), similarity, item[1], mismatched))
        matches.sort(key=lambda m: m.similarity, reverse=True)
        return matches[:k]

    async def put(self, entry: Entry, vector: Vector | None, ttl_seconds: int) -> None:
        """Store entry, replacing any with its id."""
        stored = None if vector is None else np.asarray(vector, dtype=np.float32)
        self._entries[entry.id] = (entry, stored, self._clock() + ttl_seconds, set())

    async def mark_mismatch(self, entry_id: str, asked: str) -> bool:
        """Mark the entry as not serving the question whose entry id is asked; False if the entry is gone."""
        item = self._live(entry_id)
        if item is not None:
            item[3].add(asked)
        return item is not None

    async def delete(self, entry_id: str) -> bool:
        """Remove an entry; True if it existed."""
        return self._entries.pop(entry_id, None) is not None

    async def flush(self, *, tenant: str | None = None, scope: str | None = None) -> int:
        """Remove every entry of tenant and/or scope; the number removed."""
        doomed = [
            entry_id
            for entry_id, (entry, *_) in self._entries.items()
            if (tenant is None or entry.tenant == tenant) and (scope is None or entry.scope == scope)
        ]
        for entry_id in doomed:
            del self._entries[entry_id]
        return len(doomed)

    async def ping(self) -> dict[str, object]:
        """The store's state."""
        return {"backend": "memory", "entries": len(self._entries)}

    async def record_verdict(
        self, calibration: str, bucket: int, *, wrong: bool, example: Mapping[str, JSON], tenant: str
    ) -> None:
        """Count a verdict (the counts are forgotten VERDICTS_TTL_S after the last one) and log its example."""
        self._forget_stale(calibration)
        self._last_verdict[calibration] = self._clock()
        right, wrongs = self._verdicts[calibration].get(bucket, (0, 0))
        self._verdicts[calibration][bucket] = (right + (not wrong), wrongs + wrong)
        self._log[tenant].appendleft(dict(example))

    async def verdicts(self, calibration: str) -> dict[int, tuple[int, int]]:
        """Bucket -> (right, wrong)."""
        self._forget_stale(calibration)
        return dict(self._verdicts.get(calibration, {}))

    def _forget_stale(self, calibration: str) -> None:
        if self._clock() - self._last_verdict.get(calibration, self._clock()) >= VERDICTS_TTL_S:
            self._verdicts.pop(calibration, None)

    async def feedback_log(self, tenant: str, limit: int) -> list[dict[str, JSON]]:
        """The newest examples first."""
        return list(self._log.get(tenant, deque()))[:limit]
