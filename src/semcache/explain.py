"""Why the cache would, or would not, serve one question's answer for another: `semcache explain`.

The verdict comes from the service itself, not from a copy of its rules: a CacheService with the configured embedder
and policy, an in-memory store and an LLM stand-in stores the first question's answer and is then asked the second,
as a tenant's requests would be (same model, same options, so the same scope). Beside that verdict the figures behind
it are given: the cosine of the two texts, the rule that rules the pair out if one does, and the networks' confidence
against the threshold, so that a near miss (or a surprising hit) can be read and reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from semcache.adapters.memory_store import MemoryStore
from semcache.core.fingerprint import normalize_text
from semcache.core.models import Completion, Message, Prompt, Usage
from semcache.core.ports import Embedder, StreamSink
from semcache.core.service import CacheService, Policy

TENANT = "explain"
MODEL = "explain-model"


class _Echo:
    """An LLM stand-in: every answer is complete, so the first question's answer is stored."""

    async def complete(self, prompt: Prompt, *, on_event: StreamSink | None = None) -> Completion:
        return Completion(f"the answer to {prompt.text}", prompt.model, Usage(1, 1), True)


def _ask(text: str) -> Prompt:
    return Prompt(model=MODEL, messages=(Message("user", text),))


async def explain(stored: str, asked: str, *, embedder: Embedder, policy: Policy) -> dict[str, Any]:
    """Whether asked would be served stored's answer, and the figures the service judged by.

    served: the service's verdict; tier: exact or semantic; reason: the service's reason on a miss, when it gives
    one; kept: whether stored's answer was stored at all; freshness: how each was judged (a volatile question is
    served only to an exact repeat, within its short TTL). cosine: of the two normalised texts (None if either is
    too long to embed); rule: the rule that rules the pair out (CacheService.rule_against: "unread", or the
    verifier's; None if none does); confidence: the networks' probability that the two are the same question,
    worked out even when a rule or the cosine floor decides first; threshold and min_cosine: what the policy asks
    (a tenant whose verdicts have raised its threshold asks more: semcache.core.calibration).
    """
    service = CacheService(embedder=embedder, store=MemoryStore(), llm=_Echo(), policy=policy, embed_inline=True)
    try:
        first = await service.answer(_ask(stored), tenant=TENANT)
        second = await service.answer(_ask(asked), tenant=TENANT)
    finally:
        await service.close()
    a, b = normalize_text(stored), normalize_text(asked)
    prepared = [embedder.prepare(t) for t in (a, b)]
    verifier = policy.verifier
    cosine = rule = confidence = None
    if prepared[0] is not None and prepared[1] is not None:
        u, v = embedder.embed_prepared([prepared[1]])[0], embedder.embed_prepared([prepared[0]])[0]
        cosine = round(float(np.dot(u, v)), 4)
        rule = service.rule_against(b, a)
        if verifier is not None:
            confidence = round(verifier.networks(b, [a], u, [v])[0], 4)
    info = second.cache
    return {
        "stored": stored,
        "asked": asked,
        "served": info.status == "hit",
        "tier": info.tier,
        "reason": info.reason,
        "kept": first.cache.entry_id is not None,
        "freshness": {"stored": first.cache.freshness, "asked": info.freshness},
        "cosine": cosine,
        "min_cosine": policy.min_similarity,
        "rule": rule,
        "confidence": confidence,
        "threshold": policy.confidence_threshold,
    }
