"""The caching policy: exact tier, semantic tier, store on miss, and never worse than no cache."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass, field, replace

from semcache.core.batching import EmbedBatcher, embedder_error
from semcache.core.calibration import TenantThresholds, bucket
from semcache.core.errors import EmbedderError, StoreError, StoreFull, UpstreamError
from semcache.core.fingerprint import entry_id as entry_id_of
from semcache.core.fingerprint import normalize_text, scope_fingerprint
from semcache.core.freshness import FreshnessPolicy, is_volatile
from semcache.core.language import looks_english
from semcache.core.models import (
    JSON,
    Answer,
    CacheControl,
    CacheInfo,
    CacheMode,
    Entry,
    Judgement,
    Match,
    Prompt,
    Usage,
    Verdict,
)
from semcache.core.ports import LLM, Embedder, Vector, VectorStore
from semcache.core.verifier import RULE_SAYS, Verifier, veto

log = logging.getLogger("semcache")

EMBEDDER_BUSY = "embedder busy: semantic lookup skipped"
"""The reason on a miss whose semantic lookup would have waited longer than Policy.embed_wait_budget_s."""
STORED_LATER = "embedder busy: semantic lookup skipped, answer stored once the model is free"
BUSY_REASONS = frozenset({EMBEDDER_BUSY, STORED_LATER})
"""The reasons of a miss whose semantic lookup was skipped for a busy embedder."""
NOT_ENGLISH = "not in English: served only to an exact repeat (the matcher is trained on English)"
"""The reason on a miss whose question looks to be in another language than English (semcache.core.language), unless
Policy.any_language: it is not looked up by meaning, and its entry is stored without a vector."""
TOO_LONG = "too long for a semantic match: served only to an exact repeat"
"""The reason on a miss whose text is longer than the embedder reads: a vector of the part it reads would stand for
every text that begins the same way (the same document with another question after it), so such a text is never
looked up by meaning, and its entry is stored without a vector: only the same text asked again is served it."""
VOLATILE = "time-sensitive question: served only to an exact repeat"
"""The reason on a miss whose question is time-sensitive (semcache.core.freshness): a paraphrase stored earlier may
have been answered on another day, so the semantic tier is not asked."""
CACHE_FULL = "cache full: answer not stored"
"""The reason on a miss whose answer the store refused for want of memory."""
NOT_TEXT = "answer not cached: not plain text (a refusal, or a call of a tool)"
"""The reason on a miss whose answer came whole but is not the text of a message: a refusal, a function call, or
what a hosted tool (web search, file search) found, which is the tool's at that moment."""
EMPTY = "empty answer not cached"
"""The reason on a miss whose answer came whole but holds no text (or only whitespace): returned as it is, since
the caller asked for it, but never stored to be served again for days."""
CACHE_FAULT = "cache fault: answered without the cache"
"""The reason when the cache failed in a way that is not an outage (a bug: logged with its traceback): the lookup is
skipped or the answer not stored, and the request is answered all the same. The store is not paused for it."""
DEFERRED_MAX = 4096
DEFERRED_MAX_CHARS = 32_000_000
"""Answers waiting for a free model to be stored: at most this many, of at most this many characters (questions and
answers) in all; beyond either the oldest are dropped (the cache is optional, the process's memory is not)."""
DEFERRED_POLL_S = 0.05

UNREAD = "unread"
"""The rule that rules out a stored question when both it and the asked one hold parts the embedder cannot read
(Embedder.unread), and not the same ones: "what is machine learning?" and "what is deep learning?" in Chinese are,
to all-MiniLM-L6-v2, the same six unknown tokens around the same two characters, so the same vector (cosine 1.0).
Unread parts on one side only ("🤗 Datasets is a library...", "Datasets is a library...") are left to the
matcher, which sees an unknown token on one side and not on the other, as it sees a number on one side only.
Applied before the verifier's rules, with or without a verifier."""
ALL_RULES_SAY = {UNREAD: "both hold words the embedder cannot read, and not the same ones", **RULE_SAYS}
"""What each rule (UNREAD, then the verifier's) says of a stored question it rules out."""

MAX_TTL_SECONDS = 365 * 86400
LOOK_FURTHER = 3
"""How many entries past the policy's candidates one more search offers, when every candidate was ruled out as
another question (CacheService._lookup)."""
RECENT_MAX_CHARS = 2000
"""Texts up to this long have their vectors kept among the recent ones (CacheService's recent_embeddings)."""

EventSink = Callable[[CacheInfo, Mapping[str, JSON]], None]
"""Receives a streamed LLM answer's events as they come, each with the request's cache status so far."""


@dataclass(frozen=True, slots=True)
class Policy:
    """Service-wide defaults that per-request controls may override."""

    ttl_seconds: int = 7 * 86400
    min_similarity: float = 0.90
    """Cosine similarity (between -1 and 1; 1 is identical) a candidate must reach to be considered at all."""
    candidates: int = 1
    """How many of the nearest stored entries are asked for. One: if the nearest stored question is not the same
    question, a farther one rarely is (on qqp/dev, with every first question stored, 31% of the hits a farther
    candidate gave served the labelled duplicate, against 66% when the nearest was accepted; docs/quality.md)."""
    verifier: Verifier | None = None
    """If set, a candidate is served only when the verifier's probability reaches min_confidence."""
    min_confidence: float | None = None
    """The verifier's threshold; None means the one it ships with."""
    freshness: FreshnessPolicy = field(default_factory=FreshnessPolicy)
    max_error: float = 0.10
    """Verdicts raise a tenant's confidence threshold until its semantic hits are not shown (at least 3 wrong
    verdicts and a Wilson 95% lower bound above this) to be wrong more often than this (semcache.core.calibration);
    1.0 turns that off."""
    calibration_refresh_s: float = 30.0
    """How often a process re-reads a tenant's verdicts (others' verdicts reach it within this time)."""
    any_language: bool = False
    """Whether the semantic tier serves questions in any language. By default a question that looks Spanish,
    French, German, Portuguese, Italian or Dutch, or is mostly in another script (semcache.core.language), is served
    only to an exact repeat, and stored without a vector: the matcher was trained and measured on English, and its
    rules know English words."""
    embed_wait_budget_s: float = 0.25
    """A request whose embedding would wait longer than this behind others' (a burst of new questions saturating
    the model) skips the semantic tier and goes to the LLM at once, as it would without a cache; its answer is
    stored with the response if the model has caught up by then, else in the background once a runner is free.
    math.inf: always wait."""

    @property
    def confidence_threshold(self) -> float | None:
        """The verifier's threshold in force: min_confidence if set, else the verifier's own (None without either)."""
        return self.min_confidence or (self.verifier.threshold if self.verifier is not None else None)

    def __post_init__(self) -> None:
        check_ttl(self.ttl_seconds, "ttl_seconds")
        check_similarity(self.min_similarity, "min_similarity")
        if self.min_confidence is not None:
            check_probability(self.min_confidence, "min_confidence")
        if not 0.0 < self.max_error <= 1.0:
            raise ValueError(f"max_error must be in (0, 1], got {self.max_error}")
        if not 1 <= self.candidates <= 16:
            raise ValueError(f"candidates must be between 1 and 16, got {self.candidates}")
        if not self.embed_wait_budget_s >= 0:
            raise ValueError(f"embed_wait_budget_s must be at least 0, got {self.embed_wait_budget_s}")


def check_ttl(value: int, name: str) -> None:
    """Reject a TTL outside 1 second .. 1 year."""
    if not 1 <= value <= MAX_TTL_SECONDS:
        raise ValueError(f"{name} must be between 1 and {MAX_TTL_SECONDS} seconds, got {value}")


def check_probability(value: float, name: str) -> None:
    """Reject a probability threshold outside (0, 1]."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} is a probability and must be in (0, 1], got {value}")


def check_similarity(value: float, name: str) -> None:
    """Reject a cosine-similarity threshold outside (0, 1]."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} is a cosine similarity and must be in (0, 1], got {value}")


@dataclass(frozen=True)
class _Asked:
    """One cacheable request as the cache keys it: the prompt and its cache control, its text and normalised form,
    its scope, entry id and tenant."""

    prompt: Prompt
    control: CacheControl
    text: str
    normalized: str
    scope: str
    eid: str
    tenant: str
    on_event: EventSink | None = None

    @functools.cached_property
    def english(self) -> bool:
        """Whether the question looks English (semcache.core.language), on the normalised text as volatile."""
        return looks_english(self.normalized)

    @functools.cached_property
    def volatile(self) -> bool:
        """Whether the answer depends on when it is asked: judged on the normalised text, since the lookup and the
        store must agree and the exact tier keys on that text; once, and only when needed (not for an exact hit).
        An earlier user turn counts too: after "what's the weather in Paris today?", "and in London?" asks about
        today as well, and a conversation sent without the assistant's answers has the same prefix tomorrow."""
        return is_volatile(self.normalized) or any(
            is_volatile(normalize_text(m.content))
            for m in self.prompt.history
            if m.role == "user" and isinstance(m.content, str)
        )


class CacheService:
    """Answers prompts from the cache when a stored answer fits, otherwise from the LLM (and stores it)."""

    def __init__(
        self,
        *,
        embedder: Embedder,
        store: VectorStore,
        llm: LLM,
        policy: Policy,
        clock: Callable[[], float] = time.time,
        embed_batch: int = 16,
        embed_concurrency: int = 1,
        embed_inline: bool = False,
        recent_embeddings: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """embed_inline: embed on the event loop's thread (semcache.core.batching.EmbedBatcher), for a process that
        serves one request at a time. recent_embeddings: how many vectors of recently asked texts are kept, per
        tenant and text, so that a paraphrase asked again in the same words is not embedded again (0: none)."""
        self._embedder = embedder
        self._batcher = EmbedBatcher(
            embedder, max_batch=embed_batch, concurrency=embed_concurrency, inline=embed_inline
        )
        self._inflight: dict[str, asyncio.Future[Answer]] = {}
        self._recent = _RecentVectors(recent_embeddings)
        self._ruled_out: Counter[str] = Counter()  # candidates the verifier's rules ruled out, by rule
        self._searched_further = 0  # lookups that searched past candidates so ruled out
        # Answers to store when the model is free (text to embed, entry, its TTL), and the task storing them.
        self._deferred = _Deferred()
        self._deferring: asyncio.Task[None] | None = None
        self._storing = 0  # deferred answers being embedded and stored now
        self._storing_since = 0  # the removals count when they were taken: a removal after it dooms them
        self._removals = 0  # deletes and flushes so far: a deferred store that saw one since it began is dropped
        self._breaker = _Breaker(monotonic)
        self._full_warning = _Throttled(monotonic, every_s=60.0)
        self._store = store
        self._llm = llm
        self._policy = policy
        self._clock = clock
        self._thresholds = TenantThresholds(
            lambda tenant: store.verdicts(self._calibration_key(tenant)),
            base=policy.confidence_threshold or 1.0,
            max_error=policy.max_error,
            refresh_s=policy.calibration_refresh_s,
            monotonic=monotonic,
        )

    @property
    def embedder(self) -> Embedder:
        """The embedder in use."""
        return self._embedder

    @property
    def store(self) -> VectorStore:
        """The store in use."""
        return self._store

    async def answer(
        self,
        prompt: Prompt,
        control: CacheControl | None = None,
        *,
        tenant: str,
        on_event: EventSink | None = None,
    ) -> Answer:
        """Answer prompt for tenant, from the cache if a stored answer fits, else from the LLM.

        on_event: if the answer comes from the LLM, it is streamed: each event goes to on_event as it comes (with
        the request's cache status so far), and the Answer is returned (and stored, if complete) once the stream
        has ended. A hit, or an answer shared with an identical request in flight, sends no events.
        """
        control = control or CacheControl()
        text = prompt.text
        bypass = _bypass_reason(prompt, control, text)
        if bypass is not None or text is None:
            return await self._from_llm(prompt, CacheInfo(status="bypass", reason=bypass), on_event=on_event)

        normalized = normalize_text(text)
        scope = scope_fingerprint(prompt, tenant=tenant, embedder_id=self._embedder.id)
        eid = entry_id_of(scope, normalized)
        asked = _Asked(prompt, control, text, normalized, scope, eid, tenant, on_event)
        while control.mode is CacheMode.USE and (leader := self._inflight.get(eid)) is not None:
            # The same question (same scope) is being answered right now: share that answer, not a second call,
            # unless it is a semantic match this request's own thresholds would not accept.
            try:
                led = await asyncio.shield(leader)
            except _Abandoned:
                continue  # its caller went away, which says nothing of the question: ask (or join the next asker)
            if self._accepts(asked, led.cache):
                return _shared(led)
            break
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._inflight[eid] = future
        try:
            answer = await self._answer_scoped(asked)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else _Abandoned("the request was cancelled"))
            raise
        else:
            future.set_result(answer)
        finally:
            if self._inflight.get(eid) is future:
                del self._inflight[eid]
        return answer

    async def _answer_scoped(self, asked: _Asked) -> Answer:
        """Lookup (unless refreshing), then the LLM on a miss."""
        vector: Vector | None = None
        lookup_ms: float | None = None
        note: str | None = None  # why the semantic tier was skipped, if it was
        if not self._breaker.closed():
            # The store failed moments ago: do not make this request wait for it to fail again.
            info = CacheInfo(status="bypass", reason="cache unavailable")
            return await self._from_llm(asked.prompt, info, on_event=asked.on_event)
        if asked.control.mode is CacheMode.USE:
            started = time.perf_counter()
            try:
                hit, vector, note = await self._lookup(asked)
            except (StoreError, EmbedderError) as exc:
                self._breaker.failed()
                log.warning("cache lookup failed, answering from the LLM: %s", exc)
                info = CacheInfo(status="bypass", reason="cache unavailable")
                return await self._from_llm(asked.prompt, info, on_event=asked.on_event)
            except Exception:
                log.exception("cache lookup failed (a fault, not an outage), answering from the LLM")
                info = CacheInfo(status="bypass", reason=CACHE_FAULT)
                return await self._from_llm(asked.prompt, info, on_event=asked.on_event)
            self._breaker.succeeded()
            lookup_ms = (time.perf_counter() - started) * 1000
            if hit is not None:
                return replace(hit, lookup_ms=lookup_ms)
        return await self._miss(asked, vector, lookup_ms, note)

    async def _miss(self, asked: _Asked, vector: Vector | None, lookup_ms: float | None, note: str | None) -> Answer:
        """Call the LLM, return its answer, and store it if it is complete and may be kept (note: why the lookup
        was cut short, if it was)."""
        control = asked.control
        info = CacheInfo(status="miss", reason=note)
        if asked.on_event is not None and self._policy.freshness.may_store(asked.volatile, control.ttl_seconds):
            # A stream's headers go out before the answer is complete: they give the id it will be stored under
            # (deterministic), so a streaming client can delete it or give a verdict on it like any other.
            info = replace(info, entry_id=asked.eid)
        answer = await self._from_llm(asked.prompt, info, lookup_ms=lookup_ms, on_event=asked.on_event)
        try:
            return await self._keep(asked, answer, vector, note)
        except Exception:  # not an outage (those are handled within): never lose an answer paid for to a fault
            log.exception("could not store the answer (a fault, not an outage)")
            return replace(answer, cache=CacheInfo(status="miss", reason=CACHE_FAULT))

    async def _keep(self, asked: _Asked, answer: Answer, vector: Vector | None, note: str | None) -> Answer:
        """Store the LLM's answer if it is complete and may be kept; answer with its cache status."""
        control = asked.control
        completion = answer.completion
        assert completion is not None
        if not completion.completed:
            why = NOT_TEXT if completion.finish_reason == "stop" else "incomplete answer not cached"
            return replace(answer, cache=CacheInfo(status="miss", reason=why))
        if not completion.text.strip():
            return replace(answer, cache=CacheInfo(status="miss", reason=EMPTY))
        ttl, freshness = self._policy.freshness.ttl(
            asked.volatile, completion.text, self._policy.ttl_seconds, control.ttl_seconds
        )
        if ttl <= 0:
            info = CacheInfo(status="miss", reason="time-sensitive question: not cached", freshness=freshness)
            return replace(answer, cache=info)
        entry = Entry(
            id=asked.eid,
            scope=asked.scope,
            query=asked.text,
            response=completion.text,
            model=completion.model,
            usage=completion.usage,
            created_at=self._clock(),
            tenant=asked.tenant,
        )
        if note == EMBEDDER_BUSY and self._embedder_busy():
            # Still saturated: queueing now would make this answer wait after all. Stored once the model is free.
            self._defer(asked.normalized, entry, ttl)
            return replace(answer, cache=CacheInfo(status="miss", reason=STORED_LATER, freshness=freshness))
        try:
            if vector is None and note != TOO_LONG and self._looked_up_by_meaning(asked):
                vector = await self._embed(asked.normalized, asked.tenant)  # None if too long (a refresh)
            await self._store.put(entry, vector, ttl)
        except StoreFull as exc:
            # Out of memory for writes, not down: lookups go on (the breaker stays closed); nothing is stored
            # until memory is freed (entries expire, or an eviction policy is set: docs/operations.md).
            self._full_warning.warn("the store is full, answers are not stored: %s", exc)
            return replace(answer, cache=CacheInfo(status="miss", reason=CACHE_FULL))
        except (StoreError, EmbedderError) as exc:
            self._breaker.failed()
            log.warning("could not store the answer: %s", exc)
            return replace(answer, cache=CacheInfo(status="miss", reason="answer not stored"))
        info = CacheInfo(status="miss", entry_id=asked.eid, ttl_seconds=ttl, freshness=freshness, scope=asked.scope,
                         reason=note)  # fmt: skip
        return replace(answer, cache=info)

    async def _from_llm(
        self,
        prompt: Prompt,
        info: CacheInfo,
        *,
        lookup_ms: float | None = None,
        on_event: EventSink | None = None,
    ) -> Answer:
        started = time.perf_counter()
        if on_event is None:
            completion = await self._llm.complete(prompt)
        else:
            completion = await self._llm.complete(prompt, on_event=lambda event: on_event(info, event))
        return Answer(
            text=completion.text,
            model=completion.model,
            usage=completion.usage,
            cache=info,
            completion=completion,
            lookup_ms=lookup_ms,
            llm_ms=(time.perf_counter() - started) * 1000,
        )

    def _embedder_busy(self) -> bool:
        return self._batcher.backlog_s() > self._policy.embed_wait_budget_s

    def _defer(self, text: str, entry: Entry, ttl: int) -> None:
        self._deferred.add(text, entry, ttl)
        if self._deferring is None:
            self._deferring = asyncio.get_running_loop().create_task(self._store_deferred())

    async def _store_deferred(self) -> None:
        """Store the deferred answers, oldest first, a batch at a time whenever a model runner is free; an answer
        keeps the deadline it was given when it came back from the LLM."""
        try:
            while self._deferred:
                if self._batcher.backlog_s() > 0 or not self._breaker.closed():
                    await asyncio.sleep(DEFERRED_POLL_S)
                    continue
                jobs = self._deferred.take(self._batcher.max_batch)
                self._storing_since, self._storing = self._removals, len(jobs)
                try:
                    vectors = await asyncio.gather(*(self._embed(text, entry.tenant) for text, entry, _ in jobs))
                    for (_, entry, ttl), vector in zip(jobs, vectors, strict=True):
                        if self._removals != self._storing_since:
                            break  # a delete or flush came meanwhile: it may have meant these
                        remaining = ttl - int(self._clock() - entry.created_at)
                        if remaining >= 1:
                            await self._store.put(entry, vector, remaining)
                except (StoreError, EmbedderError) as exc:
                    log.warning("could not store %d deferred answers: %s", len(jobs), exc)
                except Exception:  # a fault, not an outage: these answers are lost, the ones after them are not
                    log.exception("could not store %d deferred answers (a fault, not an outage)", len(jobs))
                finally:
                    self._storing = 0
        finally:
            self._deferring = None

    @property
    def deferred(self) -> int:
        """Answers waiting for a free model to be stored, or being stored; not those a delete or flush has doomed
        since they were taken (they are dropped once their embedding is back)."""
        return len(self._deferred) + (self._storing if self._storing_since == self._removals else 0)

    async def stored(self) -> None:
        """Return once the deferred answers are stored (or dropped)."""
        while (task := self._deferring) is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Stop the background work before the store is closed: the deferred answers (dropped: the cache is
        optional) and the tenants' threshold refreshes."""
        task, self._deferring = self._deferring, None
        self._deferred.clear()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._thresholds.close()

    async def _lookup(self, asked: _Asked) -> tuple[Answer | None, Vector | None, str | None]:
        """Exact tier, then semantic tier; returns the hit (or None), the query's vector if one was computed, and
        why the semantic tier was skipped if it was for want of time."""
        scope, normalized = asked.scope, asked.normalized
        entry = await self._store.get(asked.eid)
        if entry is not None and entry.scope == scope and normalize_text(entry.query) == normalized:
            # (The question is compared too: an entry stored when the normalisation folded more, "10²" into "102",
            # sits under the id of a question it does not answer. Anything else with the same id goes on below.)
            return _from_entry(entry, tier="exact", similarity=None, confidence=None), None, None
        if asked.volatile:
            # A paraphrase of a time-sensitive question may have been stored at another time: only the exact
            # question (stored with its short TTL) may be served.
            return None, None, VOLATILE
        if not self._looked_up_by_meaning(asked):
            return None, None, NOT_ENGLISH
        vector = self._recent.get(asked.tenant, normalized)
        if vector is None:
            if self._embedder_busy():
                return None, None, EMBEDDER_BUSY
            prepared = self._prepare(normalized)
            if prepared is None:
                return None, None, TOO_LONG
            if self._policy.verifier is not None:
                self._policy.verifier.prepare(normalized)  # now, while the CPU's caches are warm
            vector = await self._embed_prepared(prepared, normalized, asked.tenant)
        k = self._policy.candidates
        found = await self._store.search(scope, vector, k, asked=asked.eid)
        hit, ruled_out, why_not = self._judge(asked, vector, found)
        if hit is None and ruled_out and len(found) == k:
            # Every candidate was known to be another question by what it asks of the answer or how its words are
            # arranged (a rule of the verifier's), or by the tenant's mismatch mark. That says nothing against the
            # next nearest: "explain X like I'm five" is not "explain X in detail", but may be "explain X in simple
            # terms", stored just beyond it. One more search, rarely made. (Not past a candidate ruled out by its
            # numbers: on qqp/dev, what lay behind one was the labelled duplicate 5 times in 28; docs/quality.md.)
            self._searched_further += 1
            deeper = await self._store.search(scope, vector, k + LOOK_FURTHER, asked=asked.eid)
            hit, _, _ = self._judge(asked, vector, deeper[k:], until_numbers=True)
        return hit, vector, why_not if hit is None else None

    def _judge(
        self, asked: _Asked, vector: Vector, found: list[Match], *, until_numbers: bool = False
    ) -> tuple[Answer | None, bool, str | None]:
        """The hit among found (nearest first), if one fits; whether every one of them was ruled out as another
        question (so that farther entries may yet hold this one), as opposed to too far, judged unlike or naming
        other numbers; and, without a hit, why the nearest was not served (None if nothing was found). Of those not
        ruled out, the policy's number of candidates (the nearest) are judged.
        until_numbers: only the candidates nearer than the first one ruled out by its numbers (searching past
        ruled-out candidates never goes past one of those)."""
        floor = self._floor(asked.control)
        near = [m for m in found if m.entry.scope == asked.scope and m.similarity >= floor]
        verifier = self._policy.verifier
        texts = [normalize_text(m.entry.query) for m in near]
        vetoes = [self.rule_against(asked.normalized, text) for text in texts]
        if until_numbers and "numbers" in vetoes:
            cut = vetoes.index("numbers")
            near, texts, vetoes = near[:cut], texts[:cut], vetoes[:cut]
        self._ruled_out.update(why for why in vetoes if why is not None)
        open_ = [
            (m, text) for m, text, why in zip(near, texts, vetoes, strict=True) if not m.mismatched and why is None
        ][: self._policy.candidates]
        ruled_out = bool(found) and len(near) == len(found) and not open_ and "numbers" not in vetoes
        if verifier is None:
            if open_:
                best = open_[0][0]
                hit = _from_entry(best.entry, tier="semantic", similarity=best.similarity, confidence=None)
                return hit, False, None
            return None, ruled_out, _why_not(found, floor, near, vetoes)
        threshold = self._threshold(asked)
        scorable = [(m, text) for m, text in open_ if m.vector is not None]
        confidences = verifier.networks(  # the rules have been applied above
            asked.normalized, [text for _, text in scorable], vector, [m.vector for m, _ in scorable]
        )
        # The verifier is a gate, not a ranking (its probabilities saturate near 1 for close pairs): of the
        # candidates it accepts, the nearest is served. There is one candidate unless the policy asks for more
        # (docs/quality.md, "Which candidate is served").
        accepted = [(c, m) for c, (m, _) in zip(confidences, scorable, strict=True) if c >= threshold]
        if accepted:
            confidence, best = max(accepted, key=lambda pair: pair[1].similarity)
            hit = _from_entry(best.entry, tier="semantic", similarity=best.similarity, confidence=confidence)
            return hit, False, None
        why = _why_not(found, floor, near, vetoes)
        if why is None and confidences:  # the nearest within reach, neither ruled out nor marked: judged unlike
            why = f"nearest stored question judged another question (confidence {confidences[0]:.3f} < {threshold:g})"
        return None, ruled_out, why

    def rule_against(self, asked: str, stored: str) -> str | None:
        """The rule that rules the stored question out for the asked one (both normalised), if one does: UNREAD,
        else one of the verifier's (none without a verifier). What the semantic tier and `semcache explain` apply."""
        if unread_differ(self._embedder.unread(asked), self._embedder.unread(stored)):
            return UNREAD
        return veto(asked, stored) if self._policy.verifier is not None else None

    def _looked_up_by_meaning(self, asked: _Asked) -> bool:
        """Whether asked's language is one the semantic tier serves (else its entry is stored without a vector, a
        refresh's included, so that it is never another question's candidate either)."""
        return self._policy.any_language or asked.english

    def _floor(self, control: CacheControl) -> float:
        return control.min_similarity or self._policy.min_similarity

    def _threshold(self, asked: _Asked) -> float:
        """The verifier's threshold: the caller's explicit one wins; otherwise the tenant's, as its verdicts have
        calibrated it."""
        return asked.control.min_confidence or self._thresholds.get(asked.tenant)

    def _accepts(self, asked: _Asked, info: CacheInfo) -> bool:
        """Whether asked's own thresholds accept how this answer was found (anything but a semantic hit: yes)."""
        if info.tier != "semantic":
            return True
        if info.similarity is None or info.similarity < self._floor(asked.control):
            return False
        return info.confidence is None or info.confidence >= self._threshold(asked)

    async def _embed(self, text: str, tenant: str) -> Vector | None:
        """text's vector: a recent one of tenant's if kept, else from the model (and then kept); None if text is
        longer than the model reads (TOO_LONG)."""
        vector = self._recent.get(tenant, text)
        if vector is not None:
            return vector
        prepared = self._prepare(text)
        return None if prepared is None else await self._embed_prepared(prepared, text, tenant)

    def _prepare(self, text: str) -> Sized | None:
        """The embedder's input for text (None if too long), its failures as EmbedderError."""
        try:
            return self._embedder.prepare(text)
        except EmbedderError:
            raise
        except Exception as exc:  # the caller degrades to no cache
            raise embedder_error(exc) from exc

    async def _embed_prepared(self, prepared: Sized, text: str, tenant: str) -> Vector:
        vector = await self._batcher.embed(prepared)
        self._recent.put(tenant, text, vector)
        return vector

    @property
    def embeddings_reused(self) -> int:
        """Vectors taken from the recent ones instead of the model, so far."""
        return self._recent.reused

    @property
    def ruled_out(self) -> dict[str, int]:
        """Candidates ruled out so far, by rule (UNREAD, then verifier.RULES), and lookups that searched past them
        ("searched_further")."""
        return {**{rule: self._ruled_out[rule] for rule in ALL_RULES_SAY}, "searched_further": self._searched_further}

    async def delete(self, entry_id: str, *, tenant: str | None) -> bool:
        """Remove one entry of tenant (any tenant's if None); True if it existed."""
        self._removals += 1
        self._deferred.drop(lambda e: e.id == entry_id and (tenant is None or e.tenant == tenant))
        if tenant is not None:
            entry = await self._store.get(entry_id)
            if entry is None or entry.tenant != tenant:
                return False
        return await self._store.delete(entry_id)

    async def flush(self, *, tenant: str | None, scope: str | None = None) -> int:
        """Remove the entries of tenant (every tenant's if None), optionally of one scope only."""
        self._removals += 1
        self._deferred.drop(lambda e: (tenant is None or e.tenant == tenant) and (scope is None or e.scope == scope))
        self._recent.forget(tenant)  # the tenant's recent texts go too: nothing of what it asked is kept here
        return await self._store.flush(tenant=tenant, scope=scope)

    def _calibration_key(self, tenant: str) -> str:
        """Verdicts count for one tenant and one matcher: a retrained verifier's confidences start afresh."""
        verifier = self._policy.verifier
        return f"{verifier.version if verifier else 'cosine'}|{tenant}"

    async def feedback(
        self, entry_id: str, judgement: Judgement, *, tenant: str | None, query: str | None = None
    ) -> Verdict:
        """A caller's verdict on a served entry (tenant's own; any tenant's if None).

        A wrong entry is removed (the next ask goes to the LLM). Given the question that was asked (`query`) and
        it differs from the stored one, the verdict is on the matcher too: the pair is scored again as it was
        when served (the asked question embedded, against the stored vector), the verdict counted at that
        confidence for the entry's tenant (whose threshold it may raise; see semcache.core.calibration) and the
        labelled pair kept in the tenant's feedback log.

        A mismatch (with a query other than the stored question) is wrong for the matcher, but the answer is right
        for its own question: the entry stays, and the asked question is never served from it again.
        """
        wrong, mismatch = judgement != "right", judgement == "mismatch"
        found = await self._store.get_with_vector(entry_id)
        if found is None:
            return Verdict(removed=False)
        entry, v = found
        if tenant is not None and entry.tenant != tenant:
            return Verdict(removed=False)
        confidence = threshold = None
        verifier = self._policy.verifier
        asked = normalize_text(query) if query is not None else None
        stored = normalize_text(entry.query)
        if mismatch and (asked is None or asked == stored):
            raise ValueError("a mismatch needs the question asked, and one other than the stored question")
        if verifier is not None and asked is not None and asked != stored:
            u = await self._embed(asked, entry.tenant)
            if v is None:  # a row without its vector (unreadable, or its text too long to embed: TOO_LONG)
                v = await self._embed(stored, entry.tenant)
            if u is not None and v is not None:  # else a text too long to embed: no pair the matcher ever judges
                confidence = verifier.score(asked, stored, u, v)
                example = {"a": entry.query, "b": query, "duplicate": not wrong, "confidence": round(confidence, 4),
                           "matcher": verifier.version, "at": round(self._clock(), 3)}  # fmt: skip
                key = self._calibration_key(entry.tenant)
                await self._store.record_verdict(
                    key, bucket(confidence), wrong=wrong, example=example, tenant=entry.tenant
                )
                threshold = await self._thresholds.refresh(entry.tenant)
        if mismatch:
            assert asked is not None
            mismatched = await self._store.mark_mismatch(entry_id, entry_id_of(entry.scope, asked))
            if mismatched:
                log.info("entry %s no longer serves a question marked a mismatch", entry_id)
            return Verdict(removed=False, confidence=confidence, threshold=threshold, mismatched=mismatched)
        removed = await self._store.delete(entry_id) if wrong else False
        if removed:
            log.info("entry %s removed after feedback", entry_id)
        return Verdict(removed=removed, confidence=confidence, threshold=threshold)

    async def feedback_log(self, tenant: str, limit: int = 1000) -> list[dict[str, object]]:
        """The tenant's newest labelled pairs ({"a": stored, "b": asked, "duplicate", "confidence", ...})."""
        return await self._store.feedback_log(tenant, limit)


class _Abandoned(UpstreamError):
    """What a request's followers see when it is cancelled (its caller went away): not an answer to share."""


class _Breaker:
    """After a store failure, skip the store for a while (0.5 s, doubling to 5 s) instead of failing per request.

    Requests stay answered either way; this keeps a dead or black-holed Redis from adding its timeout to each one.
    The first request after the pause tries the store again, and one success closes the breaker.
    """

    def __init__(self, monotonic: Callable[[], float], first_s: float = 0.5, max_s: float = 5.0) -> None:
        self._now = monotonic
        self._first, self._max = first_s, max_s
        self._pause = 0.0
        self._until = 0.0

    def closed(self) -> bool:
        return self._now() >= self._until

    def failed(self) -> None:
        self._pause = min(self._max, self._pause * 2 if self._pause else self._first)
        self._until = self._now() + self._pause

    def succeeded(self) -> None:
        self._pause = 0.0


class _Throttled:
    """A warning logged at most once per every_s (a full store refuses every write: one line a minute says so)."""

    def __init__(self, monotonic: Callable[[], float], every_s: float) -> None:
        self._now, self._every = monotonic, every_s
        self._next = -math.inf

    def warn(self, message: str, *args: object) -> None:
        now = self._now()
        if now >= self._next:
            self._next = now + self._every
            log.warning(message, *args)


def _shared(answer: Answer) -> Answer:
    """A follower's view of its leader's answer: served without a call of its own."""
    info = answer.cache
    if info.status == "miss":
        info = replace(info, status="hit", tier="exact", reason="coalesced with an identical request in flight")
    saved = answer.usage if answer.usage.total_tokens else answer.saved_usage
    return replace(answer, cache=info, usage=Usage(), saved_usage=saved, completion=None, llm_ms=None)


class _Deferred:
    """Answers to store when the model is free, oldest first, bounded in count and in characters."""

    def __init__(self) -> None:
        self._jobs: deque[tuple[str, Entry, int]] = deque()
        self.chars = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, text: str, entry: Entry, ttl: int) -> None:
        """Keep (text to embed, entry, TTL), dropping the oldest beyond the bounds."""
        self._jobs.append((text, entry, ttl))
        self.chars += _chars(entry)
        while len(self._jobs) > DEFERRED_MAX or self.chars > DEFERRED_MAX_CHARS:
            self.chars -= _chars(self._jobs.popleft()[1])

    def take(self, n: int) -> list[tuple[str, Entry, int]]:
        """The n oldest (or all, if fewer)."""
        jobs = [self._jobs.popleft() for _ in range(min(n, len(self._jobs)))]
        self.chars -= sum(_chars(job[1]) for job in jobs)
        return jobs

    def drop(self, matches: Callable[[Entry], bool]) -> None:
        """Forget the answers whose entries match."""
        self._jobs = deque(job for job in self._jobs if not matches(job[1]))
        self.chars = sum(_chars(job[1]) for job in self._jobs)

    def clear(self) -> None:
        self._jobs.clear()
        self.chars = 0


class _RecentVectors:
    """The vectors of the texts most recently embedded, per (tenant, text), at most size of them (least recently
    used dropped first). A vector depends on nothing but the text and the embedder, so a kept one is exactly what
    the model would give again; it is kept per tenant all the same, so that how fast a lookup is never tells one
    tenant what another has asked. Only the vector is kept: the lookup itself (the entries, their marks, the
    thresholds) runs afresh every time."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"recent_embeddings must be at least 0, got {size}")
        self._size = size
        self._vectors: OrderedDict[tuple[str, str], Vector] = OrderedDict()
        self.reused = 0

    def get(self, tenant: str, text: str) -> Vector | None:
        vector = self._vectors.get((tenant, text))
        if vector is not None:
            self._vectors.move_to_end((tenant, text))
            self.reused += 1
        return vector

    def forget(self, tenant: str | None) -> None:
        """Drop tenant's vectors (everyone's if None)."""
        if tenant is None:
            self._vectors.clear()
        else:
            for key in [k for k in self._vectors if k[0] == tenant]:
                del self._vectors[key]

    def put(self, tenant: str, text: str, vector: Vector) -> None:
        if not self._size or len(text) > RECENT_MAX_CHARS:
            return
        kept = vector.copy()  # not a view that would keep its whole batch's array alive
        kept.flags.writeable = False  # shared by every later lookup of the text: nobody may change it
        self._vectors[(tenant, text)] = kept
        self._vectors.move_to_end((tenant, text))
        while len(self._vectors) > self._size:
            self._vectors.popitem(last=False)


def _chars(entry: Entry) -> int:
    return len(entry.query) + len(entry.response)


def unread_differ(asked: tuple[str, ...], stored: tuple[str, ...]) -> bool:
    """The UNREAD rule: both texts hold parts the embedder cannot read, and not the same ones in the same order."""
    return asked != stored and bool(asked) and bool(stored)


def _why_not(found: list[Match], floor: float, near: list[Match], vetoes: list[str | None]) -> str | None:
    """Why the nearest of found was not served, if a rule, a mark or the cosine floor says so (the networks' verdict
    is the caller's to say); None if nothing was found or the nearest was left to the networks."""
    if not found:
        return None
    nearest = found[0]
    if not near or near[0] is not nearest:
        return f"nearest stored question too far (similarity {nearest.similarity:.3f} < {floor:g})"
    if vetoes[0] is not None:
        return f"nearest stored question ruled out ({vetoes[0]}): {ALL_RULES_SAY[vetoes[0]]}"
    if nearest.mismatched:
        return "nearest stored question marked wrong for this one (feedback)"
    return None


def _retrieve(future: asyncio.Future[Answer]) -> None:
    """Mark a single-flight future's exception as seen when no follower waited for it."""
    if not future.cancelled():
        future.exception()


def _bypass_reason(prompt: Prompt, control: CacheControl, text: str | None) -> str | None:
    if control.mode is CacheMode.BYPASS:
        return "bypass requested"
    if prompt.uncacheable is not None:
        return prompt.uncacheable
    if text is None:
        return "the last turn is not plain text from the user"
    if not text.strip():
        return "empty text"
    return None


def _from_entry(entry: Entry, *, tier: str, similarity: float | None, confidence: float | None) -> Answer:
    info = CacheInfo(
        status="hit",
        tier="exact" if tier == "exact" else "semantic",
        similarity=similarity,
        entry_id=entry.id,
        matched_query=entry.query,
        ttl_seconds=entry.ttl_seconds,
        confidence=confidence,
        scope=entry.scope,
    )
    return Answer(text=entry.response, model=entry.model, usage=Usage(), cache=info, saved_usage=entry.usage)
