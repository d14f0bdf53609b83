"""The service end to end: real HTTP, real Redis Stack, real embedder, the fake OpenAI server behind it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest

from semcache.adapters.openai_llm import OpenAILLM
from semcache.core.errors import UpstreamTimeout
from semcache.core.models import Message, Prompt
from semcache.core.service import NOT_TEXT
from tests.conftest import FakeOpenAI
from tests.integration.conftest import ApiServer


def query(http: httpx.Client, text: str, **body: Any) -> httpx.Response:
    return http.post("/api/query", json={"query": text, **body})


def test_health_reports_store_and_embedder(http: httpx.Client) -> None:
    body = http.get("/").json()
    assert body["status"] == "ok"
    assert body["store"]["ok"] is True
    assert body["embedder"]["dim"] == 384
    assert body["embedder"]["id"].startswith("all-MiniLM-L6-v2-int8@")


def test_same_question_twice_is_a_miss_then_an_exact_hit(
    http: httpx.Client, fake_openai: FakeOpenAI, unique: str
) -> None:
    calls = fake_openai.calls()
    q = f"How do I reset my password for account {unique}?"
    first = query(http, q)
    assert first.status_code == 200
    assert first.headers["x-semcache"] == "miss"
    assert first.json()["response"] == f"[offline answer] {q}"
    assert first.json()["usage"]["total_tokens"] > 0

    second = query(http, q)
    assert second.headers["x-semcache"] == "hit"
    assert second.headers["x-semcache-tier"] == "exact"
    assert second.headers["x-semcache-entry"] == first.headers["x-semcache-entry"]
    body = second.json()
    assert body["response"] == first.json()["response"]
    assert body["cache"]["matched_query"] == q
    assert body["usage"]["total_tokens"] == 0
    assert 0 < body["cache"]["ttl_seconds"] <= 7 * 86400
    assert fake_openai.calls() == calls + 1


def test_a_paraphrase_is_a_semantic_hit(http: httpx.Client, fake_openai: FakeOpenAI) -> None:
    original = "How do I reset my Gmail password?"
    query(http, original, cache={"mode": "refresh"})
    calls = fake_openai.calls()
    para = query(http, "What's the way to change my Gmail password?")
    assert para.headers["x-semcache"] == "hit"
    assert para.headers["x-semcache-tier"] == "semantic"
    body = para.json()
    assert body["cache"]["matched_query"] == original
    assert body["response"] == f"[offline answer] {original}"
    assert 0.85 <= body["cache"]["similarity"] < 1
    assert fake_openai.calls() == calls


SIMPLE_TERMS, IN_DETAIL = "Explain quantum computing in simple terms", "Explain quantum computing in detail"


@pytest.mark.parametrize(
    ("stored", "paraphrase", "not_the_same", "rule"),
    [
        (
            "How do I convert a list to a string in Python?",
            "Python: turn a list into a string",
            "How do I convert a string to a list in Python?",
            "roles",
        ),
        (SIMPLE_TERMS, "Explain quantum computing like I'm five", IN_DETAIL, "shape"),
        (  # served at 0.91 before the operators rule (the networks' words hold no symbols)
            "Solve x^2 + 5x + 6 = 0",
            "Find the roots of x^2 + 5x + 6 = 0",
            "Solve x^2 - 5x + 6 = 0",
            "operators",
        ),
        (  # served at 0.80 before the data rule
            "Summarize: The meeting covered the budget, the hiring plan and the new office.",
            "Summarize the following: The meeting covered the budget, the hiring plan and the new office.",
            "Summarize: The meeting covered the budget, the layoffs and the office closure.",
            "data",
        ),
    ],
)
def test_the_same_words_asking_for_another_answer_miss_where_a_paraphrase_hits(
    http: httpx.Client, unique: str, stored: str, paraphrase: str, not_the_same: str, rule: str
) -> None:
    # Through the real model and verifier: the networks alone served both `not_the_same` at confidence 0.99.
    own = {"instructions": f"Answer plainly. ({unique})"}  # a scope of its own: no other test's entries in it
    query(http, stored, **own)
    hit = query(http, paraphrase, **own)
    assert (hit.headers["x-semcache-tier"], hit.json()["cache"]["matched_query"]) == ("semantic", stored)
    before = http.get("/v1/cache/stats").json()["ruled_out"]
    missed = query(http, not_the_same, **own)
    assert missed.headers["x-semcache"] == "miss"
    assert missed.json()["cache"]["similarity"] is None
    assert missed.json()["cache"]["reason"].startswith(f"nearest stored question ruled out ({rule}): ")  # says why
    after = http.get("/v1/cache/stats").json()["ruled_out"]
    # counted under its rule; the lookup then searched past it and found nothing else in the scope
    assert after == {**before, rule: before[rule] + 1, "searched_further": before["searched_further"] + 1}
    for response in (hit, missed):  # the stored entry and the one the miss made: none left to serve other tests
        assert http.delete(f"/v1/cache/entries/{response.headers['x-semcache-entry']}").status_code == 200


def test_questions_differing_only_where_the_embedder_cannot_read_are_not_served_for_each_other(
    http: httpx.Client, unique: str
) -> None:
    # Emoji are unknown tokens to all-MiniLM-L6-v2: the two questions were the same vector, and served each other's
    # answers. (Chinese and Cyrillic questions, which the rule covers too, are not English: see below, and
    # tests/integration/test_cli.py for the rule on them.)
    own = {"instructions": f"Answer plainly. ({unique})"}  # a scope of its own: no other test's entries in it
    stored = "How do I type 😀 on a Mac?"
    first = query(http, stored, **own)
    before = http.get("/v1/cache/stats").json()["ruled_out"]
    missed = query(http, "How do I type 😂 on a Mac?", **own)
    assert missed.headers["x-semcache"] == "miss"
    assert missed.json()["cache"]["reason"].startswith("nearest stored question ruled out (unread): ")
    after = http.get("/v1/cache/stats").json()["ruled_out"]
    assert after["unread"] == before["unread"] + 1
    # What it does read still matches: the same unknown parts, other words around them
    hit = query(http, "How can I type 😀 on a Mac?", **own)
    assert (hit.headers["x-semcache-tier"], hit.json()["cache"]["matched_query"]) == ("semantic", stored)
    for response in (first, missed):
        assert http.delete(f"/v1/cache/entries/{response.headers['x-semcache-entry']}").status_code == 200


@pytest.mark.parametrize(
    ("stored", "swapped"),
    [
        # Through the real model and verifier these were served at confidence 0.93 and 0.99: the rules that catch
        # swapped roles know English words only, and Cyrillic is read letter by letter.
        ("¿Cómo convertir una lista en una cadena en Python?", "¿Cómo convertir una cadena en una lista en Python?"),
        ("Как перевести строку в число в Python?", "Как перевести число в строку в Python?"),
        ("什么是机器学习?", "什么是深度学习?"),  # machine / deep learning: the same vector (cosine 1.0), served at 0.89
    ],
)
def test_a_question_in_another_language_is_served_only_to_an_exact_repeat(
    http: httpx.Client, unique: str, stored: str, swapped: str
) -> None:
    own = {"instructions": f"Answer plainly. ({unique})"}  # a scope of its own: no other test's entries in it
    first = query(http, stored, **own)
    before = http.get("/v1/cache/stats").json()["lookup_skipped_not_english"]
    other = query(http, swapped, **own)
    assert (other.headers["x-semcache"], other.json()["cache"]["reason"]) == (
        "miss",
        "not in English: served only to an exact repeat (the matcher is trained on English)",
    )
    assert http.get("/v1/cache/stats").json()["lookup_skipped_not_english"] == before + 1
    assert query(http, stored, **own).headers["x-semcache-tier"] == "exact"
    for response in (first, other):
        assert http.delete(f"/v1/cache/entries/{response.headers['x-semcache-entry']}").status_code == 200


def test_a_nearest_entry_ruled_out_as_another_question_makes_way_for_the_next(http: httpx.Client, unique: str) -> None:
    # On the real index: "in detail" is the nearest entry to "like I'm five", and is ruled out (another shape);
    # the lookup searches past it and serves "in simple terms".
    own = {"instructions": f"Answer plainly. ({unique})"}  # a scope of its own: no other test's entries in it
    stored = [query(http, q, **own) for q in (SIMPLE_TERMS, IN_DETAIL)]
    try:
        before = http.get("/v1/cache/stats").json()["ruled_out"]
        hit = query(http, "Explain quantum computing like I'm five", **own)
        assert (hit.headers["x-semcache-tier"], hit.json()["cache"]["matched_query"]) == ("semantic", SIMPLE_TERMS)
        after = http.get("/v1/cache/stats").json()["ruled_out"]
        assert after == {**before, "shape": before["shape"] + 1, "searched_further": before["searched_further"] + 1}
    finally:
        for response in stored:
            http.delete(f"/v1/cache/entries/{response.headers['x-semcache-entry']}")


def test_a_document_with_another_question_after_it_is_not_served_the_first_ones_answer(
    http: httpx.Client, fake_openai: FakeOpenAI, unique: str
) -> None:
    # MiniLM reads 256 word pieces: the two prompts below embed alike (cosine 1.0), and the verifier served the
    # second the first one's answer at confidence 0.99. A text the model cannot read whole is served only to an
    # exact repeat, and a shorter text is never served its answer.
    context = f"Answer from the context only. Context ({unique}): " + (
        "Acme Corp was founded in Ohio and makes industrial pumps and valves for water plants in the region. " * 14
    )
    where, what = context + "Question: Where was Acme founded?", context + "Question: What does Acme make?"
    before = http.get("/v1/cache/stats").json()["lookup_skipped_too_long"]
    first = query(http, where)
    assert first.headers["x-semcache"] == "miss"
    assert first.json()["cache"]["reason"] == "too long for a semantic match: served only to an exact repeat"
    other = query(http, what)
    assert (other.headers["x-semcache"], other.json()["response"]) == ("miss", f"[offline answer] {what}")
    calls = fake_openai.calls()
    again = query(http, where)
    assert (again.headers["x-semcache-tier"], again.json()["response"]) == ("exact", f"[offline answer] {where}")
    start = query(http, " ".join(context.split()[:40]))  # the document's beginning, which the model reads whole
    assert start.headers["x-semcache"] == "miss"
    assert "too long" not in (start.json()["cache"]["reason"] or "")  # looked up by meaning, and not served
    assert fake_openai.calls() == calls + 1
    assert http.get("/v1/cache/stats").json()["lookup_skipped_too_long"] == before + 2
    for response in (first, other, start):
        assert http.delete(f"/v1/cache/entries/{response.headers['x-semcache-entry']}").status_code == 200


def test_a_paraphrase_asked_again_skips_the_model_not_the_lookup(http: httpx.Client) -> None:
    original = "How do I reset my Gmail password?"
    query(http, original, cache={"mode": "refresh"})
    paraphrase = "What's the way to change my Gmail password?"
    query(http, paraphrase)
    reused = http.get("/v1/cache/stats").json()["embeddings_reused"]
    again = query(http, paraphrase)
    assert again.headers["x-semcache-tier"] == "semantic"
    assert http.get("/v1/cache/stats").json()["embeddings_reused"] == reused + 1
    # the lookup still runs: with the entry deleted, the same words miss
    assert http.delete(f"/v1/cache/entries/{again.headers['x-semcache-entry']}").status_code == 200
    missed = query(http, paraphrase)
    assert missed.headers["x-semcache"] == "miss"
    http.delete(f"/v1/cache/entries/{missed.headers['x-semcache-entry']}")  # leave the paraphrase a paraphrase


@pytest.mark.parametrize(
    "change", [{"model": "gpt-other"}, {"instructions": "Answer in French."}, {"temperature": 0.0}]
)
def test_a_different_model_instructions_or_sampling_never_hit(
    http: httpx.Client, unique: str, change: dict[str, Any]
) -> None:
    q = f"What is the boiling point of water {unique}?"
    query(http, q)
    other = query(http, q, **change)
    assert other.headers["x-semcache"] == "miss"
    assert query(http, q, **change).headers["x-semcache-tier"] == "exact"


def test_cache_modes(http: httpx.Client, fake_openai: FakeOpenAI, unique: str) -> None:
    q = f"Name a prime number bigger than {unique}"
    assert query(http, q, cache={"mode": "bypass"}).headers["x-semcache"] == "bypass"
    assert query(http, q).headers["x-semcache"] == "miss", "bypass must not write"
    assert query(http, q, cache={"mode": "bypass"}).headers["x-semcache"] == "bypass"
    refreshed = query(http, q, cache={"mode": "refresh", "ttl_seconds": 60})
    assert refreshed.headers["x-semcache"] == "miss"
    assert refreshed.json()["cache"]["ttl_seconds"] == 60
    hit = query(http, q)
    assert hit.headers["x-semcache-tier"] == "exact"
    assert 0 < hit.json()["cache"]["ttl_seconds"] <= 60


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"query": ""}, "query"),
        ({"quer": "typo"}, "query"),
        ({"query": "x", "temperature": 9}, "temperature"),
        ({"query": "x", "cache": {"mode": "sometimes"}}, "cache.mode"),
        ({"query": "x", "cache": {"min_similarity": 0}}, "cache.min_similarity"),
        ({"query": "x", "cache": {"ttl_seconds": -1}}, "cache.ttl_seconds"),
    ],
)
def test_bad_input_is_a_clear_422(http: httpx.Client, body: dict[str, Any], param: str) -> None:
    response = http.post("/api/query", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == param
    assert param in error["message"]


def test_a_body_that_is_not_json_is_a_400_that_says_so(http: httpx.Client) -> None:
    response = http.post("/api/query", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_body", None)
    assert error["message"].startswith("request body is not valid JSON at character 1: ")


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b"[1, 2]", "application/json", "request body must be a JSON object"),
        (b"null", "application/json", "request body must be a JSON object"),
        (b"", "application/json", "request body must be a JSON object"),
        (
            b"query=hello",
            "application/x-www-form-urlencoded",
            "request body must be a JSON object sent with content-type: application/json",
        ),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400_that_says_so(
    http: httpx.Client, content: bytes, content_type: str, message: str
) -> None:
    for route in ("/api/query", "/v1/responses", "/v1/chat/completions"):
        response = http.post(route, content=content, headers={"content-type": content_type})
        assert response.status_code == 400, route
        assert response.json()["error"]["message"] == message, route


@pytest.mark.parametrize(
    ("marker", "status", "upstream"), [("status=429", 502, 429), ("status=500", 502, 500), ("malformed", 502, None)]
)
def test_upstream_failures_are_clear_json_and_cache_nothing(
    http: httpx.Client, unique: str, marker: str, status: int, upstream: int | None
) -> None:
    q = f"[fake:{marker}] question {unique}"
    response = query(http, q)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    assert error["upstream_status"] == upstream
    if upstream is not None:
        assert f"fake upstream error {upstream}" in error["message"]
    assert error["code"] == (f"fake_{upstream}" if upstream is not None else None), "the LLM's own error code"
    assert query(http, q).status_code == status, "a failed call must not have been cached"


def test_upstream_timeout_is_a_504(http: httpx.Client, unique: str) -> None:
    response = query(http, f"[fake:delay=3] slow question {unique}")
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"


def test_a_deadline_bounds_the_llm_call_with_its_retries(fake_openai: FakeOpenAI, unique: str) -> None:
    # Behind API Gateway (29 s) a 20 s timeout and one retry could outlast the function: the deadline ends the call,
    # retries included, with our 504. Here each attempt times out at 1 s and the retry would end at 2.5 s or later.
    llm = OpenAILLM(api_key="sk-test", base_url=fake_openai.base_url, timeout_s=1.0, max_retries=1, deadline_s=1.5)
    prompt = Prompt(model="gpt-4.1-mini", messages=(Message("user", f"[fake:delay=1.2] slow {unique}"),))

    async def ask() -> None:
        try:
            await llm.complete(prompt)
        finally:
            await llm.close()

    with pytest.raises(UpstreamTimeout, match=r"within 1.5 s \(retries included\)"):
        asyncio.run(ask())


@pytest.mark.parametrize("marker", ["incomplete", "refusal"])
def test_incomplete_or_refused_answers_are_returned_not_stored(
    http: httpx.Client, fake_openai: FakeOpenAI, unique: str, marker: str
) -> None:
    q = f"[fake:{marker}] tell me a story about {unique}"
    first = query(http, q)
    assert first.status_code == 200
    assert first.json()["cache"]["status"] == "miss"
    assert first.json()["cache"]["entry_id"] is None
    calls = fake_openai.calls()
    assert query(http, q).json()["cache"]["status"] == "miss"
    assert fake_openai.calls() == calls + 1


# The OpenAI-compatible routes, driven by the official SDK.


@pytest.fixture
def sdk(api: ApiServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key="sk-anything", max_retries=0) as client:
        yield client


def test_sdk_responses_route(sdk: openai.OpenAI, unique: str) -> None:
    q = f"What is the capital of France {unique}?"
    first = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q)
    assert first.headers["x-semcache"] == "miss"
    assert first.parse().output_text == f"[offline answer] {q}"
    second = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q)
    assert second.headers["x-semcache"] == "hit"
    parsed = second.parse()
    assert parsed.output_text == f"[offline answer] {q}"
    assert parsed.status == "completed"
    assert parsed.model == "gpt-4.1-mini"
    other = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q, instructions="Be terse.")
    assert other.headers["x-semcache"] == "miss"


def test_sdk_responses_input_list_is_scoped_by_earlier_turns(sdk: openai.OpenAI, unique: str) -> None:
    def ask(topic: str) -> str:
        raw = sdk.responses.with_raw_response.create(
            model="gpt-4.1-mini",
            input=[
                {"role": "user", "content": f"Tell me about {topic} {unique}"},
                {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": "Which part is often called the brain?"},
            ],
        )
        return raw.headers["x-semcache"]

    assert ask("computers") == "miss"
    assert ask("the human body") == "miss"
    assert ask("computers") == "hit"


def test_sdk_chat_completions_route(sdk: openai.OpenAI, unique: str) -> None:
    messages: list[Any] = [{"role": "user", "content": f"Why is the sky blue {unique}?"}]
    first = sdk.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=messages)
    assert first.headers["x-semcache"] == "miss"
    completion = first.parse()
    assert completion.choices[0].message.content == f"[offline answer] Why is the sky blue {unique}?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0
    second = sdk.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=messages)
    assert second.headers["x-semcache"] == "hit"
    assert second.parse().choices[0].message.content == completion.choices[0].message.content
    with_system = [{"role": "system", "content": "You are a pirate."}, *messages]
    third = sdk.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=with_system)
    assert third.headers["x-semcache"] == "miss"


class CityFacts(pydantic.BaseModel):
    city: str
    population_millions: float
    landmarks: list[str]


def test_sdk_structured_outputs_parse_on_a_miss_and_on_a_hit(sdk: openai.OpenAI, unique: str) -> None:
    # The SDK's parse helpers (Pydantic models as text_format / response_format): the hit must parse as the miss did
    q = f"Give me facts about Paris {unique}"
    parsed = []
    for expected in ("miss", "hit"):
        raw = sdk.responses.with_raw_response.parse(model="gpt-4.1-mini", input=q, text_format=CityFacts)
        assert raw.headers["x-semcache"] == expected
        parsed.append(raw.parse().output_parsed)
    assert isinstance(parsed[0], CityFacts)
    assert parsed[0] == parsed[1]
    assert parsed[0].city == f"[offline city] {q}"
    chat = []
    messages: list[Any] = [{"role": "user", "content": f"Give me facts about Rome {unique}"}]
    for expected in ("miss", "hit"):
        raw_chat = sdk.chat.completions.with_raw_response.parse(
            model="gpt-4.1-mini", messages=messages, response_format=CityFacts
        )
        assert raw_chat.headers["x-semcache"] == expected
        chat.append(raw_chat.parse().choices[0].message.parsed)
    assert isinstance(chat[0], CityFacts)
    assert chat[0] == chat[1]
    # The same question without a schema is another request: never served the JSON
    plain = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q)
    assert plain.headers["x-semcache"] == "miss"


def test_sdk_cache_control_headers(sdk: openai.OpenAI, unique: str) -> None:
    q = f"Count to three {unique}"
    sdk.responses.create(model="gpt-4.1-mini", input=q)
    raw = sdk.responses.with_raw_response.create(
        model="gpt-4.1-mini", input=q, extra_headers={"x-semcache-mode": "bypass"}
    )
    assert raw.headers["x-semcache"] == "bypass"
    with pytest.raises(openai.BadRequestError, match="x-semcache-mode"):
        sdk.responses.create(model="gpt-4.1-mini", input=q, extra_headers={"x-semcache-mode": "maybe"})


def test_sdk_state_dependent_requests_bypass(sdk: openai.OpenAI, unique: str) -> None:
    for _ in range(2):
        raw = sdk.responses.with_raw_response.create(
            model="gpt-4.1-mini", input=f"And then {unique}?", previous_response_id="resp_123"
        )
        assert raw.headers["x-semcache"] == "bypass"
    for expected in ("miss", "hit"):  # background false (some clients send it) holds no state
        raw = sdk.responses.with_raw_response.create(
            model="gpt-4.1-mini", input=f"And then {unique}?", background=False
        )
        assert raw.headers["x-semcache"] == expected, raw.headers.get("x-semcache-reason")
    raw = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=f"And then {unique}?", background=True)
    assert raw.headers["x-semcache"] == "bypass"


def test_sdk_unsupported_requests_are_clear_400s(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="stream_options"):
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                    stream_options={"include_usage": True})  # fmt: skip


def _streamed(raw: Any) -> tuple[str, list[Any]]:
    """The x-semcache header and the events of a raw streamed SDK response."""
    return raw.headers["x-semcache"], list(raw.parse())


def test_sdk_responses_stream_relays_a_miss_and_replays_the_hit(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI, unique: str
) -> None:
    q = f"Name three rivers of Europe {unique}"
    status, events = _streamed(sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q, stream=True))
    assert status == "miss"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3, "the miss arrived in one piece, not relayed as the LLM sent it"
    assert "".join(deltas) == f"[offline answer] {q}"
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == f"[offline answer] {q}"
    calls = fake_openai.stats()["calls"]
    status, events = _streamed(sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q, stream=True))
    assert status == "hit"
    assert fake_openai.stats()["calls"] == calls
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == f"[offline answer] {q}"
    assert [e.type for e in events][:2] == ["response.created", "response.output_item.added"]
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == f"[offline answer] {q}"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # streamed or not, it is the same answer: the stream's entry serves the plain request too
    assert sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q).headers["x-semcache"] == "hit"
    options = {"include_obfuscation": False}  # how the stream is sent, not what it says: the same entry
    raw = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q, stream=True, stream_options=options)
    assert raw.headers["x-semcache"] == "hit"


def test_sdk_chat_stream_miss_and_hit_with_usage(sdk: openai.OpenAI, unique: str) -> None:
    messages = [{"role": "user", "content": f"What is the tallest mountain {unique}?"}]
    for expected in ("miss", "hit"):
        status, chunks = _streamed(sdk.chat.completions.with_raw_response.create(
            model="gpt-4.1-mini", messages=messages, stream=True, stream_options={"include_usage": True}))  # fmt: skip
        assert status == expected
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == f"[offline answer] {messages[0]['content']}"
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage is not None
        assert (chunks[-1].usage.total_tokens > 0) is (expected == "miss")  # a hit spends no tokens
        assert len({c.id for c in chunks}) == 1


def test_a_streamed_miss_names_the_entry_it_is_stored_under(
    sdk: openai.OpenAI, http: httpx.Client, unique: str
) -> None:
    # the headers go out before the answer is complete; the id they give is the one it is then stored under, so a
    # streaming client can delete the answer (or give a verdict on it) as a plain one can
    q = f"Name three lakes of Africa {unique}"
    raw = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q, stream=True)
    entry = raw.headers["x-semcache-entry"]
    list(raw.parse())
    assert raw.headers["x-semcache"] == "miss"
    hit = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q)
    assert (hit.headers["x-semcache"], hit.headers["x-semcache-entry"]) == ("hit", entry)
    assert http.delete(f"/v1/cache/entries/{entry}").json() == {"entry_id": entry, "deleted": True}
    assert sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q).headers["x-semcache"] == "miss"


@pytest.mark.parametrize(("marker", "last"), [("cut", "error"), ("incomplete", "response.incomplete")])
def test_a_streamed_answer_that_did_not_complete_is_relayed_not_stored(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI, unique: str, marker: str, last: str
) -> None:
    # cut: the stream breaks off (it ends with an error event, as OpenAI ends a failed stream); incomplete: the
    # answer was cut by max_output_tokens (OpenAI's response.incomplete)
    q = f"[fake:{marker}] Tell me a long story {unique}"
    for _ in range(2):
        calls = fake_openai.stats()["calls"]
        events = list(sdk.responses.create(model="gpt-4.1-mini", input=q, stream=True))
        assert events[-1].type == last
        assert fake_openai.stats()["calls"] == calls + 1  # asked again: nothing was stored
    if marker == "cut":
        assert "ended before its answer was complete" in events[-1].message
        assert [e.type for e in events].count("response.output_text.delta") == 2  # what came before, relayed
        with pytest.raises(openai.APIError, match="ended before"):
            list(sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": q}], stream=True))


def test_a_stream_whose_upstream_fails_at_once_is_a_json_error(sdk: openai.OpenAI, unique: str) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        sdk.responses.create(model="m", input=f"[fake:status=429] {unique}", stream=True)
    assert info.value.status_code == 502
    assert "429" in str(info.value)


def test_a_client_that_leaves_mid_stream_still_gets_the_answer_stored(http: httpx.Client, unique: str) -> None:
    q = f"[fake:drip=0.05] Describe the sea {unique}"
    body = {"model": "gpt-4.1-mini", "input": q, "stream": True}
    with http.stream("POST", "/v1/responses", json=body) as reply:
        assert reply.headers["x-semcache"] == "miss"
        next(reply.iter_lines())  # the first event, then the client goes away (the answer takes 0.3 s more)
    for _ in range(50):  # the LLM call finishes on its own and is stored
        again = http.post("/v1/responses", json={"model": "gpt-4.1-mini", "input": q})
        if again.headers["x-semcache"] == "hit":
            break
        time.sleep(0.1)
    assert again.headers["x-semcache"] == "hit"
    assert again.json()["output"][0]["content"][0]["text"] == f"[offline answer] {q}"


@pytest.mark.parametrize("stream", [False, True])
def test_sdk_answers_of_reasoning_models_are_cached(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI, unique: str, stream: bool
) -> None:
    # A reasoning model's output starts with a reasoning item (gpt-5, o-series: always, its summary empty unless one
    # is asked for). It is not part of the answer: until session 18 its presence kept every such answer out of the
    # cache.
    q = f"Why do leaves change colour in autumn {unique} {stream}?"

    def ask() -> tuple[str, Any]:
        raw = sdk.responses.with_raw_response.create(
            model="gpt-5-mini", input=q, reasoning={"effort": "low"}, stream=stream
        )
        if stream:
            return raw.headers["x-semcache"], list(raw.parse())[-1].response
        return raw.headers["x-semcache"], raw.parse()

    status, first = ask()
    assert status == "miss"
    assert [item.type for item in first.output] == ["reasoning", "message"], "the fake answers as such models do"
    assert first.output_text == f"[offline answer] {q}"
    calls = fake_openai.stats()["calls"]
    status, second = ask()
    assert status == "hit"
    assert second.output_text == first.output_text
    assert fake_openai.stats()["calls"] == calls
    messages: list[Any] = [{"role": "user", "content": q}]
    for expected in ("miss", "hit"):  # the chat route, its reasoning_effort scoped like reasoning above
        chat = sdk.chat.completions.with_raw_response.create(model="o4-mini", messages=messages, reasoning_effort="low")
        assert chat.headers["x-semcache"] == expected
        assert chat.parse().choices[0].message.content == f"[offline answer] {q}"


def test_an_answer_found_with_a_hosted_tool_is_returned_not_stored(
    sdk: openai.OpenAI, http: httpx.Client, fake_openai: FakeOpenAI, unique: str
) -> None:
    # What a web search found is the web's at that moment: such an answer is returned and never stored.
    q = f"[fake:web_search] What does the newest edition of Rust change {unique}?"
    for _ in range(2):
        calls = fake_openai.stats()["calls"]
        raw = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q, tools=[{"type": "web_search"}])
        assert (raw.headers["x-semcache"], raw.headers["x-semcache-entry"]) == ("miss", "none")
        assert raw.headers["x-semcache-reason"] == NOT_TEXT, "the SDK's caller can see why"
        answer = raw.parse()
        assert [item.type for item in answer.output] == ["web_search_call", "message"]
        assert answer.output_text == f"[offline answer] {q}"
        assert fake_openai.stats()["calls"] == calls + 1
    assert query(http, q).json()["cache"]["reason"] == NOT_TEXT


def test_a_request_the_llm_refuses_as_malformed_is_its_4xx_not_a_502(
    sdk: openai.OpenAI, http: httpx.Client, fake_openai: FakeOpenAI, unique: str
) -> None:
    # A parameter the model does not take is the caller's to fix: the LLM's 400, its reason and its param, as
    # OpenAI would answer it (a 502 says the fault is ours, and the SDKs retry it). Nothing is stored.
    q = f"What is a monad {unique}?"
    errors = http.get("/v1/cache/stats").json()["errors"]
    for _ in range(2):
        calls = fake_openai.stats()["calls"]
        with pytest.raises(openai.BadRequestError) as info:
            sdk.responses.create(model="o4-mini", input=q, temperature=0.2)
        assert fake_openai.stats()["calls"] == calls + 1, "asked once (not retried) and again: nothing was stored"
        assert (info.value.status_code, info.value.param) == (400, "temperature")
        assert info.value.code == "unsupported_parameter"
        assert "not supported with this model" in info.value.message
    with pytest.raises(openai.BadRequestError, match="temperature"):
        sdk.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": q}], temperature=0.2)
    streamed = http.post("/v1/responses", json={"model": "o4-mini", "input": q, "temperature": 0.2, "stream": True})
    assert streamed.status_code == 400
    assert streamed.json()["error"]["type"] == "invalid_request_error"
    assert http.get("/v1/cache/stats").json()["errors"] == errors + 4, "each counted as an error answer"


def test_input_items_besides_messages_are_forwarded_uncached(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI, unique: str
) -> None:
    # A tool's call with its output, as an agent loop sends them: the LLM reads these items; the cache cannot judge
    # them: answered (before session 18, refused with a 400), never cached.
    tool_loop: list[Any] = [
        {"role": "user", "content": f"What is the weather in Paris {unique}?"},
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 C"},
    ]
    for _ in range(2):
        calls = fake_openai.stats()["calls"]
        raw = sdk.responses.with_raw_response.create(model="gpt-5-mini", input=tool_loop)
        assert raw.headers["x-semcache"] == "bypass"
        assert raw.parse().status == "completed"
        assert fake_openai.stats()["calls"] == calls + 1
    assert fake_openai.stats()["bodies"][-1]["input"] == json.loads(json.dumps(tool_loop)), "forwarded as given"


def test_a_reasoning_models_follow_up_is_cached_by_its_messages(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI, unique: str
) -> None:
    # OpenAI's own way to go on with a reasoning model without stored state: pass its output back, reasoning item
    # included, then the next question. The reasoning is forwarded (the LLM reads it) but is not the scope: the
    # conversation is its messages (session 18 never cached such a follow-up).
    first = sdk.responses.create(model="gpt-5-mini", input=f"Name a prime number {unique}")
    turns = [
        {"role": "user", "content": f"Name a prime number {unique}"},
        *(i.model_dump(exclude_none=True) for i in first.output),
    ]
    follow_up = [*turns, {"role": "user", "content": "Why is it prime?"}]
    assert [item["type"] for item in follow_up[1:3]] == ["reasoning", "message"]
    calls = fake_openai.stats()["calls"]
    miss = sdk.responses.with_raw_response.create(model="gpt-5-mini", input=follow_up)
    assert miss.headers["x-semcache"] == "miss"
    assert fake_openai.stats()["bodies"][-1]["input"] == json.loads(json.dumps(follow_up)), "forwarded as given"
    # The same conversation again, and as a client that got the first answer from the cache sends it (no reasoning)
    without_reasoning = [item for item in follow_up if item.get("type") != "reasoning"]
    for items in (follow_up, without_reasoning):
        hit = sdk.responses.with_raw_response.create(model="gpt-5-mini", input=items)
        assert (hit.headers["x-semcache"], hit.headers["x-semcache-tier"]) == ("hit", "exact")
        assert hit.parse().output_text == miss.parse().output_text
    assert fake_openai.stats()["calls"] == calls + 1
    # Another earlier answer is another conversation
    other = [turns[0], {"role": "assistant", "content": "7"}, {"role": "user", "content": "Why is it prime?"}]
    assert sdk.responses.with_raw_response.create(model="gpt-5-mini", input=other).headers["x-semcache"] == "miss"


def test_a_stored_prompt_is_cached_only_at_a_pinned_version(sdk: openai.OpenAI, unique: str) -> None:
    # Without a version OpenAI uses the prompt's current one, which its owner may change at any time.
    q = f"Summarise the plot of Hamlet {unique}"
    for expected in ("bypass", "bypass"):
        raw = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q, prompt={"id": "pmpt_1"})
        assert raw.headers["x-semcache"] == expected
    pinned = {"id": "pmpt_1", "version": "3", "variables": {"tone": "brief"}}
    for expected in ("miss", "hit"):
        raw = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q, prompt=pinned)
        assert raw.headers["x-semcache"] == expected
    other = {**pinned, "version": "4"}
    raw = sdk.responses.with_raw_response.create(model="gpt-4.1-mini", input=q, prompt=other)
    assert raw.headers["x-semcache"] == "miss", "another version is another scope"


def test_sdk_chat_requests_beyond_the_subset_are_forwarded_as_they_are(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI, unique: str
) -> None:
    # Tools and their messages, stop, and the like do not translate onto the Responses API: until session 18 they
    # were 400s. Now they reach OpenAI's chat route as sent, uncached, and its answer comes back as it is.
    tools: list[Any] = [{"type": "function", "function": {"name": "weather", "description": "The weather in a city",
                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip
    messages: list[Any] = [{"role": "user", "content": f"What is the weather in Paris {unique}?"}]
    for _ in range(2):
        calls = fake_openai.calls()
        raw = sdk.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=messages, tools=tools)
        assert raw.headers["x-semcache"] == "bypass"
        assert raw.headers["x-semcache-reason"] == "chat request forwarded as it is (tools)"
        choice = raw.parse().choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls is not None
        assert choice.message.tool_calls[0].function.name == "weather"  # type: ignore[union-attr]
        assert fake_openai.calls() == calls + 1, "never cached"
    sent = fake_openai.stats()["bodies"][-1]
    assert (sent["messages"], sent["tools"], sent["model"]) == (messages, tools, "gpt-4.1-mini"), "forwarded as sent"
    result = {"role": "tool", "tool_call_id": choice.message.tool_calls[0].id, "content": "sunny, 21 C"}
    follow_up = [*messages, choice.message.model_dump(exclude_none=True), result]
    answer = sdk.chat.completions.create(model="gpt-4.1-mini", messages=follow_up, tools=tools)
    assert answer.choices[0].message.content == "[offline answer] sunny, 21 C"
    cut = sdk.chat.completions.create(model="gpt-4.1-mini", messages=messages, stop=["Paris"])
    assert cut.choices[0].message.content == "[offline answer] What is the weather in ", "stop reached OpenAI"
    chunks = list(sdk.chat.completions.create(model="gpt-4.1-mini", messages=messages, stop=["Paris"], stream=True,
                                              stream_options={"include_usage": True}))  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == cut.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    streamed = list(sdk.chat.completions.create(model="gpt-4.1-mini", messages=messages, tools=tools, stream=True))
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == "tool_calls"
    assert any(c.choices and c.choices[0].delta.tool_calls for c in streamed)


def test_a_reason_header_is_ascii_whatever_the_reason_quotes(sdk: openai.OpenAI, unique: str) -> None:
    messages: list[Any] = [{"role": "user", "content": f"Bonjour {unique}", "name": "Zoë"}]
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=messages)
    assert raw.headers["x-semcache"] == "bypass"
    assert raw.headers["x-semcache-reason"] == "chat request forwarded as it is (message fields or content)"
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4.1-mini", messages=[{"role": "usér", "content": f"Bonjour {unique}"}]
    )
    assert raw.headers["x-semcache-reason"] == "chat request forwarded as it is (us\\xe9r message)"


def test_sdk_chat_parameters_at_their_defaults_are_translated_and_cached(
    sdk: openai.OpenAI, fake_openai: FakeOpenAI, unique: str
) -> None:
    # Many clients send every parameter, at its default when unused: those ask for nothing, so the request is
    # translated and cached as one without them. Fields the Responses API has too (service_tier, prompt_cache_key)
    # are passed on, outside the scope.
    messages: list[Any] = [{"role": "user", "content": f"What is a lighthouse {unique}?"}]
    neutral: dict[str, Any] = {
        "presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}, "stop": None, "tools": [],
        "logprobs": False, "service_tier": "auto", "prompt_cache_key": "k1",
    }  # fmt: skip
    for expected in ("miss", "hit"):
        raw = sdk.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=messages, extra_body=neutral)
        assert raw.headers["x-semcache"] == expected, raw.headers.get("x-semcache-reason")
        assert raw.parse().choices[0].message.content == f"[offline answer] {messages[0]['content']}"
    sent = fake_openai.stats()["bodies"][-1]
    assert "input" in sent, "answered through the Responses API"
    assert (sent["service_tier"], sent["prompt_cache_key"]) == ("auto", "k1")
    assert "presence_penalty" not in sent
    plain = sdk.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=messages)
    assert plain.headers["x-semcache"] == "hit", "the same scope as without them"
    for asking in ({"presence_penalty": 0.5}, {"logprobs": True}, {"stop": ["x"]}):
        raw = sdk.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=messages, extra_body=asking)
        assert raw.headers["x-semcache"] == "bypass", asking
