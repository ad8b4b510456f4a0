"""Credentials: from Secrets Manager when an ARN is configured (always, in AWS).

Plain environment variables are accepted only where no secret ARN is set, which is how the
unit tests and a developer's shell run the flows directly. Values stay ``SecretStr`` until the
moment an adapter puts them on the wire, so they never reach a log line.

What each system's credentials hold, and where they come from without a secret, is with that
system's settings (e.g. :func:`erphub.settings.rossum.rossum_credentials`).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any, TypeVar

import boto3
from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ValidationError

from erphub.errors import ConfigurationError

# Credentials change rarely; five minutes keeps Secrets Manager calls to one per warm container.
_SECRET_MAX_AGE_SECONDS = 300

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


def read_credentials(
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
