"""The ERP contract file is valid OpenAPI, and the ERP simulator speaks exactly that contract.

Every exchange below goes over loopback HTTP and is checked, request and response, against
``contracts/erp-openapi.yaml``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml
from openapi_spec_validator import validate

from erphub_local.simulators import ErpSimulator, Fault
from tests.contract.openapi_check import ERP_SPEC_PATH, check_exchange, load_erp_spec

if TYPE_CHECKING:
    from collections.abc import Iterator

    from openapi_core import OpenAPI

pytestmark = pytest.mark.integration

TOKEN = "erp-local-token"
ACME = ("DE123456789", "Acme GmbH")


def invoice(reference: str = "rossum:315777", **changes: Any) -> dict[str, Any]:
    """A valid invoice for the Acme supplier; ``changes`` override top-level fields."""
    body: dict[str, Any] = {
        "externalReference": reference,
        "supplier": {"name": ACME[1], "vatId": ACME[0], "iban": "DE02120300000000202051"},
        "invoiceNumber": "INV-2026-0042",
        "issueDate": "2026-11-02",
        "dueDate": "2026-12-02",
        "currency": "EUR",
        "netAmount": "1000.00",
        "taxAmount": "190.00",
        "totalAmount": "1190.00",
        "purchaseOrder": "PO-7781",
        "lines": [
            {
                "description": "Consulting",
                "quantity": "10",
                "unitPrice": "60.00",
                "taxRate": "19",
                "amount": "600.00",
            },
            {
                "description": "Travel",
                "quantity": "1",
                "unitPrice": "400.00",
                "taxRate": "19",
                "amount": "400.00",
            },
        ],
    }
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return load_erp_spec()


@pytest.fixture
def erp() -> Iterator[ErpSimulator]:
    with ErpSimulator(token=TOKEN) as sim:
        sim.add_supplier(*ACME)
        sim.add_supplier("ATU12345678", "Donau Papier GmbH")
        yield sim


@pytest.fixture
def client(erp: ErpSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=erp.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http


@pytest.fixture
def call(spec: OpenAPI, client: httpx.Client) -> Iterator[Any]:
    """Send a request and check the exchange against the contract."""

    def send(
        method: str, path: str, *, request_valid: bool | None = True, **kwargs: Any
    ) -> httpx.Response:
        response = client.request(method, path, **kwargs)
        check_exchange(spec, response.request, response, request_valid=request_valid)
        return response

    yield send


def codes(response: httpx.Response) -> list[tuple[str, str]]:
    return [(detail["field"], detail["code"]) for detail in response.json()["details"]]


# --------------------------------------------------------------------------- the file


def test_contract_file_is_valid_openapi_3() -> None:
    document = yaml.safe_load(ERP_SPEC_PATH.read_text(encoding="utf-8"))

    validate(document)

    assert document["openapi"].startswith("3.0")
    assert set(document["paths"]) == {
        "/invoices",
        "/invoices/validate",
        "/outgoing-documents",
        "/outgoing-documents/{id}",
    }
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_checker_rejects_a_response_that_breaks_the_contract(spec: OpenAPI) -> None:
    request = httpx.Request(
        "POST",
        "http://127.0.0.1:1/invoices",
        json=invoice(),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    wrong = httpx.Response(201, json={"invoiceId": 7}, request=request)

    with pytest.raises(AssertionError, match="breaks the contract"):
        check_exchange(spec, request, wrong)
    with pytest.raises(AssertionError, match="to break the contract"):
        check_exchange(
            spec,
            request,
            httpx.Response(201, json={"id": "I", "externalReference": "r"}),
            request_valid=False,
        )


# --------------------------------------------------------------------------- invoices


def test_create_then_find_by_reference(call: Any, erp: ErpSimulator) -> None:
    created = call("POST", "/invoices", json=invoice())
    found = call("GET", "/invoices", params={"externalReference": "rossum:315777"})
    absent = call("GET", "/invoices", params={"externalReference": "rossum:1"})

    assert created.status_code == 201
    assert created.json() == {"id": "INV-000001", "externalReference": "rossum:315777"}
    assert found.status_code == 200
    [item] = found.json()["items"]
    assert item["id"] == "INV-000001"
    assert item["invoiceNumber"] == "INV-2026-0042"
    assert absent.json() == {"items": []}
    assert erp.create_count("rossum:315777") == 1
    assert list(erp.invoices) == ["INV-000001"]


def test_minimal_invoice_without_optional_fields(call: Any) -> None:
    body = invoice()
    for optional in ("dueDate", "purchaseOrder", "lines"):
        del body[optional]
    del body["supplier"]["iban"]

    assert call("POST", "/invoices", json=body).status_code == 201


def test_duplicate_external_reference_is_409_with_the_existing_id(
    call: Any, erp: ErpSimulator
) -> None:
    call("POST", "/invoices", json=invoice())
    again = call("POST", "/invoices", json=invoice(invoiceNumber="OTHER-1"))

    assert again.status_code == 409
    assert again.json()["error"] == "duplicate_external_reference"
    assert again.json()["id"] == "INV-000001"
    assert erp.create_count("rossum:315777") == 1
    assert erp.post_count("rossum:315777") == 2


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"supplier": {"name": "Nobody GmbH", "vatId": "DE999999999"}},
            [("supplier.vatId", "unknown_supplier")],
        ),
        ({"totalAmount": "1190.01"}, [("totalAmount", "totals_mismatch")]),
        (
            {"netAmount": "900.00", "taxAmount": "171.00", "totalAmount": "1071.00"},
            [("lines", "lines_mismatch")],
        ),
        ({"currency": "JPY"}, [("currency", "unsupported_currency")]),
    ],
    ids=["unknown-supplier", "totals", "lines", "currency"],
)
def test_business_rule_rejections(
    call: Any, erp: ErpSimulator, changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    rejected = call("POST", "/invoices", json=invoice(**changes))

    assert rejected.status_code == 422
    assert rejected.json()["error"] == "validation_failed"
    assert rejected.json()["message"]
    assert codes(rejected) == expected
    assert erp.invoices == {}


def test_invoice_number_already_booked_for_the_supplier(call: Any) -> None:
    call("POST", "/invoices", json=invoice("rossum:1"))
    other_supplier = invoice(
        "rossum:2", supplier={"name": "Donau Papier GmbH", "vatId": "ATU12345678"}
    )
    same_supplier = invoice("rossum:3")

    assert call("POST", "/invoices", json=other_supplier).status_code == 201
    rejected = call("POST", "/invoices", json=same_supplier)

    assert rejected.status_code == 422
    assert codes(rejected) == [("invoiceNumber", "duplicate_invoice_number")]
    assert "already booked" in rejected.json()["details"][0]["message"]


@pytest.mark.parametrize(
    "missing",
    [
        "externalReference",
        "invoiceNumber",
        "issueDate",
        "currency",
        "netAmount",
        "taxAmount",
        "totalAmount",
        "supplier.vatId",
        "supplier.name",
    ],
)
def test_missing_required_field(call: Any, erp: ErpSimulator, missing: str) -> None:
    body = invoice()
    if missing.startswith("supplier."):
        del body["supplier"][missing.split(".", 1)[1]]
    else:
        del body[missing]

    rejected = call("POST", "/invoices", json=body, request_valid=False)

    assert rejected.status_code == 422
    assert (missing, "missing_field") in codes(rejected)
    assert erp.invoices == {}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"netAmount": "1.000,00"}, ("netAmount", "invalid_decimal")),
        ({"taxAmount": 190}, ("taxAmount", "invalid_decimal")),
        ({"issueDate": "02.11.2026"}, ("issueDate", "invalid_date")),
        ({"dueDate": "2026-02-30"}, ("dueDate", "invalid_date")),
        ({"currency": "eur"}, ("currency", "invalid_currency")),
        ({"invoiceNumber": "  "}, ("invoiceNumber", "missing_field")),
        (
            {"lines": [{"description": "x", "amount": "12,5"}]},
            ("lines[0].amount", "invalid_decimal"),
        ),
    ],
    ids=[
        "decimal-comma",
        "decimal-number",
        "date-format",
        "date-value",
        "currency-case",
        "blank",
        "line",
    ],
)
def test_malformed_fields(call: Any, changes: dict[str, Any], expected: tuple[str, str]) -> None:
    rejected = call("POST", "/invoices", json=invoice(**changes), request_valid=False)

    assert rejected.status_code == 422
    assert codes(rejected) == [expected]


def test_every_problem_is_reported_at_once(call: Any) -> None:
    body = invoice(netAmount="abc", issueDate="", currency="euro")
    del body["invoiceNumber"]

    rejected = call("POST", "/invoices", json=body, request_valid=False)

    assert sorted(codes(rejected)) == [
        ("currency", "invalid_currency"),
        ("invoiceNumber", "missing_field"),
        ("issueDate", "missing_field"),
        ("netAmount", "invalid_decimal"),
    ]


def test_body_that_is_not_a_json_object_is_400(call: Any) -> None:
    response = call(
        "POST",
        "/invoices",
        content=b"[1, 2]",
        headers={"Content-Type": "application/json"},
        request_valid=False,
    )

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_find_requires_the_reference(call: Any) -> None:
    response = call("GET", "/invoices", request_valid=False)

    assert response.status_code == 400


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Token {TOKEN}"])
def test_unauthorized(spec: OpenAPI, erp: ErpSimulator, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.post(f"{erp.url}/invoices", json=invoice(), headers=headers)

    # The contract cannot tell a wrong token from a right one, only a missing Bearer scheme.
    check_exchange(spec, response.request, response, request_valid=None)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert erp.invoices == {}


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_faults_follow_the_contract(call: Any, erp: ErpSimulator, status: int) -> None:
    erp.inject(Fault(status, retry_after=2 if status == 429 else None, path_prefix="/invoices"))

    failed = call("POST", "/invoices", json=invoice())
    retried = call("POST", "/invoices", json=invoice())

    assert failed.status_code == status
    assert (failed.headers.get("Retry-After") == "2") is (status == 429)
    assert retried.status_code == 201
    assert erp.faults_served == 1


def test_stored_but_the_client_saw_503(call: Any, erp: ErpSimulator) -> None:
    erp.inject(Fault(503, method="POST", after_processing=True))

    failed = call("POST", "/invoices", json=invoice())
    lookup = call("GET", "/invoices", params={"externalReference": "rossum:315777"})
    retried = call("POST", "/invoices", json=invoice())

    assert failed.status_code == 503
    assert [item["id"] for item in lookup.json()["items"]] == ["INV-000001"]
    assert retried.status_code == 409
    assert retried.json()["id"] == "INV-000001"
    assert erp.create_count("rossum:315777") == 1


def test_without_dedupe_a_retry_books_twice(spec: OpenAPI) -> None:
    with ErpSimulator(dedupe_external_reference=False) as erp:
        erp.add_supplier(*ACME)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        first = httpx.post(f"{erp.url}/invoices", json=invoice(), headers=headers)
        second = httpx.post(
            f"{erp.url}/invoices", json=invoice(invoiceNumber="INV-2"), headers=headers
        )
        for response in (first, second):
            check_exchange(spec, response.request, response)

        assert erp.create_count("rossum:315777") == 2
        assert len(erp.invoices_by_reference("rossum:315777")) == 2


# --------------------------------------------------------------------------- outgoing documents


def _outgoing(erp: ErpSimulator, count: int) -> list[str]:
    ids = []
    for n in range(count):
        ids.append(
            erp.add_outgoing(
                {
                    "id": f"OUT-{1001 + n}",
                    "type": "INVOICE" if n % 2 else "ORDER_RESPONSE",
                    "number": f"SI-2026-{1001 + n}",
                    "updatedAt": "2026-11-20T10:00:00Z",
                    "document": {"buyer": {"gln": "4000001000005"}, "lines": []},
                }
            )
        )
    return ids


def test_outgoing_documents_cursor_pagination(call: Any, erp: ErpSimulator) -> None:
    ids = _outgoing(erp, 5)
    erp.add_outgoing({"id": "OUT-0999", "procurosStatus": "TRANSMITTED"})

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"procurosStatus": "empty", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = call("GET", "/outgoing-documents", params=params).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert seen == ids
    assert pages == 3
    everything = call("GET", "/outgoing-documents").json()
    assert len(everything["items"]) == 6
    transmitted = call("GET", "/outgoing-documents", params={"procurosStatus": "TRANSMITTED"})
    assert [item["id"] for item in transmitted.json()["items"]] == ["OUT-0999"]


def test_patched_documents_leave_the_empty_listing_without_shifting_pages(
    call: Any, erp: ErpSimulator
) -> None:
    ids = _outgoing(erp, 4)
    first = call("GET", "/outgoing-documents", params={"procurosStatus": "empty", "limit": 2})
    for item in first.json()["items"]:
        call(
            "PATCH",
            f"/outgoing-documents/{item['id']}",
            json={"procurosStatus": "TRANSMITTED", "procurosTransactionId": f"tx-{item['id']}"},
        )

    second = call(
        "GET",
        "/outgoing-documents",
        params={"procurosStatus": "empty", "limit": 2, "cursor": first.json()["nextCursor"]},
    )

    assert [item["id"] for item in second.json()["items"]] == ids[2:]
    assert second.json()["nextCursor"] is None
    assert erp.outgoing(ids[0])["procurosTransactionId"] == f"tx-{ids[0]}"


def test_patch_and_read_one_outgoing_document(call: Any, erp: ErpSimulator) -> None:
    (doc_id,) = _outgoing(erp, 1)

    failed = call(
        "PATCH",
        f"/outgoing-documents/{doc_id}",
        json={"procurosStatus": None, "errorUrl": "https://app.procuros.io/errors/42"},
    )
    skipped = call("PATCH", f"/outgoing-documents/{doc_id}", json={"procurosStatus": "NO_ACTION"})
    read = call("GET", f"/outgoing-documents/{doc_id}")

    assert failed.json()["errorUrl"] == "https://app.procuros.io/errors/42"
    assert failed.json()["procurosStatus"] is None
    assert skipped.json()["procurosStatus"] == "NO_ACTION"
    assert read.json() == skipped.json()
    assert read.json()["document"] == {"buyer": {"gln": "4000001000005"}, "lines": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"procurosStatus": "SENT"}, "procurosStatus"),
        ({"errorUrl": "not a url"}, "errorUrl"),
        ({"procurosTransactionId": ""}, "procurosTransactionId"),
        ({"number": "X-1"}, "number"),
    ],
)
def test_patch_outgoing_rejects_bad_values(
    call: Any, erp: ErpSimulator, body: dict[str, Any], field: str
) -> None:
    (doc_id,) = _outgoing(erp, 1)
    before = erp.outgoing(doc_id)

    rejected = call("PATCH", f"/outgoing-documents/{doc_id}", json=body, request_valid=False)

    assert rejected.status_code == 422
    assert [detail["field"] for detail in rejected.json()["details"]] == [field]
    assert erp.outgoing(doc_id) == before


def test_unknown_outgoing_document_is_404(call: Any) -> None:
    read = call("GET", "/outgoing-documents/OUT-404")
    patched = call("PATCH", "/outgoing-documents/OUT-404", json={"procurosStatus": "TRANSMITTED"})

    assert read.status_code == 404
    assert patched.status_code == 404
    assert read.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"procurosStatus": "done"}, {"cursor": "%%%"}],
    ids=["limit-0", "limit-101", "status", "cursor"],
)
def test_bad_listing_parameters_are_400(call: Any, params: dict[str, Any]) -> None:
    # A garbage cursor is a well-formed string as far as the contract can tell.
    request_valid = None if "cursor" in params else False
    response = call("GET", "/outgoing-documents", params=params, request_valid=request_valid)

    assert response.status_code == 400


def test_simulator_copies_are_detached(erp: ErpSimulator) -> None:
    (doc_id,) = _outgoing(erp, 1)
    snapshot = erp.outgoing(doc_id)
    snapshot["document"]["lines"].append("x")

    assert erp.outgoing(doc_id)["document"]["lines"] == []
    assert copy.deepcopy(erp.outgoing_documents)[doc_id]["id"] == doc_id
