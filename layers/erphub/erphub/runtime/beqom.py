"""The beqom import consumer's dependencies."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3

from erphub.runtime import build_ledger
from erphub.settings.beqom import BeqomImportSettings, beqom_credentials

if TYPE_CHECKING:
    from erphub.flows.beqom_import import ImportDeps


@cache
def _beqom_import_deps(settings: BeqomImportSettings) -> ImportDeps:
    from erphub.clients.beqom import HttpBeqomClient  # noqa: PLC0415 - imported when built
    from erphub.clients.drops import S3DropFiles, SqsWorkQueue  # noqa: PLC0415 - imported when built
    from erphub.flows.beqom_import import ImportDeps  # noqa: PLC0415 - imported when built

    credentials = beqom_credentials(
        settings.beqom_secret_arn, settings.beqom_client_id, settings.beqom_client_secret
    )
    beqom = HttpBeqomClient(
        str(settings.beqom_token_url),
        str(settings.beqom_import_url),
        credentials.client_id,
        credentials.client_secret,
        scope=settings.beqom_scope,
        **settings.client_options(),
    )
    endpoint = settings.aws_endpoint_url
    return ImportDeps(
        beqom=beqom,
        ledger=build_ledger(settings),
        drops=S3DropFiles(boto3.client("s3", endpoint_url=endpoint)),
        queue=SqsWorkQueue(boto3.client("sqs", endpoint_url=endpoint), settings.beqom_queue_url),
        lease_seconds=settings.lease_seconds,
    )


def beqom_import_deps() -> ImportDeps:
    """The beqom import consumer's dependencies (the token cache lives as long as they do)."""
    return _beqom_import_deps(BeqomImportSettings.from_env())
