"""The SQLite reminder lock file (``<database>-notify``) is made like SQLite's own ``-wal``/``-shm`` beside the store.

A lock file created 0600 by whichever account ran first locked every other account that writes the same store out
of reminders for good: after one `sudo veuctl deadlines notify` (root's file) the API server's reminder job
failed every run with "cannot open the lock file". SQLite gives its ``-wal`` and ``-shm`` the store file's
permissions and, when root makes them, its owner; the lock file is made the same way.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import obligations as svc
from agent.store import session_scope
from policies.packs import PackRegistry
from tests.obligations.test_notify_sqlite_lock import AS_OF, _incidents, _lock_file, webhook  # noqa: F401

STORE_OWNER = 4242  # the account the API server runs as, in the root test below


def _notify(db_url: str, packs: PackRegistry, hook: tuple[str, list[list[str]]]) -> None:
    with session_scope(db_url) as s:
        svc.send_reminders(s, packs, AS_OF, svc.NotifySettings(webhook_url=hook[0]))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_lock_file_gets_the_stores_permissions_whatever_the_umask(
    db_url: str, packs: PackRegistry, webhook: tuple[str, list[list[str]]],  # noqa: F811
) -> None:
    _incidents(db_url)
    store = Path(db_url.split("///", 1)[1])
    store.chmod(0o660)  # shared with the group the API server and the operators are in
    old = os.umask(0o077)
    try:
        _notify(db_url, packs, webhook)
    finally:
        os.umask(old)

    assert _mode(_lock_file(db_url)) == 0o660


@pytest.fixture()
def shared_dir() -> Iterator[Path]:
    """A directory another account can reach (pytest's own temporary directories are root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="veu-shared-"))
    d.chmod(0o755)
    yield d
    from agent.store.db import _engines, _lock

    with _lock:
        eng = _engines.pop(f"sqlite:///{d / 'veu.db'}", None)
    if eng is not None:
        eng.dispose()
    shutil.rmtree(d)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="makes a file as root")
def test_a_run_as_root_leaves_a_lock_file_the_stores_owner_can_take(
    shared_dir: Path, packs: PackRegistry, webhook: tuple[str, list[list[str]]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db_url = f"sqlite:///{shared_dir / 'veu.db'}"
    monkeypatch.setenv("VEU_DATABASE_URL", db_url)
    _incidents(db_url)
    for p in (shared_dir, *shared_dir.iterdir()):
        os.chown(p, STORE_OWNER, STORE_OWNER)  # the store is the API server's

    _notify(db_url, packs, webhook)  # `sudo veuctl deadlines notify`

    lock = _lock_file(db_url)
    assert (lock.stat().st_uid, lock.stat().st_gid) == (STORE_OWNER, STORE_OWNER)
    assert _can_take_as(STORE_OWNER, lock)  # the API server's next reminder run can take the lock


def _can_take_as(uid: int, lock: Path) -> bool:
    """Whether account ``uid`` can open the lock file as a reminder run does and lock it (a forked child, since
    the test's interpreter lives where that account may not run it)."""
    pid = os.fork()
    if pid == 0:  # the child only makes system calls, then leaves without running any Python cleanup
        code = 1
        try:
            os.setgid(uid)
            os.setuid(uid)
            fcntl.flock(os.open(lock, os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1] == 0
