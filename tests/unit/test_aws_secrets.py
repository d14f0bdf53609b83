"""Reading secrets through the Parameters and Secrets Lambda Extension (over HTTP, against local/fake_aws_secrets.py),
and falling back to boto3 (moto) when the extension does not answer."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from semcache.adapters.aws_secrets import SecretReader, SecretsExtension
from semcache.core.errors import ConfigError
from semcache.settings import Settings
from tests.conftest import free_port

TOKEN = "session-token"
REDIS = "arn:aws:secretsmanager:us-east-1:123456789012:secret:semcache/redis"


def reader(port: int, token: str = TOKEN, ready_within_s: float = 1.0) -> SecretReader:
    extension = SecretsExtension(port, token, host="127.0.0.1", ready_within_s=ready_within_s)
    return SecretReader(ttl_s=300, extension=extension)


def test_secrets_and_parameters_come_through_the_extension(fake_aws_secrets: Callable[..., Any]) -> None:
    values = {REDIS: json.dumps({"url": "redis://r:6379/0"}), "ssm:/semcache/openai": "sk-ssm"}
    server = fake_aws_secrets(values, TOKEN)
    secrets = reader(server.server_address[1])
    assert secrets.get(REDIS, key="url", setting="S1") == "redis://r:6379/0"
    assert secrets.get("ssm:/semcache/openai", key="api_key", setting="S2") == "sk-ssm"
    assert secrets.get(REDIS, key="url", setting="S1") == "redis://r:6379/0"  # cached: no third request
    assert (server.extension_requests, server.sdk_requests) == (2, 0)


def test_an_extension_still_starting_is_waited_for(fake_aws_secrets: Callable[..., Any]) -> None:
    server = fake_aws_secrets({REDIS: "redis://r:6379/0"}, TOKEN, not_ready=3)
    assert reader(server.server_address[1]).get(REDIS, key="url", setting="S") == "redis://r:6379/0"
    assert server.extension_requests == 4


@pytest.mark.parametrize(
    ("token", "ref", "reason"),
    [("wrong-token", REDIS, "401"), (TOKEN, "semcache/missing", "ResourceNotFoundException")],
)
def test_a_refusal_by_the_extension_names_the_setting(
    fake_aws_secrets: Callable[..., Any], token: str, ref: str, reason: str
) -> None:
    server = fake_aws_secrets({REDIS: "redis://r:6379/0"}, TOKEN)
    with pytest.raises(ConfigError, match=f"SEMCACHE_REDIS_URL_SECRET_ARN: cannot read {ref}.*{reason}"):
        reader(server.server_address[1], token).get(ref, key="url", setting="SEMCACHE_REDIS_URL_SECRET_ARN")
    assert server.sdk_requests == 0  # a refusal is an answer: no second try elsewhere


def test_without_an_answering_extension_boto3_reads_the_secret(aws: None, caplog: pytest.LogCaptureFixture) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name="semcache/redis", SecretString="redis://r:1/0")["ARN"]
    secrets = reader(free_port(), ready_within_s=0.1)  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="semcache"):
        assert secrets.get(arn, key="url", setting="S") == "redis://r:1/0"
    assert "secrets extension does not answer" in caplog.text


def test_the_extension_is_used_only_with_a_port_and_a_session_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2773")
    port = Settings().secrets_extension_port
    assert port == 2773
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    assert SecretReader.for_lambda(ttl_s=1, extension_port=port)._extension is None
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    assert SecretReader.for_lambda(ttl_s=1, extension_port=port)._extension is not None
    assert SecretReader.for_lambda(ttl_s=1, extension_port=None)._extension is None
