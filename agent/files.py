"""What identifies a file's current content, for the files the service re-reads when they change."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

# (inode, device, size, mtime in ns, ctime in ns, SHA-256 of the content in hex): callers read the mtime at [3].
Stamp = tuple[int, int, int, int, int, str]

# A file last modified less than this before its content was hashed may be rewritten again within the same tick of
# the file system's clock (coarse on some: FAT's is 2 s), leaving its stat as it was: its digest stands for the
# content only while younger stamps re-hash it. Past this, an unchanged stat says the content is the one hashed.
RACY_SECONDS = 2.0
# Files whose digest is remembered (the service stamps a handful: TLS pair, client CA, signing key, OIDC key set).
_REMEMBERED = 64
_CHUNK = 64 * 1024

_StatKey = tuple[int, int, int, int, int]
_digests: OrderedDict[str, tuple[_StatKey, str]] = OrderedDict()  # hashed after the file had settled
_lock = threading.Lock()


def _digest(path: str | Path) -> str:
    """SHA-256 of the file's content in hex, or "" when it cannot be read (its reader says why, naming its
    setting)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def file_stamp(path: str | Path) -> Stamp | None:
    """(inode, device, size, mtime in ns, ctime in ns, content digest) of ``path``, or None when it is absent.

    Followed through symlinks: a mounted Secret or ConfigMap is updated by the kubelet swapping the link to a new
    file, and a rotation replaces the file, so a changed stamp says the content may have changed.

    The stat alone missed a rewrite in place to the same size within one tick of the file system's clock: a
    rotated signing key (an Ed25519 PEM is always 119 bytes) kept the old key signing. So the content's digest is
    part of the stamp, computed as git checks a "racily clean" file: hashed whenever the file changed less than
    :data:`RACY_SECONDS` before, and once more after that, and then remembered for as long as the stat stays the
    same (a rewrite after that is in a later tick: its mtime or ctime differs; the ctime also catches a tool that
    puts the old mtime back, ``cp -p``, ``rsync -t``). So a file that settled costs a stat per check, as before:
    the OIDC key set is stamped on every request."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    stat: _StatKey = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    key = os.fspath(path)
    with _lock:
        known = _digests.get(key)
    if known is not None and known[0] == stat:
        return (*stat, known[1])
    hashed_at = time.time()
    digest = _digest(path)
    if digest and hashed_at - st.st_mtime_ns / 1e9 >= RACY_SECONDS:
        # Hashed after the file had settled: while its stat stays the same, this is its content.
        with _lock:
            _digests[key] = (stat, digest)
            _digests.move_to_end(key)
            while len(_digests) > _REMEMBERED:
                _digests.popitem(last=False)
    else:
        with _lock:
            _digests.pop(key, None)
    return (*stat, digest)
