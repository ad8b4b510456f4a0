"""eBill upload, step 0: the S3 trigger starts one execution per dropped batch.

The flow and what its steps share are in :mod:`erphub.flows.ebill_upload`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field

from erphub.clients.workflows import ExecutionStarter
from erphub.files import NULL_VERSION, FileStore
from erphub.flows.ebill_upload import DropRef, classify, execution_name
from erphub.observability import MetricUnit, logger, metrics


class _S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    key: str
    version_id: str | None = Field(default=None, alias="versionId")


class _S3Bucket(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str


class _S3Entity(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    bucket: _S3Bucket
    object: _S3Object


class S3EventRecord(BaseModel):
    """One record of an S3 event notification (only what the trigger reads)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    event_name: str = Field(alias="eventName")
    s3: _S3Entity


class S3Notification(BaseModel):
    """An S3 event notification as Lambda receives it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    records: list[S3EventRecord] = Field(alias="Records")


@dataclass(frozen=True)
class TriggerDeps:
    """What the S3 trigger works with."""

    starter: ExecutionStarter
    files: FileStore
    prefix: str


def start_drop_executions(event: S3Notification, deps: TriggerDeps) -> dict[str, str | None]:
    """Start one execution per dropped batch; execution name -> ARN (None if it existed)."""
    started: dict[str, str | None] = {}
    for record in event.records:
        if not record.event_name.startswith("ObjectCreated"):
            continue
        bucket = record.s3.bucket.name
        # S3 form-encodes keys in events (moto percent-encodes "/"): decode both.
        key = unquote_plus(record.s3.object.key)
        kind = classify(key, deps.prefix)
        if kind is None:
            logger.info("not a drop, ignored", extra={"key": key})
            continue
        # AWS names the version in the event of a versioned bucket; where it does not (moto),
        # the object's current version is the one that was just written.
        version = (
            record.s3.object.version_id or deps.files.latest_version(bucket, key) or NULL_VERSION
        )
        drop = DropRef(bucket=bucket, key=key, version_id=version, kind=kind)
        name = execution_name(drop)
        started[name] = deps.starter.start(name, {"drop": drop.dump()})
        logger.info(
            "eBill upload started" if started[name] else "eBill upload already started",
            extra={"execution": name, "drop": drop.id},
        )
    metrics.add_metric(
        name="EbillDropsStarted", unit=MetricUnit.Count, value=sum(1 for a in started.values() if a)
    )
    return started
