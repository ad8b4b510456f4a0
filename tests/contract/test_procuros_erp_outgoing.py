"""The ERP adapter's outgoing-document traffic, checked against ``contracts/erp-openapi.yaml``.

The hub's HttpErpGateway talks to the ERP simulator over loopback HTTP; every exchange, request
and response, must conform to the project's ERP contract.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from erphub.clients.erp import HttpErpGateway
from erphub.clients.erp_port import OutgoingUpdate
from erphub.errors import BadInputError
from erphub_local.simulators import ErpSimulator
from tests.contract.openapi_check import check_exchange, load_erp_spec

pytestmark = pytest.mark.integration


class Recorder(httpx.BaseTransport):
    """Keeps every exchange (bodies read) for checking against the contract."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.exchanges.append((request, response))
        return response


@pytest.fixture
def erp() -> Iterator[ErpSimulator]:
    with ErpSimulator() as sim:
        for n in range(1, 8):
            sim.add_outgoing(
                {
                    "id": f"OUT-{n}",
                    "type": "INVOICE" if n % 2 else "CREDIT_NOTE",
                    "number": f"SI-{n}",
                    "document": {"documentDate": "2026-03-02"},
                }
            )
        sim.add_outgoing({"id": "OUT-9", "procurosStatus": "TRANSMITTED"})
        yield sim


def test_listing_pages_and_updates_speak_the_erp_contract(erp: ErpSimulator) -> None:
    recorder = Recorder()
    gateway = HttpErpGateway(erp.url, SecretStr(erp.token), backoff=0.01, transport=recorder)
    seen, cursor = [], None
    while True:
        page = gateway.pending_outgoing(cursor, limit=3)
        seen += [doc.id for doc in page.documents]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"OUT-{n}" for n in range(1, 8)]  # never the one with a status
    updated = gateway.update_outgoing(
        "OUT-1",
        OutgoingUpdate(
            procuros_status="TRANSMITTED", procuros_transaction_id="tx-1", error_url=None
        ),
    )
    assert (updated.procuros_status, updated.procuros_transaction_id) == ("TRANSMITTED", "tx-1")
    gateway.update_outgoing("OUT-2", OutgoingUpdate(error_url="https://portal.test/errors/1"))
    assert erp.outgoing("OUT-2")["errorUrl"] == "https://portal.test/errors/1"
    assert erp.outgoing("OUT-2")["procurosStatus"] is None
    assert [d.id for d in gateway.pending_outgoing().documents] == [f"OUT-{n}" for n in range(2, 8)]
    with pytest.raises(
        BadInputError, match="update of outgoing document OUT-404: No outgoing document 'OUT-404'"
    ):
        gateway.update_outgoing("OUT-404", OutgoingUpdate(procuros_status="NO_ACTION"))
    patches = [r for r, _ in recorder.exchanges if r.method == "PATCH"]
    assert [p.content for p in patches][:2] == [
        b'{"procurosStatus":"TRANSMITTED","errorUrl":null,"procurosTransactionId":"tx-1"}',
        b'{"errorUrl":"https://portal.test/errors/1"}',
    ]
    assert len(recorder.exchanges) == 7
    spec = load_erp_spec()
    for request, response in recorder.exchanges:
        check_exchange(spec, request, response)
