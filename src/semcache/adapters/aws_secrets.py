"""Secrets from AWS Secrets Manager (an ARN or name) or SSM Parameter Store (`ssm:/parameter/name`), cached briefly.

A secret's string is the value itself, or a JSON object holding it under the key the caller names (for example
{"url": "rediss://..."}), the shape the Secrets Manager console writes.

Two ways to read them, the same answers: through the AWS Parameters and Secrets Lambda Extension (a layer; one
HTTP GET to localhost, no SDK) when its port is configured, else with boto3. Importing boto3 and making a client
costs about 0.3 s of a cold start (bench/coldstart.py --secrets), the extension about nothing; if the extension does
not answer within a moment, boto3 is used after all.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from semcache.core.errors import ConfigError

log = logging.getLogger("semcache")


class ExtensionUnavailable(Exception):
    """The extension did not answer (not started, not ready): another way should be tried."""


class SecretsExtension:
    """The AWS Parameters and Secrets Lambda Extension's HTTP endpoint on localhost.

    It authenticates callers by the function's session token (header X-Aws-Parameters-Secrets-Token) and answers
    with the JSON of GetSecretValue / GetParameter. Its server may come up a little after the function's init
    starts (extensions and the runtime initialise side by side), so connection failures and its "not ready" reply
    are retried for up to ready_within_s.
    """

    def __init__(
        self,
        port: int,
        token: str,
        *,
        host: str = "localhost",
        timeout_s: float = 2.0,
        ready_within_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._host, self._port, self._token = host, port, token
        self._timeout_s, self._ready_within_s = timeout_s, ready_within_s
        self._clock, self._sleep = clock, sleep

    def secret(self, ref: str, setting: str) -> dict[str, Any]:
        """GetSecretValue's reply for ref (an ARN or name)."""
        return self._get(f"/secretsmanager/get?{urllib.parse.urlencode({'secretId': ref})}", ref, setting)

    def parameter(self, name: str, setting: str) -> dict[str, Any]:
        """GetParameter's reply for name, decrypted."""
        query = urllib.parse.urlencode({"name": name, "withDecryption": "true"})
        return self._get(f"/systemsmanager/parameters/get?{query}", name, setting)

    def _get(self, path: str, ref: str, setting: str) -> dict[str, Any]:
        deadline = self._clock() + self._ready_within_s
        while True:
            try:
                status, body = self._request(path)
            except OSError as exc:  # refused (not listening yet), reset, timed out
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    try:
                        document = json.loads(body)
                    except json.JSONDecodeError as exc:
                        raise ConfigError(f"{setting}: the secrets extension's reply for {ref} is not JSON") from exc
                    if not isinstance(document, dict):
                        raise ConfigError(f"{setting}: the secrets extension's reply for {ref} is not an object")
                    return document
                if "not ready" not in body.lower():
                    reason = f"{status} {body[:300]}"
                    raise ConfigError(f"{setting}: cannot read {ref} through the secrets extension: {reason}")
                problem = f"{status} {body[:100]}"
            if self._clock() >= deadline:
                raise ExtensionUnavailable(problem)
            self._sleep(0.02)

    def _request(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        try:
            connection.request("GET", path, headers={"X-Aws-Parameters-Secrets-Token": self._token})
            reply = connection.getresponse()
            return reply.status, reply.read().decode("utf-8", "replace")
        finally:
            connection.close()


class SecretReader:
    """Reads and caches secret values; clients are made on first use (boto3 ships with the Lambda runtime)."""

    def __init__(
        self,
        *,
        ttl_s: float = 300,
        secretsmanager: Any = None,
        ssm: Any = None,
        extension: SecretsExtension | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._secretsmanager = secretsmanager
        self._ssm = ssm
        self._extension = extension
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

    @classmethod
    def for_lambda(cls, *, ttl_s: float, extension_port: int | None) -> SecretReader:
        """A reader that goes through the extension when its port is set (and a session token exists)."""
        token = os.environ.get("AWS_SESSION_TOKEN")
        extension = SecretsExtension(extension_port, token) if extension_port and token else None
        return cls(ttl_s=ttl_s, extension=extension)

    def _fetch(self, ref: str, setting: str) -> str:
        if self._extension is not None:
            try:
                return self._through_extension(self._extension, ref, setting)
            except ExtensionUnavailable as exc:
                log.warning("the secrets extension does not answer (%s): reading secrets with boto3", exc)
                self._extension = None
        return self._through_sdk(ref, setting)

    @staticmethod
    def _through_extension(extension: SecretsExtension, ref: str, setting: str) -> str:
        if ref.startswith("ssm:"):
            parameter = extension.parameter(ref.removeprefix("ssm:"), setting).get("Parameter")
            if not isinstance(parameter, dict) or not isinstance(parameter.get("Value"), str):
                raise ConfigError(f"{setting}: the secrets extension's reply for {ref} holds no parameter value")
            return str(parameter["Value"])
        reply = extension.secret(ref, setting)
        if not isinstance(reply.get("SecretString"), str):
            raise ConfigError(f"{setting}: {ref} holds a binary secret; store the value as a string")
        return str(reply["SecretString"])

    def _through_sdk(self, ref: str, setting: str) -> str:
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
