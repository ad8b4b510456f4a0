"""Fixtures: the Rossum and ERP simulators, started on 127.0.0.1 and stopped after each test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from erphub_local.simulators import ErpSimulator, RossumSimulator

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def rossum_sim() -> Iterator[RossumSimulator]:
    """A running Rossum simulator with the default demo credentials."""
    with RossumSimulator() as sim:
        yield sim


@pytest.fixture
def erp_sim() -> Iterator[ErpSimulator]:
    """A running ERP simulator with the default token ``erp-local-token``."""
    with ErpSimulator() as sim:
        yield sim
