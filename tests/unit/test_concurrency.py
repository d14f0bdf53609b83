"""Single-flight of identical misses and micro-batching of embeddings."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from semcache.adapters.memory_store import MemoryStore
from semcache.core.batching import EmbedBatcher
from semcache.core.errors import EmbedderError, UpstreamError
from semcache.core.models import Completion, Entry, Message, Prompt
from semcache.core.ports import Abort
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

    def embed(self, texts: Sequence[str], abort: Abort | None = None) -> npt.NDArray[np.float32]:
        self.batches.append(len(texts))
        return super().embed(texts, abort)


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


class StoppableEmbedder(BagOfWordsEmbedder):
    """Takes `run_s` per call unless aborted first; records which calls were aborted."""

    def __init__(self, run_s: float) -> None:
        super().__init__()
        self.run_s = run_s
        self.started = threading.Event()
        self.aborted: list[list[str]] = []

    def embed(self, texts: Sequence[str], abort: Abort | None = None) -> npt.NDArray[np.float32]:
        stop = threading.Event()
        if abort is not None:
            abort.on_abort(stop.set)
        self.started.set()
        if stop.wait(self.run_s):
            self.aborted.append(list(texts))
            raise EmbedderError("embedding aborted")
        return super().embed(texts)


async def wait_for(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 5), "the embedder never started"


async def test_a_run_whose_callers_all_gave_up_is_aborted_and_the_batcher_goes_on() -> None:
    embedder = StoppableEmbedder(run_s=30)
    batcher = EmbedBatcher(embedder)
    task = asyncio.ensure_future(batcher.embed("nobody will wait for this"))
    await wait_for(embedder.started)
    task.cancel()
    embedder.run_s = 0  # the next call runs normally
    vector = await asyncio.wait_for(batcher.embed("next"), 5)  # would wait 30 s behind an unaborted run
    assert embedder.aborted == [["nobody will wait for this"]]
    assert vector.shape == (embedder.dim,)


async def test_a_shared_run_goes_on_while_one_caller_still_waits() -> None:
    embedder = StoppableEmbedder(run_s=0.3)
    batcher = EmbedBatcher(embedder, max_batch=8)
    blocker = asyncio.ensure_future(batcher.embed("first, alone"))
    await wait_for(embedder.started)
    # These two queue behind the first run and then share one.
    leaving, staying = asyncio.ensure_future(batcher.embed("leaves")), asyncio.ensure_future(batcher.embed("stays"))
    await asyncio.sleep(0)
    leaving.cancel()
    await blocker
    assert (await staying).shape == (embedder.dim,)
    assert embedder.aborted == []


class SlowProbeStore(MemoryStore):
    """A store whose exact probe takes a while, as a network round trip does."""

    probe_s = 0.0

    async def get(self, entry_id: str) -> Entry | None:
        await asyncio.sleep(self.probe_s)
        return await super().get(entry_id)


async def test_an_exact_hit_abandons_the_embedding_started_beside_the_probe() -> None:
    embedder = StoppableEmbedder(run_s=0)
    store = SlowProbeStore()
    service = CacheService(embedder=embedder, store=store, llm=ScriptedLLM(), policy=Policy())
    question = ask("How far is the Moon from the Earth?")
    assert (await service.answer(question, tenant="t")).cache.status == "miss"
    embedder.run_s, embedder.started, store.probe_s = 30, threading.Event(), 0.2
    answer = await asyncio.wait_for(service.answer(question, tenant="t"), 5)  # not 30 s: the run was stopped
    assert (answer.cache.status, answer.cache.tier) == ("hit", "exact")
    assert embedder.started.is_set(), "the embedding should have started while the probe was under way"
    for _ in range(100):  # the worker thread records the abort
        if embedder.aborted:
            break
        await asyncio.sleep(0.01)
    assert embedder.aborted == [["How far is the Moon from the Earth?"]]


async def test_a_semantic_lookup_overlaps_the_probe_and_the_embedding() -> None:
    embedder = StoppableEmbedder(run_s=0)
    seen_at_probe_end: list[bool] = []

    class WatchingStore(SlowProbeStore):
        async def get(self, entry_id: str) -> Entry | None:
            found = await super().get(entry_id)
            seen_at_probe_end.append(embedder.started.is_set())
            return found

    store = WatchingStore()
    store.probe_s = 0.2
    service = CacheService(embedder=embedder, store=store, llm=ScriptedLLM(), policy=Policy())
    answer = await service.answer(ask("What is the boiling point of water at sea level?"), tenant="t")
    assert answer.cache.status == "miss"
    assert seen_at_probe_end == [True], "the embedding should start while the exact probe is under way"
    assert embedder.calls == ["What is the boiling point of water at sea level?"]  # one embedding, reused to store
