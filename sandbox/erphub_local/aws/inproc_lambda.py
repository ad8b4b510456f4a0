"""Run Lambda functions as in-process Python handlers under moto.

Every path by which moto invokes a Lambda function (the Invoke API, Step Functions tasks, S3
notifications, SQS event sources, SNS) ends in ``LambdaFunction._invoke_lambda``, which would
start a Docker container. :func:`install` replaces it: the function is looked up in a registry
filled by the provisioner (:func:`register`) and its handler runs in this process with the
function's Environment applied to ``os.environ`` for the duration of the call. What handlers
write to stdout/stderr (Powertools logs, EMF metrics, prints) goes to a log file instead of the
terminal; other threads keep printing to the terminal.

Differences from AWS worth knowing:

* calls are serialised by one lock (moto is not thread-safe and ``os.environ`` is shared), so
  Map/Parallel branches run their Lambdas one at a time; while installed, ``os.environ`` reads
  whole-environment views from consistent snapshots (see :class:`_GuardedEnviron`);
* all functions share one interpreter, so module-level state of shared packages is shared too
  (each handler module itself is loaded once per function);
* ``Timeout`` is reported by the context but not enforced.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from moto.awslambda.models import LambdaFunction

from erphub.faults import InjectedCrash

if TYPE_CHECKING:
    from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
    from types import ModuleType

__all__ = [
    "INVOCATIONS",
    "FunctionSpec",
    "Invocation",
    "LambdaContext",
    "LogFileHandler",
    "captured_output",
    "clear_registry",
    "install",
    "installed",
    "lock",
    "register",
    "reset",
    "uninstall",
]

#: Lambda's own error types for failures of the runtime rather than of the handler.
EXIT_ERROR: Final = "Runtime.ExitError"
IMPORT_ERROR: Final = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND: Final = "Runtime.HandlerNotFound"
MARSHAL_ERROR: Final = "Runtime.MarshalError"
TIMED_OUT: Final = "Sandbox.Timedout"


@dataclass(frozen=True)
class FunctionSpec:
    """What the runtime needs to know about one function."""

    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, str] = field(default_factory=dict)
    timeout: int = 3
    memory: int = 128


@dataclass(frozen=True)
class Invocation:
    """One finished invocation, as recorded in :data:`INVOCATIONS`."""

    function: str
    request_id: str
    duration_ms: float
    errored: bool
    error_type: str | None


class LambdaContext:
    """The parts of the Lambda context object that handlers and Powertools use."""

    def __init__(
        self, function_name: str, function_arn: str, spec: FunctionSpec, request_id: str
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = spec.memory
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's Timeout (informative only here)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


#: Every invocation since the last :func:`reset`, oldest first.
INVOCATIONS: list[Invocation] = []

_lock = threading.RLock()
_state_lock = threading.Lock()
_registry: dict[str, FunctionSpec] = {}
_modules: dict[str, ModuleType] = {}
_original_invoke: Any = None
_handler_thread = threading.local()


def lock() -> threading.RLock:
    """The lock that serialises handler calls (hold it to wait for a running handler)."""
    return _lock


def register(spec: FunctionSpec, *names: str) -> None:
    """Make ``spec`` the code of the function known by each of ``names`` (name and/or ARN).

    Registering again drops the loaded module, so the next call is a cold start.
    """
    with _state_lock:
        for name in names:
            _registry[name] = spec
        _drop_module(spec.logical_id)


def clear_registry() -> None:
    """Forget every registered function and loaded handler module."""
    with _state_lock:
        for logical_id in {spec.logical_id for spec in _registry.values()}:
            _drop_module(logical_id)
        _registry.clear()


def _drop_module(logical_id: str) -> None:
    module = _modules.pop(logical_id, None)
    if module is not None:
        sys.modules.pop(module.__name__, None)


# --- handler output ------------------------------------------------------------------------------


class _Sink:
    """Where handler output goes: a log file, or memory when there is none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._file: TextIO | None = None
        self._memory = io.StringIO()

    def open(self, path: Path | None) -> None:
        with self._lock:
            self._close()
            self._memory = io.StringIO()
            self._path = path
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("w", encoding="utf-8")

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, text: str) -> None:
        with self._lock:
            if self._file is not None:
                self._file.write(text)
                self._file.flush()
            else:
                self._memory.write(text)

    def text(self) -> str:
        with self._lock:
            if self._path is not None:
                return self._path.read_text(encoding="utf-8") if self._path.exists() else ""
            return self._memory.getvalue()

    def clear(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.seek(0)
                self._file.truncate()
            self._memory = io.StringIO()


_sink = _Sink()


class _ThreadRouter(io.TextIOBase):
    """Sends what a handler writes to the sink and everything else to the stream it replaced.

    The decision is per thread, so a test or CLI printing from another thread while a handler
    runs still reaches the terminal. Loggers that captured this object keep working after it has
    been replaced or removed.
    """

    def __init__(self, fallback: TextIO) -> None:
        super().__init__()
        self.fallback = fallback

    def write(self, text: str) -> int:
        if getattr(_handler_thread, "depth", 0) > 0:
            _sink.write(text)
        else:
            self.fallback.write(text)
        return len(text)

    def flush(self) -> None:
        self.fallback.flush()

    def isatty(self) -> bool:
        return self.fallback.isatty()

    def fileno(self) -> int:
        return self.fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.fallback.encoding

    def writable(self) -> bool:
        return True


def _route_std_streams() -> None:
    # Checked on every call because pytest (and others) swap sys.stdout/sys.stderr freely.
    if not isinstance(sys.stdout, _ThreadRouter):
        sys.stdout = _ThreadRouter(sys.stdout)
    if not isinstance(sys.stderr, _ThreadRouter):
        sys.stderr = _ThreadRouter(sys.stderr)


def _unroute_std_streams() -> None:
    if isinstance(sys.stdout, _ThreadRouter):
        sys.stdout = sys.stdout.fallback
    if isinstance(sys.stderr, _ThreadRouter):
        sys.stderr = sys.stderr.fallback


def _route_log_handlers() -> None:
    """Point logging handlers that write to the real stdout/stderr at the routers.

    Powertools' Logger keeps the ``sys.stdout`` of the moment it was created; if that was before
    :func:`install` (a module imported early), its lines would bypass the routing.
    """
    routers = {
        id(stream.fallback): stream
        for stream in (sys.stdout, sys.stderr)
        if isinstance(stream, _ThreadRouter)
    }
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in routers:
                handler.setStream(routers[id(handler.stream)])


@contextmanager
def _handler_output() -> Iterator[None]:
    _route_std_streams()
    _route_log_handlers()
    _handler_thread.depth = getattr(_handler_thread, "depth", 0) + 1
    try:
        yield
    finally:
        _handler_thread.depth -= 1


class LogFileHandler(logging.Handler):
    """A logging handler that writes to the same place as the handlers' output.

    The local stack attaches it to moto's logger, whose interpreter threads log a full
    traceback for every failed execution.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _sink.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def captured_output() -> str:
    """Everything handlers wrote to stdout/stderr since :func:`install` or :func:`reset`."""
    return _sink.text()


# --- the invocation ------------------------------------------------------------------------------


_environ_lock = threading.RLock()


class _GuardedEnviron(os._Environ):  # type: ignore[type-arg]
    """``os.environ`` whose changes and whole-environment reads exclude each other.

    Every handler call sets, then removes, its function's variables while other threads run:
    moto's Step Functions threads and the caller create boto3 and httpx clients, and both read
    the proxy settings with ``os.environ.items()``. The stock mapping lists the keys first and
    reads each one after, so a variable removed in between raises ``KeyError`` in the reader.
    Here ``items()``, ``keys()``, ``values()`` and ``copy()`` read one consistent snapshot.
    """

    def __setitem__(self, key: str, value: str) -> None:
        with _environ_lock:
            super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        with _environ_lock:
            super().__delitem__(key)

    def snapshot(self) -> dict[str, str]:
        with _environ_lock:
            data: dict[bytes, bytes] = dict(self._data)  # type: ignore[attr-defined]
        return {self.decodekey(k): self.decodevalue(v) for k, v in data.items()}

    def copy(self) -> dict[str, str]:
        return self.snapshot()

    def items(self) -> ItemsView[str, str]:
        return self.snapshot().items()

    def keys(self) -> KeysView[str]:
        return self.snapshot().keys()

    def values(self) -> ValuesView[str]:
        return self.snapshot().values()


def _guard_environ() -> None:
    os.environ.__class__ = _GuardedEnviron


def _unguard_environ() -> None:
    os.environ.__class__ = os._Environ


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ``; afterwards put back exactly the keys it changed.

    Both changes are made as one step, so other threads see the environment before or after.
    """
    with _environ_lock:
        previous = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
    try:
        yield
    finally:
        with _environ_lock:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _runtime_environment(fn: LambdaFunction, spec: FunctionSpec) -> dict[str, str]:
    """The variables the Lambda runtime sets, then the function's own (the moto copy wins, so
    ``update_function_configuration`` behaves as on AWS)."""
    region = str(fn.region)
    return {
        "AWS_LAMBDA_FUNCTION_NAME": str(fn.function_name),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.function_name}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "_HANDLER": spec.handler,
        **spec.environment,
        **{str(k): str(v) for k, v in (fn.environment_vars or {}).items()},
    }


class _RuntimeError(Exception):
    """A failure Lambda reports with one of its own ``Runtime.*`` error types."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _load_handler(spec: FunctionSpec) -> Callable[[Any, LambdaContext], Any]:
    module_path, _, attribute = spec.handler.rpartition(".")
    if not module_path:
        raise _RuntimeError(HANDLER_NOT_FOUND, f"Bad handler '{spec.handler}'")
    module = _modules.get(spec.logical_id)
    if module is None:
        module = _import_module(spec, module_path)
        _modules[spec.logical_id] = module
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise _RuntimeError(
            HANDLER_NOT_FOUND, f"Handler '{attribute}' missing on module '{module_path}'"
        )
    return handler  # type: ignore[no-any-return]


def _import_module(spec: FunctionSpec, module_path: str) -> ModuleType:
    """Import ``code_dir/<module>.py`` under a name private to the function (several
    functions have an ``app.py``)."""
    source = spec.code_dir.joinpath(*module_path.split(".")).with_suffix(".py")
    unique_name = f"_erphub_lambda_{spec.logical_id}_{module_path.replace('.', '_')}"
    if not source.is_file():
        raise _RuntimeError(
            IMPORT_ERROR, f"Unable to import module '{module_path}': no file {source}"
        )
    import_spec = importlib.util.spec_from_file_location(unique_name, source)
    if import_spec is None or import_spec.loader is None:
        raise _RuntimeError(IMPORT_ERROR, f"Unable to import module '{module_path}'")
    module = importlib.util.module_from_spec(import_spec)
    # Registered before running it, as a normal import would (dataclasses and pydantic look
    # their module up in sys.modules).
    sys.modules[unique_name] = module
    try:
        import_spec.loader.exec_module(module)
    except (ImportError, SyntaxError) as exc:
        sys.modules.pop(unique_name, None)
        raise _RuntimeError(
            IMPORT_ERROR, f"Unable to import module '{module_path}': {exc}"
        ) from exc
    except BaseException:
        sys.modules.pop(unique_name, None)
        raise
    return module


def _error_payload(
    error_type: str, message: str, request_id: str, exc: BaseException | None
) -> str:
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": traceback.format_tb(exc.__traceback__) if exc is not None else [],
        }
    )


def _call(fn: LambdaFunction, spec: FunctionSpec, event: Any, request_id: str) -> str:
    """Run the handler; the result payload, or raise what Lambda would report."""
    context = LambdaContext(str(fn.function_name), str(fn.function_arn), spec, request_id)
    handler = _load_handler(spec)
    result = handler(event, context)
    try:
        return json.dumps(result)
    except (TypeError, ValueError) as exc:
        raise _RuntimeError(MARSHAL_ERROR, f"Unable to marshal response: {exc}") from exc


def _invoke(fn: LambdaFunction, event: Any, spec: FunctionSpec) -> tuple[str, str | None]:
    """(payload, error type or None), with the handler's output routed to the sink."""
    request_id = str(uuid.uuid4())
    _sink.write(f"START RequestId: {request_id} Function: {fn.function_name}\n")
    started = time.perf_counter()
    error_type: str | None = None
    try:
        with _handler_output(), _environment(_runtime_environment(fn, spec)):
            payload = _call(fn, spec, event, request_id)
    except _RuntimeError as exc:
        error_type = exc.error_type
        payload = _error_payload(error_type, str(exc), request_id, exc)
    except Exception as exc:  # noqa: BLE001 - reported like Lambda's unhandled errors
        error_type = type(exc).__name__
        payload = _error_payload(error_type, str(exc), request_id, exc)
    except (InjectedCrash, SystemExit) as exc:
        # The runtime process died: Lambda knows nothing about the exception itself.
        error_type = EXIT_ERROR
        message = (
            f"RequestId: {request_id} Error: Runtime exited with error: exit status 1 "
            f"({type(exc).__name__}: {exc})"
        )
        payload = _error_payload(error_type, message, request_id, None)
    duration_ms = (time.perf_counter() - started) * 1000
    outcome = f"ERROR {error_type}" if error_type else "OK"
    _sink.write(f"END RequestId: {request_id} Duration: {duration_ms:.2f} ms {outcome}\n")
    with _state_lock:
        INVOCATIONS.append(
            Invocation(spec.logical_id, request_id, duration_ms, error_type is not None, error_type)
        )
    return payload, error_type


def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    """Replacement for ``LambdaFunction._invoke_lambda``: (payload, errored, logs)."""
    with _state_lock:
        spec = _registry.get(str(self.function_name)) or _registry.get(str(self.function_arn))
    if spec is None:
        message = f"function {self.function_name} is not registered with the local runtime"
        return _error_payload(IMPORT_ERROR, message, str(uuid.uuid4()), None), True, ""
    # Wait as long as the function could run on AWS; failing beats hanging forever when a
    # handler synchronously triggers another Lambda through the moto server (a deadlock here).
    if not _lock.acquire(timeout=max(spec.timeout, 1)):
        message = f"Task timed out after {spec.timeout} seconds waiting for another local handler"
        return _error_payload(TIMED_OUT, message, str(uuid.uuid4()), None), True, ""
    # moto hands over the string "{}" when the Invoke request had no payload; Lambda gives {}.
    if event is None or event == "{}":
        event = {}
    try:
        payload, error_type = _invoke(self, event, spec)
    finally:
        _lock.release()
    return payload, error_type is not None, ""


def install(log_path: Path | None = None) -> None:
    """Route every Lambda invocation to the in-process runtime (idempotent).

    Handler output goes to ``log_path`` (truncated now) or, without one, to memory; read it with
    :func:`captured_output`.
    """
    global _original_invoke  # noqa: PLW0603 - one patch per process
    with _state_lock:
        if _original_invoke is None:
            _original_invoke = vars(LambdaFunction)["_invoke_lambda"]
            setattr(LambdaFunction, "_invoke_lambda", _invoke_lambda)  # noqa: B010
            _guard_environ()
    _sink.open(log_path)


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    with _state_lock:
        return _original_invoke is not None


def uninstall() -> None:
    """Give moto its own ``_invoke_lambda`` back, restore stdout/stderr, close the log."""
    global _original_invoke  # noqa: PLW0603
    with _state_lock:
        if _original_invoke is not None:
            setattr(LambdaFunction, "_invoke_lambda", _original_invoke)  # noqa: B010
            _original_invoke = None
            _unguard_environ()
    _unroute_std_streams()
    _sink.close()


def reset() -> None:
    """Forget recorded invocations and captured output."""
    with _state_lock:
        INVOCATIONS.clear()
    _sink.clear()
