from __future__ import annotations

import pytest

from semcache.core.fingerprint import entry_id, normalize_text, scope_fingerprint
from semcache.core.models import Message, Prompt


def prompt(**kw: object) -> Prompt:
    base: dict[str, object] = {"model": "m", "messages": (Message("user", "hello"),)}
    base.update(kw)
    return Prompt(**base)  # type: ignore[arg-type]


def scope(p: Prompt, tenant: str = "t", embedder: str = "e") -> str:
    return scope_fingerprint(p, tenant=tenant, embedder_id=embedder)


def test_normalize_folds_whitespace_and_unicode_but_keeps_case() -> None:
    assert normalize_text("  How   do\tI\n reset\uff1f ") == "How do I reset?"  # fullwidth ? folds
    assert normalize_text("Hello") != normalize_text("hello")


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("What is 10²?", "What is 10²?"),  # an exponent: "What is 102?" is another question
        ("Ca²⁺ and x⁻¹", "Ca²⁺ and x⁻¹"),
        ("\uff11\uff10² \uff4b\uff4d", "10² km"),  # the rest of the text still folds
        ("Why is H₂O polar?", "Why is H2O polar?"),  # subscripts fold: the same formula
        ("the ﬁrst\u00a0ﬁle", "the first file"),
        ("3ʳᵈ place", "3rd place"),
    ],
)
def test_normalize_keeps_superscript_digits_and_signs(text: str, folded: str) -> None:
    assert normalize_text(text) == folded
    assert normalize_text("What is 10²?") != normalize_text("What is 102?")


def test_the_final_user_text_is_not_part_of_the_scope() -> None:
    assert scope(prompt()) == scope(prompt(messages=(Message("user", "something else"),)))


@pytest.mark.parametrize(
    "change",
    [
        {"model": "other"},
        {"instructions": "be terse"},
        {"options": {"temperature": 0.2}},
        {"options": {"max_output_tokens": 10}},
        {"options": {"text": {"format": {"type": "json_object"}}}},
        {"options": {"tools": [{"type": "web_search"}]}},
        {"messages": (Message("user", "earlier"), Message("assistant", "reply"), Message("user", "hello"))},
    ],
)
def test_everything_that_shapes_the_answer_changes_the_scope(change: dict[str, object]) -> None:
    assert scope(prompt(**change)) != scope(prompt())


def test_tenant_and_embedder_change_the_scope() -> None:
    assert scope(prompt(), tenant="a") != scope(prompt(), tenant="b")
    assert scope(prompt(), embedder="e1") != scope(prompt(), embedder="e2")


def test_passthrough_fields_and_unset_options_do_not_change_the_scope() -> None:
    assert scope(prompt(passthrough={"user": "u1", "metadata": {"a": "b"}})) == scope(prompt())
    assert scope(prompt(options={"temperature": None})) == scope(prompt())


def test_option_order_does_not_matter() -> None:
    a = prompt(options={"temperature": 0.1, "top_p": 0.5})
    b = prompt(options={"top_p": 0.5, "temperature": 0.1})
    assert scope(a) == scope(b)


def test_entry_id_depends_on_scope_and_text() -> None:
    assert entry_id("s", "a") == entry_id("s", "a")
    assert len({entry_id("s", "a"), entry_id("s", "b"), entry_id("t", "a")}) == 3
    assert len(entry_id("s", "a")) == 32
