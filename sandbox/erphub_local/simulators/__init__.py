"""Loopback HTTP simulators of the external systems the hub talks to."""

from erphub_local.simulators.base import Call, Fault, Simulator
from erphub_local.simulators.erp import ErpApiError, ErpSimulator, Problem
from erphub_local.simulators.rossum import RossumApiError, RossumSimulator

__all__ = [
    "Call",
    "ErpApiError",
    "ErpSimulator",
    "Fault",
    "Problem",
    "RossumApiError",
    "RossumSimulator",
    "Simulator",
]
