"""The base of erphub's camelCase models, and the shapes more than one flow uses.

Everything that crosses a boundary (an API response, a file, a Step Functions payload) is parsed
into a model on the way in, so a malformed input fails where it enters, with the field named.
Each model lives with the flow or the port it belongs to (a step's input and output with its step
under ``erphub.flows``): a Lambda function builds the model classes of the modules it imports at
its cold start, and should build only those of its own step.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A model whose JSON form uses camelCase names, as the ERP contract and our events do."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        """The JSON-ready camelCase form (decimals as strings, dates as ISO strings)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- Rossum annotation URLs ------------------------------------------------------------------
# (The documents themselves, the export JSON and the invoice, are in erphub.invoices.)

_ANNOTATION_URL = re.compile(r"/annotations/(\d+)/?$")


def annotation_id_from_url(url: str) -> int | None:
    """The annotation id in a Rossum annotation URL, or None if it is not one."""
    match = _ANNOTATION_URL.search(url)
    return int(match.group(1)) if match else None


# --- Step Functions payloads ------------------------------------------------------------------
# (Each flow's step inputs and outputs are in its modules under erphub.flows.)


class ChunkRef(CamelModel):
    """An S3 object holding one chunk (up to 100) of claimed documents."""

    key: str
    count: int = Field(ge=0)
