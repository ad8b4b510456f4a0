"""The eBill upload's dependencies: its trigger, the steps that read the drop, those that talk
to eBill."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3

from erphub.runtime import build_ledger
from erphub.settings.ebill import (
    EbillDropSettings,
    EbillStepSettings,
    EbillTriggerSettings,
    ebill_credentials,
)

if TYPE_CHECKING:
    from erphub.clients.ebill import HttpEbillClient
    from erphub.files import FileStore
    from erphub.flows.ebill_trigger import TriggerDeps
    from erphub.flows.ebill_upload import DropDeps, EbillDeps, PollPolicy
    from erphub.settings import HttpSettings
    from erphub.settings.ebill import EbillPollSettings, EbillSettings


def ebill_client(settings: EbillSettings, http: HttpSettings) -> HttpEbillClient:
    """An eBill client with the configured credentials and auth scheme (not cached)."""
    from erphub.clients.ebill import HttpEbillClient, ebill_auth  # noqa: PLC0415 - imported when built

    credentials = ebill_credentials(
        settings.ebill_secret_arn, settings.ebill_username, settings.ebill_password
    )
    auth = ebill_auth(
        settings.ebill_auth_scheme.value,
        credentials.username,
        credentials.password,
        settings.ebill_auth_header,
    )
    return HttpEbillClient(
        str(settings.ebill_base_url),
        auth,
        **http.client_options(),
    )


def _files(endpoint: str | None) -> FileStore:
    from erphub.files import FileStore  # noqa: PLC0415 - imported when built

    return FileStore(boto3.client("s3", endpoint_url=endpoint))


def _poll_policy(settings: EbillPollSettings) -> PollPolicy:
    from erphub.flows.ebill_upload import PollPolicy  # noqa: PLC0415 - imported when built

    return PollPolicy(
        initial_seconds=settings.ebill_poll_initial_seconds,
        max_seconds=settings.ebill_poll_max_seconds,
        deadline_seconds=settings.ebill_poll_deadline_seconds,
    )


@cache
def _ebill_trigger_deps(settings: EbillTriggerSettings) -> TriggerDeps:
    from erphub.clients.workflows import StepFunctionsStarter  # noqa: PLC0415 - imported when built
    from erphub.flows.ebill_trigger import TriggerDeps  # noqa: PLC0415 - imported when built

    client = boto3.client("stepfunctions", endpoint_url=settings.aws_endpoint_url)
    return TriggerDeps(
        starter=StepFunctionsStarter(client, settings.ebill_upload_state_machine_arn),
        files=_files(settings.aws_endpoint_url),
        prefix=settings.ebill_drop_prefix,
    )


@cache
def _ebill_drop_deps(settings: EbillDropSettings) -> DropDeps:
    from erphub.flows.ebill_upload import DropDeps  # noqa: PLC0415 - imported when built

    return DropDeps(
        ledger=build_ledger(settings),
        files=_files(settings.aws_endpoint_url),
        lease_seconds=_poll_policy(settings).lease_seconds,
    )


@cache
def _ebill_deps(settings: EbillStepSettings) -> EbillDeps:
    from erphub.flows.ebill_upload import EbillDeps  # noqa: PLC0415 - imported when built

    return EbillDeps(
        ebill=ebill_client(settings, settings),
        ledger=build_ledger(settings),
        files=_files(settings.aws_endpoint_url),
        results_bucket=settings.payload_bucket,
        polling=_poll_policy(settings),
    )


def ebill_trigger_deps() -> TriggerDeps:
    """The eBill S3 trigger's dependencies."""
    return _ebill_trigger_deps(EbillTriggerSettings.from_env())


def ebill_drop_deps() -> DropDeps:
    """The dependencies of the eBill steps that need no eBill client (plan, failure)."""
    return _ebill_drop_deps(EbillDropSettings.from_env())


def ebill_deps() -> EbillDeps:
    """The dependencies of the eBill steps that talk to eBill."""
    return _ebill_deps(EbillStepSettings.from_env())
