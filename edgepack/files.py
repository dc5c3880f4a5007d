"""What a path is, read with stat and never by opening it: opening a FIFO blocks until someone writes
to it, and a symbolic link may lead anywhere. Every check "is this a regular file?" asks here."""
from __future__ import annotations

import os
import stat

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def kind_of(path, follow_links: bool = True) -> str | None:
    """None for a regular file or a path that does not exist (the caller says "does not exist"); else what
    it is ("a FIFO", "a folder", "a symbolic link" when not following links, "a broken symbolic link",
    "unreadable (Permission denied)")."""
    try:
        mode = (os.stat if follow_links else os.lstat)(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "a broken symbolic link" if follow_links and os.path.islink(path) else None
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")
