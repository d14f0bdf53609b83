"""The lone commands' own RESP packing sends what redis-py would have sent, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from redis.asyncio.connection import Connection

from semcache.adapters.redis_pipelining import packed
from semcache.adapters.redis_store import _knn_command


@pytest.mark.parametrize(
    "command",
    [
        ("HMGET", "semcache:ab:e:0123", "v", "scope", "query"),
        ("HGET", "k", "expires_at"),
        ("GET", "clé-ünïcode-€"),  # characters of several bytes: lengths count bytes
        ("SET", "k", b"\x00\r\n\xff", "PX", 1500),  # binary-safe, and an integer argument
        ("PING",),
        _knn_command("idx", "scope", 3, np.arange(384, dtype=np.float32).tobytes(), " EF_RUNTIME 50", whole=True),
    ],
)
def test_packed_is_what_redis_py_sends(command: tuple[object, ...]) -> None:
    assert packed(command) == b"".join(Connection().pack_command(*command))
