"""The beqom adapter: form-encoded client credentials, a token cached per container and renewed
before it expires or on 401, one multipart import per document, errors as types."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from erphub.clients.beqom import (
    HttpBeqomClient,
    ImportedDocument,
    ImportRejected,
    TokenCache,
    WorkerDocument,
    parse_import_response,
)
from erphub.errors import ConfigurationError, TransientError

TOKEN_URL = "https://id.beqom.test/connect/token"
IMPORT_URL = "https://acme.beqom.test/api/inbox/documents/import"
SECRET = "very-secret-value"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeBeqomHttp:
    """Scripted beqom answers; records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.tokens_issued = 0
        self.expires_in = 3600
        self.import_answers: list[tuple[int, Any]] = []
        self.token_answers: list[tuple[int, Any]] = []
        self.valid: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if str(request.url) == TOKEN_URL:
            if self.token_answers:
                status, body = self.token_answers.pop(0)
                return httpx.Response(status, json=body)
            self.tokens_issued += 1
            token = f"token-{self.tokens_issued}"
            self.valid.add(token)
            return httpx.Response(
                200,
                json={"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"},
            )
        if self.import_answers:
            status, body = self.import_answers.pop(0)
            headers = {"Retry-After": "2"} if status == 429 else {}
            return httpx.Response(status, json=body, headers=headers)
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer not in self.valid:
            return httpx.Response(401)
        return httpx.Response(200, json=page({"documentId": "doc-1", "overridden": False}))

    def imports(self) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url) == IMPORT_URL]

    def token_calls(self) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url) == TOKEN_URL]


def page(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": [{"importTime": "2026-11-21T10:00:00Z", **item}],
        "pageNumber": 1,
        "pageSize": 1,
        "totalCount": 1,
    }


def document(name: str = "payslip-2026-10.pdf") -> WorkerDocument:
    return WorkerDocument(
        communication_round_code="PAY-2026-10",
        worker_external_id="W-0042",
        file_name=name,
        generation_time=datetime(2026, 10, 31, 18, 30, tzinfo=UTC),
    )


@pytest.fixture
def server() -> FakeBeqomHttp:
    return FakeBeqomHttp()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(server: FakeBeqomHttp, clock: Clock, waits: list[float]) -> HttpBeqomClient:
    return HttpBeqomClient(
        TOKEN_URL,
        IMPORT_URL,
        "acme-hub",
        SecretStr(SECRET),
        transport=httpx.MockTransport(server),
        sleep=waits.append,
        clock=clock,
        max_attempts=3,
        backoff=0.1,
    )


def multipart_fields(request: httpx.Request) -> dict[str, Any]:
    """The parts of a multipart body: name -> value (text) or (filename, content type, bytes)."""
    content_type = request.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=")[1].encode()
    fields: dict[str, Any] = {}
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, body = part.strip(b"\r\n").partition(b"\r\n\r\n")
        headers = head.decode().split("\r\n")
        disposition = next(h for h in headers if h.lower().startswith("content-disposition"))
        name = disposition.split('name="')[1].split('"')[0]
        if 'filename="' in disposition:
            filename = disposition.split('filename="')[1].split('"')[0]
            ctype = next(h for h in headers if h.lower().startswith("content-type")).split(": ")[1]
            fields[name] = (filename, ctype, body)
        else:
            fields[name] = body.decode()
    return fields


# --- token ---------------------------------------------------------------------------------------


def test_the_token_request_is_form_encoded_client_credentials_with_the_import_scope(
    client: HttpBeqomClient, server: FakeBeqomHttp
) -> None:
    client.import_document(document(), b"%PDF-1.7")
    [token_request] = server.token_calls()
    assert token_request.method == "POST"
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": ["acme-hub"],
        "client_secret": [SECRET],
        "scope": ["import_inbox"],
    }


def test_one_token_serves_every_import_until_shortly_before_it_expires(
    client: HttpBeqomClient, server: FakeBeqomHttp, clock: Clock
) -> None:
    for i in range(5):
        client.import_document(document(f"doc-{i}.pdf"), b"%PDF-1.7")
    assert len(server.token_calls()) == 1
    clock.now += 3600 - 61  # still more than 60 s left
    client.import_document(document(), b"%PDF-1.7")
    assert len(server.token_calls()) == 1
    clock.now += 2  # less than 60 s left: renewed before it can expire mid-request
    client.import_document(document(), b"%PDF-1.7")
    assert len(server.token_calls()) == 2
    assert server.imports()[-1].headers["Authorization"] == "Bearer token-2"


def test_a_short_lived_token_is_renewed_at_half_its_life() -> None:
    clock = Clock()
    fetched: list[int] = []

    def fetch() -> tuple[SecretStr, int]:
        fetched.append(1)
        return SecretStr(f"t{len(fetched)}"), 30

    cache = TokenCache(fetch, clock=clock)
    assert cache.get().get_secret_value() == "t1"
    clock.now += 14
    assert cache.get().get_secret_value() == "t1"
    clock.now += 1
    assert cache.get().get_secret_value() == "t2"


def test_a_401_renews_the_token_once_and_sends_the_import_again(
    client: HttpBeqomClient, server: FakeBeqomHttp
) -> None:
    client.import_document(document(), b"%PDF-1.7")
    server.valid.clear()  # beqom revoked the token (or it expired early)
    result = client.import_document(document(), b"%PDF-1.7")
    assert isinstance(result, ImportedDocument)
    assert len(server.token_calls()) == 2
    auth = [r.headers["Authorization"] for r in server.imports()]
    assert auth == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]


def test_a_second_401_with_a_fresh_token_is_a_configuration_error(
    client: HttpBeqomClient, server: FakeBeqomHttp
) -> None:
    server.import_answers = [(401, {}), (401, {})]
    with pytest.raises(ConfigurationError, match="401 with a fresh token"):
        client.import_document(document(), b"%PDF-1.7")
    assert len(server.token_calls()) == 2
    assert len(server.imports()) == 2


@pytest.mark.parametrize("error", ["invalid_client", "invalid_scope", "unsupported_grant_type"])
def test_refused_credentials_are_a_configuration_error_that_never_shows_the_secret(
    client: HttpBeqomClient, server: FakeBeqomHttp, error: str
) -> None:
    server.token_answers = [(400, {"error": error})]
    with pytest.raises(ConfigurationError) as raised:
        client.import_document(document(), b"%PDF-1.7")
    assert error in str(raised.value)
    assert "import_inbox" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert server.imports() == []


def test_an_unavailable_token_endpoint_is_retried_then_transient(
    client: HttpBeqomClient, server: FakeBeqomHttp, waits: list[float]
) -> None:
    server.token_answers = [(503, {}), (503, {}), (503, {})]
    with pytest.raises(TransientError, match="token: HTTP 503"):
        client.import_document(document(), b"%PDF-1.7")
    assert len(server.token_calls()) == 3
    assert len(waits) == 2


# --- import --------------------------------------------------------------------------------------


def test_the_import_is_one_multipart_call_with_the_documented_field_names(
    client: HttpBeqomClient, server: FakeBeqomHttp
) -> None:
    result = client.import_document(document(), b"%PDF-1.7 payslip")
    assert result == ImportedDocument(
        document_id="doc-1", overridden=False, import_time="2026-11-21T10:00:00Z"
    )
    [request] = server.imports()
    assert request.headers["Authorization"] == "Bearer token-1"
    assert multipart_fields(request) == {
        "workerexternalId": "W-0042",
        "communicationRoundCode": "PAY-2026-10",
        "isSummary": "false",
        "generationTime": "2026-10-31T18:30:00Z",
        "file": ("payslip-2026-10.pdf", "application/pdf", b"%PDF-1.7 payslip"),
    }


def test_a_problem_details_rejection_names_each_field_and_reason(
    client: HttpBeqomClient, server: FakeBeqomHttp
) -> None:
    server.import_answers = [
        (
            400,
            {
                "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
                "title": "One or more validation errors occurred.",
                "status": 400,
                "errors": {
                    "communicationRoundCode": ["Communication round 'PAY-2026-10' is Closed."],
                    "workerexternalId": ["Worker 'W-0042' does not exist."],
                },
            },
        )
    ]
    result = client.import_document(document(), b"%PDF-1.7")
    assert result == ImportRejected(
        status=400,
        reasons=[
            "communicationRoundCode: Communication round 'PAY-2026-10' is Closed.",
            "workerexternalId: Worker 'W-0042' does not exist.",
        ],
    )


def test_a_rejection_without_field_errors_keeps_the_title(
    client: HttpBeqomClient, server: FakeBeqomHttp
) -> None:
    server.import_answers = [(415, {"title": "Unsupported Media Type", "status": 415})]
    assert client.import_document(document(), b"x") == ImportRejected(
        status=415, reasons=["Unsupported Media Type"]
    )


def test_server_errors_are_retried_because_the_same_file_name_overwrites(
    client: HttpBeqomClient, server: FakeBeqomHttp, waits: list[float]
) -> None:
    server.import_answers = [(503, {}), (200, page({"documentId": "d", "overridden": True}))]
    result = client.import_document(document(), b"%PDF-1.7")
    assert isinstance(result, ImportedDocument)
    assert result.overridden
    assert len(server.imports()) == 2
    assert len(waits) == 1


def test_persistent_server_errors_end_as_a_transient_error_after_bounded_attempts(
    client: HttpBeqomClient, server: FakeBeqomHttp
) -> None:
    server.import_answers = [(500, {})] * 5
    with pytest.raises(TransientError, match="import: HTTP 500"):
        client.import_document(document(), b"%PDF-1.7")
    assert len(server.imports()) == 3


def test_throttling_waits_for_retry_after(
    client: HttpBeqomClient, server: FakeBeqomHttp, waits: list[float]
) -> None:
    server.import_answers = [(429, {"title": "Too many requests."})]
    assert isinstance(client.import_document(document(), b"%PDF-1.7"), ImportedDocument)
    assert waits == [2.0]


def test_a_wrong_scope_or_a_wrong_import_url_is_a_configuration_error(
    client: HttpBeqomClient, server: FakeBeqomHttp
) -> None:
    server.import_answers = [(403, {})]
    with pytest.raises(ConfigurationError, match="import_inbox"):
        client.import_document(document(), b"%PDF-1.7")
    server.import_answers = [(404, {"title": "Not Found"})]
    with pytest.raises(ConfigurationError, match="BEQOM_IMPORT_URL"):
        client.import_document(document(), b"%PDF-1.7")


def test_a_404_naming_the_worker_is_a_rejection_of_that_document(
    client: HttpBeqomClient, server: FakeBeqomHttp
) -> None:
    server.import_answers = [(404, {"errors": {"workerexternalId": ["Worker not found."]}})]
    assert client.import_document(document(), b"%PDF-1.7") == ImportRejected(
        status=404, reasons=["workerexternalId: Worker not found."]
    )


def test_an_unreadable_success_is_transient_so_the_import_is_sent_again(
    client: HttpBeqomClient, server: FakeBeqomHttp
) -> None:
    server.import_answers = [(200, {"data": []})]
    with pytest.raises(TransientError, match="unreadable HTTP 200"):
        client.import_document(document(), b"%PDF-1.7")


@pytest.mark.parametrize(
    "body",
    [
        {"documentId": "d", "overridden": False, "importTime": "t"},
        {"data": [{"documentId": "d", "overridden": False, "importTime": "t"}]},
        {"items": [{"documentId": "d", "overridden": False, "importTime": "t"}], "page": 1},
        [{"documentId": "d", "overridden": False, "importTime": "t"}],
    ],
    ids=["top-level", "data", "items", "bare-list"],
)
def test_the_result_is_found_wherever_the_page_puts_it(body: Any) -> None:
    assert parse_import_response(json.loads(json.dumps(body))).document_id == "d"
