"""A second opinion on a semantic match: is the stored question really the same question as the new one?

Cosine similarity alone cannot tell "How do I reset my Gmail password?" from "How do I reset my Yahoo password?"
(0.68) any better than from a true paraphrase it scores lower. The verifier is a small neural network, trained on
Quora question pairs (`make train-verifier`), over the two embeddings (their product and absolute difference,
the usual sentence-pair features) and lexical signals that embeddings blur: words present on one side only,
numbers, negation, capitalised names, the question word. It returns a probability that the two questions are
duplicates; the service serves a candidate only if that probability reaches the operating threshold chosen on
held-out data. Inference is a few small matrix products in numpy: well under a millisecond.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CAPITALISED = re.compile(r"\b[A-Z][a-zA-Z0-9]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NEGATIONS = frozenset({"not", "no", "never", "without", "nothing", "none", "cannot", "nor", "neither"})
_STOP = frozenset(
    """a an the and or but if of to in on at by for with from as into about over after before between through
    during is are was were be been being am do does did done doing have has had having i me my we our you your
    he him his she her it its they them their this that these those there here what which who whom whose why how
    when where can could should would will shall may might must so than too very just also any some such own same
    other more most much many each every all both few s t get got""".split()
)
_QUESTION_WORDS = ("what", "why", "how", "when", "where", "who", "which", "is", "are", "can", "do", "does", "should")

LEXICAL_FEATURES = 14


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _negated(tokens: list[str]) -> bool:
    return any(t in _NEGATIONS or t.endswith("n't") for t in tokens)


def _question_word(tokens: list[str]) -> str | None:
    return next((t for t in tokens[:3] if t in _QUESTION_WORDS), None)


def lexical_features(query: str, candidate: str) -> npt.NDArray[np.float32]:
    """Signals embeddings blur, for one pair of texts."""
    tq, tc = _tokens(query), _tokens(candidate)
    sq, sc = set(tq), set(tc)
    cq, cc = sq - _STOP, sc - _STOP
    nq, nc = set(_NUMBER.findall(query)), set(_NUMBER.findall(candidate))
    eq = {w.lower() for w in _CAPITALISED.findall(query[1:])}
    ec = {w.lower() for w in _CAPITALISED.findall(candidate[1:])}
    union, content_union = sq | sc, cq | cc
    return np.array(
        [
            len(sq & sc) / len(union) if union else 1.0,
            len(cq & cc) / len(content_union) if content_union else 1.0,
            len(cq - cc) / max(1, len(cq)),
            len(cc - cq) / max(1, len(cc)),
            min(len(cq - cc), 8) / 8,
            min(len(cc - cq), 8) / 8,
            float(nq != nc),
            float(bool(nq) or bool(nc)),
            float(_negated(tq) != _negated(tc)),
            float(_question_word(tq) == _question_word(tc)),
            min(len(eq ^ ec), 5) / 5,
            min(len(tq), len(tc)) / max(1, len(tq), len(tc)),
            min(abs(len(tq) - len(tc)), 20) / 20,
            float(tq[-1:] == tc[-1:]),
        ],
        dtype=np.float32,
    )


def numbers_differ(query: str, candidate: str) -> bool:
    """True if the two texts do not name the same numbers ("top 5" and "top 10" are different questions)."""
    return set(_NUMBER.findall(query)) != set(_NUMBER.findall(candidate))


def pair_features(
    query: str, candidate: str, u: npt.NDArray[np.float32], v: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """The verifier's input for one pair: cosine, u*v, |u-v| and the lexical features."""
    return np.concatenate([[np.float32(u @ v)], u * v, np.abs(u - v), lexical_features(query, candidate)]).astype(
        np.float32
    )


@dataclass(frozen=True)
class Verifier:
    """A one-hidden-layer network over pair features, with the threshold it ships with."""

    version: str
    mean: npt.NDArray[np.float32]
    scale: npt.NDArray[np.float32]
    w1: npt.NDArray[np.float32]
    b1: npt.NDArray[np.float32]
    w2: npt.NDArray[np.float32]
    b2: float
    threshold: float
    min_cosine: float
    """Candidates below this cosine are not even scored (the training data had almost no duplicates there)."""

    def probability(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """P(duplicate) for rows of pair features."""
        x = (np.atleast_2d(features) - self.mean) / self.scale
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        logits = hidden @ self.w2 + self.b2
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -40.0, 40.0))), dtype=np.float32).reshape(-1)

    def score(self, query: str, candidate: str, u: npt.NDArray[np.float32], v: npt.NDArray[np.float32]) -> float:
        """P(duplicate) for one pair; 0 when the two name different numbers (the answer depends on them)."""
        return self.score_many(query, [candidate], u, [v])[0]

    def score_many(
        self,
        query: str,
        candidates: list[str],
        u: npt.NDArray[np.float32],
        vs: list[npt.NDArray[np.float32]],
    ) -> list[float]:
        """score() for several candidates of one query, in one pass through the network."""
        if not candidates:
            return []
        features = np.stack([pair_features(query, c, u, v) for c, v in zip(candidates, vs, strict=True)])
        p = self.probability(features)
        return [0.0 if numbers_differ(query, c) else float(x) for c, x in zip(candidates, p, strict=True)]

    def save(self, path: Path) -> None:
        """Write the weights and settings as one small .npz."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            version=np.array(self.version),
            mean=self.mean,
            scale=self.scale,
            w1=self.w1.astype(np.float16),
            b1=self.b1,
            w2=self.w2,
            b2=np.array(self.b2),
            threshold=np.array(self.threshold),
            min_cosine=np.array(self.min_cosine),
        )
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Verifier:
        """Read weights written by save()."""
        with np.load(path) as z:
            return cls(
                version=str(z["version"]),
                mean=z["mean"].astype(np.float32),
                scale=z["scale"].astype(np.float32),
                w1=z["w1"].astype(np.float32),
                b1=z["b1"].astype(np.float32),
                w2=z["w2"].astype(np.float32).reshape(-1),
                b2=float(z["b2"]),
                threshold=float(z["threshold"]),
                min_cosine=float(z["min_cosine"]),
            )


DEFAULT_PATH = Path(__file__).with_name("verifier.npz")
