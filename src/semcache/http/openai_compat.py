"""OpenAI-compatible routes' translation: request bodies into Prompts, Answers back into OpenAI's shapes.

An application keeps the official SDK and changes only base_url. Cache controls ride in headers
(x-semcache-mode, x-semcache-ttl-seconds, x-semcache-min-similarity), which the SDK sends with extra_headers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from semcache.core.errors import InvalidRequest
from semcache.core.models import CHAT_FORWARD, JSON, Answer, CacheControl, CacheMode, Message, Prompt
from semcache.core.service import check_probability, check_similarity, check_ttl

_N = TypeVar("_N", int, float)

# Fields that reach the LLM but do not change the answer, so stay out of the cache scope (stream_options: how a
# stream is sent, as stream itself).
PASSTHROUGH = frozenset(
    {"store", "metadata", "user", "safety_identifier", "prompt_cache_key", "service_tier", "stream_options"}
)
# Fields that make the answer depend on state held by OpenAI: such requests are never cached.
STATEFUL = frozenset({"previous_response_id", "conversation", "background"})
MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant"})
TEXT_PART_TYPES = frozenset({"input_text", "output_text", "text"})


class ResponsesRequest(BaseModel):
    """The body of POST /v1/responses (OpenAI's Responses API); unknown fields are forwarded and scoped."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    stream: bool | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_output_tokens: int | None = Field(None, ge=1)


class ChatMessage(BaseModel):
    """One chat message; text content only."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The body of POST /v1/chat/completions; the supported subset is mapped onto the Responses API."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    n: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None


def cache_control(headers: Mapping[str, str]) -> CacheControl:
    """Read the x-semcache-* request headers."""
    mode = headers.get("x-semcache-mode", "use").strip().lower()
    try:
        parsed_mode = CacheMode(mode)
    except ValueError:
        raise InvalidRequest(
            f"x-semcache-mode must be use, bypass or refresh, got {mode!r}", param="x-semcache-mode"
        ) from None
    ttl = _header_number(headers, "x-semcache-ttl-seconds", int)
    similarity = _header_number(headers, "x-semcache-min-similarity", float)
    confidence = _header_number(headers, "x-semcache-min-confidence", float)
    try:
        if ttl is not None:
            check_ttl(ttl, "x-semcache-ttl-seconds")
        if similarity is not None:
            check_similarity(similarity, "x-semcache-min-similarity")
        if confidence is not None:
            check_probability(confidence, "x-semcache-min-confidence")
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=str(exc).split(" ", 1)[0]) from None
    return CacheControl(parsed_mode, ttl, similarity, confidence)


def _header_number(headers: Mapping[str, str], name: str, kind: type[_N]) -> _N | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number, got {raw!r}", param=name) from None


def _text_of(parts: list[dict[str, Any]], param: str) -> str | None:
    """Join a list of text parts; None when any part is not text."""
    if not all(isinstance(p, dict) and p.get("type") in TEXT_PART_TYPES for p in parts):
        return None
    texts = [p.get("text") for p in parts]
    if not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("every text part needs a string 'text'", param=param)
    return "".join(t for t in texts if isinstance(t, str))


def responses_prompt(body: ResponsesRequest, *, default_model: str) -> Prompt:
    """Translate a Responses API request (stream changes how the answer is sent, not what it is: not scoped)."""
    extra: dict[str, JSON] = dict(body.model_extra or {})
    messages: list[Message] = []
    others: set[str] = set()  # the kinds of the input's items that are neither messages nor reasoning
    reasoning = False
    if isinstance(body.input, str):
        messages.append(Message("user", body.input))
    else:
        for i, item in enumerate(body.input):
            role, content = item.get("role"), item.get("content")
            kind = item.get("type", "message")
            if kind == "reasoning":
                # A reasoning model's thoughts on an earlier turn, passed back as OpenAI advises without stored
                # state: forwarded, but not part of the scope. The conversation is its messages; the thoughts
                # behind an earlier answer do not change what is asked now (and a cached answer has none).
                reasoning = True
                continue
            if kind != "message":
                # A tool's call and its output, an item referenced by id: what the LLM makes of them is not the
                # cache's to judge. Forwarded as given, never cached.
                others.add(str(kind))
                continue
            if role not in MESSAGE_ROLES:
                raise InvalidRequest(
                    "a message's role must be system, developer, user or assistant", param=f"input[{i}].role"
                )
            if isinstance(content, list):
                text = _text_of(content, f"input[{i}].content")
                messages.append(Message(role, text if text is not None else tuple(content)))
            elif isinstance(content, str):
                messages.append(Message(role, content))
            else:
                raise InvalidRequest("content must be a string or a list of parts", param=f"input[{i}].content")
    if not messages and not others and not reasoning:
        raise InvalidRequest("input must not be empty", param="input")
    options = {
        k: v
        for k, v in {
            "temperature": body.temperature,
            "top_p": body.top_p,
            "max_output_tokens": body.max_output_tokens,
            **{k: v for k, v in extra.items() if k not in PASSTHROUGH | STATEFUL},
        }.items()
        if v is not None
    }
    passthrough = {k: v for k, v in extra.items() if k in PASSTHROUGH | STATEFUL and v is not None}
    stateful = sorted(k for k in STATEFUL if extra.get(k))  # null, false or empty holds no state: background false
    template = extra.get("prompt")
    if isinstance(template, dict) and not template.get("version"):
        # A stored prompt without a version: OpenAI uses whichever version is current, which may change under us.
        stateful.append("prompt without a version")
    uncacheable = f"depends on server-side state ({', '.join(stateful)})" if stateful else None
    if others or reasoning:
        passthrough["input"] = body.input  # as given: the LLM reads items the messages do not hold
    if others:
        uncacheable = uncacheable or f"input holds items other than messages ({', '.join(sorted(others))})"
    return Prompt(
        model=body.model or default_model,
        messages=tuple(messages),
        instructions=body.instructions,
        options=options,
        passthrough=passthrough,
        uncacheable=uncacheable,
    )


def chat_prompt(body: ChatRequest, *, default_model: str) -> Prompt:
    """Translate a Chat Completions request into the Responses API's terms (stream and stream_options change how
    the answer is sent, not what it is: not scoped). One that does not translate (tools and their messages, stop,
    seed, logprobs, n above 1, a named or non-text message...) is forwarded to OpenAI's chat route as it is, and
    never cached: the cache does not judge what it cannot read, and the request is answered as it would be
    without it."""
    if body.stream_options is not None and not body.stream:
        raise InvalidRequest("stream_options is only allowed with stream=true", param="stream_options")
    extra = dict(body.model_extra or {})
    carried = {k: extra.pop(k) for k in sorted(PASSTHROUGH & extra.keys()) if extra[k] is not None}
    untranslated = sorted(k for k, v in extra.items() if not _neutral(k, v))
    if body.n not in (None, 1):
        untranslated.append("n")
    messages = []
    for i, m in enumerate(body.messages):
        content = m.content
        if isinstance(content, list):
            content = _text_of(content, f"messages[{i}].content")
        if m.role not in MESSAGE_ROLES or m.model_extra or content is None:
            untranslated.append(f"{m.role} message" if m.role not in MESSAGE_ROLES else "message fields or content")
            continue
        messages.append(Message(m.role, content))
    if untranslated:
        forwarded = {"model": body.model or default_model, **body.model_dump(exclude_unset=True, exclude={"model"})}
        return Prompt(
            model=body.model or default_model,
            messages=tuple(messages),
            passthrough={CHAT_FORWARD: forwarded},
            uncacheable=f"chat request forwarded as it is ({', '.join(dict.fromkeys(untranslated))})",
        )
    options: dict[str, JSON] = {
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_output_tokens": body.max_completion_tokens or body.max_tokens,
    }
    if body.response_format is not None:
        options["text"] = {"format": _text_format(body.response_format)}
    if body.reasoning_effort is not None:
        options["reasoning"] = {"effort": body.reasoning_effort}
    passthrough = {"user": body.user, "metadata": body.metadata, "store": body.store, **carried}
    return Prompt(
        model=body.model or default_model,
        messages=tuple(messages),
        options={k: v for k, v in options.items() if v is not None},
        passthrough={k: v for k, v in passthrough.items() if v is not None},
    )


# Chat parameters the Responses API lacks, at the values that change nothing (many clients send them so): taken for
# absent, so the request is translated and cached like one without them.
_NEUTRAL: dict[str, object] = {
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "logit_bias": {},
    "stop": [],
    "logprobs": False,
    "tools": [],
    "functions": [],
}


def _neutral(name: str, value: object) -> bool:
    """Whether a chat parameter at this value asks for nothing: null, or its default (_NEUTRAL; 0.0 is 0, but
    False is not 0)."""
    if value is None:
        return True
    if name not in _NEUTRAL:
        return False
    default = _NEUTRAL[name]
    if isinstance(default, bool) or isinstance(value, bool):
        return value is default
    return bool(value == default)


def _text_format(response_format: dict[str, Any]) -> dict[str, Any]:
    kind = response_format.get("type")
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema" and isinstance(response_format.get("json_schema"), dict):
        return {"type": "json_schema", **response_format["json_schema"]}
    raise InvalidRequest("response_format.type must be text, json_object or json_schema", param="response_format")


def render_response(answer: Answer, prompt: Prompt) -> dict[str, JSON]:
    """A Responses API object: the upstream's own on a miss, an equivalent one on a hit."""
    if answer.completion is not None and answer.completion.raw is not None:
        return dict(answer.completion.raw)
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": prompt.instructions,
        "model": answer.model,
        "output": [
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": answer.text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": prompt.options.get("temperature"),
        "top_p": prompt.options.get("top_p"),
        "max_output_tokens": prompt.options.get("max_output_tokens"),
        "metadata": prompt.passthrough.get("metadata") or {},
        "usage": {
            "input_tokens": answer.usage.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": answer.usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": answer.usage.total_tokens,
        },
    }


def render_chat(answer: Answer) -> dict[str, JSON]:
    """A chat.completion object: the upstream's own for a request forwarded as it is, else made from the answer."""
    raw = answer.completion.raw if answer.completion is not None else None
    if raw is not None and raw.get("object") == "chat.completion":
        return dict(raw)
    finish = answer.completion.finish_reason if answer.completion is not None else "stop"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text, "refusal": None, "annotations": []},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": answer.usage.input_tokens,
            "completion_tokens": answer.usage.output_tokens,
            "total_tokens": answer.usage.total_tokens,
        },
    }
