"""The hub's Procuros traffic against the official Procuros v2 OpenAPI file.

The file is read from the shared contracts beside the repository (``../shared/contracts``) and
never copied into it; without it these tests skip and say why. Two liberties are taken, in
memory only: the vendor file does not pass the OpenAPI validator itself (``default: null`` on
fields that are not nullable), so its self-check is switched off; and its ``servers`` are the
vendor's hosts, so requests to the simulator are matched by path alone (``servers: [/]``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given, settings
from jsonschema import Draft202012Validator
from openapi_core import Config, OpenAPI
from pydantic import SecretStr

from erphub.clients.erp_port import OutgoingDocument
from erphub.clients.procuros import ErrorReport, HttpProcurosClient, NotForwarded, Refused, Sent
from erphub.procuros_mapping import to_transaction
from erphub_local.demos.procuros_send import (
    INACTIVE_PARTNER,
    PARTNERS,
    SELLER,
    UNKNOWN_BUYER,
    seed_outgoing,
)
from erphub_local.simulators import ErpSimulator, ProcurosSimulator
from tests.contract.openapi_check import HttpxOpenAPIRequest, check_exchange
from tests.unit.test_procuros_mapping import complete_documents

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = REPO.parent / "shared" / "contracts" / "procuros-openapi.yml"
FALLBACK = REPO / "contracts" / "procuros-transactions.schema.json"


@cache
def official_spec(*, any_content: bool = False) -> OpenAPI:
    """The vendor file; ``any_content`` stops the listing's ``content`` from being checked there.

    ``Transaction.content`` is a ``oneOf`` of every transaction schema without a discriminator,
    and a real invoice is also a valid Order, so no true listing passes it. Listed contents are
    checked against the schema of their own ``type`` instead (see below).
    """
    document = yaml.safe_load(OFFICIAL.read_text(encoding="utf-8"))
    document["servers"] = [{"url": "/"}]
    if any_content:
        document["components"]["schemas"]["Transaction"]["properties"]["content"] = {
            "type": "object"
        }
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    if not OFFICIAL.is_file():
        pytest.skip(
            f"the official Procuros OpenAPI file is not at {OFFICIAL}; it is read from the shared"
            " contracts beside the repository and never copied into it"
        )
    return official_spec()


def request_errors(spec: OpenAPI, body: bytes) -> list[str]:
    request = httpx.Request(
        "POST",
        "https://api.procuros.test/v2/transactions",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer t"},
    )
    found = []
    for error in spec.iter_request_errors(HttpxOpenAPIRequest(request)):
        inner = getattr(error.__cause__, "schema_errors", None) or [error]
        found += [str(getattr(e, "message", e)) for e in inner]
    return found


@settings(max_examples=40, deadline=None)
@given(document=complete_documents())
def test_every_complete_document_maps_to_a_body_the_official_spec_accepts(
    spec: OpenAPI, document: OutgoingDocument
) -> None:
    assert request_errors(spec, to_transaction(document).body()) == []


def test_the_project_schema_and_the_official_spec_agree_on_the_demo_documents(
    spec: OpenAPI,
) -> None:
    fallback = Draft202012Validator(json.loads(FALLBACK.read_text()))
    erp, procuros = ErpSimulator(), ProcurosSimulator()
    seed = seed_outgoing(erp, procuros, count=60)
    verdicts: dict[str, tuple[bool, bool]] = {}
    for doc_id in [*seed.transmit, *seed.no_action, *seed.refused]:
        body = to_transaction(OutgoingDocument.model_validate(erp.outgoing(doc_id))).body()
        official_ok = not request_errors(spec, body)
        fallback_ok = not list(fallback.iter_errors(json.loads(body)))
        verdicts[doc_id] = (official_ok, fallback_ok)
    assert {d: v for d, v in verdicts.items() if v[0] != v[1]} == {}
    # Schema-valid: the accepted ones and those refused for an unknown buyer (a business rule).
    schema_valid = {*seed.transmit, *seed.no_action} | {
        d for d, reason in seed.refused.items() if reason == "unknown_buyer"
    }
    assert {d for d, (ok, _) in verdicts.items() if ok} == schema_valid


class Recorder(httpx.BaseTransport):
    """Keeps every exchange (bodies read) for checking against the spec."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.exchanges.append((request, response))
        return response


@pytest.fixture
def simulator() -> Iterator[ProcurosSimulator]:
    with ProcurosSimulator() as sim:
        yield sim


@pytest.mark.integration
def test_the_adapter_and_the_simulator_speak_the_official_spec(
    spec: OpenAPI, simulator: ProcurosSimulator
) -> None:
    erp = ErpSimulator()
    seed = seed_outgoing(erp, simulator, count=12, refused_ratio=0.25, id_prefix="C")
    recorder = Recorder()
    client = HttpProcurosClient(
        simulator.api_url, SecretStr(simulator.token), backoff=0.01, transport=recorder
    )
    outcomes: dict[str, Any] = {}
    for doc_id in [*seed.transmit, *seed.no_action, *seed.refused]:
        transaction = to_transaction(OutgoingDocument.model_validate(erp.outgoing(doc_id)))
        outcomes[doc_id] = client.send_transaction(transaction)
    again = to_transaction(OutgoingDocument.model_validate(erp.outgoing(seed.transmit[0])))
    duplicate = client.send_transaction(again)
    today = date.today()
    listed = list(
        client.sent_transactions("INVOICE", today - timedelta(days=1), today + timedelta(days=1))
    )
    # every type, both directions: the demo's incoming orders and what was just sent
    parties = client.known_parties(today - timedelta(days=365), today + timedelta(days=1))
    report_url = client.report_error(
        ErrorReport(
            error_reason="refused three times",
            error_context={"erpDocumentId": "C-0001"},
            transaction_identifier="INV-1",
            transaction_type="INVOICE",
        )
    )
    assert all(isinstance(outcomes[d], Sent) for d in seed.transmit)
    assert all(isinstance(outcomes[d], NotForwarded) for d in seed.no_action)
    assert all(isinstance(outcomes[d], Refused) and outcomes[d].error_url for d in seed.refused)
    assert duplicate.message == "Payload already received"  # type: ignore[union-attr]
    assert listed and report_url
    glns = {party.identifier for party in parties if party.domain == "GS1"}
    assert glns >= {p["gln"] for p in (*PARTNERS, INACTIVE_PARTNER, SELLER)}
    assert UNKNOWN_BUYER["gln"] not in glns
    kinds = {(r.method, r.url.path, s.status_code) for r, s in recorder.exchanges}
    assert kinds >= {
        ("POST", "/v2/transactions", 201),
        ("POST", "/v2/transactions", 202),
        ("POST", "/v2/transactions", 400),
        ("POST", "/v2/transactions", 422),
        ("GET", "/v2/all-transactions", 200),
        ("POST", "/v2/errors", 201),
    }
    for request, response in recorder.exchanges:
        if request.url.path.startswith("/v2/all-transactions"):
            check_exchange(official_spec(any_content=True), request, response)
            for item in response.json()["items"]:
                listed_body = json.dumps({"type": item["type"], "content": item["content"]})
                assert request_errors(spec, listed_body.encode()) == []
            continue
        # A 422 for a body the spec rejects was meant to break it; an unknown buyer does not.
        broken = response.status_code == 422 and "Could not resolve party" not in response.text
        check_exchange(spec, request, response, request_valid=not broken)
