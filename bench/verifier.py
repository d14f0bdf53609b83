"""The verifier's share of a semantic hit, step by step, right after the model run that embedded the question (which
leaves the CPU's caches cold), as the Lambda handler's path meets it.

    python bench/verifier.py [--pairs 200]

For each of --pairs GPTCache paraphrases (the asked text) and their statements (the stored one, its profile kept as
the service keeps stored questions'), the question is embedded and then each step is timed: the asked text's
profile (as worked out after the embedding, and, in the same iteration, before another one as the service now does
it), the lexical features, the networks' first layer and their output layer, and for comparison the output layer
written as the per-member product (`np.einsum`) it replaced in session 12. Medians in microseconds on stdout and
as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from _common import DATA, save_result, shipped_embedder

from semcache.bootstrap import limit_blas_threads
from semcache.core.verifier import DEFAULT_PATH, Verifier, _lexical, _profile, feature_matrix, profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    limit_blas_threads()  # as the service does
    embedder, verifier = shipped_embedder(), Verifier.load(DEFAULT_PATH)
    rows = json.loads((DATA / "gptcache" / "mock_data.json").read_text())[: args.pairs]
    vectors = {t: embedder.embed([t])[0] for r in rows for t in (r["origin"], r["similar"])}
    members, hidden = verifier.w2.shape
    steps: dict[str, list[float]] = {
        k: [] for k in ("profile_after_embedding", "profile_before_embedding", "lexical", "first_layer",
                        "output_layer", "output_layer_einsum")
    }  # fmt: skip
    for r in rows:
        asked, stored = r["similar"], r["origin"]
        profile(stored)  # the service keeps stored questions' profiles
        u, v = vectors[asked], vectors[stored]

        started = time.perf_counter()
        _profile(asked + " ")  # another text than any kept: worked out afresh, warm
        steps["profile_before_embedding"].append(time.perf_counter() - started)

        embedder.embed([asked])
        t = [time.perf_counter()]
        q = _profile(asked)
        t.append(time.perf_counter())
        lexical = _lexical(q, profile(stored))[None, :]
        t.append(time.perf_counter())
        x = feature_matrix(u, v[None, :], lexical)
        t.append(time.perf_counter())  # (building the feature row is not one of the steps)
        first = np.maximum(x @ verifier._w1 + verifier._b1, 0.0)
        t.append(time.perf_counter())
        out = first @ verifier._out + verifier.b2
        t.append(time.perf_counter())
        steps["profile_after_embedding"].append(t[1] - t[0])
        steps["lexical"].append(t[2] - t[1])
        steps["first_layer"].append(t[4] - t[3])
        steps["output_layer"].append(t[5] - t[4])

        embedder.embed([asked])  # cold again, for the reference output layer
        started = time.perf_counter()
        reference = np.einsum("rmh,mh->rm", first.reshape(1, members, hidden), verifier.w2) + verifier.b2
        steps["output_layer_einsum"].append(time.perf_counter() - started)
        assert np.allclose(out, reference, atol=1e-4)

    medians = {k: round(statistics.median(v) * 1e6, 1) for k, v in steps.items()}
    print("  ".join(f"{k} {m} us" for k, m in medians.items()))
    save_result("verifier", {"benchmark": "verifier", "pairs": len(rows), "median_us": medians})


if __name__ == "__main__":
    main()
