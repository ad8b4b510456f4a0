"""Payloads archived in S3: chunks of documents between steps, results, raw responses.

Step Functions payloads are capped at 256 KB, so steps pass S3 keys and counts, never documents.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


class PayloadStore:
    """JSON documents in the payload bucket."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self._bucket

    def put_json(self, key: str, value: Any) -> str:
        """Store ``value`` as JSON under ``key`` and return the key."""
        body = json.dumps(value, separators=(",", ":"), default=str).encode()
        self._client.put_object(
            Bucket=self._bucket, Key=key, Body=body, ContentType="application/json"
        )
        return key

    def get_json(self, key: str) -> Any:
        """The JSON document stored under ``key``."""
        response = self._client.get_object(Bucket=self._bucket, Key=key)
        return json.loads(response["Body"].read())
