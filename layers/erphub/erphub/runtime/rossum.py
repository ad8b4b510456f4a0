"""The Rossum export's dependencies: poll, push, finalize and the schedule."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3

from erphub.runtime import build_erp, build_ledger, build_payloads
from erphub.settings.rossum import (
    FinalizeSettings,
    PollSettings,
    PushSettings,
    ScheduleSettings,
    rossum_credentials,
)

if TYPE_CHECKING:
    from erphub.clients.rossum import SdkRossumClient
    from erphub.clients.workflows import StepFunctionsStarter
    from erphub.flows.rossum_finalize import FinalizeDeps
    from erphub.flows.rossum_poll import PollDeps
    from erphub.flows.rossum_push import PushDeps
    from erphub.settings import HttpSettings
    from erphub.settings.rossum import RossumSettings


def _rossum(settings: RossumSettings, http: HttpSettings) -> SdkRossumClient:
    from erphub.clients.rossum import SdkRossumClient  # noqa: PLC0415 - imported when built

    credentials = rossum_credentials(
        settings.rossum_secret_arn, settings.rossum_username, settings.rossum_password
    )
    return SdkRossumClient(
        str(settings.rossum_base_url),
        credentials.username,
        credentials.password,
        **http.client_options(),
    )


@cache
def _poll_deps(settings: PollSettings) -> PollDeps:
    from erphub.flows.rossum_poll import PollDeps  # noqa: PLC0415 - imported when built

    return PollDeps(
        rossum=_rossum(settings, settings),
        ledger=build_ledger(settings),
        payloads=build_payloads(settings),
        lease_seconds=settings.lease_seconds,
    )


@cache
def _push_deps(settings: PushSettings) -> PushDeps:
    from erphub.flows.rossum_push import PushDeps  # noqa: PLC0415 - imported when built
    from erphub.mapping import load_mapping as rossum_mapping  # noqa: PLC0415 - imported when built

    return PushDeps(
        concurrency=settings.erp_concurrency,
        erp=build_erp(settings, settings),
        payloads=build_payloads(settings),
        mapping=rossum_mapping(settings.rossum_mapping),
    )


@cache
def _finalize_deps(settings: FinalizeSettings) -> FinalizeDeps:
    from erphub.flows.rossum_finalize import FinalizeDeps  # noqa: PLC0415 - imported when built

    return FinalizeDeps(
        rossum=_rossum(settings, settings),
        ledger=build_ledger(settings),
        payloads=build_payloads(settings),
        reject_policy=settings.reject_policy,
        reject_attempts=settings.reject_attempts,
    )


@cache
def _starter(settings: ScheduleSettings) -> StepFunctionsStarter:
    from erphub.clients.workflows import StepFunctionsStarter  # noqa: PLC0415 - imported when built

    client = boto3.client("stepfunctions", endpoint_url=settings.aws_endpoint_url)
    return StepFunctionsStarter(client, settings.rossum_export_state_machine_arn)


def poll_deps() -> PollDeps:
    """The poll step's dependencies."""
    return _poll_deps(PollSettings.from_env())


def push_deps() -> PushDeps:
    """The push step's dependencies."""
    return _push_deps(PushSettings.from_env())


def finalize_deps() -> FinalizeDeps:
    """The finalize step's dependencies."""
    return _finalize_deps(FinalizeSettings.from_env())


def schedule_settings() -> ScheduleSettings:
    """The scheduler's settings."""
    return ScheduleSettings.from_env()


def execution_starter(settings: ScheduleSettings) -> StepFunctionsStarter:
    """Starts executions of the Rossum export state machine."""
    return _starter(settings)
