"""Settings, read from the environment and validated at cold start.

Each handler composes the mixins it needs, so a missing variable fails the cold start with a
message naming it instead of failing half way through a batch.

``from_env()`` reads each field from the environment variable of its name, in any case. Plain
pydantic models: pydantic-settings would bring asyncio, argparse and dotenv into every cold
start. A class builds its validator when it is first read, so a handler builds the one it uses.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self, TypedDict

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator

if TYPE_CHECKING:
    from collections.abc import Mapping


class _Base(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", validate_default=True, defer_build=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str | None] | None = None, **values: Any) -> Self:
        """The settings from ``environ`` (the process environment by default).

        Each field comes from the variable of its name, in any case; ``values`` come first.
        """
        variables = {
            name.lower(): value
            for name, value in (os.environ if environ is None else environ).items()
            if value is not None
        }
        found = {name: variables[name] for name in cls.model_fields if name in variables}
        return cls(**{**found, **values})


class StoreSettings(_Base):
    """Where erphub keeps its state."""

    ledger_table: str = Field(min_length=1)
    payload_bucket: str = Field(min_length=1)
    aws_endpoint_url: str | None = None


class HttpSettings(_Base):
    """How erphub talks HTTP to the external systems."""

    http_timeout_seconds: float = Field(default=30.0, gt=0)
    http_max_attempts: int = Field(default=4, ge=1, le=10)
    http_backoff_seconds: float = Field(default=0.5, ge=0)
    http_max_retry_after_seconds: float = Field(default=60.0, ge=0)

    def client_options(self) -> HttpClientOptions:
        """The keyword arguments every erphub HTTP client takes."""
        return HttpClientOptions(
            timeout=self.http_timeout_seconds,
            max_attempts=self.http_max_attempts,
            backoff=self.http_backoff_seconds,
            max_retry_after=self.http_max_retry_after_seconds,
        )


class HttpClientOptions(TypedDict):
    """Timeout and retry options of an HTTP client (see :class:`HttpSettings`)."""

    timeout: float
    max_attempts: int
    backoff: float
    max_retry_after: float


class RossumSettings(_Base):
    """The Rossum API and its credentials (a Secrets Manager ARN in AWS)."""

    rossum_base_url: HttpUrl
    rossum_secret_arn: str | None = None
    rossum_username: str | None = None
    rossum_password: SecretStr | None = None

    @field_validator("rossum_base_url")
    @classmethod
    def _ends_in_api(cls, value: HttpUrl) -> HttpUrl:
        if not str(value).rstrip("/").endswith("/api"):
            msg = (
                f"ROSSUM_BASE_URL must end in /api (e.g. https://acme.rossum.app/api), got {value}"
            )
            raise ValueError(msg)
        return value


class ErpSettings(_Base):
    """The ERP contract implementation and its token (a Secrets Manager ARN in AWS)."""

    erp_base_url: HttpUrl
    erp_secret_arn: str | None = None
    erp_api_token: SecretStr | None = None


class RejectPolicy(StrEnum):
    """What happens to an invoice the ERP rejects."""

    FAILED_EXPORT = "failed_export"
    KEEP_CONFIRMED = "keep_confirmed"


class ExportPolicySettings(_Base):
    """The Rossum export's claim lease and rejection policy."""

    lease_seconds: int = Field(default=900, ge=0)
    reject_policy: RejectPolicy = RejectPolicy.FAILED_EXPORT
    reject_attempts: int = Field(default=3, ge=1)


class MappingSettings(_Base):
    """Where the mapping files come from: empty (or ``ssm:``) for the packaged defaults,
    ``ssm:/parameter/name`` for SSM Parameter Store, else a file path (see erphub.mapfile)."""

    rossum_mapping: str = Field(default="", max_length=2048)
    procuros_mapping: str = Field(default="", max_length=2048)

    @field_validator("rossum_mapping", "procuros_mapping")
    @classmethod
    def _location(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("ssm:") and any(ch.isspace() for ch in value):
            msg = f"an SSM parameter name has no spaces: {value!r}"
            raise ValueError(msg)
        return value


class PollSettings(StoreSettings, HttpSettings, RossumSettings, ExportPolicySettings):
    """Settings of the poll step."""


class PushSettings(StoreSettings, HttpSettings, ErpSettings, ExportPolicySettings, MappingSettings):
    """Settings of the push step."""

    erp_concurrency: int = Field(default=8, ge=1, le=64)


class FinalizeSettings(StoreSettings, HttpSettings, RossumSettings, ExportPolicySettings):
    """Settings of the finalize step."""


class ScheduleSettings(_Base):
    """Settings of the scheduler that starts one export per queue."""

    rossum_queue_ids: str = Field(pattern=r"^\s*\d+(\s*,\s*\d+)*\s*$")
    rossum_export_state_machine_arn: str = Field(min_length=1)
    aws_endpoint_url: str | None = None

    @property
    def queue_ids(self) -> list[int]:
        """The configured queue ids, in order, without duplicates."""
        return list(dict.fromkeys(int(part) for part in self.rossum_queue_ids.split(",")))


# --- beqom Pay Suite document import ---------------------------------------------------------


class BeqomSettings(_Base):
    """The beqom token and import endpoints and the client credentials (a secret ARN in AWS)."""

    beqom_token_url: HttpUrl
    beqom_import_url: HttpUrl
    beqom_scope: str = Field(default="import_inbox", min_length=1)
    beqom_secret_arn: str | None = None
    beqom_client_id: str | None = None
    beqom_client_secret: SecretStr | None = None


class BeqomImportSettings(StoreSettings, HttpSettings, BeqomSettings):
    """Settings of the beqom import consumer (the drop queue's batch handler)."""

    beqom_queue_url: str = Field(min_length=1)
    lease_seconds: int = Field(default=900, ge=0)


# --- ERP -> Procuros outgoing transactions ------------------------------------------------------


class ProcurosSettings(_Base):
    """The Procuros API and its token (a Secrets Manager ARN in AWS)."""

    procuros_base_url: HttpUrl
    procuros_secret_arn: str | None = None
    procuros_api_token: SecretStr | None = None

    @field_validator("procuros_base_url")
    @classmethod
    def _ends_in_v2(cls, value: HttpUrl) -> HttpUrl:
        if not str(value).rstrip("/").endswith("/v2"):
            msg = f"PROCUROS_BASE_URL must end in /v2 (as https://api.procuros.io/v2), got {value}"
            raise ValueError(msg)
        return value


class ProcurosPolicySettings(_Base):
    """Which ERP documents are sent, and after how many refusals Procuros is told."""

    lease_seconds: int = Field(default=900, ge=0)
    procuros_error_report_after: int = Field(default=3, ge=1)
    procuros_document_types: str = Field(
        default="INVOICE,ORDER_RESPONSE,SHIPPING_NOTICE,CREDIT_NOTE", min_length=1
    )

    @field_validator("procuros_document_types")
    @classmethod
    def _known_types(cls, value: str) -> str:
        from erphub.procuros_mapping import SUPPORTED_TYPES  # noqa: PLC0415 - keeps import light

        types = [part.strip() for part in value.split(",") if part.strip()]
        unknown = sorted(set(types) - SUPPORTED_TYPES)
        if not types or unknown:
            msg = (
                f"PROCUROS_DOCUMENT_TYPES must list some of {', '.join(sorted(SUPPORTED_TYPES))};"
                f" unknown: {', '.join(unknown) or 'none given'}"
            )
            raise ValueError(msg)
        return ",".join(dict.fromkeys(types))

    @property
    def document_types(self) -> frozenset[str]:
        """The transaction types to send."""
        return frozenset(self.procuros_document_types.split(","))


class ProcurosSendSettings(
    StoreSettings,
    HttpSettings,
    ErpSettings,
    ProcurosSettings,
    ProcurosPolicySettings,
    MappingSettings,
):
    """Settings of the step that sends one chunk to Procuros and updates the ERP."""


class ProcurosListSettings(ProcurosSendSettings):
    """Settings of the step that lists and claims the ERP's pending outgoing documents.

    Only its dry runs call Procuros, to read which parties its transactions name.
    """

    #: how many days of Procuros transactions a dry run reads to tell the receivers Procuros
    #: resolves from those it would refuse (0: not checked)
    procuros_known_partners_days: int = Field(default=365, ge=0, le=3650)


class ProcurosScheduleSettings(_Base):
    """Settings of the scheduler that starts one send execution per tick."""

    procuros_send_state_machine_arn: str = Field(min_length=1)
    aws_endpoint_url: str | None = None


# --- eBill batch upload ----------------------------------------------------------------------


class EbillAuthScheme(StrEnum):
    """How erphub authenticates to eBill (not publicly documented, hence configurable)."""

    BASIC = "basic"  # HTTP Basic with the API user's username and password
    HEADER = "header"  # the password as the value of EBILL_AUTH_HEADER
    NONE = "none"  # a gateway in front of eBill authenticates


class EbillSettings(_Base):
    """The eBill batchProcess API (tenant root URL) and its credentials (a secret in AWS)."""

    ebill_base_url: HttpUrl
    ebill_secret_arn: str | None = None
    ebill_username: str | None = None
    ebill_password: SecretStr | None = None
    ebill_auth_scheme: EbillAuthScheme = EbillAuthScheme.BASIC
    ebill_auth_header: str = Field(default="X-Api-Key", pattern=r"^[A-Za-z0-9-]+$")


class EbillPollSettings(_Base):
    """How often, and for how long at most, erphub asks eBill how a batch is doing."""

    ebill_poll_initial_seconds: int = Field(default=30, ge=1, le=3600)
    ebill_poll_max_seconds: int = Field(default=900, ge=1, le=86_400)
    ebill_poll_deadline_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)


class EbillDropSettings(StoreSettings, EbillPollSettings):
    """Settings of the eBill steps that read only the drop and the ledger (plan, failure)."""


class EbillStepSettings(StoreSettings, HttpSettings, EbillSettings, EbillPollSettings):
    """Settings of the eBill steps that talk to eBill (upload, finalize, poll, results)."""


class EbillTriggerSettings(_Base):
    """Settings of the S3 trigger that starts one eBill upload per drop."""

    ebill_upload_state_machine_arn: str = Field(min_length=1)
    ebill_drop_prefix: str = Field(default="ebill/", pattern=r"^([^/]+/)*$")
    aws_endpoint_url: str | None = None
