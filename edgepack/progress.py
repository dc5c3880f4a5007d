"""Progress display for the long steps (calibration, QAT epochs, eval): tqdm on a terminal only."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable


def progress(items: Iterable, desc: str, unit: str = "it") -> Iterable:
    if os.environ.get("EDGEPACK_PROGRESS", "auto") == "off" or not sys.stderr.isatty():
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, leave=False, file=sys.stderr)
