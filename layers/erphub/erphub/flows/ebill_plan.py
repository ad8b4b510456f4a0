"""eBill upload, step 1: claim the drop and list its files, each pinned to its version.

The flow and what its steps share are in :mod:`erphub.flows.ebill_upload`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from erphub.errors import BadInputError
from erphub.faults import checkpoint
from erphub.flows.ebill_upload import (
    CUSTOMERS,
    MANIFEST_LIMIT_BYTES,
    MANIFEST_NAME,
    MAX_LINE_ITEM_FILES,
    BatchFile,
    BatchFileRole,
    BatchJob,
    DropDeps,
    DropRef,
    claim,
)
from erphub.models import CamelModel
from erphub.observability import logger

if TYPE_CHECKING:
    from erphub.files import FileStore


class PlanRequest(CamelModel):
    """Input of the plan step."""

    run_id: str = Field(min_length=1, max_length=80)
    drop: DropRef


def _plain_name(value: str) -> str:
    if not value or "/" in value or "\\" in value or value in {".", ".."}:
        msg = f"must be a file name in the batch folder, got {value!r}"
        raise ValueError(msg)
    if value == MANIFEST_NAME:
        msg = "must not be the manifest itself"
        raise ValueError(msg)
    return value


class Manifest(BaseModel):
    """``manifest.json`` of an invoice batch."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    invoice: str
    line_items: list[str] = Field(
        default_factory=list, alias="lineItems", max_length=MAX_LINE_ITEM_FILES
    )

    @field_validator("invoice")
    @classmethod
    def _invoice_name(cls, value: str) -> str:
        return _plain_name(value)

    @field_validator("line_items")
    @classmethod
    def _line_item_names(cls, value: list[str]) -> list[str]:
        for name in value:
            _plain_name(name)
        if len(set(value)) != len(value):
            msg = "names a file twice"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _invoice_is_no_line_item(self) -> Manifest:
        if self.invoice in self.line_items:
            msg = f"{self.invoice} is both the invoice file and a line-item file"
            raise ValueError(msg)
        return self


def _read_manifest(files: FileStore, drop: DropRef) -> Manifest:
    obj = files.head(drop.bucket, drop.key, drop.version_id)
    raw = files.read_bytes(obj, limit=MANIFEST_LIMIT_BYTES)
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}"
            for e in error.errors()
        )
        msg = f"{obj.uri}: invalid manifest: {problems}"
        raise BadInputError(msg) from None


def _batch_file(
    files: FileStore,
    bucket: str,
    key: str,
    *,
    version: str | None,
    role: BatchFileRole,
    suffix: str,
) -> BatchFile:
    obj = files.head(bucket, key, version)
    if obj.size == 0:
        msg = f"{obj.uri} is empty (0 bytes): there is nothing to send"
        raise BadInputError(msg)
    return BatchFile(
        name=key.rsplit("/", 1)[-1],
        key=key,
        version_id=obj.version_id,
        size=obj.size,
        role=role,
        suffix=suffix,
    )


def plan_drop(request: PlanRequest, deps: DropDeps) -> BatchJob:
    """Claim the drop and list its files, parent first, each pinned to its current version."""
    drop = request.drop
    claim(
        deps.ledger,
        drop.id,
        request.run_id,
        deps.lease_seconds,
        {"bucket": drop.bucket, "key": drop.key, "kind": drop.kind, "jobIdPrefix": drop.tag},
    )
    if drop.kind == CUSTOMERS:
        files = [
            _batch_file(
                deps.files,
                drop.bucket,
                drop.key,
                version=drop.version_id,
                role="customers",
                suffix="CUS",
            )
        ]
    else:
        manifest = _read_manifest(deps.files, drop)
        folder = drop.key.rsplit("/", 1)[0] + "/"
        try:
            files = [
                _batch_file(
                    deps.files,
                    drop.bucket,
                    folder + manifest.invoice,
                    version=None,
                    role="invoice",
                    suffix="INV",
                )
            ]
            files += [
                _batch_file(
                    deps.files,
                    drop.bucket,
                    folder + name,
                    version=None,
                    role="line_items",
                    suffix=f"ITM_{n}",
                )
                for n, name in enumerate(manifest.line_items, start=1)
            ]
        except BadInputError as error:
            msg = f"{error} (named in s3://{drop.bucket}/{drop.key})"
            raise BadInputError(msg) from None
    checkpoint("ebill.plan.after_claim")
    logger.info("drop planned", extra={"drop": drop.id, "files": [f.key for f in files]})
    return BatchJob(
        drop_id=drop.id,
        tag=drop.tag,
        bucket=drop.bucket,
        key=drop.key,
        version_id=drop.version_id,
        kind=drop.kind,
        files=files,
    )
