"""Who is calling: API keys map to tenants; keys are configured as sha256 digests and compared in constant time.

With no keys configured (the local default) every caller is the anonymous tenant "default", with admin rights.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Request

ANONYMOUS = "default"


class Unauthorized(Exception):
    """The request carries no valid API key (HTTP 401)."""


class Forbidden(Exception):
    """The caller may not do this (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller."""

    tenant: str
    admin: bool


def key_digest(key: str) -> str:
    """The sha256 hex digest under which an API key is configured (`semcache hash-key`)."""
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    """Resolves the caller from `Authorization: Bearer <key>` (what the OpenAI SDK sends) or `x-api-key`."""

    def __init__(self, keys: Mapping[str, str], *, admin_digest: str | None) -> None:
        self._keys = dict(keys)
        self._admin = admin_digest

    @property
    def enabled(self) -> bool:
        """True when API keys are configured."""
        return bool(self._keys) or self._admin is not None

    def caller(self, request: Request) -> Caller:
        """The caller of request; Unauthorized if keys are configured and none of them matches."""
        if not self.enabled:
            return Caller(ANONYMOUS, admin=True)
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
        if not token:
            raise Unauthorized
        digest = key_digest(token)
        tenant = None
        for known, name in self._keys.items():  # every entry is compared: timing does not reveal which matched
            if hmac.compare_digest(known, digest):
                tenant = name
        admin = self._admin is not None and hmac.compare_digest(self._admin, digest)
        if tenant is None and not admin:
            raise Unauthorized
        return Caller(tenant or "admin", admin=admin)
