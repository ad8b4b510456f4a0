"""Requests that must go one after another, overlapped with the work on their answers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

T = TypeVar("T")


class _NotStarted(Exception):
    """A call skipped because the line was stopped before its turn."""


@contextmanager
def one_after_another(calls: Sequence[Callable[[], T]]) -> Iterator[Iterator[T]]:
    """Run ``calls`` in order in a background thread; iterate their answers in the same order.

    The caller works on one answer while the next call is on the wire, so a chain of requests
    to a rate-limited API costs no more time than the work done with their answers. A call that
    raises stops the line: no later call starts, and its error (even a ``BaseException``) is
    raised where its answer would have come. Leaving the block, early or with an error, lets the
    running call finish and starts no other.
    """
    stopped = threading.Event()

    def guarded(call: Callable[[], T]) -> T:
        if stopped.is_set():
            raise _NotStarted
        try:
            return call()
        except BaseException:
            stopped.set()
            raise

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="one-after-another") as pool:
        futures = [pool.submit(guarded, call) for call in calls]
        try:
            yield (future.result() for future in futures)
        finally:
            stopped.set()
            for future in futures:
                future.cancel()
