"""The one place where errors become HTTP answers: OpenAI's error shape, so the SDK reports them well."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from semcache.core.errors import (
    EmbedderError,
    InvalidRequest,
    StoreError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from semcache.http.auth import Forbidden, Unauthorized
from semcache.http.limits import BodyTooLarge

log = logging.getLogger("semcache")


def error_body(message: str, kind: str, *, param: str | None = None, code: str | None = None) -> dict[str, object]:
    """{"error": {...}} as OpenAI writes it."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def install(app: FastAPI) -> None:
    """Register the handlers on app."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg"), "type": e.get("type")} for e in errors
        ]
        first = errors[0] if errors else {}
        whole = _whole_body_problem(first, request.headers.get("content-type", ""))
        if whole is not None:  # not a field's fault: the body is not JSON, or not an object
            body = error_body(whole, "invalid_request_error", code="invalid_body")
            body["details"] = details
            return JSONResponse(body, status_code=400)
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        body = error_body(message, "invalid_request_error", param=where, code="invalid_value")
        body["details"] = details
        return JSONResponse(body, status_code=422)

    @app.exception_handler(InvalidRequest)
    async def _bad(request: Request, exc: InvalidRequest) -> JSONResponse:
        return JSONResponse(error_body(exc.message, "invalid_request_error", param=exc.param), status_code=exc.status)

    async def _cache_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Only the cache's own routes (feedback, delete, flush, the feedback log) meet these: a question is
        # answered by the LLM when the store or the embedder fails, never turned away.
        log.warning("%s %s: %s", request.method, request.url.path, exc)  # the detail (hosts, ports) stays here
        message = "the cache is unavailable, try again shortly; questions are still answered"
        return JSONResponse(error_body(message, "cache_unavailable"), status_code=503, headers={"retry-after": "5"})

    app.add_exception_handler(StoreError, _cache_unavailable)
    app.add_exception_handler(EmbedderError, _cache_unavailable)

    @app.exception_handler(UpstreamError)
    async def _upstream(request: Request, exc: UpstreamError) -> JSONResponse:
        if isinstance(exc, UpstreamRejected):  # the request's own fault: its status, the LLM's reason and param
            kind, status, param = "invalid_request_error", exc.status or 400, exc.param
        else:
            log.warning("upstream failure: %s", exc.message)
            timeout = isinstance(exc, UpstreamTimeout)
            kind, status, param = ("upstream_timeout", 504, None) if timeout else ("upstream_error", 502, None)
        body = error_body(exc.message, kind, param=param, code=exc.code)
        body["error"]["upstream_status"] = exc.status  # type: ignore[index]
        return JSONResponse(body, status_code=status)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse(
            error_body("request body too large", "invalid_request_error", code="body_too_large"), status_code=413
        )

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        body = error_body("missing or invalid API key", "authentication_error", code="invalid_api_key")
        return JSONResponse(body, status_code=401, headers={"www-authenticate": "Bearer"})

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse(error_body(str(exc) or "admin key required", "permission_error"), status_code=403)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), "invalid_request_error"),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body("internal error", "internal_error"), status_code=500)


def _whole_body_problem(error: Mapping[str, Any], content_type: str) -> str | None:
    """What is wrong with the body as a whole (FastAPI reports it as a field error at "body"), or None."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return f"request body is not valid JSON{at}" + (f": {reason}" if reason else "")
    if loc == ("body",):
        if "json" not in content_type.lower():
            return "request body must be a JSON object sent with content-type: application/json"
        return "request body must be a JSON object"
    return None
