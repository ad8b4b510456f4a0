"""Simulators in a child process, for the timed runs of ``make bench``.

Locally the hub's handlers and the AWS emulation share one interpreter, and the simulators would
share it too; in production the external systems run elsewhere. So the bench starts them in a
child process: handling their requests does not take CPU from the run being timed. erphub and
the naive baseline talk to the same kind of child, over the same loopback sockets, with the same
simulated latency.

In the parent, each simulator is a proxy: reading an attribute (``calls``, ``api_url``) or calling
a method (``hub_env()``, ``statuses()``) asks the child, so the values must pickle.
"""

from __future__ import annotations

import importlib
import multiprocessing
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from multiprocessing.connection import Connection

#: How a simulator is built in the child: its class and keyword arguments.
Spec = tuple[type[Any], dict[str, Any]]

_CALLABLE = "callable"


def _load(qualified: str) -> Any:
    module, name = qualified.split(":")
    return getattr(importlib.import_module(module), name)


def _qualified(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _serve(
    conn: Connection,
    simulators: dict[str, tuple[str, dict[str, Any]]],
    seed: tuple[str, dict[str, Any]] | None,
) -> None:
    """The child: start the simulators, seed them, answer the parent until it says stop."""
    with ExitStack() as stack:
        sims = {
            name: stack.enter_context(_load(cls)(**kwargs))
            for name, (cls, kwargs) in simulators.items()
        }
        conn.send(_load(seed[0])(*sims.values(), **seed[1]) if seed else None)
        while (message := conn.recv()) is not None:
            name, attr, call = message
            try:
                value = getattr(sims[name], attr)
                if call is not None:
                    value = value(*call[0], **call[1])
                elif callable(value):
                    value = _CALLABLE
                conn.send(("ok", value))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
                conn.send(("error", f"{type(exc).__name__}: {exc}"))


class RemoteSimulator:
    """The parent's view of one simulator in the child."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn = conn
        self._name = name

    def _ask(self, attr: str, call: tuple[tuple[Any, ...], dict[str, Any]] | None) -> Any:
        self._conn.send((self._name, attr, call))
        status, value = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"{self._name}.{attr}: {value}")
        return value

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        value = self._ask(attr, None)
        if value == _CALLABLE:
            return lambda *args, **kwargs: self._ask(attr, (args, kwargs))
        return value


@contextmanager
def remote_simulators(
    simulators: dict[str, Spec],
    seed: tuple[Callable[..., Any], dict[str, Any]] | None = None,
) -> Iterator[tuple[dict[str, RemoteSimulator], Any]]:
    """Start ``simulators`` in a child process and seed them there; (proxies, seed's result).

    ``seed`` is a function of the simulators (in the order given) and its keyword arguments;
    what it returns comes back pickled.
    """
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve,
        args=(
            child,
            {name: (_qualified(cls), kwargs) for name, (cls, kwargs) in simulators.items()},
            (_qualified(seed[0]), seed[1]) if seed else None,
        ),
        name="bench-simulators",
        daemon=True,
    )
    process.start()
    try:
        while not parent.poll(0.5):
            if not process.is_alive():
                msg = f"the simulators' process exited with {process.exitcode} before it was ready"
                raise RuntimeError(msg)
        seeded = parent.recv()
        yield {name: RemoteSimulator(parent, name) for name in simulators}, seeded
    finally:
        if process.is_alive():
            parent.send(None)
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()
