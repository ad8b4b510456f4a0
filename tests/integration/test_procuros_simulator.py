"""The Procuros simulator over loopback HTTP: auth, validation, status answers, listing, faults."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from erphub.clients.erp_port import OutgoingDocument
from erphub.clients.procuros import AlreadyReceived, HttpProcurosClient, NotForwarded, Refused, Sent
from erphub.procuros_mapping import to_transaction
from erphub_local.simulators import Fault, ProcurosSimulator
from erphub_local.simulators.procuros import BERLIN, load_schemas

pytestmark = pytest.mark.integration

BUYER, INACTIVE, SELLER = "4012345000019", "4012345000026", "4000001000005"


def invoice(number: str, *, buyer: str = BUYER, **changes: Any) -> dict[str, Any]:
    document = {
        "documentDate": "2026-03-02",
        "currency": "EUR",
        "seller": {"name": "Seller", "gln": SELLER},
        "buyer": {"name": "Buyer", "gln": buyer},
        "orderNumber": "PO-1",
        "orderDate": "2026-02-25",
        "shippingNoticeNumber": "ASN-1",
        "shippingNoticeDate": "2026-03-01",
        "lines": [
            {
                "lineNumber": 1,
                "gtin": "4000000000017",
                "quantity": "2",
                "unitPrice": "9.99",
                "taxRate": "19",
            }
        ],
    }
    document.update(changes)
    body = to_transaction(
        OutgoingDocument(id=f"OUT-{number}", type="INVOICE", number=number, document=document)
    )
    return {"type": body.type, "content": body.content}


@pytest.fixture
def sim() -> Iterator[ProcurosSimulator]:
    with ProcurosSimulator() as simulator:
        yield simulator


@pytest.fixture
def api(sim: ProcurosSimulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {sim.token}"}
    with httpx.Client(base_url=sim.api_url, headers=headers) as client:
        yield client


def test_a_missing_or_wrong_token_is_401(sim: ProcurosSimulator) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = httpx.post(f"{sim.api_url}/transactions", json=invoice("1"), headers=headers)
        assert (response.status_code, response.json()) == (401, {"message": "Unauthenticated."})
    assert sim.transactions == []


def test_ping_is_204(api: httpx.Client) -> None:
    assert api.get("/ping").status_code == 204


def test_a_valid_transaction_is_created_and_listed(
    api: httpx.Client, sim: ProcurosSimulator
) -> None:
    response = api.post("/transactions", json=invoice("INV-1"))
    assert response.status_code == 201
    transaction_id = response.json()["procurosTransactionId"]
    shown = api.get(f"/all-transactions/{transaction_id}").json()["data"]
    assert (shown["type"], shown["status"], shown["flow"]) == ("INVOICE", "SUCCESS", "LIVE")
    assert shown["content"]["header"]["invoiceIdentifier"] == "INV-1"
    assert datetime.fromisoformat(shown["createdAt"]).utcoffset() in {
        timedelta(hours=1),
        timedelta(hours=2),
    }  # Berlin time
    assert [t["procurosTransactionId"] for t in sim.transactions_for("INV-1")] == [transaction_id]


def test_a_body_the_spec_rejects_is_422_with_errors_and_an_error_url(
    api: httpx.Client, sim: ProcurosSimulator
) -> None:
    body = invoice("INV-2", orderNumber=None)
    body["content"]["items"][0]["quantity"] = "2"  # a string where the spec wants a number
    response = api.post("/transactions", json=body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["message"] == "The given data was invalid."
    assert answer["errors"]["content.header.orderIdentifier"] == [
        "The content.header.orderIdentifier field is required."
    ]
    assert "content.items.0.quantity" in answer["errors"]
    assert answer["errorUrl"].startswith("https://portal.procuros.test/errors/")
    assert sim.transactions == []
    assert sim.refusals[0]["identifier"] == "INV-2"


def test_an_unknown_transaction_type_is_422_on_type(api: httpx.Client) -> None:
    response = api.post("/transactions", json={"type": "PAYMENT_ADVICE", "content": {}})
    assert response.status_code == 422
    assert response.json()["errors"] == {"type": ['Transaction type "PAYMENT_ADVICE" is not valid']}


def test_trade_relationships_decide_between_201_202_and_an_unresolved_party(
    api: httpx.Client, sim: ProcurosSimulator
) -> None:
    sim.add_trade_partner(BUYER, accepts={"ORDER_RESPONSE"})
    sim.add_trade_partner(INACTIVE, active=False)
    sim.add_trade_partner("4012345000033")
    inactive = api.post("/transactions", json=invoice("INV-3", buyer=INACTIVE))
    assert inactive.status_code == 202
    assert inactive.json()["message"] == "Trade relationship not yet active."
    not_accepted = api.post("/transactions", json=invoice("INV-4"))
    assert not_accepted.status_code == 202
    unknown = api.post("/transactions", json=invoice("INV-5", buyer="4099999000004"))
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == {
        "buyer": ["Could not resolve party using provided identifiers"]
    }
    accepted = api.post("/transactions", json=invoice("INV-6", buyer="4012345000033"))
    assert accepted.status_code == 201
    statuses = {t["content"]["header"]["invoiceIdentifier"]: t["status"] for t in sim.transactions}
    assert statuses == {"INV-3": "DROPPED", "INV-4": "DROPPED", "INV-6": "SUCCESS"}


def test_a_byte_identical_resend_is_400_payload_already_received(
    api: httpx.Client, sim: ProcurosSimulator
) -> None:
    body = to_transaction(
        OutgoingDocument.model_validate(
            {
                "id": "OUT-7",
                "type": "INVOICE",
                "number": "INV-7",
                "document": {"documentDate": "2026-03-02"},
            }
        )
    )
    sim.add_trade_partner(BUYER)
    valid = invoice("INV-7")
    assert api.post("/transactions", json=valid).status_code == 201
    again = api.post("/transactions", json=valid)
    assert again.status_code == 400
    assert again.json()["message"] == "Payload already received"
    assert len(sim.transactions_for("INV-7")) == 1
    # A refused payload was not received: sending it again is refused again, not a duplicate.
    for _ in range(2):
        assert (
            api.post(
                "/transactions", content=body.body(), headers={"Content-Type": "application/json"}
            ).status_code
            == 422
        )
    assert sim.posts_for("INV-7") == 4


def test_errors_are_reported_with_a_portal_link_and_validated(
    api: httpx.Client, sim: ProcurosSimulator
) -> None:
    report = {
        "errorReason": "Product GTIN '0001647296281' not found",
        "errorType": "DATA",
        "errorContext": {"erpDocumentId": "OUT-1"},
        "transactionIdentifier": "IV-0001",
        "transactionType": "INVOICE",
    }
    created = api.post("/errors", json=report)
    assert created.status_code == 201
    assert created.json()["message"] == "OK."
    assert sim.error_reports_for("IV-0001") == [{**report, "errorUrl": created.json()["errorUrl"]}]
    bad = api.post("/errors", json={"errorType": "OOPS", "errorContext": {"n": 1}})
    assert bad.status_code == 422
    assert set(bad.json()["errors"]) == {"errorReason", "errorType", "errorContext.n"}
    assert len(sim.error_reports) == 1


def test_all_transactions_pages_with_a_cursor_and_filters(
    api: httpx.Client, sim: ProcurosSimulator
) -> None:
    days = iter(datetime(2026, 3, d, 23, 30, tzinfo=BERLIN) for d in (1, 1, 2, 2, 3))
    sim.clock = lambda: next(days)
    for n in range(5):
        api.post("/transactions", json=invoice(f"INV-{n}"))
    seen, params = [], {"per_page": "2", "filter[type]": "INVOICE"}
    while True:
        page = api.get("/all-transactions", params=params).json()
        assert page["perPage"] == 2 and page["count"] == len(page["items"])
        seen += [t["content"]["header"]["invoiceIdentifier"] for t in page["items"]]
        if not page["hasMore"]:
            assert page["nextCursor"] is None and page["nextPageUrl"] is None
            break
        assert f"cursor={page['nextCursor']}" in page["nextPageUrl"]
        params["cursor"] = page["nextCursor"]
    assert seen == [f"INV-{n}" for n in range(5)]
    between = api.get(
        "/all-transactions", params={"filter[created_between]": "2026-03-02,2026-03-02"}
    )
    assert [t["content"]["header"]["invoiceIdentifier"] for t in between.json()["items"]] == [
        "INV-2",
        "INV-3",
    ]
    assert api.get("/all-transactions", params={"filter[type]": "ORDER"}).json()["items"] == []
    assert api.get("/all-transactions", params={"filter[status]": "DROPPED"}).json()["count"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"filter[type]": "PAYMENT"}, "filter[type]"),
        ({"filter[created_between]": "2026-03-01"}, "filter[created_between]"),
        ({"per_page": "101"}, "per_page"),
        ({"cursor": "bm9wZQ"}, "cursor"),
    ],
)
def test_bad_list_parameters_are_422(api: httpx.Client, params: dict[str, str], field: str) -> None:
    response = api.get("/all-transactions", params=params)
    assert response.status_code == 422
    assert field in response.json()["errors"]


def test_an_unknown_transaction_is_404(api: httpx.Client) -> None:
    assert api.get("/all-transactions/949b2f25-fd9d-4c58-8899-b4dc277f8cf9").status_code == 404


def test_listing_lag_hides_new_transactions_for_that_many_list_requests(
    api: httpx.Client, sim: ProcurosSimulator
) -> None:
    sim.listing_lag = 1
    api.post("/transactions", json=invoice("INV-8"))
    assert api.get("/all-transactions").json()["items"] == []
    assert len(api.get("/all-transactions").json()["items"]) == 1


def test_the_adapter_gets_each_answer_and_waits_out_429(sim: ProcurosSimulator) -> None:
    sim.add_trade_partner(BUYER)
    sim.add_trade_partner(INACTIVE, active=False)
    sim.inject(Fault(status=429, times=2, retry_after=0.2, method="POST"))
    client = HttpProcurosClient(sim.api_url, SecretStr(sim.token), backoff=0.01)
    valid = OutgoingDocument.model_validate(
        {"id": "OUT-9", "type": "INVOICE", "number": "INV-9", "document": invoice_document("INV-9")}
    )
    assert isinstance(client.send_transaction(to_transaction(valid)), Sent)
    assert isinstance(client.send_transaction(to_transaction(valid)), AlreadyReceived)
    inactive = valid.model_copy(
        update={"number": "INV-10", "document": invoice_document("INV-10", buyer=INACTIVE)}
    )
    assert isinstance(client.send_transaction(to_transaction(inactive)), NotForwarded)
    refused = valid.model_copy(
        update={"number": "INV-11", "document": {"documentDate": "2026-03-02"}}
    )
    outcome = client.send_transaction(to_transaction(refused))
    assert isinstance(outcome, Refused) and outcome.error_url
    assert sim.faults_served == 2
    assert sim.retry_after_violations == 0


def incoming_order(buyer: str, number: str = "PO-IN-1") -> dict[str, Any]:
    return {
        "header": {
            "buyer": {"identifiers": [{"identifier": buyer, "domain": "GS1"}]},
            "supplier": {"identifiers": [{"identifier": SELLER, "domain": "GS1"}]},
            "orderIdentifier": number,
            "orderDate": "2026-10-01T00:00:00.000000Z",
        },
        "items": [{"lineNumber": 1, "quantity": 20, "unitOfMeasure": "EA"}],
    }


def test_the_listing_holds_seeded_incoming_history_and_sent_transactions(
    api: httpx.Client, sim: ProcurosSimulator
) -> None:
    sim.add_trade_partner(BUYER)
    sim.add_trade_partner(INACTIVE, active=False)
    long_ago = sim.clock() - timedelta(days=400)
    sim.receive("ORDER", incoming_order(BUYER), created_at=sim.clock() - timedelta(days=30))
    sim.receive("ORDER", incoming_order(INACTIVE, "PO-IN-2"), flow="TEST")
    sim.receive("ORDER", incoming_order("4012345000033", "PO-IN-3"), created_at=long_ago)
    assert api.post("/transactions", json=invoice("INV-20")).status_code == 201
    # History does not make a party resolvable: only trade partners are.
    unknown = api.post("/transactions", json=invoice("INV-21", buyer="4012345000033"))
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == {
        "buyer": ["Could not resolve party using provided identifiers"]
    }

    client = HttpProcurosClient(sim.api_url, SecretStr(sim.token), backoff=0.01)
    today = sim.clock().date()
    parties = client.known_parties(today - timedelta(days=365), today + timedelta(days=1))

    assert {p.identifier for p in parties} == {BUYER, INACTIVE, SELLER}
    listed = api.get("/all-transactions", params={"per_page": 100}).json()["items"]
    assert [(t["type"], t["flow"]) for t in listed] == [
        ("ORDER", "LIVE"),
        ("ORDER", "TEST"),
        ("ORDER", "LIVE"),
        ("INVOICE", "LIVE"),
    ]
    assert [t["content"]["header"]["invoiceIdentifier"] for t in sim.transactions] == ["INV-20"]
    assert [t["content"]["header"]["orderIdentifier"] for t in sim.received] == [
        "PO-IN-1",
        "PO-IN-2",
        "PO-IN-3",
    ]
    assert sim.count("GET", "/v2/all-transactions") == 2


def test_seeded_history_must_be_a_valid_transaction(sim: ProcurosSimulator) -> None:
    without_buyer = incoming_order(BUYER)
    del without_buyer["header"]["buyer"]
    with pytest.raises(ValueError, match="not a valid ORDER"):
        sim.receive("ORDER", without_buyer)
    with pytest.raises(ValueError, match="unknown transaction type 'PAYMENT' or flow 'LIVE'"):
        sim.receive("PAYMENT", incoming_order(BUYER))
    assert sim.received == []


def test_seeded_history_is_checked_without_the_official_spec_too(tmp_path: Path) -> None:
    sim = ProcurosSimulator(spec_path=tmp_path / "procuros-openapi.yml")
    assert sim.schemas.source == "fallback"  # its schemas do not cover ORDER
    without_buyer = incoming_order(BUYER)
    del without_buyer["header"]["buyer"]
    with pytest.raises(ValueError, match=r"content\.header\.buyer.*needs identifiers"):
        sim.receive("ORDER", without_buyer)
    sim.receive("ORDER", incoming_order(BUYER))
    assert [t["type"] for t in sim.received] == ["ORDER"]


def invoice_document(number: str, buyer: str = BUYER) -> dict[str, Any]:
    return {
        "documentDate": "2026-03-02",
        "seller": {"gln": SELLER},
        "buyer": {"gln": buyer},
        "orderNumber": f"PO-{number}",
        "orderDate": "2026-02-25",
        "shippingNoticeNumber": "ASN-1",
        "shippingNoticeDate": "2026-03-01",
        "lines": [
            {
                "lineNumber": 1,
                "gtin": "4000000000017",
                "quantity": "1",
                "unitPrice": "1",
                "taxRate": "7",
            }
        ],
    }


def test_without_the_official_spec_the_fallback_schemas_are_used_and_say_so(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    missing = tmp_path / "procuros-openapi.yml"
    with caplog.at_level(logging.WARNING, logger="erphub_local.simulators.procuros"):
        schemas = load_schemas(missing)
    assert schemas.source == "fallback"
    assert any(
        "not found; validating against the project's fallback schemas" in r.getMessage()
        for r in caplog.records
    )
    with ProcurosSimulator(spec_path=missing) as sim:
        api = httpx.Client(base_url=sim.api_url, headers={"Authorization": f"Bearer {sim.token}"})
        assert api.post("/transactions", json=invoice("INV-12")).status_code == 201
        refused = api.post("/transactions", json=invoice("INV-13", orderNumber=None))
        assert refused.status_code == 422
        assert "content.header.orderIdentifier" in refused.json()["errors"]
        api.close()
