"""Test-wide guards: no test reaches the internet; unit tests open no socket at all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket, socket_allow_hosts

from erphub import faults

LOOPBACK = ["127.0.0.1", "localhost", "::1"]


@pytest.fixture(autouse=True)
def _network_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("integration"):
        enable_socket()
        socket_allow_hosts(LOOPBACK, allow_unix_socket=True)
    else:
        disable_socket(allow_unix_socket=True)
    yield
    enable_socket()


@pytest.fixture(autouse=True)
def _aws_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region: nothing a test does can touch a real AWS account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "erphub")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "erphub")


@pytest.fixture(autouse=True)
def _no_armed_faults() -> Iterator[None]:
    faults.disarm_all()
    yield
    faults.disarm_all()
