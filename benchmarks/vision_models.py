"""Train one registered image model on Fashion-MNIST for a wall-clock budget (or a number of epochs) and measure it.

Standalone on purpose: it reads the IDX files itself (``$ATTNKIT_DATA/fashion-mnist/*.gz``), so it measures the
models, not a data pipeline. It normalizes with the training split's mean and std, carves ``--val-size`` images
from the official training set with ``--seed`` (selection and the 90/92/93% times use them), trains with AdamW and
a one-cycle or cosine learning rate, and evaluates the official 10k test set once, at the end.

With ``--minutes`` the learning-rate schedule follows the fraction of the training-time budget spent (the run
ends when it is spent, mid-epoch if need be), so a slower machine gets fewer steps but the same schedule shape;
with ``--epochs`` it follows the step count. Only training steps count against the budget, not evaluation.
On a shared machine ``--clock cpu`` (with ``--threads 1``) counts this process's CPU time instead of wall-clock
time, so other users' load changes how long the run takes but not what it measures.

Examples::

    ATTNKIT_DATA=/work/shared/datasets nice .venv/bin/python benchmarks/vision_models.py --model cnn-attn \
        --minutes 10 --threads 2 --augment --label-smoothing 0.1 --out benchmarks/results/vision-cnn-attn.json
    .venv/bin/python benchmarks/vision_models.py --model vit --epochs 1 --set embed_dim=64 --set num_layers=2
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from attnkit.models.registry import build_model, model_config_from_dict
from attnkit.models.vision.base import ImageClassifier

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
THRESHOLDS = (0.90, 0.92, 0.93, 0.935)


# -- data --------------------------------------------------------------------------------------------------


def read_idx(path: Path, offset: int) -> np.ndarray:
    """The uint8 payload of a gzipped IDX file after its ``offset``-byte header (16 for images, 8 for labels)."""
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


@dataclass
class Splits:
    """Normalized ``(N, 1, 28, 28)`` float images and ``(N,)`` long labels of each split."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    mean: float
    std: float

    @property
    def black(self) -> float:
        """The normalized value of a raw 0 pixel (the background; augmentation pads with it)."""
        return -self.mean / self.std


def load_fashion_mnist(root: Path, *, val_size: int, seed: int) -> Splits:
    """Fashion-MNIST from ``root``; ``val_size`` training images (a seeded permutation) become validation."""
    missing = [name for name in FILES.values() if not (root / name).is_file()]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)} under {root}; set ATTNKIT_DATA to the datasets folder"
        )
    train_images = read_idx(root / FILES["train_images"], 16).reshape(-1, 28, 28)
    train_labels = read_idx(root / FILES["train_labels"], 8).astype(np.int64)
    test_images = read_idx(root / FILES["test_images"], 16).reshape(-1, 28, 28)
    test_labels = read_idx(root / FILES["test_labels"], 8).astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(train_images))
    val_idx, train_idx = order[:val_size], order[val_size:]
    train_raw = train_images[train_idx]
    scaled = train_raw.astype(np.float64) / 255.0
    mean, std = float(scaled.mean()), float(scaled.std())

    def norm(images: np.ndarray) -> Tensor:
        x = torch.from_numpy(images.astype(np.float32) / 255.0)  # (N, 28, 28)
        return ((x - mean) / std).unsqueeze(1).contiguous()  # (N, 1, 28, 28)

    return Splits(
        train_x=norm(train_raw),
        train_y=torch.from_numpy(train_labels[train_idx]),
        val_x=norm(train_images[val_idx]),
        val_y=torch.from_numpy(train_labels[val_idx]),
        test_x=norm(test_images),
        test_y=torch.from_numpy(test_labels),
        mean=mean,
        std=std,
    )


# -- augmentation ------------------------------------------------------------------------------------------


def random_crop(x: Tensor, pad: int, fill: float, gen: torch.Generator) -> Tensor:
    """Pad ``x (B, C, H, W)`` by ``pad`` with ``fill`` and crop ``H x W`` at a random offset per image."""
    batch, _, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)  # (B, C, H+2P, W+2P)
    oy = torch.randint(0, 2 * pad + 1, (batch,), generator=gen)  # (B,)
    ox = torch.randint(0, 2 * pad + 1, (batch,), generator=gen)  # (B,)
    rows = (oy[:, None] + torch.arange(height))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(width))[:, None, :]  # (B, 1, W)
    crops = padded.permute(0, 2, 3, 1)[torch.arange(batch)[:, None, None], rows, cols]  # (B, H, W, C)
    return crops.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


def random_hflip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Mirror each image of ``x (B, C, H, W)`` left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5  # (B,)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_erase(x: Tensor, prob: float, size: int, fill: float, gen: torch.Generator) -> Tensor:
    """With probability ``prob`` per image, set a random ``size x size`` square (clipped at the borders) to ``fill``."""
    batch, _, height, width = x.shape
    cy = torch.randint(0, height, (batch,), generator=gen)[:, None, None]  # (B, 1, 1)
    cx = torch.randint(0, width, (batch,), generator=gen)[:, None, None]  # (B, 1, 1)
    ys = torch.arange(height)[None, :, None]  # (1, H, 1)
    xs = torch.arange(width)[None, None, :]  # (1, 1, W)
    half = size // 2
    box = (
        (ys >= cy - half) & (ys < cy - half + size) & (xs >= cx - half) & (xs < cx - half + size)
    )  # (B, H, W)
    box &= (torch.rand(batch, generator=gen) < prob)[:, None, None]
    return x.masked_fill(box[:, None], fill)


# -- training ----------------------------------------------------------------------------------------------


def lr_factor(progress: float, schedule: str, warmup: float) -> float:
    """The learning rate as a fraction of its peak at ``progress`` in ``[0, 1]`` of the run.

    ``onecycle``: linear warm-up from 1/25 over the first ``warmup`` of the run, then cosine to 1e-4 of the
    peak. ``cosine``: the same without the low start (linear warm-up from 0). ``constant``: 1.
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    start = 0.04 if schedule == "onecycle" else 0.0
    if progress < warmup:
        return start + (1.0 - start) * progress / warmup
    rest = (progress - warmup) / max(1e-12, 1.0 - warmup)
    floor = 1e-4
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * rest))


@torch.no_grad()
def accuracy(model: ImageClassifier, x: Tensor, y: Tensor, batch_size: int, *, flip: bool = False) -> float:
    """Accuracy on ``x``; with ``flip`` the prediction averages the probabilities of the image and its mirror."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]  # (b, 1, H, W)
        probs = model(batch).logits.softmax(-1)  # (b, K)
        if flip:
            probs = probs + model(batch.flip(-1)).logits.softmax(-1)
        correct += int((probs.argmax(1) == y[start : start + batch_size]).sum())
    return correct / len(x)


@torch.no_grad()
def inference_throughput(model: ImageClassifier, x: Tensor, batch_size: int, seconds: float = 5.0) -> float:
    """Images per second of ``model`` in eval mode over batches of ``x``, for about ``seconds``."""
    model.eval()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for begin in range(0, len(x), batch_size):
            model(x[begin : begin + batch_size])
            done += min(batch_size, len(x) - begin)
            if time.perf_counter() - start >= seconds:
                break
    return done / (time.perf_counter() - start)


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


@dataclass
class Epoch:
    epoch: int
    steps: int
    train_seconds: float
    train_cpu_seconds: float
    epoch_seconds: float
    examples_per_s: float
    examples_per_cpu_s: float
    train_loss: float
    lr: float
    val_accuracy: float
    load: list[float] = field(default_factory=list)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["widths=[32, 64]", "dropout=0.2"]`` -> ``{"widths": [32, 64], "dropout": 0.2}`` (values read as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set takes key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a registered image model (vit, cnn-attn, ...)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config field")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float, help="training-time budget (evaluation not counted)")
    budget.add_argument("--epochs", type=float, help="number of epochs (may be fractional)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--schedule", choices=["onecycle", "cosine", "constant"], default="onecycle")
    parser.add_argument("--warmup", type=float, default=0.15, help="fraction of the run spent warming up")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument(
        "--augment", action="store_true", help="random crop (pad --crop-pad) + horizontal flip"
    )
    parser.add_argument("--crop-pad", type=int, default=2)
    parser.add_argument("--erase", type=float, default=0.0, help="probability of erasing a random square")
    parser.add_argument("--erase-size", type=int, default=10)
    parser.add_argument("--grad-clip", type=float, default=0.0, help="clip the gradient norm (0: off)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true", help="run the convolutions channels-last")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="what --minutes and the times to 90/92/93%% count: wall-clock seconds, or this process's CPU "
        "seconds (with --threads 1, the time the run would take on an otherwise idle core)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument(
        "--train-limit", type=int, default=0, help="use only this many training images (smoke)"
    )
    parser.add_argument("--eval-batch-size", type=int, default=500)
    parser.add_argument("--data", default=os.environ.get("ATTNKIT_DATA", "../shared/datasets"))
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--tag", default="", help="free text saved in the JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    load_start = load_average()
    data = load_fashion_mnist(Path(args.data) / "fashion-mnist", val_size=args.val_size, seed=args.seed)
    if args.train_limit:
        data.train_x, data.train_y = data.train_x[: args.train_limit], data.train_y[: args.train_limit]

    fields = {"num_classes": 10, "image_size": [28, 28], "channels": 1, **parse_overrides(args.set)}
    config = model_config_from_dict(args.model, fields, modality="image")
    model = build_model(args.model, modality="image", **fields)
    assert isinstance(model, ImageClassifier)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )
    n_train = len(data.train_x)
    steps_per_epoch = math.ceil(n_train / args.batch_size)
    budget_s = args.minutes * 60.0 if args.minutes is not None else None
    total_steps = None if args.epochs is None else max(1, round(args.epochs * steps_per_epoch))
    print(
        f"{args.model}: {params:,} parameters, {n_train} train / {len(data.val_x)} val / {len(data.test_x)} test, "
        f"load {load_start}, threads {args.threads}",
        flush=True,
    )

    epochs: list[Epoch] = []
    reached: dict[str, float | None] = {f"{t:.3f}": None for t in THRESHOLDS}
    train_seconds, train_cpu, step, done = 0.0, 0.0, 0, False
    wall_start = time.perf_counter()
    while not done:
        model.train()
        order = torch.randperm(n_train, generator=gen)
        epoch_start, epoch_train, epoch_cpu, loss_sum, seen = time.perf_counter(), 0.0, 0.0, 0.0, 0
        for begin in range(0, n_train, args.batch_size):
            spent = train_cpu if args.clock == "cpu" else train_seconds
            progress = step / total_steps if total_steps is not None else spent / budget_s  # type: ignore[operator]
            if progress >= 1.0:
                done = True
                break
            t0, c0 = time.perf_counter(), time.process_time()
            idx = order[begin : begin + args.batch_size]
            x, y = data.train_x[idx], data.train_y[idx]  # (b, 1, 28, 28), (b,)
            if args.augment:
                x = random_hflip(random_crop(x, args.crop_pad, data.black, gen), gen)
            if args.erase > 0:
                x = random_erase(x, args.erase, args.erase_size, data.black, gen)
            lr = args.lr * lr_factor(progress, args.schedule, args.warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model(x).logits  # (b, K)
            loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            train_seconds += dt
            epoch_train += dt
            train_cpu += dc
            epoch_cpu += dc
        else:
            if total_steps is not None and step >= total_steps:
                done = True
        if seen == 0:
            break
        val = accuracy(model, data.val_x, data.val_y, args.eval_batch_size)
        record = Epoch(
            epoch=len(epochs) + 1,
            steps=step,
            train_seconds=round(train_seconds, 2),
            train_cpu_seconds=round(train_cpu, 2),
            epoch_seconds=round(time.perf_counter() - epoch_start, 2),
            examples_per_s=round(seen / max(epoch_train, 1e-9), 1),
            examples_per_cpu_s=round(seen / max(epoch_cpu, 1e-9), 1),
            train_loss=round(loss_sum / seen, 4),
            lr=lr,
            val_accuracy=val,
            load=load_average(),
        )
        epochs.append(record)
        for t in THRESHOLDS:
            key = f"{t:.3f}"
            if reached[key] is None and val >= t:
                reached[key] = record.train_cpu_seconds if args.clock == "cpu" else record.train_seconds
        print(
            f"epoch {record.epoch:3d} ({seen / n_train:.2f} of the data)  val {val:.4f}  loss {record.train_loss:.4f}  "
            f"train {record.train_seconds:7.1f}s (cpu {record.train_cpu_seconds:7.1f}s)  "
            f"{record.examples_per_s:6.0f} ex/s ({record.examples_per_cpu_s:6.0f} per cpu-s)  load {record.load}",
            flush=True,
        )

    test = accuracy(model, data.test_x, data.test_y, args.eval_batch_size)
    test_flip = accuracy(model, data.test_x, data.test_y, args.eval_batch_size, flip=True)
    throughput = inference_throughput(model, data.test_x, 256)
    result: dict[str, Any] = {
        "model": args.model,
        "tag": args.tag,
        "config": config.to_dict(),
        "parameters": params,
        "recipe": {
            "optimizer": "AdamW",
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "schedule": args.schedule,
            "warmup": args.warmup,
            "batch_size": args.batch_size,
            "label_smoothing": args.label_smoothing,
            "augment": args.augment,
            "crop_pad": args.crop_pad if args.augment else 0,
            "erase": args.erase,
            "erase_size": args.erase_size,
            "grad_clip": args.grad_clip,
            "minutes": args.minutes,
            "epochs": args.epochs,
            "seed": args.seed,
        },
        "steps": step,
        "epochs_done": round(step * args.batch_size / n_train, 2),
        "clock": args.clock,
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu, 1),
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
        "test_accuracy": test,
        "test_accuracy_flip_tta": test_flip,
        "channels_last": args.channels_last,
        "final_val_accuracy": epochs[-1].val_accuracy if epochs else None,
        "best_val_accuracy": max((e.val_accuracy for e in epochs), default=None),
        "train_seconds_to_val": reached,
        "inference_images_per_s": round(throughput, 1),
        "threads": args.threads,
        "load_start": load_start,
        "load_end": load_average(),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "torch": torch.__version__,
        "history": [vars(e) for e in epochs],
    }
    print(
        f"test {test:.4f} (flip TTA {test_flip:.4f})  final val {result['final_val_accuracy']}  train {train_seconds:.0f}s  "
        f"to val {reached}  inference {throughput:.0f} img/s",
        flush=True,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
