"""Secrets from AWS Secrets Manager (an ARN or name) or SSM Parameter Store (`ssm:/parameter/name`), cached briefly.

A secret's string is the value itself, or a JSON object holding it under the key the caller names (for example
{"url": "rediss://..."}), the shape the Secrets Manager console writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from semcache.core.errors import ConfigError


class SecretReader:
    """Reads and caches secret values; clients are made on first use (boto3 ships with the Lambda runtime)."""

    def __init__(
        self,
        *,
        ttl_s: float = 300,
        secretsmanager: Any = None,
        ssm: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._secretsmanager = secretsmanager
        self._ssm = ssm
        self._clock = clock
        self._cache: dict[str, tuple[float, str]] = {}

    def get(self, ref: str, *, key: str | None, setting: str) -> str:
        """The value behind ref; ConfigError naming setting when it cannot be read."""
        cached = self._cache.get(ref)
        if cached is not None and self._clock() - cached[0] < self._ttl_s:
            return cached[1]
        raw = self._fetch(ref, setting)
        value = raw.strip() if key is None else _unwrap(raw, key, setting)
        self._cache[ref] = (self._clock(), value)
        return value

    def _fetch(self, ref: str, setting: str) -> str:
        import botocore.exceptions

        try:
            if ref.startswith("ssm:"):
                if self._ssm is None:
                    self._ssm = _client("ssm")
                reply = self._ssm.get_parameter(Name=ref.removeprefix("ssm:"), WithDecryption=True)
                return str(reply["Parameter"]["Value"])
            if self._secretsmanager is None:
                self._secretsmanager = _client("secretsmanager")
            reply = self._secretsmanager.get_secret_value(SecretId=ref)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise ConfigError(f"{setting}: cannot read {ref}: {exc}") from exc
        if "SecretString" not in reply:
            raise ConfigError(f"{setting}: {ref} holds a binary secret; store the value as a string")
        return str(reply["SecretString"])


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)


def _unwrap(raw: str, key: str, setting: str) -> str:
    text = raw.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{setting}: the secret looks like JSON but does not parse: {exc}") from exc
        value = document.get(key) if isinstance(document, dict) else None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{setting}: the secret is a JSON object without a string {key!r}")
        return value
    if not text:
        raise ConfigError(f"{setting}: the secret is empty")
    return text
