"""The HTTP edge: FastAPI routes over a CacheService."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from semcache import __version__
from semcache.core.errors import InvalidRequest, SemcacheError, StoreError
from semcache.core.models import Answer, CacheControl, Message, Prompt
from semcache.core.service import CacheService
from semcache.http import errors
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
from semcache.metrics import Metrics

DEFAULT_TENANT = "default"


def cache_headers(answer: Answer) -> dict[str, str]:
    """The x-semcache-* headers every answer carries."""
    c = answer.cache
    return {
        "x-semcache": c.status,
        "x-semcache-tier": c.tier or "none",
        "x-semcache-similarity": "none" if c.similarity is None else f"{c.similarity:.4f}",
        "x-semcache-entry": c.entry_id or "none",
    }


def create_app(
    service: CacheService,
    *,
    default_model: str,
    max_query_chars: int,
    metrics: Metrics | None = None,
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
    errors.install(app)

    stats = metrics or Metrics()

    async def answer(prompt: Prompt, control: CacheControl, route: str) -> Answer:
        text = prompt.text
        try:
            if text is not None and len(text) > max_query_chars:
                raise InvalidRequest(f"the prompt is longer than {max_query_chars} characters", param="query")
            result = await service.answer(prompt, control, tenant=DEFAULT_TENANT)
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
        except StoreError as exc:
            store = {"ok": False, "error": str(exc)}
        embedder = {"id": service.embedder.id, "dim": service.embedder.dim}
        return {
            "status": "ok" if store["ok"] else "degraded",
            "version": __version__,
            "store": store,
            "embedder": embedder,
        }

    @app.get("/v1/cache/stats")
    async def cache_stats() -> dict[str, object]:
        """Hits, misses, bypasses, hit rate, lookup and LLM latency percentiles, tokens and dollars saved."""
        return stats.snapshot()

    @app.post("/api/query", response_model=QueryResponse)
    async def query(body: QueryRequest, response: Response) -> QueryResponse:
        """Answer a question from the cache or the LLM."""
        options = {
            "temperature": body.temperature,
            "top_p": body.top_p,
            "max_output_tokens": body.max_output_tokens,
        }
        prompt = Prompt(
            model=body.model or default_model,
            messages=(Message("user", body.query),),
            instructions=body.instructions,
            options={k: v for k, v in options.items() if v is not None},
        )
        result = await answer(prompt, body.cache.to_control(), "/api/query")
        response.headers.update(cache_headers(result))
        return QueryResponse.of(result)

    @app.post("/v1/responses")
    async def responses(body: ResponsesRequest, request: Request) -> JSONResponse:
        """OpenAI's Responses API, cached."""
        prompt = responses_prompt(body, default_model=default_model)
        result = await answer(prompt, cache_control(request.headers), "/v1/responses")
        return JSONResponse(render_response(result, prompt), headers=cache_headers(result))

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> JSONResponse:
        """OpenAI's Chat Completions API (text subset), cached, answered through the Responses API."""
        prompt = chat_prompt(body, default_model=default_model)
        result = await answer(prompt, cache_control(request.headers), "/v1/chat/completions")
        return JSONResponse(render_chat(result), headers=cache_headers(result))

    return app
