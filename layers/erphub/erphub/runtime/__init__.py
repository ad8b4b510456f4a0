"""Builds each step's dependencies from its settings, once per warm container.

One module per flow (:mod:`~erphub.runtime.rossum`, :mod:`~erphub.runtime.beqom`,
:mod:`~erphub.runtime.procuros`, :mod:`~erphub.runtime.ebill`) with the builders its handlers
call; this one holds what they share. Adapters and flows are imported inside the builder that
needs them, so these modules load none of them; each handler imports the ones its builder uses at
its cold start, and only those (the Rossum SDK is not loaded by push or the eBill functions, and
so on: see tests/static/test_handler_imports.py).

Handlers call these at invocation time, not import time, so a cold start fails with a clear
settings error and tests can swap the environment between stacks. The cache is keyed by the
(frozen) settings, so a changed environment builds new adapters.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3

from erphub.ledger import Ledger
from erphub.payloads import PayloadStore
from erphub.settings import erp_credentials

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

    from erphub.clients.erp import HttpErpGateway
    from erphub.settings import ErpSettings, HttpSettings, StoreSettings


@cache
def dynamodb_resource(endpoint: str | None) -> DynamoDBServiceResource:
    """The DynamoDB resource of this endpoint (one per container)."""
    return boto3.resource("dynamodb", endpoint_url=endpoint)


def build_ledger(settings: StoreSettings) -> Ledger:
    """The ledger in the configured table."""
    return Ledger(dynamodb_resource(settings.aws_endpoint_url).Table(settings.ledger_table))


def build_payloads(settings: StoreSettings) -> PayloadStore:
    """The payload store in the configured bucket."""
    client = boto3.client("s3", endpoint_url=settings.aws_endpoint_url)
    return PayloadStore(client, settings.payload_bucket)


def build_erp(settings: ErpSettings, http: HttpSettings) -> HttpErpGateway:
    """The ERP adapter with its token (from the secret in AWS)."""
    from erphub.clients.erp import HttpErpGateway  # noqa: PLC0415 - imported when built

    credentials = erp_credentials(settings.erp_secret_arn, settings.erp_api_token)
    return HttpErpGateway(
        str(settings.erp_base_url),
        credentials.api_token,
        **http.client_options(),
    )
