"""Property-based fuzzing of every route against the app's own OpenAPI schema: no 500s, no hangs.

The app runs in-process on in-memory fakes (store, embedder, LLM), so this stays fast; the bounded profile here
runs in `make test`, `make fuzz` runs a longer one (SEMCACHE_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from semcache.adapters.memory_store import MemoryStore
from semcache.core.service import CacheService, Policy
from semcache.http.app import create_app
from tests.fakes import BagOfWordsEmbedder, ScriptedLLM

EXAMPLES = int(os.environ.get("SEMCACHE_FUZZ_EXAMPLES", "40"))

app = create_app(
    CacheService(embedder=BagOfWordsEmbedder(), store=MemoryStore(), llm=ScriptedLLM(), policy=Policy()),
    default_model="m",
    max_query_chars=2000,
    max_body_bytes=20_000,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=2000, suppress_health_check=list(HealthCheck))
def test_no_route_answers_500(case: schemathesis.Case) -> None:
    response = case.call_and_validate(checks=[not_a_server_error])
    content_type = (response.headers.get("content-type") or [""])[0]
    streamed = isinstance(case.body, dict) and case.body.get("stream") is True and response.status_code == 200
    expected = "text/event-stream" if streamed else "application/json"  # a stream's errors before it starts: JSON
    assert content_type.startswith(expected), (response.status_code, response.text[:200])
