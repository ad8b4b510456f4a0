"""POST /invoices/validate: the checks of POST /invoices, booking nothing.

Every exchange goes over loopback HTTP and is checked against ``contracts/erp-openapi.yaml``;
the hub's adapter is then run against the same simulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import SecretStr

from erphub.clients.erp import Accepted, HttpErpGateway, Rejected, Valid
from erphub.errors import ConfigurationError, TransientError
from erphub.invoices import Invoice
from erphub_local.simulators import ErpSimulator, Fault
from tests.contract.openapi_check import check_exchange, load_erp_spec
from tests.contract.test_erp_openapi import ACME, TOKEN, invoice

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration


@pytest.fixture
def erp() -> Iterator[ErpSimulator]:
    with ErpSimulator(token=TOKEN) as sim:
        sim.add_supplier(*ACME)
        yield sim


@pytest.fixture
def call(erp: ErpSimulator) -> Iterator[Any]:
    spec = load_erp_spec()
    with httpx.Client(base_url=erp.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:

        def send(
            method: str, path: str, *, request_valid: bool | None = True, **kwargs: Any
        ) -> httpx.Response:
            response = http.request(method, path, **kwargs)
            check_exchange(spec, response.request, response, request_valid=request_valid)
            return response

        yield send


def codes(response: httpx.Response) -> list[tuple[str, str]]:
    return [(detail["field"], detail["code"]) for detail in response.json()["details"]]


def test_a_valid_invoice_is_200_and_nothing_is_booked(call: Any, erp: ErpSimulator) -> None:
    for _ in range(3):
        response = call("POST", "/invoices/validate", json=invoice())
        assert (response.status_code, response.json()) == (200, {"valid": True})
    assert erp.invoices == {}
    assert erp.create_count("rossum:315777") == erp.post_count("rossum:315777") == 0
    assert call("POST", "/invoices", json=invoice()).status_code == 201  # still free to book


def test_the_answers_are_those_of_a_create(call: Any) -> None:
    unknown = invoice(supplier={"name": "Nobody", "vatId": "DE999"}, totalAmount="1.00")
    rejected = call("POST", "/invoices/validate", json=unknown)
    assert rejected.status_code == 422
    assert codes(rejected) == [
        ("supplier.vatId", "unknown_supplier"),
        ("totalAmount", "totals_mismatch"),
    ]
    created = call("POST", "/invoices", json=unknown)
    assert (created.status_code, created.json()) == (422, rejected.json())


def test_checks_run_against_the_booked_invoices(call: Any) -> None:
    booked = call("POST", "/invoices", json=invoice()).json()["id"]
    same_reference = call("POST", "/invoices/validate", json=invoice())
    assert same_reference.status_code == 409
    assert same_reference.json()["id"] == booked
    same_number = call("POST", "/invoices/validate", json=invoice("rossum:2"))
    assert same_number.status_code == 422
    assert codes(same_number) == [("invoiceNumber", "duplicate_invoice_number")]


def test_a_malformed_invoice_is_422_with_every_problem(call: Any) -> None:
    response = call(
        "POST",
        "/invoices/validate",
        json=invoice(issueDate="02.11.2026", netAmount="1.000,00"),
        request_valid=False,
    )
    assert response.status_code == 422
    assert set(codes(response)) == {("issueDate", "invalid_date"), ("netAmount", "invalid_decimal")}


def gateway(erp: ErpSimulator, **kwargs: Any) -> HttpErpGateway:
    return HttpErpGateway(erp.url, SecretStr(TOKEN), backoff=0.0, sleep=lambda _s: None, **kwargs)


def as_invoice(body: dict[str, Any]) -> Invoice:
    return Invoice.model_validate(body)


def test_the_adapter_reads_the_three_answers(erp: ErpSimulator) -> None:
    client = gateway(erp)
    assert isinstance(client.validate_invoice(as_invoice(invoice())), Valid)
    rejected = client.validate_invoice(
        as_invoice(invoice(supplier={"name": "Nobody", "vatId": "DE999"}))
    )
    assert isinstance(rejected, Rejected)
    assert rejected.reasons == ["supplier.vatId: Unknown supplier VAT id DE999."]
    pushed = client.push_invoice(as_invoice(invoice()))
    held = client.validate_invoice(as_invoice(invoice()))
    assert held == Accepted(erp_id=pushed.erp_id, already_existed=True)  # type: ignore[union-attr]
    assert erp.create_count("rossum:315777") == 1


def test_the_adapter_retries_a_validation_like_a_read(erp: ErpSimulator) -> None:
    erp.inject(Fault(status=503, times=2, path_prefix="/invoices/validate"))
    assert isinstance(gateway(erp, max_attempts=3).validate_invoice(as_invoice(invoice())), Valid)
    erp.inject(Fault(status=503, times=2, path_prefix="/invoices/validate"))
    with pytest.raises(TransientError, match="validate: HTTP 503"):
        gateway(erp, max_attempts=2).validate_invoice(as_invoice(invoice()))


def test_an_erp_without_the_endpoint_is_a_configuration_error() -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(404, json={"error": "nf"}))
    client = HttpErpGateway("http://erp.test", SecretStr("t"), transport=transport)
    with pytest.raises(ConfigurationError, match="dry runs need the ERP contract's validation"):
        client.validate_invoice(as_invoice(invoice()))
