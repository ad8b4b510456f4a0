"""Settings of the Rossum export's steps and of its schedule."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator

from erphub.settings import (
    EnvSettings,
    ErpSettings,
    HttpSettings,
    MappingSettings,
    StoreSettings,
)


class RossumSettings(EnvSettings):
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


class RejectPolicy(StrEnum):
    """What happens to an invoice the ERP rejects."""

    FAILED_EXPORT = "failed_export"
    KEEP_CONFIRMED = "keep_confirmed"


class ExportPolicySettings(EnvSettings):
    """The Rossum export's claim lease and rejection policy."""

    lease_seconds: int = Field(default=900, ge=0)
    reject_policy: RejectPolicy = RejectPolicy.FAILED_EXPORT
    reject_attempts: int = Field(default=3, ge=1)


class PollSettings(StoreSettings, HttpSettings, RossumSettings, ExportPolicySettings):
    """Settings of the poll step."""


class PushSettings(StoreSettings, HttpSettings, ErpSettings, ExportPolicySettings, MappingSettings):
    """Settings of the push step."""

    erp_concurrency: int = Field(default=8, ge=1, le=64)


class FinalizeSettings(StoreSettings, HttpSettings, RossumSettings, ExportPolicySettings):
    """Settings of the finalize step."""


class ScheduleSettings(EnvSettings):
    """Settings of the scheduler that starts one export per queue."""

    rossum_queue_ids: str = Field(pattern=r"^\s*\d+(\s*,\s*\d+)*\s*$")
    rossum_export_state_machine_arn: str = Field(min_length=1)
    aws_endpoint_url: str | None = None

    @property
    def queue_ids(self) -> list[int]:
        """The configured queue ids, in order, without duplicates."""
        return list(dict.fromkeys(int(part) for part in self.rossum_queue_ids.split(",")))


# --- credentials (from Secrets Manager in AWS, see erphub.secrets) ----------------------------


class RossumCredentials(BaseModel):
    """A Rossum API user."""

    model_config = ConfigDict(frozen=True)

    username: str = Field(min_length=1)
    password: SecretStr


def rossum_credentials(
    secret_arn: str | None, username: str | None, password: SecretStr | None
) -> RossumCredentials:
    """The Rossum user from the secret, or from ROSSUM_USERNAME/ROSSUM_PASSWORD without one."""
    from erphub.secrets import read_credentials  # noqa: PLC0415 - loaded by the handlers that build it

    direct = {"username": username, "password": password} if username and password else None
    hint = "set ROSSUM_SECRET_ARN, or ROSSUM_USERNAME and ROSSUM_PASSWORD"
    return read_credentials(RossumCredentials, "Rossum", secret_arn, direct, hint)
