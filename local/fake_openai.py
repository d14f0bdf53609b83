"""A local stand-in for OpenAI's Responses API: deterministic answers that quote the question, over real HTTP.

    python local/fake_openai.py [--port 8001] [--delay-ms 0]

Every answer is "[offline answer] <the last user turn>", so a person can see which stored question a cache hit
came from. Tests steer it with markers inside the user's text (kept out of the answer's meaning):
    [fake:status=429]  answer with that HTTP status and an OpenAI-shaped error
    [fake:delay=1.5]   wait that many seconds first
    [fake:malformed]   answer 200 with a body that is not a Response
    [fake:incomplete]  answer status "incomplete" (max_output_tokens)
    [fake:refusal]     answer with a refusal instead of text
    [fake:cut]         with stream=true, stop after a few deltas, before the final event (a broken stream)
    [fake:drip=0.05]   with stream=true, wait that many seconds between deltas
    [fake:web_search]  answer after a web search: a web_search_call item before the message (a hosted tool)
A reasoning model (gpt-5*, o1*, o3*, o4*, or any request with "reasoning") puts a reasoning item (empty summary, as
OpenAI's do unless a summary is asked for) before its message, and counts reasoning tokens; the models named refuse
a temperature with OpenAI's 400 (invalid_request_error, param "temperature").
With "stream": true the answer comes as server-sent events, as OpenAI sends them: response.created, the output
item and content part added, the text in word-sized deltas, their done events, then response.completed (or
response.incomplete).
POST /v1/chat/completions answers the chat requests semcache forwards as they are (see chat_completions).
GET /_fake/stats gives the number of calls, the last inputs and request bodies; POST /_fake/reset clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import time
import uuid
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

MARKER = re.compile(r"\[fake:(\w+)(?:=([\w.]+))?\]")
REASONING_MODELS = ("gpt-5", "o1", "o3", "o4")
STATS: dict[str, Any] = {"calls": 0, "inputs": [], "bodies": []}
DELAY_S = 0.0


def _last_user_text(body: dict[str, Any]) -> str:
    items = body.get("input")
    if isinstance(items, str):
        return items
    for item in reversed(items or []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _unauthorized(request: Request) -> JSONResponse | None:
    """OpenAI's 401 for a request without a bearer key, else None."""
    if request.headers.get("authorization", "").startswith("Bearer "):
        return None
    return JSONResponse(
        {"error": {"message": "missing API key", "type": "invalid_request_error", "code": "invalid_api_key"}},
        status_code=401,
    )


def _record(text: str, body: dict[str, Any]) -> None:
    """Count a call, keeping its user text and its body among the last ones (GET /_fake/stats)."""
    STATS["calls"] += 1
    STATS["inputs"] = [*STATS["inputs"][-99:], text]
    STATS["bodies"] = [*STATS["bodies"][-19:], body]


async def responses(request: Request) -> JSONResponse | PlainTextResponse | StreamingResponse:
    if (refused := _unauthorized(request)) is not None:
        return refused
    body = await request.json()
    text = _last_user_text(body)
    _record(text, body)
    markers = {m.group(1): m.group(2) for m in MARKER.finditer(text)}
    delay = float(markers.get("delay") or 0) + DELAY_S
    if delay:
        await asyncio.sleep(delay)
    if "status" in markers:
        status = int(markers["status"] or 500)
        error = {"message": f"fake upstream error {status}", "type": "server_error", "code": f"fake_{status}"}
        return JSONResponse({"error": error}, status_code=status)
    if "malformed" in markers:
        return PlainTextResponse("this is not JSON", media_type="application/json")
    if str(body.get("model", "")).startswith(REASONING_MODELS) and body.get("temperature") is not None:
        error = {"message": "Unsupported parameter: 'temperature' is not supported with this model.",
                 "type": "invalid_request_error", "param": "temperature", "code": "unsupported_parameter"}  # fmt: skip
        return JSONResponse({"error": error}, status_code=400)

    answer = _structured(((body.get("text") or {}).get("format") or {}), text) or f"[offline answer] {text}"
    status, incomplete = "completed", None
    content: dict[str, Any] = {"type": "output_text", "text": answer, "annotations": []}
    limit = body.get("max_output_tokens")
    if "incomplete" in markers or (isinstance(limit, int) and limit < _tokens(answer)):
        answer = " ".join(answer.split()[: max(1, limit if isinstance(limit, int) else 2)])
        content["text"] = answer
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    if "refusal" in markers:
        content = {"type": "refusal", "refusal": "I can't help with that."}
    input_tokens = _tokens(text) + _tokens(body.get("instructions") or "")
    output_tokens = _tokens(answer)
    message = {"type": "message", "id": f"msg_{uuid.uuid4().hex}", "status": status, "role": "assistant",
               "content": [content]}  # fmt: skip
    output: list[dict[str, Any]] = [message]
    if "web_search" in markers:
        search = {"type": "search", "query": text}
        output.insert(0, {"type": "web_search_call", "id": f"ws_{uuid.uuid4().hex}", "status": "completed",
                          "action": search})  # fmt: skip
    reasoning_tokens = 0
    if body.get("reasoning") is not None or str(body.get("model", "")).startswith(REASONING_MODELS):
        output.insert(0, {"type": "reasoning", "id": f"rs_{uuid.uuid4().hex}", "summary": []})
        reasoning_tokens = 2 * output_tokens
        output_tokens += reasoning_tokens
    response = {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "model": body.get("model", "fake-model"),
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "metadata": body.get("metadata") or {},
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": input_tokens + output_tokens,
        },
    }
    if body.get("stream"):
        events = _events(response, cut="cut" in markers, drip_s=float(markers.get("drip") or 0))
        return StreamingResponse(events, media_type="text/event-stream")
    return JSONResponse(response)


def _structured(text_format: dict[str, Any], asked: str) -> str | None:
    """An answer in the JSON a structured-output request asks for (text.format json_schema or json_object), made
    from the schema: each string says what it is and quotes the question; None for plain text."""
    if text_format.get("type") == "json_object":
        return json.dumps({"answer": f"[offline answer] {asked}"})
    if text_format.get("type") != "json_schema":
        return None
    schema = text_format.get("schema") or {}
    return json.dumps(_instance(schema, schema.get("$defs") or {}, "answer", asked))


def _instance(schema: dict[str, Any], defs: dict[str, Any], name: str, asked: str) -> Any:
    if "$ref" in schema:
        return _instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, name, asked)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        return {key: _instance(sub, defs, key, asked) for key, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_instance(schema.get("items") or {}, defs, name, asked)]
    return {"integer": len(asked.split()), "number": 0.5, "boolean": True, "null": None}.get(
        str(kind), f"[offline {name}] {asked}"
    )


async def _events(response: dict[str, Any], *, cut: bool, drip_s: float) -> Any:
    """The Responses API's stream of one answer (text or refusal), as server-sent events; the items before the message
    (reasoning, a tool call) are added and done before it."""
    sequence = iter(range(10**6))
    index = next(i for i, item in enumerate(response["output"]) if item["type"] == "message")
    item = response["output"][index]
    part = item["content"][0]
    text = part.get("text", part.get("refusal", ""))

    def sse(kind: str, **fields: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': next(sequence), **fields})}\n\n"

    at = {"item_id": item["id"], "output_index": index, "content_index": 0}
    yield sse("response.created", response={**response, "status": "in_progress", "output": [], "usage": None})
    for i, before in enumerate(response["output"][:index]):
        yield sse("response.output_item.added", output_index=i, item=before)
        yield sse("response.output_item.done", output_index=i, item=before)
    yield sse("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
    empty = {"type": "output_text", "text": "", "annotations": []} if "text" in part else {**part, "refusal": ""}
    yield sse("response.content_part.added", **at, part=empty)
    kind = "output_text" if "text" in part else "refusal"
    words = text.split(" ")
    for i, word in enumerate(words):
        if cut and i == 2:
            return
        await asyncio.sleep(drip_s)
        yield sse(f"response.{kind}.delta", **at, delta=word if i == 0 else " " + word, logprobs=[])
    yield sse(
        f"response.{kind}.done",
        **at,
        **({"text": text, "logprobs": []} if kind == "output_text" else {"refusal": text}),
    )
    yield sse("response.content_part.done", **at, part=part)
    yield sse("response.output_item.done", output_index=index, item=item)
    final = "response.completed" if response["status"] == "completed" else "response.incomplete"
    yield sse(final, response=response)


async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
    """OpenAI's Chat Completions route, for what semcache forwards to it as it is: an answer quoting the last user
    turn (cut at the first `stop` string), a call of the first tool when tools are given and the last message is
    not a tool's result, or an answer quoting that result."""
    if (refused := _unauthorized(request)) is not None:
        return refused
    body = await request.json()
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    _record(user if isinstance(user, str) else json.dumps(user), body)
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    tools = body.get("tools") or []
    if tools and last.get("role") != "tool":
        name = tools[0].get("function", {}).get("name", "tool")
        call = {
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": name, "arguments": "{}"},
        }
        message["tool_calls"], finish = [call], "tool_calls"
    else:
        said = last.get("content") if last.get("role") == "tool" else user
        answer = f"[offline answer] {said if isinstance(said, str) else json.dumps(said)}"
        for stop in [body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop") or []:
            answer = answer.split(stop, 1)[0]
        message["content"], finish = answer, "stop"
    usage = {"prompt_tokens": _tokens(json.dumps(messages)), "completion_tokens": _tokens(message["content"] or "x")}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.get("model", "fake")}
    if not body.get("stream"):
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})

    async def chunks() -> Any:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        if message.get("tool_calls"):
            yield chunk({"tool_calls": [{"index": 0, **message["tool_calls"][0]}]})
        else:
            for i, word in enumerate(message["content"].split(" ")):
                yield chunk({"content": word if i == 0 else " " + word})
        yield chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            final = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            yield f"data: {json.dumps(final)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(STATS)


async def reset(request: Request) -> JSONResponse:
    STATS.update(calls=0, inputs=[], bodies=[])
    return JSONResponse(STATS)


app = Starlette(
    routes=[
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/_fake/stats", stats, methods=["GET"]),
        Route("/_fake/reset", reset, methods=["POST"]),
    ]
)


def main() -> None:
    global DELAY_S
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="added to every answer")
    args = parser.parse_args()
    DELAY_S = args.delay_ms / 1000
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and the ones
    # accepted from a proto-0 listener inherit the 0. With Nagle on, uvicorn's separate writes of the headers and
    # the body wait for the client's delayed ACK: 40 ms added to every answer on a kept-alive connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    print(f"fake OpenAI listening on http://127.0.0.1:{port}/v1", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", backlog=4096, timeout_keep_alive=30))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
