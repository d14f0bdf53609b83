"""Pair features for many pairs at once (the same ones the service computes one pair at a time)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from semcache.core.fingerprint import normalize_text
from semcache.core.verifier import lexical_features


def pair_matrix(
    queries: Sequence[str],
    candidates: Sequence[str],
    q: npt.NDArray[np.float32],
    c: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """Rows of [cosine, q*c, |q-c|, lexical(query, candidate)], as semcache.core.verifier.pair_features."""
    cosine = np.sum(q * c, axis=1, keepdims=True)
    lexical = np.stack(
        [lexical_features(normalize_text(a), normalize_text(b)) for a, b in zip(queries, candidates, strict=True)]
    )
    return np.hstack([cosine, q * c, np.abs(q - c), lexical]).astype(np.float32)
