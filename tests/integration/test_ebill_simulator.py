"""The eBill adapter against the eBill simulator over loopback HTTP, and the simulator's own
contract: auth, XML, batch lifecycle, presigned URLs refused the way S3 refuses them."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from erphub.clients.ebill import HttpEbillClient, ebill_auth
from erphub.clients.ebill_port import (
    DownloadUrlExpired,
    EbillRejected,
    InitSpec,
    PresignedUrlRefused,
    UploadSpec,
    UploadUrlExpired,
)
from erphub.errors import ConfigurationError
from erphub_local.simulators.base import Fault
from erphub_local.simulators.ebill import EbillSimulator

pytestmark = pytest.mark.integration

CUSTOMERS = (
    b"Account Number,Company Name,First Name,Last Name,Primary Email,Login,Password\n"
    b"A1,Acme Ltd,,,billing@acme.example,,\n"
    b"A2,,Ann,Lee,ann@lee.example,annlee,Secret123\n"
    b"A3,Beta,,,not-an-email,,\n"
    b"A1,Acme again,,,x@acme.example,,\n"
    b"A5,,Bo,,bo@x.example,,\n"
    b"A6,Six,,,six@x.example,abc,\n"
    b"A7,Seven,,,seven@x.example,,password\n"
)


@pytest.fixture
def sim() -> Iterator[EbillSimulator]:
    with EbillSimulator() as running:
        yield running


def ebill(sim: EbillSimulator, **auth: str) -> HttpEbillClient:
    scheme = auth.get("scheme", "basic")
    return HttpEbillClient(
        sim.url,
        ebill_auth(
            scheme,
            auth.get("username", sim.username),
            SecretStr(auth.get("password", sim.password)),
            auth.get("header", "X-Api-Key"),
        ),
        backoff=0,
        max_retry_after=0.01,
    )


def create(
    client: HttpEbillClient, job: str, sub: str = "Customer", **parent: str
) -> tuple[str, str]:
    created = client.create_upload(
        UploadSpec(job_id=job, sub_operation=sub, input_filename=f"{job}.csv", **parent)
    )
    assert created.id and created.upload_url and created.status == "Draft"
    return created.id, created.upload_url


def put(client: HttpEbillClient, url: str, content: bytes) -> None:
    client.upload(url, iter([content[:7], content[7:]]), len(content))


def run_to_end(client: HttpEbillClient, batch_id: str) -> None:
    for _ in range(10):
        found = client.find(batch_id=batch_id)
        assert found is not None
        if found.is_terminal:
            return
    raise AssertionError("never finished")


def test_a_customer_batch_runs_draft_queued_processing_and_reports_each_row(
    sim: EbillSimulator,
) -> None:
    client = ebill(sim)
    batch_id, url = create(client, "AUG_CUS")
    put(client, url, CUSTOMERS)
    assert client.find(job_id="AUG_CUS").status == "Draft"  # type: ignore[union-attr]
    queued = client.finalize(batch_id, "AUG_CUS")
    assert (queued.status, queued.success_message, queued.download_url) == (
        "Queued",
        "BatchProcess is in Queue",
        None,
    )
    statuses = [client.find(batch_id=batch_id).status for _ in range(3)]  # type: ignore[union-attr]
    assert statuses == ["Processing", "Partial Success", "Partial Success"]
    done = client.find(batch_id=batch_id)
    assert done is not None and done.download_url
    assert (done.success_count, done.fail_count) == (2, 5)
    assert done.success_message == "Success, 2 records successfully processed, 5 failed"
    with client.download(done.download_url) as chunks:
        output = b"".join(chunks).decode()
    rows = list(csv.DictReader(io.StringIO(output)))
    assert [(r["Account Number"], r["Result"], r["Error Message"]) for r in rows] == [
        ("A1", "Success", ""),
        ("A2", "Success", ""),
        ("A3", "Failed", "Primary Email is not a valid e-mail address"),
        ("A1", "Failed", "Account Number A1: duplicate in this file (first at row 1)"),
        ("A5", "Failed", "Company Name, or First Name and Last Name, are required"),
        ("A6", "Failed", "Login must have at least 6 characters"),
        ("A7", "Failed", "Password needs 8 characters with upper and lower case and a digit"),
    ]
    assert sorted(sim.customers) == ["A1", "A2"]


def test_an_invoice_batch_carries_its_line_item_children(sim: EbillSimulator) -> None:
    client = ebill(sim)
    sim.add_customer("A1")
    parent, url = create(client, "INV", "Invoice")
    put(
        client,
        url,
        b"Invoice Number,Customer Ref,Invoice Date\nI1,A1,2026-11-02\nI2,ZZ,2026-11-02\n",
    )
    child_1, url_1 = create(client, "ITM_1", "Invoice Line Item", parent_id=parent)
    child_2, url_2 = create(client, "ITM_2", "Invoice Line Item", parent_job_id="INV")
    header = b"Invoice Number,Description,Quantity,Unit Price\n"
    put(client, url_1, header + b"I1,Consulting,1,100\n")
    put(client, url_2, header + b"I1,Licence,x,1\nI2,Orphan,1,1\n")
    with pytest.raises(EbillRejected, match="finalized with their Invoice batch"):
        client.finalize(child_1, "ITM_1")
    client.finalize(parent, "INV")
    run_to_end(client, parent)
    done = client.find(batch_id=parent)
    assert done is not None
    assert (done.status, done.success_count, done.fail_count) == ("Partial Success", 1, 1)
    assert [
        (c.id, c.job_id, c.status, c.fail_count, bool(c.download_url)) for c in done.children
    ] == [
        (child_1, "ITM_1", "Success", 0, True),
        (child_2, "ITM_2", "Failed", 2, True),
    ]
    rows = sim.output_rows("ITM_2")
    assert [r["Error Message"] for r in rows] == [
        "Quantity must be a decimal number",
        "Invoice I2 is not an imported invoice of this batch",
    ]


@pytest.mark.parametrize(
    ("parent", "status", "message"),
    [
        ({}, 400, "parentBatchProcess or parentBatchProcessJobId is required"),
        ({"parent_id": "99"}, 404, "Parent batch process not found"),
        ({"parent_id": "1", "parent_job_id": "OTHER"}, 400, "name different batches"),
        ({"parent_job_id": "CUS"}, 400, "must be an Invoice batch process in Draft"),
    ],
)
def test_a_line_item_batch_needs_a_draft_invoice_parent(
    sim: EbillSimulator, parent: dict[str, str], status: int, message: str
) -> None:
    client = ebill(sim)
    create(client, "INV", "Invoice")
    create(client, "OTHER", "Invoice")
    create(client, "CUS")
    with pytest.raises(EbillRejected) as caught:
        create(client, "ITM", "Invoice Line Item", **parent)
    assert caught.value.status == status and message in str(caught.value)


def test_a_duplicate_job_id_is_refused(sim: EbillSimulator) -> None:
    client = ebill(sim)
    create(client, "J1")
    with pytest.raises(EbillRejected, match="jobId J1 already exists"):
        create(client, "J1")


def test_finalize_rules(sim: EbillSimulator) -> None:
    client = ebill(sim)
    empty, _ = create(client, "EMPTY")
    failed = client.finalize(empty, "EMPTY")
    assert (failed.status, failed.error_message) == ("Failed", "Input file not found")
    other, url = create(client, "OTHER")
    with pytest.raises(EbillRejected, match="do not identify the same batch process"):
        client.finalize(other, "EMPTY")
    put(client, url, CUSTOMERS)
    assert client.finalize(other, "OTHER").status == "Queued"
    assert client.finalize(other, "OTHER").status == "Queued"  # again: unchanged
    assert sim.batch("OTHER").finalize_calls == 2
    with pytest.raises(EbillRejected, match="not found"):
        client.finalize("999", "NOPE")


def test_progress_can_be_driven_explicitly(sim: EbillSimulator) -> None:
    sim.auto_progress = False
    client = ebill(sim)
    batch_id, url = create(client, "J")
    put(client, url, CUSTOMERS)
    client.finalize(batch_id, "J")
    assert [client.find(batch_id=batch_id).status for _ in range(3)] == ["Queued"] * 3  # type: ignore[union-attr]
    assert sim.advance("J") == "Processing"
    assert sim.advance("J", to_terminal=True) == "Partial Success"


def test_file_level_problems_fail_the_batch_with_a_reason(sim: EbillSimulator) -> None:
    client = ebill(sim)
    cases = {
        "LATIN1": b"Account Number,Company Name,Primary Email\nA1,M\xfcller,a@b.co\n",
        "NOCOLS": b"Name,Email\nx,y\n",
        "HEADER": b"Account Number,Company Name,Primary Email\n",
    }
    for job, content in cases.items():
        batch_id, url = create(client, job)
        put(client, url, content)
        client.finalize(batch_id, job)
        run_to_end(client, batch_id)
    errors = {job: sim.batch(job).error_message for job in cases}
    assert errors == {
        "LATIN1": "The file is not valid UTF-8 text.",
        "NOCOLS": "Missing column(s): Account Number, Primary Email",
        "HEADER": "The file has no records.",
    }
    assert all(sim.batch(job).status == "Failed" for job in cases)


# --- authentication and XML ----------------------------------------------------------------------


def test_wrong_credentials_are_refused(sim: EbillSimulator) -> None:
    with pytest.raises(ConfigurationError, match="HTTP 401"):
        ebill(sim, password="wrong").find(batch_id="1")
    raw = httpx.get(f"{sim.url}/rest/batchProcess", params={"id": "1"})
    assert raw.status_code == 401
    assert raw.headers["WWW-Authenticate"] == 'Basic realm="eBill"'
    assert b"<error><message>Authentication required.</message></error>" in raw.content


def test_the_header_scheme() -> None:
    with EbillSimulator(auth="header", auth_header="X-Api-Key") as sim:
        assert ebill(sim, scheme="header").find(batch_id="1") is None  # authenticated: 404
        with pytest.raises(ConfigurationError):
            ebill(sim).find(batch_id="1")  # basic credentials are not the key


def test_the_simulator_reads_xml_safely(sim: EbillSimulator) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<batchProcess><jobId>&b;</jobId></batchProcess>"
    )
    answer = httpx.post(
        f"{sim.url}/rest/batchProcess",
        params={"mode": "S3FileUpload"},
        content=bomb,
        auth=(sim.username, sim.password),
    )
    assert answer.status_code == 400
    assert b"not valid XML" in answer.content
    unsupported = httpx.get(
        f"{sim.url}/rest/batchProcess",
        params={"id": "1", "format": "json"},
        auth=(sim.username, sim.password),
    )
    assert unsupported.status_code == 400


def test_throttling_is_waited_out(sim: EbillSimulator) -> None:
    sim.inject(Fault(status=429, times=2, retry_after=0.01, method="GET"))
    assert ebill(sim).find(batch_id="1") is None
    assert sim.faults_served == 2


# --- presigned URLs ------------------------------------------------------------------------------


def test_an_expired_upload_url_is_refused_like_s3(sim: EbillSimulator) -> None:
    client = ebill(sim)
    sim.expire_next_upload_urls(1)
    _, url = create(client, "OLD")
    with pytest.raises(UploadUrlExpired, match="Request has expired"):
        put(client, url, CUSTOMERS)
    _, fresh = create(client, "NEW")
    put(client, fresh, CUSTOMERS)
    sim.advance_clock(3600)
    with pytest.raises(UploadUrlExpired):
        put(client, fresh, CUSTOMERS)
    assert [(a.status, a.code) for a in sim.upload_attempts] == [
        (403, "AccessDenied"),
        (200, ""),
        (403, "AccessDenied"),
    ]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"x-amz-checksum-crc32": "AAAAAA=="}, 403, "HeadersNotSigned"),
        ({"X-Amz-Meta-Owner": "hub"}, 403, "HeadersNotSigned"),
        ({"Authorization": "Basic YTpi"}, 400, "InvalidArgument"),
    ],
)
def test_a_presigned_put_with_extra_auth_or_unsigned_amz_headers_is_refused(
    sim: EbillSimulator, headers: dict[str, str], status: int, code: str
) -> None:
    _, url = create(ebill(sim), "J")
    answer = httpx.put(url, content=CUSTOMERS, headers=headers)
    assert answer.status_code == status
    assert code.encode() in answer.content
    assert sim.batch("J").object_path is None


def test_a_tampered_or_misused_url_is_refused(sim: EbillSimulator) -> None:
    client = ebill(sim)
    _, url = create(client, "J")
    with pytest.raises(PresignedUrlRefused, match="SignatureDoesNotMatch"):
        put(client, url.replace("X-Amz-Expires=3599", "X-Amz-Expires=99999"), CUSTOMERS)
    assert httpx.get(url).status_code == 403  # a PUT URL does not read
    widened = url.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Bx-amz-meta-a")
    answer = httpx.put(widened, content=b"x", headers={"x-amz-meta-a": "1"})
    assert answer.status_code == 403 and b"SignatureDoesNotMatch" in answer.content


def test_an_upload_without_content_length_is_refused(sim: EbillSimulator) -> None:
    _, url = create(ebill(sim), "J")
    answer = httpx.put(url, content=iter([b"a,b\n", b"1,2\n"]))  # chunked transfer encoding
    assert answer.status_code == 411
    assert b"MissingContentLength" in answer.content


def test_download_urls_expire_too(sim: EbillSimulator) -> None:
    client = ebill(sim)
    batch_id, url = create(client, "J")
    put(client, url, CUSTOMERS)
    client.finalize(batch_id, "J")
    run_to_end(client, batch_id)
    done = client.find(batch_id=batch_id)
    assert done is not None and done.download_url
    sim.advance_clock(25_141)
    with pytest.raises(DownloadUrlExpired), client.download(done.download_url) as chunks:
        b"".join(chunks)
    fresh = client.find(batch_id=batch_id)
    assert fresh is not None and fresh.download_url
    with client.download(fresh.download_url) as chunks:
        assert b"".join(chunks).startswith(b"Account Number")


# --- BatchInit -----------------------------------------------------------------------------------


def test_batch_init_carries_invoices_forward_and_zeroes_balances(sim: EbillSimulator) -> None:
    client = ebill(sim)
    sim.add_customer("A1", balance="120.00")
    parent, url = create(client, "INV", "Invoice")
    put(
        client,
        url,
        b"Invoice Number,Customer Ref,Invoice Date\nI1,A1,2026-11-02\nI2,A1,2026-11-03\n",
    )
    client.finalize(parent, "INV")
    run_to_end(client, parent)
    done = client.init(
        InitSpec(job_id="INIT_1", carry_forward_invoices=True, zero_out_customer_balance=True)
    )
    assert (done.id, done.job_id) == (str(int(parent) + 1), "INIT_1")
    assert [(c.element, c.status, c.success_count) for c in done.children] == [
        ("carryForwardInvoice", "Success", 2),
        ("carryForwardCreditMemo", None, None),
        ("carryForwardDebitMemo", None, None),
    ]
    assert {n: i["status"] for n, i in sim.invoices.items()} == {
        "I1": "CarriedOver",
        "I2": "CarriedOver",
    }
    assert sim.customers["A1"]["balance"] == 0
    assert client.find(job_id="INIT_1") is not None
    with pytest.raises(EbillRejected, match="already exists"):
        client.init(InitSpec(job_id="INIT_1"))
