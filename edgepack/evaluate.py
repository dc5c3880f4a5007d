"""Accuracy and fidelity figures shared by compile, bench and debug."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(1) == labels).mean())


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of images on which two executors pick the same top-1 class. An exact tie counts as
    agreement: int8 logits often tie, and which of the tied classes argmax returns is arbitrary."""
    a, b = np.asarray(a), np.asarray(b)
    rows = np.arange(len(a))
    a_in_b = b[rows, a.argmax(1)] == b.max(1)
    b_in_a = a[rows, b.argmax(1)] == a.max(1)
    return float((a_in_b | b_in_a).mean())


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``test`` against ``reference``, in dB."""
    ref = np.asarray(reference, np.float64)
    noise = np.sum((ref - np.asarray(test, np.float64)) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref**2) / noise))


def torch_logits(model: torch.nn.Module, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """fp32 logits of a torch model (torch imported here: bench's figures above need numpy only)."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images))
        return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]).numpy()


def compare(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> dict:
    return {"a": name_a, "b": name_b, "top1_agreement": agreement(a, b), "max_abs_logit_diff": max_abs_diff(a, b)}
