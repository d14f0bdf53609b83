"""An LLM on OpenAI's Responses API (or any compatible server), through the official SDK.

The SDK is imported when the client is first needed, not when this module is: `import openai` costs about 0.8 s
(it loads a model class for every API type), more than the rest of a cold start, and a cache hit never needs it.
`OpenAILLM.preload()` imports it on a background thread once init is done, so the first miss rarely waits.

The HTTP transport: the SDK's default (httpx2) for a Lambda instance, which sends one request at a time; aiohttp
(the SDK's own `DefaultAioHttpClient`, `pip install 'semcache[server]'`) for the local server, where many calls
are in flight at once and httpx2's connection pool walks every connection on every request: in a storm of 1,000
concurrent misses it cost the server a third of its time (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from semcache.core.errors import ConfigError, UpstreamError, UpstreamRejected, UpstreamTimeout
from semcache.core.models import CHAT_FORWARD, Completion, Message, Prompt, Usage
from semcache.core.ports import StreamSink

if TYPE_CHECKING:
    import openai
    from openai.types.responses import Response


Transport = Literal["httpx", "aiohttp"]


def connect(
    *, api_key: str, base_url: str | None, timeout_s: float, max_retries: int, transport: Transport = "httpx"
) -> openai.AsyncOpenAI:
    """A client with a timeout that fits behind API Gateway's 30 s and few retries, on the given HTTP transport."""
    import openai

    http_client = openai.DefaultAioHttpClient(timeout=timeout_s) if transport == "aiohttp" else None
    return openai.AsyncOpenAI(
        api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries, http_client=http_client
    )


def check_transport(transport: Transport) -> None:
    """Raise ConfigError now if the transport's package is missing (not at the first miss)."""
    if transport == "aiohttp" and importlib.util.find_spec("aiohttp") is None:
        raise ConfigError("the server calls the LLM through aiohttp: install it with `pip install 'semcache[server]'`")


class OpenAILLM:
    """Calls responses.create with store=False unless the caller asked otherwise.

    Given a client, uses it; given connection settings, makes the client on first use (or on `preload`).
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI | None = None,
        *,
        api_key: str = "",
        base_url: str | None = None,
        timeout_s: float = 20.0,
        max_retries: int = 1,
        transport: Transport = "httpx",
        deadline_s: float | None = None,
    ) -> None:
        """deadline_s: a bound on one call with all its retries (None: timeout_s for each of the attempts)."""
        check_transport(transport)
        self._client = client
        self._deadline_s = deadline_s
        self._connect = partial(
            connect,
            api_key=api_key,
            base_url=base_url,
            timeout_s=timeout_s,
            max_retries=max_retries,
            transport=transport,
        )
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None

    def client(self) -> openai.AsyncOpenAI:
        """The SDK client, made (and the SDK imported) on the first call; thread-safe."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def preload(self) -> threading.Thread:
        """Import the SDK and make the client on a daemon thread (once); returns the thread to join if wanted."""
        with self._lock:
            if self._loading is None:
                self._loading = threading.Thread(target=self.client, name="semcache-openai-preload", daemon=True)
                self._loading.start()
            return self._loading

    async def close(self) -> None:
        """Close the client if one was made."""
        if self._loading is not None:
            await asyncio.to_thread(self._loading.join)
        if self._client is not None:
            await self._client.close()

    async def complete(self, prompt: Prompt, *, on_event: StreamSink | None = None) -> Completion:
        """Answer one prompt; failures become UpstreamError with the upstream's status and reason. With on_event,
        the answer is streamed (stream=true upstream): every event is passed on as it comes; a stream that ends
        without its final event (response.completed, .incomplete or .failed) is an UpstreamError."""
        client = self._client
        if client is None:  # not preloaded yet: import the SDK off the event loop
            client = await asyncio.to_thread(self.client)
        import openai  # imported by client() already: a dictionary lookup

        chat = prompt.passthrough.get(CHAT_FORWARD)
        try:
            async with asyncio.timeout(self._deadline_s):
                if isinstance(chat, dict):  # a chat request forwarded as it is: its answer too
                    return await _chat_forwarded(client, chat, on_event)
                request = _responses_request(prompt)
                if on_event is None:
                    response = await client.responses.create(**request)
                else:
                    response = await _streamed(client, request, on_event)
        except openai.APITimeoutError as exc:
            raise UpstreamTimeout("the LLM did not answer in time") from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(f"the LLM did not answer within {self._deadline_s:g} s (retries included)") from exc
        except openai.APIStatusError as exc:
            message = f"the LLM answered {exc.status_code}: {_reason(exc)}"
            if exc.status_code in UpstreamRejected.STATUSES:
                raise UpstreamRejected(message, status=exc.status_code, code=exc.code, param=exc.param) from exc
            raise UpstreamError(message, status=exc.status_code, code=exc.code) from exc
        except openai.APIError as exc:
            raise UpstreamError(f"the LLM call failed: {exc.message}") from exc
        except ValueError as exc:  # the SDK could not decode the body (not JSON)
            raise UpstreamError(f"the LLM's answer was malformed: {exc}") from exc
        try:
            return _completion(response, prompt.model)
        except (AttributeError, TypeError, ValueError) as exc:
            raise UpstreamError(f"the LLM's answer was malformed: {exc}") from exc


async def _streamed(client: openai.AsyncOpenAI, request: dict[str, Any], on_event: StreamSink) -> Response:
    """Relay a streamed answer's events; the final response they carry."""
    import httpx2

    stream = await client.responses.create(stream=True, **request)
    final: Response | None = None
    try:
        async for event in stream:
            on_event(event.model_dump(mode="json", exclude_unset=True))
            if event.type in ("response.completed", "response.incomplete", "response.failed"):
                final = event.response
            elif event.type == "error":
                raise UpstreamError(f"the LLM's stream failed: {event.message}", code=event.code)
    except httpx2.HTTPError as exc:  # the connection broke mid-stream
        raise UpstreamError(f"the LLM's stream broke off: {exc}") from exc
    finally:
        await stream.close()
    if final is None:
        raise UpstreamError("the LLM's stream ended before its answer was complete")
    return final


async def _chat_forwarded(client: openai.AsyncOpenAI, body: dict[str, Any], on_event: StreamSink | None) -> Completion:
    """A Chat Completions body sent to the chat route as it is; the raw chat.completion kept for the caller (or, with
    on_event, every chunk passed on as it comes). Never a completed answer: nothing of it is cached."""
    import httpx2
    import openai

    if on_event is None:
        raw = await client.post("/chat/completions", body=body, cast_to=object)
        if not isinstance(raw, dict) or raw.get("object") != "chat.completion" or not raw.get("choices"):
            raise UpstreamError(f"the LLM's answer was not a chat.completion: {raw!r:.200}")
        choice = raw["choices"][0]
        message = choice.get("message") or {}
        usage = raw.get("usage") or {}
        return Completion(
            text=message.get("content") or "",
            model=raw.get("model") or body["model"],
            usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            completed=False,
            finish_reason=choice.get("finish_reason") or "stop",
            raw=raw,
        )
    stream = await client.post(
        "/chat/completions", body=body, cast_to=object, stream=True, stream_cls=openai.AsyncStream[object]
    )
    text, usage, finish, model = [], {}, "stop", body["model"]
    try:
        async for chunk in stream:
            if not isinstance(chunk, dict):
                raise UpstreamError(f"the LLM's stream sent something other than a chunk: {chunk!r:.200}")
            on_event(chunk)
            model = chunk.get("model") or model
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                text.append((choice.get("delta") or {}).get("content") or "")
                finish = choice.get("finish_reason") or finish
    except httpx2.HTTPError as exc:  # the connection broke mid-stream
        raise UpstreamError(f"the LLM's stream broke off: {exc}") from exc
    finally:
        await stream.close()
    tokens = Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
    return Completion(text="".join(text), model=model, usage=tokens, completed=False, finish_reason=finish)


def _responses_request(prompt: Prompt) -> dict[str, Any]:
    """responses.create's arguments for prompt: store false unless the caller said otherwise, its options and
    passthrough fields, and its input (as the caller gave it where it holds items besides messages)."""
    request: dict[str, Any] = {"store": False, **prompt.options, **prompt.passthrough}
    if prompt.instructions is not None:
        request["instructions"] = prompt.instructions
    request["model"] = prompt.model
    if "input" not in prompt.passthrough:
        request["input"] = _input(prompt.messages)
    return request


def _input(messages: tuple[Message, ...]) -> str | list[dict[str, Any]]:
    if len(messages) == 1 and messages[0].role == "user" and isinstance(messages[0].content, str):
        return messages[0].content
    return [{"role": m.role, "content": m.content if isinstance(m.content, str) else list(m.content)} for m in messages]


def _completion(response: Response, requested_model: str) -> Completion:
    from openai.types.responses import Response

    if not isinstance(response, Response) or not isinstance(getattr(response, "output", None), list):
        raise UpstreamError("the LLM's answer was not a Responses API object")
    # The answer is its messages' text. A reasoning model's reasoning item comes before them (gpt-5, o-series: always,
    # with an empty summary unless one is asked for): how it got there, not part of what is served again. Anything
    # else (a refusal, a call of a tool, hosted or not) makes the answer one that is not kept.
    messages = [item for item in response.output if item.type != "reasoning"]
    only_text = bool(messages) and all(
        item.type == "message" and all(part.type == "output_text" for part in item.content) for item in messages
    )
    text = response.output_text
    incomplete = response.incomplete_details.reason if response.incomplete_details else None
    usage = response.usage
    return Completion(
        text=text,
        model=response.model or requested_model,
        usage=Usage(usage.input_tokens, usage.output_tokens) if usage else Usage(),
        completed=response.status == "completed" and only_text and bool(text),
        finish_reason={"max_output_tokens": "length", "content_filter": "content_filter"}.get(incomplete or "", "stop"),
        raw=response.model_dump(mode="json", exclude_unset=True),
    )


def _reason(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return message
    return exc.message
