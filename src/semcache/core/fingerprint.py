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


def normalize_text(text: str) -> str:
    """Fold Unicode compatibility forms and runs of whitespace; case and punctuation are kept (they can matter)."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


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
