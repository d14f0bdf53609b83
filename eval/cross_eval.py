"""What the cross-encoder (eval/cross_encoder.py) would buy beside the shipped matcher (measured, not shipped).

    python eval/cross_eval.py [--cross DIR] [--out DIR]        (make eval-cross, after eval/cross_encoder.py)

Reads its probabilities for qqp/dev, qqp/test, the GPTCache pairs and our prompt pairs from --cross (.local/cross)
and combines them with what the service does now (cosine floor, rules, the verifier's 4 networks). Each way of
combining gets its threshold on qqp/dev: the strictest keeping --target-recall there (eval/train_verifier.py ships
the most precise such threshold, which is the same one unless precision dips as the threshold rises), and also the
loosest reaching --target-precision there; each is then measured once on the other sets. "cross runs" is the share
of qqp/test's eligible pairs (past the cosine floor and the rules) for which the cross-encoder would have to run:
its cost on the hit path. Also times one cross-encoder run against embedding the asked text. Writes combined.json
under --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from data import CROSS, ROOT, cross_sets, embed_cached
from features import pair_matrix
from run_eval import rates, readable
from train_verifier import embedder

from semcache.adapters.onnx_embedder import OnnxEmbedder
from semcache.bootstrap import limit_blas_threads
from semcache.core.verifier import DEFAULT_PATH, Verifier, vetoed

BANDS = ((0.2, 0.98), (0.3, 0.95), (0.4, 0.95), (0.5, 0.95), (0.5, 0.9), (0.6, 0.95), (0.7, 0.97))


def scored(e: OnnxEmbedder, verifier: Verifier, a: list[str], b: list[str]) -> dict[str, np.ndarray]:
    """The networks' probability (stored a, asked b) and whether the pair reaches them (cosine floor, rules)."""
    v = embed_cached(a + b, e.embed, e.id, batch=8)
    va, vb = v[: len(a)], v[len(a) :]
    cosine = np.sum(va * vb, axis=1)
    ruled_out = np.array([vetoed(x, y) for x, y in zip(b, a, strict=True)])
    eligible = (cosine >= verifier.min_cosine) & readable(e, a, b) & ~ruled_out
    return {"verifier": verifier.probability(pair_matrix(b, a, vb, va)), "eligible": eligible}


def threshold_for(
    serve: Callable[[float], np.ndarray],
    truth: np.ndarray,
    *,
    recall: float | None = None,
    precision: float | None = None,
) -> float:
    """On a grid of thresholds: the strictest keeping recall, or the loosest (highest recall) reaching precision
    (1.0 when none does)."""
    best, best_recall = (0.0 if recall is not None else 1.0), -1.0
    for t in np.arange(0.05, 0.999, 0.0025):
        r = rates(serve(float(t)), truth)
        if recall is not None and r["recall"] >= recall:
            best = float(t)
        elif precision is not None and r["precision"] >= precision and r["recall"] > best_recall:
            best, best_recall = float(t), r["recall"]
    return round(best, 4)


def cost(e: OnnxEmbedder, pairs: list[tuple[str, str]], model: Path) -> dict[str, float]:
    """Median time of one cross-encoder run on (stored, asked) against embedding the asked text alone, taking turns,
    one thread each (as on the hit path); tokenising included in both."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(ROOT / ".local" / "models" / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=96)

    def cross(a: str, b: str) -> float:
        enc = tokenizer.encode(a, b)
        feed = {
            "input_ids": np.array([enc.ids], dtype=np.int64),
            "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([enc.type_ids], dtype=np.int64),
        }
        return float(session.run(None, feed)[0][0])

    cross_ms, embed_ms = [], []
    for a, b in pairs:
        started = time.perf_counter()
        cross(a, b)
        cross_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        e.embed([b])
        embed_ms.append((time.perf_counter() - started) * 1000)
    return {
        "pairs": len(pairs),
        "cross_p50_ms": round(statistics.median(cross_ms), 2),
        "embed_p50_ms": round(statistics.median(embed_ms), 2),
        "ratio": round(statistics.median(cross_ms) / statistics.median(embed_ms), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-recall", type=float, default=0.60)
    parser.add_argument("--target-precision", type=float, default=0.92, help="also: the loosest threshold reaching it")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "quality" / "cross")
    parser.add_argument("--cross", type=Path, default=CROSS, help="eval/cross_encoder.py's --dir")
    args = parser.parse_args()
    limit_blas_threads()
    e = embedder()
    verifier = Verifier.load(DEFAULT_PATH)
    sets = cross_sets()
    data = {}
    for name, pairs in sets.items():
        data[name] = scored(e, verifier, pairs.a, pairs.b)
        data[name]["cross"] = np.load(args.cross / f"{name}.npy")
        data[name]["truth"] = pairs.duplicate if name != "gptcache" else np.ones(len(pairs.a), dtype=bool)

    def shipped(d: dict[str, np.ndarray], t: float) -> np.ndarray:
        return d["eligible"] & (d["verifier"] >= t)

    def cross_alone(d: dict[str, np.ndarray], t: float) -> np.ndarray:
        return d["eligible"] & (d["cross"] >= t)

    def mean(d: dict[str, np.ndarray], t: float) -> np.ndarray:
        return d["eligible"] & ((d["verifier"] + d["cross"]) / 2 >= t)

    def cascade(lo: float, hi: float) -> Callable[[dict[str, np.ndarray], float], np.ndarray]:
        """The networks decide where they are sure (below lo: no, from hi: yes); the cross-encoder in between."""

        def serve(d: dict[str, np.ndarray], t: float) -> np.ndarray:
            p = d["verifier"]
            return d["eligible"] & ((p >= hi) | ((p >= lo) & (p < hi) & (d["cross"] >= t)))

        return serve

    # each way: how it serves, and the band of the networks' probability in which the cross-encoder runs
    ways: dict[str, tuple[Callable[[dict[str, np.ndarray], float], np.ndarray], tuple[float, float] | None]] = {
        "shipped (4 networks)": (shipped, None),
        "cross-encoder alone": (cross_alone, (0.0, 1.01)),
        "mean of both": (mean, (0.0, 1.01)),
    }
    for lo, hi in BANDS:
        ways[f"cascade: networks < {lo} no, >= {hi} yes, cross between"] = (cascade(lo, hi), (lo, hi))

    report = {}
    print(
        f"{'way':58} {'thr':>6} | {'dev P':>6} {'dev R':>6} | {'test P':>6} {'test R':>6} | {'GPTC R':>6} | cross runs"
        f" | prompts P / R | qqp/test P / R at the threshold for precision {args.target_precision} on qqp/dev"
    )
    for label, (serve, band) in ways.items():
        dev = data["qqp-dev"]
        t = threshold_for(lambda t, dev=dev, serve=serve: serve(dev, t), dev["truth"], recall=args.target_recall)
        row = {"threshold": t}
        for name, d in data.items():
            row[name] = rates(serve(d, t), d["truth"])
        d = data["qqp-test"]
        runs = np.zeros_like(d["eligible"]) if band is None else (d["verifier"] >= band[0]) & (d["verifier"] < band[1])
        row["cross_runs"] = round(float((d["eligible"] & runs).sum() / max(1, d["eligible"].sum())), 3)
        strict = threshold_for(
            lambda t, dev=dev, serve=serve: serve(dev, t), dev["truth"], precision=args.target_precision
        )
        row["at_target_precision"] = {
            "threshold": strict,
            **{name: rates(serve(data[name], strict), data[name]["truth"]) for name in ("qqp-dev", "qqp-test")},
        }
        report[label] = row
        print(
            f"{label:58} {t:6.3f} | {row['qqp-dev']['precision']:6.3f} {row['qqp-dev']['recall']:6.3f} | "
            f"{row['qqp-test']['precision']:6.3f} {row['qqp-test']['recall']:6.3f} | "
            f"{row['gptcache']['recall']:6.3f} | {row['cross_runs']:10.3f} | "
            f"{row['prompts']['precision']:.3f} / {row['prompts']['recall']:.3f} | "
            f"{row['at_target_precision']['qqp-test']['precision']:.3f} / "
            f"{row['at_target_precision']['qqp-test']['recall']:.3f}"
        )
    dev_pairs = sets["qqp-dev"]
    timed = cost(e, list(zip(dev_pairs.a, dev_pairs.b, strict=True))[:300], args.cross / "model.onnx")
    print(
        f"one cross-encoder run {timed['cross_p50_ms']} ms against {timed['embed_p50_ms']} ms to embed the asked "
        f"text (medians, {timed['pairs']} qqp/dev pairs, taking turns): {timed['ratio']}x"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "combined.json").write_text(json.dumps({"ways": report, "cost": timed}, indent=1) + "\n")


if __name__ == "__main__":
    main()
