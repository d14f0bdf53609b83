"""Make the int8 embedder compute in int8: the same int8 weights, with activations quantised on the fly.

    python local/quantize_model.py IN.onnx OUT.onnx

The published model stores each encoder weight as int8 times a per-column scale but multiplies in float32: every
run dequantises nothing (onnxruntime folds that at load) yet streams 4 bytes per weight through the float GEMM. Here
the 36 encoder MatMuls become dynamically quantised ones (onnxruntime.quantization.quantize_dynamic: per-column
int8 weights, uint8 activations quantised per run; onnxruntime fuses them into integer GEMMs), faster on one core
but less faithful: activation rounding moves pair similarities by about 0.01, which costs precision and recall
(docs/quality.md; `make eval-int8-gemm`), so it is not the default. The weights are requantised from their
dequantised values with the same scheme, so the int8 values must come out identical to the published ones:
checked, or nothing is written. The word embedding table keeps its int8 storage and float lookup. Needs onnx (dev
group: a build-time tool).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def quantize_activations(src: Path, out: Path, *, attention_only: bool = False) -> int:
    """Write out: src with its weight MatMuls dynamically quantised; returns how many there were.

    attention_only: only the square ones (the query, key, value and output projections of attention), leaving the
    feed-forward layers, whose activations have the widest range, in float.
    """
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    originals: dict[str, np.ndarray] = {}  # MatMul weight name -> its published int8 values
    matmuls: list[str] = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        mul = producer.get(node.input[1])  # weight = Cast(int8) * scale, both initialisers
        if mul is None or mul.op_type != "Mul" or mul.input[1] not in inits:
            continue
        cast = producer.get(mul.input[0])
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[cast.input[0]])
        if attention_only and q.shape[0] != q.shape[1]:
            continue
        scale = numpy_helper.to_array(inits[mul.input[1]]).astype(np.float32)
        weight = (q.astype(np.float32) * scale).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(weight, mul.output[0]))
        graph.node.remove(mul)
        graph.node.remove(cast)
        originals[mul.output[0]] = q
        matmuls.append(node.name)
    if not matmuls:
        raise SystemExit(f"{src}: no int8 weight MatMul found (not the expected export)")
    with tempfile.TemporaryDirectory() as tmp:
        float_weights = Path(tmp) / "float-weights.onnx"
        onnx.save(model, str(float_weights))
        quantize_dynamic(
            float_weights,
            out,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=matmuls,
        )
    result = {i.name: i for i in onnx.load(str(out)).graph.initializer}
    for name, q in originals.items():
        requantised = result.get(f"{name}_quantized")
        if requantised is None or not np.array_equal(numpy_helper.to_array(requantised), q):
            out.unlink()
            raise SystemExit(f"{name}: requantised weights differ from the published int8 values; nothing written")
    return len(matmuls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--attention-only", action="store_true", help="leave the feed-forward layers in float")
    args = parser.parse_args()
    count = quantize_activations(args.src, args.out, attention_only=args.attention_only)
    print(f"{count} MatMuls quantised: {args.out}")


if __name__ == "__main__":
    main()
