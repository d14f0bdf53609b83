"""Per-request figures: counters and latency samples for GET /v1/cache/stats, and CloudWatch EMF lines on Lambda.

EMF (embedded metric format) is one JSON object per line on stdout; CloudWatch Logs turns its `_aws` block into
metrics. The format is small and stable, so it is written here rather than pulling in a toolkit for it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from semcache.core.models import Answer, Usage
from semcache.core.service import BUSY_REASONS, CACHE_FAULT, CACHE_FULL, NOT_ENGLISH, TOO_LONG

_SAMPLES = 2048


@dataclass(frozen=True, slots=True)
class Prices:
    """Dollars per million tokens, to estimate what hits saved (defaults: gpt-4.1-mini list prices)."""

    input_usd_per_mtok: float = 0.40
    output_usd_per_mtok: float = 1.60

    def dollars(self, usage: Usage) -> float:
        """Estimated cost of usage."""
        return (usage.input_tokens * self.input_usd_per_mtok + usage.output_tokens * self.output_usd_per_mtok) / 1e6


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


class Metrics:
    """Counts outcomes and keeps recent latencies; optionally writes one EMF line per request."""

    def __init__(
        self,
        *,
        prices: Prices | None = None,
        emf_namespace: str | None = None,
        write: Callable[[str], None] | None = None,
        service: str = "semcache",
    ) -> None:
        self._prices = prices or Prices()
        self._emf_namespace = emf_namespace
        self._write = write or (lambda line: print(line, file=sys.stdout, flush=True))
        self._service = service
        self._lock = threading.Lock()
        self._counts = {
            "requests": 0,
            "hit": 0,
            "miss": 0,
            "bypass": 0,
            "exact": 0,
            "semantic": 0,
            "lookup_skipped_busy": 0,
            "lookup_skipped_too_long": 0,
            "lookup_skipped_not_english": 0,
            "not_stored_full": 0,
            "cache_faults": 0,
            "errors": 0,
            "feedback_wrong": 0,
            "feedback_right": 0,
        }
        self._tokens_saved = 0
        self._dollars_saved = 0.0
        self._lookup_ms: deque[float] = deque(maxlen=_SAMPLES)
        self._llm_ms: deque[float] = deque(maxlen=_SAMPLES)

    def record(self, answer: Answer, *, route: str) -> None:
        """Count one answered request."""
        c = answer.cache
        skipped = c.reason in BUSY_REASONS
        full = c.reason == CACHE_FULL  # the store refused the answer for want of memory (docs/operations.md)
        long = c.reason == TOO_LONG  # a text longer than the embedder reads: the exact tier only
        foreign = c.reason == NOT_ENGLISH  # a question in another language: the exact tier only
        fault = c.reason == CACHE_FAULT  # a bug of ours, logged with its traceback: worth an alarm
        saved = answer.saved_usage or Usage()
        dollars = self._prices.dollars(saved)
        with self._lock:
            self._counts["requests"] += 1
            self._counts[c.status] += 1
            if c.tier is not None:
                self._counts[c.tier] += 1
            self._counts["lookup_skipped_busy"] += skipped
            self._counts["lookup_skipped_too_long"] += long
            self._counts["lookup_skipped_not_english"] += foreign
            self._counts["not_stored_full"] += full
            self._counts["cache_faults"] += fault
            self._tokens_saved += saved.total_tokens
            self._dollars_saved += dollars
            if answer.lookup_ms is not None:
                self._lookup_ms.append(answer.lookup_ms)
            if answer.llm_ms is not None:
                self._llm_ms.append(answer.llm_ms)
        if self._emf_namespace is not None:
            values: dict[str, tuple[float, str]] = {
                "Hit": (int(c.status == "hit"), "Count"),
                "Miss": (int(c.status == "miss"), "Count"),
                "Bypass": (int(c.status == "bypass"), "Count"),
                "ExactHit": (int(c.tier == "exact"), "Count"),
                "SemanticHit": (int(c.tier == "semantic"), "Count"),
                "LookupSkippedBusy": (int(skipped), "Count"),
                "LookupSkippedTooLong": (int(long), "Count"),
                "LookupSkippedNotEnglish": (int(foreign), "Count"),
                "NotStoredFull": (int(full), "Count"),
                "CacheFault": (int(fault), "Count"),
                "TokensSaved": (saved.total_tokens, "Count"),
                "DollarsSaved": (round(dollars, 8), "None"),
                "TokensUsed": (answer.usage.total_tokens, "Count"),
            }
            if answer.lookup_ms is not None:
                values["LookupLatency"] = (round(answer.lookup_ms, 3), "Milliseconds")
            if answer.llm_ms is not None:
                values["LLMLatency"] = (round(answer.llm_ms, 3), "Milliseconds")
            self._emit(values, {"route": route, "status": c.status, "tier": c.tier, "reason": c.reason})

    def record_error(self, *, route: str, kind: str) -> None:
        """Count a request that ended in an error answer (upstream failure, bad input)."""
        with self._lock:
            self._counts["requests"] += 1
            self._counts["errors"] += 1
        if self._emf_namespace is not None:
            self._emit({"Error": (1, "Count")}, {"route": route, "error": kind})

    def record_feedback(self, *, wrong: bool) -> None:
        """Count a verdict on a served answer."""
        with self._lock:
            self._counts["feedback_wrong" if wrong else "feedback_right"] += 1
        if self._emf_namespace is not None:
            self._emit({"FeedbackWrong": (int(wrong), "Count"), "FeedbackRight": (int(not wrong), "Count")}, {})

    def _emit(self, values: dict[str, tuple[float, str]], properties: dict[str, object]) -> None:
        document: dict[str, object] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self._emf_namespace,
                        "Dimensions": [["Service"]],
                        "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()],
                    }
                ],
            },
            "Service": self._service,
            **{name: value for name, (value, _) in values.items()},
            **{k: v for k, v in properties.items() if v is not None},
        }
        self._write(json.dumps(document, separators=(",", ":")))

    def snapshot(self) -> dict[str, object]:
        """Counters, hit rate, latency percentiles and savings since start."""
        with self._lock:
            counts = dict(self._counts)
            lookup, llm = list(self._lookup_ms), list(self._llm_ms)
            tokens, dollars = self._tokens_saved, self._dollars_saved
        answered = counts["hit"] + counts["miss"] + counts["bypass"]
        return {
            **counts,
            "hit_rate": round(counts["hit"] / answered, 4) if answered else None,
            "lookup_ms": {"p50": _percentile(lookup, 0.5), "p99": _percentile(lookup, 0.99), "samples": len(lookup)},
            "llm_ms": {"p50": _percentile(llm, 0.5), "p99": _percentile(llm, 0.99), "samples": len(llm)},
            "tokens_saved": tokens,
            "dollars_saved": round(dollars, 6),
        }
