"""Pair features for many pairs at once (the same ones the service computes one pair at a time)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from semcache.core.fingerprint import normalize_text
from semcache.core.verifier import feature_matrix, lexical_features


def pair_matrix(
    queries: Sequence[str],
    candidates: Sequence[str],
    q: npt.NDArray[np.float32],
    c: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """The verifier's rows (semcache.core.verifier.feature_matrix) for pairs of texts and their vectors."""
    lexical = np.stack(
        [lexical_features(normalize_text(a), normalize_text(b)) for a, b in zip(queries, candidates, strict=True)]
    )
    return feature_matrix(q, c, lexical)
