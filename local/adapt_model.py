"""Merge a low-rank adapter (eval/finetune.py) into the int8 ONNX embedder: base weights + up @ down, requantised.

    python local/adapt_model.py BASE.onnx BASE.safetensors ADAPTER.npz OUT.onnx

The int8 model stores each encoder weight as int8 values times one float scale per output column (symmetric,
max |w| / 127), dequantised inside the graph; its initialisers have export-generated names. Each one is matched to
its float32 original in the sentence-transformers safetensors by requantising the original the same way: the match
must be exact, which also proves the scheme. The adapted weight is float32 original + delta, quantised once with the
same scheme, so the merged model carries no more rounding than the base. Needs numpy, onnx and safetensors (the
dev group: a build-time tool; the service never imports it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]


def quantize(weight_in_out: Array) -> tuple[npt.NDArray[np.int8], Array]:
    """Symmetric per-output-column int8, as the base model stores its weights: (q, scale) with w ~ q * scale."""
    scale = np.abs(weight_in_out).max(axis=0, keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    q = np.clip(np.rint(weight_in_out / scale), -127, 127).astype(np.int8)
    return q, scale


def adapter_deltas(path: Path) -> tuple[dict[str, Array], dict[str, object]]:
    """{'encoder.layer.N....': delta (out, in)} and the adapter's metadata."""
    with np.load(path) as z:
        meta = json.loads(str(z["__meta__"]))
        names = {k.rsplit(".", 1)[0] for k in z.files if k != "__meta__"}
        deltas = {n: z[f"{n}.up"].astype(np.float32) @ z[f"{n}.down"].astype(np.float32) for n in names}
    return deltas, meta


def merge(base_onnx: Path, base_weights: Path, adapter: Path, out: Path) -> dict[str, object]:
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    model = onnx.load(str(base_onnx))
    originals = {k: v for k, v in load_file(str(base_weights)).items() if v.ndim == 2 and ".layer." in k}
    deltas, meta = adapter_deltas(adapter)
    inits = {i.name: i for i in model.graph.initializer}
    matched: dict[str, str] = {}  # safetensors name -> initialiser prefix
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for name, w in originals.items():
        by_shape.setdefault(tuple(w.T.shape), []).append(name)
    for name, init in inits.items():
        if not name.endswith("_q") or f"{name[:-2]}_scale" not in inits:
            continue
        q = numpy_helper.to_array(init)
        for candidate in by_shape.get(tuple(q.shape), []):
            if candidate not in matched and np.array_equal(quantize(originals[candidate].T)[0], q):
                matched[candidate] = name[:-2]
                break
    wanted = {f"{n}.weight" for n in deltas}
    missing = wanted - matched.keys()
    if missing:
        raise SystemExit(f"no int8 initialiser matches {sorted(missing)[:3]}: not the base this adapter was made for")
    for module, delta in deltas.items():
        prefix = matched[f"{module}.weight"]
        q, scale = quantize((originals[f"{module}.weight"] + delta).T)
        inits[f"{prefix}_q"].CopyFrom(numpy_helper.from_array(q, f"{prefix}_q"))
        inits[f"{prefix}_scale"].CopyFrom(numpy_helper.from_array(scale, f"{prefix}_scale"))
    model.doc_string = f"all-MiniLM-L6-v2 int8 + adapter {meta.get('version')}"
    tmp = out.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return {"adapted_weights": len(deltas), **meta}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_onnx", type=Path)
    parser.add_argument("base_weights", type=Path)
    parser.add_argument("adapter", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(json.dumps(merge(args.base_onnx, args.base_weights, args.adapter, args.out)))


if __name__ == "__main__":
    main()
