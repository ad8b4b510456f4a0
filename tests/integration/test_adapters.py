"""The hub's adapters against the simulators over real loopback HTTP.

The ERP adapter's traffic is also checked against the project's OpenAPI file of the ERP contract.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from erphub.clients.erp import Accepted, HttpErpGateway, Rejected
from erphub.clients.rossum import SdkRossumClient
from erphub.errors import ConfigurationError, TransientError
from erphub.invoices import Invoice, InvoiceLine, Supplier
from erphub_local.seed import build_annotation_content
from erphub_local.simulators import ErpSimulator, Fault, RossumSimulator
from tests.contract.openapi_check import check_exchange, load_erp_spec

pytestmark = pytest.mark.integration


class Recording(httpx.BaseTransport):
    """Keeps every exchange (bodies read) for contract checks."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        response.read()
        self.exchanges.append((request, response))
        return response


def invoice(ref: str = "rossum:1", vat: str = "DE100000001", number: str = "INV-1") -> Invoice:
    return Invoice(
        external_reference=ref,
        supplier=Supplier(name="Acme GmbH", vat_id=vat),
        invoice_number=number,
        issue_date=date(2026, 11, 2),
        currency="EUR",
        net_amount=Decimal("100.00"),
        tax_amount=Decimal("19.00"),
        total_amount=Decimal("119.00"),
        lines=[
            InvoiceLine(
                description="x",
                quantity=Decimal(1),
                unit_price=Decimal(100),
                amount=Decimal("100.00"),
            )
        ],
    )


@pytest.fixture
def recording() -> Recording:
    return Recording()


@pytest.fixture
def erp(erp_sim: ErpSimulator, recording: Recording) -> HttpErpGateway:
    erp_sim.add_supplier("DE100000001", "Acme GmbH")
    return HttpErpGateway(
        erp_sim.url, SecretStr(erp_sim.token), transport=recording, backoff=0, sleep=lambda _: None
    )


def test_erp_push_is_created_once_and_conforms_to_the_contract(
    erp: HttpErpGateway, erp_sim: ErpSimulator, recording: Recording
) -> None:
    first = erp.push_invoice(invoice())
    again = erp.push_invoice(invoice())
    assert isinstance(first, Accepted) and not first.already_existed
    assert again == Accepted(erp_id=first.erp_id, already_existed=True)
    assert erp.find_invoice("rossum:1") == first.erp_id
    assert erp.find_invoice("rossum:404") is None
    assert erp_sim.create_count("rossum:1") == 1
    spec = load_erp_spec()
    for request, response in recording.exchanges:
        check_exchange(spec, request, response)


def test_erp_rejections_carry_the_field_and_reason(
    erp: HttpErpGateway, recording: Recording
) -> None:
    result = erp.push_invoice(invoice(vat="XX999"))
    assert isinstance(result, Rejected)
    assert any("vatId" in r and "XX999" in r for r in result.reasons), result.reasons
    check_exchange(load_erp_spec(), *recording.exchanges[-1])


def test_erp_wrong_token_is_a_configuration_error(erp_sim: ErpSimulator) -> None:
    gateway = HttpErpGateway(erp_sim.url, SecretStr("wrong"), sleep=lambda _: None)
    with pytest.raises(ConfigurationError, match="HTTP 401, check the ERP token"):
        gateway.push_invoice(invoice())


def test_erp_timeout_after_store_is_retried_without_a_second_invoice(
    erp: HttpErpGateway, erp_sim: ErpSimulator
) -> None:
    erp_sim.inject(Fault(status=500, method="POST", path_prefix="/invoices", after_processing=True))
    result = erp.push_invoice(invoice())
    assert isinstance(result, Accepted) and result.already_existed
    assert erp_sim.create_count("rossum:1") == 1


def test_erp_throttling_waits_as_told(erp_sim: ErpSimulator) -> None:
    erp_sim.add_supplier("DE100000001", "Acme GmbH")
    waits: list[float] = []
    gateway = HttpErpGateway(erp_sim.url, SecretStr(erp_sim.token), sleep=waits.append)
    erp_sim.inject(Fault(status=429, times=2, retry_after=3))
    assert isinstance(gateway.push_invoice(invoice()), Accepted)
    assert waits == [3.0, 3.0]


def test_erp_down_is_transient(erp_sim: ErpSimulator) -> None:
    erp_sim.add_supplier("DE100000001", "Acme GmbH")
    gateway = HttpErpGateway(
        erp_sim.url, SecretStr(erp_sim.token), max_attempts=3, backoff=0, sleep=lambda _: None
    )
    erp_sim.inject(Fault(status=503, times=3))
    with pytest.raises(TransientError, match="HTTP 503"):
        gateway.push_invoice(invoice())
    assert erp_sim.invoices == {}


def _rossum(sim: RossumSimulator, waits: list[float] | None = None) -> SdkRossumClient:
    return SdkRossumClient(
        sim.api_url,
        sim.username,
        SecretStr(sim.password),
        backoff=0,
        sleep=(waits.append if waits is not None else lambda _: None),
    )


def _seed(sim: RossumSimulator, queue: int, n: int) -> list[int]:
    sim.add_queue(queue)
    return [
        sim.add_annotation(queue, build_annotation_content(), status="confirmed") for _ in range(n)
    ]


def test_rossum_pages_every_confirmed_annotation_once(rossum_sim: RossumSimulator) -> None:
    ids = _seed(rossum_sim, 5, 230)
    client = _rossum(rossum_sim)
    seen = [int(r["url"].rsplit("/", 1)[1]) for r in client.confirmed_annotations(5)]
    assert sorted(seen) == ids
    gets = [c for c in rossum_sim.calls if c.method == "GET" and c.path.endswith("/export")]
    assert len(gets) == 3
    assert all(
        c.query.get("page_size") == "100" and c.query.get("status") == "confirmed" for c in gets
    )


def test_rossum_mark_exported_moves_exactly_the_given_ids(rossum_sim: RossumSimulator) -> None:
    ids = _seed(rossum_sim, 5, 5)
    client = _rossum(rossum_sim)
    assert client.mark_exported(5, ids[:3]) == dict.fromkeys(ids[:3], "exported")
    assert client.mark_exported(5, ids[:3]) == dict.fromkeys(ids[:3], "exported")  # a no-op
    assert [rossum_sim.statuses()[i] for i in ids] == ["exported"] * 3 + ["confirmed"] * 2
    with pytest.raises(ValueError, match="at most 100 ids"):
        client.mark_exported(5, list(range(101)))


def test_rossum_failed_export_carries_the_message(rossum_sim: RossumSimulator) -> None:
    (annotation_id,) = _seed(rossum_sim, 5, 1)
    _rossum(rossum_sim).mark_failed_export(
        annotation_id, "ERP rejected the invoice: supplier unknown"
    )
    annotation = rossum_sim.annotation(annotation_id)
    assert annotation["status"] == "failed_export"
    assert annotation["messages"][0]["content"] == "ERP rejected the invoice: supplier unknown"


def test_rossum_expired_token_means_one_relogin(rossum_sim: RossumSimulator) -> None:
    ids = _seed(rossum_sim, 5, 2)
    client = _rossum(rossum_sim)
    assert len(list(client.confirmed_annotations(5))) == 2
    rossum_sim.expire_tokens()
    assert client.mark_exported(5, ids) == dict.fromkeys(ids, "exported")
    assert rossum_sim.count("POST", "/api/v1/auth/login") == 2


def test_rossum_throttling_waits_as_told(rossum_sim: RossumSimulator) -> None:
    _seed(rossum_sim, 5, 2)
    waits: list[float] = []
    client = _rossum(rossum_sim, waits)
    rossum_sim.inject(Fault(status=429, times=2, retry_after=2, path_prefix="/api/v1/queues"))
    assert len(list(client.confirmed_annotations(5))) == 2
    assert waits == [2.0, 2.0]
