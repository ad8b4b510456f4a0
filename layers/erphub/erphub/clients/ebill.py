"""The eBill (BluSynergy) ``batchProcess`` port and its adapter over HTTP.

Wire facts (``contracts/ebill.md`` in the design notes): XML in and out, root ``<batchProcess>``;
``POST ?mode=S3FileUpload`` creates a Draft batch and answers a presigned S3 ``uploadUrl``;
``PUT ?mode=BatchFinalize`` queues it; ``GET ?id=`` / ``GET ?jobId=`` reports its status, with a
presigned ``downloadUrl`` of the per-row output CSV once it is terminal, and one ``<child>`` per
line-item batch of an invoice batch. ``POST ?mode=BatchInit`` carries documents forward.

Every response is parsed with defusedxml: no DTD, no entity expansion. Creating requests
(``S3FileUpload``, ``BatchFinalize``, ``BatchInit``) are sent once: when their outcome is unknown
the caller reconciles with ``GET ?jobId=`` before doing anything again. The presigned URLs are
called by a separate client that sends no credentials and no ``x-amz-*`` header, because S3
rejects both on a query-string-signed request.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]
import httpx
from defusedxml import DefusedXmlException
from pydantic import SecretStr, ValidationError

from erphub.clients.ebill_port import (
    INPUT_TYPE,
    OPERATION,
    PATH,
    SUB_OPERATIONS,
    BatchProcess,
    DownloadUrlExpired,
    EbillProtocolError,
    EbillRejected,
    InitSpec,
    PresignedUrlRefused,
    UploadSpec,
    UploadUrlExpired,
)
from erphub.clients.http import RETRYABLE_STATUS, Retryable, build_client, retrying
from erphub.errors import BadInputError, ConfigurationError, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator

CHUNK_SIZE = 1024 * 1024

# XML 1.0 forbids these characters even escaped; a file name carrying one is refused here.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MAX_ERROR_TEXT = 500


# --- authentication ----------------------------------------------------------------------------


class HeaderAuth(httpx.Auth):
    """A static secret in one request header (e.g. ``X-Api-Key``)."""

    def __init__(self, header: str, value: SecretStr) -> None:
        self._header = header
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the header."""
        request.headers[self._header] = self._value.get_secret_value()
        yield request


def ebill_auth(
    scheme: str, username: str | None, password: SecretStr | None, header: str = "X-Api-Key"
) -> httpx.Auth | None:
    """The authentication of the eBill API (undocumented publicly, so pluggable).

    ``basic`` (default): HTTP Basic with the API user; ``header``: the password as the value of
    ``header``; ``none``: nothing (a gateway in front of eBill authenticates).
    """
    if scheme == "none":
        return None
    if password is None or not password.get_secret_value():
        msg = f"eBill auth scheme {scheme} needs EBILL_PASSWORD (or the secret's password)"
        raise ConfigurationError(msg)
    if scheme == "basic":
        if not username:
            msg = "eBill auth scheme basic needs EBILL_USERNAME (or the secret's username)"
            raise ConfigurationError(msg)
        return httpx.BasicAuth(username, password.get_secret_value())
    if scheme == "header":
        return HeaderAuth(header, password)
    msg = f"unknown eBill auth scheme {scheme!r}: use basic, header or none"
    raise ConfigurationError(msg)


# --- XML ---------------------------------------------------------------------------------------


def request_xml(fields: Iterable[tuple[str, str | None]]) -> bytes:
    """A ``<batchProcess>`` request body; fields whose value is None are left out."""
    root = ET.Element("batchProcess")
    for name, value in fields:
        if value is None:
            continue
        if _XML_FORBIDDEN.search(value):
            msg = f"eBill request field {name} contains a character XML cannot carry: {value!r}"
            raise BadInputError(msg)
        ET.SubElement(root, name).text = value
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _parse(body: bytes, what: str) -> ET.Element:
    try:
        root: ET.Element = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as error:
        msg = f"eBill {what}: the answer uses {type(error).__name__}; refusing to read it"
        raise EbillProtocolError(msg) from None
    except ET.ParseError as error:
        msg = f"eBill {what}: the answer is not XML ({error})"
        raise TransientError(msg) from None
    return root


def _batch_from(element: ET.Element, what: str) -> BatchProcess:
    fields: dict[str, Any] = {"element": element.tag}
    children: list[BatchProcess] = []
    for node in element:
        if node.tag == "child":
            children.extend(_batch_from(grandchild, what) for grandchild in node)
        elif len(node) == 0:
            fields[node.tag] = (node.text or "").strip() or None
    fields["children"] = tuple(children)
    try:
        return BatchProcess.model_validate(fields)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        msg = f"eBill {what}: unreadable <{element.tag}>: {problems}"
        raise TransientError(msg) from None


def parse_batch_process(body: bytes, what: str = "response") -> BatchProcess:
    """The ``<batchProcess>`` of an answer, children included."""
    root = _parse(body, what)
    if root.tag != "batchProcess":
        msg = f"eBill {what}: expected <batchProcess>, got <{root.tag}>"
        raise TransientError(msg)
    return _batch_from(root, what)


def error_messages(body: bytes) -> list[str]:
    """The messages of an error answer (``<error><message>``, or a batch's errorMessage)."""
    try:
        root: ET.Element = SafeET.fromstring(body, forbid_dtd=True)
    except (DefusedXmlException, ET.ParseError):
        text = body.decode("utf-8", errors="replace").strip()
        return [text[:_MAX_ERROR_TEXT]] if text else []
    messages = [
        " ".join((node.text or "").split())
        for node in root.iter()
        if node.tag in {"message", "errorMessage", "Message"} and (node.text or "").strip()
    ]
    if not messages and (root.text or "").strip():
        messages = [" ".join((root.text or "").split())]
    return [m[:_MAX_ERROR_TEXT] for m in messages]


def _s3_error(body: bytes) -> tuple[str, str]:
    """(Code, Message) of an S3 error document, best effort."""
    try:
        root: ET.Element = SafeET.fromstring(body, forbid_dtd=True)
    except (DefusedXmlException, ET.ParseError):
        return "", body.decode("utf-8", errors="replace")[:_MAX_ERROR_TEXT]
    return (root.findtext("Code") or "").strip(), (root.findtext("Message") or "").strip()


# --- the adapter -------------------------------------------------------------------------------


def safe_url(url: str | httpx.URL) -> str:
    """A URL without its query: presigned signatures never reach a log line or an error."""
    return str(httpx.URL(str(url)).copy_with(query=None))


class HttpEbillClient:
    """The eBill ``batchProcess`` API over HTTP, and its presigned S3 URLs.

    ``transport`` serves the API, ``file_transport`` the presigned URLs (tests inject both).
    """

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | None,
        *,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        file_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self._api = build_client(
            base_url=base_url.rstrip("/"),
            headers={"Accept": "application/xml"},
            timeout=timeout,
            transport=transport,
            max_retry_after=max_retry_after,
            sleep=sleep,
        )
        if auth is not None:
            self._api.auth = auth
        # No auth, no default headers, no retry transport: a streamed body cannot be replayed,
        # and S3 refuses a presigned request that also carries credentials.
        self._files = httpx.Client(timeout=timeout, transport=file_transport)
        self._chunk_size = chunk_size
        self._retrying = retrying(max_attempts, backoff, sleep)

    # --- API requests ------------------------------------------------------------------------

    def _check(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status in (401, 403):
            msg = f"eBill {what}: HTTP {status}: check the eBill credentials and EBILL_AUTH_SCHEME"
            raise ConfigurationError(msg)
        if status in RETRYABLE_STATUS:
            msg = f"eBill {what}: HTTP {status}"
            raise TransientError(msg)
        if 400 <= status < 500:
            raise EbillRejected(what, status, error_messages(response.content))
        if not 200 <= status < 300:
            msg = f"eBill {what}: unexpected HTTP {status}"
            raise TransientError(msg)

    def _send_once(self, method: str, mode: str, body: bytes) -> BatchProcess:
        what = f"{method} {mode}"
        try:
            response = self._api.request(
                method,
                PATH,
                params={"mode": mode},
                content=body,
                headers={"Content-Type": "application/xml"},
            )
        except httpx.TransportError as error:
            msg = f"eBill {what}: {type(error).__name__}; the outcome is unknown"
            raise TransientError(msg) from error
        try:
            self._check(response, what)
        except TransientError as error:
            msg = f"{error}; the outcome is unknown"
            raise TransientError(msg) from None
        return parse_batch_process(response.content, what)

    def create_upload(self, spec: UploadSpec) -> BatchProcess:
        """``POST ?mode=S3FileUpload``; a line-item batch names its parent by id and jobId."""
        if spec.sub_operation not in SUB_OPERATIONS:
            msg = f"unknown eBill subOperation {spec.sub_operation!r}"
            raise BadInputError(msg)
        body = request_xml(
            [
                ("parentBatchProcess", spec.parent_id),
                ("parentBatchProcessJobId", spec.parent_job_id),
                ("jobId", spec.job_id),
                ("inputType", INPUT_TYPE),
                ("operation", OPERATION),
                ("subOperation", spec.sub_operation),
                ("inputFilename", spec.input_filename),
            ]
        )
        return self._send_once("POST", "S3FileUpload", body)

    def finalize(self, batch_id: str, job_id: str) -> BatchProcess:
        """``PUT ?mode=BatchFinalize`` with both identifiers."""
        body = request_xml([("id", batch_id), ("jobId", job_id)])
        return self._send_once("PUT", "BatchFinalize", body)

    def init(self, spec: InitSpec) -> BatchProcess:
        """``POST ?mode=BatchInit``."""

        def flag(value: bool) -> str:
            return "true" if value else "false"

        body = request_xml(
            [
                ("jobId", spec.job_id),
                ("carryForwardInvoices", flag(spec.carry_forward_invoices)),
                ("carryForwardCreditMemos", flag(spec.carry_forward_credit_memos)),
                ("carryForwardDebitMemos", flag(spec.carry_forward_debit_memos)),
                ("zeroOutCustomerBalance", flag(spec.zero_out_customer_balance)),
            ]
        )
        return self._send_once("POST", "BatchInit", body)

    def find(
        self, *, batch_id: str | None = None, job_id: str | None = None
    ) -> BatchProcess | None:
        """``GET ?id=`` (preferred) or ``GET ?jobId=``; retried, since it changes nothing."""
        if batch_id:
            params, what = {"id": batch_id}, f"GET id={batch_id}"
        elif job_id:
            params, what = {"jobId": job_id}, f"GET jobId={job_id}"
        else:
            msg = "find needs a batch id or a jobId"
            raise ValueError(msg)
        try:
            for attempt in self._retrying:
                with attempt:
                    try:
                        response = self._api.get(PATH, params=params)
                    except httpx.TransportError as error:
                        msg = f"eBill {what}: {type(error).__name__}"
                        raise Retryable(msg) from error
                    if response.status_code == 404:
                        return None
                    if response.status_code in RETRYABLE_STATUS:
                        msg = f"eBill {what}: HTTP {response.status_code}"
                        raise Retryable(msg)
                    self._check(response, what)
                    return parse_batch_process(response.content, what)
        except Retryable as error:
            raise TransientError(error.message) from error
        raise AssertionError("unreachable")  # pragma: no cover

    # --- presigned URLs ----------------------------------------------------------------------

    def upload(self, url: str, chunks: Iterable[bytes], length: int) -> None:
        """``PUT`` the file to a presigned URL, streamed with an explicit Content-Length.

        Raises :class:`UploadUrlExpired` when S3 says the URL has expired, TransientError on
        5xx or a broken connection (the caller re-opens the file and tries again).
        """
        where = safe_url(url)
        headers = {"Content-Length": str(length), "Content-Type": "text/csv"}
        try:
            response = self._files.put(url, content=chunks, headers=headers)
        except httpx.TransportError as error:
            msg = f"upload to {where}: {type(error).__name__}"
            raise TransientError(msg) from error
        if 200 <= response.status_code < 300:
            return
        code, message = _s3_error(response.content)
        detail = f"upload to {where}: HTTP {response.status_code} {code}: {message}".strip()
        if response.status_code == 403 and "expired" in message.lower():
            raise UploadUrlExpired(detail)
        if response.status_code in RETRYABLE_STATUS:
            raise TransientError(detail)
        raise PresignedUrlRefused(detail)

    @contextmanager
    def download(self, url: str) -> Iterator[Iterator[bytes]]:
        """``GET`` a presigned URL; the body is read chunk by chunk while the caller iterates."""
        where = safe_url(url)
        try:
            with self._files.stream("GET", url) as response:
                if response.status_code != 200:
                    response.read()
                    code, message = _s3_error(response.content)
                    detail = f"download from {where}: HTTP {response.status_code} {code}: {message}"
                    if response.status_code == 403 and "expired" in message.lower():
                        raise DownloadUrlExpired(detail)
                    if response.status_code in RETRYABLE_STATUS:
                        raise TransientError(detail)
                    raise PresignedUrlRefused(detail)
                yield response.iter_bytes(self._chunk_size)
        except httpx.TransportError as error:
            msg = f"download from {where}: {type(error).__name__}"
            raise TransientError(msg) from error

    def close(self) -> None:
        """Close both connection pools."""
        self._api.close()
        self._files.close()
