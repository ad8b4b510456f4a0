"""Calls run one after another in the background, answered in order; a failure stops the line."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from erphub.background import one_after_another
from erphub.faults import InjectedCrash

if TYPE_CHECKING:
    from collections.abc import Callable


def test_the_next_call_runs_while_the_caller_works_on_an_answer() -> None:
    taken = threading.Event()
    started: list[str] = []

    def first() -> str:
        started.append("first")
        return "first"

    def second() -> str:
        started.append("second")
        # Runs only in the background: the caller sets the event after it got the first answer.
        return "overlapped" if taken.wait(timeout=10) else "waited for the caller"

    with one_after_another([first, second]) as answers:
        assert next(answers) == "first"
        taken.set()
        assert list(answers) == ["overlapped"]
    assert started == ["first", "second"]


def _line(failure: BaseException) -> tuple[list[Callable[[], int]], list[int]]:
    ran: list[int] = []

    def call(n: int) -> Callable[[], int]:
        def run() -> int:
            ran.append(n)
            if n == 2:
                raise failure
            return n

        return run

    return [call(n) for n in range(1, 5)], ran


@pytest.mark.parametrize(
    "failure", [RuntimeError("Rossum unavailable"), InjectedCrash("finalize.after_export")]
)
def test_a_failing_call_stops_the_line_and_is_raised_in_its_place(failure: BaseException) -> None:
    calls, ran = _line(failure)
    got: list[int] = []
    with pytest.raises(type(failure), match=str(failure)), one_after_another(calls) as answers:
        got.extend(answers)
    assert got == [1]
    assert ran == [1, 2]  # nothing after the failure started


def test_no_calls_no_answers() -> None:
    with one_after_another([]) as answers:
        assert list(answers) == []
