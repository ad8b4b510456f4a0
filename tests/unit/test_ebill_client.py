"""The eBill adapter and the S3 file store, against in-memory transports (no sockets)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.response import StreamingBody
from pydantic import SecretStr

from erphub.clients.ebill import (
    CHUNK_SIZE,
    HttpEbillClient,
    ebill_auth,
    parse_batch_process,
    request_xml,
)
from erphub.clients.ebill_port import (
    BatchProcess,
    EbillProtocolError,
    EbillRejected,
    InitSpec,
    PresignedUrlRefused,
    UploadSpec,
    UploadUrlExpired,
    read_output_rows,
)
from erphub.errors import BadInputError, ConfigurationError, TransientError
from erphub.files import FileStore, StoredObject

BASE = "https://acme.blubilling.example"
UPLOAD_URL = (
    "https://batch-upload.s3.example/acme/in/CUS.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Date=20210921T071553Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3599"
    "&X-Amz-Credential=AKIA%2F20210921%2Fus-east-2%2Fs3%2Faws4_request&X-Amz-Signature=abc123"
)

CREATED = b"""<batchProcess><id>3</id><jobId>AUGUST_2020_CUS</jobId><status>Draft</status>
<operation>eBill-Import</operation><subOperation>Customer</subOperation><successCount>0</successCount>
<successMessage>BatchProcess is created</successMessage><errorMessage></errorMessage>
<failCount>0</failCount><uploadUrl>https://s3.example/in/x.csv?X-Amz-Signature=s</uploadUrl>
</batchProcess>"""

INVOICE_DONE = b"""<batchProcess><id>4</id><jobId>AUG_2020_INV</jobId>
<status>Partial  success</status><operation>eBill-Import</operation>
<subOperation>Invoice</subOperation><successCount>99</successCount>
<successMessage>Success, 99 records successfully processed, 1 failed</successMessage>
<errorMessage></errorMessage><failCount>1</failCount><downloadUrl>https://s3.example/out/a.csv</downloadUrl>
<child><batchProcess><id>5</id><jobId>AUG_2020_ITM_1</jobId><status>Success</status>
<operation>eBill-Import</operation><subOperation>Invoice Line Item</subOperation>
<successCount>200</successCount><failCount>0</failCount><downloadUrl>https://s3.example/out/b.csv</downloadUrl>
</batchProcess><batchProcess><id>6</id><jobId>AUG_2020_ITM_2</jobId><status>Success</status>
<successCount>10</successCount><failCount>0</failCount></batchProcess></child></batchProcess>"""

INIT_DONE = b"""<batchProcess><id>1</id><jobId>AUGUST_2020_INIT</jobId><child>
<carryForwardInvoice><id>2</id><jobId></jobId><status>Success</status><operation>CarryForward</operation>
<subOperation>Invoice</subOperation><successCount>20375</successCount><failCount>0</failCount>
</carryForwardInvoice><carryForwardCreditMemo><id></id><jobId></jobId><status></status>
<successCount></successCount><failCount></failCount></carryForwardCreditMemo></child></batchProcess>"""

BOMB = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]>
<batchProcess><id>&lol3;</id></batchProcess>"""

Handler = Callable[[httpx.Request], httpx.Response]


def client(
    api: Handler | None = None, files: Handler | None = None, *, auth: httpx.Auth | None = None
) -> HttpEbillClient:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected request {request.method} {request.url}")

    return HttpEbillClient(
        BASE,
        auth if auth is not None else ebill_auth("basic", "api-user", SecretStr("s3cret!")),
        transport=httpx.MockTransport(api or refuse),
        file_transport=httpx.MockTransport(files or refuse),
        max_attempts=3,
        backoff=0,
        sleep=lambda _: None,
    )


def xml_answer(body: bytes, status: int = 200) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": "application/xml"})

    return handler


# --- XML ----------------------------------------------------------------------------------------


def test_a_status_answer_is_read_with_its_line_item_children() -> None:
    batch = parse_batch_process(INVOICE_DONE)
    assert (batch.id, batch.job_id, batch.normalised_status, batch.is_terminal) == (
        "4",
        "AUG_2020_INV",
        "Partial Success",
        True,
    )
    assert (batch.success_count, batch.fail_count, batch.error_message) == (99, 1, None)
    assert [(c.job_id, c.status, c.success_count) for c in batch.children] == [
        ("AUG_2020_ITM_1", "Success", 200),
        ("AUG_2020_ITM_2", "Success", 10),
    ]
    assert batch.children[1].download_url is None


def test_batch_init_children_keep_their_element_names_and_empty_values() -> None:
    batch = parse_batch_process(INIT_DONE)
    assert [(c.element, c.id, c.success_count) for c in batch.children] == [
        ("carryForwardInvoice", "2", 20375),
        ("carryForwardCreditMemo", None, None),
    ]


def test_an_entity_expansion_bomb_is_refused_not_expanded() -> None:
    with pytest.raises(EbillProtocolError, match="DTDForbidden"):
        parse_batch_process(BOMB, "GET id=4")


def test_a_garbled_answer_is_transient_and_a_bad_count_names_the_field() -> None:
    with pytest.raises(TransientError, match="not XML"):
        parse_batch_process(b"<html><body>502 Bad Gateway", "GET id=4")
    with pytest.raises(TransientError, match="successCount"):
        parse_batch_process(b"<batchProcess><successCount>many</successCount></batchProcess>")


def test_request_bodies_are_escaped_and_refuse_what_xml_cannot_carry() -> None:
    body = request_xml([("jobId", "A&B <1>"), ("skipped", None)])
    assert body.endswith(b"\n<batchProcess><jobId>A&amp;B &lt;1&gt;</jobId></batchProcess>")
    with pytest.raises(BadInputError, match="inputFilename"):
        request_xml([("inputFilename", "bad\x00name.csv")])


# --- requests -----------------------------------------------------------------------------------


def test_a_line_item_upload_names_its_parent_by_id_and_job_id() -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return xml_answer(CREATED, 201)(request)

    created = client(api).create_upload(
        UploadSpec(
            job_id="AUG_2020_ITM_1",
            sub_operation="Invoice Line Item",
            input_filename="ITM_1.csv",
            parent_id="4",
            parent_job_id="AUG_2020_INV",
        )
    )
    assert created.id == "3" and created.upload_url
    (request,) = seen
    assert (request.method, request.url.path, dict(request.url.params)) == (
        "POST",
        "/rest/batchProcess",
        {"mode": "S3FileUpload"},
    )
    assert request.headers["Content-Type"] == "application/xml"
    assert (
        request.headers["Authorization"]
        == "Basic " + base64.b64encode(b"api-user:s3cret!").decode()
    )
    assert request.content.decode().endswith(
        "<batchProcess><parentBatchProcess>4</parentBatchProcess>"
        "<parentBatchProcessJobId>AUG_2020_INV</parentBatchProcessJobId>"
        "<jobId>AUG_2020_ITM_1</jobId><inputType>API</inputType><operation>eBill-Import</operation>"
        "<subOperation>Invoice Line Item</subOperation><inputFilename>ITM_1.csv</inputFilename>"
        "</batchProcess>"
    )


def test_finalize_sends_both_id_and_job_id() -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return xml_answer(CREATED.replace(b"Draft", b"Queued"))(request)

    assert client(api).finalize("4", "AUG_2020_INV").status == "Queued"
    assert seen[0].method == "PUT" and seen[0].url.params["mode"] == "BatchFinalize"
    assert seen[0].content.endswith(
        b"<batchProcess><id>4</id><jobId>AUG_2020_INV</jobId></batchProcess>"
    )


def test_batch_init_sends_every_flag() -> None:
    seen: list[bytes] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return xml_answer(INIT_DONE)(request)

    client(api).init(
        InitSpec(job_id="INIT_1", carry_forward_invoices=True, zero_out_customer_balance=True)
    )
    assert seen[0].endswith(
        b"<jobId>INIT_1</jobId><carryForwardInvoices>true</carryForwardInvoices>"
        b"<carryForwardCreditMemos>false</carryForwardCreditMemos>"
        b"<carryForwardDebitMemos>false</carryForwardDebitMemos>"
        b"<zeroOutCustomerBalance>true</zeroOutCustomerBalance></batchProcess>"
    )


def test_a_create_that_fails_on_the_server_is_not_sent_again() -> None:
    calls = []

    def api(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500, text="oops")

    with pytest.raises(TransientError, match="HTTP 500; the outcome is unknown"):
        client(api).create_upload(
            UploadSpec(job_id="J", sub_operation="Customer", input_filename="c.csv")
        )
    assert len(calls) == 1


def test_a_create_that_times_out_is_reported_as_unknown_not_retried() -> None:
    calls = []

    def api(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(TransientError, match="ReadTimeout; the outcome is unknown"):
        client(api).finalize("4", "J")
    assert len(calls) == 1


def test_a_rejection_carries_ebills_messages() -> None:
    answer = b"<error><message>A batch process with jobId J already exists.</message></error>"
    with pytest.raises(EbillRejected) as caught:
        client(xml_answer(answer, 400)).create_upload(
            UploadSpec(job_id="J", sub_operation="Customer", input_filename="c.csv")
        )
    assert caught.value.status == 400
    assert caught.value.messages == ["A batch process with jobId J already exists."]
    assert (
        str(caught.value)
        == "eBill POST S3FileUpload: HTTP 400: A batch process with jobId J already exists."
    )


def test_wrong_credentials_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="HTTP 401: check the eBill credentials"):
        client(xml_answer(b"<error><message>Authentication required.</message></error>", 401)).find(
            batch_id="4"
        )


def test_a_status_read_is_retried_and_an_unknown_batch_is_none() -> None:
    answers = iter(
        [httpx.Response(503), httpx.Response(502), httpx.Response(200, content=INVOICE_DONE)]
    )
    found = client(lambda request: next(answers)).find(batch_id="4")
    assert found is not None and found.id == "4"
    missing = client(xml_answer(b"<error><message>Batch process not found.</message></error>", 404))
    assert missing.find(job_id="NOPE") is None


def test_a_status_read_gives_up_after_its_attempts() -> None:
    calls = []

    def api(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503)

    with pytest.raises(TransientError, match="GET id=4: HTTP 503"):
        client(api).find(batch_id="4")
    assert len(calls) == 3


def test_the_header_scheme_sends_the_key_in_its_header_only() -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return xml_answer(INVOICE_DONE)(request)

    auth = ebill_auth("header", None, SecretStr("k3y"), header="X-Api-Key")
    client(api, auth=auth).find(batch_id="4")
    assert seen[0].headers["X-Api-Key"] == "k3y"
    assert "Authorization" not in seen[0].headers


@pytest.mark.parametrize(
    ("scheme", "username", "password", "problem"),
    [
        ("basic", None, SecretStr("p"), "needs EBILL_USERNAME"),
        ("basic", "u", None, "needs EBILL_PASSWORD"),
        ("digest", "u", SecretStr("p"), "unknown eBill auth scheme 'digest'"),
    ],
)
def test_incomplete_auth_settings_say_what_is_missing(
    scheme: str, username: str | None, password: SecretStr | None, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        ebill_auth(scheme, username, password)
    assert ebill_auth("none", None, None) is None


# --- presigned URLs -----------------------------------------------------------------------------


class SpyRaw(io.RawIOBase):
    """A body that records how it is read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.reads: list[int | None] = []

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(size)
        return self._data.read(size if size is not None else -1)


class FakeS3:
    """The two S3 calls the file store streams with, over a SpyRaw body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.raw = SpyRaw(data)

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        return {"Body": StreamingBody(self.raw, len(self.data)), "ContentLength": len(self.data)}


class StreamingTransport(httpx.BaseTransport):
    """Hands the request to ``handler`` unread (httpx's MockTransport reads it first)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.handler(request)


def test_the_upload_body_is_streamed_from_s3_in_chunks_never_read_whole() -> None:
    data = bytes(range(256)) * (3 * CHUNK_SIZE // 256 + 1000)  # ~3 MiB, not a chunk multiple
    s3 = FakeS3(data)
    received: dict[str, Any] = {}

    def files(request: httpx.Request) -> httpx.Response:
        received["streamed"] = not isinstance(request.stream, httpx.ByteStream)
        received["headers"] = dict(request.headers)
        sizes = [len(chunk) for chunk in request.stream]  # type: ignore[union-attr]
        received["sizes"] = sizes
        return httpx.Response(200)

    store = FileStore(s3, chunk_size=CHUNK_SIZE)  # type: ignore[arg-type]
    ebill = HttpEbillClient(BASE, None, file_transport=StreamingTransport(files))
    with store.open(StoredObject("drops", "ebill/customers/c.csv", "v1", len(data))) as stream:
        ebill.upload(UPLOAD_URL, stream.chunks, stream.size)
    assert received["streamed"], "the body was materialised before sending"
    assert len(received["sizes"]) == 4 and max(received["sizes"]) == CHUNK_SIZE
    assert sum(received["sizes"]) == len(data)
    # S3 is read in chunks: never a read of the whole body
    assert None not in s3.raw.reads and -1 not in s3.raw.reads
    assert max(r for r in s3.raw.reads if r is not None) <= CHUNK_SIZE
    headers = received["headers"]
    assert headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in headers
    assert "authorization" not in headers
    assert not [h for h in headers if h.startswith("x-amz-")]


def test_the_presigned_query_reaches_s3_unchanged() -> None:
    seen: list[httpx.Request] = []

    def files(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        request.read()
        return httpx.Response(200)

    client(files=files).upload(UPLOAD_URL, iter([b"a,b\n"]), 4)
    assert str(seen[0].url) == UPLOAD_URL


def s3_error(code: str, message: str, status: int = 403) -> Handler:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(status, content=body)

    return handler


def test_an_expired_upload_url_is_told_apart_without_leaking_the_signature() -> None:
    with pytest.raises(UploadUrlExpired) as caught:
        client(files=s3_error("AccessDenied", "Request has expired")).upload(
            UPLOAD_URL, iter([b"x"]), 1
        )
    assert "Request has expired" in str(caught.value)
    assert "abc123" not in str(caught.value) and "X-Amz" not in str(caught.value)


def test_other_s3_refusals_and_failures() -> None:
    with pytest.raises(PresignedUrlRefused, match="SignatureDoesNotMatch"):
        client(files=s3_error("SignatureDoesNotMatch", "no")).upload(UPLOAD_URL, iter([b"x"]), 1)
    with pytest.raises(TransientError, match="HTTP 503 SlowDown"):
        client(files=s3_error("SlowDown", "slow", 503)).upload(UPLOAD_URL, iter([b"x"]), 1)


def test_a_result_file_is_downloaded_in_chunks() -> None:
    content = b"h\n" + b"row\n" * 100_000

    def files(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content)

    ebill = HttpEbillClient(BASE, None, file_transport=httpx.MockTransport(files), chunk_size=4096)
    with ebill.download("https://s3.example/out/a.csv?X-Amz-Signature=s") as chunks:
        sizes = [len(c) for c in chunks]
    assert sum(sizes) == len(content) and max(sizes) <= 4096


# --- output CSVs --------------------------------------------------------------------------------


def test_output_rows_are_read_with_their_result_and_message() -> None:
    lines = io.StringIO(
        "Account Number,Primary Email,Result,Error Message\n"
        "A1,a@b.co,Success,\n"
        '"A2","multi\nline",Failed,"Primary Email is not valid"\n'
        ",,,\n"
        "A3,x@y.z,FAILED,\n"
    )
    rows = list(read_output_rows(lines))
    assert [(r.row, r.ok, r.message, r.values["Account Number"]) for r in rows] == [
        (1, True, "", "A1"),
        (2, False, "Primary Email is not valid", "A2"),
        (4, False, "", "A3"),
    ]


def test_an_output_without_a_result_column_is_refused() -> None:
    with pytest.raises(EbillProtocolError, match="no result column"):
        list(read_output_rows(io.StringIO("a,b\n1,2\n")))


def test_statuses_are_normalised() -> None:
    assert BatchProcess(status=" partial   SUCCESS ").normalised_status == "Partial Success"
    assert BatchProcess(status="Draft").is_draft
    assert not BatchProcess(status="Processing").is_terminal
