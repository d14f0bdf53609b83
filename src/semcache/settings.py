"""All configuration, read once from the environment (prefix SEMCACHE_), checked at start-up."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from semcache.core.service import MAX_TTL_SECONDS

_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def _check_digest(value: str, setting: str) -> None:
    if not _DIGEST.fullmatch(value):
        raise ValueError(f"{setting}: keys are configured as sha256 hex digests (`semcache hash-key`), got {value!r}")


class Settings(BaseSettings):
    """semcache's settings; an explicit argument beats the environment."""

    model_config = SettingsConfigDict(env_prefix="SEMCACHE_", frozen=True, extra="ignore", populate_by_name=True)

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis Stack / Redis 8 / MemoryDB / Valkey URL (rediss:// for TLS)",
    )
    key_prefix: str = Field("semcache:", description="prefix of every key and index semcache creates")
    redis_timeout_s: float = Field(0.25, gt=0, le=5, description="budget of one Redis round trip")
    redis_connect_timeout_s: float = Field(1.0, gt=0, le=10, description="budget to open a Redis connection")
    redis_max_connections: int = Field(64, ge=1, le=10_000, description="Redis connections per process")
    knn_ef_runtime: int = Field(
        50, ge=1, le=4096, description="HNSW search width of a lookup (EF_RUNTIME), where the server accepts it"
    )
    knn_plan: Literal["auto", "server", "batches"] = Field(
        "auto",
        description="scope-filtered KNN plan on RediSearch: auto (the faster per scope, measured), server (its own "
        "estimate) or batches (always walk the graph)",
    )

    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SEMCACHE_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("SEMCACHE_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    llm_timeout_s: float = Field(20.0, gt=0, le=600, description="timeout of one LLM call")
    llm_max_retries: int = Field(1, ge=0, le=5, description="retries of a failed LLM call")
    llm_deadline_s: float | None = Field(
        None,
        gt=0,
        le=900,
        description="bound on one LLM call with all its retries (none: the timeout times the attempts); behind API "
        "Gateway set it below the function's timeout, so a slow LLM is a clear 504 and not the gateway's own",
    )
    default_model: str = Field("gpt-4.1-mini", min_length=1, description="model used when a request names none")

    model_dir: Path = Field(Path(".local/models"), description="folder holding model.onnx and tokenizer.json")
    embedder_name: str | None = Field(
        None, min_length=1, description="label of the model in the embedder id (default: the name in model.json)"
    )
    embed_threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads")
    embed_batch: int = Field(8, ge=1, le=256, description="most texts embedded in one model run (micro-batching)")
    embed_concurrency: int = Field(
        default_factory=lambda: min(8, os.cpu_count() or 1), ge=1, le=64, description="model runs at a time (cores)"
    )
    recent_embeddings: int = Field(
        4096,
        ge=0,
        le=1_000_000,
        description="vectors of recently asked texts kept per tenant (about 1.6 KB each): a paraphrase asked again in "
        "the same words is not embedded again; 0 turns this off",
    )
    embed_wait_budget_ms: float = Field(
        250, ge=0, description="a request whose embedding would queue longer skips the semantic tier (LLM at once)"
    )

    semantic_any_language: bool = Field(
        False,
        description="serve semantic hits to questions in any language; by default a question that looks Spanish, "
        "French, German, Portuguese, Italian or Dutch is served only to an exact repeat (the matcher is English)",
    )
    ttl_seconds: int = Field(7 * 86400, ge=1, le=MAX_TTL_SECONDS, description="default lifetime of an entry")
    matcher: Literal["verifier", "cosine"] = Field(
        "verifier", description="verifier: a trained model confirms each match; cosine: the similarity alone decides"
    )
    min_similarity: float | None = Field(
        None,
        gt=0,
        le=1,
        description="cosine similarity a candidate must reach (default: the verifier's floor, or 0.85 with cosine)",
    )
    min_confidence: float | None = Field(
        None, gt=0, le=1, description="verifier probability a match must reach (default: the shipped threshold)"
    )
    verifier_path: Path | None = Field(None, description="verifier weights (default: the ones in the package)")
    feedback_max_error: float = Field(
        0.10,
        gt=0,
        le=1,
        description="verdicts raise a tenant's confidence threshold while its semantic hits are shown to be wrong "
        "more often than this (1: off)",
    )
    volatile_ttl_seconds: int = Field(
        300, ge=0, le=MAX_TTL_SECONDS, description="lifetime of answers to time-sensitive questions (0: never cache)"
    )
    dated_answer_ttl_seconds: int = Field(
        86_400, ge=0, le=MAX_TTL_SECONDS, description="lifetime of answers that quote dates or prices"
    )
    max_query_chars: int = Field(32_000, ge=1, description="longest prompt text accepted")

    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description='JSON {"<sha256 hex of an API key>": "<tenant>"}; empty: one anonymous tenant, no auth',
    )
    api_keys_secret_arn: str | None = Field(None, description="read api_keys (the same JSON) from this secret")
    admin_key_sha256: str | None = Field(None, description="sha256 hex of the admin key (flush, stats, any entry)")
    max_body_bytes: int = Field(1_000_000, ge=1_000, le=50_000_000, description="largest request body accepted")

    redis_url_secret_arn: str | None = Field(
        None, description="read the Redis URL from this Secrets Manager secret (or ssm:/parameter/name)"
    )
    openai_api_key_secret_arn: str | None = Field(
        None, description="read the OpenAI key from this Secrets Manager secret (or ssm:/parameter/name)"
    )
    secrets_cache_ttl_s: float = Field(300, ge=0, le=86400, description="how long a secret read is reused")
    secrets_extension_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("SEMCACHE_SECRETS_EXTENSION_PORT", "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"),
        description="read secrets through the AWS Parameters and Secrets Lambda Extension on this port (no boto3)",
    )

    metrics_emf: bool = Field(False, description="write one CloudWatch EMF line per request to stdout")
    metrics_namespace: str = Field("semcache", min_length=1)
    price_input_usd_per_mtok: float = Field(0.40, ge=0, description="to estimate dollars saved")
    price_output_usd_per_mtok: float = Field(1.60, ge=0, description="to estimate dollars saved")

    @field_validator("api_keys")
    @classmethod
    def _key_digests(cls, value: dict[str, str]) -> dict[str, str]:
        for digest, tenant in value.items():
            _check_digest(digest, "SEMCACHE_API_KEYS")
            if not _TENANT.fullmatch(tenant):
                raise ValueError(f"SEMCACHE_API_KEYS: tenant {tenant!r} must match {_TENANT.pattern}")
        return value

    @field_validator("admin_key_sha256")
    @classmethod
    def _admin_digest(cls, value: str | None) -> str | None:
        if value is not None:
            _check_digest(value, "SEMCACHE_ADMIN_KEY_SHA256")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("SEMCACHE_REDIS_URL must start with redis://, rediss:// or unix://")
        return value
