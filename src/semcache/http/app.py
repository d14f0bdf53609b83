"""The HTTP edge: FastAPI routes over a CacheService."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from semcache import __version__
from semcache.core.calibration import FEEDBACK_LOG_LIMIT
from semcache.core.errors import InvalidRequest, SemcacheError, StoreError, UpstreamError
from semcache.core.models import CHAT_FORWARD, JSON, Answer, CacheControl, CacheInfo, Judgement, Message, Prompt
from semcache.core.service import CacheService, EventSink
from semcache.http import errors
from semcache.http.auth import Authenticator, Caller, Forbidden
from semcache.http.limits import BodyLimit
from semcache.http.openai_compat import (
    ChatRequest,
    ResponsesRequest,
    cache_control,
    chat_prompt,
    render_chat,
    render_response,
    responses_prompt,
)
from semcache.http.schemas import QueryRequest, QueryResponse
from semcache.http.streaming import DONE, ChatStream, responses_error, responses_event, responses_replay, sse
from semcache.metrics import Metrics

log = logging.getLogger("semcache")


class FlushRequest(BaseModel):
    """Which entries to remove: the caller's own (or, for the admin, one tenant's or everyone's), one scope or all."""

    model_config = ConfigDict(extra="forbid")

    scope: str | None = Field(None, pattern="^[0-9a-f]{64}$", description="a scope digest (cache.scope)")
    tenant: str | None = Field(None, min_length=1, max_length=64, description="admin only: whose entries")
    all_tenants: bool = Field(False, description="admin only: every tenant's entries")


class FeedbackRequest(BaseModel):
    """A verdict on an answer served from the cache."""

    model_config = ConfigDict(extra="forbid")

    entry_id: str = Field(pattern="^[0-9a-f]{32}$")
    verdict: Judgement = Field(
        description="wrong: the answer is removed; mismatch: the answer is right for its own question but not for the "
        "one asked (query required): it stays, and never serves that question again; right: kept"
    )
    query: str | None = Field(
        None,
        min_length=1,
        description="the question that was asked (the last user turn): with it, a verdict on a semantic hit also "
        "calibrates the tenant's confidence threshold",
    )


def _caller(request: Request) -> Caller:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.caller(request)


def _admin(who: Annotated[Caller, Depends(_caller)]) -> Caller:
    if not who.admin:
        raise Forbidden("admin key required")
    return who


CallerDep = Annotated[Caller, Depends(_caller)]
AdminDep = Annotated[Caller, Depends(_admin)]


def cache_headers(c: CacheInfo) -> dict[str, str]:
    """The x-semcache-* headers every answer carries; x-semcache-reason when there is one (why the cache was
    bypassed, the answer not stored, or the nearest stored question not served), in ASCII (a header's charset)."""
    headers = {
        "x-semcache": c.status,
        "x-semcache-tier": c.tier or "none",
        "x-semcache-similarity": "none" if c.similarity is None else f"{c.similarity:.4f}",
        "x-semcache-entry": c.entry_id or "none",
    }
    if c.reason:
        headers["x-semcache-reason"] = c.reason.encode("ascii", "backslashreplace").decode()[:512]
    return headers


def create_app(
    service: CacheService,
    *,
    default_model: str,
    max_query_chars: int,
    metrics: Metrics | None = None,
    auth: Authenticator | None = None,
    max_body_bytes: int = 1_000_000,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """The ASGI app; start-up and shut-down hooks run in the lifespan (the Lambda handler turns it off)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        yield
        if on_shutdown is not None:
            await on_shutdown()

    app = FastAPI(title="semcache", version=__version__, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    errors.install(app)
    stats = metrics or Metrics()
    authenticator = auth or Authenticator({}, admin_digest=None)

    app.state.authenticator = authenticator

    async def answer(
        prompt: Prompt,
        control: CacheControl,
        route: str,
        who: Caller,
        on_event: EventSink | None = None,
    ) -> Answer:
        text = prompt.text
        try:
            if text is not None and len(text) > max_query_chars:
                raise InvalidRequest(
                    f"the prompt is longer than {max_query_chars} characters", param="query", status=422
                )
            result = await service.answer(prompt, control, tenant=who.tenant, on_event=on_event)
        except SemcacheError as exc:
            stats.record_error(route=route, kind=type(exc).__name__)
            raise
        stats.record(result, route=route)
        return result

    @app.get("/")
    async def health() -> dict[str, Any]:
        """Liveness plus the store's and the embedder's state; a store outage degrades, it does not fail."""
        try:
            store: dict[str, object] = {"ok": True, **await service.store.ping()}
        except StoreError as exc:  # this route is open to anyone: the driver's details (hosts, ports) go to the log
            log.info("health check: %s", exc)
            store = {"ok": False, "error": exc.public}
        embedder = {"id": service.embedder.id, "dim": service.embedder.dim}
        return {
            "status": "ok" if store["ok"] else "degraded",
            "version": __version__,
            "store": store,
            "embedder": embedder,
            "auth": "api keys" if authenticator.enabled else "none (one anonymous tenant)",
        }

    @app.post("/api/query", response_model=QueryResponse)
    async def query(body: QueryRequest, response: Response, who: CallerDep) -> QueryResponse:
        """Answer a question from the cache or the LLM."""
        options = {"temperature": body.temperature, "top_p": body.top_p, "max_output_tokens": body.max_output_tokens}
        prompt = Prompt(
            model=body.model or default_model,
            messages=(Message("user", body.query),),
            instructions=body.instructions,
            options={k: v for k, v in options.items() if v is not None},
        )
        result = await answer(prompt, body.cache.to_control(), "/api/query", who)
        response.headers.update(cache_headers(result.cache))
        return QueryResponse.of(result)

    async def streamed(
        prompt: Prompt,
        control: CacheControl,
        route: str,
        who: Caller,
        relay: Callable[[Mapping[str, JSON]], str | None],
        replay: Callable[[Answer], Iterator[str]],
        end: Callable[[Answer], Iterator[str]],
        error: Callable[[UpstreamError], str],
    ) -> Response:
        """The answer as a stream (semcache.http.streaming): replayed at once if it is complete before its first
        event (a hit), else relayed event by event as the LLM sends it."""
        events: asyncio.Queue[Mapping[str, JSON] | None] = asyncio.Queue()
        statuses: list[CacheInfo] = []

        def receive(info: CacheInfo, event: Mapping[str, JSON]) -> None:
            if not statuses:  # the status the headers give: the same for every event of one answer
                statuses.append(info)
            events.put_nowait(event)

        def finished(task: asyncio.Future[Answer]) -> None:
            events.put_nowait(None)
            if not task.cancelled():
                task.exception()  # retrieved even if the client has gone: the answer is still stored if complete

        # Its own task: a client that goes away mid-stream does not cancel the call, so a complete answer is kept.
        task = asyncio.ensure_future(answer(prompt, control, route, who, on_event=receive))
        task.add_done_callback(finished)
        first = await events.get()
        if first is None:  # complete before any event: a hit, a shared answer, or an error (raised here, as JSON)
            result = task.result()
            body = "".join(replay(result))
            return Response(body, media_type="text/event-stream", headers=cache_headers(result.cache))

        async def relayed() -> AsyncIterator[str]:
            event: Mapping[str, JSON] | None = first
            while event is not None:
                if (chunk := relay(event)) is not None:
                    yield chunk
                event = await events.get()
            try:
                result = task.result()
            except UpstreamError as exc:  # the stream broke off: nothing was stored
                yield error(exc)
            else:
                for chunk in end(result):
                    yield chunk

        # what is known at the first event: the status (no tier, similarity or entry yet)
        return StreamingResponse(relayed(), media_type="text/event-stream", headers=cache_headers(statuses[0]))

    @app.post("/v1/responses", response_model=None)
    async def responses(body: ResponsesRequest, request: Request, who: CallerDep) -> Response:
        """OpenAI's Responses API, cached; stream=true streams it (a hit at once, a miss as the LLM sends it)."""
        prompt = responses_prompt(body, default_model=default_model)
        control = cache_control(request.headers)
        if body.stream:
            return await streamed(
                prompt, control, "/v1/responses", who,
                relay=responses_event,
                replay=lambda result: responses_replay(result, prompt),
                end=lambda result: iter(()),  # the LLM's own final event has been relayed
                error=lambda exc: responses_error(exc.message, exc.code),
            )  # fmt: skip
        result = await answer(prompt, control, "/v1/responses", who)
        return JSONResponse(render_response(result, prompt), headers=cache_headers(result.cache))

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatRequest, request: Request, who: CallerDep) -> Response:
        """OpenAI's Chat Completions API (text subset), cached, answered through the Responses API; stream=true
        streams chat.completion.chunk objects. A request beyond that subset (tools, stop, n...) goes to OpenAI's
        chat route as it is, uncached, and its answer or chunks come back as they are."""
        prompt = chat_prompt(body, default_model=default_model)
        control = cache_control(request.headers)
        if body.stream and CHAT_FORWARD in prompt.passthrough:
            return await streamed(
                prompt, control, "/v1/chat/completions", who,
                relay=sse,
                replay=lambda _: iter([DONE]),
                end=lambda _: iter([DONE]),
                error=lambda exc: ChatStream.error(exc.message, "upstream_error"),
            )  # fmt: skip
        if body.stream:
            chunks = ChatStream(prompt.model, include_usage=bool((body.stream_options or {}).get("include_usage")))
            return await streamed(
                prompt, control, "/v1/chat/completions", who,
                relay=chunks.text,
                replay=chunks.replay,
                end=chunks.end,
                error=lambda exc: ChatStream.error(exc.message, "upstream_error"),
            )  # fmt: skip
        result = await answer(prompt, control, "/v1/chat/completions", who)
        return JSONResponse(render_chat(result), headers=cache_headers(result.cache))

    @app.post("/v1/cache/feedback")
    async def feedback(body: FeedbackRequest, who: CallerDep) -> dict[str, object]:
        """Mark a served answer wrong (it is removed; the next ask goes to the LLM) or right; with the question
        asked, a verdict on a semantic hit also calibrates the tenant's confidence threshold."""
        if body.query is not None and len(body.query) > max_query_chars:
            raise InvalidRequest(f"the query is longer than {max_query_chars} characters", param="query", status=422)
        tenant = None if who.admin and not authenticator.enabled else who.tenant
        try:
            verdict = await service.feedback(body.entry_id, body.verdict, tenant=tenant, query=body.query)
        except ValueError as exc:  # a mismatch without the question asked, or with the stored question itself
            raise InvalidRequest(str(exc), param="query", status=422) from None
        stats.record_feedback(wrong=body.verdict != "right")
        return {
            "entry_id": body.entry_id,
            "verdict": body.verdict,
            "removed": verdict.removed,
            "mismatched": verdict.mismatched,
            "confidence": verdict.confidence,
            "threshold": verdict.threshold,
        }

    @app.get("/v1/cache/feedback")
    async def feedback_log(
        who: CallerDep, tenant: str | None = None, limit: Annotated[int, Query(ge=1, le=FEEDBACK_LOG_LIMIT)] = 1000
    ) -> dict[str, object]:
        """Your newest labelled pairs from verdicts on semantic hits (the admin may name a tenant): the data for
        retraining the verifier, one {"a": stored, "b": asked, "duplicate", "confidence", ...} per verdict."""
        if tenant is not None and tenant != who.tenant and not who.admin:
            raise Forbidden("only the admin key may read another tenant's feedback")
        name = tenant or who.tenant
        return {"tenant": name, "examples": await service.feedback_log(name, limit)}

    @app.delete("/v1/cache/entries/{entry_id}")
    async def delete_entry(entry_id: str, who: CallerDep) -> JSONResponse:
        """Delete one entry (your own; the admin may delete any)."""
        removed = await service.delete(entry_id, tenant=None if who.admin else who.tenant)
        status = 200 if removed else 404
        return JSONResponse({"entry_id": entry_id, "deleted": removed}, status_code=status)

    @app.post("/v1/cache/flush")
    async def flush(body: FlushRequest, who: CallerDep) -> dict[str, object]:
        """Remove your entries (optionally one scope only); the admin may name a tenant or all tenants."""
        if (body.tenant is not None or body.all_tenants) and not who.admin:
            raise Forbidden("only the admin key may flush another tenant's entries")
        tenant = None if body.all_tenants else (body.tenant or who.tenant)
        return {"deleted": await service.flush(tenant=tenant, scope=body.scope)}

    @app.get("/v1/cache/stats")
    async def cache_stats(who: AdminDep) -> dict[str, object]:
        """Hits, misses, bypasses, hit rate, lookup and LLM latency percentiles, tokens and dollars saved; answers
        waiting for a free model to be stored (after a burst); lookups that reused a recent vector of their text;
        candidates the verifier's rules ruled out, by rule (this process's counts)."""
        return {
            **stats.snapshot(),
            "deferred_stores": service.deferred,
            "embeddings_reused": service.embeddings_reused,
            "ruled_out": service.ruled_out,
        }

    return app
