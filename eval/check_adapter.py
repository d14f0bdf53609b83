"""Check a merged model: the int8 ONNX file from local/adapt_model.py against the float32 PyTorch model + adapter.

    .local/train-venv/bin/python eval/check_adapter.py ADAPTER.npz MERGED.onnx     (make finetune runs it)

Embeds 400 qqp/dev questions both ways and prints the cosine between the two embeddings of each question (min and
median): int8 rounding leaves it near 1; a wrong merge does not. Also prints the same for the unadapted base, which
must be lower, so the check cannot pass by comparing the base with itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from data import ROOT, qqp
from finetune import BASE
from tokenizers import Tokenizer
from transformers import AutoModel

sys.path.insert(0, str(ROOT / "local"))
sys.path.insert(0, str(ROOT / "src"))  # the training venv does not install semcache; its embedder needs no more
from adapt_model import adapter_deltas

from semcache.adapters.onnx_embedder import OnnxEmbedder


def onnx_embed(path: Path, texts: list[str]) -> np.ndarray:
    """Embeddings as the service makes them: semcache's own OnnxEmbedder over the ONNX file."""
    embedder = OnnxEmbedder(path, BASE / "tokenizer.json", name="check")
    return np.vstack([embedder.embed([t]) for t in texts])


@torch.no_grad()
def torch_embed(deltas: dict[str, np.ndarray], texts: list[str]) -> np.ndarray:
    model = AutoModel.from_pretrained(BASE).eval()
    params = dict(model.named_parameters())
    for name, delta in deltas.items():
        params[f"{name}.weight"].add_(torch.from_numpy(delta))
    tok = Tokenizer.from_file(str(BASE / "tokenizer.json"))
    tok.no_padding()  # the file pads to 128 tokens; one text at a time needs none
    out = []
    for t in texts:
        ids = torch.tensor([tok.encode(t).ids])
        v = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].mean(0)
        out.append((v / v.norm()).numpy())
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", type=Path)
    parser.add_argument("merged", type=Path)
    parser.add_argument("--base", type=Path, default=ROOT / ".local/models/base.onnx")
    args = parser.parse_args()
    texts = qqp("dev", 200).a + qqp("dev", 200).b
    deltas, _ = adapter_deltas(args.adapter)
    reference = torch_embed(deltas, texts)
    merged = np.sum(reference * onnx_embed(args.merged, texts), axis=1)
    base = np.sum(reference * onnx_embed(args.base, texts), axis=1)
    report = {
        "merged_vs_torch": {"min": round(float(merged.min()), 4), "median": round(float(np.median(merged)), 4)},
        "base_vs_torch": {"min": round(float(base.min()), 4), "median": round(float(np.median(base)), 4)},
    }
    print(json.dumps(report))
    if not (merged.min() > 0.98 and np.median(merged) > np.median(base)):
        raise SystemExit("the merged model does not reproduce the adapted network")


if __name__ == "__main__":
    main()
