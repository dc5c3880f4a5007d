"""Train the shipped default weights: MobileNetV1 on the digits train split, one checkpoint per alpha.

Every batch is drawn at a random resolution so that one checkpoint serves 224, 192, 160, 128
(and the small ones tests use). No weight decay on depthwise filters or BatchNorm (paper, 3.2).
    python scripts/train_digits.py --alpha 1.0 0.75 0.5 0.25
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from edgepack.data import SPLITS, digits_file, load_digits_split
from edgepack.model.mobilenet import MobileNetV1
from edgepack.model.weights import DIGITS_CLASSES, load_compact, save_compact, weights_path

TRAIN_RESOLUTIONS = (32, 64, 96, 128, 160, 192, 224)
CHECK_RESOLUTIONS = (224, 192, 160, 128, 96, 64, 32)


def train_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(digits_file()) as z:
        keep = z["split"] == SPLITS["train"]
        return torch.from_numpy(z["images"][keep].astype(np.float32)), torch.from_numpy(z["labels"][keep].astype(np.int64))


def batch_at(pixels: torch.Tensor, resolution: int, gen: torch.Generator) -> torch.Tensor:
    """Random +-1 pixel shift on the 8x8 image, then the same resize + normalisation as edgepack.data."""
    padded = F.pad(pixels[:, None], (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2,), generator=gen).tolist()
    crop = padded[:, :, dy:dy + 8, dx:dx + 8].repeat(1, 3, 1, 1)
    x = F.interpolate(crop, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return (x / 255.0 - 0.5) / 0.5


def param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            depthwise = isinstance(module, torch.nn.Conv2d) and module.groups == module.in_channels > 1
            (decay if name == "weight" and p.ndim > 1 and not depthwise else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def accuracy(model: torch.nn.Module, resolution: int) -> float:
    data = load_digits_split("eval", resolution)
    logits = torch.cat([model(torch.from_numpy(data.images[i:i + 120])) for i in range(0, len(data), 120)])
    return float((logits.argmax(1).numpy() == data.labels).mean())


def train(alpha: float, epochs: int, batch: int, lr: float, seed: int) -> MobileNetV1:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    pixels, labels = train_pixels()
    model = MobileNetV1(alpha, 224, DIGITS_CLASSES)
    opt = torch.optim.AdamW(param_groups(model, 1e-4), lr=lr)
    steps = epochs * ((len(labels) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    for epoch in range(epochs):
        t0, order, seen, correct = time.time(), torch.randperm(len(labels), generator=gen), 0, 0
        for start in range(0, len(labels), batch):
            idx = order[start:start + batch]
            res = TRAIN_RESOLUTIONS[int(torch.randint(len(TRAIN_RESOLUTIONS), (1,), generator=gen))]
            out = model(batch_at(pixels[idx], res, gen))
            loss = F.cross_entropy(out, labels[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            correct += int((out.argmax(1) == labels[idx]).sum())
        print(f"alpha {alpha:g} epoch {epoch + 1}/{epochs} train acc {correct / seen:.3f} ({time.time() - t0:.0f}s)", flush=True)
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--alpha", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-only", action="store_true", help="only report eval accuracy of the shipped weights")
    args = ap.parse_args()
    for alpha in args.alpha:
        path = weights_path(alpha)
        if not args.check_only:
            save_compact(train(alpha, args.epochs, args.batch, args.lr, args.seed), path)
        model = MobileNetV1(alpha, 224, DIGITS_CLASSES)
        model.load_state_dict(load_compact(path))  # measure what ships (float16 weights)
        model.eval()
        accs = {r: accuracy(model, r) for r in CHECK_RESOLUTIONS}
        print(f"alpha {alpha:g} -> {path.name} ({path.stat().st_size // 1024} KiB) eval acc "
              + " ".join(f"{r}:{a:.3f}" for r, a in accs.items()), flush=True)


if __name__ == "__main__":
    main()
