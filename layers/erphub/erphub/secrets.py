"""Credentials: from Secrets Manager when an ARN is configured (always, in AWS).

Plain environment variables are accepted only where no secret ARN is set, which is how the
unit tests and a developer's shell run the flows directly. Values stay ``SecretStr`` until the
moment an adapter puts them on the wire, so they never reach a log line.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any, TypeVar

import boto3
from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from erphub.errors import ConfigurationError

# Credentials change rarely; five minutes keeps Secrets Manager calls to one per warm container.
_SECRET_MAX_AGE_SECONDS = 300


class RossumCredentials(BaseModel):
    """A Rossum API user."""

    model_config = ConfigDict(frozen=True)

    username: str = Field(min_length=1)
    password: SecretStr


class ErpCredentials(BaseModel):
    """The ERP contract's bearer token."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    api_token: SecretStr = Field(alias="apiToken")


_C = TypeVar("_C", bound=BaseModel)


@cache
def _provider(endpoint_url: str | None) -> parameters.SecretsProvider:
    # One provider (and its cache) per endpoint: Powertools' default provider keeps the client it
    # was first built with, which would outlive a change of AWS_ENDPOINT_URL (local stacks).
    return parameters.SecretsProvider(
        boto3_client=boto3.client("secretsmanager", endpoint_url=endpoint_url)
    )


def _secret_json(arn: str) -> dict[str, Any]:
    provider = _provider(os.environ.get("AWS_ENDPOINT_URL") or None)
    try:
        value = provider.get(arn, transform="json", max_age=_SECRET_MAX_AGE_SECONDS)
    except parameters.exceptions.TransformParameterError as error:
        msg = f"secret {arn} is not a JSON object"
        raise ConfigurationError(msg) from error
    except parameters.exceptions.GetParameterError as error:
        msg = f"cannot read secret {arn}: {type(error.__cause__ or error).__name__}"
        raise ConfigurationError(msg) from error
    if not isinstance(value, dict):
        msg = f"secret {arn} is not a JSON object"
        raise ConfigurationError(msg)
    return value


def _credentials(
    model: type[_C], system: str, secret_arn: str | None, direct: dict[str, Any] | None, hint: str
) -> _C:
    """``model`` from the secret, else from ``direct`` (the environment), else a clear error."""
    if secret_arn:
        data = _secret_json(secret_arn)
    elif direct:
        data = direct
    else:
        raise ConfigurationError(hint)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        fields = ", ".join(str(e["loc"][0]) for e in error.errors())
        msg = f"{system} credentials lack or have invalid: {fields}"
        raise ConfigurationError(msg) from None


def rossum_credentials(
    secret_arn: str | None, username: str | None, password: SecretStr | None
) -> RossumCredentials:
    """The Rossum user from the secret, or from ROSSUM_USERNAME/ROSSUM_PASSWORD without one."""
    direct = {"username": username, "password": password} if username and password else None
    hint = "set ROSSUM_SECRET_ARN, or ROSSUM_USERNAME and ROSSUM_PASSWORD"
    return _credentials(RossumCredentials, "Rossum", secret_arn, direct, hint)


def erp_credentials(secret_arn: str | None, api_token: SecretStr | None) -> ErpCredentials:
    """The ERP token from the secret, or from ERP_API_TOKEN without one."""
    direct = {"apiToken": api_token} if api_token else None
    hint = "set ERP_SECRET_ARN, or ERP_API_TOKEN"
    return _credentials(ErpCredentials, "ERP", secret_arn, direct, hint)


class BeqomCredentials(BaseModel):
    """The OAuth2 client credentials beqom issues to the hub."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    client_id: str = Field(alias="clientId", min_length=1)
    client_secret: SecretStr = Field(alias="clientSecret")


def beqom_credentials(
    secret_arn: str | None, client_id: str | None, client_secret: SecretStr | None
) -> BeqomCredentials:
    """The beqom client from the secret, or from BEQOM_CLIENT_ID/BEQOM_CLIENT_SECRET without one."""
    direct = (
        {"clientId": client_id, "clientSecret": client_secret}
        if client_id and client_secret
        else None
    )
    hint = "set BEQOM_SECRET_ARN, or BEQOM_CLIENT_ID and BEQOM_CLIENT_SECRET"
    return _credentials(BeqomCredentials, "beqom", secret_arn, direct, hint)


class ProcurosCredentials(BaseModel):
    """The API token of the hub's Procuros ERP connection."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    api_token: SecretStr = Field(alias="apiToken")


def procuros_credentials(
    secret_arn: str | None, api_token: SecretStr | None
) -> ProcurosCredentials:
    """The Procuros token from the secret, or from PROCUROS_API_TOKEN without one."""
    direct = {"apiToken": api_token} if api_token else None
    hint = "set PROCUROS_SECRET_ARN, or PROCUROS_API_TOKEN"
    return _credentials(ProcurosCredentials, "Procuros", secret_arn, direct, hint)


class EbillCredentials(BaseModel):
    """The eBill API user (the username may be empty with the header scheme)."""

    model_config = ConfigDict(frozen=True)

    username: str = ""
    password: SecretStr


def ebill_credentials(
    secret_arn: str | None, username: str | None, password: SecretStr | None
) -> EbillCredentials:
    """The eBill user from the secret, or from EBILL_USERNAME/EBILL_PASSWORD without one."""
    direct = {"username": username or "", "password": password} if password else None
    hint = "set EBILL_SECRET_ARN, or EBILL_USERNAME and EBILL_PASSWORD"
    return _credentials(EbillCredentials, "eBill", secret_arn, direct, hint)
