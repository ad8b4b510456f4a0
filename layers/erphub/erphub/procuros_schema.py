"""Checking a Procuros transaction against the project's schema of the send body, in process.

Dry runs use it to predict which transactions Procuros would refuse for their content, without
sending anything. The schema is the project's own (``contracts/procuros-transactions.schema.json``,
shipped in the layer as ``schemas/``). This module implements exactly the JSON Schema keywords
that schema uses and refuses a schema with any other, so a schema change cannot be half checked
without anyone noticing. Procuros also refuses for reasons no schema shows (a receiver it cannot
resolve to a trade partner): only a real send learns those.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_PATH", "SchemaError", "TransactionSchema", "transaction_schema"]

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "procuros-transactions.schema.json"
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})
_KEYWORDS = _ANNOTATIONS | {
    "type",
    "required",
    "properties",
    "items",
    "minItems",
    "minLength",
    "maxLength",
    "enum",
    "const",
    "pattern",
    "$ref",
    "allOf",
    "if",
    "then",
}
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}


class SchemaError(ValueError):
    """The schema uses something this module does not check."""


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name not in ("boolean",):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


class TransactionSchema:
    """The send body's schema; :meth:`problems` lists what Procuros would refuse."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._root = schema
        self._check(schema, "#")

    def _check(self, schema: Any, where: str) -> None:
        if not isinstance(schema, dict):
            raise SchemaError(f"{where}: a schema must be an object")
        unknown = sorted(set(schema) - _KEYWORDS)
        if unknown:
            raise SchemaError(f"{where}: keyword(s) not checked here: {', '.join(unknown)}")
        for name, sub in (schema.get("$defs") or {}).items():
            self._check(sub, f"{where}/$defs/{name}")
        for name, sub in (schema.get("properties") or {}).items():
            self._check(sub, f"{where}/properties/{name}")
        for index, sub in enumerate(schema.get("allOf") or []):
            self._check(sub, f"{where}/allOf/{index}")
        for key in ("items", "if", "then"):
            if key in schema:
                self._check(schema[key], f"{where}/{key}")
        ref = schema.get("$ref")
        if ref is not None:
            self._resolve(ref)

    def _resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/$defs/"):
            raise SchemaError(f"only local references (#/$defs/...) are checked, not {ref}")
        found = (self._root.get("$defs") or {}).get(ref[len("#/$defs/") :])
        if not isinstance(found, dict):
            raise SchemaError(f"{ref} is not defined")
        return found

    def problems(self, body: Any) -> list[str]:
        """``<field>: <what is wrong>`` for each problem; empty when the schema accepts it."""
        found: list[str] = []
        self._validate(self._root, body, "", found)
        return list(dict.fromkeys(found))

    def _validate(  # noqa: C901, PLR0912 - one branch per keyword reads best
        self, schema: dict[str, Any], value: Any, path: str, out: list[str]
    ) -> None:
        here = path or "body"
        if "$ref" in schema:
            self._validate(self._resolve(schema["$ref"]), value, path, out)
        kinds = schema.get("type")
        if kinds is not None:
            names = kinds if isinstance(kinds, list) else [kinds]
            if not any(_is_type(value, name) for name in names):
                out.append(f"{here}: {value!r} is not of type {' or '.join(names)}")
                return
        if "enum" in schema and value not in schema["enum"]:
            out.append(f"{here}: {value!r} is not one of {schema['enum']}")
        if "const" in schema and value != schema["const"]:
            out.append(f"{here}: {value!r} should be {schema['const']!r}")
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                out.append(f"{here}: {value!r} is too short")
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                out.append(f"{here}: is longer than {schema['maxLength']} characters")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                out.append(f"{here}: {value!r} does not match {schema['pattern']!r}")
        if isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                out.append(f"{here}: {value!r} should be non-empty")
            if "items" in schema:
                for index, item in enumerate(value):
                    self._validate(schema["items"], item, f"{path}.{index}".lstrip("."), out)
        if isinstance(value, dict):
            for name in schema.get("required", []):
                if name not in value:
                    out.append(f"{f'{path}.{name}'.lstrip('.')}: is required")
            for name, sub in (schema.get("properties") or {}).items():
                if name in value:
                    self._validate(sub, value[name], f"{path}.{name}".lstrip("."), out)
        for sub in schema.get("allOf", []):
            self._validate(sub, value, path, out)
        if "if" in schema and "then" in schema:
            trial: list[str] = []
            self._validate(schema["if"], value, path, trial)
            if not trial:
                self._validate(schema["then"], value, path, out)


@cache
def transaction_schema(path: Path = SCHEMA_PATH) -> TransactionSchema:
    """The schema shipped with erphub, checked once per process."""
    return TransactionSchema(json.loads(path.read_text(encoding="utf-8")))
