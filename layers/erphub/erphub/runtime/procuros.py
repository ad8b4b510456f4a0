"""The dependencies of the ERP -> Procuros steps (list, send) and of their schedule."""

from __future__ import annotations

from functools import cache, partial
from typing import TYPE_CHECKING

import boto3

from erphub.runtime import build_erp, build_ledger, build_payloads
from erphub.settings.procuros import (
    ProcurosListSettings,
    ProcurosScheduleSettings,
    ProcurosSendSettings,
    procuros_credentials,
)

if TYPE_CHECKING:
    from erphub.clients.procuros import HttpProcurosClient
    from erphub.clients.workflows import StepFunctionsStarter
    from erphub.flows.procuros_list import ListDeps
    from erphub.flows.procuros_send_chunk import SendDeps
    from erphub.settings import HttpSettings
    from erphub.settings.procuros import ProcurosSettings


def _procuros(settings: ProcurosSettings, http: HttpSettings) -> HttpProcurosClient:
    from erphub.clients.procuros import HttpProcurosClient  # noqa: PLC0415 - imported when built

    credentials = procuros_credentials(settings.procuros_secret_arn, settings.procuros_api_token)
    return HttpProcurosClient(
        str(settings.procuros_base_url),
        credentials.api_token,
        **http.client_options(),
    )


@cache
def _procuros_history(settings: ProcurosListSettings) -> HttpProcurosClient:
    """The list step's Procuros client, built (and its secret read) by the first dry run."""
    return _procuros(settings, settings)


@cache
def _procuros_list_deps(settings: ProcurosListSettings) -> ListDeps:
    from erphub.flows.procuros_list import ListDeps  # noqa: PLC0415 - imported when built
    from erphub.procuros_mapping import load_mapping as procuros_mapping  # noqa: PLC0415 - imported when built

    return ListDeps(
        erp=build_erp(settings, settings),
        ledger=build_ledger(settings),
        payloads=build_payloads(settings),
        lease_seconds=settings.lease_seconds,
        document_types=settings.document_types,
        mapping=procuros_mapping(settings.procuros_mapping),
        error_report_after=settings.procuros_error_report_after,
        procuros=partial(_procuros_history, settings),
        known_partners_days=settings.procuros_known_partners_days,
    )


@cache
def _procuros_send_deps(settings: ProcurosSendSettings) -> SendDeps:
    from erphub.flows.procuros_send import SEND_ATTEMPTS  # noqa: PLC0415 - imported when built
    from erphub.flows.procuros_send_chunk import SendDeps  # noqa: PLC0415 - imported when built
    from erphub.procuros_mapping import load_mapping as procuros_mapping  # noqa: PLC0415 - imported when built

    return SendDeps(
        erp=build_erp(settings, settings),
        procuros=_procuros(settings, settings),
        ledger=build_ledger(settings),
        payloads=build_payloads(settings),
        error_report_after=settings.procuros_error_report_after,
        send_attempts=min(settings.http_max_attempts, SEND_ATTEMPTS),
        retry_wait_seconds=settings.http_backoff_seconds,
        max_wait_seconds=settings.http_max_retry_after_seconds,
        mapping=procuros_mapping(settings.procuros_mapping),
    )


@cache
def _procuros_starter(settings: ProcurosScheduleSettings) -> StepFunctionsStarter:
    from erphub.clients.workflows import StepFunctionsStarter  # noqa: PLC0415 - imported when built

    client = boto3.client("stepfunctions", endpoint_url=settings.aws_endpoint_url)
    return StepFunctionsStarter(client, settings.procuros_send_state_machine_arn)


def procuros_list_deps() -> ListDeps:
    """The Procuros list step's dependencies."""
    return _procuros_list_deps(ProcurosListSettings.from_env())


def procuros_send_deps() -> SendDeps:
    """The Procuros send step's dependencies."""
    return _procuros_send_deps(ProcurosSendSettings.from_env())


def procuros_execution_starter() -> StepFunctionsStarter:
    """Starts executions of the Procuros send state machine."""
    return _procuros_starter(ProcurosScheduleSettings.from_env())
