"""Files dropped in the drop bucket, and the work queue that carries them to their consumer.

Two small ports with their AWS adapters: :class:`DropFiles` reads a dropped object (S3) and
:class:`WorkQueue` sends messages to a queue (SQS), in batches of ten.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from erphub.errors import BadInputError, TransientError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sqs.client import SQSClient

_SQS_BATCH = 10
_SEND_ROUNDS = 3
_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})


class DropObject(BaseModel):
    """Where a dropped file is (the version, when the bucket is versioned and it is known)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    version_id: str | None = Field(default=None, alias="versionId")
    etag: str | None = None
    size: int | None = None
    event_time: datetime | None = Field(default=None, alias="eventTime")

    @property
    def uri(self) -> str:
        """``s3://bucket/key`` (for messages)."""
        return f"s3://{self.bucket}/{self.key}"


class DroppedFile(BaseModel):
    """A dropped file's bytes and what S3 knows about it."""

    model_config = ConfigDict(frozen=True)

    content: bytes
    etag: str
    metadata: dict[str, str] = Field(default_factory=dict)
    last_modified: datetime | None = None


class FileTooLargeError(BadInputError):
    """The dropped file exceeds what the flow accepts."""


class DropFiles(Protocol):
    """Reads dropped files."""

    def etag(self, obj: DropObject) -> str:
        """The object's ETag (its content's fingerprint), without reading it."""
        ...

    def read(self, obj: DropObject, max_bytes: int) -> DroppedFile:
        """The object's bytes; :class:`FileTooLargeError` beyond ``max_bytes``."""
        ...


class WorkQueue(Protocol):
    """Sends work items to a queue."""

    def send(self, bodies: Sequence[Mapping[str, Any]]) -> int:
        """Send each body as one JSON message; returns how many were sent."""
        ...


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3DropFiles:
    """Dropped files in S3."""

    def __init__(self, client: S3Client) -> None:
        self._client = client

    def _version(self, obj: DropObject) -> dict[str, Any]:
        return {"VersionId": obj.version_id} if obj.version_id else {}

    def etag(self, obj: DropObject) -> str:
        """``HeadObject``'s ETag, without quotes."""
        try:
            head = self._client.head_object(Bucket=obj.bucket, Key=obj.key, **self._version(obj))
        except ClientError as error:
            raise _translated(error, obj) from error
        return head["ETag"].strip('"')

    def read(self, obj: DropObject, max_bytes: int) -> DroppedFile:
        """``GetObject``; the body is read only if it is within ``max_bytes``."""
        try:
            response = self._client.get_object(Bucket=obj.bucket, Key=obj.key, **self._version(obj))
        except ClientError as error:
            raise _translated(error, obj) from error
        body = response["Body"]
        try:
            if response["ContentLength"] > max_bytes:
                msg = f"{obj.uri} has {response['ContentLength']} bytes, more than {max_bytes}"
                raise FileTooLargeError(msg)
            content = body.read()
        finally:
            body.close()
        return DroppedFile(
            content=content,
            etag=response["ETag"].strip('"'),
            metadata={k.lower(): v for k, v in response.get("Metadata", {}).items()},
            last_modified=response.get("LastModified"),
        )


def _translated(error: ClientError, obj: DropObject) -> Exception:
    if _error_code(error) in _MISSING:
        return BadInputError(f"{obj.uri} does not exist (any more)")
    return TransientError(f"S3 {obj.uri}: {_error_code(error) or 'error'}")


class SqsWorkQueue:
    """An SQS queue; ``SendMessageBatch`` of ten, re-sending the entries SQS failed."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, bodies: Sequence[Mapping[str, Any]]) -> int:
        """Send every body; :class:`TransientError` if some could not be sent."""
        for start in range(0, len(bodies), _SQS_BATCH):
            entries = {
                str(i): json.dumps(body, separators=(",", ":"), default=str)
                for i, body in enumerate(bodies[start : start + _SQS_BATCH])
            }
            for _ in range(_SEND_ROUNDS):
                try:
                    response = self._client.send_message_batch(
                        QueueUrl=self._url,
                        Entries=[{"Id": i, "MessageBody": b} for i, b in entries.items()],
                    )
                except ClientError as error:
                    msg = f"SQS SendMessageBatch: {_error_code(error) or 'error'}"
                    raise TransientError(msg) from error
                failed = {f["Id"] for f in response.get("Failed", [])}
                entries = {i: b for i, b in entries.items() if i in failed}
                if not entries:
                    break
            if entries:
                msg = f"SQS did not take {len(entries)} of the messages"
                raise TransientError(msg)
        return len(bodies)
