"""Scope fingerprints and entry ids.

The scope is everything except the user's final text that changes the answer: tenant, model, instructions,
earlier turns, answer-shaping options and the embedder's id. Two requests may share an answer only if their
scopes are equal; the entry id adds the normalised text, so an exact repeat is one key lookup.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict

from semcache.core.models import Prompt

SCOPE_VERSION = 1
"""Bumped whenever what goes into a scope changes, so old entries stop matching instead of matching wrongly."""

_SPACE = re.compile(r"\s+")
SUPERSCRIPTS = "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207a\u207b\u207c\u207d\u207e"
"""The superscript digits and signs (⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾): exponents and charges, which NFKC would fold into the plain
characters: "What is 10²?" into "What is 102?", another question with another answer."""
SUPERSCRIPT_RUNS = re.compile(f"([{SUPERSCRIPTS}]+)")
"""Runs of SUPERSCRIPTS (a group, so that split keeps them)."""


def normalize_text(text: str) -> str:
    """Fold Unicode compatibility forms (NFKC: fullwidth letters, ligatures, subscripts: "H₂O" is "H2O") and runs of
    whitespace, but not superscript digits and signs (SUPERSCRIPTS: "10²" is not "102"); case and punctuation are
    kept (they can matter)."""
    if not text.isascii():  # ASCII is its own NFKC; the superscript runs kept are at the odd places of the split
        parts = SUPERSCRIPT_RUNS.split(text)
        text = "".join(part if i % 2 else unicodedata.normalize("NFKC", part) for i, part in enumerate(parts))
    return _SPACE.sub(" ", text).strip()


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def scope_fingerprint(prompt: Prompt, *, tenant: str, embedder_id: str) -> str:
    """A hex digest of everything but the final user text that shapes the answer."""
    payload = {
        "v": SCOPE_VERSION,
        "tenant": tenant,
        "embedder": embedder_id,
        "model": prompt.model,
        "instructions": prompt.instructions,
        "history": [asdict(m) for m in prompt.history],
        "options": {k: v for k, v in prompt.options.items() if v is not None},
    }
    return hashlib.sha256(_canonical(payload)).hexdigest()


def entry_id(scope: str, normalized_text: str) -> str:
    """The id of the entry answering normalized_text within scope (128 bits of sha256)."""
    return hashlib.sha256(f"{scope}\n{normalized_text}".encode()).hexdigest()[:32]
