"""Settings, read from the environment and validated at cold start.

Each handler composes the mixins it needs, so a missing variable fails the cold start with a
message naming it instead of failing half way through a batch.

``from_env()`` reads each field from the environment variable of its name, in any case. Plain
pydantic models: pydantic-settings would bring asyncio, argparse and dotenv into every cold
start. A class builds its validator when it is first read, so a handler builds the one it uses.

This module holds what several flows share; each flow's settings are in a module of this package
(:mod:`~erphub.settings.rossum`, :mod:`~erphub.settings.beqom`, :mod:`~erphub.settings.procuros`,
:mod:`~erphub.settings.ebill`), so that a handler creates the settings classes of its flow only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Self, TypedDict

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator

if TYPE_CHECKING:
    from collections.abc import Mapping


class EnvSettings(BaseModel):
    """The base of every settings class: frozen, read with :meth:`from_env`."""

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


class StoreSettings(EnvSettings):
    """Where erphub keeps its state."""

    ledger_table: str = Field(min_length=1)
    payload_bucket: str = Field(min_length=1)
    aws_endpoint_url: str | None = None


class HttpSettings(EnvSettings):
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


class ErpSettings(EnvSettings):
    """The ERP contract implementation and its token (a Secrets Manager ARN in AWS)."""

    erp_base_url: HttpUrl
    erp_secret_arn: str | None = None
    erp_api_token: SecretStr | None = None


class MappingSettings(EnvSettings):
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


# --- credentials (from Secrets Manager in AWS, see erphub.secrets) ----------------------------


class ErpCredentials(BaseModel):
    """The ERP contract's bearer token."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    api_token: SecretStr = Field(alias="apiToken")


def erp_credentials(secret_arn: str | None, api_token: SecretStr | None) -> ErpCredentials:
    """The ERP token from the secret, or from ERP_API_TOKEN without one."""
    from erphub.secrets import read_credentials  # noqa: PLC0415 - loaded by the handlers that build it

    direct = {"apiToken": api_token} if api_token else None
    hint = "set ERP_SECRET_ARN, or ERP_API_TOKEN"
    return read_credentials(ErpCredentials, "ERP", secret_arn, direct, hint)
