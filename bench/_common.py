"""What the benchmarks share: the bundled Redis Stack, the shipped embedder and matcher, the workload, results."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import redis

from semcache.adapters import redis_store
from semcache.adapters.onnx_embedder import OnnxEmbedder
from semcache.adapters.redis_store import RedisStore
from semcache.bootstrap import limit_blas_threads
from semcache.core.fingerprint import entry_id, normalize_text
from semcache.core.models import Completion, Entry, Message, Prompt, Usage
from semcache.core.service import Policy
from semcache.core.verifier import DEFAULT_PATH, Verifier

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SEMCACHE_EVAL_DATA", ROOT.parent / "shared" / "data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def bundled_redis() -> Iterator[str]:
    """Start local/redis_stack.py without persistence, wait until it answers, yield its URL, stop it."""
    port = free_port()
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


class InstantLLM:
    """Answers at once (or after delay_s), counting calls. kept=False: every answer is incomplete, so nothing is
    stored (a probe that finds which paraphrases are served without adding entries that change the answer)."""

    def __init__(self, delay_s: float = 0.0, *, kept: bool = True) -> None:
        self.delay_s = delay_s
        self.kept = kept
        self.calls = 0

    async def complete(self, prompt: Prompt) -> Completion:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return Completion(f"answer to {prompt.text}", prompt.model, Usage(20, 40), self.kept)


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else float("nan")


def ask(text: str) -> Prompt:
    return Prompt(model="bench-model", messages=(Message("user", text),))


def shipped_embedder() -> OnnxEmbedder:
    """The embedder `make models` puts in .local/models (what the service runs)."""
    models = ROOT / ".local" / "models"
    return OnnxEmbedder(models / "model.onnx", models / "tokenizer.json", name="bench")


def shipped_policy() -> Policy:
    """The matcher the service ships with: the verifier over the nearest candidate (numpy's BLAS kept on one
    thread, as the service keeps it)."""
    limit_blas_threads()
    verifier = Verifier.load(DEFAULT_PATH)
    return Policy(min_similarity=verifier.min_cosine, verifier=verifier)


def statements(embedder: OnnxEmbedder) -> tuple[list[dict[str, str]], list[str], np.ndarray]:
    """GPTCache's 999 (origin, similar) pairs, the origins, and the origins' vectors."""
    pairs = json.loads((DATA / "gptcache" / "mock_data.json").read_text())
    origins = [p["origin"] for p in pairs]
    vectors = np.vstack([embedder.embed(origins[i : i + 8]) for i in range(0, len(origins), 8)])
    return pairs, origins, vectors


async def bench_store(url: str, embedder: OnnxEmbedder, name: str) -> RedisStore:
    """A store with its own key prefix and index on the bench Redis."""
    client = redis_store.connect(url, timeout_s=2, connect_timeout_s=2)
    store = RedisStore(client, prefix=f"{name}{uuid.uuid4().hex[:6]}:", embedder_id=embedder.id, dim=embedder.dim)
    await store.ensure_index()
    return store


async def drop_store(store: RedisStore) -> None:
    """Drop the store's index and entries, and close it."""
    await store.client.execute_command("FT.DROPINDEX", store.index_name, "DD")  # type: ignore[no-untyped-call]
    await store.close()


async def fill(store: RedisStore, scope: str, size: int, texts: list[str], vectors: np.ndarray) -> None:
    """Real entries for texts, then synthetic ones (random unit vectors) up to size, written by the store itself.

    One write at a time, so one connection: the memory figure (INFO used_memory) then holds no extra client buffers.
    """
    rng = np.random.default_rng(0)
    for i in range(size):
        if i < len(texts):
            text, vec = texts[i], vectors[i]
        else:
            text = f"synthetic question {i} about topic {i % 97}"
            vec = rng.normal(size=vectors.shape[1]).astype(np.float32)
            vec /= np.linalg.norm(vec)
        entry = Entry(entry_id(scope, normalize_text(text)), scope, text, f"answer to {text}", "bench-model",
                      Usage(20, 40), time.time(), tenant="bench")  # fmt: skip
        await store.put(entry, vec, 3600)


def save_result(kind: str, result: dict[str, Any]) -> Path:
    """Write result as bench/results/<kind>-<time>.json and say where."""
    path = ROOT / "bench" / "results" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {path.relative_to(ROOT)}")
    return path


def time_calls(into: list[float], owner: Any, name: str) -> None:
    """Time every call of owner.name (this instance's only: the class is untouched) into `into`, in ms."""
    method = getattr(owner, name)

    if asyncio.iscoroutinefunction(method):

        @functools.wraps(method)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                into.append((time.perf_counter() - started) * 1e3)

        setattr(owner, name, timed_async)
    else:

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                into.append((time.perf_counter() - started) * 1e3)

        setattr(owner, name, timed)
