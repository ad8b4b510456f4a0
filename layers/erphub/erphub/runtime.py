"""Builds each step's dependencies from its settings, once per warm container.

Adapters and flows are imported inside the builder that needs them, so this module loads none of
them; each handler imports the ones its builder uses at its cold start, and only those (the
Rossum SDK is not loaded by push or the eBill functions, and so on: see
tests/static/test_handler_imports.py).

Handlers call these at invocation time, not import time, so a cold start fails with a clear
settings error and tests can swap the environment between stacks. The cache is keyed by the
(frozen) settings, so a changed environment builds new adapters.
"""

from __future__ import annotations

from functools import cache, partial
from typing import TYPE_CHECKING

import boto3

from erphub.ledger import Ledger
from erphub.payloads import PayloadStore
from erphub.settings import (
    BeqomImportSettings,
    EbillDropSettings,
    EbillPollSettings,
    EbillSettings,
    EbillStepSettings,
    EbillTriggerSettings,
    ErpSettings,
    FinalizeSettings,
    HttpSettings,
    PollSettings,
    ProcurosListSettings,
    ProcurosScheduleSettings,
    ProcurosSendSettings,
    ProcurosSettings,
    PushSettings,
    RossumSettings,
    ScheduleSettings,
    StoreSettings,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

    from erphub.clients.ebill import HttpEbillClient
    from erphub.clients.erp import HttpErpGateway
    from erphub.clients.procuros import HttpProcurosClient
    from erphub.clients.rossum import SdkRossumClient
    from erphub.clients.workflows import StepFunctionsStarter
    from erphub.files import FileStore
    from erphub.flows.beqom_import import ImportDeps
    from erphub.flows.ebill_upload import DropDeps, EbillDeps, PollPolicy, TriggerDeps
    from erphub.flows.procuros_send import ListDeps, SendDeps
    from erphub.flows.rossum_finalize import FinalizeDeps
    from erphub.flows.rossum_poll import PollDeps
    from erphub.flows.rossum_push import PushDeps


@cache
def _dynamodb(endpoint: str | None) -> DynamoDBServiceResource:
    return boto3.resource("dynamodb", endpoint_url=endpoint)


def _ledger(settings: StoreSettings) -> Ledger:
    return Ledger(_dynamodb(settings.aws_endpoint_url).Table(settings.ledger_table))


def _payloads(settings: StoreSettings) -> PayloadStore:
    client = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    return PayloadStore(client, settings.payload_bucket)


def _rossum(settings: RossumSettings, http: HttpSettings) -> SdkRossumClient:
    from erphub.clients.rossum import SdkRossumClient  # noqa: PLC0415 - imported when built
    from erphub.secrets import rossum_credentials  # noqa: PLC0415 - imported when built

    credentials = rossum_credentials(
        settings.rossum_secret_arn, settings.rossum_username, settings.rossum_password
    )
    return SdkRossumClient(
        str(settings.rossum_base_url),
        credentials.username,
        credentials.password,
        **http.client_options(),
    )


def _erp(settings: ErpSettings, http: HttpSettings) -> HttpErpGateway:
    from erphub.clients.erp import HttpErpGateway  # noqa: PLC0415 - imported when built
    from erphub.secrets import erp_credentials  # noqa: PLC0415 - imported when built

    credentials = erp_credentials(settings.erp_secret_arn, settings.erp_api_token)
    return HttpErpGateway(
        str(settings.erp_base_url),
        credentials.api_token,
        **http.client_options(),
    )


@cache
def _poll_deps(settings: PollSettings) -> PollDeps:
    from erphub.flows.rossum_poll import PollDeps  # noqa: PLC0415 - imported when built

    return PollDeps(
        rossum=_rossum(settings, settings),
        ledger=_ledger(settings),
        payloads=_payloads(settings),
        lease_seconds=settings.lease_seconds,
    )


@cache
def _push_deps(settings: PushSettings) -> PushDeps:
    from erphub.flows.rossum_push import PushDeps  # noqa: PLC0415 - imported when built
    from erphub.mapping import load_mapping as rossum_mapping  # noqa: PLC0415 - imported when built

    return PushDeps(
        concurrency=settings.erp_concurrency,
        erp=_erp(settings, settings),
        payloads=_payloads(settings),
        mapping=rossum_mapping(settings.rossum_mapping),
    )


@cache
def _finalize_deps(settings: FinalizeSettings) -> FinalizeDeps:
    from erphub.flows.rossum_finalize import FinalizeDeps  # noqa: PLC0415 - imported when built

    return FinalizeDeps(
        rossum=_rossum(settings, settings),
        ledger=_ledger(settings),
        payloads=_payloads(settings),
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


# --- beqom Pay Suite document import ---------------------------------------------------------


@cache
def _beqom_import_deps(settings: BeqomImportSettings) -> ImportDeps:
    from erphub.clients.beqom import HttpBeqomClient  # noqa: PLC0415 - imported when built
    from erphub.clients.drops import S3DropFiles, SqsWorkQueue  # noqa: PLC0415 - imported when built
    from erphub.flows.beqom_import import ImportDeps  # noqa: PLC0415 - imported when built
    from erphub.secrets import beqom_credentials  # noqa: PLC0415 - imported when built

    credentials = beqom_credentials(
        settings.beqom_secret_arn, settings.beqom_client_id, settings.beqom_client_secret
    )
    beqom = HttpBeqomClient(
        str(settings.beqom_token_url),
        str(settings.beqom_import_url),
        credentials.client_id,
        credentials.client_secret,
        scope=settings.beqom_scope,
        **settings.client_options(),
    )
    endpoint = settings.aws_endpoint_url
    return ImportDeps(
        beqom=beqom,
        ledger=_ledger(settings),
        drops=S3DropFiles(boto3.client("s3", endpoint_url=endpoint)),
        queue=SqsWorkQueue(boto3.client("sqs", endpoint_url=endpoint), settings.beqom_queue_url),
        lease_seconds=settings.lease_seconds,
    )


def beqom_import_deps() -> ImportDeps:
    """The beqom import consumer's dependencies (the token cache lives as long as they do)."""
    return _beqom_import_deps(BeqomImportSettings.from_env())


# --- ERP -> Procuros outgoing transactions ------------------------------------------------------


def _procuros(settings: ProcurosSettings, http: HttpSettings) -> HttpProcurosClient:
    from erphub.clients.procuros import HttpProcurosClient  # noqa: PLC0415 - imported when built
    from erphub.secrets import procuros_credentials  # noqa: PLC0415 - imported when built

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
    from erphub.flows.procuros_send import ListDeps  # noqa: PLC0415 - imported when built
    from erphub.procuros_mapping import load_mapping as procuros_mapping  # noqa: PLC0415 - imported when built

    return ListDeps(
        erp=_erp(settings, settings),
        ledger=_ledger(settings),
        payloads=_payloads(settings),
        lease_seconds=settings.lease_seconds,
        document_types=settings.document_types,
        mapping=procuros_mapping(settings.procuros_mapping),
        error_report_after=settings.procuros_error_report_after,
        procuros=partial(_procuros_history, settings),
        known_partners_days=settings.procuros_known_partners_days,
    )


@cache
def _procuros_send_deps(settings: ProcurosSendSettings) -> SendDeps:
    from erphub.flows.procuros_send import SEND_ATTEMPTS, SendDeps  # noqa: PLC0415 - imported when built
    from erphub.procuros_mapping import load_mapping as procuros_mapping  # noqa: PLC0415 - imported when built

    return SendDeps(
        erp=_erp(settings, settings),
        procuros=_procuros(settings, settings),
        ledger=_ledger(settings),
        payloads=_payloads(settings),
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


# --- S3 drop -> eBill batch upload ---------------------------------------------------------------


def ebill_client(settings: EbillSettings, http: HttpSettings) -> HttpEbillClient:
    """An eBill client with the configured credentials and auth scheme (not cached)."""
    from erphub.clients.ebill import HttpEbillClient, ebill_auth  # noqa: PLC0415 - imported when built
    from erphub.secrets import ebill_credentials  # noqa: PLC0415 - imported when built

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
    from erphub.flows.ebill_upload import TriggerDeps  # noqa: PLC0415 - imported when built

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
        ledger=_ledger(settings),
        files=_files(settings.aws_endpoint_url),
        lease_seconds=_poll_policy(settings).lease_seconds,
    )


@cache
def _ebill_deps(settings: EbillStepSettings) -> EbillDeps:
    from erphub.flows.ebill_upload import EbillDeps  # noqa: PLC0415 - imported when built

    return EbillDeps(
        ebill=ebill_client(settings, settings),
        ledger=_ledger(settings),
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
