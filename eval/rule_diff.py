"""What a change to the verifier's rules does on the labelled pairs: which pairs it newly rules out, which it no
longer does, and how many of each are labelled duplicates (a rule that rules out duplicates costs recall).

    python eval/rule_diff.py --save BEFORE.json                (with the rules as they were)
    python eval/rule_diff.py BEFORE.json [--show N] [--networks] (with the rules as they are now)

The rules run as the service runs them: veto(asked, stored) on the normalised texts. Sets: qqp/train, qqp/dev,
qqp/test, GPTCache's 999 paraphrases and eval/prompt_pairs.json. Seconds, not minutes: no embedding, no network.
--networks also says, of the pairs that changed, how many the shipped networks would serve (cosine floor and
threshold) were no rule in the way, and how many of those are labelled duplicates: what a rule let through costs
or gains. It embeds the changed pairs (a minute for a few thousand texts; cached under .local/eval).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from data import ROOT, Pairs, embed_cached, gptcache_paraphrases, labelled_pairs, qqp
from features import pair_matrix

from semcache.core.fingerprint import normalize_text
from semcache.core.verifier import DEFAULT_PATH, Verifier, veto


def label_sets() -> list[Pairs]:
    prompts = labelled_pairs(ROOT / "eval" / "prompt_pairs.json")
    return [qqp("train"), qqp("dev"), qqp("test"), gptcache_paraphrases(), prompts]


def rule_outcomes(sets: list[Pairs]) -> dict[str, list[str | None]]:
    """For each set, the rule that rules each pair out (None: none does)."""
    return {p.name: [veto(normalize_text(b), normalize_text(a)) for a, b in zip(p.a, p.b, strict=True)] for p in sets}


def networks_serve(pairs: Pairs, which: list[int]) -> list[int]:
    """Of the pairs at these indices, those the shipped networks would serve (no rule applied)."""
    if not which:
        return []
    from train_verifier import embedder  # the shipped embedder, as make eval loads it

    e = embedder()
    verifier = Verifier.load(DEFAULT_PATH)
    a = [normalize_text(pairs.a[i]) for i in which]
    b = [normalize_text(pairs.b[i]) for i in which]
    vectors = embed_cached(a + b, e.embed, e.id, batch=8)
    va, vb = vectors[: len(a)], vectors[len(a) :]
    cosine = np.einsum("ij,ij->i", va, vb)
    p = verifier.probability(pair_matrix(b, a, vb, va))  # the networks, in one batch
    return [i for k, i in enumerate(which) if cosine[k] >= verifier.min_cosine and p[k] >= verifier.threshold]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the outcomes saved with --save before the change")
    parser.add_argument("--save", action="store_true", help="write the current outcomes to BEFORE and stop")
    parser.add_argument("--show", type=int, default=10, help="pairs to print per set and direction")
    parser.add_argument("--networks", action="store_true", help="what the networks would make of the changed pairs")
    args = parser.parse_args()
    sets = label_sets()
    now = rule_outcomes(sets)
    if args.save:
        args.before.write_text(json.dumps(now))
        print(f"written {args.before}")
        return
    before = json.loads(args.before.read_text())
    for p in sets:
        was, is_ = before[p.name], now[p.name]
        if len(was) != len(is_):
            print(f"{p.name}: {len(was)} pairs saved, {len(is_)} now: not compared (the set has changed)")
            continue
        added = [i for i in range(len(is_)) if was[i] is None and is_[i] is not None]
        removed = [i for i in range(len(is_)) if was[i] is not None and is_[i] is None]
        moved = sum(1 for i in range(len(is_)) if None not in (was[i], is_[i]) and was[i] != is_[i])
        dup = p.duplicate
        print(
            f"{p.name}: newly ruled out {len(added)} ({int(dup[added].sum())} labelled duplicates), no longer "
            f"{len(removed)} ({int(dup[removed].sum())} labelled duplicates), by another rule {moved}"
        )
        if args.networks:
            for what, which in (("newly ruled out", added), ("no longer ruled out", removed)):
                served = networks_serve(p, which)
                right = int(dup[served].sum())
                print(f"   {what}: the networks would serve {len(served)} ({right} labelled duplicates)")
        for i in added[: args.show] + removed[: args.show]:
            print(f"   {'DUP' if dup[i] else '   '} {was[i]} -> {is_[i]} | {p.a[i]} || {p.b[i]}")


if __name__ == "__main__":
    main()
