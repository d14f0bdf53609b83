"""Feedback that tightens the matcher: each tenant's verdicts on semantic hits raise its confidence threshold when
they show the verifier serving wrong answers more often than allowed.

The shipped threshold was chosen on Quora questions; a tenant's traffic may be easier or harder. Every verdict
on a semantic hit is counted against the verifier's confidence for that hit, in buckets of 0.01. The tenant's
threshold is then the lowest one, at or above the shipped one, at which the hits it would still serve are not
*shown* to be wrong more often than `max_error`: fewer than MIN_WRONG wrong verdicts among them, or the Wilson
lower bound (95%) of their error rate at or below `max_error`. One or two wrong marks move nothing (a slip of the
hand, or a question the verifier rightly found close); three wrong marks at or above some confidence, with no
right ones to outweigh them, move the threshold above it. Verdicts only ever raise the threshold above the shipped
one, and right marks bring it back down when they outweigh the wrong ones. Stores forget a tenant's verdicts
VERDICTS_TTL_S after the last one, so a threshold raised to 1.0 (no semantic hits, hence no new verdicts) does
not stay there for ever.

The idea of learning the threshold from observed correctness, with a bounded error rate, follows vCache
(arXiv 2502.03771), which does it per entry; we do it per tenant, where verdicts accumulate fast enough to matter.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger("semcache")

FEEDBACK_LOG_LIMIT = 10_000
"""Labelled examples kept per tenant (the newest), for retraining the verifier."""

MIN_WRONG = 3
"""Wrong verdicts needed, at or above a threshold, before they can rule it out."""

VERDICTS_TTL_S = 30 * 86_400
"""A tenant's verdicts are forgotten this long after its last one."""

BUCKETS = 100
"""Confidence is counted in buckets of 1 / BUCKETS."""

Counts = Mapping[int, tuple[int, int]]
"""Bucket -> (right, wrong) verdicts on semantic hits served with a confidence in that bucket."""


def bucket(confidence: float) -> int:
    """The bucket of a confidence in [0, 1]."""
    return min(BUCKETS - 1, max(0, math.floor(confidence * BUCKETS)))


def wilson_lower(successes: int, n: int, z: float = 1.96) -> float:
    """The lower end of the Wilson score interval of a proportion (0 when n is 0)."""
    if n == 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def calibrated_threshold(counts: Counts, base: float, max_error: float) -> float:
    """The lowest threshold >= base whose served hits are not shown to err more often than max_error: fewer than
    MIN_WRONG wrong verdicts at or above it, or a Wilson lower bound of their error rate <= max_error.

    Candidates are base and the bucket edges above it; 1.0 (no semantic hits) if every one is shown to err.
    """
    candidates = [base] + [b / BUCKETS for b in range(bucket(base) + 1, BUCKETS)] + [1.0]
    for threshold in candidates:
        first = bucket(threshold) if threshold < 1.0 else BUCKETS
        right = sum(r for b, (r, _) in counts.items() if b >= first)
        wrong = sum(w for b, (_, w) in counts.items() if b >= first)
        if wrong < MIN_WRONG or wilson_lower(wrong, right + wrong) <= max_error:
            return threshold
    return 1.0


class TenantThresholds:
    """Each tenant's calibrated threshold, read from the store at most every `refresh_s` and never waited for.

    `get` answers from memory at once; a missing or stale value is refreshed by a background task, so the hit
    path never waits on it. Until then the tenant is served at the base threshold.
    """

    def __init__(
        self,
        read: Callable[[str], Awaitable[Counts]],
        *,
        base: float,
        max_error: float,
        refresh_s: float = 30.0,
        monotonic: Callable[[], float],
    ) -> None:
        self._read = read
        self._base = base
        self._max_error = max_error
        self._refresh_s = refresh_s
        self._now = monotonic
        self._known: dict[str, tuple[float, float]] = {}
        """tenant -> (threshold, when it was read)"""
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, tenant: str) -> float:
        """The tenant's threshold as last read (base if never read yet); refreshes it in the background if stale."""
        known = self._known.get(tenant)
        if (known is None or self._now() - known[1] >= self._refresh_s) and tenant not in self._refreshing:
            self._refreshing.add(tenant)
            task = asyncio.get_running_loop().create_task(self._refresh(tenant))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self._base if known is None else known[0]

    async def refresh(self, tenant: str) -> float:
        """Read the tenant's verdicts now (after a new one) and return its threshold."""
        threshold = calibrated_threshold(await self._read(tenant), self._base, self._max_error)
        self._known[tenant] = (threshold, self._now())
        return threshold

    async def close(self) -> None:
        """Stop the refreshes under way (before the store they read from is closed)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _refresh(self, tenant: str) -> None:
        try:
            await self.refresh(tenant)
        except Exception as exc:  # noqa: BLE001 - a failed read keeps the last value (or base) for refresh_s
            self._known[tenant] = (self._known.get(tenant, (self._base, 0.0))[0], self._now())
            log.warning("could not read the verdicts of tenant %s: %s", tenant, exc)
        finally:
            self._refreshing.discard(tenant)
