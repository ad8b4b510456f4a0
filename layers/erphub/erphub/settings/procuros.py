"""Settings of the ERP -> Procuros outgoing transactions (list, send) and of their schedule."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator

from erphub.settings import (
    EnvSettings,
    ErpSettings,
    HttpSettings,
    MappingSettings,
    StoreSettings,
)


class ProcurosSettings(EnvSettings):
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


class ProcurosPolicySettings(EnvSettings):
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


class ProcurosScheduleSettings(EnvSettings):
    """Settings of the scheduler that starts one send execution per tick."""

    procuros_send_state_machine_arn: str = Field(min_length=1)
    aws_endpoint_url: str | None = None


# --- credentials (from Secrets Manager in AWS, see erphub.secrets) ----------------------------


class ProcurosCredentials(BaseModel):
    """The API token of the hub's Procuros ERP connection."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    api_token: SecretStr = Field(alias="apiToken")


def procuros_credentials(
    secret_arn: str | None, api_token: SecretStr | None
) -> ProcurosCredentials:
    """The Procuros token from the secret, or from PROCUROS_API_TOKEN without one."""
    from erphub.secrets import read_credentials  # noqa: PLC0415 - loaded by the handlers that build it

    direct = {"apiToken": api_token} if api_token else None
    hint = "set PROCUROS_SECRET_ARN, or PROCUROS_API_TOKEN"
    return read_credentials(ProcurosCredentials, "Procuros", secret_arn, direct, hint)
