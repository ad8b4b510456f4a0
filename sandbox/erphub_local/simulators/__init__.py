"""Loopback HTTP simulators of the external systems the hub talks to."""

from erphub_local.simulators.base import Call, Fault, Simulator
from erphub_local.simulators.ebill import EbillApiError, EbillSimulator
from erphub_local.simulators.erp import ErpApiError, ErpSimulator, Problem
from erphub_local.simulators.procuros import ProcurosApiError, ProcurosSimulator
from erphub_local.simulators.rossum import RossumApiError, RossumSimulator

__all__ = [
    "Call",
    "EbillApiError",
    "EbillSimulator",
    "ErpApiError",
    "ErpSimulator",
    "Fault",
    "Problem",
    "ProcurosApiError",
    "ProcurosSimulator",
    "RossumApiError",
    "RossumSimulator",
    "Simulator",
]
