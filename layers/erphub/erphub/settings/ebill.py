"""Settings of the eBill batch upload: its trigger and its steps."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from erphub.settings import EnvSettings, HttpSettings, StoreSettings


class EbillAuthScheme(StrEnum):
    """How erphub authenticates to eBill (not publicly documented, hence configurable)."""

    BASIC = "basic"  # HTTP Basic with the API user's username and password
    HEADER = "header"  # the password as the value of EBILL_AUTH_HEADER
    NONE = "none"  # a gateway in front of eBill authenticates


class EbillSettings(EnvSettings):
    """The eBill batchProcess API (tenant root URL) and its credentials (a secret in AWS)."""

    ebill_base_url: HttpUrl
    ebill_secret_arn: str | None = None
    ebill_username: str | None = None
    ebill_password: SecretStr | None = None
    ebill_auth_scheme: EbillAuthScheme = EbillAuthScheme.BASIC
    ebill_auth_header: str = Field(default="X-Api-Key", pattern=r"^[A-Za-z0-9-]+$")


class EbillPollSettings(EnvSettings):
    """How often, and for how long at most, erphub asks eBill how a batch is doing."""

    ebill_poll_initial_seconds: int = Field(default=30, ge=1, le=3600)
    ebill_poll_max_seconds: int = Field(default=900, ge=1, le=86_400)
    ebill_poll_deadline_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)


class EbillDropSettings(StoreSettings, EbillPollSettings):
    """Settings of the eBill steps that read only the drop and the ledger (plan, failure)."""


class EbillStepSettings(StoreSettings, HttpSettings, EbillSettings, EbillPollSettings):
    """Settings of the eBill steps that talk to eBill (upload, finalize, poll, results)."""


class EbillTriggerSettings(EnvSettings):
    """Settings of the S3 trigger that starts one eBill upload per drop."""

    ebill_upload_state_machine_arn: str = Field(min_length=1)
    ebill_drop_prefix: str = Field(default="ebill/", pattern=r"^([^/]+/)*$")
    aws_endpoint_url: str | None = None


# --- credentials (from Secrets Manager in AWS, see erphub.secrets) ----------------------------


class EbillCredentials(BaseModel):
    """The eBill API user (the username may be empty with the header scheme)."""

    model_config = ConfigDict(frozen=True)

    username: str = ""
    password: SecretStr


def ebill_credentials(
    secret_arn: str | None, username: str | None, password: SecretStr | None
) -> EbillCredentials:
    """The eBill user from the secret, or from EBILL_USERNAME/EBILL_PASSWORD without one."""
    from erphub.secrets import read_credentials  # noqa: PLC0415 - loaded by the handlers that build it

    direct = {"username": username or "", "password": password} if password else None
    hint = "set EBILL_SECRET_ARN, or EBILL_USERNAME and EBILL_PASSWORD"
    return read_credentials(EbillCredentials, "eBill", secret_arn, direct, hint)
