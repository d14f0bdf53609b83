"""The bundled Redis Stack for a benchmark run: a throwaway server on a free port, stopped afterwards."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def bundled_redis() -> Iterator[str]:
    """Start local/redis_stack.py without persistence, wait until it answers, yield its URL, stop it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "local/redis_stack.py"), "serve", "--port", str(port), "--no-aof",
         "--data", str(ROOT / ".local/bench-redis")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the server is stopped on a timeout too
    try:
        probe = redis.Redis(port=port)
        for _ in range(200):
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        probe.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait()
