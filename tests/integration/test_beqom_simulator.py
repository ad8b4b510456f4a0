"""The beqom simulator enforces the contract (so a wrong hub fails), and the real adapter speaks
it over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from erphub.clients.beqom import HttpBeqomClient, ImportedDocument, ImportRejected, WorkerDocument
from erphub.errors import ConfigurationError, TransientError
from erphub_local.simulators.base import Fault
from erphub_local.simulators.beqom import IMPORT_PATH, BeqomSimulator

pytestmark = pytest.mark.integration

PAST = "2026-01-31T00:00:00Z"


@pytest.fixture
def sim() -> Iterator[BeqomSimulator]:
    with BeqomSimulator() as simulator:
        simulator.add_workers("W1", "W2")
        simulator.add_round("PAY-OPEN", "Open")
        simulator.add_round("PAY-RUNNING", "In Progress")
        simulator.add_round("PAY-CLOSED", "Closed")
        yield simulator


def token(sim: BeqomSimulator, scope: str = "import_inbox") -> str:
    response = httpx.post(
        sim.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
            "scope": scope,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    return str(body["access_token"])


def post_import(
    sim: BeqomSimulator,
    bearer: str | None,
    *,
    fields: dict[str, str] | None = None,
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
) -> httpx.Response:
    data = {
        "workerexternalId": "W1",
        "communicationRoundCode": "PAY-OPEN",
        "isSummary": "false",
        "generationTime": PAST,
    }
    data.update(fields or {})
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return httpx.post(
        sim.import_url,
        data={k: v for k, v in data.items() if v is not None},
        files=files if files is not None else [("file", ("a.pdf", b"%PDF-1.7", "application/pdf"))],
        headers=headers,
    )


def errors(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["status"] == response.status_code
    assert body["title"]
    return dict(body.get("errors", {}))


# --- the simulator's contract ------------------------------------------------------------------


def test_a_token_request_must_be_form_encoded(sim: BeqomSimulator) -> None:
    response = httpx.post(
        sim.token_url,
        files={"grant_type": (None, "client_credentials"), "client_id": (None, sim.client_id)},
    )
    assert (response.status_code, response.json()) == (400, {"error": "invalid_request"})
    assert sim.tokens_issued == 0


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"scope": "payinformationapi"}, "invalid_scope"),
        ({"scope": ""}, "invalid_scope"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
def test_the_token_endpoint_checks_client_scope_and_grant(
    sim: BeqomSimulator, change: dict[str, str], error: str
) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "scope": "import_inbox",
        **change,
    }
    response = httpx.post(sim.token_url, data=form)
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_imports_need_a_valid_unexpired_token(sim: BeqomSimulator) -> None:
    assert post_import(sim, None).status_code == 401
    assert post_import(sim, "made-up").status_code == 401
    bearer = token(sim)
    assert post_import(sim, bearer).status_code == 200
    sim.advance(3601)
    expired = post_import(sim, bearer)
    assert expired.status_code == 401
    assert "invalid_token" in expired.headers["WWW-Authenticate"]


def test_an_import_must_be_multipart(sim: BeqomSimulator) -> None:
    response = httpx.post(
        sim.import_url,
        json={"workerexternalId": "W1"},
        headers={"Authorization": f"Bearer {token(sim)}"},
    )
    assert response.status_code == 415


def test_the_same_file_name_overwrites_and_says_so(sim: BeqomSimulator) -> None:
    bearer = token(sim)
    first = post_import(sim, bearer).json()
    second = post_import(
        sim, bearer, files=[("file", ("a.pdf", b"%PDF-1.7 v2", "application/pdf"))]
    ).json()
    assert first["data"][0]["overridden"] is False
    assert second["data"][0]["overridden"] is True
    assert second["data"][0]["documentId"] == first["data"][0]["documentId"]
    assert first["totalCount"] == 1
    [stored] = sim.documents.values()
    assert (stored.content, stored.imports) == (b"%PDF-1.7 v2", 2)


def test_field_names_are_matched_case_insensitively_as_aspnet_binds_them(
    sim: BeqomSimulator,
) -> None:
    response = httpx.post(
        sim.import_url,
        data={
            "WorkerExternalId": "W2",
            "communicationroundcode": "PAY-RUNNING",
            "IsSummary": "false",
            "generationtime": PAST,
        },
        files={"File": ("b.pdf", b"%PDF-1.7", "application/pdf")},
        headers={"Authorization": f"Bearer {token(sim)}"},
    )
    assert response.status_code == 200, response.text
    assert ("PAY-RUNNING", "W2", "b.pdf") in sim.documents


@pytest.mark.parametrize(
    ("fields", "files", "field", "message"),
    [
        ({"workerexternalId": "W9"}, None, "workerexternalId", "Worker 'W9' does not exist."),
        ({"communicationRoundCode": "NOPE"}, None, "communicationRoundCode", "does not exist"),
        ({"communicationRoundCode": "PAY-CLOSED"}, None, "communicationRoundCode", "is Closed"),
        ({"generationTime": "2999-01-01T00:00:00Z"}, None, "generationTime", "past date"),
        ({"generationTime": "soon"}, None, "generationTime", "not a valid date"),
        ({"isSummary": "maybe"}, None, "isSummary", "not valid"),
        ({}, [("file", ("a.exe", b"MZ", "application/octet-stream"))], "file", "'.exe'"),
        ({}, [("file", ("a.pdf", b"", "application/pdf"))], "file", "empty"),
        ({}, [("file", ("a.pdf", b"hello", "application/pdf"))], "file", "not a valid PDF"),
        (
            {},
            [("file", ("a.pdf", b"%PDF", "application/pdf")), ("file", ("b.pdf", b"%PDF", "x"))],
            "file",
            "one document per worker",
        ),
        ({}, [("document", ("a.pdf", b"%PDF", "application/pdf"))], "file", "required"),
    ],
)
def test_bad_imports_are_refused_with_problem_details_naming_the_field(
    sim: BeqomSimulator,
    fields: dict[str, str],
    files: list[tuple[str, tuple[str, bytes, str]]] | None,
    field: str,
    message: str,
) -> None:
    response = post_import(sim, token(sim), fields=fields, files=files)
    assert response.status_code == 400
    assert message in " ".join(errors(response)[field])
    assert sim.documents == {}


def test_a_token_without_the_import_scope_is_forbidden() -> None:
    with BeqomSimulator(allowed_scopes=("import_inbox", "payinformationapi")) as sim:
        sim.add_workers("W1")
        sim.add_round("PAY-OPEN")
        assert post_import(sim, token(sim, "payinformationapi")).status_code == 403


# --- the adapter against the simulator -------------------------------------------------------


def adapter(sim: BeqomSimulator, **kwargs: Any) -> HttpBeqomClient:
    return HttpBeqomClient(
        sim.token_url,
        sim.import_url,
        sim.client_id,
        SecretStr(sim.client_secret),
        backoff=0,
        sleep=lambda _: None,
        **kwargs,
    )


def worker_document(
    worker: str = "W1", round_code: str = "PAY-OPEN", **kwargs: Any
) -> WorkerDocument:
    return WorkerDocument(
        communication_round_code=round_code,
        worker_external_id=worker,
        file_name=kwargs.pop("file_name", "payslip.pdf"),
        generation_time=kwargs.pop("generation_time", datetime.now(UTC) - timedelta(days=1)),
    )


def test_the_adapter_imports_and_overrides_with_one_token(sim: BeqomSimulator) -> None:
    client = adapter(sim)
    first = client.import_document(worker_document(), b"%PDF-1.7")
    again = client.import_document(worker_document(), b"%PDF-1.7")
    other = client.import_document(worker_document("W2"), b"%PDF-1.7")
    assert isinstance(first, ImportedDocument)
    assert isinstance(again, ImportedDocument)
    assert isinstance(other, ImportedDocument)
    assert (first.overridden, again.overridden, other.overridden) == (False, True, False)
    assert again.document_id == first.document_id
    assert sim.token_requests() == 1
    assert len(sim.documents) == 2


def test_the_adapter_renews_an_expired_token_once(sim: BeqomSimulator) -> None:
    client = adapter(sim)
    client.import_document(worker_document(), b"%PDF-1.7")
    sim.advance(3601)  # beqom's clock moved on; the hub still believes its token fresh
    result = client.import_document(worker_document("W2"), b"%PDF-1.7")
    assert isinstance(result, ImportedDocument)
    assert sim.token_requests() == 2
    assert [c.status for c in sim.calls if c.path == IMPORT_PATH] == [200, 401, 200]


def test_the_adapter_reports_beqoms_reasons(sim: BeqomSimulator) -> None:
    result = adapter(sim).import_document(worker_document("W1", "PAY-CLOSED"), b"%PDF-1.7")
    assert isinstance(result, ImportRejected)
    assert result.status == 400
    assert result.reasons == [
        "communicationRoundCode: Communication round 'PAY-CLOSED' is Closed: documents can only "
        "be imported into an Open or In Progress round."
    ]


def test_the_adapter_retries_a_failure_after_storing_and_gets_overridden(
    sim: BeqomSimulator,
) -> None:
    sim.inject(Fault(502, path_prefix=IMPORT_PATH, after_processing=True))
    result = adapter(sim).import_document(worker_document(), b"%PDF-1.7")
    assert isinstance(result, ImportedDocument)
    assert result.overridden  # the first call had stored it: still one document
    [stored] = sim.documents.values()
    assert stored.imports == 2


def test_the_adapter_gives_up_on_a_down_beqom_with_a_transient_error(sim: BeqomSimulator) -> None:
    sim.inject(Fault(503, times=3, path_prefix=IMPORT_PATH))
    with pytest.raises(TransientError, match="HTTP 503"):
        adapter(sim, max_attempts=3).import_document(worker_document(), b"%PDF-1.7")
    assert sim.import_requests() == 3


def test_wrong_credentials_are_a_configuration_error(sim: BeqomSimulator) -> None:
    client = HttpBeqomClient(sim.token_url, sim.import_url, sim.client_id, SecretStr("nope"))
    with pytest.raises(ConfigurationError, match="invalid_client"):
        client.import_document(worker_document(), b"%PDF-1.7")
    assert sim.import_requests() == 0
