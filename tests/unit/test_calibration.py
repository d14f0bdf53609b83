"""Verdicts that calibrate a tenant's confidence threshold: the rule, the per-process cache, and the service."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from semcache.adapters.memory_store import MemoryStore
from semcache.core.calibration import (
    VERDICTS_TTL_S,
    TenantThresholds,
    bucket,
    calibrated_threshold,
    wilson_lower,
)
from semcache.core.errors import StoreError
from semcache.core.models import CacheControl, Message, Prompt, Verdict
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
        ({90: (0, 2)}, 0.825),  # two wrong marks are not enough evidence (MIN_WRONG)
        ({90: (0, 3)}, 0.91),  # three wrong hits at 0.90 and nothing else: above them
        ({90: (2, 3)}, 0.91),  # three wrong in five (lower bound 0.23)
        ({90: (8, 3)}, 0.825),  # outweighed by right ones (three in eleven: lower bound 0.0975)
        ({95: (10, 0), 85: (0, 1)}, 0.825),  # one wrong among eleven: no evidence
        ({85: (1, 3), 97: (5, 0)}, 0.86),  # wrong below 0.86 (three in nine: 0.12), right above
        ({99: (0, 3)}, 1.0),  # wrong even at the top: no semantic hits
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
    counts = {"t": {90: (0, 3)}}

    async def read(tenant: str) -> dict[int, tuple[int, int]]:
        reads.append(tenant)
        return counts.get(tenant, {})

    thresholds = TenantThresholds(read, base=0.8, max_error=0.1, refresh_s=30, monotonic=lambda: now[0])
    assert thresholds.get("t") == 0.8, "never read: the base, without waiting"
    assert thresholds.get("t") == 0.8
    await asyncio.sleep(0)
    assert reads == ["t"], "one read in flight per tenant"
    assert thresholds.get("t") == pytest.approx(0.91)
    counts["t"] = {90: (30, 3)}
    now[0] = 29.0
    assert thresholds.get("t") == pytest.approx(0.91)
    await asyncio.sleep(0)
    assert reads == ["t"], "fresh: not read again"
    now[0] = 30.0
    thresholds.get("t")
    await asyncio.sleep(0)
    assert thresholds.get("t") == 0.8
    assert reads == ["t", "t"]


async def test_a_failed_read_keeps_the_last_value_for_a_while(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    calls = 0

    async def read(tenant: str) -> dict[int, tuple[int, int]]:
        nonlocal calls
        calls += 1
        raise StoreError("down")

    thresholds = TenantThresholds(read, base=0.8, max_error=0.1, refresh_s=30, monotonic=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="semcache"):
        assert thresholds.get("t") == 0.8
        await asyncio.sleep(0)
        assert thresholds.get("t") == 0.8
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


async def mark(service: CacheService, tenant: str, *, wrong: bool, times: int) -> list[Verdict]:
    """Verdicts on the pair (STORED, PARAPHRASE), the entry stored again before each (a wrong one removes it)."""
    verdicts = []
    for _ in range(times):
        stored = await service.answer(ask(STORED), tenant=tenant)
        assert stored.cache.entry_id is not None
        verdicts.append(
            await service.feedback(
                stored.cache.entry_id, "wrong" if wrong else "right", tenant=tenant, query=PARAPHRASE
            )
        )
    return verdicts


async def test_wrong_verdicts_on_a_semantic_hit_raise_that_tenants_threshold(service: CacheService) -> None:
    for tenant in ("t", "u"):
        await service.answer(ask(STORED), tenant=tenant)
    hit = await service.answer(ask(PARAPHRASE), tenant="t")
    assert hit.cache.tier == "semantic"
    assert hit.cache.confidence is not None
    assert hit.cache.entry_id is not None

    embedder = service.embedder
    assert isinstance(embedder, BagOfWordsEmbedder)
    embedded = len(embedder.calls)
    first = await service.feedback(hit.cache.entry_id, "wrong", tenant="t", query=PARAPHRASE)
    assert embedder.calls[embedded:] == [PARAPHRASE], "the stored question's vector is read, not computed again"
    assert first.removed
    assert first.confidence == pytest.approx(hit.cache.confidence, abs=1e-5)
    assert first.threshold == 0.5, "one wrong mark is not evidence enough"
    *_, third = await mark(service, "t", wrong=True, times=2)
    assert third.threshold is not None
    assert third.threshold > hit.cache.confidence, "three are"

    await service.answer(ask(STORED), tenant="t")  # stored again
    again = await service.answer(ask(PARAPHRASE), tenant="t")
    assert again.cache.status == "miss", "the same pair is no longer served to this tenant"
    other = await service.answer(ask(PARAPHRASE), tenant="u")
    assert other.cache.tier == "semantic", "another tenant's threshold is its own"
    explicit = await service.answer(ask(PARAPHRASE + " now"), CacheControl(min_confidence=0.5), tenant="t")
    assert explicit.cache.tier == "semantic", "a request's explicit threshold wins"

    log = await service.feedback_log("t")
    assert len(log) == 3
    assert log[0]["a"] == STORED
    assert log[0]["b"] == PARAPHRASE
    assert log[0]["duplicate"] is False
    assert await service.feedback_log("u") == []


async def test_right_verdicts_bring_the_threshold_back(service: CacheService) -> None:
    *_, raised = await mark(service, "t", wrong=True, times=3)
    assert raised.threshold is not None
    assert raised.threshold > 0.5
    *_, seventh = await mark(service, "t", wrong=False, times=7)
    assert not seventh.removed
    assert seventh.threshold == raised.threshold, "three wrong in ten: still shown (lower bound 0.108)"
    (eighth,) = await mark(service, "t", wrong=False, times=1)
    assert eighth.threshold == 0.5, "three wrong in eleven is not shown (0.0975) to exceed 10%"
    await service.answer(ask(STORED), tenant="t")
    assert (await service.answer(ask(PARAPHRASE), tenant="t")).cache.tier == "semantic"


async def test_verdicts_are_forgotten_a_month_after_the_last_one() -> None:
    now = [1_000.0]
    embedder = BagOfWordsEmbedder()
    policy = Policy(ttl_seconds=60, min_similarity=0.3, verifier=cosine_verifier(embedder.dim))
    store = MemoryStore(clock=lambda: now[0])
    service = CacheService(embedder=embedder, store=store, llm=ScriptedLLM(), policy=policy, clock=lambda: now[0])
    *_, raised = await mark(service, "t", wrong=True, times=3)
    assert raised.threshold is not None
    assert raised.threshold > 0.5
    now[0] += VERDICTS_TTL_S - 1
    assert await store.verdicts("test-cosine|t") != {}
    now[0] += 1
    assert await store.verdicts("test-cosine|t") == {}, "the store forgets them, so the threshold returns to 0.5"


async def test_verdicts_that_say_nothing_about_the_matcher_are_not_counted(service: CacheService) -> None:
    first = await service.answer(ask(STORED), tenant="t")
    assert first.cache.entry_id is not None
    elsewhere = await service.feedback(first.cache.entry_id, "wrong", tenant="u", query=PARAPHRASE)
    assert not elsewhere.removed, "another tenant's entry: nothing happens"
    assert elsewhere.confidence is None
    exact = await service.feedback(first.cache.entry_id, "wrong", tenant="t", query=f" {STORED} ")
    assert exact.removed
    assert exact.confidence is None, "an exact hit's verdict is on the answer, not the matcher"
    assert await service.feedback_log("t") == []


async def test_closing_stops_the_refreshes_under_way() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def read(tenant: str) -> dict[int, tuple[int, int]]:
        started.set()
        try:
            await asyncio.Event().wait()  # a read that never returns: Redis black-holed
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    thresholds = TenantThresholds(read, base=0.8, max_error=0.1, refresh_s=30, monotonic=lambda: 0.0)
    assert thresholds.get("acme") == 0.8
    await started.wait()
    await asyncio.wait_for(thresholds.close(), timeout=5)
    assert cancelled.is_set(), "the store is closed after this: nothing may still be reading from it"


async def test_a_mismatch_keeps_the_entry_for_its_own_question_and_refuses_the_one_asked(
    service: CacheService,
) -> None:
    stored = await service.answer(ask(STORED), tenant="t")
    assert stored.cache.entry_id is not None
    hit = await service.answer(ask(PARAPHRASE), tenant="t")
    assert (hit.cache.tier, hit.cache.entry_id) == ("semantic", stored.cache.entry_id)
    verdict = await service.feedback(stored.cache.entry_id, "mismatch", tenant="t", query=PARAPHRASE)
    assert (verdict.removed, verdict.mismatched) == (False, True)
    assert verdict.confidence == pytest.approx(hit.cache.confidence, abs=1e-5)  # counted as a wrong match
    assert (await service.feedback_log("t"))[0]["duplicate"] is False
    own = await service.answer(ask(STORED), tenant="t")
    assert (own.cache.tier, own.cache.entry_id) == ("exact", stored.cache.entry_id), "kept for its own question"
    other = await service.answer(ask("how do I reset my email password now please"), tenant="t")
    assert (other.cache.tier, other.cache.entry_id) == ("semantic", stored.cache.entry_id), "others still served"
    refused = await service.answer(ask(PARAPHRASE), tenant="t")
    assert refused.cache.status == "miss", "never served to the question marked a mismatch"
    for query in (None, f" {STORED} "):  # a mismatch needs another question to refuse
        with pytest.raises(ValueError, match="mismatch"):
            await service.feedback(stored.cache.entry_id, "mismatch", tenant="t", query=query)
