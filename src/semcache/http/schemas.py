"""Request and response bodies of semcache's own API (the OpenAI-compatible routes live in openai_compat)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from semcache.core.models import Answer, CacheControl, CacheMode
from semcache.core.service import MAX_TTL_SECONDS


class CacheOptions(BaseModel):
    """Per-request cache controls."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["use", "bypass", "refresh"] = Field(
        "use", description="use: read and write; bypass: neither; refresh: skip the read, overwrite the entry"
    )
    ttl_seconds: int | None = Field(None, ge=1, le=MAX_TTL_SECONDS, description="lifetime of an entry written now")
    min_similarity: float | None = Field(None, gt=0, le=1, description="cosine similarity a semantic match must reach")

    def to_control(self) -> CacheControl:
        """The core's view of these options."""
        return CacheControl(CacheMode(self.mode), self.ttl_seconds, self.min_similarity)


class QueryRequest(BaseModel):
    """A question for the cache, answered by the LLM on a miss."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, description="the user's question")
    model: str | None = Field(None, min_length=1, description="model to answer with; the service default if absent")
    instructions: str | None = Field(None, description="system instructions; part of the cache scope")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_output_tokens: int | None = Field(None, ge=1, le=1_000_000)
    cache: CacheOptions = Field(default_factory=lambda: CacheOptions())


class UsageOut(BaseModel):
    """Tokens this request consumed (zero on a hit)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class CacheOut(BaseModel):
    """How the cache took part in the answer."""

    status: Literal["hit", "miss", "bypass"]
    tier: Literal["exact", "semantic"] | None
    similarity: float | None
    entry_id: str | None
    matched_query: str | None
    ttl_seconds: int | None
    reason: str | None = Field(
        None,
        description="why the cache was bypassed, the answer not stored, or the nearest stored question not served",
    )
    confidence: float | None = Field(None, description="verifier probability that the matched question is the same")
    freshness: Literal["volatile", "dated", "evergreen"] | None = Field(
        None, description="how the question and answer were judged when the answer was stored"
    )


class QueryResponse(BaseModel):
    """The answer and how it was obtained."""

    response: str
    model: str
    usage: UsageOut
    cache: CacheOut

    @classmethod
    def of(cls, answer: Answer) -> QueryResponse:
        """Render a core Answer."""
        c = answer.cache
        return cls(
            response=answer.text,
            model=answer.model,
            usage=UsageOut(
                input_tokens=answer.usage.input_tokens,
                output_tokens=answer.usage.output_tokens,
                total_tokens=answer.usage.total_tokens,
            ),
            cache=CacheOut(
                status=c.status,
                tier=c.tier,
                similarity=None if c.similarity is None else round(c.similarity, 6),
                entry_id=c.entry_id,
                matched_query=c.matched_query,
                ttl_seconds=c.ttl_seconds,
                reason=c.reason,
                confidence=None if c.confidence is None else round(c.confidence, 4),
                freshness=c.freshness,
            ),
        )
