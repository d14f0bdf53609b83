"""The Lambda entry's builder: settings and secrets, embedder session, Redis and OpenAI clients, built once per
execution environment (at init) and reused by every warm invocation."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any, Protocol

from mangum import Mangum
from pydantic import SecretStr, ValidationError

from semcache.adapters.aws_secrets import SecretReader
from semcache.bootstrap import Components, app_for, build, load_settings
from semcache.core.errors import ConfigError
from semcache.logs import configure_json_logging
from semcache.settings import Settings

log = logging.getLogger("semcache")


class SecretSource(Protocol):
    """Where secret values come from."""

    def get(self, ref: str, *, key: str | None, setting: str) -> str:
        """The value behind ref."""
        ...


def resolve_secrets(settings: Settings, secrets: SecretSource) -> Settings:
    """Settings with the Redis URL and OpenAI key read from the secrets their *_SECRET_ARN settings name."""
    update: dict[str, Any] = {}
    if settings.redis_url_secret_arn:
        url = secrets.get(settings.redis_url_secret_arn, key="url", setting="SEMCACHE_REDIS_URL_SECRET_ARN")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "SEMCACHE_REDIS_URL_SECRET_ARN: the secret must hold a redis://, rediss:// or unix:// URL"
            )
        update["redis_url"] = url
    if settings.openai_api_key_secret_arn:
        key = secrets.get(
            settings.openai_api_key_secret_arn, key="api_key", setting="SEMCACHE_OPENAI_API_KEY_SECRET_ARN"
        )
        update["openai_api_key"] = SecretStr(key)
    if settings.api_keys_secret_arn:
        raw = secrets.get(settings.api_keys_secret_arn, key=None, setting="SEMCACHE_API_KEYS_SECRET_ARN")
        try:
            update["api_keys"] = Settings.model_validate({"api_keys": json.loads(raw)}).api_keys
        except (ValueError, ValidationError) as exc:
            raise ConfigError(
                f"SEMCACHE_API_KEYS_SECRET_ARN: the secret must hold JSON of digest -> tenant: {exc}"
            ) from None
    return settings.model_copy(update=update) if update else settings


class LambdaEntry:
    """The Lambda handler: Mangum over the app, on one event loop kept for the execution environment's life."""

    def __init__(self, components: Components) -> None:
        self.components = components
        # Mangum runs the ASGI lifespan on every invocation, so it is off; start-up happens here instead, on the
        # loop Mangum will use for every invocation, so the Redis and OpenAI clients stay bound to it.
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._mangum = Mangum(app_for(components, lifespan=False), lifespan="off")
        self._loop.run_until_complete(components.start())
        if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
            # Restored from a snapshot, the Redis sockets opened at init are dead: drop them so new ones are made.
            # The snapshot should hold the OpenAI SDK already imported, so the preload is awaited before it is taken.
            from snapshot_restore_py import (  # provided by Lambda's SnapStart runtime
                register_after_restore,
                register_before_checkpoint,
            )

            register_before_checkpoint(lambda: self.components.llm.preload().join())
            register_after_restore(self._after_restore)

    def _after_restore(self) -> None:
        self._loop.run_until_complete(self.components.redis.connection_pool.disconnect())

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Handle one API Gateway event."""
        return self._mangum(event, context)

    def close(self) -> None:
        """Close the clients and the loop (tests; Lambda simply freezes the environment)."""
        self._loop.run_until_complete(self.components.close())
        self._loop.close()
        asyncio.set_event_loop(None)


def build_handler(settings: Settings | None = None, *, secrets: SecretSource | None = None) -> LambdaEntry:
    """Build everything now (Lambda init), not per request: settings, secrets, embedder, clients, the index."""
    configure_json_logging()
    settings = settings or load_settings()
    secrets = secrets or SecretReader.for_lambda(
        ttl_s=settings.secrets_cache_ttl_s, extension_port=settings.secrets_extension_port
    )
    settings = resolve_secrets(settings, secrets)
    return LambdaEntry(build(settings, one_request_at_a_time=True))  # Lambda sends an instance one event at a time
