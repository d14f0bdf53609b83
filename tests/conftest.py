"""Shared fixtures: the real Redis Stack, the fake OpenAI server and the embedder files, started once a session.

Integration fixtures start what they need (as `make run` does) and fail, never skip, when they cannot: a test
that silently does not run is a test that cannot fail. SEMCACHE_TEST_REDIS_URL points them at a Redis Stack you
run yourself (for example `docker compose up -d redis`).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / "local"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {seconds} s (last error: {last!r})")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The real embedder files (fetched once, verified by sha256)."""
    dest = ROOT / ".local" / "models"
    subprocess.run([sys.executable, str(LOCAL / "artifacts.py"), "--dest", str(dest)], check=True)
    return dest


class RedisServer:
    """A Redis Stack server the tests may stop and start again (for fault tests)."""

    def __init__(self, port: int, data: Path, *, cluster: bool = False) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._data = data
        self._cluster = cluster
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(LOCAL / "redis_stack.py"), "serve", "--port", str(self.port), "--no-aof",
             "--data", str(self._data), *(["--cluster"] if self._cluster else [])],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            wait_until(client.ping, f"Redis Stack on port {self.port}", 60)
            if self._cluster:  # one node holding every slot: a one-shard cluster, as MemoryDB runs one
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
                wait_until(lambda: b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"), "the cluster")
        except BaseException:
            self.stop()  # not left running (and reported at exit) when it never came up
            raise
        finally:
            client.close()

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc)
            self._proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer | None]:
    """The bundled Redis Stack on a free port, or None when SEMCACHE_TEST_REDIS_URL names one to use."""
    if os.environ.get("SEMCACHE_TEST_REDIS_URL"):
        yield None
        return
    subprocess.run([sys.executable, str(LOCAL / "redis_stack.py"), "install"], check=True, stdout=subprocess.DEVNULL)
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis-data"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bundled Redis Stack in cluster mode, one shard: as MemoryDB and ElastiCache (cluster mode) run, where a
    command or a transaction may only name keys of one hash slot (CROSSSLOT otherwise), whatever the shards."""
    subprocess.run([sys.executable, str(LOCAL / "redis_stack.py"), "install"], check=True, stdout=subprocess.DEVNULL)
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis-cluster-data"), cluster=True)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    return os.environ.get("SEMCACHE_TEST_REDIS_URL") or (redis_server.url if redis_server else "")


@pytest.fixture
def key_prefix() -> str:
    """A fresh key prefix per test, so tests never see each other's entries."""
    return f"test{uuid.uuid4().hex[:12]}:"


class FakeOpenAI:
    """The local stand-in for OpenAI, running as its own process on a free port."""

    def __init__(self, delay_ms: float = 0) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(LOCAL / "fake_openai.py"), "--port", "0", "--delay-ms", str(delay_ms)],
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().decode().strip()
        assert line.startswith("fake OpenAI listening on "), line
        self.base_url = line.rsplit(" ", 1)[1]
        self._root = self.base_url.removesuffix("/v1")

    def stats(self) -> dict[str, object]:
        return httpx.get(f"{self._root}/_fake/stats").json()  # type: ignore[no-any-return]

    def calls(self) -> int:
        return int(self.stats()["calls"])  # type: ignore[call-overload]

    def close(self) -> None:
        stop(self._proc)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


def _load_local(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"local_{name}", LOCAL / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_aws_secrets() -> Iterator[Callable[..., Any]]:
    """Start local/fake_aws_secrets.py's server in this process: start(values, token, not_ready=0) -> server."""
    module = _load_local("fake_aws_secrets")
    servers: list[Any] = []

    def start(values: dict[str, str], token: str, not_ready: int = 0) -> Any:
        server = module.FakeSecrets(0, values, token, not_ready)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's in-memory AWS (Secrets Manager, SSM), with stand-in credentials and region for boto3."""
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    with mock_aws():
        yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
