"""Compare verifier model families on qqp/dev: the recall each keeps at precision 0.90 / 0.92 / 0.94.

    python eval/compare_models.py        (several minutes; the figures quoted in docs/quality.md)

Cosine alone, gradient-boosted trees (two cosine floors) and two network sizes, all over the same pair features.
"""

from __future__ import annotations

import time

import numpy as np
from features import pair_matrix
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.neural_network import MLPClassifier
from train_verifier import embedder, split_vectors


def recall_at_precision(
    p: np.ndarray, eligible: np.ndarray, truth: np.ndarray, targets: tuple[float, ...] = (0.90, 0.92, 0.94)
) -> dict[float, float]:
    out = {}
    for target in targets:
        best = 0.0
        for threshold in np.arange(0.05, 1.0, 0.005):
            served = eligible & (p >= threshold)
            if not served.any():
                continue
            precision = (served & truth).sum() / served.sum()
            recall = (served & truth).sum() / truth.sum()
            if precision >= target:
                best = max(best, float(recall))
        out[target] = round(best, 3)
    return out


def main() -> None:
    e = embedder()
    a, b, va, vb, y = split_vectors(e, "train")
    da, db, dva, dvb, dy = split_vectors(e, "dev")
    cos, dcos = np.sum(va * vb, axis=1), np.sum(dva * dvb, axis=1)
    print("cosine alone", recall_at_precision(dcos, np.ones_like(dy), dy))
    x, dx = pair_matrix(b, a, vb, va), pair_matrix(db, da, dvb, dva)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    for floor in (0.5, 0.6):
        keep = cos >= floor
        started = time.time()
        trees = HistGradientBoostingClassifier(max_iter=400, learning_rate=0.08, max_leaf_nodes=63, random_state=0)
        trees.fit(x[keep], y[keep])
        p = trees.predict_proba(dx)[:, 1]
        print(f"trees, floor {floor}", recall_at_precision(p, dcos >= floor, dy), f"{time.time() - started:.0f} s")
    for hidden in ((128,), (256, 64)):
        keep = cos >= 0.5
        net = MLPClassifier(
            hidden_layer_sizes=hidden, alpha=1e-3, max_iter=200, early_stopping=True, n_iter_no_change=8, random_state=0
        )
        net.fit((x[keep] - mu) / sd, y[keep])
        p = net.predict_proba((dx - mu) / sd)[:, 1]
        print(f"network {hidden}", recall_at_precision(p, dcos >= 0.5, dy))


if __name__ == "__main__":
    main()
