"""Front ends: where an int8 plan comes from. Each turns its input (a torch model: frontends.torch; an int8
.tflite: frontends.tflite) into a ``Source``, and the compiler runs one pipeline on any Source
(edgepack.compiler): reference -> golden -> peer checks -> lower -> manifest."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepack import progress
from edgepack.data import Dataset, load_dataset
from edgepack.plan.plan import Plan

GOLDEN_IMAGES = 8
# model.tflite is checked under LiteRT's reference kernels (~85 ms per image at 0.75-224 here) on the
# golden images and this many eval images, or as many as fit in the multiply-add budget (all for small
# models): a count fixed by the model, so the manifest (which records it) stays byte-identical.
LITERT_MIN_EVAL_IMAGES = 32
LITERT_MAC_BUDGET = 8e9


@dataclass
class Source:
    """What a front end hands the compiler: the plan (None for an fp32 compile), the eval images it is
    measured on, and what the manifest says of the model. Subclasses add their own peer checks."""

    plan: Plan | None
    evalset: Dataset
    classes: int
    profile: dict  # params and macs
    model: dict  # the manifest's "model"
    preprocessing: dict
    quantization: dict
    folding: dict | None
    fp32_accuracy: float | None = None
    origin: dict = field(default_factory=dict)  # manifest entries only this front end writes ({"import": ...})
    golden_source: str | None = None  # the manifest's golden "source" when not the int8 reference
    folded: object = None  # the folded fp32 torch model and its eval logits (backends lower them for fp32)
    fp32_logits: np.ndarray | None = None
    module_paths: list[str] | None = None  # each plan layer's fp32 module path (frontends.module_paths), if known

    def write_model(self, folder: Path, times: dict) -> str | None:
        """Write the front end's own model file into the artifact (its name), before the checks."""
        return None

    def peer_checks(self, folder: Path, q_in: np.ndarray, ref_q: np.ndarray, ref: np.ndarray, metrics: dict,
                    times: dict) -> np.ndarray:
        """Run the plan's peers on the eval images (raise unless they agree as they must), fill ``metrics``;
        return the int8 outputs the golden files take (the first eval images')."""
        raise NotImplementedError

    def report(self, metrics: dict, tflite: dict, log) -> None:
        """One line or two on what the checks found."""


def load_data(spec, split: str, size: int | None, config) -> Dataset:
    """A split at the config's resolution and pixel mapping, the first ``size`` images."""
    if spec is not None and str(spec) != "digits":
        spec = Path(spec).resolve()  # the manifest records the source: never relative to where compile ran
    # a (C, H, W) other than (3, R, R), or F for vectors: the .npz's own inputs
    shape = config.input_features or config.image_shape or config.resolution
    return load_dataset(spec, split, shape, config.classes, config.mean, config.std).take(size)


def litert_images(available: int, macs: int) -> int:
    """How many eval images LiteRT's reference kernels run (see LITERT_MIN_EVAL_IMAGES)."""
    return min(available, max(LITERT_MIN_EVAL_IMAGES, int(LITERT_MAC_BUDGET // max(macs, 1))))


@contextmanager
def timed(times: dict, stage: str):
    """Record the seconds the block took as ``times[stage]`` (the compile logs them); the stage's progress line
    (edgepack.progress) shows it running."""
    start = time.perf_counter()
    with progress.stage(stage):
        yield
    times[stage] = round(time.perf_counter() - start, 3)


def percent(value: float | None) -> str:
    return "n/a (no labelled eval data)" if value is None else f"{value:.2%}"
