"""Single-flight of identical misses and micro-batching of embeddings."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from semcache.adapters.memory_store import MemoryStore
from semcache.core.batching import EmbedBatcher
from semcache.core.errors import EmbedderError, UpstreamError
from semcache.core.models import Completion, Message, Prompt
from semcache.core.service import CacheService, Policy
from tests.fakes import BagOfWordsEmbedder, ScriptedLLM

pytestmark = pytest.mark.anyio


class SlowLLM(ScriptedLLM):
    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def complete(self, prompt: Prompt) -> Completion:
        await asyncio.sleep(self.delay_s)
        return await super().complete(prompt)


def ask(text: str) -> Prompt:
    return Prompt(model="m", messages=(Message("user", text),))


async def test_identical_concurrent_misses_make_one_llm_call() -> None:
    llm = SlowLLM(0.2)
    service = CacheService(embedder=BagOfWordsEmbedder(), store=MemoryStore(), llm=llm, policy=Policy())
    answers = await asyncio.gather(*(service.answer(ask("why is the sky blue"), tenant="t") for _ in range(50)))
    assert len(llm.prompts) == 1
    assert {a.text for a in answers} == {"answer to why is the sky blue"}
    statuses = sorted(a.cache.status for a in answers)
    assert statuses.count("miss") == 1
    assert statuses.count("hit") == 49
    assert sum(a.usage.total_tokens > 0 for a in answers) == 1, "only the leader consumed tokens"


async def test_different_questions_or_tenants_are_not_coalesced() -> None:
    llm = SlowLLM(0.05)
    service = CacheService(embedder=BagOfWordsEmbedder(), store=MemoryStore(), llm=llm, policy=Policy())
    await asyncio.gather(
        service.answer(ask("q one"), tenant="a"),
        service.answer(ask("q one"), tenant="b"),
        service.answer(ask("q two"), tenant="a"),
    )
    assert len(llm.prompts) == 3


async def test_a_failed_leader_fails_its_followers_and_caches_nothing() -> None:
    llm = SlowLLM(0.05)
    llm.error = UpstreamError("boom", status=500)
    service = CacheService(embedder=BagOfWordsEmbedder(), store=MemoryStore(), llm=llm, policy=Policy())
    results = await asyncio.gather(*(service.answer(ask("q"), tenant="t") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, UpstreamError) for r in results)
    assert len(llm.prompts) == 1
    llm.error = None
    assert (await service.answer(ask("q"), tenant="t")).cache.status == "miss"


class CountingEmbedder(BagOfWordsEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.batches.append(len(texts))
        return super().embed(texts)


async def test_concurrent_embeddings_share_model_runs_and_get_their_own_vectors() -> None:
    embedder = CountingEmbedder()
    batcher = EmbedBatcher(embedder, max_batch=8, concurrency=1)
    texts = [f"text number {i} with {'x ' * (i % 5)}" for i in range(40)]
    vectors = await asyncio.gather(*(batcher.embed(t) for t in texts))
    assert len(embedder.batches) < len(texts)
    assert max(embedder.batches) <= 8
    reference = BagOfWordsEmbedder().embed(texts)
    assert np.allclose(np.stack(vectors), reference)


async def test_a_lone_embedding_runs_at_once() -> None:
    embedder = CountingEmbedder()
    batcher = EmbedBatcher(embedder)
    await batcher.embed("alone")
    assert embedder.batches == [1]


async def test_embedder_failure_reaches_every_waiting_caller() -> None:
    embedder = CountingEmbedder()
    embedder.fail = True
    batcher = EmbedBatcher(embedder, max_batch=4)
    results = await asyncio.gather(*(batcher.embed(f"t{i}") for i in range(6)), return_exceptions=True)
    assert all(isinstance(r, EmbedderError) for r in results)


async def test_the_service_embeds_through_the_batcher() -> None:
    embedder = CountingEmbedder()
    service = CacheService(embedder=embedder, store=MemoryStore(), llm=ScriptedLLM(), policy=Policy(), embed_batch=8)
    await asyncio.gather(*(service.answer(ask(f"distinct question {i} about {i * 7}"), tenant="t") for i in range(24)))
    assert sum(embedder.batches) >= 24
    assert len(embedder.batches) < sum(embedder.batches), "concurrent requests should share model runs"


async def test_a_batch_holds_texts_of_about_the_same_length_oldest_first() -> None:
    class RecordingEmbedder(BagOfWordsEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.runs: list[list[str]] = []

        def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
            self.runs.append(list(texts))
            return super().embed(texts)

    embedder = RecordingEmbedder()
    batcher = EmbedBatcher(embedder, max_batch=8, concurrency=1, length_spread=1.5)
    short = [f"short {i}" for i in range(6)]
    long = [f"a much longer text, number {i}, that would make the short ones pad to its length" for i in range(6)]
    texts = ["first, alone", *[t for pair in zip(short, long, strict=True) for t in pair]]
    vectors = await asyncio.gather(*(batcher.embed(t) for t in texts))
    assert np.allclose(np.stack(vectors), BagOfWordsEmbedder().embed(texts))
    # Oldest first: "first, alone" heads the first run, and the short texts (outside its spread) wait; then the
    # oldest waiting text, "short 0", takes the other short ones, and the long ones run together last.
    assert [set(run) for run in embedder.runs] == [{"first, alone"}, set(short), set(long)]


async def test_batching_regardless_of_length_is_still_possible() -> None:
    embedder = CountingEmbedder()
    batcher = EmbedBatcher(embedder, max_batch=16, concurrency=1, length_spread=float("inf"))
    await asyncio.gather(*(batcher.embed("x" * (1 + 10 * i)) for i in range(9)))
    assert embedder.batches == [9]
