from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest

from semcache.adapters.memory_store import MemoryStore
from semcache.core.errors import StoreError, StoreFull, UpstreamError
from semcache.core.fingerprint import entry_id, scope_fingerprint
from semcache.core.models import CacheControl, CacheInfo, CacheMode, Entry, Message, Prompt, Usage
from semcache.core.service import CACHE_FAULT, CACHE_FULL, TOO_LONG, CacheService, Policy
from tests.fakes import BagOfWordsEmbedder, ScriptedLLM

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FailingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.full = False

    async def get(self, entry_id: str):  # type: ignore[no-untyped-def]
        if self.down:
            raise StoreError("down")
        return await super().get(entry_id)

    async def put(self, entry, vector, ttl_seconds):  # type: ignore[no-untyped-def]
        if self.down:
            raise StoreError("down")
        if self.full:
            raise StoreFull("redis MULTI/EXEC refused for want of memory: OOM")
        await super().put(entry, vector, ttl_seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def embedder() -> BagOfWordsEmbedder:
    return BagOfWordsEmbedder()


@pytest.fixture
def llm() -> ScriptedLLM:
    return ScriptedLLM()


@pytest.fixture
def store(clock: Clock) -> FailingStore:
    s = FailingStore()
    s._clock = clock
    return s


@pytest.fixture
def service(embedder: BagOfWordsEmbedder, store: FailingStore, llm: ScriptedLLM, clock: Clock) -> CacheService:
    policy = Policy(ttl_seconds=60, min_similarity=0.8)
    return CacheService(embedder=embedder, store=store, llm=llm, policy=policy, clock=clock, monotonic=clock)


def ask(text: str, **kw: object) -> Prompt:
    return Prompt(model=str(kw.pop("model", "m")), messages=(Message("user", text),), **kw)  # type: ignore[arg-type]


async def test_miss_then_exact_hit_without_embedding(
    service: CacheService, llm: ScriptedLLM, embedder: BagOfWordsEmbedder
) -> None:
    first = await service.answer(ask("how do I reset my password"), tenant="t")
    assert first.cache.status == "miss"
    assert first.cache.ttl_seconds == 60
    embedded = len(embedder.calls)

    again = await service.answer(ask("how  do I reset my password "), tenant="t")
    assert (again.cache.status, again.cache.tier) == ("hit", "exact")
    assert again.text == first.text
    assert again.cache.entry_id == first.cache.entry_id
    assert again.usage.total_tokens == 0
    assert len(llm.prompts) == 1
    assert len(embedder.calls) == embedded, "an exact hit must not compute an embedding"


async def test_semantic_hit_above_threshold_only(service: CacheService, llm: ScriptedLLM) -> None:
    await service.answer(ask("how do I reset my gmail password"), tenant="t")
    near = await service.answer(ask("how do I reset my gmail password please"), tenant="t")
    assert (near.cache.status, near.cache.tier) == ("hit", "semantic")
    assert near.cache.similarity is not None
    assert near.cache.similarity >= 0.8
    assert near.cache.matched_query == "how do I reset my gmail password"

    far = await service.answer(ask("what is the weather in paris"), tenant="t")
    assert far.cache.status == "miss"
    assert len(llm.prompts) == 2


async def test_a_stored_question_differing_where_the_embedder_cannot_read_is_never_served(
    service: CacheService, llm: ScriptedLLM
) -> None:
    # The fake reads ASCII words only, as MiniLM reads few Chinese characters: both questions are one vector.
    await service.answer(ask("what does 呵呵 mean"), tenant="t")
    other = await service.answer(ask("what does 暧昧 mean"), tenant="t")
    assert other.cache.status == "miss"
    assert other.cache.reason == (
        "nearest stored question ruled out (unread): both hold words the embedder cannot read, and not the same ones"
    )
    assert service.ruled_out["unread"] == 1
    # The same unread parts with other words around them: what it reads decides, as for any text
    same = await service.answer(ask("what does 呵呵 mean please"), tenant="t")
    assert (same.cache.status, same.cache.matched_query) == ("hit", "what does 呵呵 mean")
    # Unread parts on one side only are left to the matcher (a model sees an unknown token there; this fake not)
    one_sided = await service.answer(ask("what does mean"), tenant="t")
    assert (one_sided.cache.status, one_sided.cache.matched_query) == ("hit", "what does 呵呵 mean")
    assert (len(llm.prompts), service.ruled_out["unread"]) == (2, 1)


async def test_per_request_threshold_overrides_the_default(service: CacheService) -> None:
    await service.answer(ask("how do I reset my gmail password"), tenant="t")
    strict = CacheControl(min_similarity=0.999)
    near = await service.answer(ask("how do I reset my gmail password please"), strict, tenant="t")
    assert near.cache.status == "miss"


@pytest.mark.parametrize(
    "other",
    [
        {"model": "other-model"},
        {"instructions": "answer in French"},
        {"options": {"temperature": 0.0}},
    ],
)
async def test_a_different_scope_never_hits(service: CacheService, other: dict[str, object]) -> None:
    await service.answer(ask("how do I reset my gmail password"), tenant="t")
    answer = await service.answer(ask("how do I reset my gmail password", **other), tenant="t")
    assert answer.cache.status == "miss"


async def test_tenants_never_share_entries(service: CacheService) -> None:
    await service.answer(ask("how do I reset my gmail password"), tenant="a")
    answer = await service.answer(ask("how do I reset my gmail password"), tenant="b")
    assert answer.cache.status == "miss"


async def test_a_different_conversation_prefix_never_hits(service: CacheService) -> None:
    def turn(prior: str) -> Prompt:
        history = (Message("user", prior), Message("assistant", "ok"), Message("user", "which part is the brain?"))
        return Prompt(model="m", messages=history)

    await service.answer(turn("tell me about computers"), tenant="t")
    assert (await service.answer(turn("tell me about the human body"), tenant="t")).cache.status == "miss"
    assert (await service.answer(turn("tell me about computers"), tenant="t")).cache.tier == "exact"


async def test_bypass_neither_reads_nor_writes(service: CacheService, llm: ScriptedLLM) -> None:
    await service.answer(ask("q1"), tenant="t")
    bypassed = await service.answer(ask("q1"), CacheControl(mode=CacheMode.BYPASS), tenant="t")
    assert bypassed.cache.status == "bypass"
    await service.answer(ask("q2"), CacheControl(mode=CacheMode.BYPASS), tenant="t")
    assert (await service.answer(ask("q2"), tenant="t")).cache.status == "miss"
    assert len(llm.prompts) == 4


async def test_refresh_skips_the_read_and_overwrites(service: CacheService, llm: ScriptedLLM) -> None:
    first = await service.answer(ask("q1"), tenant="t")
    llm.reply = "fresh answer"
    refreshed = await service.answer(ask("q1"), CacheControl(mode=CacheMode.REFRESH), tenant="t")
    assert refreshed.cache.status == "miss"
    assert refreshed.cache.entry_id == first.cache.entry_id
    assert len(llm.prompts) == 2
    served = await service.answer(ask("q1"), tenant="t")
    assert (served.cache.tier, served.text) == ("exact", "fresh answer")


async def test_entries_expire_after_their_ttl(service: CacheService, clock: Clock) -> None:
    await service.answer(ask("q1"), CacheControl(ttl_seconds=5), tenant="t")
    clock.now += 4
    hit = await service.answer(ask("q1"), tenant="t")
    assert hit.cache.status == "hit"
    assert hit.cache.ttl_seconds == 1
    clock.now += 2
    assert (await service.answer(ask("q1"), tenant="t")).cache.status == "miss"


async def test_incomplete_answers_are_returned_but_not_stored(service: CacheService, llm: ScriptedLLM) -> None:
    llm.completed = False
    first = await service.answer(ask("q1"), tenant="t")
    assert first.cache.status == "miss"
    assert first.cache.entry_id is None
    assert first.text == "answer to q1"
    llm.completed = True
    assert (await service.answer(ask("q1"), tenant="t")).cache.status == "miss"


async def test_an_empty_answer_is_returned_but_not_stored(service: CacheService, llm: ScriptedLLM) -> None:
    llm.reply = " \n"
    first = await service.answer(ask("q1"), tenant="t")
    assert (first.text, first.cache.status, first.cache.reason, first.cache.entry_id) == (
        " \n",
        "miss",
        "empty answer not cached",
        None,
    )
    llm.reply = None
    assert (await service.answer(ask("q1"), tenant="t")).text == "answer to q1"


async def test_upstream_errors_propagate_and_store_nothing(
    service: CacheService, llm: ScriptedLLM, store: FailingStore
) -> None:
    llm.error = UpstreamError("boom", status=500)
    with pytest.raises(UpstreamError):
        await service.answer(ask("q1"), tenant="t")
    assert (await store.ping())["entries"] == 0


async def test_store_down_answers_from_the_llm_and_pauses_the_store(
    service: CacheService, store: FailingStore, llm: ScriptedLLM, clock: Clock
) -> None:
    store.down = True
    answer = await service.answer(ask("q1"), tenant="t")
    assert answer.cache.status == "bypass"
    assert answer.text == "answer to q1"
    store.down = False
    # within the pause the store is not asked at all, even though it is back
    assert (await service.answer(ask("q1"), tenant="t")).cache.status == "bypass"
    clock.now += 0.6
    assert (await service.answer(ask("q1"), tenant="t")).cache.status == "miss"
    assert (await service.answer(ask("q1"), tenant="t")).cache.status == "hit"


async def test_the_pause_grows_while_the_store_stays_down(
    service: CacheService, store: FailingStore, clock: Clock
) -> None:
    store.down = True
    await service.answer(ask("q1"), tenant="t")  # pause 0.5 s
    clock.now += 0.6
    await service.answer(ask("q1"), tenant="t")  # fails again: pause 1 s
    store.down = False
    clock.now += 0.6
    assert (await service.answer(ask("q1"), tenant="t")).cache.status == "bypass"
    clock.now += 0.5
    assert (await service.answer(ask("q1"), tenant="t")).cache.status == "miss"


async def test_embedder_failure_answers_from_the_llm(service: CacheService, embedder: BagOfWordsEmbedder) -> None:
    embedder.fail = True
    answer = await service.answer(ask("q1"), tenant="t")
    assert answer.cache.status == "bypass"
    assert answer.text == "answer to q1"


async def test_requests_depending_on_server_state_bypass(service: CacheService, llm: ScriptedLLM) -> None:
    p = ask("q1", uncacheable="depends on server-side state (previous_response_id)")
    assert (await service.answer(p, tenant="t")).cache.status == "bypass"
    assert (await service.answer(p, tenant="t")).cache.status == "bypass"
    assert len(llm.prompts) == 2


async def test_last_turn_not_plain_user_text_bypasses(service: CacheService) -> None:
    image = Prompt(model="m", messages=(Message("user", ({"type": "input_image", "image_url": "x"},)),))
    assert (await service.answer(image, tenant="t")).cache.status == "bypass"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"min_similarity": 0.0}, "cosine similarity"),
        ({"min_similarity": 1.5}, "cosine similarity"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
    ],
)
def test_policy_rejects_nonsense(kw: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy(**kw)  # type: ignore[arg-type]


async def test_a_streamed_answer_is_passed_on_as_it_comes_and_stored_once_complete(
    service: CacheService, llm: ScriptedLLM
) -> None:
    seen: list[tuple[str, object]] = []

    def sink(info: CacheInfo, event: Mapping[str, object]) -> None:
        seen.append((info.status, event.get("delta")))

    miss = await service.answer(ask("what is the boiling point of water"), tenant="t", on_event=sink)
    assert miss.cache.status == "miss"
    assert miss.cache.entry_id is not None
    assert [status for status, _ in seen] == ["miss"] * len(miss.text.split(" "))
    assert "".join(str(delta) for _, delta in seen) == miss.text
    seen.clear()
    hit = await service.answer(ask("what is the boiling point of water"), tenant="t", on_event=sink)
    assert (hit.cache.status, hit.text) == ("hit", miss.text)
    assert seen == [], "a hit is complete at once: nothing to stream"
    llm.completed = False  # an answer cut short streams all the same, and is not kept
    cut = await service.answer(ask("name a famous painter from spain"), tenant="t", on_event=sink)
    assert seen
    assert cut.cache.entry_id is None
    assert (await service.answer(ask("name a famous painter from spain"), tenant="t")).cache.status == "miss"


async def test_a_streamed_miss_names_its_entry_from_the_first_event_unless_it_is_never_stored(
    service: CacheService,
) -> None:
    infos: list[CacheInfo] = []

    def sink(info: CacheInfo, event: Mapping[str, object]) -> None:
        infos.append(info)

    miss = await service.answer(ask("what is the boiling point of water"), tenant="t", on_event=sink)
    assert miss.cache.entry_id is not None
    assert {info.entry_id for info in infos} == {miss.cache.entry_id}, "the stream's headers name the stored entry"
    infos.clear()
    volatile = await service.answer(ask("what is the weather today in paris"), tenant="t", on_event=sink)
    assert (volatile.cache.freshness, volatile.cache.entry_id) == ("volatile", None)  # the policy's TTL is 0
    assert infos
    assert {info.entry_id for info in infos} == {None}
    infos.clear()
    kept = await service.answer(ask("what is the weather today in rome"), CacheControl(ttl_seconds=60), tenant="t",
                                on_event=sink)  # fmt: skip
    assert kept.cache.entry_id is not None  # the caller's own TTL wins over the rule: stored, and named at once
    assert {info.entry_id for info in infos} == {kept.cache.entry_id}


@pytest.fixture
def remembering(embedder: BagOfWordsEmbedder, store: FailingStore, llm: ScriptedLLM, clock: Clock) -> CacheService:
    policy = Policy(ttl_seconds=60, min_similarity=0.8)
    return CacheService(
        embedder=embedder, store=store, llm=llm, policy=policy, clock=clock, monotonic=clock, recent_embeddings=2
    )


async def test_a_paraphrase_asked_again_reuses_its_vector_and_still_looks_up(
    remembering: CacheService, embedder: BagOfWordsEmbedder
) -> None:
    stored = await remembering.answer(ask("how do I reset my gmail password"), tenant="t")
    paraphrase = ask("how do I reset my gmail password please")
    first = await remembering.answer(paraphrase, tenant="t")
    embedded = len(embedder.calls)
    again = await remembering.answer(paraphrase, tenant="t")
    assert (first.cache.tier, again.cache.tier) == ("semantic", "semantic")
    assert again.cache.similarity == first.cache.similarity
    assert len(embedder.calls) == embedded, "the same words need no second model run"
    assert remembering.embeddings_reused == 1

    # Only the vector is kept, never the decision: the entry gone, the paraphrase asked again misses.
    assert stored.cache.entry_id is not None
    assert await remembering.delete(stored.cache.entry_id, tenant="t")
    gone = await remembering.answer(paraphrase, tenant="t")
    assert gone.cache.status == "miss"
    assert len(embedder.calls) == embedded, "its vector was still the one kept"


async def test_recent_vectors_are_kept_per_tenant_and_bounded(
    remembering: CacheService, embedder: BagOfWordsEmbedder
) -> None:
    await remembering.answer(ask("what is the boiling point of water"), tenant="a")
    calls = len(embedder.calls)
    await remembering.answer(ask("what is the boiling point of water"), tenant="b")
    assert len(embedder.calls) == calls + 1, "another tenant's lookup must not be faster for what 'a' asked"

    for text in ("one question about rivers", "another question about lakes"):  # 2 kept: the oldest goes
        await remembering.answer(ask(text), CacheControl(mode=CacheMode.REFRESH), tenant="a")
    calls = len(embedder.calls)
    await remembering.answer(
        ask("what is the boiling point of water"), CacheControl(mode=CacheMode.REFRESH), tenant="a"
    )
    assert len(embedder.calls) == calls + 1
    await remembering.answer(ask("another question about lakes"), CacheControl(mode=CacheMode.REFRESH), tenant="a")
    assert len(embedder.calls) == calls + 1


async def test_without_recent_vectors_every_lookup_embeds(service: CacheService, embedder: BagOfWordsEmbedder) -> None:
    await service.answer(ask("how do I reset my gmail password"), tenant="t")
    paraphrase = ask("how do I reset my gmail password please")
    await service.answer(paraphrase, tenant="t")
    calls = len(embedder.calls)
    await service.answer(paraphrase, tenant="t")
    assert len(embedder.calls) == calls + 1
    assert service.embeddings_reused == 0


async def test_a_full_store_stores_nothing_and_keeps_serving_hits(
    service: CacheService, store: FailingStore, llm: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    await service.answer(ask("what is the capital of france"), tenant="t")
    store.full = True
    with caplog.at_level(logging.WARNING, logger="semcache"):
        for text in ("how tall is mount everest", "who painted the mona lisa"):
            refused = await service.answer(ask(text), tenant="t")
            assert (refused.cache.status, refused.cache.reason) == ("miss", CACHE_FULL)
            assert refused.text == f"answer to {text}"
            hit = await service.answer(ask("what is the capital of france"), tenant="t")
            assert hit.cache.tier == "exact", "a full store is no reason to stop reading it"
    assert sum("the store is full" in r.getMessage() for r in caplog.records) == 1, "one warning, not one per write"
    assert len(llm.prompts) == 3


async def test_a_flush_forgets_the_tenants_recent_vectors(
    remembering: CacheService, embedder: BagOfWordsEmbedder
) -> None:
    refresh = CacheControl(mode=CacheMode.REFRESH)  # each answer embedded to be stored: from the kept vector if any
    question = ask("what is the boiling point of water")
    for tenant in ("a", "b"):
        await remembering.answer(question, refresh, tenant=tenant)
    await remembering.flush(tenant="a")
    calls = len(embedder.calls)
    await remembering.answer(question, refresh, tenant="b")
    assert len(embedder.calls) == calls, "b's vector is kept"
    await remembering.answer(question, refresh, tenant="a")
    assert len(embedder.calls) == calls + 1, "a's was forgotten with its entries"


async def test_volatility_is_judged_once_for_a_miss_and_not_at_all_for_an_exact_hit(
    service: CacheService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from semcache.core import service as service_module

    judged: list[str] = []
    real = service_module.is_volatile
    monkeypatch.setattr(service_module, "is_volatile", lambda text: judged.append(text) or real(text))
    await service.answer(ask("how do I reset my password"), tenant="t")
    assert judged == ["how do I reset my password"], "the lookup and the store share one verdict"
    await service.answer(ask("how do I reset my password"), tenant="t")
    assert len(judged) == 1, "an exact hit needs no verdict"


LONG_CONTEXT = "Context: " + "the plant in Ohio makes pumps and valves for water works " * 3  # 34 words


@pytest.fixture
def reading12(store: FailingStore, llm: ScriptedLLM, clock: Clock) -> tuple[CacheService, BagOfWordsEmbedder]:
    """A service whose embedder reads at most 12 words (MiniLM reads 256 word pieces)."""
    embedder = BagOfWordsEmbedder(max_words=12)
    policy = Policy(ttl_seconds=60, min_similarity=0.8)
    service = CacheService(embedder=embedder, store=store, llm=llm, policy=policy, clock=clock, monotonic=clock)
    return service, embedder


async def test_a_text_longer_than_the_embedder_reads_is_served_only_to_an_exact_repeat(
    reading12: tuple[CacheService, BagOfWordsEmbedder], store: FailingStore, llm: ScriptedLLM
) -> None:
    """The same document with another question after it would embed alike (cut to what the model reads): it must
    not be served the first one's answer. Nor may a text that is only the document's first words."""
    service, embedder = reading12
    where = LONG_CONTEXT + "Question: where is the plant?"
    first = await service.answer(ask(where), tenant="t")
    assert (first.cache.status, first.cache.reason) == ("miss", TOO_LONG)
    assert first.cache.entry_id is not None, "stored, for an exact repeat"
    assert embedder.calls == [], "never embedded: its vector would stand for any text that begins the same way"
    found = await store.get_with_vector(first.cache.entry_id)
    assert found is not None
    assert found[1] is None, "stored without a vector"

    what = await service.answer(ask(LONG_CONTEXT + "Question: what does the plant make?"), tenant="t")
    assert (what.cache.status, what.cache.reason) == ("miss", TOO_LONG)
    again = await service.answer(ask(where), tenant="t")
    assert (again.cache.status, again.cache.tier, again.text) == ("hit", "exact", first.text)

    start = " ".join(LONG_CONTEXT.split()[:10])  # what a model cutting the text would have read of it
    short = await service.answer(ask(start), tenant="t")
    assert (short.cache.status, short.cache.reason) == ("miss", None), "a long entry is no candidate"
    assert short.cache.entry_id is not None
    assert embedder.calls == [start]
    assert len(llm.prompts) == 3

    # Storing anew (refresh) does not embed it either; a verdict naming another question is not the matcher's.
    refreshed = await service.answer(ask(where), CacheControl(mode=CacheMode.REFRESH), tenant="t")
    assert refreshed.cache.status == "miss"
    assert embedder.calls == [start]
    verdict = await service.feedback(first.cache.entry_id, "wrong", tenant="t", query=start)
    assert verdict.removed
    assert verdict.confidence is None


class FaultyStore(FailingStore):
    """A store with a bug: the named operations raise something that is not a StoreError."""

    def __init__(self) -> None:
        super().__init__()
        self.faulty: set[str] = set()

    async def get(self, entry_id: str):  # type: ignore[no-untyped-def]
        if "get" in self.faulty:
            raise KeyError("a bug in reading")
        return await super().get(entry_id)

    async def put(self, entry, vector, ttl_seconds):  # type: ignore[no-untyped-def]
        if "put" in self.faulty:
            raise RuntimeError("a bug in writing")
        await super().put(entry, vector, ttl_seconds)


async def test_a_fault_in_the_cache_never_costs_the_answer(
    embedder: BagOfWordsEmbedder, llm: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    # A bug of ours (not a store outage) must not turn a request into a 500, least of all after the LLM was paid
    # for: the answer goes back unstored (or the cache is skipped), the fault is logged with its traceback, and the
    # store is not paused for everyone else (it is up).
    store = FaultyStore()
    service = CacheService(embedder=embedder, store=store, llm=llm, policy=Policy(min_similarity=0.8))
    store.faulty = {"put"}
    with caplog.at_level(logging.ERROR, logger="semcache"):
        unstored = await service.answer(ask("who wrote hamlet"), tenant="t")
    assert unstored.text == "answer to who wrote hamlet"
    assert (unstored.cache.status, unstored.cache.reason) == ("miss", CACHE_FAULT)
    assert any(r.exc_info and "a bug in writing" in str(r.exc_info[1]) for r in caplog.records)

    store.faulty = {"get"}
    skipped = await service.answer(ask("who wrote macbeth"), tenant="t")
    assert skipped.text == "answer to who wrote macbeth"
    assert (skipped.cache.status, skipped.cache.reason) == ("bypass", CACHE_FAULT)

    store.faulty = set()
    stored = await service.answer(ask("who wrote othello"), tenant="t")
    assert (stored.cache.status, stored.cache.reason) == ("miss", None), "no pause: the store is up"
    assert stored.cache.entry_id is not None
    assert (await service.answer(ask("who wrote othello"), tenant="t")).cache.tier == "exact"
    assert len(llm.prompts) == 3


async def test_an_exponent_is_not_folded_into_the_number_before_it(
    service: CacheService, store: FailingStore, embedder: BagOfWordsEmbedder, llm: ScriptedLLM, clock: Clock
) -> None:
    squared = await service.answer(ask("What is 10²?"), tenant="t")
    assert squared.cache.status == "miss"
    other = await service.answer(ask("What is 102?"), tenant="t")
    assert other.cache.tier != "exact", "NFKC would have made them one question: 10² is not 102"
    assert other.text == "answer to What is 102?"
    assert (await service.answer(ask("What is 10²?"), tenant="t")).cache.tier == "exact"

    # An entry stored when the normalisation folded superscripts sits under the id of the question it does not
    # answer: the exact tier compares the questions too, so it is not served to that one.
    prompt = ask("What is 7³?")
    scope = scope_fingerprint(prompt, tenant="t", embedder_id=embedder.id)
    old = Entry(id=entry_id(scope, "What is 73?"), scope=scope, query="What is 7³?", response="343", model="m",
                usage=Usage(1, 1), created_at=clock.now, tenant="t")  # fmt: skip
    await store.put(old, embedder.embed(["What is 7³?"])[0], 60)
    asked = await service.answer(ask("What is 73?"), tenant="t")
    assert asked.text == "answer to What is 73?"
    assert len(llm.prompts) == 3
