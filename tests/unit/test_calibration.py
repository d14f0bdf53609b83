"""Verdicts that calibrate a tenant's confidence threshold: the rule, the per-process cache, and the service."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from semcache.adapters.memory_store import MemoryStore
from semcache.core.calibration import TenantThresholds, bucket, calibrated_threshold, wilson_lower
from semcache.core.errors import StoreError
from semcache.core.models import CacheControl, Message, Prompt
from semcache.core.service import CacheService, Policy
from semcache.core.verifier import LEXICAL_FEATURES, Verifier
from tests.fakes import BagOfWordsEmbedder, ScriptedLLM

pytestmark = pytest.mark.anyio


def test_wilson_lower_bound() -> None:
    assert wilson_lower(0, 0) == 0.0
    assert wilson_lower(0, 10) == 0.0
    assert wilson_lower(1, 1) == pytest.approx(0.2065, abs=1e-4)
    assert wilson_lower(5, 10) == pytest.approx(0.2366, abs=1e-4)
    assert wilson_lower(1, 3) == pytest.approx(0.0615, abs=1e-4)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, 0.825),  # no verdicts: the shipped threshold
        ({90: (0, 1)}, 0.91),  # one wrong hit at 0.90 and nothing else: above it
        ({90: (2, 1)}, 0.825),  # outweighed by right ones (error 1/3, lower bound 0.06)
        ({95: (10, 0), 85: (0, 1)}, 0.825),  # one wrong among eleven: no evidence
        ({85: (1, 3), 97: (5, 0)}, 0.86),  # wrong below 0.86, right above
        ({99: (0, 2)}, 1.0),  # wrong even at the top: no semantic hits
        ({50: (0, 9)}, 0.825),  # below the threshold, never served: says nothing
    ],
)
def test_the_threshold_rises_only_on_evidence(counts: dict[int, tuple[int, int]], expected: float) -> None:
    assert calibrated_threshold(counts, 0.825, 0.10) == pytest.approx(expected)


def test_a_max_error_of_one_turns_calibration_off() -> None:
    assert calibrated_threshold({99: (0, 50)}, 0.825, 1.0) == 0.825


def test_buckets() -> None:
    assert (bucket(0.0), bucket(0.829), bucket(0.83), bucket(1.0)) == (0, 82, 83, 99)


async def test_thresholds_answer_at_once_and_refresh_in_the_background() -> None:
    now = [0.0]
    reads: list[str] = []
    counts = {"t": {90: (0, 1)}}

    async def read(tenant: str) -> dict[int, tuple[int, int]]:
        reads.append(tenant)
        return counts.get(tenant, {})

    thresholds = TenantThresholds(read, max_error=0.1, refresh_s=30, monotonic=lambda: now[0])
    assert thresholds.get("t", 0.8) == 0.8, "never read: the base, without waiting"
    assert thresholds.get("t", 0.8) == 0.8
    await asyncio.sleep(0)
    assert reads == ["t"], "one read in flight per tenant"
    assert thresholds.get("t", 0.8) == pytest.approx(0.91)
    counts["t"] = {90: (2, 1)}
    now[0] = 29.0
    assert thresholds.get("t", 0.8) == pytest.approx(0.91)
    await asyncio.sleep(0)
    assert reads == ["t"], "fresh: not read again"
    now[0] = 30.0
    thresholds.get("t", 0.8)
    await asyncio.sleep(0)
    assert thresholds.get("t", 0.8) == 0.8
    assert reads == ["t", "t"]


async def test_a_failed_read_keeps_the_last_value_for_a_while(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    calls = 0

    async def read(tenant: str) -> dict[int, tuple[int, int]]:
        nonlocal calls
        calls += 1
        raise StoreError("down")

    thresholds = TenantThresholds(read, max_error=0.1, refresh_s=30, monotonic=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="semcache"):
        assert thresholds.get("t", 0.8) == 0.8
        await asyncio.sleep(0)
        assert thresholds.get("t", 0.8) == 0.8
        await asyncio.sleep(0)
    assert calls == 1, "a failed read is not retried on every lookup"
    assert "could not read the verdicts of tenant t" in caplog.text


def cosine_verifier(dim: int) -> Verifier:
    """A real Verifier whose probability is sigmoid(20 * (cosine - 0.85)): predictable confidences."""
    n = 1 + 2 * dim + LEXICAL_FEATURES
    w1 = np.zeros((n, 1), np.float32)
    w1[0, 0] = 1.0
    return Verifier(
        version="test-cosine",
        mean=np.zeros(n, np.float32),
        scale=np.ones(n, np.float32),
        w1=w1,
        b1=np.zeros(1, np.float32),
        w2=np.array([20.0], np.float32),
        b2=-17.0,
        threshold=0.5,
        min_cosine=0.3,
    )


def ask(text: str) -> Prompt:
    return Prompt(model="m", messages=(Message("user", text),))


@pytest.fixture
def service() -> CacheService:
    embedder = BagOfWordsEmbedder()
    policy = Policy(ttl_seconds=60, min_similarity=0.3, verifier=cosine_verifier(embedder.dim))
    return CacheService(embedder=embedder, store=MemoryStore(), llm=ScriptedLLM(), policy=policy)


STORED, PARAPHRASE = "how do I reset my email password", "how do I reset my email password please"


async def test_a_wrong_verdict_on_a_semantic_hit_raises_that_tenants_threshold(service: CacheService) -> None:
    for tenant in ("t", "u"):
        await service.answer(ask(STORED), tenant=tenant)
    hit = await service.answer(ask(PARAPHRASE), tenant="t")
    assert hit.cache.tier == "semantic"
    assert hit.cache.confidence is not None
    assert hit.cache.entry_id is not None

    verdict = await service.feedback(hit.cache.entry_id, wrong=True, tenant="t", query=PARAPHRASE)
    assert verdict.removed
    assert verdict.confidence == pytest.approx(hit.cache.confidence, abs=1e-5)
    assert verdict.threshold is not None
    assert verdict.threshold > hit.cache.confidence

    await service.answer(ask(STORED), tenant="t")  # stored again
    again = await service.answer(ask(PARAPHRASE), tenant="t")
    assert again.cache.status == "miss", "the same pair is no longer served to this tenant"
    other = await service.answer(ask(PARAPHRASE), tenant="u")
    assert other.cache.tier == "semantic", "another tenant's threshold is its own"
    explicit = await service.answer(ask(PARAPHRASE + " now"), CacheControl(min_confidence=0.5), tenant="t")
    assert explicit.cache.tier == "semantic", "a request's explicit threshold wins"

    (example,) = await service.feedback_log("t")
    assert example["a"] == STORED
    assert example["b"] == PARAPHRASE
    assert example["duplicate"] is False
    assert await service.feedback_log("u") == []


async def test_right_verdicts_bring_the_threshold_back(service: CacheService) -> None:
    first = await service.answer(ask(STORED), tenant="t")
    assert first.cache.entry_id is not None
    entry = first.cache.entry_id
    raised = await service.feedback(entry, wrong=True, tenant="t", query=PARAPHRASE)
    assert raised.threshold is not None
    assert raised.threshold > 0.5
    await service.answer(ask(STORED), tenant="t")
    right = await service.feedback(entry, wrong=False, tenant="t", query=PARAPHRASE)
    assert not right.removed
    assert right.threshold == 0.5, "one wrong in two is not shown (Wilson, 95%) to exceed 10%"
    assert (await service.answer(ask(PARAPHRASE), tenant="t")).cache.tier == "semantic"


async def test_verdicts_that_say_nothing_about_the_matcher_are_not_counted(service: CacheService) -> None:
    first = await service.answer(ask(STORED), tenant="t")
    assert first.cache.entry_id is not None
    elsewhere = await service.feedback(first.cache.entry_id, wrong=True, tenant="u", query=PARAPHRASE)
    assert not elsewhere.removed, "another tenant's entry: nothing happens"
    assert elsewhere.confidence is None
    exact = await service.feedback(first.cache.entry_id, wrong=True, tenant="t", query=f" {STORED} ")
    assert exact.removed
    assert exact.confidence is None, "an exact hit's verdict is on the answer, not the matcher"
    assert await service.feedback_log("t") == []
