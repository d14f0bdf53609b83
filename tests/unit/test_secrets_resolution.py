from __future__ import annotations

import json

import pytest

from semcache.core.errors import ConfigError
from semcache.http.auth import key_digest
from semcache.serverless import resolve_secrets
from semcache.settings import Settings


class Secrets:
    """An in-memory SecretSource."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, ref: str, *, key: str | None, setting: str) -> str:
        if ref not in self.values:
            raise ConfigError(f"{setting}: cannot read {ref}")
        return self.values[ref]


def test_api_keys_come_from_their_secret() -> None:
    keys = {key_digest("k1"): "acme"}
    settings = resolve_secrets(Settings(api_keys_secret_arn="arn:keys"), Secrets({"arn:keys": json.dumps(keys)}))
    assert settings.api_keys == keys


@pytest.mark.parametrize("content", ["not json", json.dumps({"not-a-digest": "acme"}), json.dumps(["x"])])
def test_a_bad_api_keys_secret_names_the_setting(content: str) -> None:
    with pytest.raises(ConfigError, match="SEMCACHE_API_KEYS_SECRET_ARN"):
        resolve_secrets(Settings(api_keys_secret_arn="arn:keys"), Secrets({"arn:keys": content}))


def test_plain_settings_need_no_secrets() -> None:
    settings = Settings()
    assert resolve_secrets(settings, Secrets({})) is settings
