"""The Procuros adapter against scripted HTTP answers (no sockets): statuses, retries, lookups."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

import httpx
import pytest
from pydantic import SecretStr

from erphub.clients.procuros import (
    AlreadyReceived,
    ErrorReport,
    HttpProcurosClient,
    NotForwarded,
    OutcomeUnknown,
    PartyIdentifier,
    Refused,
    Sent,
    receiver_of,
)
from erphub.errors import BadInputError, ConfigurationError, TransientError
from erphub.procuros_mapping import ProcurosTransaction

BASE = "https://api.procuros.test/v2"
TX = ProcurosTransaction(
    type="INVOICE", content={"header": {"invoiceIdentifier": "INV-1"}, "items": []}
)
Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests in order and keeps them."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(script: Handler, sleeps: list[float] | None = None) -> HttpProcurosClient:
    waits = sleeps if sleeps is not None else []
    return HttpProcurosClient(
        BASE,
        SecretStr("secret-token"),
        backoff=0.01,
        max_attempts=3,
        transport=httpx.MockTransport(script),
        sleep=waits.append,
    )


def answer(status: int, body: object | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_201_is_sent_with_the_transaction_id_and_the_canonical_bytes() -> None:
    script = Script(answer(201, {"procurosTransactionId": "949b2f25-fd9d-4c58-8899-b4dc277f8cf9"}))
    outcome = client(script).send_transaction(TX)
    assert outcome == Sent(transaction_id="949b2f25-fd9d-4c58-8899-b4dc277f8cf9")
    request = script.requests[0]
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/transactions")
    assert request.headers["Authorization"] == "Bearer secret-token"
    assert request.headers["Content-Type"] == "application/json"
    assert request.content == TX.body()


def test_202_is_not_forwarded_with_the_reason() -> None:
    script = Script(answer(202, {"message": "Trade relationship not yet active."}))
    outcome = client(script).send_transaction(TX)
    assert outcome == NotForwarded(message="Trade relationship not yet active.")


def test_400_payload_already_received_is_recognised_even_without_error_url() -> None:
    script = Script(answer(400, {"message": "Payload already received"}))
    assert client(script).send_transaction(TX) == AlreadyReceived(
        message="Payload already received"
    )


def test_422_is_refused_with_field_errors_and_the_portal_link() -> None:
    body = {
        "message": "The given data was invalid.",
        "errors": {"buyer": ["Could not resolve party using provided identifiers"]},
        "errorUrl": "https://portal.procuros.io/errors/1",
    }
    outcome = client(Script(answer(422, body))).send_transaction(TX)
    assert isinstance(outcome, Refused)
    assert outcome.status == 422
    assert outcome.error_url == "https://portal.procuros.io/errors/1"
    assert outcome.reasons == ["buyer: Could not resolve party using provided identifiers"]


def test_another_400_is_a_refusal_not_a_duplicate() -> None:
    outcome = client(Script(answer(400, {"message": "Malformed JSON"}))).send_transaction(TX)
    assert isinstance(outcome, Refused)
    assert (outcome.status, outcome.reasons, outcome.error_url) == (400, ["Malformed JSON"], None)


def test_429_is_waited_out_as_told_and_sent_again() -> None:
    sleeps: list[float] = []
    script = Script(
        answer(429, {"message": "Too Many Attempts."}, **{"Retry-After": "7"}),
        answer(201, {"procurosTransactionId": "t-1"}),
    )
    assert client(script, sleeps).send_transaction(TX) == Sent(transaction_id="t-1")
    assert sleeps == [7.0]
    assert len(script.requests) == 2


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_5xx_on_post_is_an_unknown_outcome_never_resent(status: int) -> None:
    script = Script(answer(status, {"message": "oops"}, **{"Retry-After": "3"}))
    with pytest.raises(OutcomeUnknown, match=f"HTTP {status}, outcome unknown") as raised:
        client(script).send_transaction(TX)
    assert raised.value.retry_after == 3.0
    assert len(script.requests) == 1


def test_a_read_timeout_on_post_is_an_unknown_outcome_never_resent() -> None:
    script = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(OutcomeUnknown, match="ReadTimeout, outcome unknown"):
        client(script).send_transaction(TX)
    assert len(script.requests) == 1


def test_a_connection_that_never_opened_is_retried_with_backoff() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ConnectError("refused"), answer(201, {"procurosTransactionId": "t-2"}))
    assert client(script, sleeps).send_transaction(TX) == Sent(transaction_id="t-2")
    assert len(sleeps) == 1 and sleeps[0] > 0


def test_still_throttled_after_every_wait_is_transient_not_unknown() -> None:
    throttled = [answer(429, {"message": "Too Many Attempts."}) for _ in range(5)]
    with pytest.raises(TransientError, match="still throttled") as raised:
        client(Script(*throttled)).send_transaction(TX)
    assert not isinstance(raised.value, OutcomeUnknown)


@pytest.mark.parametrize(
    ("status", "hint"), [(401, "check the Procuros API token"), (404, "PROCUROS_BASE_URL")]
)
def test_auth_and_path_errors_are_configuration_errors(status: int, hint: str) -> None:
    with pytest.raises(ConfigurationError, match=hint) as raised:
        client(Script(answer(status, {"message": "Unauthenticated."}))).send_transaction(TX)
    assert "secret-token" not in str(raised.value)


def test_sent_transactions_follow_the_cursor_with_the_filters() -> None:
    item = {
        "procurosTransactionId": "t-1",
        "type": "INVOICE",
        "status": "SUCCESS",
        "flow": "LIVE",
        "createdAt": "2026-11-20T10:00:00.000000+01:00",
        "isLatestVersion": True,
        "content": {"header": {"invoiceIdentifier": "INV-1"}},
    }
    script = Script(
        listing([item, {"broken": True}], "c2"),
        listing([{**item, "procurosTransactionId": "t-2"}], None),
    )
    found = list(
        client(script).sent_transactions("INVOICE", date(2026, 11, 19), date(2026, 11, 21))
    )
    assert [r.transaction_id for r in found] == ["t-1", "t-2"]
    first, second = (dict(r.url.params) for r in script.requests)
    assert first == {
        "filter[type]": "INVOICE",
        "filter[created_between]": "2026-11-19,2026-11-21",
        "per_page": "100",
    }
    assert second == {**first, "cursor": "c2"}


def test_listing_is_a_read_and_retried_on_5xx() -> None:
    script = Script(
        answer(503, {"message": "down"}),
        answer(200, {"items": [], "hasMore": False, "nextCursor": None}),
    )
    assert list(client(script).sent_transactions("INVOICE", date.today(), date.today())) == []
    assert len(script.requests) == 2


def listing(items: list[object], cursor: str | None) -> httpx.Response:
    return answer(
        200,
        {
            "items": items,
            "hasMore": cursor is not None,
            "perPage": 100,
            "count": len(items),
            "nextCursor": cursor,
            "nextPageUrl": None,
        },
    )


def gln(number: str) -> dict[str, str]:
    return {"identifier": number, "domain": "GS1"}


def test_known_parties_are_every_party_named_on_every_page_of_the_window() -> None:
    incoming_order = {
        "procurosTransactionId": "t-1",
        "type": "ORDER",
        "status": "SUCCESS",
        "flow": "LIVE",
        "content": {
            "header": {
                "buyer": {"name": "Frischmarkt", "identifiers": [gln("4012345000019")]},
                "supplier": {"identifiers": [gln("4000001000005")]},
                "shipTo": {"identifiers": [{"identifier": "DE200000001", "domain": "VAT_DE"}]},
                "orderIdentifier": "PO-1",
                "orderDate": "2026-10-01T00:00:00.000000Z",
            },
            "items": [{"identifiers": [gln("4000000000017")]}],
        },
    }
    sent_invoice = {
        "procurosTransactionId": "t-2",
        "type": "INVOICE",
        "content": {
            "header": {
                "buyer": {
                    "identifiers": [gln("4012345000026"), {"identifier": "", "domain": "GS1"}]
                },
                "supplier": {"identifiers": [gln("4000001000005"), {"domain": "DUNS"}]},
                "billTo": {"identifiers": "not a list"},
            }
        },
    }
    script = Script(
        listing([incoming_order, "not an object", {"content": None}], "c2"),
        listing([sent_invoice], None),
    )

    found = client(script).known_parties(date(2025, 11, 21), date(2026, 11, 22))

    assert found == {
        PartyIdentifier(domain="GS1", identifier="4012345000019"),
        PartyIdentifier(domain="GS1", identifier="4000001000005"),
        PartyIdentifier(domain="VAT_DE", identifier="DE200000001"),
        PartyIdentifier(domain="GS1", identifier="4012345000026"),
    }
    assert all(r.method == "GET" and r.url.path == "/v2/all-transactions" for r in script.requests)
    first, second = (dict(r.url.params) for r in script.requests)
    # every type and both directions: no type filter; per_page always explicit
    assert first == {"filter[created_between]": "2025-11-21,2026-11-22", "per_page": "100"}
    assert second == {**first, "cursor": "c2"}


def test_known_parties_stop_when_there_is_no_cursor_even_if_more_is_claimed() -> None:
    script = Script(answer(200, {"items": [], "hasMore": True, "nextCursor": None}))
    assert client(script).known_parties(date(2026, 1, 1), date(2026, 1, 2)) == frozenset()
    assert len(script.requests) == 1


def test_a_failing_history_is_a_transient_error_after_the_retries() -> None:
    script = Script(*(answer(503, {"message": "down"}) for _ in range(3)))
    with pytest.raises(TransientError, match="Procuros GET /all-transactions: HTTP 503"):
        client(script).known_parties(date(2026, 1, 1), date(2026, 1, 2))
    assert len(script.requests) == 3


def test_the_receiver_is_the_supplier_of_an_order_and_the_buyer_of_everything_else() -> None:
    header = {"buyer": {"identifiers": [gln("1")]}, "supplier": {"identifiers": [gln("2")]}}
    assert receiver_of("ORDER", {"header": header}) == (
        "supplier",
        [PartyIdentifier(domain="GS1", identifier="2")],
    )
    assert receiver_of("INVOICE", {"header": header}) == (
        "buyer",
        [PartyIdentifier(domain="GS1", identifier="1")],
    )
    assert receiver_of("CREDIT_NOTE", {"header": {}}) == ("buyer", [])
    assert str(PartyIdentifier(domain="GS1", identifier="1")) == "GLN 1"
    assert str(PartyIdentifier(domain="VAT_DE", identifier="DE1")) == "VAT_DE DE1"


def test_an_error_report_posts_the_documented_body_and_returns_the_portal_link() -> None:
    script = Script(answer(201, {"message": "OK.", "errorUrl": "https://portal/errors/9"}))
    report = ErrorReport(
        error_reason="Product GTIN '0001647296281' not found",
        error_context={"erpDocumentId": "OUT-1"},
        transaction_identifier="INV-1",
        transaction_type="INVOICE",
    )
    assert client(script).report_error(report) == "https://portal/errors/9"
    assert json.loads(script.requests[0].content) == {
        "errorReason": "Product GTIN '0001647296281' not found",
        "errorType": "DATA",
        "errorContext": {"erpDocumentId": "OUT-1"},
        "transactionIdentifier": "INV-1",
        "transactionType": "INVOICE",
    }


def test_a_refused_error_report_says_why() -> None:
    body = {"message": "The given data was invalid.", "errors": {"errorType": ["invalid"]}}
    with pytest.raises(BadInputError, match=r"refused the error report \(HTTP 422\).*errorType"):
        client(Script(answer(422, body))).report_error(ErrorReport(error_reason="x"))


def test_a_lost_error_report_answer_is_unknown() -> None:
    with pytest.raises(OutcomeUnknown):
        client(Script(httpx.RemoteProtocolError("reset"))).report_error(
            ErrorReport(error_reason="x")
        )
