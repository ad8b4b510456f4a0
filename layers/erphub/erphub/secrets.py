"""Credentials: from Secrets Manager when an ARN is configured (always, in AWS).

Plain environment variables are accepted only where no secret ARN is set, which is how the
unit tests and a developer's shell run the flows directly. Values stay ``SecretStr`` until the
moment an adapter puts them on the wire, so they never reach a log line.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

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


def rossum_credentials(
    secret_arn: str | None, username: str | None, password: SecretStr | None
) -> RossumCredentials:
    """The Rossum user from the secret, or from ROSSUM_USERNAME/ROSSUM_PASSWORD without one."""
    if secret_arn:
        data: dict[str, Any] = _secret_json(secret_arn)
    elif username and password:
        data = {"username": username, "password": password}
    else:
        msg = "set ROSSUM_SECRET_ARN, or ROSSUM_USERNAME and ROSSUM_PASSWORD"
        raise ConfigurationError(msg)
    try:
        return RossumCredentials.model_validate(data)
    except ValidationError as error:
        fields = ", ".join(str(e["loc"][0]) for e in error.errors())
        msg = f"Rossum credentials lack or have invalid: {fields}"
        raise ConfigurationError(msg) from None


def erp_credentials(secret_arn: str | None, api_token: SecretStr | None) -> ErpCredentials:
    """The ERP token from the secret, or from ERP_API_TOKEN without one."""
    if secret_arn:
        data: dict[str, Any] = _secret_json(secret_arn)
    elif api_token:
        data = {"apiToken": api_token}
    else:
        msg = "set ERP_SECRET_ARN, or ERP_API_TOKEN"
        raise ConfigurationError(msg)
    try:
        return ErpCredentials.model_validate(data)
    except ValidationError:
        msg = "ERP credentials lack apiToken"
        raise ConfigurationError(msg) from None


class BeqomCredentials(BaseModel):
    """The OAuth2 client credentials beqom issues to the hub."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    client_id: str = Field(alias="clientId", min_length=1)
    client_secret: SecretStr = Field(alias="clientSecret")


def beqom_credentials(
    secret_arn: str | None, client_id: str | None, client_secret: SecretStr | None
) -> BeqomCredentials:
    """The beqom client from the secret, or from BEQOM_CLIENT_ID/BEQOM_CLIENT_SECRET without one."""
    if secret_arn:
        data: dict[str, Any] = _secret_json(secret_arn)
    elif client_id and client_secret:
        data = {"clientId": client_id, "clientSecret": client_secret}
    else:
        msg = "set BEQOM_SECRET_ARN, or BEQOM_CLIENT_ID and BEQOM_CLIENT_SECRET"
        raise ConfigurationError(msg)
    try:
        return BeqomCredentials.model_validate(data)
    except ValidationError as error:
        fields = ", ".join(str(e["loc"][0]) for e in error.errors())
        msg = f"beqom credentials lack or have invalid: {fields}"
        raise ConfigurationError(msg) from None


class ProcurosCredentials(BaseModel):
    """The API token of the hub's Procuros ERP connection."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    api_token: SecretStr = Field(alias="apiToken")


def procuros_credentials(
    secret_arn: str | None, api_token: SecretStr | None
) -> ProcurosCredentials:
    """The Procuros token from the secret, or from PROCUROS_API_TOKEN without one."""
    if secret_arn:
        data: dict[str, Any] = _secret_json(secret_arn)
    elif api_token:
        data = {"apiToken": api_token}
    else:
        msg = "set PROCUROS_SECRET_ARN, or PROCUROS_API_TOKEN"
        raise ConfigurationError(msg)
    try:
        return ProcurosCredentials.model_validate(data)
    except ValidationError:
        msg = "Procuros credentials lack apiToken"
        raise ConfigurationError(msg) from None


class EbillCredentials(BaseModel):
    """The eBill API user (the username may be empty with the header scheme)."""

    model_config = ConfigDict(frozen=True)

    username: str = ""
    password: SecretStr


def ebill_credentials(
    secret_arn: str | None, username: str | None, password: SecretStr | None
) -> EbillCredentials:
    """The eBill user from the secret, or from EBILL_USERNAME/EBILL_PASSWORD without one."""
    if secret_arn:
        data: dict[str, Any] = _secret_json(secret_arn)
    elif password:
        data = {"username": username or "", "password": password}
    else:
        msg = "set EBILL_SECRET_ARN, or EBILL_USERNAME and EBILL_PASSWORD"
        raise ConfigurationError(msg)
    try:
        return EbillCredentials.model_validate(data)
    except ValidationError as error:
        fields = ", ".join(str(e["loc"][0]) for e in error.errors())
        msg = f"eBill credentials lack or have invalid: {fields}"
        raise ConfigurationError(msg) from None
