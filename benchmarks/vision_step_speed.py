"""Training-step speed of image models on random Fashion-MNIST-sized inputs: forward, backward and an AdamW step.

No data, augmentation, evaluation or loop overhead: it compares architectures (e.g. ViT patch sizes) at one
batch size and thread count. Times the median of ``--steps`` steps after three warm-up steps.

    .venv/bin/python benchmarks/vision_step_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from attnkit.models.registry import build_model

CASES: dict[str, tuple[str, dict[str, object]]] = {
    "vit, 4-px patches (49), 64-d": ("vit", {}),
    "vit, 7-px patches (16), 96-d (fashion-mnist-vit)": (
        "vit",
        {"unit_size": 7, "embed_dim": 96, "ff_dim": 192},
    ),
    "hybrid-vit": ("hybrid-vit", {}),
    "cnn-attn": ("cnn-attn", {}),
    "cbam-attn": ("cbam-attn", {}),
}


def images_per_second(name: str, options: dict[str, object], batch: int, steps: int) -> tuple[float, int]:
    torch.manual_seed(0)
    model = build_model(name, modality="image", num_classes=10, **options)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pixels = torch.randn(batch, 1, 28, 28)  # (B, C, H, W)
    mask = torch.ones(batch, model.config.num_units, dtype=torch.bool)  # (B, U)
    targets = torch.randint(0, 10, (batch,))
    times = []
    for step in range(steps + 3):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(pixels, mask).logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 3:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times), sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for label, (name, options) in CASES.items():
        rate, params = images_per_second(name, options, args.batch, args.steps)
        print(f"{label}: {rate:,.0f} training images/s, {params:,} parameters", flush=True)


if __name__ == "__main__":
    main()
