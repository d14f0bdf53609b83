"""Errors raised by semcache.

SemcacheError
├── ConfigError         a setting is missing or wrong (start-up fails, naming the setting)
├── InvalidRequest      the request cannot be served as asked (HTTP 4xx)
├── StoreError          the cache store failed or timed out (never reaches a client: we answer without it)
│   └── StoreFull       the store refused a write for want of memory (reads still work)
├── EmbedderError       the embedder failed (treated like a store failure)
└── UpstreamError       the LLM call failed (HTTP 502)
    ├── UpstreamTimeout the LLM call timed out (HTTP 504)
    └── UpstreamRejected the LLM refused the request as malformed (its 400, 404 or 422, passed on as such)
"""

from __future__ import annotations


class SemcacheError(Exception):
    """Base of every error semcache raises on purpose."""


class ConfigError(SemcacheError):
    """A setting is missing or wrong; the message names it."""


class InvalidRequest(SemcacheError):
    """The request cannot be served as asked."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


class StoreError(SemcacheError):
    """The cache store failed or did not answer within its budget. `public` is what may be shown to anyone (the
    health check is open): the message without the driver's details, which name hosts and ports."""

    def __init__(self, message: str, *, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public if public is not None else message


class StoreFull(StoreError):
    """The store refused a write for want of memory (Redis at maxmemory under the noeviction policy). Reads still
    work, so this is no reason to stop reading from it: the answer is simply not stored."""


class EmbedderError(SemcacheError):
    """The embedder could not embed the text."""


class UpstreamError(SemcacheError):
    """The LLM call failed; status is the upstream HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class UpstreamTimeout(UpstreamError):
    """The LLM call did not finish within its timeout."""


class UpstreamRejected(UpstreamError):
    """The LLM refused the request itself (HTTP 400, 404 or 422: a parameter the model does not take, a model that
    does not exist): the caller's to fix, so it is answered with that status and the LLM's own reason and param,
    not as a failure of ours (a 502, which the SDKs retry)."""

    STATUSES = frozenset({400, 404, 422})

    def __init__(self, message: str, *, status: int, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message, status=status, code=code)
        self.param = param
