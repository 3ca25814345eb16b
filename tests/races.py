"""Running writers at once with each one paused after its check, so the race a lock must close is the one tested."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import pytest


def after_check_at_once(monkeypatch: pytest.MonkeyPatch, module: object, checks: str | tuple[str, ...],
                        writers: list[Callable[[], object]]) -> list[Exception]:
    """Run ``writers`` in threads at once; each waits after its first call of any of ``module``'s ``checks`` until
    the others have checked too (or 2 s, when another is held back by a lock): the window in which a check can miss
    the other's write. Returns what the writers raised."""
    barrier = threading.Barrier(len(writers), timeout=2)
    waited = threading.local()
    names = (checks,) if isinstance(checks, str) else checks
    reals = {name: getattr(module, name) for name in names}

    def then_wait(real: Callable[..., object]) -> Callable[..., object]:
        def check_then_wait(*a: object, **k: object) -> object:
            out = real(*a, **k)
            if not getattr(waited, "done", False):
                waited.done = True
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()
            return out
        return check_then_wait

    for name, real in reals.items():
        monkeypatch.setattr(module, name, then_wait(real))
    errors: list[Exception] = []

    def run(write: Callable[[], object]) -> None:
        try:
            write()
        except Exception as exc:  # collected for the caller's assertions
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    for name, real in reals.items():
        monkeypatch.setattr(module, name, real)
    return errors
