"""What identifies a file's current content, for the files the service re-reads when they change."""

from __future__ import annotations

import os
from pathlib import Path

Stamp = tuple[int, int, int, int]


def file_stamp(path: str | Path) -> Stamp | None:
    """(inode, device, size, mtime in ns) of ``path``, or None when it is absent.

    Followed through symlinks: a mounted Secret or ConfigMap is updated by the kubelet swapping the link to a new
    file, and a rotation replaces the file, so a changed stamp says the content may have changed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns
