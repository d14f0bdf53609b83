"""Tenants, API keys, admin operations and limits, through real HTTP on the real Redis Stack."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from semcache.http.auth import key_digest
from tests.conftest import FakeOpenAI
from tests.integration.conftest import ApiServer

ACME, GLOBEX, ADMIN = "acme-key-" + uuid.uuid4().hex, "globex-key-" + uuid.uuid4().hex, "admin-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def keyed_api(redis_url: str, model_dir: Path, fake_openai: FakeOpenAI) -> Iterator[ApiServer]:
    server = ApiServer(
        redis_url=redis_url,
        model_dir=model_dir,
        openai_base_url=fake_openai.base_url,
        SEMCACHE_API_KEYS=json.dumps({key_digest(ACME): "acme", key_digest(GLOBEX): "globex"}),
        SEMCACHE_ADMIN_KEY_SHA256=key_digest(ADMIN),
        SEMCACHE_MAX_BODY_BYTES="5000",
        SEMCACHE_MAX_QUERY_CHARS="500",
    )
    yield server
    server.close()


def client(api: ApiServer, key: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=api.url, headers=headers, timeout=30)


def ask(c: httpx.Client, text: str) -> httpx.Response:
    return c.post("/api/query", json={"query": text})


def test_missing_or_wrong_keys_get_401_and_nothing_else(keyed_api: ApiServer) -> None:
    for key in (None, "not-a-key"):
        with client(keyed_api, key) as c:
            response = ask(c, "Hello?")
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "authentication_error"
            assert "x-semcache" not in response.headers


def test_two_tenants_never_see_each_others_answers(keyed_api: ApiServer, fake_openai: FakeOpenAI) -> None:
    prompts = [f"Question {i} about {uuid.uuid4().hex[:6]}: how do tides work?" for i in range(10)]
    with client(keyed_api, ACME) as acme, client(keyed_api, GLOBEX) as globex:
        for p in prompts:
            assert ask(acme, p).headers["x-semcache"] == "miss"
        assert all(ask(acme, p).headers["x-semcache"] == "hit" for p in prompts)
        cross = [ask(globex, p).headers["x-semcache"] for p in prompts]
        assert cross == ["miss"] * len(prompts), "globex was served acme's answers"
        assert all(ask(globex, p).headers["x-semcache"] == "hit" for p in prompts)


def test_entries_belong_to_their_tenant(keyed_api: ApiServer) -> None:
    q = f"What is a {uuid.uuid4().hex[:6]}?"
    with client(keyed_api, ACME) as acme, client(keyed_api, GLOBEX) as globex:
        entry = ask(acme, q).headers["x-semcache-entry"]
        assert globex.delete(f"/v1/cache/entries/{entry}").status_code == 404
        assert ask(acme, q).headers["x-semcache"] == "hit"
        assert acme.delete(f"/v1/cache/entries/{entry}").json() == {"entry_id": entry, "deleted": True}
        assert ask(acme, q).headers["x-semcache"] == "miss"


def test_feedback_wrong_removes_the_entry(keyed_api: ApiServer) -> None:
    q = f"Is {uuid.uuid4().hex[:6]} a word?"
    with client(keyed_api, ACME) as acme:
        entry = ask(acme, q).headers["x-semcache-entry"]
        assert ask(acme, q).headers["x-semcache"] == "hit"
        verdict = acme.post("/v1/cache/feedback", json={"entry_id": entry, "verdict": "wrong"})
        assert verdict.json()["removed"] is True
        assert ask(acme, q).headers["x-semcache"] == "miss"
        bad = acme.post("/v1/cache/feedback", json={"entry_id": entry, "verdict": "meh"})
        assert bad.status_code == 422
        long = acme.post("/v1/cache/feedback", json={"entry_id": entry, "verdict": "right", "query": "x" * 501})
        assert long.status_code == 422, "the asked query has the same limit as a query (500 here)"
        assert long.json()["error"]["param"] == "query"


# The two verdict tests share the module's server, and so globex's entries. Each asks its own fixed pair: the matcher
# judges each pair one question (confidence 0.997 and 0.999) and a question of one pair another of the other (below
# 0.02). They asked made-up words before ("How do I learn the Dpcffm language quickly?"), and in 2 of 1,500 replays
# of the two tests on the service in process the matcher took two such words for one (Dpcffm, Dmfoco) or judged a
# pair of them just under the threshold (0.798): CI failed once on that, not on what the tests check.
LANGUAGE = "How do I learn the Portuguese language quickly?", "How can I learn the Portuguese language quickly?"
CELLO = "How do I get better at playing the cello?", "How can I get better at playing the cello?"


def test_a_mismatch_verdict_keeps_the_answer_for_its_own_question(keyed_api: ApiServer) -> None:
    stored, paraphrase = LANGUAGE
    with client(keyed_api, GLOBEX) as globex:
        entry = ask(globex, stored).headers["x-semcache-entry"]
        hit = ask(globex, paraphrase)
        assert (hit.headers["x-semcache-tier"], hit.headers["x-semcache-entry"]) == ("semantic", entry), hit.json()
        body = {"entry_id": entry, "verdict": "mismatch", "query": paraphrase}
        verdict = globex.post("/v1/cache/feedback", json=body).json()
        assert (verdict["removed"], verdict["mismatched"]) == (False, True)
        assert ask(globex, paraphrase).headers["x-semcache"] == "miss", "not served to that question again"
        own = ask(globex, stored)
        assert (own.headers["x-semcache-tier"], own.headers["x-semcache-entry"]) == ("exact", entry)
        bare = globex.post("/v1/cache/feedback", json={"entry_id": entry, "verdict": "mismatch"})
        assert (bare.status_code, bare.json()["error"]["param"]) == (422, "query")


def test_verdicts_calibrate_only_their_tenants_threshold(keyed_api: ApiServer) -> None:
    stored, paraphrase = CELLO
    with client(keyed_api, ACME) as acme, client(keyed_api, GLOBEX) as globex, client(keyed_api, ADMIN) as admin:

        def verdict(wrong: bool) -> dict[str, object]:
            entry = ask(acme, stored).headers["x-semcache-entry"]  # stored (again, after a wrong verdict)
            body = {"entry_id": entry, "verdict": "wrong" if wrong else "right", "query": paraphrase}
            return dict(acme.post("/v1/cache/feedback", json=body).json())

        ask(globex, stored)
        ask(acme, stored)
        hit = acme.post("/api/query", json={"query": paraphrase}).json()["cache"]
        assert hit["tier"] == "semantic", hit
        first = verdict(wrong=True)
        assert first["removed"] is True
        assert first["confidence"] == pytest.approx(hit["confidence"], abs=1e-4)
        assert first["threshold"] < first["confidence"], "one wrong mark moves nothing"
        verdict(wrong=True)
        third = verdict(wrong=True)
        # Compared with the verdict's own confidence: the hit's is rounded to 4 places, and one just under a bucket
        # edge (0.98997, say) shows as the edge itself (0.99), which is where the threshold then rises to.
        assert third["threshold"] > third["confidence"], "three do"

        assert ask(acme, stored).headers["x-semcache"] == "miss", "stored again after the wrong verdict"
        missed = ask(acme, paraphrase)
        assert missed.headers["x-semcache"] == "miss", "acme's threshold now excludes this pair"
        assert acme.delete(f"/v1/cache/entries/{missed.headers['x-semcache-entry']}").status_code == 200
        own = ask(globex, paraphrase)
        assert own.headers["x-semcache-tier"] == "semantic", f"globex's is its own: {own.json()['cache']}"

        log = acme.get("/v1/cache/feedback").json()
        assert log["tenant"] == "acme"
        assert len(log["examples"]) >= 3
        assert log["examples"][0]["a"] == stored
        assert log["examples"][0]["b"] == paraphrase
        assert log["examples"][0]["duplicate"] is False
        assert globex.get("/v1/cache/feedback", params={"tenant": "acme"}).status_code == 403
        assert admin.get("/v1/cache/feedback", params={"tenant": "acme"}).json()["examples"] == log["examples"]

        for _ in range(8):  # three wrong in eleven: no longer shown to exceed 10%
            right = verdict(wrong=False)
        assert right["removed"] is False
        assert right["threshold"] < hit["confidence"], "back to the shipped threshold"
        assert ask(acme, paraphrase).headers["x-semcache-tier"] == "semantic"


def test_flush_and_admin_operations(keyed_api: ApiServer) -> None:
    q = f"Flush me {uuid.uuid4().hex[:6]}"
    with client(keyed_api, ACME) as acme, client(keyed_api, GLOBEX) as globex, client(keyed_api, ADMIN) as admin:
        ask(acme, q)
        ask(globex, q)
        assert globex.post("/v1/cache/flush", json={"tenant": "acme"}).status_code == 403
        assert globex.get("/v1/cache/stats").status_code == 403
        assert acme.post("/v1/cache/flush", json={}).json()["deleted"] >= 1
        assert ask(acme, q).headers["x-semcache"] == "miss"
        assert ask(globex, q).headers["x-semcache"] == "hit", "acme's flush must not touch globex"
        assert admin.post("/v1/cache/flush", json={"tenant": "globex"}).json()["deleted"] >= 1
        assert ask(globex, q).headers["x-semcache"] == "miss"
        stats = admin.get("/v1/cache/stats").json()
        assert stats["hit"] >= 1
        assert stats["requests"] >= stats["hit"] + stats["miss"]
        assert (stats["lookup_skipped_busy"], stats["deferred_stores"]) == (0, 0), "nothing here queued the model"


def test_limits_name_the_field(keyed_api: ApiServer) -> None:
    with client(keyed_api, ACME) as acme:
        too_big = acme.post(
            "/api/query", content=json.dumps({"query": "x" * 6000}), headers={"content-type": "application/json"}
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "body_too_large"
        too_long = ask(acme, "y" * 600)
        assert too_long.status_code == 422
        assert too_long.json()["error"]["param"] == "query"
        ttl = acme.post("/api/query", json={"query": "z", "cache": {"ttl_seconds": 10**9}})
        assert ttl.status_code == 422
        assert ttl.json()["error"]["param"] == "cache.ttl_seconds"
