"""Counting the AWS requests a run makes, for the cost model."""

from __future__ import annotations

from collections import Counter
from typing import Any

from botocore.client import BaseClient


class AwsCalls:
    """Counts every botocore request in this process by ``service.Operation``.

    It wraps the one method every client call goes through, so clients the handlers built and
    cached before the counter existed are counted too.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.batch_items = 0
        original = BaseClient._make_api_call
        counter = self

        def counted(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            counter.counts[f"{service}.{operation}"] += 1
            result = original(client, operation, params)
            if operation == "BatchGetItem":
                counter.batch_items += sum(len(v) for v in result.get("Responses", {}).values())
            return result

        BaseClient._make_api_call = counted  # type: ignore[method-assign]

    def get(self, service: str, *operations: str) -> int:
        """How many requests of these operations were made."""
        return sum(self.counts[f"{service}.{op}"] for op in operations)

    def clear(self) -> None:
        """Forget what was counted."""
        self.counts.clear()
        self.batch_items = 0
