"""Files in S3, read and written as streams: memory stays constant whatever the file size.

:class:`FileStore` reads a dropped file chunk by chunk (``get_object`` -> ``StreamingBody``
read in fixed-size chunks) and writes a stream with a sequential multipart upload, one part in
memory at a time. Small control files (manifests) are read whole, with a size limit.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from erphub.errors import BadInputError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef, HeadObjectOutputTypeDef

CHUNK_SIZE = 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
# S3 reports "null" as the version of an object written while versioning was off.
NULL_VERSION = "null"


@dataclass(frozen=True)
class StoredObject:
    """One version of an S3 object."""

    bucket: str
    key: str
    version_id: str | None
    size: int

    @property
    def uri(self) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class FileStream:
    """An open S3 object: its size and its body as chunks of at most ``CHUNK_SIZE`` bytes."""

    size: int
    chunks: Iterator[bytes]


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (for boto3 and ``csv``)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.consumed += size
        return size


def _is_missing(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NoSuchVersion", "NotFound"}


class FileStore:
    """Streaming reads and writes of S3 objects."""

    def __init__(self, client: S3Client, *, chunk_size: int = CHUNK_SIZE) -> None:
        self._client = client
        self._chunk_size = chunk_size

    @staticmethod
    def _pinned(version_id: str | None) -> str | None:
        return version_id if version_id and version_id != NULL_VERSION else None

    def _head(self, bucket: str, key: str, version_id: str | None) -> HeadObjectOutputTypeDef:
        pinned = self._pinned(version_id)
        if pinned:
            return self._client.head_object(Bucket=bucket, Key=key, VersionId=pinned)
        return self._client.head_object(Bucket=bucket, Key=key)

    def _get(self, obj: StoredObject) -> GetObjectOutputTypeDef:
        pinned = self._pinned(obj.version_id)
        if pinned:
            return self._client.get_object(Bucket=obj.bucket, Key=obj.key, VersionId=pinned)
        return self._client.get_object(Bucket=obj.bucket, Key=obj.key)

    def head(self, bucket: str, key: str, version_id: str | None = None) -> StoredObject:
        """The object (its current version unless one is given); BadInputError if missing."""
        try:
            response = self._head(bucket, key, version_id)
        except ClientError as error:
            if _is_missing(error):
                msg = f"s3://{bucket}/{key} does not exist" + (
                    f" in version {version_id}" if version_id else ""
                )
                raise BadInputError(msg) from None
            raise
        return StoredObject(
            bucket=bucket,
            key=key,
            version_id=response.get("VersionId") or version_id,
            size=int(response["ContentLength"]),
        )

    def latest_version(self, bucket: str, key: str) -> str | None:
        """The current version id of an object (None without versioning, or if it is gone)."""
        try:
            return self._head(bucket, key, None).get("VersionId")
        except ClientError as error:
            if _is_missing(error):
                return None
            raise

    def read_bytes(self, obj: StoredObject, *, limit: int) -> bytes:
        """A small object whole; BadInputError if it is larger than ``limit`` bytes."""
        if obj.size > limit:
            msg = f"{obj.uri} is {obj.size} bytes; at most {limit} are accepted"
            raise BadInputError(msg)
        response = self._get(obj)
        body = response["Body"]
        try:
            data = body.read(limit + 1)
        finally:
            body.close()
        if len(data) > limit:
            msg = f"{obj.uri} is larger than {limit} bytes"
            raise BadInputError(msg)
        return data

    @contextmanager
    def open(self, obj: StoredObject) -> Iterator[FileStream]:
        """The object's body as a stream of chunks; the connection is closed on exit."""
        response = self._get(obj)
        body = response["Body"]
        try:
            yield FileStream(
                size=int(response["ContentLength"]), chunks=body.iter_chunks(self._chunk_size)
            )
        finally:
            body.close()

    @contextmanager
    def open_text(self, bucket: str, key: str) -> Iterator[io.TextIOWrapper]:
        """The object as UTF-8 text (a BOM is skipped; undecodable bytes replaced)."""
        with self.open(StoredObject(bucket, key, None, 0)) as stream:
            binary = io.BufferedReader(_ChunkReader(stream.chunks), buffer_size=self._chunk_size)
            yield io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline="")

    def write(
        self, bucket: str, key: str, chunks: Iterable[bytes], *, content_type: str
    ) -> StoredObject:
        """Store a stream under ``key`` with a sequential multipart upload; the new object."""
        reader = _ChunkReader(chunks)
        self._client.upload_fileobj(
            io.BufferedReader(reader, buffer_size=self._chunk_size),
            bucket,
            key,
            ExtraArgs={"ContentType": content_type},
            Config=TransferConfig(
                multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, use_threads=False
            ),
        )
        return StoredObject(bucket=bucket, key=key, version_id=None, size=reader.consumed)
