"""Streamed answers (stream=true), as OpenAI sends them: server-sent events of the Responses API, or chunks of
chat.completion.chunk ending in `data: [DONE]`.

An answer from the LLM is relayed as it comes (the Responses API's own events; deltas of text on the chat route)
and kept by the service only once its stream has completed, like any answer. A hit, or an answer shared with an
identical request in flight, is complete before the first byte: it is replayed as the stream OpenAI would have
sent for it, at once. An error before the first event is the usual JSON error; after it (the status line has gone
out), an `error` event ends the stream.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from semcache.core.models import JSON, Answer, Prompt
from semcache.http.errors import error_body
from semcache.http.openai_compat import render_response

DONE = "data: [DONE]\n\n"
"""The chat route's end of stream."""


def sse(data: Mapping[str, Any], event: str | None = None) -> str:
    """One server-sent event."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


def responses_event(event: Mapping[str, JSON]) -> str:
    """An event of the Responses API's stream, named by its type as OpenAI names it."""
    return sse(event, str(event.get("type", "message")))


def responses_error(message: str, code: str | None) -> str:
    """The Responses API's error event."""
    return sse({"type": "error", "code": code, "message": message, "param": None}, "error")


def responses_replay(answer: Answer, prompt: Prompt) -> Iterator[str]:
    """The events OpenAI would stream for this complete answer: created, each output item and part with its
    text in one delta, then completed (or incomplete)."""
    response: dict[str, Any] = dict(render_response(answer, prompt))
    sequence = iter(range(1 << 30))

    def event(kind: str, **fields: Any) -> str:
        return responses_event({"type": kind, "sequence_number": next(sequence), **fields})

    yield event("response.created", response={**response, "status": "in_progress", "output": [], "usage": None})
    for index, item in enumerate(response.get("output") or []):
        parts = item.get("content") or [] if item.get("type") == "message" else []
        yield event("response.output_item.added", output_index=index, item={**item, "status": "in_progress",
                                                                              "content": []})  # fmt: skip
        for j, part in enumerate(parts):
            at = {"item_id": item.get("id"), "output_index": index, "content_index": j}
            kind = part.get("type")
            if kind == "output_text":
                yield event("response.content_part.added", **at, part={**part, "text": ""})
                yield event("response.output_text.delta", **at, delta=part.get("text", ""), logprobs=[])
                yield event("response.output_text.done", **at, text=part.get("text", ""), logprobs=[])
            elif kind == "refusal":
                yield event("response.content_part.added", **at, part={**part, "refusal": ""})
                yield event("response.refusal.delta", **at, delta=part.get("refusal", ""))
                yield event("response.refusal.done", **at, refusal=part.get("refusal", ""))
            else:
                yield event("response.content_part.added", **at, part=part)
            yield event("response.content_part.done", **at, part=part)
        yield event("response.output_item.done", output_index=index, item=item)
    final = {"completed": "response.completed", "failed": "response.failed"}.get(str(response.get("status")))
    yield event(final or "response.incomplete", response=response)


class ChatStream:
    """chat.completion.chunk objects for one answer: the role, the text's deltas, the finish, usage if asked."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self._started = False  # the role chunk has gone out

    def chunk(self, delta: Mapping[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": dict(delta), "finish_reason": finish, "logprobs": None}
        return sse(self._base(choices=[choice], usage=None))

    def _base(self, **fields: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                **fields}  # fmt: skip

    def _start(self) -> str:
        """The role chunk, the first time; then nothing."""
        started, self._started = self._started, True
        return "" if started else self.chunk({"role": "assistant", "content": ""})

    def content(self, text: str) -> str:
        """The chunk of this text (after the role chunk, if it has not gone out)."""
        return self._start() + self.chunk({"content": text})

    def text(self, event: Mapping[str, JSON]) -> str | None:
        """The chunk for one Responses event, if it carries text."""
        delta = event.get("delta")
        if event.get("type") == "response.output_text.delta" and isinstance(delta, str):
            return self.content(delta)
        return None

    def end(self, answer: Answer) -> Iterator[str]:
        """The finish (after the role chunk, if no text came), usage if asked, then [DONE]."""
        finish = answer.completion.finish_reason if answer.completion is not None else "stop"
        yield self._start() + self.chunk({}, finish)
        if self.include_usage:
            usage = {"prompt_tokens": answer.usage.input_tokens, "completion_tokens": answer.usage.output_tokens,
                     "total_tokens": answer.usage.total_tokens}  # fmt: skip
            yield sse(self._base(choices=[], usage=usage))
        yield DONE

    def replay(self, answer: Answer) -> Iterator[str]:
        """The whole stream of a complete answer."""
        yield self.content(answer.text)
        yield from self.end(answer)

    @staticmethod
    def error(message: str, kind: str) -> str:
        return sse(error_body(message, kind))
