"""The evaluation code's readers (eval/data.py): pairs labelled by verdicts, which retraining takes (--extra), and
the duplicates Quora's labels imply."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "eval"))
from data import Pairs, implied_duplicates, labelled_pairs  # eval/ is a folder of scripts, not a package

EXAMPLES = [
    {"a": "stored one", "b": "asked one", "duplicate": False, "confidence": 0.9, "matcher": "m", "at": 1.0},
    {"a": "stored two", "b": "asked two", "duplicate": True},
]


def test_reads_the_feedback_routes_answer_and_json_lines(tmp_path: Path) -> None:
    exported = tmp_path / "feedback.json"
    exported.write_text(json.dumps({"tenant": "t", "examples": EXAMPLES}))
    lines = tmp_path / "pairs.jsonl"
    lines.write_text("\n".join(json.dumps(e) for e in EXAMPLES) + "\n\n")
    for path in (exported, lines):
        pairs = labelled_pairs(path)
        assert pairs.a == ["stored one", "stored two"]
        assert pairs.b == ["asked one", "asked two"]
        assert pairs.duplicate.tolist() == [False, True]


def test_an_example_without_a_label_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"a": "x", "b": "y"}))
    with pytest.raises(ValueError, match="every example needs a, b and duplicate"):
        labelled_pairs(bad)


def test_implied_duplicates_follow_clusters_and_never_repeat_a_listed_pair() -> None:
    rows = [("a", "b", True), ("b", "c", True), ("c", "d", True), ("x", "y", True), ("a", "x", False)]
    rows += [("p", "q", False)]
    pairs = Pairs("t", [r[0] for r in rows], [r[1] for r in rows], np.array([r[2] for r in rows]))
    implied = implied_duplicates(pairs, per_question=10)
    found = {frozenset(p) for p in zip(implied.a, implied.b, strict=True)}
    assert found == {frozenset(p) for p in (("a", "c"), ("a", "d"), ("b", "d"))}, "a cluster of 2 implies nothing"
    assert implied.duplicate.all()
    assert len(implied_duplicates(pairs, per_question=0).a) == 0
    again = implied_duplicates(pairs, per_question=10)
    assert (again.a, again.b) == (implied.a, implied.b), "seeded"
