"""Terminal colour: only when the stream is a terminal and NO_COLOR (https://no-color.org) is unset or
empty, so a pipe, a log file or a CI job that asks for none gets plain text."""
from __future__ import annotations

import os

CODES = {"bold": "1", "green": "32", "red": "31", "yellow": "33"}


def enabled(stream) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, style: str, stream) -> str:
    """``text`` in ``style`` (a CODES key) when colour is enabled on ``stream``, else unchanged."""
    return f"\033[{CODES[style]}m{text}\033[0m" if enabled(stream) else text
