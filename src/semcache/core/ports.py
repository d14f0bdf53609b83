"""The collaborators the core talks to; adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Protocol

import numpy as np
import numpy.typing as npt

from semcache.core.models import JSON, Completion, Entry, Match, Prompt

Vector = npt.NDArray[np.float32]


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

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed texts into a (len(texts), dim) array of unit vectors. CPU-bound: call it off the event loop."""
        ...

    def prepare(self, text: str) -> Sized | None:
        """The model's input for text (its tokens), whose len() is its length to the model: micro-batches group
        texts of similar length, since a run pays for its longest. Cheap; done once per text.

        None if the model cannot read all of text (it is longer than the model's input): a vector of the part it
        reads would stand for every text that begins the same way, whatever follows."""
        ...

    def embed_prepared(self, prepared: Sequence[Sized]) -> npt.NDArray[np.float32]:
        """embed() for inputs made by prepare(), so that a text is tokenised once. CPU-bound, as embed()."""
        ...

    def unread(self, text: str) -> tuple[str, ...]:
        """The parts of text the model cannot read (its unknown tokens: characters or words outside its
        vocabulary), in order; () if it reads all of it. Two texts that differ only there get the same vector, so
        the semantic tier never serves one for the other. Cheap, and cheapest for text it surely reads."""
        ...


class VectorStore(Protocol):
    """Holds entries with their vectors; every method may raise StoreError."""

    async def get(self, entry_id: str) -> Entry | None:
        """The entry with this id, or None."""
        ...

    async def get_with_vector(self, entry_id: str) -> tuple[Entry, Vector | None] | None:
        """The entry with this id and its stored vector (None if the store could not read it), or None."""
        ...

    async def search(self, scope: str, vector: Vector, k: int, *, asked: str | None = None) -> list[Match]:
        """Up to k entries of this scope nearest to vector, most similar first; a match marked a mismatch for the
        asked question (its entry id, see mark_mismatch) has mismatched=True."""
        ...

    async def mark_mismatch(self, entry_id: str, asked: str) -> bool:
        """Mark the entry as not serving the question whose entry id is asked (a caller's mismatch verdict), for as
        long as the entry lives; False if the entry is gone."""
        ...

    async def put(self, entry: Entry, vector: Vector | None, ttl_seconds: int) -> None:
        """Store entry atomically (replacing any entry with its id); it expires after ttl_seconds. Without a vector
        (its text too long to embed) it is never a candidate of search(): only get() finds it."""
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

    async def record_verdict(
        self, calibration: str, bucket: int, *, wrong: bool, example: Mapping[str, JSON], tenant: str
    ) -> None:
        """Count a verdict on a semantic hit served at this confidence bucket, under the calibration key (matcher
        and tenant), and keep the labelled example in the tenant's capped feedback log; atomically."""
        ...

    async def verdicts(self, calibration: str) -> dict[int, tuple[int, int]]:
        """Bucket -> (right, wrong) verdicts counted under the calibration key."""
        ...

    async def feedback_log(self, tenant: str, limit: int) -> list[dict[str, JSON]]:
        """The tenant's most recent labelled examples, newest first."""
        ...


StreamSink = Callable[[Mapping[str, JSON]], None]
"""Receives an LLM's answer as it streams: each event of OpenAI's Responses streaming API, as JSON."""


class LLM(Protocol):
    """Answers prompts; raises UpstreamError when it cannot."""

    async def complete(self, prompt: Prompt, *, on_event: StreamSink | None = None) -> Completion:
        """Answer one prompt; with on_event, streamed: every event is passed on as it comes, and the Completion
        (which decides what may be cached) is returned once the stream has ended."""
        ...
