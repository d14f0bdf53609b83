"""Value objects that flow through the core."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

JSON = Any
"""A JSON-serialisable value."""


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation; content is text or a list of typed content parts (kept as given)."""

    role: str
    content: str | tuple[JSON, ...]


CHAT_FORWARD = "chat"
"""The key, in a Prompt's passthrough, of a Chat Completions body that is sent to the LLM's own chat route as it is
(a request semcache does not translate, and so never caches)."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """A normalised LLM request: what the upstream call needs and what the cache keys on.

    `messages` ends with the user turn being answered. `options` shape the answer (sampling, output limits,
    response format, tools) and so belong to the cache scope; `passthrough` reaches the LLM but not the scope
    (metadata, user, store). `uncacheable` names why this request must not use the cache at all.
    """

    model: str
    messages: tuple[Message, ...]
    instructions: str | None = None
    options: Mapping[str, JSON] = field(default_factory=dict)
    passthrough: Mapping[str, JSON] = field(default_factory=dict)
    uncacheable: str | None = None

    @property
    def text(self) -> str | None:
        """The final user turn's text, or None when it is not plain text from the user."""
        last = self.messages[-1] if self.messages else None
        if last is None or last.role != "user" or not isinstance(last.content, str):
            return None
        return last.content

    @property
    def history(self) -> tuple[Message, ...]:
        """Every turn before the one being answered."""
        return self.messages[:-1]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens an LLM call consumed."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """What the LLM answered. Only a completed answer may be cached."""

    text: str
    model: str
    usage: Usage
    completed: bool
    finish_reason: str = "stop"
    raw: Mapping[str, JSON] | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached answer and the question it answered."""

    id: str
    scope: str
    query: str
    response: str
    model: str
    usage: Usage
    created_at: float
    ttl_seconds: int | None = None
    tenant: str = ""


@dataclass(frozen=True, slots=True)
class Match:
    """A stored entry found near a query, with its cosine similarity to the query."""

    entry: Entry
    similarity: float
    vector: Any = None
    """The entry's stored vector (a float32 array), for the verifier; None if the store did not read it."""
    mismatched: bool = False
    """A caller marked this entry a mismatch for the question asked (semcache.core.ports.VectorStore.mark_mismatch)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a caller's verdict on a served entry did."""

    removed: bool
    """The entry was removed (a wrong verdict on an entry that still existed)."""
    confidence: float | None = None
    """For a verdict on a semantic hit (the asked question given): the verifier's confidence for that pair."""
    threshold: float | None = None
    """Then also: the tenant's confidence threshold after this verdict."""
    mismatched: bool = False
    """A mismatch verdict was recorded: the entry stays, but never serves the asked question again."""


class CacheMode(enum.StrEnum):
    """How one request uses the cache."""

    USE = "use"
    BYPASS = "bypass"
    REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class CacheControl:
    """Per-request cache controls; None means the service's default."""

    mode: CacheMode = CacheMode.USE
    ttl_seconds: int | None = None
    min_similarity: float | None = None
    min_confidence: float | None = None


Status = Literal["hit", "miss", "bypass"]
Tier = Literal["exact", "semantic"]
Judgement = Literal["right", "wrong", "mismatch"]
"""A caller's verdict on a served answer: right; wrong (the answer is removed); mismatch (right for its own
question, not for the one asked: it stays, and never serves that question again)."""


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """How the cache took part in one answer."""

    status: Status
    tier: Tier | None = None
    similarity: float | None = None
    entry_id: str | None = None
    matched_query: str | None = None
    ttl_seconds: int | None = None
    reason: str | None = None
    confidence: float | None = None
    """On a semantic hit, the verifier's probability that the stored question is the same question."""
    freshness: str | None = None
    """How the question and answer were judged for freshness: volatile, dated or evergreen."""
    scope: str | None = None
    """The scope digest of the entry served or stored (to flush one scope)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one request and how the cache took part in it."""

    text: str
    model: str
    usage: Usage
    cache: CacheInfo
    completion: Completion | None = None
    """The upstream completion when the LLM was called (None on a hit)."""
    saved_usage: Usage | None = None
    """On a hit, the tokens the stored answer cost when it was first made: what this hit saved."""
    lookup_ms: float | None = None
    """Time spent in the cache (exact and semantic tiers), if it was consulted."""
    llm_ms: float | None = None
    """Time spent waiting for the LLM, if it was called."""
