"""Patches for moto 5.2.5's Step Functions interpreter.

* :func:`apply` fixes three bugs: ``start_execution`` without a name (moto names it ``None``,
  so the second unnamed start on a machine fails with ``ExecutionAlreadyExists``; AWS generates
  a UUID); ``$$.Execution.StartTime`` (moto puts a ``datetime`` into the context object, and
  ``describe_execution`` then fails to serialise the output; AWS gives an ISO 8601 string); and
  ``stop_execution`` right after ``start_execution`` (moto creates the execution's environment
  in a worker thread: stopping before it exists fails with ``AttributeError``, stopping before
  it runs is ignored; AWS aborts the execution).
* :func:`scale_waits` makes ``Wait`` states and ``Retry`` intervals take ``factor`` times their
  real duration (moto really sleeps), so local runs and tests need not wait minutes.

``tests/unit/test_moto_fixes.py`` shows for each patch that moto still needs it, so an upgrade
tells whether a patch can go.
"""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from typing import Any, Final, cast

from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
    WaitFunction,
)
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

__all__ = ["apply", "is_applied", "real_waits", "revert", "scale_waits", "wait_factor"]

_MISSING: Final = object()
#: How long a stop waits for a just-started execution to be running.
_START_GRACE_S: Final = 5.0
_lock = threading.Lock()
#: (owner, attribute) -> what the owner itself held before the patch (_MISSING if inherited).
_originals: dict[tuple[object, str], Any] = {}
_wait_factor = 1.0


def _patch(owner: object, name: str, replacement: Any) -> None:
    key = (owner, name)
    if key not in _originals:
        _originals[key] = vars(owner).get(name, _MISSING)
    setattr(owner, name, replacement)


def _unpatch(owner: object, name: str) -> None:
    original = _originals.pop((owner, name), _MISSING)
    if original is _MISSING:
        if name in vars(owner):
            delattr(owner, name)
    else:
        setattr(owner, name, original)


def _original(owner: object, name: str) -> Any:
    return _originals[(owner, name)]


def _start_execution(
    self: StepFunctionsParserBackend,
    state_machine_arn: str,
    name: str | None = None,
    execution_input: str | None = None,
    trace_header: str | None = None,
) -> Execution:
    original = _original(StepFunctionsParserBackend, "start_execution")
    execution = original(
        self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header
    )
    return cast("Execution", execution)


def _iso_timestamp(moment: datetime.datetime) -> str:
    """The form AWS uses in the context object: UTC, milliseconds, ``Z``."""
    utc = moment.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _get_start_execution_details(self: Execution) -> Any:
    details = _original(Execution, "get_start_execution_details")(self)
    if isinstance(details.start_time, datetime.datetime):
        details.start_time = _iso_timestamp(details.start_time)
    return details


def _stop_worker(
    self: ExecutionWorker, stop_date: datetime.datetime, error: str | None, cause: str | None
) -> None:
    # moto builds the execution's environment and sets it running in worker threads; a stop
    # that arrives before then crashes (no environment yet) or is ignored (not running yet), so
    # give those threads a moment first.
    deadline = time.monotonic() + _START_GRACE_S
    while time.monotonic() < deadline and (self.env is None or self.env.program_state() is None):
        time.sleep(0.001)
    _original(ExecutionWorker, "stop")(self, stop_date=stop_date, error=error, cause=cause)


_PATCHES: Final = (
    (StepFunctionsParserBackend, "start_execution", _start_execution),
    (Execution, "get_start_execution_details", _get_start_execution_details),
    (ExecutionWorker, "stop", _stop_worker),
)


def apply() -> None:
    """Fix the interpreter bugs described above (idempotent)."""
    with _lock:
        for owner, name, replacement in _PATCHES:
            _patch(owner, name, replacement)


def is_applied() -> bool:
    """Whether :func:`apply` is in effect."""
    with _lock:
        return (StepFunctionsParserBackend, "start_execution") in _originals


def revert() -> None:
    """Undo :func:`apply` (idempotent)."""
    with _lock:
        for owner, name, _ in _PATCHES:
            _unpatch(owner, name)


def _scaled_wait_interval(self: WaitFunction, env: Any, wait_seconds: float) -> None:
    # Replaces moto's loop, which re-waits until a whole second has elapsed and so could never
    # finish a wait shorter than a second.
    deadline = time.monotonic() + wait_seconds * _wait_factor
    while env.is_running():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        env.program_state_event.wait(remaining)


class _RetryClock:
    """Stands in for the ``time`` module inside moto's retrier, which only calls ``sleep``."""

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds * _wait_factor)


def scale_waits(factor: float) -> None:
    """Make Wait states and Retry intervals last ``factor`` times as long (0: no waiting).

    ``TimeoutSeconds`` and ``HeartbeatSeconds`` keep real time.
    """
    global _wait_factor  # noqa: PLW0603 - the patched code reads it at call time
    if factor < 0:
        raise ValueError(f"wait factor must not be negative, got {factor}")
    with _lock:
        _wait_factor = factor
        _patch(WaitFunction, "_wait_interval", _scaled_wait_interval)
        _patch(retrier_decl, "time", _RetryClock)


def wait_factor() -> float | None:
    """The factor set by :func:`scale_waits`, or None while moto waits in real time."""
    with _lock:
        return _wait_factor if (WaitFunction, "_wait_interval") in _originals else None


def real_waits() -> None:
    """Undo :func:`scale_waits`: moto's own waiting code again."""
    global _wait_factor  # noqa: PLW0603
    with _lock:
        _wait_factor = 1.0
        _unpatch(WaitFunction, "_wait_interval")
        _unpatch(retrier_decl, "time")
