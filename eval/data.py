"""Readers for the shared evaluation data (../shared/data, never copied into the project) and an embedding cache."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SEMCACHE_EVAL_DATA", ROOT.parent / "shared" / "data"))
CACHE = ROOT / ".local" / "eval"
CROSS = ROOT / ".local" / "cross"
"""eval/cross_encoder.py's checkpoint, ONNX model and scores (its --dir; eval/cross_eval.py's --cross)."""


@dataclass(frozen=True, slots=True)
class Pairs:
    """Labelled question pairs: would a's answer serve b?"""

    name: str
    a: list[str]
    b: list[str]
    duplicate: npt.NDArray[np.bool_]


def qqp(split: str, limit: int | None = None) -> Pairs:
    """Quora question pairs: train (60,000), dev (10,000) or test (10,854)."""
    a, b, dup = [], [], []
    with gzip.open(DATA / "qqp" / f"{split}.jsonl.gz", "rt") as fh:
        for line in fh:
            row = json.loads(line)
            a.append(row["a"])
            b.append(row["b"])
            dup.append(bool(row["duplicate"]))
            if limit is not None and len(a) >= limit:
                break
    return Pairs(f"qqp/{split}", a, b, np.array(dup))


def implied_duplicates(pairs: Pairs, per_question: int, seed: int = 0) -> Pairs:
    """Duplicate pairs that pairs' labels imply but do not list: Quora labels pairs, and its duplicates form
    clusters (a ~ b and b ~ c, so a ~ c). For each cluster of n >= 3 questions, up to per_question * n of its
    unlisted pairs, drawn at random (seeded), each in a random order; listed pairs (either way) are never repeated.
    The cap keeps the few large clusters (up to 93 questions in qqp/train) from outweighing the rest."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, duplicate in zip(pairs.a, pairs.b, pairs.duplicate, strict=True):
        if duplicate:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[ra] = rb
    clusters: dict[str, list[str]] = {}
    for text in parent:
        clusters.setdefault(root(text), []).append(text)
    listed = {frozenset(p) for p in zip(pairs.a, pairs.b, strict=True)}
    rng = random.Random(seed)
    out_a, out_b = [], []
    for members in sorted((sorted(c) for c in clusters.values() if len(c) >= 3), key=lambda c: c[0]):
        unlisted = [(x, y) for x, y in itertools.combinations(members, 2) if frozenset((x, y)) not in listed]
        rng.shuffle(unlisted)
        for x, y in unlisted[: per_question * len(members)]:
            x, y = (y, x) if rng.random() < 0.5 else (x, y)
            out_a.append(x)
            out_b.append(y)
    return Pairs(f"{pairs.name}+implied", out_a, out_b, np.ones(len(out_a), dtype=bool))


def labelled_pairs(path: Path) -> Pairs:
    """Pairs labelled by verdicts: what `GET /v1/cache/feedback` returns ({"examples": [...]}), or JSON lines of
    {"a": stored, "b": asked, "duplicate": bool}. Read as "a is cached, b is asked", as the Quora rows are."""
    text = path.read_text()
    try:
        rows = json.loads(text)["examples"]
    except (ValueError, KeyError, TypeError):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    try:
        a, b, dup = [str(r["a"]) for r in rows], [str(r["b"]) for r in rows], [bool(r["duplicate"]) for r in rows]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: every example needs a, b and duplicate ({exc!r})") from None
    return Pairs(f"labelled:{path.name}", a, b, np.array(dup, dtype=bool))


def gptcache_paraphrases() -> Pairs:
    """GPTCache's 999 paraphrase pairs, all positives."""
    rows = json.loads((DATA / "gptcache" / "mock_data.json").read_text())
    return Pairs("gptcache", [r["origin"] for r in rows], [r["similar"] for r in rows], np.ones(len(rows), bool))


def cross_sets() -> dict[str, Pairs]:
    """The labelled sets the cross-encoder is scored on and compared with the shipped matcher, by the names of its
    score files."""
    return {
        "qqp-dev": qqp("dev"),
        "qqp-test": qqp("test"),
        "gptcache": gptcache_paraphrases(),
        "prompts": labelled_pairs(Path(__file__).with_name("prompt_pairs.json")),
    }


def meancache_conversations() -> list[dict[str, str]]:
    """MeanCache's 124 two-turn conversations (u0, u0_duplicate, system_q0, u1, u1_duplicate, system_q1)."""
    return list(json.loads((DATA / "meancache" / "new_claude.json").read_text()))


def embed_cached(
    texts: Sequence[str], embed: Callable[[Sequence[str]], npt.NDArray[np.float32]], tag: str, batch: int = 64
) -> npt.NDArray[np.float32]:
    """Embeddings of texts, computed once per (embedder tag, text list) and kept under .local/eval."""
    key = hashlib.sha256(("\n".join(texts) + "\0" + tag).encode()).hexdigest()[:20]
    path = CACHE / f"emb-{key}.npy"
    if path.exists():
        return np.load(path)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths: little padding
    out = np.zeros((len(texts), 0), dtype=np.float32)
    from tqdm import tqdm

    chunks = []
    for start in tqdm(range(0, len(order), batch), desc=f"embedding {len(texts)} texts", unit="batch", leave=False):
        idx = order[start : start + batch]
        chunks.append((idx, embed([texts[i] for i in idx])))
    out = np.zeros((len(texts), chunks[0][1].shape[1]), dtype=np.float32) if chunks else out
    for idx, vectors in chunks:
        out[idx] = vectors
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out
