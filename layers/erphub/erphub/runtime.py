"""Builds each step's dependencies from its settings, once per warm container.

Handlers call these at invocation time, not import time, so a cold start fails with a clear
settings error and tests can swap the environment between stacks. The cache is keyed by the
(frozen) settings, so a changed environment builds new adapters.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3

from erphub.clients.erp import HttpErpGateway
from erphub.clients.rossum import SdkRossumClient
from erphub.clients.workflows import StepFunctionsStarter
from erphub.flows.rossum_export import FinalizeDeps, PollDeps, PushDeps
from erphub.ledger import Ledger
from erphub.payloads import PayloadStore
from erphub.secrets import erp_credentials, rossum_credentials
from erphub.settings import (
    ErpSettings,
    FinalizeSettings,
    HttpSettings,
    PollSettings,
    PushSettings,
    RossumSettings,
    ScheduleSettings,
    StoreSettings,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource


@cache
def _dynamodb(endpoint: str | None) -> DynamoDBServiceResource:
    return boto3.resource("dynamodb", endpoint_url=endpoint)


def _ledger(settings: StoreSettings) -> Ledger:
    return Ledger(_dynamodb(settings.aws_endpoint_url).Table(settings.ledger_table))


def _payloads(settings: StoreSettings) -> PayloadStore:
    client = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    return PayloadStore(client, settings.payload_bucket)


def _rossum(settings: RossumSettings, http: HttpSettings) -> SdkRossumClient:
    credentials = rossum_credentials(
        settings.rossum_secret_arn, settings.rossum_username, settings.rossum_password
    )
    return SdkRossumClient(
        str(settings.rossum_base_url),
        credentials.username,
        credentials.password,
        timeout=http.http_timeout_seconds,
        max_attempts=http.http_max_attempts,
        backoff=http.http_backoff_seconds,
        max_retry_after=http.http_max_retry_after_seconds,
    )


def _erp(settings: ErpSettings, http: HttpSettings) -> HttpErpGateway:
    credentials = erp_credentials(settings.erp_secret_arn, settings.erp_api_token)
    return HttpErpGateway(
        str(settings.erp_base_url),
        credentials.api_token,
        timeout=http.http_timeout_seconds,
        max_attempts=http.http_max_attempts,
        backoff=http.http_backoff_seconds,
        max_retry_after=http.http_max_retry_after_seconds,
    )


@cache
def _poll_deps(settings: PollSettings) -> PollDeps:
    return PollDeps(
        rossum=_rossum(settings, settings),
        ledger=_ledger(settings),
        payloads=_payloads(settings),
        lease_seconds=settings.lease_seconds,
    )


@cache
def _push_deps(settings: PushSettings) -> PushDeps:
    return PushDeps(
        erp=_erp(settings, settings), ledger=_ledger(settings), payloads=_payloads(settings)
    )


@cache
def _finalize_deps(settings: FinalizeSettings) -> FinalizeDeps:
    return FinalizeDeps(
        rossum=_rossum(settings, settings),
        ledger=_ledger(settings),
        payloads=_payloads(settings),
        reject_policy=settings.reject_policy,
        reject_attempts=settings.reject_attempts,
    )


@cache
def _starter(settings: ScheduleSettings) -> StepFunctionsStarter:
    client = boto3.client("stepfunctions", endpoint_url=settings.aws_endpoint_url)
    return StepFunctionsStarter(client, settings.rossum_export_state_machine_arn)


def poll_deps() -> PollDeps:
    """The poll step's dependencies."""
    return _poll_deps(PollSettings())


def push_deps() -> PushDeps:
    """The push step's dependencies."""
    return _push_deps(PushSettings())


def finalize_deps() -> FinalizeDeps:
    """The finalize step's dependencies."""
    return _finalize_deps(FinalizeSettings())


def schedule_settings() -> ScheduleSettings:
    """The scheduler's settings."""
    return ScheduleSettings()


def execution_starter(settings: ScheduleSettings) -> StepFunctionsStarter:
    """Starts executions of the Rossum export state machine."""
    return _starter(settings)
