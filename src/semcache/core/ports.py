"""The collaborators the core talks to; adapters implement them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from semcache.core.models import Completion, Entry, Match, Prompt

Vector = npt.NDArray[np.float32]


class Abort:
    """A way to stop a computation nobody waits for any more: the computation says how (on_abort), its caller when.

    Thread-safe: the caller aborts from the event loop while the computation runs on a worker thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._aborted = False
        self._hooks: list[Callable[[], None]] = []

    @property
    def aborted(self) -> bool:
        """Whether abort() was called."""
        return self._aborted

    def on_abort(self, hook: Callable[[], None]) -> None:
        """Call hook when aborted (at once if already)."""
        with self._lock:
            if not self._aborted:
                self._hooks.append(hook)
                return
        hook()

    def abort(self) -> None:
        """Stop the computation: its hooks run once, on this thread."""
        with self._lock:
            if self._aborted:
                return
            self._aborted = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors."""

    @property
    def id(self) -> str:
        """Names the model and its version; vectors of different ids are never compared."""
        ...

    @property
    def dim(self) -> int:
        """The vectors' dimension."""
        ...

    def embed(self, texts: Sequence[str], abort: Abort | None = None) -> npt.NDArray[np.float32]:
        """Embed texts into a (len(texts), dim) array of unit vectors. CPU-bound: call it off the event loop.

        An embedder that can stop midway does so when abort fires, raising EmbedderError; one that cannot just
        finishes (its result is then thrown away).
        """
        ...


class VectorStore(Protocol):
    """Holds entries with their vectors; every method may raise StoreError."""

    async def get(self, entry_id: str) -> Entry | None:
        """The entry with this id, or None."""
        ...

    async def search(self, scope: str, vector: Vector, k: int) -> list[Match]:
        """Up to k entries of this scope nearest to vector, most similar first."""
        ...

    async def put(self, entry: Entry, vector: Vector, ttl_seconds: int) -> None:
        """Store entry atomically (replacing any entry with its id); it expires after ttl_seconds."""
        ...

    async def delete(self, entry_id: str) -> bool:
        """Remove an entry; True if it existed."""
        ...

    async def flush(self, *, tenant: str | None = None, scope: str | None = None) -> int:
        """Remove every entry of tenant and/or scope (every entry if both are None); the number removed."""
        ...

    async def ping(self) -> dict[str, object]:
        """The store's state for the health check; raises StoreError when it is unreachable."""
        ...


class LLM(Protocol):
    """Answers prompts; raises UpstreamError when it cannot."""

    async def complete(self, prompt: Prompt) -> Completion:
        """Answer one prompt."""
        ...
