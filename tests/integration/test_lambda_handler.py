"""The Lambda handler, driven with API Gateway event fixtures, on the real Redis Stack and the fake OpenAI server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence, Sized
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import numpy.typing as npt
import pytest

from semcache.core.errors import ConfigError
from semcache.serverless import LambdaEntry, build_handler
from semcache.settings import Settings
from tests.conftest import ROOT, FakeOpenAI

EVENTS = ROOT / "tests" / "events"


def event(name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EVENTS / name).read_text())
    if body is not None:
        document["body"] = json.dumps(body)
    return document


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "model_dir": ROOT / ".local" / "models",
        "key_prefix": f"lambda{uuid.uuid4().hex[:8]}:",
        "openai_api_key": "sk-test",
        "metrics_emf": True,
    }
    return Settings(**{**base, **overrides})


@pytest.fixture
def entry(redis_url: str, model_dir: Path, fake_openai: FakeOpenAI) -> Iterator[LambdaEntry]:
    handler = build_handler(settings(redis_url=redis_url, openai_base_url=fake_openai.base_url))
    yield handler
    handler.close()


def emf_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


@pytest.mark.parametrize("fixture", ["http_api_v2_query.json", "rest_v1_query.json"])
def test_a_miss_then_a_hit_in_the_same_process(
    entry: LambdaEntry, fixture: str, capsys: pytest.CaptureFixture[str]
) -> None:
    q = f"What is the speed of light {uuid.uuid4().hex[:6]}?"
    first = entry(event(fixture, {"query": q}), None)
    assert first["statusCode"] == 200, first
    assert json.loads(first["body"])["cache"]["status"] == "miss"
    assert first["headers"]["x-semcache"] == "miss"
    redis_client = entry.components.redis
    second = entry(event(fixture, {"query": q}), None)
    assert json.loads(second["body"])["cache"]["tier"] == "exact"
    assert second["headers"]["x-semcache"] == "hit"
    assert entry.components.redis is redis_client, "warm invocations reuse the clients built at init"

    metrics = emf_lines(capsys.readouterr().out)
    assert [(m["status"], m["Hit"], m["Miss"]) for m in metrics] == [("miss", 0, 1), ("hit", 1, 0)]
    assert metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "semcache"
    assert {"LookupLatency", "LLMLatency", "TokensSaved", "DollarsSaved"} <= {
        m["Name"] for m in metrics[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert metrics[1]["TokensSaved"] > 0
    assert "LLMLatency" not in metrics[1]
    assert q not in json.dumps(metrics), "prompts are never written to the metric log"


def test_a_streamed_answer_through_the_handler(entry: LambdaEntry) -> None:
    # Behind API Gateway the stream arrives as one body of server-sent events; the SDK reads it the same way.
    def streamed(q: str) -> tuple[str, list[dict[str, Any]]]:
        doc = event("http_api_v2_query.json", {"model": "gpt-4.1-mini", "input": q, "stream": True})
        doc["rawPath"] = doc["requestContext"]["http"]["path"] = "/v1/responses"
        reply = entry(doc, None)
        assert reply["statusCode"] == 200, reply
        assert reply["headers"]["content-type"].startswith("text/event-stream")
        data = [json.loads(line[6:]) for line in reply["body"].splitlines() if line.startswith("data: ")]
        return reply["headers"]["x-semcache"], data

    q = f"Which planet has rings {uuid.uuid4().hex[:6]}?"
    for expected in ("miss", "hit"):
        status, events = streamed(q)
        assert status == expected
        assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == (
            f"[offline answer] {q}"
        )
        assert events[-1]["type"] == "response.completed"


def test_a_chat_request_with_tools_is_forwarded_through_the_handler(entry: LambdaEntry) -> None:
    # Lambda calls the LLM through the SDK's default transport (httpx), the server through aiohttp: the chat route's
    # forwarding (a request with tools, answered by a call of one) goes through both.
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    question = f"Weather in Oslo {uuid.uuid4().hex[:6]}?"
    body: dict[str, Any] = {
        "model": "gpt-4.1-mini",
        "tools": tools,
        "messages": [{"role": "user", "content": question}],
    }
    for stream in (False, True):
        doc = event("http_api_v2_query.json", {**body, "stream": stream})
        doc["rawPath"] = doc["requestContext"]["http"]["path"] = "/v1/chat/completions"
        reply = entry(doc, None)
        assert reply["statusCode"] == 200, reply
        assert reply["headers"]["x-semcache"] == "bypass"
        if stream:
            chunks = [line[6:] for line in reply["body"].splitlines() if line.startswith("data: ")]
            assert chunks[-1] == "[DONE]"
            finishes = [c["choices"][0]["finish_reason"] for c in map(json.loads, chunks[:-1]) if c["choices"]]
            assert finishes[-1] == "tool_calls"
        else:
            choice = json.loads(reply["body"])["choices"][0]
            assert choice["finish_reason"] == "tool_calls"
            assert choice["message"]["tool_calls"][0]["function"]["name"] == "weather"


def test_the_handler_embeds_on_the_invoking_thread(entry: LambdaEntry, monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance serves one event at a time: no hand-off to a runner thread (about 1 ms per semantic hit)."""
    embedder = entry.components.service.embedder
    threads: list[int] = []
    real = embedder.embed_prepared

    def recording(prepared: Sequence[Sized]) -> npt.NDArray[np.float32]:
        threads.append(threading.get_ident())
        return real(prepared)

    monkeypatch.setattr(embedder, "embed_prepared", recording)
    response = entry(event("http_api_v2_query.json", {"query": f"How far is the Moon {uuid.uuid4().hex[:6]}?"}), None)
    assert json.loads(response["body"])["cache"]["status"] == "miss"
    assert threads
    assert set(threads) == {threading.get_ident()}


def test_health_and_bad_input_through_the_handler(entry: LambdaEntry) -> None:
    health = entry(event("http_api_v2_health.json"), None)
    assert health["statusCode"] == 200
    assert json.loads(health["body"])["store"]["ok"] is True
    bad = entry(event("http_api_v2_query.json", {"query": ""}), None)
    assert bad["statusCode"] == 422
    assert json.loads(bad["body"])["error"]["param"] == "query"


def test_a_store_outage_is_answered_through_the_llm(model_dir: Path, fake_openai: FakeOpenAI) -> None:
    handler = build_handler(
        settings(redis_url="redis://127.0.0.1:1/0", openai_base_url=fake_openai.base_url, redis_timeout_s=0.1)
    )
    try:
        reply = handler(event("http_api_v2_query.json", {"query": "Anyone home?"}), None)
        assert reply["statusCode"] == 200
        assert reply["headers"]["x-semcache"] == "bypass"
        assert json.loads(reply["body"])["response"] == "[offline answer] Anyone home?"
    finally:
        handler.close()


def test_secrets_are_read_at_init(aws: None, redis_url: str, model_dir: Path, fake_openai: FakeOpenAI) -> None:
    sm = boto3.client("secretsmanager")
    redis_arn = sm.create_secret(Name="semcache/redis", SecretString=json.dumps({"url": redis_url}))["ARN"]
    boto3.client("ssm").put_parameter(Name="/semcache/openai", Value="sk-from-ssm", Type="SecureString")
    handler = build_handler(
        settings(
            redis_url="redis://unused:1/0",
            openai_api_key=None,
            redis_url_secret_arn=redis_arn,
            openai_api_key_secret_arn="ssm:/semcache/openai",
            openai_base_url=fake_openai.base_url,
        )
    )
    try:
        assert handler.components.settings.redis_url == redis_url
        key = handler.components.settings.openai_api_key
        assert key is not None
        assert key.get_secret_value() == "sk-from-ssm"
        reply = handler(event("http_api_v2_query.json", {"query": f"secret test {uuid.uuid4().hex}"}), None)
        assert reply["headers"]["x-semcache"] == "miss"
    finally:
        handler.close()


def test_secrets_come_through_the_extension_when_its_port_is_set(
    fake_aws_secrets: Any,
    redis_url: str,
    model_dir: Path,
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {"semcache/redis": json.dumps({"url": redis_url}), "semcache/openai": json.dumps({"api_key": "sk-x"})}
    server = fake_aws_secrets(values, "the-session-token")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "the-session-token")
    handler = build_handler(
        settings(
            redis_url="redis://unused:1/0",
            openai_api_key=None,
            redis_url_secret_arn="semcache/redis",
            openai_api_key_secret_arn="semcache/openai",
            secrets_extension_port=server.server_address[1],
            openai_base_url=fake_openai.base_url,
        )
    )
    try:
        assert handler.components.settings.redis_url == redis_url
        assert (server.extension_requests, server.sdk_requests) == (2, 0)
        reply = handler(event("http_api_v2_query.json", {"query": f"extension test {uuid.uuid4().hex}"}), None)
        assert reply["headers"]["x-semcache"] == "miss"
    finally:
        handler.close()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"openai_api_key": None}, "OPENAI_API_KEY"),
        (
            {"redis_url_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope"},
            "SEMCACHE_REDIS_URL_SECRET_ARN",
        ),
        ({"redis_url_secret_arn": "semcache/bad-url"}, "SEMCACHE_REDIS_URL_SECRET_ARN"),
        ({"openai_api_key_secret_arn": "ssm:/missing"}, "SEMCACHE_OPENAI_API_KEY_SECRET_ARN"),
        ({"model_dir": Path("/nonexistent")}, "SEMCACHE_MODEL_DIR"),
    ],
)
def test_wrong_configuration_fails_at_init_naming_the_setting(aws: None, overrides: dict[str, Any], named: str) -> None:
    boto3.client("secretsmanager").create_secret(Name="semcache/bad-url", SecretString="http://not-redis")
    with pytest.raises(ConfigError, match=named):
        build_handler(settings(**overrides))


def test_settings_reject_a_bad_redis_url_naming_the_variable() -> None:
    from semcache.bootstrap import load_settings

    os.environ["SEMCACHE_REDIS_URL"] = "http://localhost:6379"
    try:
        with pytest.raises(ConfigError, match="SEMCACHE_REDIS_URL"):
            load_settings()
    finally:
        del os.environ["SEMCACHE_REDIS_URL"]


def test_the_real_handler_module_through_local_invoke(redis_url: str, model_dir: Path, fake_openai: FakeOpenAI) -> None:
    env = {
        **os.environ,
        "SEMCACHE_REDIS_URL": redis_url,
        "SEMCACHE_MODEL_DIR": str(model_dir),
        "SEMCACHE_KEY_PREFIX": f"invoke{uuid.uuid4().hex[:8]}:",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fake_openai.base_url,
    }
    ev = str(EVENTS / "http_api_v2_query.json")
    out = subprocess.run(
        [sys.executable, str(ROOT / "local" / "invoke.py"), ev, ev], env=env, capture_output=True, text=True, check=True
    ).stdout
    replies = [json.loads(line) for line in out.splitlines() if line.startswith('{"statusCode"')]
    assert [r["headers"]["x-semcache"] for r in replies] == ["miss", "hit"]


def test_building_the_handler_leaves_the_openai_sdk_for_later_and_numpy_on_one_thread(
    redis_url: str, model_dir: Path, fake_openai: FakeOpenAI
) -> None:
    # A fresh process (this one has imported openai long ago): init must not pay for the SDK, the preload must.
    probe = (
        "import sys\n"
        "from semcache.serverless import build_handler\n"
        "from semcache.bootstrap import build, load_settings\n"
        "components = build(load_settings())\n"
        "assert 'openai' not in sys.modules, 'the SDK was imported at init'\n"
        "from threadpoolctl import threadpool_info\n"
        "blas = [p for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "assert blas and all(p['num_threads'] == 1 for p in blas), blas\n"
        "components.llm.preload().join()\n"
        "assert 'openai' in sys.modules\n"
        "assert components.llm.client() is components.llm.client()\n"
        "print('ok')\n"
    )
    env = {
        **os.environ,
        "SEMCACHE_REDIS_URL": redis_url,
        "SEMCACHE_MODEL_DIR": str(model_dir),
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fake_openai.base_url,
    }
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize(("lambda_instance", "aiohttp"), [(False, True), (True, False)])
def test_the_server_calls_the_llm_through_aiohttp_and_a_lambda_instance_through_the_sdks_default(
    model_dir: Path, lambda_instance: bool, aiohttp: bool
) -> None:
    import openai

    from semcache.bootstrap import build

    components = build(settings(model_dir=model_dir), one_request_at_a_time=lambda_instance)
    client = components.llm.client()
    assert isinstance(client._client, openai.DefaultAioHttpClient) is aiohttp  # what the SDK sends requests with
    assert client.timeout == components.settings.llm_timeout_s
    asyncio.run(components.close())


def test_snapstart_hooks_preload_the_sdk_and_reconnect_redis(
    redis_url: str, model_dir: Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lambda's SnapStart runtime provides snapshot_restore_py; here a module that records what is registered.
    hooks: dict[str, list[Any]] = {"before": [], "after": []}
    runtime = type(sys)("snapshot_restore_py")
    runtime.register_before_checkpoint = hooks["before"].append  # type: ignore[attr-defined]
    runtime.register_after_restore = hooks["after"].append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime)
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    handler = build_handler(settings(redis_url=redis_url, openai_base_url=fake_openai.base_url))
    try:
        assert len(hooks["before"]) == 1
        assert len(hooks["after"]) == 1
        hooks["before"][0]()
        assert handler.components.llm._client is not None, "the snapshot holds a ready OpenAI client"
        hooks["after"][0]()  # restored: the sockets opened at init are dropped, new ones are made on demand
        q = f"What is a snapshot {uuid.uuid4().hex[:6]}?"
        assert json.loads(handler(event("http_api_v2_query.json", {"query": q}), None)["body"])["cache"]["status"] == (
            "miss"
        )
        hit = handler(event("http_api_v2_query.json", {"query": q}), None)
        assert json.loads(hit["body"])["cache"]["status"] == "hit"
    finally:
        handler.close()
