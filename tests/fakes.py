"""In-memory fakes of the core's ports, for unit tests."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence, Sized

import numpy as np
import numpy.typing as npt

from semcache.core.errors import EmbedderError, UpstreamError
from semcache.core.models import Completion, Prompt, Usage
from semcache.core.ports import StreamSink

WORD = re.compile(r"[a-z0-9]+")
UNREAD = re.compile(r"[^\x00-\x7f]+")


class BagOfWordsEmbedder:
    """Hashes words into 64 buckets: texts sharing most words are similar, which is all the policy needs."""

    id = "bag-of-words@1"
    dim = 64

    def __init__(self, *, max_words: int | None = None) -> None:
        """max_words: the most words it reads: embed() cuts a longer text there, prepare() says None for it."""
        self.calls: list[str] = []
        self.fail = False
        self.max_words = max_words

    def prepare(self, text: str) -> str | None:
        if self.max_words is not None and len(WORD.findall(text.lower())) > self.max_words:
            return None
        return text  # its length in characters stands for its length in tokens

    def embed_prepared(self, prepared: Sequence[Sized]) -> npt.NDArray[np.float32]:
        return self.embed([str(p) for p in prepared])  # through embed(), which subclasses count or slow down

    def unread(self, text: str) -> tuple[str, ...]:
        return tuple(UNREAD.findall(text))  # it reads ASCII words only: "what does 呵呵 mean" is "what does mean"

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if self.fail:
            raise EmbedderError("embedder down")
        self.calls.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in WORD.findall(text.lower())[: self.max_words]:  # cut as a model cuts what it cannot read
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out


class ScriptedLLM:
    """Answers "answer to <text>"; records prompts; can be told to fail or to answer incompletely."""

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []
        self.error: UpstreamError | None = None
        self.completed = True
        self.reply: str | None = None

    async def complete(self, prompt: Prompt, *, on_event: StreamSink | None = None) -> Completion:
        self.prompts.append(prompt)
        if self.error is not None:
            raise self.error
        text = prompt.text or ""
        if on_event is not None:  # the Responses API's text deltas, word by word
            for i, word in enumerate((self.reply or f"answer to {text}").split(" ")):
                on_event({"type": "response.output_text.delta", "delta": word if i == 0 else " " + word})
                await asyncio.sleep(0)
        return Completion(
            text=self.reply or f"answer to {text}",
            model=prompt.model,
            usage=Usage(len(text.split()), 3),
            completed=self.completed,
            finish_reason="stop" if self.completed else "length",
        )
