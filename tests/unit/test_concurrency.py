"""Single-flight of identical misses and micro-batching of embeddings."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence, Sized
from typing import cast

import numpy as np
import numpy.typing as npt
import pytest

from semcache.adapters.memory_store import MemoryStore
from semcache.bootstrap import build_policy
from semcache.core import service as service_module
from semcache.core.batching import EmbedBatcher
from semcache.core.errors import EmbedderError, UpstreamError
from semcache.core.models import Answer, CacheControl, CacheInfo, Completion, Entry, Message, Prompt, Usage
from semcache.core.service import (
    BUSY_REASONS,
    CACHE_FAULT,
    CACHE_FULL,
    EMBEDDER_BUSY,
    STORED_LATER,
    TOO_LONG,
    CacheService,
    Policy,
)
from semcache.metrics import Metrics
from semcache.settings import Settings
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


async def test_a_follower_never_gets_a_semantic_match_its_own_thresholds_reject() -> None:
    # The leader accepts a loose match (min_similarity 0.5); an identical request in flight with the default floor
    # (0.90) must not be handed that answer: it looks up for itself, misses, and asks the LLM.
    llm, embedder = SlowLLM(0.05), BagOfWordsEmbedder()
    service = CacheService(embedder=embedder, store=MemoryStore(), llm=llm, policy=Policy())
    await service.answer(ask("why is the ocean blue"), tenant="t")
    question, loose_floor = "why exactly is the ocean so very blue", CacheControl(min_similarity=0.5)
    loose, strict, same = await asyncio.gather(
        service.answer(ask(question), loose_floor, tenant="t"),
        service.answer(ask(question), tenant="t"),
        service.answer(ask(question), loose_floor, tenant="t"),
    )
    assert loose.cache.tier == "semantic"
    assert loose.cache.similarity is not None
    assert loose.cache.similarity < 0.9
    assert same.cache.tier == "semantic", "a follower with the same thresholds shares the leader's hit"
    assert strict.cache.status == "miss"
    assert strict.text == f"answer to {question}"
    assert len(llm.prompts) == 2
    assert len(embedder.calls) == 3, "stored, the leader's lookup, the strict one's own: the follower shares"


async def test_a_failed_leader_fails_its_followers_and_caches_nothing() -> None:
    llm = SlowLLM(0.05)
    llm.error = UpstreamError("boom", status=500)
    service = CacheService(embedder=BagOfWordsEmbedder(), store=MemoryStore(), llm=llm, policy=Policy())
    results = await asyncio.gather(*(service.answer(ask("q"), tenant="t") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, UpstreamError) for r in results)
    assert len(llm.prompts) == 1
    llm.error = None
    assert (await service.answer(ask("q"), tenant="t")).cache.status == "miss"


class GatedLLM(ScriptedLLM):
    """Holds every call until let go; says when a call has started."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    async def complete(self, prompt: Prompt) -> Completion:
        self.started.set()
        await self.go.wait()
        return await super().complete(prompt)


async def test_a_follower_answers_for_itself_when_its_leader_is_cancelled() -> None:
    # The leader's caller gave up (a client gone, a caller's own timeout): that says nothing about the question, so
    # the requests that joined it must not fail with it; one of them asks the LLM and the others share that.
    llm = GatedLLM()
    service = CacheService(embedder=BagOfWordsEmbedder(), store=MemoryStore(), llm=llm, policy=Policy())
    leader = asyncio.create_task(service.answer(ask("why is the sky blue"), tenant="t"))
    await llm.started.wait()
    followers = [asyncio.create_task(service.answer(ask("why is the sky blue"), tenant="t")) for _ in range(3)]
    await asyncio.sleep(0.01)  # the followers are waiting on the leader
    assert not any(f.done() for f in followers)
    leader.cancel()
    await asyncio.sleep(0.01)
    llm.go.set()
    answers = await asyncio.gather(*followers)
    assert {a.text for a in answers} == {"answer to why is the sky blue"}
    assert sorted(a.cache.status for a in answers) == ["hit", "hit", "miss"], [a.cache for a in answers]
    assert len(llm.prompts) == 1, "the cancelled call never finished; one follower made the only other"
    with pytest.raises(asyncio.CancelledError):
        await leader


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


async def test_texts_are_tokenised_once_and_batched_by_their_length_to_the_model() -> None:
    class Tokens(list[str]):
        pass

    class WordEmbedder(BagOfWordsEmbedder):
        """A text's length to this model is its number of words, whatever its number of characters."""

        def __init__(self) -> None:
            super().__init__()
            self.prepared: list[str] = []
            self.runs: list[list[str]] = []

        def prepare(self, text: str) -> Tokens:  # type: ignore[override]
            self.prepared.append(text)
            return Tokens(text.split())

        def embed_prepared(self, prepared: Sequence[Sized]) -> npt.NDArray[np.float32]:
            texts = [" ".join(cast(Tokens, p)) for p in prepared]
            self.runs.append(texts)
            return self.embed(texts)

    embedder = WordEmbedder()
    batcher = EmbedBatcher(embedder, max_batch=8, concurrency=1, length_spread=1.3)
    # The first has six words; the others three each, however long the words (5 to 40 characters): one length
    # to this model, so they share the second run, where lengths in characters would have split them.
    texts = ["this first text has six words", "a b c", "extraordinarily long words", "x y z",
             "incomprehensibilities notwithstanding ok"]  # fmt: skip
    await asyncio.gather(*(batcher.embed(embedder.prepare(t)) for t in texts))
    assert [set(run) for run in embedder.runs] == [{texts[0]}, set(texts[1:])]

    # Through the service, a new question is tokenised once: for its lookup, whose vector is also stored.
    embedder.prepared.clear()
    service = CacheService(embedder=embedder, store=MemoryStore(), llm=ScriptedLLM(), policy=Policy())
    await asyncio.gather(*(service.answer(ask(t), tenant="t") for t in texts))
    assert sorted(embedder.prepared) == sorted(texts), "each text tokenised once"


async def test_batching_regardless_of_length_is_still_possible() -> None:
    embedder = CountingEmbedder()
    batcher = EmbedBatcher(embedder, max_batch=16, concurrency=1, length_spread=float("inf"))
    await asyncio.gather(*(batcher.embed("x" * (1 + 10 * i)) for i in range(9)))
    assert embedder.batches == [9]


class SleepyEmbedder(BagOfWordsEmbedder):
    """Takes `per_text_s` of wall time per text, on the runner's thread, as a saturated model would."""

    def __init__(self, per_text_s: float) -> None:
        super().__init__()
        self.per_text_s = per_text_s
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        time.sleep(self.per_text_s * len(texts))
        self.texts += len(texts)
        return super().embed(texts)


async def test_the_backlog_is_zero_until_a_run_is_timed_then_grows_with_the_queue() -> None:
    batcher = EmbedBatcher(SleepyEmbedder(0.02), max_batch=1, concurrency=1)
    assert batcher.backlog_s() == 0.0
    await batcher.embed("first")  # times a run: about 20 ms a text
    assert batcher.backlog_s() == 0.0, "a free runner means no wait"
    waiting = [asyncio.ensure_future(batcher.embed(f"text {i}")) for i in range(10)]
    await asyncio.sleep(0)  # all queued, the first in its run
    assert 10 * 0.02 * 0.9 <= batcher.backlog_s() <= 10 * 0.02 * 10, "10 texts ahead at 20 ms or more each"
    await asyncio.gather(*waiting)
    assert batcher.backlog_s() == 0.0


async def test_a_burst_that_would_queue_past_the_budget_goes_to_the_llm_at_once() -> None:
    embedder = SleepyEmbedder(0.01)
    llm = ScriptedLLM()
    policy = Policy(min_similarity=0.95, embed_wait_budget_s=0.05)
    service = CacheService(
        embedder=embedder, store=MemoryStore(), llm=llm, policy=policy, embed_batch=1, embed_concurrency=1
    )
    await service.answer(ask("a first question to time the model"), tenant="t")
    texts = [f"alpha{i} bravo{i} charlie{i} delta{i}" for i in range(40)]  # no two alike
    answers = await asyncio.gather(*(service.answer(ask(t), tenant="t") for t in texts))
    assert [a.text for a in answers] == [f"answer to {t}" for t in texts], "every caller answered, by the LLM"
    assert all(a.cache.status == "miss" for a in answers)
    skipped = [a for a in answers if a.cache.reason in (EMBEDDER_BUSY, STORED_LATER)]
    assert len(skipped) >= 20, "a queue of 40 x 10 ms against a 50 ms budget: most skip the semantic tier"
    assert len(skipped) <= 38, "those queued within the budget are looked up"
    assert embedder.texts < 1 + len(texts), "skipped lookups embed nothing while the model is saturated"
    for a in skipped:  # stored at once if the model had caught up when the LLM answered, else later
        assert (a.cache.entry_id is None) == (a.cache.reason == STORED_LATER)
    assert any(a.cache.reason == STORED_LATER for a in skipped), "the LLM answered at once: the model was still busy"
    await asyncio.wait_for(service.stored(), timeout=10)
    assert service.deferred == 0
    repeats = await asyncio.gather(*(service.answer(ask(t), tenant="t") for t in texts))
    assert all((r.cache.status, r.cache.tier) == ("hit", "exact") for r in repeats), "every answer was kept"
    assert len(llm.prompts) == 1 + len(texts)


async def test_a_flush_drops_the_answers_waiting_to_be_stored() -> None:
    embedder = SleepyEmbedder(0.01)
    policy = Policy(min_similarity=0.95, embed_wait_budget_s=0.05)
    service = CacheService(
        embedder=embedder, store=MemoryStore(), llm=ScriptedLLM(), policy=policy, embed_batch=1, embed_concurrency=1
    )
    await service.answer(ask("a first question to time the model"), tenant="t")
    texts = [f"india{i} juliet{i} kilo{i} lima{i}" for i in range(40)]
    answers = await asyncio.gather(*(service.answer(ask(t), tenant="t") for t in texts))
    later = [t for t, a in zip(texts, answers, strict=True) if a.cache.reason == STORED_LATER]
    assert later, "the LLM answered at once: the model was still busy"
    assert service.deferred
    await service.flush(tenant="t")
    assert service.deferred == 0
    await asyncio.wait_for(service.stored(), timeout=10)
    assert service.deferred == 0
    again = await asyncio.gather(*(service.answer(ask(t), tenant="t") for t in later))
    assert not any(a.cache.status == "hit" for a in again), "a flushed tenant's deferred answers were not stored"


class BuggyStore(MemoryStore):
    """Fails to store one entry with an error that is not a StoreError (a bug)."""

    async def put(self, entry: Entry, vector: object, ttl_seconds: int) -> None:  # type: ignore[override]
        if "bad" in entry.query:
            raise RuntimeError("a bug in writing")
        await super().put(entry, vector, ttl_seconds)  # type: ignore[arg-type]


async def test_a_fault_storing_one_deferred_answer_loses_only_that_one() -> None:
    policy = Policy(min_similarity=0.95, embed_wait_budget_s=0.05)
    service = CacheService(embedder=SleepyEmbedder(0.01), store=BuggyStore(), llm=ScriptedLLM(), policy=policy,
                           embed_batch=1, embed_concurrency=1)  # fmt: skip
    await service.answer(ask("a first question to time the model"), tenant="t")
    texts = [f"mike{i} november{i} oscar{i} {'bad' if i == 20 else 'papa'}{i}" for i in range(40)]
    answers = await asyncio.gather(*(service.answer(ask(t), tenant="t") for t in texts))
    later = [t for t, a in zip(texts, answers, strict=True) if a.cache.reason == STORED_LATER]
    assert texts[20] in later, "the model was free by the time the LLM answered it"
    assert later[-1] != texts[20], "no deferred answer came after the faulty one"
    await asyncio.wait_for(service.stored(), timeout=10)
    assert service.deferred == 0
    again = await asyncio.gather(*(service.answer(ask(t), tenant="t") for t in later))
    served = {t for t, a in zip(later, again, strict=True) if a.cache.tier == "exact"}
    assert served == set(later) - {texts[20]}, "the answers deferred after the faulty one were stored all the same"


async def test_closing_the_service_stops_its_deferred_stores() -> None:
    policy = Policy(min_similarity=0.95, embed_wait_budget_s=0.05)
    service = CacheService(embedder=SleepyEmbedder(0.01), store=MemoryStore(), llm=ScriptedLLM(), policy=policy,
                           embed_batch=1, embed_concurrency=1)  # fmt: skip
    await service.answer(ask("a first question to time the model"), tenant="t")
    await asyncio.gather(*(service.answer(ask(f"mike{i} november{i} oscar{i}"), tenant="t") for i in range(40)))
    assert service.deferred
    await service.close()
    assert service.deferred == 0


async def test_a_skipped_lookup_stores_its_answer_once_the_model_has_caught_up() -> None:
    embedder = SleepyEmbedder(0.01)
    policy = Policy(min_similarity=0.95, embed_wait_budget_s=0.03)
    service = CacheService(
        embedder=embedder, store=MemoryStore(), llm=SlowLLM(0.5), policy=policy, embed_batch=1, embed_concurrency=1
    )
    await service.answer(ask("a first question to time the model"), tenant="t")
    texts = [f"echo{i} foxtrot{i} golf{i} hotel{i}" for i in range(20)]
    answers = await asyncio.gather(*(service.answer(ask(t), tenant="t") for t in texts))
    skipped = [(t, a) for t, a in zip(texts, answers, strict=True) if a.cache.reason == EMBEDDER_BUSY]
    assert skipped, "some lookups were skipped"
    for text, a in skipped:  # the queue had drained in the LLM's 0.5 s: stored, and served next time
        assert a.cache.entry_id is not None
        again = await service.answer(ask(text), tenant="t")
        assert (again.cache.status, again.cache.tier) == ("hit", "exact")
    idle = await service.answer(ask("a question asked when nothing else is"), tenant="t")
    assert idle.cache.reason not in BUSY_REASONS  # looked up: its reason says why the nearest was not served
    assert str(idle.cache.reason).startswith("nearest stored question too far")


def test_the_wait_budget_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="embed_wait_budget_s"):
        Policy(embed_wait_budget_s=-1)


def record_misses(*reasons: str | None) -> tuple[dict[str, object], list[dict[str, object]]]:
    """Metrics of one miss per reason: the counts, and each answer's EMF document."""
    lines: list[str] = []
    metrics = Metrics(emf_namespace="test", write=lines.append)
    for reason in reasons:
        answer = Answer(text="a", model="m", usage=Usage(1, 1), cache=CacheInfo(status="miss", reason=reason))
        metrics.record(answer, route="/api/query")
    return metrics.snapshot(), [json.loads(line) for line in lines]


def test_metrics_count_the_lookups_skipped_for_a_busy_embedder() -> None:
    counts, emf = record_misses(EMBEDDER_BUSY, STORED_LATER, None)
    assert counts["lookup_skipped_busy"] == 2
    assert [doc["LookupSkippedBusy"] for doc in emf] == [1, 1, 0]


def test_metrics_count_the_lookups_of_texts_too_long_to_embed() -> None:
    counts, emf = record_misses(TOO_LONG, EMBEDDER_BUSY, None)
    assert (counts["lookup_skipped_too_long"], counts["lookup_skipped_busy"]) == (1, 1)
    assert [doc["LookupSkippedTooLong"] for doc in emf] == [1, 0, 0]


def test_metrics_count_the_answers_a_full_store_refused() -> None:
    counts, emf = record_misses(CACHE_FULL, None)
    assert counts["not_stored_full"] == 1
    assert [doc["NotStoredFull"] for doc in emf] == [1, 0]


def test_metrics_count_the_faults_of_the_cache() -> None:
    counts, emf = record_misses(CACHE_FAULT, CACHE_FULL, None)
    assert (counts["cache_faults"], counts["not_stored_full"]) == (1, 1)
    assert [doc["CacheFault"] for doc in emf] == [1, 0, 0]


def test_the_wait_budget_is_set_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMCACHE_EMBED_WAIT_BUDGET_MS", "40")
    assert build_policy(Settings()).embed_wait_budget_s == pytest.approx(0.04)
    assert build_policy(Settings(matcher="cosine")).embed_wait_budget_s == pytest.approx(0.04)
    monkeypatch.setenv("SEMCACHE_EMBED_WAIT_BUDGET_MS", "-1")
    with pytest.raises(ValueError, match="embed_wait_budget_ms"):
        Settings()


async def test_an_inline_batcher_embeds_on_the_callers_thread_and_reports_failures_as_embedder_errors() -> None:
    threads: list[int] = []

    class Recording(BagOfWordsEmbedder):
        def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
            threads.append(threading.get_ident())
            if self.fail:
                raise RuntimeError("model file corrupt")
            return super().embed(texts)

    embedder = Recording()
    batcher = EmbedBatcher(embedder, inline=True)
    vector = await batcher.embed("one text")
    assert np.allclose(vector, BagOfWordsEmbedder().embed(["one text"])[0])
    assert threads == [threading.get_ident()]
    assert batcher.backlog_s() == 0.0
    embedder.fail = True
    with pytest.raises(EmbedderError, match="model file corrupt"):
        await batcher.embed("another")


def test_the_deferred_answers_are_bounded_in_number_and_in_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "DEFERRED_MAX", 3)
    monkeypatch.setattr(service_module, "DEFERRED_MAX_CHARS", 100)
    deferred = service_module._Deferred()

    def entry(i: int, size: int) -> Entry:
        return Entry(id=f"e{i}", scope="s", query="q", response="a" * (size - 1), model="m", usage=Usage(1, 1),
                     created_at=0.0, tenant="t")  # fmt: skip

    for i in range(4):
        deferred.add("q", entry(i, 10), ttl=60)
    assert [e.id for _, e, _ in deferred.take(10)] == ["e1", "e2", "e3"], "the oldest went first"
    assert (len(deferred), deferred.chars) == (0, 0)
    deferred.add("q", entry(4, 60), ttl=60)
    deferred.add("q", entry(5, 50), ttl=60)  # 110 characters in all: e4 goes
    assert (len(deferred), deferred.chars) == (1, 50)
    deferred.add("q", entry(6, 20), ttl=60)
    deferred.drop(lambda e: e.id == "e5")
    assert (len(deferred), deferred.chars) == (1, 20)


async def test_a_text_whose_vector_is_kept_is_looked_up_while_the_model_is_saturated() -> None:
    embedder = SleepyEmbedder(0.01)
    policy = Policy(min_similarity=0.5, embed_wait_budget_s=0.05)
    service = CacheService(
        embedder=embedder, store=MemoryStore(), llm=ScriptedLLM(), policy=policy, embed_batch=1, embed_concurrency=1,
        recent_embeddings=64,
    )  # fmt: skip
    await service.answer(ask("how do I reset my gmail password"), tenant="t")
    paraphrase = ask("how do I reset my gmail password please")
    assert (await service.answer(paraphrase, tenant="t")).cache.tier == "semantic"
    burst = [service.answer(ask(f"mike{i} november{i} oscar{i} papa{i}"), tenant="t") for i in range(40)]
    *others, again = await asyncio.gather(*burst, service.answer(paraphrase, tenant="t"))
    assert any(a.cache.reason in (EMBEDDER_BUSY, STORED_LATER) for a in others), "the model was saturated"
    assert again.cache.tier == "semantic", "its vector was kept: no model run to wait for"
