"""Settings of the beqom Pay Suite document import."""

from __future__ import annotations

from pydantic import Field, HttpUrl, SecretStr

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
