"""Named crash points for the reliability tests.

A flow calls ``checkpoint("push.after_erp_accept")`` at each place where a crash would leave work
half done. In production nothing is armed and a checkpoint is a dictionary lookup. A test arms a
point with :func:`arm`; the next time the flow passes it, :class:`InjectedCrash` is raised. It is a
``BaseException`` so that no ``except Exception`` in the code under test can swallow it, just as
nothing can catch a Lambda runtime being killed.
"""

from __future__ import annotations

import threading

__all__ = ["InjectedCrash", "arm", "checkpoint", "disarm_all", "hits"]

_lock = threading.Lock()
_armed: dict[str, int] = {}
_hits: dict[str, int] = {}


class InjectedCrash(BaseException):
    """The process dies here (raised only at an armed checkpoint)."""


def arm(point: str, times: int = 1) -> None:
    """Crash the next ``times`` passes through ``point``."""
    with _lock:
        _armed[point] = _armed.get(point, 0) + times


def disarm_all() -> None:
    """Forget every armed point and every recorded hit."""
    with _lock:
        _armed.clear()
        _hits.clear()


def hits(point: str) -> int:
    """How many crashes ``point`` has raised since the last :func:`disarm_all`."""
    with _lock:
        return _hits.get(point, 0)


def checkpoint(point: str) -> None:
    """Raise :class:`InjectedCrash` if ``point`` is armed; otherwise do nothing."""
    if not _armed:
        return
    with _lock:
        left = _armed.get(point, 0)
        if left <= 0:
            return
        _armed[point] = left - 1
        _hits[point] = _hits.get(point, 0) + 1
    raise InjectedCrash(point)
