"""A tiny base for simulators that are real HTTP servers on the loopback interface.

Each simulator is a Flask app served by werkzeug's threaded development server in a daemon
thread. The base adds a request log, fault injection (error statuses, ``Retry-After``, "stored
but the client saw an error", dropped connections) and a fixed per-request latency.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from flask import Flask, Response, g, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from types import TracebackType

    from werkzeug.serving import BaseWSGIServer

__all__ = ["Call", "Fault", "JsonApiError", "Simulator"]

#: Status reported in the request log for a connection closed without any response.
RESET_STATUS = 0


class JsonApiError(Exception):
    """Raised inside a view to answer with ``status``, a JSON ``body`` and ``headers``."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _json_error(error: JsonApiError) -> Response:
    response = jsonify(error.body)
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


@dataclass(frozen=True)
class Call:
    """One request as the simulator saw it (logged once the outcome is known)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int = RESET_STATUS
    faulted: bool = False


@dataclass
class Fault:
    """A planned failure, served to the next ``times`` matching requests.

    ``after_processing`` lets the request take full effect and only then replaces the real
    response, the way a server that stored the data but failed on the way back looks to a
    client. ``reset_connection`` closes the socket without any response instead.
    """

    status: int
    times: int = 1
    method: str | None = None
    path_prefix: str | None = None
    retry_after: float | None = None
    after_processing: bool = False
    reset_connection: bool = False

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not print one access-log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class Simulator:
    """Base class: owns the Flask app, the server thread, the request log and the faults."""

    name = "simulator"

    def __init__(self, *, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.app = Flask(f"erphub-{self.name}")
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._faults: list[Fault] = []
        self._faults_served = 0
        self._retry_after_violations = 0
        self._not_before = 0.0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.app.register_error_handler(JsonApiError, _json_error)
        self.app.before_request(self._before_request)
        self.app.after_request(self._after_request)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start serving on 127.0.0.1 with an ephemeral port; returns ``self``."""
        with self._lock:
            if self._server is not None:
                return self
            server = make_server(
                "127.0.0.1", 0, self.app, threaded=True, request_handler=_QuietHandler
            )
            # A short poll interval keeps stop() fast: shutdown() waits for the next poll.
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"{self.name}-http",
                daemon=True,
            )
            self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread to finish."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the HTTP server is up."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound TCP port (only while running)."""
        if self._server is None:
            raise RuntimeError(f"{self.name} simulator is not running")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    # ----------------------------------------------------------------- request log

    @property
    def calls(self) -> list[Call]:
        """A snapshot of the request log, in completion order."""
        with self._lock:
            return list(self._calls)

    def count(self, method: str, path_prefix: str | None = None) -> int:
        """How many logged requests used ``method`` (and a path starting with the prefix)."""
        return sum(
            1
            for call in self.calls
            if call.method == method.upper()
            and (path_prefix is None or call.path.startswith(path_prefix))
        )

    def clear_calls(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._calls.clear()

    # ----------------------------------------------------------------- faults

    def inject(self, *faults: Fault) -> None:
        """Queue faults; they are consumed in order by the requests they match."""
        with self._lock:
            for fault in faults:
                if fault.times < 1:
                    raise ValueError("Fault.times must be at least 1")
                self._faults.append(fault)

    def clear_faults(self) -> None:
        """Drop all pending faults."""
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many fault responses are still queued."""
        with self._lock:
            return sum(fault.times for fault in self._faults)

    @property
    def faults_served(self) -> int:
        """How many requests got an injected fault instead of the real response."""
        with self._lock:
            return self._faults_served

    @property
    def retry_after_violations(self) -> int:
        """Requests that arrived before the ``Retry-After`` of an earlier fault had elapsed."""
        with self._lock:
            return self._retry_after_violations

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        del self._faults[index]
                    self._faults_served += 1
                    return fault
        return None

    def fault_body(self, status: int) -> dict[str, Any]:
        """JSON body of an injected error response; subclasses use their API's error shape."""
        return {"error": f"injected_{status}"}

    # ----------------------------------------------------------------- hooks

    def _before_request(self) -> Response | None:
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        with self._lock:
            if time.monotonic() < self._not_before:
                self._retry_after_violations += 1
        fault = self._take_fault(request.method, request.path)
        if fault is None:
            return None
        if fault.after_processing:
            g.fault = fault
            return None
        return self._serve_fault(fault)

    def _after_request(self, response: Response) -> Response:
        fault: Fault | None = g.pop("fault", None)
        if fault is not None:
            return self._serve_fault(fault)
        self._log(response.status_code, faulted=g.get("faulted", False))
        return response

    def _serve_fault(self, fault: Fault) -> Response:
        g.faulted = True
        if fault.reset_connection:
            self._log(RESET_STATUS, faulted=True)
            self._drop_connection()
            # werkzeug fails to write this (broken pipe) and treats it as a dropped connection.
            return Response(b"", status=fault.status)
        response = jsonify(self.fault_body(fault.status))
        response.status_code = fault.status
        if fault.retry_after is not None:
            response.headers["Retry-After"] = _format_seconds(fault.retry_after)
            with self._lock:
                self._not_before = max(self._not_before, time.monotonic() + fault.retry_after)
        self._log(fault.status, faulted=True)
        # Flask still runs after_request for responses returned from before_request.
        g.logged = True
        return response

    def _log(self, status: int, *, faulted: bool) -> None:
        if g.get("logged", False):
            return
        g.logged = True
        call = Call(
            method=request.method,
            path=request.path,
            query=request.args.to_dict(),
            body=_request_body(),
            status=status,
            faulted=faulted,
        )
        with self._lock:
            self._calls.append(call)

    @staticmethod
    def _drop_connection() -> None:
        sock = request.environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            # If the socket is already gone the client sees the same thing.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _request_body() -> Any:
    """The JSON body, else the form fields, else ``None``."""
    body = request.get_json(silent=True)
    if body is not None:
        return body
    if request.form:
        return request.form.to_dict()
    return None


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
