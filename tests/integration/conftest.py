"""The API as a real process: uvicorn serving semcache, on the real Redis Stack, missing to the fake OpenAI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FakeOpenAI, free_port, stop, wait_until


class ApiServer:
    """`semcache serve` in its own process."""

    def __init__(self, *, redis_url: str, model_dir: Path, openai_base_url: str, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "SEMCACHE_REDIS_URL": redis_url,
            "SEMCACHE_MODEL_DIR": str(model_dir),
            "SEMCACHE_KEY_PREFIX": f"it{uuid.uuid4().hex[:10]}:",
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": openai_base_url,
            **settings,
        }
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"semcache-api-{self.port}.log"
        self._log = self.log.open("wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "semcache.cli", "--log-level", "warning", "serve", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: httpx.get(self.url + "/").status_code == 200, "the semcache API", 60)

    def close(self) -> None:
        stop(self._proc)
        self._log.close()


@pytest.fixture(scope="module")
def api(redis_url: str, model_dir: Path, fake_openai: FakeOpenAI) -> Iterator[ApiServer]:
    server = ApiServer(
        redis_url=redis_url,
        model_dir=model_dir,
        openai_base_url=fake_openai.base_url,
        SEMCACHE_LLM_TIMEOUT_S="1",
        SEMCACHE_LLM_MAX_RETRIES="1",
    )
    yield server
    server.close()


@pytest.fixture
def http(api: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=30) as client:
        yield client


@pytest.fixture
def unique() -> str:
    """A word no other test uses, so each test asks its own questions."""
    return uuid.uuid4().hex[:8]
