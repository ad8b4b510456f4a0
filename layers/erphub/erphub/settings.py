"""Settings, read from the environment and validated at cold start.

Each handler composes the mixins it needs, so a missing variable fails the cold start with a
message naming it instead of failing half way through a batch.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, HttpUrl, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Base(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)


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


class PollSettings(StoreSettings, HttpSettings, RossumSettings, ExportPolicySettings):
    """Settings of the poll step."""


class PushSettings(StoreSettings, HttpSettings, ErpSettings, ExportPolicySettings):
    """Settings of the push step."""


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
