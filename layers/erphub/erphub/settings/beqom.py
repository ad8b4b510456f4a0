"""Settings of the beqom Pay Suite document import."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from erphub.settings import EnvSettings, HttpSettings, StoreSettings


class BeqomSettings(EnvSettings):
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


# --- credentials (from Secrets Manager in AWS, see erphub.secrets) ----------------------------


class BeqomCredentials(BaseModel):
    """The OAuth2 client credentials beqom issues to the hub."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    client_id: str = Field(alias="clientId", min_length=1)
    client_secret: SecretStr = Field(alias="clientSecret")


def beqom_credentials(
    secret_arn: str | None, client_id: str | None, client_secret: SecretStr | None
) -> BeqomCredentials:
    """The beqom client from the secret, or from BEQOM_CLIENT_ID/BEQOM_CLIENT_SECRET without one."""
    from erphub.secrets import read_credentials  # noqa: PLC0415 - loaded by the handlers that build it

    direct = (
        {"clientId": client_id, "clientSecret": client_secret}
        if client_id and client_secret
        else None
    )
    hint = "set BEQOM_SECRET_ARN, or BEQOM_CLIENT_ID and BEQOM_CLIENT_SECRET"
    return read_credentials(BeqomCredentials, "beqom", secret_arn, direct, hint)
