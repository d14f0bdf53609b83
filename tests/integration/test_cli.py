"""The `semcache create-index` bootstrap: idempotent, clear about failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path


def create_index(redis_url: str, model_dir: Path, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SEMCACHE_REDIS_URL": redis_url,
        "SEMCACHE_MODEL_DIR": str(model_dir),
        "SEMCACHE_KEY_PREFIX": prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "semcache.cli", "create-index"], env=env, capture_output=True, text=True, check=False
    )


def test_create_index_is_idempotent(redis_url: str, model_dir: Path) -> None:
    prefix = f"cli{uuid.uuid4().hex[:8]}:"
    first = create_index(redis_url, model_dir, prefix)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("created")
    again = create_index(redis_url, model_dir, prefix)
    assert again.returncode == 0
    assert again.stdout.strip().endswith("already there")


def test_create_index_reports_an_unreachable_server(model_dir: Path) -> None:
    result = create_index("redis://127.0.0.1:1/0", model_dir, "x:")
    assert result.returncode == 1
    assert "redis FT.CREATE failed" in result.stderr


def explain(model_dir: Path, *args: str, stdin: str = "", **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEMCACHE_MODEL_DIR": str(model_dir), **settings}
    return subprocess.run(
        [sys.executable, "-m", "semcache.cli", "explain", *args],
        env=env, input=stdin, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_explain_gives_the_services_verdict_and_the_figures_behind_it(model_dir: Path) -> None:
    to_string = "How do I convert a list to a string in Python?"
    pairs = [
        {"stored": to_string, "asked": "How can I turn a Python list into a string?"},
        {"stored": to_string, "asked": "How do I convert a string to a list in Python?"},
        {"stored": "What is the capital of Australia?", "asked": "What is the capital of  Australia?"},
        {"stored": "What is the capital of Australia?", "asked": "What is the capital of Austria?"},
        {"stored": "What is the weather in Paris today?", "asked": "What's the weather in Paris today?"},
    ]  # fmt: skip
    result = explain(model_dir, "--pairs", "-", stdin="\n".join(json.dumps(p) for p in pairs))
    assert result.returncode == 0, result.stderr
    paraphrase, swapped, repeat, other, volatile = map(json.loads, result.stdout.splitlines())
    assert (paraphrase["served"], paraphrase["tier"], paraphrase["rule"]) == (True, "semantic", None)
    assert paraphrase["confidence"] >= paraphrase["threshold"]
    assert paraphrase["cosine"] >= paraphrase["min_cosine"]
    # the networks alone would serve it; the roles rule does not
    assert (swapped["served"], swapped["rule"]) == (False, "roles")
    assert swapped["confidence"] >= swapped["threshold"]
    assert swapped["reason"] == "nearest stored question ruled out (roles): its words play other roles"
    assert (repeat["served"], repeat["tier"]) == (True, "exact")  # the same once whitespace is folded
    assert (other["served"], other["rule"]) == (False, None)
    assert other["confidence"] < other["threshold"]
    judged = f"nearest stored question judged another question (confidence {other['confidence']:.3f} < "
    assert other["reason"].startswith(judged)
    # a time-sensitive question's answer is kept (with a short TTL) for an exact repeat only
    assert (volatile["served"], volatile["kept"]) == (False, True)
    assert volatile["reason"] == "time-sensitive question: served only to an exact repeat"
    assert volatile["freshness"] == {"stored": "volatile", "asked": "volatile"}
    assert volatile["confidence"] >= volatile["threshold"]


def test_with_every_language_served_the_unread_rule_keeps_unreadable_questions_apart(model_dir: Path) -> None:
    pairs = [
        # machine / deep learning: the same six unknown tokens around the same character to the model (cosine 1.0)
        {"stored": "什么是机器学习?", "asked": "什么是深度学习?"},
        # Cyrillic, read letter by letter: "convert a string to a number" / "a number to a string" (cosine 0.996)
        {"stored": "Как перевести строку в число в Python?", "asked": "Как перевести число в строку в Python?"},
        {"stored": "¿Cómo aprendo a programar en Python?", "asked": "¿Cómo puedo aprender a programar en Python?"},
    ]
    result = explain(
        model_dir, "--pairs", "-", stdin="\n".join(json.dumps(p) for p in pairs), SEMCACHE_SEMANTIC_ANY_LANGUAGE="true"
    )
    assert result.returncode == 0, result.stderr
    chinese, russian, spanish = map(json.loads, result.stdout.splitlines())
    for ruled_out in (chinese, russian):
        assert (ruled_out["served"], ruled_out["rule"]) == (False, "unread")
        assert ruled_out["cosine"] > 0.99
        assert ruled_out["confidence"] >= ruled_out["threshold"]  # the networks alone would serve it
    assert (spanish["served"], spanish["tier"]) == (True, "semantic")  # opted in: other languages are matched
    by_default = explain(model_dir, "--pairs", "-", stdin=json.dumps(pairs[2]))
    assert json.loads(by_default.stdout)["reason"].startswith("not in English: served only to an exact repeat")


def test_explain_refuses_unclear_input(model_dir: Path, tmp_path: Path) -> None:
    only_one = explain(model_dir, "What is Go?")
    assert only_one.returncode == 2
    assert "give STORED and ASKED" in only_one.stderr
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"stored": "a", "asked": "b"}\n{"stored": "a"}\n')
    result = explain(model_dir, "--pairs", str(bad))
    assert result.returncode == 2
    assert "line 2" in result.stderr
    assert result.stdout == ""  # nothing is judged until the whole file is read
