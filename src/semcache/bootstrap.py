"""The composition root: builds the service and the app from settings, once."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from fastapi import FastAPI
from pydantic import ValidationError
from redis.asyncio import Redis
from threadpoolctl import threadpool_limits

from semcache.adapters import redis_store
from semcache.adapters.onnx_embedder import OnnxEmbedder
from semcache.adapters.openai_llm import OpenAILLM
from semcache.adapters.redis_store import IndexMismatch, RedisStore
from semcache.core.errors import ConfigError, StoreError
from semcache.core.freshness import FreshnessPolicy
from semcache.core.service import CacheService, Policy
from semcache.core.verifier import DEFAULT_PATH as VERIFIER_PATH
from semcache.core.verifier import Verifier
from semcache.http.app import create_app as create_http_app
from semcache.http.auth import ANONYMOUS, Authenticator
from semcache.metrics import Metrics, Prices
from semcache.settings import Settings

log = logging.getLogger("semcache")


@dataclass(frozen=True, slots=True)
class Components:
    """Everything built from settings, kept so it can be started and closed."""

    settings: Settings
    service: CacheService
    store: RedisStore
    redis: Redis
    llm: OpenAILLM

    async def start(self) -> None:
        """Create the index; if Redis is unreachable, serve from the LLM and create it when Redis is back."""
        try:
            created = await self.store.ensure_index()
            log.info("index %s %s", self.store.index_name, "created" if created else "ready")
        except IndexMismatch as exc:
            self.store.refuse(str(exc))
            log.error("the cache is off: %s", exc)
        except StoreError as exc:
            log.warning("Redis is unreachable at start (%s); answering from the LLM until it is back", exc)
        self.llm.preload()  # the OpenAI SDK, on a thread: hits never wait for it, the first miss rarely does

    async def close(self) -> None:
        """Stop the service's background work and close the network clients."""
        await self.service.close()
        await self.store.close()
        await self.llm.close()


def load_settings() -> Settings:
    """Settings from the environment, with errors that name the variable to set."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"SEMCACHE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None


def build_embedder(settings: Settings) -> OnnxEmbedder:
    """The ONNX embedder from SEMCACHE_MODEL_DIR."""
    for file in ("model.onnx", "tokenizer.json"):
        if not (settings.model_dir / file).is_file():
            raise ConfigError(
                f"SEMCACHE_MODEL_DIR: {settings.model_dir / file} not found (`make models` fetches the embedder files)"
            )
    name = settings.embedder_name
    if name is None:  # model.json, written by local/artifacts.py, names what model.onnx was built from
        try:
            name = str(json.loads((settings.model_dir / "model.json").read_text())["name"])
        except (OSError, ValueError, KeyError, TypeError):
            name = "onnx-embedder"
    return OnnxEmbedder(
        settings.model_dir / "model.onnx",
        settings.model_dir / "tokenizer.json",
        name=name,
        threads=settings.embed_threads,
    )


def build_store(settings: Settings, embedder: OnnxEmbedder) -> RedisStore:
    """The Redis store for this embedder's vectors (no network I/O until first used)."""
    redis = redis_store.connect(
        settings.redis_url,
        timeout_s=settings.redis_timeout_s,
        connect_timeout_s=settings.redis_connect_timeout_s,
        max_connections=settings.redis_max_connections,
    )
    return RedisStore(
        redis,
        prefix=settings.key_prefix,
        embedder_id=embedder.id,
        dim=embedder.dim,
        ef_runtime=settings.knn_ef_runtime,
        knn_plan=settings.knn_plan,
        timeout_s=settings.redis_timeout_s,
    )


def build_policy(settings: Settings) -> Policy:
    """The caching policy: matcher, thresholds, TTLs and freshness rules."""
    freshness = FreshnessPolicy(settings.volatile_ttl_seconds, settings.dated_answer_ttl_seconds)
    if settings.matcher == "cosine":
        return Policy(
            ttl_seconds=settings.ttl_seconds,
            min_similarity=settings.min_similarity or 0.85,
            freshness=freshness,
            any_language=settings.semantic_any_language,
            embed_wait_budget_s=settings.embed_wait_budget_ms / 1000,
        )
    path = settings.verifier_path or VERIFIER_PATH
    if not path.is_file():
        raise ConfigError(f"SEMCACHE_VERIFIER_PATH: {path} not found (`make train-verifier` writes it)")
    verifier = Verifier.load(path)
    return Policy(
        ttl_seconds=settings.ttl_seconds,
        min_similarity=settings.min_similarity or verifier.min_cosine,
        verifier=verifier,
        min_confidence=settings.min_confidence,
        freshness=freshness,
        max_error=settings.feedback_max_error,
        any_language=settings.semantic_any_language,
        embed_wait_budget_s=settings.embed_wait_budget_ms / 1000,
    )


def limit_blas_threads() -> None:
    """Keep numpy's BLAS on its calling thread, for the whole process.

    The verifier's matrix product (783 features x 4 networks of 128 per candidate) is big enough for OpenBLAS to
    hand it to its own threads, which then spin on the cores the model runs need: with 8 networks, 68 against 101
    semantic hits/s with 16 callers in a hand A/B (docs/quality.md), and no gain for a single request. The model
    runs have their own threads (onnxruntime's), sized by SEMCACHE_EMBED_CONCURRENCY.
    """
    threadpool_limits(limits=1, user_api="blas")


def build(settings: Settings, *, one_request_at_a_time: bool = False) -> Components:
    """Build every collaborator explicitly from settings. No network I/O happens here.

    one_request_at_a_time: the process never serves two requests at once (a Lambda instance), so embeddings run
    on the event loop's thread (about 1 ms less per semantic hit than handing them to a runner thread and back),
    and the LLM is called through the SDK's default transport rather than aiohttp, which only pays with many
    calls in flight."""
    limit_blas_threads()
    if settings.openai_api_key is None:
        raise ConfigError(
            "OPENAI_API_KEY is not set: set it (and OPENAI_BASE_URL for a compatible server), "
            "or use `make run`, which starts a local stand-in when no key is set"
        )
    embedder = build_embedder(settings)
    store = build_store(settings, embedder)
    llm = OpenAILLM(  # the SDK is imported on first use or by llm.preload(), not here: see openai_llm
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        deadline_s=settings.llm_deadline_s,
        # many calls in flight at once on the server; one at a time on Lambda (see openai_llm)
        transport="httpx" if one_request_at_a_time else "aiohttp",
    )
    service = CacheService(
        embedder=embedder,
        store=store,
        llm=llm,
        policy=build_policy(settings),
        embed_batch=settings.embed_batch,
        embed_concurrency=settings.embed_concurrency,
        embed_inline=one_request_at_a_time,
        recent_embeddings=settings.recent_embeddings,
    )
    return Components(settings=settings, service=service, store=store, redis=store.client, llm=llm)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The local server's app (uvicorn --factory): settings from the environment unless given."""
    components = build(settings or load_settings())
    return app_for(components)


def app_for(components: Components, *, lifespan: bool = True) -> FastAPI:
    """The FastAPI app over built components; with lifespan, start-up and shut-down start and close them."""
    s = components.settings
    metrics = Metrics(
        prices=Prices(s.price_input_usd_per_mtok, s.price_output_usd_per_mtok),
        emf_namespace=s.metrics_namespace if s.metrics_emf else None,
    )
    auth = Authenticator(s.api_keys, admin_digest=s.admin_key_sha256)
    if not auth.enabled:
        log.warning("no API keys configured: every caller is the anonymous tenant %r, with admin rights", ANONYMOUS)
    return create_http_app(
        components.service,
        default_model=s.default_model,
        max_query_chars=s.max_query_chars,
        metrics=metrics,
        auth=auth,
        max_body_bytes=s.max_body_bytes,
        on_startup=components.start if lifespan else None,
        on_shutdown=components.close if lifespan else None,
    )
