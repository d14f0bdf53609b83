"""Train the verifier on qqp/train, choose its threshold on qqp/dev, write src/semcache/core/verifier.npz.

All of qqp/train is used; with an adapted embedder (make finetune), the 48,000 pairs the adapter was trained on
included: on all 60,000 the adapted verifier reaches precision 0.872 at recall 0.604 on qqp/dev (make
eval-adapter); trained on the other 12,000 only it did worse (a one-off experiment, not kept as a command). The
adapted embeddings are overconfident on the adapter's own pairs, but the threshold is chosen on qqp/dev,
which neither model saw, so the shipped operating point stays honest.

    python eval/train_verifier.py [--target-recall 0.60 | --target-precision 0.92] [--min-cosine 0.50]
                                  [--members 4] [--implied 2] [--distill 0] [--extra feedback.json ...]

--implied N adds duplicates that qqp/train's labels imply without listing them (a ~ b and b ~ c, so a ~ c; up to N
per question of each cluster: eval/data.py's implied_duplicates), 11,852 pairs at 2. Measured, not shipped
(session 11, `make eval-implied`, docs/quality.md): on Quora it helps at high precision (qqp/dev recall at
precision 0.92 0.47-0.48 instead of 0.37-0.42, three sets of seeds, hand check), but the verifier learns Quora's
notion of a duplicate more narrowly and serves far fewer of GPTCache's and MeanCache's paraphrases. Implied
non-duplicates (a ~ b, b !~ c, so a !~ c) did nothing for either Quora figure (hand check).

The verifier is an ensemble: --members networks, identical but for their seed (which sets their initial weights
and the tenth of the training pairs each holds out to stop early), whose probabilities are averaged. One network
lands somewhere between precision 0.84 and 0.86 at recall 0.60 on qqp/dev depending on its seed; the mean of 4 is
at about 0.88, as is the mean of 8 or 20 (more networks cost more on the hit path; docs/quality.md). --members 1
reproduces the single network shipped until session 6 (qqp-mlp-1: the same weights and figures).

With --distill N, one network of N hidden units then learns to predict the ensemble's log-odds on the same
training pairs, and that network is shipped instead: nearly the ensemble's qqp/dev figures, worse elsewhere
(`make eval-distilled`; docs/quality.md). Not the default.

--extra adds pairs labelled by verdicts (what `GET /v1/cache/feedback` returns, or JSON lines of {"a", "b",
"duplicate"}) to the training data; the threshold is still chosen on qqp/dev. Name the result with
SEMCACHE_VERIFIER_VERSION (a new version starts the tenants' calibration afresh, as it should).

Deterministic (fixed seeds). Never looks at qqp/test: that split is for the figures we report (make eval).
The pair (a, b) of a Quora row is read as "a is cached, b is asked" (training on both orders did worse on dev).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from data import ROOT, embed_cached, implied_duplicates, labelled_pairs, qqp
from features import pair_matrix
from sklearn.neural_network import MLPClassifier, MLPRegressor

from semcache.adapters.onnx_embedder import OnnxEmbedder
from semcache.core.verifier import DEFAULT_PATH, Verifier, vetoed

VERSION = os.environ.get("SEMCACHE_VERIFIER_VERSION", "qqp-ens4-1")


MODELS = Path(os.environ.get("SEMCACHE_EVAL_MODELS", ROOT / ".local" / "models"))  # make finetune: another
TRAINING: dict[str, Any] = {
    "alpha": 1e-3,
    "learning_rate_init": 1e-3,
    "max_iter": 200,
    "early_stopping": True,
    "n_iter_no_change": 8,
}
"""How every network here is trained (the ensemble's and the distilled one): Adam, L2 1e-3, stopping early on a
tenth of the pairs held out by the network's seed."""
TRAIN_CUT = 48_000  # eval/finetune.py trains the adapter on the first 48,000 qqp/train pairs


def embedder() -> OnnxEmbedder:
    """The embedder the service ships (model.onnx as local/artifacts.py built it), or SEMCACHE_EVAL_MODELS's."""
    return OnnxEmbedder(MODELS / "model.onnx", MODELS / "tokenizer.json", name="eval", threads=2)


def split_vectors(e: OnnxEmbedder, split: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    pairs = qqp(split)
    # qqp/train is embedded (and cached) in two parts: the pairs the embedder's adapter was trained on, the rest.
    cuts = [(0, TRAIN_CUT), (TRAIN_CUT, len(pairs.a))] if split == "train" else [(0, len(pairs.a))]
    va, vb = [], []
    for start, stop in cuts:
        a, b = pairs.a[start:stop], pairs.b[start:stop]
        v = embed_cached(a + b, e.embed, e.id, batch=8)
        va.append(v[: len(a)])
        vb.append(v[len(a) :])
    return pairs.a, pairs.b, np.vstack(va), np.vstack(vb), pairs.duplicate


def precision_recall(served: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = float(np.sum(served & truth))
    return (tp / max(1.0, float(served.sum())), tp / max(1.0, float(truth.sum())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target-recall", type=float, default=0.60, help="ship the strictest threshold keeping this recall on qqp/dev"
    )
    parser.add_argument("--target-precision", type=float, help="instead: the loosest threshold reaching this precision")
    parser.add_argument("--min-cosine", type=float, default=0.50)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--members", type=int, default=4, help="networks averaged (seeds 0 .. members-1)")
    parser.add_argument("--distill", type=int, default=0, help="hidden units of a network that learns the ensemble")
    parser.add_argument("--implied", type=int, default=0, help="implied duplicates added per question of a cluster")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--extra", type=Path, action="append", default=[], help="pairs labelled by verdicts")
    args = parser.parse_args()
    e = embedder()
    started = time.perf_counter()

    a, b, va, vb, y = split_vectors(e, "train")
    implied = implied_duplicates(qqp("train"), args.implied) if args.implied else None
    if implied is not None:
        vector = dict(zip(a + b, np.vstack([va, vb]), strict=True))  # every implied pair's texts are train texts
        a, b = a + implied.a, b + implied.b
        va = np.vstack([va, np.stack([vector[t] for t in implied.a])])
        vb = np.vstack([vb, np.stack([vector[t] for t in implied.b])])
        y = np.concatenate([y, implied.duplicate])
        print(f"{len(implied.a)} implied duplicates added (--implied {args.implied})")
    for path in args.extra:
        extra = labelled_pairs(path)
        v = embed_cached(extra.a + extra.b, e.embed, e.id, batch=8)
        a, b = a + extra.a, b + extra.b
        va, vb = np.vstack([va, v[: len(extra.a)]]), np.vstack([vb, v[len(extra.a) :]])
        y = np.concatenate([y, extra.duplicate])
        print(f"{path}: {len(extra.a)} labelled pairs added ({int(extra.duplicate.sum())} duplicates)")
    keep = np.sum(va * vb, axis=1) >= args.min_cosine  # train where the verifier will be asked
    rows = np.flatnonzero(keep)
    x = pair_matrix([b[i] for i in rows], [a[i] for i in rows], vb[keep], va[keep])
    t = y[keep]
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    standardized = (x - mean) / scale  # what every network here is fitted on
    members = []
    for seed in range(args.members):
        model = MLPClassifier(hidden_layer_sizes=(args.hidden,), random_state=seed, **TRAINING)
        model.fit(standardized, t)
        members.append(model)
        print(f"network {seed + 1} of {args.members}: {model.n_iter_} epochs", flush=True)
    elapsed = time.perf_counter() - started
    print(f"trained on {len(t)} train pairs with cosine >= {args.min_cosine:.2f} in {elapsed:.0f} s")

    verifier = Verifier(
        version=VERSION,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        w1=np.hstack([m.coefs_[0] for m in members]).astype(np.float32),
        b1=np.concatenate([m.intercepts_[0] for m in members]).astype(np.float32),
        w2=np.vstack([m.coefs_[1].reshape(1, -1) for m in members]).astype(np.float32),
        b2=np.array([m.intercepts_[1][0] for m in members], dtype=np.float32),
        threshold=0.5,
        min_cosine=args.min_cosine,
    )
    if args.distill:
        p = np.clip(verifier.probability(x).astype(np.float64), 1e-4, 1 - 1e-4)
        student = MLPRegressor(hidden_layer_sizes=(args.distill,), random_state=0, **TRAINING)
        student.fit(standardized, np.log(p / (1 - p)))  # its output is a log-odds: the Verifier's sigmoid fits
        print(f"distilled into one network of {args.distill} in {student.n_iter_} epochs", flush=True)
        verifier = Verifier(
            version=VERSION,
            mean=verifier.mean,
            scale=verifier.scale,
            w1=student.coefs_[0].astype(np.float32),
            b1=student.intercepts_[0].astype(np.float32),
            w2=student.coefs_[1].reshape(-1).astype(np.float32),
            b2=float(student.intercepts_[1][0]),
            threshold=0.5,
            min_cosine=args.min_cosine,
        )

    da, db, dva, dvb, dy = split_vectors(e, "dev")
    cosine = np.sum(dva * dvb, axis=1)
    p = verifier.probability(pair_matrix(db, da, dvb, dva))
    p[[vetoed(q, c) for q, c in zip(db, da, strict=True)]] = 0.0  # the rules Verifier.score applies
    eligible = cosine >= args.min_cosine
    best = None
    for threshold in np.arange(0.30, 0.995, 0.005):
        served = eligible & (p >= threshold)
        precision, recall = precision_recall(served, dy)
        if args.target_precision is not None:
            if precision >= args.target_precision and (best is None or recall > best[2]):
                best = (float(threshold), precision, recall)
        elif recall >= args.target_recall and (best is None or precision > best[1]):
            best = (float(threshold), precision, recall)
    if best is None:
        raise SystemExit("no threshold reaches the target on qqp/dev")
    threshold, precision, recall = best
    shipped = dataclasses.replace(verifier, threshold=round(threshold, 3))  # (fields worked out at init: not copied)
    shipped.save(args.out)
    report = {
        "version": VERSION,
        "threshold": round(threshold, 3),
        "min_cosine": args.min_cosine,
        "dev_precision": round(precision, 4),
        "dev_recall": round(recall, 4),
        "members": args.members,
        "implied": args.implied,
        "distilled_hidden": args.distill,
        "bytes": args.out.stat().st_size,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
