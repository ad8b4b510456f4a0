"""The in-process check of a Procuros send body (dry runs) agrees with a full JSON Schema
validator on the project's schema, and ships the very schema in contracts/."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from erphub.clients.erp_port import OutgoingDocument
from erphub.procuros_mapping import to_transaction
from erphub.procuros_schema import SCHEMA_PATH, SchemaError, TransactionSchema, transaction_schema
from tests.unit.test_procuros_mapping import complete_documents

CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "procuros-transactions.schema.json"
FULL = Draft202012Validator(json.loads(CONTRACT.read_text(encoding="utf-8")))


def test_the_layer_ships_the_contracts_schema_unchanged() -> None:
    assert SCHEMA_PATH.read_bytes() == CONTRACT.read_bytes()


def full_problems(body: Any) -> set[str]:
    found = set()
    for error in FULL.iter_errors(body):
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            name = error.message.split("'")[1]
            path = f"{path}.{name}".lstrip(".")
        found.add(path or "body")
    return found


def fields(problems: list[str]) -> set[str]:
    return {problem.partition(": ")[0] for problem in problems}


def mutate(value: Any, rng: random.Random) -> Any:
    """The body with one value somewhere replaced, or one key dropped."""
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        copy = dict(value)
        if rng.random() < 0.3:
            del copy[key]
        else:
            copy[key] = mutate(value[key], rng)
        return copy
    if isinstance(value, list) and value:
        index = rng.randrange(len(value))
        return [mutate(v, rng) if i == index else v for i, v in enumerate(value)]
    return rng.choice([None, "", "x", 1, 1.5, True, [], {}, "2026-01-01T00:00:00", "EUR"])


@settings(max_examples=150, deadline=None)
@given(complete_documents(), st.integers(0, 2**32), st.integers(0, 3))
def test_it_agrees_with_a_full_validator(document: OutgoingDocument, seed: int, n: int) -> None:
    body: Any = json.loads(to_transaction(document).body())
    rng = random.Random(seed)
    for _ in range(n):
        body = mutate(body, rng)
    ours = transaction_schema().problems(body)
    assert bool(ours) == bool(list(FULL.iter_errors(body)))
    assert fields(ours) == full_problems(body)


def test_problems_name_the_field() -> None:
    document = OutgoingDocument(
        id="OUT-7",
        type="INVOICE",
        number="INV-7",
        document={"documentDate": "2026-03-02", "lines": [{"lineNumber": 1, "quantity": "2"}]},
    )
    body = json.loads(to_transaction(document).body())
    problems = transaction_schema().problems(body)
    assert "content.header.orderIdentifier: is required" in problems
    assert "content.header.buyer.identifiers: [] should be non-empty" in problems
    assert "content.items.0.tax: is required" in problems


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"type": "object", "additionalProperties": False}, "additionalProperties"),
        ({"oneOf": [{"type": "string"}]}, "oneOf"),
        ({"$ref": "https://example.com/s.json"}, "only local references"),
        ({"$ref": "#/$defs/Missing"}, "#/$defs/Missing is not defined"),
        ({"properties": {"a": {"format": "date"}}}, "#/properties/a: keyword(s) not checked"),
    ],
)
def test_a_schema_with_keywords_it_does_not_check_is_refused(
    schema: dict[str, Any], why: str
) -> None:
    with pytest.raises(SchemaError, match=re.escape(why)):
        TransactionSchema(schema)
