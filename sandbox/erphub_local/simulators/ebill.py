"""An eBill (BluSynergy) ``batchProcess`` simulator, with its own presigned S3-like file URLs.

It follows the contract the hub relies on (``contracts/ebill.md`` in the design notes):

- XML in and out (parsed with defusedxml), HTTP Basic by default (``auth="header"`` reads a
  static key from a header, ``auth="none"`` checks nothing), ``<error><message>`` bodies;
- ``POST ?mode=S3FileUpload`` creates a Draft batch (400 on a duplicate jobId, a line-item
  batch must name a Draft Invoice parent by id and/or jobId, which must agree) and answers an
  ``uploadUrl`` served by this simulator, signed with HMAC and expiring like a SigV4 presign:
  an expired URL, a wrong signature, an unsigned ``x-amz-*`` header, an ``Authorization`` header
  or a missing Content-Length are refused the way S3 refuses them;
- ``PUT ?mode=BatchFinalize`` (``id`` and/or ``jobId``; 400 when they disagree or name a line-item
  batch) queues a Draft batch; without an uploaded file it fails at once ("Input file not
  found"); finalizing again answers the current state unchanged;
- ``GET ?id=`` / ``GET ?jobId=``: the status moves Queued -> Processing -> Success / Partial
  Success / Failed after ``polls_per_stage`` status reads each (or only by :meth:`advance` with
  ``auto_progress=False``), line-item batches reported as ``<child>`` of their invoice batch;
  terminal batches carry a presigned ``downloadUrl`` of an output CSV with a result per row;
- ``POST ?mode=BatchInit`` carries invoices forward and zeroes customer balances.

Row validation (the vendor's CSV layouts are not public; these rules are the simulator's):
customers need a unique ``Account Number``, a ``Primary Email``, and a ``Company Name`` or a
``First Name`` and ``Last Name`` (``Login`` >= 6 characters and ``Password`` >= 8 with upper and
lower case and a digit, when given); invoices need a unique, new ``Invoice Number``, the
``Customer Ref`` of a known customer and an ISO ``Invoice Date``; line items need an ``Invoice
Number`` imported by their own invoice batch, a ``Description`` and decimal ``Quantity`` and
``Unit Price``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import re
import secrets
import shutil
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException
from flask import Response, request

from erphub_local.simulators.base import Simulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["EbillApiError", "EbillSimulator", "SimBatch"]

OPERATION = "eBill-Import"
CUSTOMER = "Customer"
INVOICE = "Invoice"
LINE_ITEM = "Invoice Line Item"
SUB_OPERATIONS = frozenset({CUSTOMER, INVOICE, LINE_ITEM})
TERMINAL = frozenset({"Success", "Partial Success", "Failed"})
BUCKET = "batch-upload-sim"
REGION = "us-east-2"
ACCESS_KEY = "AKIASIMULATOREBILL01"
_CHUNK = 64 * 1024
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_REQUIRED_COLUMNS = {
    CUSTOMER: ("Account Number", "Primary Email"),
    INVOICE: ("Invoice Number", "Customer Ref", "Invoice Date"),
    LINE_ITEM: ("Invoice Number", "Description", "Quantity", "Unit Price"),
}


class EbillApiError(Exception):
    """Raised inside a view to answer with ``<error><message>`` and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class _S3Error(Exception):
    """An S3-style refusal of a presigned request."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


@dataclass
class SimBatch:
    """One batch process as the simulator keeps it."""

    id: int
    job_id: str
    operation: str
    sub_operation: str
    input_filename: str = ""
    status: str = "Draft"
    parent_id: int | None = None
    children: list[int] = field(default_factory=list)
    object_path: Path | None = None
    uploaded_bytes: int = 0
    uploads: int = 0
    success_count: int = 0
    fail_count: int = 0
    error_message: str = ""
    output_path: Path | None = None
    output_name: str = ""
    polls: int = 0
    finalize_calls: int = 0
    imported_invoices: set[str] = field(default_factory=set)
    init_children: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def object_key(self) -> str:
        """Where its file goes in the simulated bucket."""
        return f"acme/in/{self.id}/{self.input_filename}"


@dataclass(frozen=True)
class UploadAttempt:
    """One request to a presigned upload URL, and how it ended."""

    batch_id: int | None
    status: int
    code: str
    size: int


def _now_ms() -> int:
    return int(time.time() * 1000)


def _xml_response(root: ET.Element, status: int = 200) -> Response:
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")
    return Response(body, status=status, mimetype="application/xml")


def _text(parent: ET.Element, tag: str, value: object) -> None:
    ET.SubElement(parent, tag).text = "" if value is None else str(value)


def _is_iso_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _is_decimal(value: str) -> bool:
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return bool(value.strip())


class EbillSimulator(Simulator):
    """eBill's batchProcess API and its S3 upload/download URLs, over real HTTP."""

    name = "ebill"

    def __init__(
        self,
        *,
        username: str = "ebill-api",
        password: str = "ebill-local-password",  # noqa: S107 - local demo credentials
        auth: str = "basic",
        auth_header: str = "X-Api-Key",
        upload_url_ttl_s: int = 3599,
        download_url_ttl_s: int = 25140,
        polls_per_stage: int = 1,
        auto_progress: bool = True,
        reject_duplicate_job_ids: bool = True,
        clock: Callable[[], float] = time.time,
        latency_s: float = 0.0,
    ) -> None:
        super().__init__(latency_s=latency_s)
        if auth not in {"basic", "header", "none"}:
            raise ValueError(f"auth must be basic, header or none, got {auth!r}")
        self.username = username
        self.password = password
        self.auth = auth
        self.auth_header = auth_header
        self.upload_url_ttl_s = upload_url_ttl_s
        self.download_url_ttl_s = download_url_ttl_s
        self.polls_per_stage = polls_per_stage
        self.auto_progress = auto_progress
        self.reject_duplicate_job_ids = reject_duplicate_job_ids
        self._clock = clock
        self._clock_offset = 0.0
        self._signing_key = secrets.token_bytes(32)
        self._state_lock = threading.RLock()
        self._batches: dict[int, SimBatch] = {}
        self._by_job: dict[str, int] = {}
        self._sequence = 0
        self._customers: dict[str, dict[str, Any]] = {}
        self._invoices: dict[str, dict[str, Any]] = {}
        self._expire_next_uploads = 0
        self._upload_attempts: list[UploadAttempt] = []
        self._finalize_bodies: list[dict[str, str]] = []
        self._storage = Path(tempfile.mkdtemp(prefix="erphub-ebill-sim-"))
        self._register_routes()

    # ================================================================= lifecycle

    def stop(self) -> None:
        """Stop serving and delete the stored files."""
        super().stop()
        shutil.rmtree(self._storage, ignore_errors=True)

    def hub_env(self) -> dict[str, str]:
        """The variables that point erphub at this simulator (URL and credentials)."""
        return {
            "EBILL_BASE_URL": self.url,
            "EBILL_USERNAME": self.username,
            "EBILL_PASSWORD": self.password,
        }

    def fault_body(self, status: int) -> dict[str, Any]:
        """Injected faults answer a short description (the base serves it as JSON)."""
        return {"message": f"Simulated {status} response."}

    # ================================================================= seed / test API

    def now(self) -> float:
        """The simulator's clock (the given clock plus :meth:`advance_clock`)."""
        return self._clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Let time pass for URL expiry."""
        with self._state_lock:
            self._clock_offset += seconds

    def expire_next_upload_urls(self, count: int = 1) -> None:
        """The next ``count`` upload URLs are issued already expired."""
        with self._state_lock:
            self._expire_next_uploads += count

    def add_customer(self, account: str, balance: str = "0.00") -> None:
        """A customer eBill already knows (invoices may reference it)."""
        with self._state_lock:
            self._customers[account] = {"balance": Decimal(balance)}

    @property
    def customers(self) -> dict[str, dict[str, Any]]:
        """Known customers by account number."""
        with self._state_lock:
            return {k: dict(v) for k, v in self._customers.items()}

    @property
    def invoices(self) -> dict[str, dict[str, Any]]:
        """Imported invoices by number (status Outstanding/Paid/CarriedOver)."""
        with self._state_lock:
            return {k: dict(v) for k, v in self._invoices.items()}

    def batch(self, key: int | str) -> SimBatch:
        """A batch by id or jobId (a snapshot is not taken: read, don't modify)."""
        with self._state_lock:
            found = self._find(key)
            if found is None:
                raise KeyError(key)
            return found

    @property
    def batches(self) -> list[SimBatch]:
        """Every batch, by id."""
        with self._state_lock:
            return [self._batches[i] for i in sorted(self._batches)]

    @property
    def upload_attempts(self) -> list[UploadAttempt]:
        """Every request to an upload URL, in order."""
        with self._state_lock:
            return list(self._upload_attempts)

    @property
    def finalize_bodies(self) -> list[dict[str, str]]:
        """The fields of every BatchFinalize request, in order."""
        with self._state_lock:
            return [dict(b) for b in self._finalize_bodies]

    def uploaded_content(self, key: int | str) -> bytes:
        """The file uploaded for a batch (test helper; reads it whole)."""
        path = self.batch(key).object_path
        if path is None:
            raise KeyError(f"nothing uploaded for batch {key}")
        return path.read_bytes()

    def output_rows(self, key: int | str) -> list[dict[str, str]]:
        """The rows of a batch's output CSV (test helper)."""
        path = self.batch(key).output_path
        if path is None:
            raise KeyError(f"batch {key} has no output")
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))

    def advance(self, key: int | str, *, to_terminal: bool = False) -> str:
        """Move a finalized batch one stage on (or straight to its outcome); its new status."""
        with self._state_lock:
            batch = self._find(key)
            if batch is None:
                raise KeyError(key)
            if batch.parent_id is not None:
                raise ValueError("line-item batches move with their invoice batch")
            while batch.status not in TERMINAL and batch.status != "Draft":
                self._step(batch)
                if not to_terminal:
                    break
            return batch.status

    # ================================================================= HTTP plumbing

    def _register_routes(self) -> None:
        app = self.app
        app.before_request(self._authenticate)
        app.register_error_handler(EbillApiError, self._on_api_error)
        app.register_error_handler(_S3Error, self._on_s3_error)
        app.add_url_rule(
            "/rest/batchProcess", view_func=self._batch_process, methods=["GET", "POST", "PUT"]
        )
        app.add_url_rule(
            f"/{BUCKET}/<path:key>", view_func=self._object, methods=["GET", "PUT", "POST"]
        )

    @staticmethod
    def _on_api_error(error: EbillApiError) -> Response:
        root = ET.Element("error")
        _text(root, "message", error.message)
        response = _xml_response(root, error.status)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="eBill"'
        return response

    def _on_s3_error(self, error: _S3Error) -> Response:
        root = ET.Element("Error")
        _text(root, "Code", error.code)
        _text(root, "Message", error.message)
        for key, value in error.extra.items():
            _text(root, key, value)
        _text(root, "RequestId", secrets.token_hex(8).upper())
        return _xml_response(root, error.status)

    def _authenticate(self) -> None:
        if not request.path.startswith("/rest/") or self.auth == "none":
            return
        if self.auth == "header":
            if request.headers.get(self.auth_header, "") != self.password:
                raise EbillApiError(401, "Authentication required.")
            return
        credentials = request.authorization
        if (
            credentials is None
            or credentials.type != "basic"
            or credentials.username != self.username
            or credentials.password != self.password
        ):
            raise EbillApiError(401, "Authentication required.")

    def _batch_process(self) -> Response:
        fmt = request.args.get("format")
        if fmt is not None and fmt.lower() != "xml":
            raise EbillApiError(400, f"Unsupported format {fmt!r}; use xml.")
        mode = request.args.get("mode")
        if request.method == "GET":
            return self._status()
        if request.method == "POST" and mode == "S3FileUpload":
            return self._create_upload()
        if request.method == "POST" and mode == "BatchInit":
            return self._batch_init()
        if request.method == "PUT" and mode == "BatchFinalize":
            return self._finalize()
        raise EbillApiError(400, f"Unsupported mode {mode!r} for {request.method}.")

    @staticmethod
    def _fields() -> dict[str, str]:
        body = request.get_data(cache=False)
        try:
            root = SafeET.fromstring(body, forbid_dtd=True)
        except (DefusedXmlException, ET.ParseError):
            raise EbillApiError(400, "The request body is not valid XML.") from None
        if root.tag != "batchProcess":
            raise EbillApiError(400, "The request root element must be batchProcess.")
        return {node.tag: (node.text or "").strip() for node in root if len(node) == 0}

    # ================================================================= presigned URLs

    def _signature(self, method: str, key: str, stamp: str, expires: str, signed: str) -> str:
        message = "\n".join([method, f"/{BUCKET}/{key}", stamp, expires, signed])
        return hmac.new(self._signing_key, message.encode(), hashlib.sha256).hexdigest()

    def _presign(self, method: str, key: str, ttl: int, *, issued_at: float | None = None) -> str:
        moment = datetime.fromtimestamp(self.now() if issued_at is None else issued_at, UTC)
        stamp = moment.strftime("%Y%m%dT%H%M%SZ")
        credential = quote(f"{ACCESS_KEY}/{moment:%Y%m%d}/{REGION}/s3/aws4_request", safe="")
        signature = self._signature(method, key, stamp, str(ttl), "host")
        return (
            f"{self.url}/{BUCKET}/{quote(key)}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Date={stamp}&X-Amz-SignedHeaders=host&X-Amz-Expires={ttl}"
            f"&X-Amz-Credential={credential}&X-Amz-Signature={signature}"
        )

    def _check_presigned(self, key: str) -> None:
        """Refuse what S3 refuses on a query-string-signed request."""
        if "Authorization" in request.headers:
            raise _S3Error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
            )
        args = request.args
        needed = ("X-Amz-Algorithm", "X-Amz-Date", "X-Amz-Expires", "X-Amz-Signature")
        if any(not args.get(name) for name in needed):
            raise _S3Error(403, "AccessDenied", "Query-string authentication requires parameters")
        stamp, expires = args["X-Amz-Date"], args["X-Amz-Expires"]
        signed_headers = args.get("X-Amz-SignedHeaders", "")
        expected = self._signature(request.method, key, stamp, expires, signed_headers)
        if not hmac.compare_digest(expected, args["X-Amz-Signature"]):
            raise _S3Error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        issued = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        now = self.now()
        if now > issued + int(expires):
            raise _S3Error(
                403,
                "AccessDenied",
                "Request has expired",
                **{
                    "X-Amz-Expires": expires,
                    "Expires": datetime.fromtimestamp(issued + int(expires), UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                    "ServerTime": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            )
        signed = {h.strip().lower() for h in signed_headers.split(";")}
        unsigned = sorted(
            name.lower()
            for name in request.headers.keys()  # noqa: SIM118 - werkzeug Headers
            if name.lower().startswith("x-amz-") and name.lower() not in signed
        )
        if unsigned:
            raise _S3Error(
                403,
                "AccessDenied",
                "There were headers present in the request which were not signed",
                HeadersNotSigned=", ".join(unsigned),
            )

    def _drain(self) -> None:
        """Read what is left of the body, so the client gets the answer, not a broken pipe."""
        stream = request.stream
        while stream.read(_CHUNK):
            pass

    def _object(self, key: str) -> Response:
        key = unquote(key)
        if request.method == "PUT":
            return self._put_object(key)
        if request.method == "GET":
            return self._get_object(key)
        raise _S3Error(405, "MethodNotAllowed", "The specified method is not allowed.")

    def _batch_for_key(self, key: str) -> SimBatch | None:
        match = re.fullmatch(r"acme/in/(\d+)/(.+)", key)
        if match is None:
            return None
        batch = self._batches.get(int(match.group(1)))
        return batch if batch is not None and batch.input_filename == match.group(2) else None

    def _put_object(self, key: str) -> Response:
        with self._state_lock:
            batch = self._batch_for_key(key)
        try:
            self._check_presigned(key)
            length = request.content_length
            if length is None:
                raise _S3Error(411, "MissingContentLength", "You must provide the Content-Length.")
            if batch is None:
                raise _S3Error(403, "AccessDenied", "Access Denied")
        except _S3Error as error:
            self._drain()
            with self._state_lock:
                self._upload_attempts.append(
                    UploadAttempt(batch.id if batch else None, error.status, error.code, 0)
                )
            raise
        target = self._storage / f"in-{batch.id}-{secrets.token_hex(4)}.csv"
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        with target.open("wb") as handle:
            while chunk := request.stream.read(_CHUNK):
                handle.write(chunk)
                digest.update(chunk)
                received += len(chunk)
        if received != length:
            target.unlink(missing_ok=True)
            with self._state_lock:
                self._upload_attempts.append(UploadAttempt(batch.id, 400, "IncompleteBody", 0))
            raise _S3Error(400, "IncompleteBody", "You did not provide the number of bytes")
        with self._state_lock:
            batch.object_path = target
            batch.uploaded_bytes = received
            batch.uploads += 1
            self._upload_attempts.append(UploadAttempt(batch.id, 200, "", received))
        response = Response(b"", status=200)
        response.headers["ETag"] = f'"{digest.hexdigest()}"'
        return response

    def _get_object(self, key: str) -> Response:
        self._check_presigned(key)
        with self._state_lock:
            path = next(
                (
                    b.output_path
                    for b in self._batches.values()
                    if b.output_path is not None and f"acme/archive/out/{b.output_name}" == key
                ),
                None,
            )
        if path is None or not path.is_file():
            raise _S3Error(404, "NoSuchKey", "The specified key does not exist.")

        def chunks(source: Path) -> Iterator[bytes]:
            with source.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk

        response = Response(chunks(path), status=200, mimetype="text/csv")
        response.headers["Content-Length"] = str(path.stat().st_size)
        return response

    # ================================================================= batchProcess

    def _find(self, key: int | str | None) -> SimBatch | None:
        if key is None or key == "":
            return None
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            found = self._batches.get(int(key))
            if found is not None:
                return found
        batch_id = self._by_job.get(str(key))
        return self._batches.get(batch_id) if batch_id is not None else None

    def _next_id(self) -> int:
        self._sequence += 1
        return self._sequence

    def _create_upload(self) -> Response:
        fields = self._fields()
        job_id = fields.get("jobId", "")
        sub_operation = fields.get("subOperation", "")
        filename = fields.get("inputFilename", "")
        if not job_id:
            raise EbillApiError(400, "jobId is required.")
        if fields.get("inputType") != "API":
            raise EbillApiError(400, "inputType must be API.")
        if fields.get("operation") != OPERATION:
            raise EbillApiError(400, f"operation must be {OPERATION}.")
        if sub_operation not in SUB_OPERATIONS:
            raise EbillApiError(400, f"Unknown subOperation {sub_operation!r}.")
        if not filename or "/" in filename or "\\" in filename:
            raise EbillApiError(400, "inputFilename must be a file name.")
        with self._state_lock:
            if job_id in self._by_job and self.reject_duplicate_job_ids:
                raise EbillApiError(400, f"A batch process with jobId {job_id} already exists.")
            parent = self._parent_of(fields, sub_operation)
            batch = SimBatch(
                id=self._next_id(),
                job_id=job_id,
                operation=OPERATION,
                sub_operation=sub_operation,
                input_filename=filename,
                parent_id=parent.id if parent else None,
            )
            self._batches[batch.id] = batch
            self._by_job[job_id] = batch.id
            if parent is not None:
                parent.children.append(batch.id)
            expired = self._expire_next_uploads > 0
            if expired:
                self._expire_next_uploads -= 1
            issued = self.now() - self.upload_url_ttl_s - 60 if expired else None
            url = self._presign("PUT", batch.object_key, self.upload_url_ttl_s, issued_at=issued)
            root = self._xml(batch, message="BatchProcess is created", top=False)
            _text(root, "uploadUrl", url)
        return _xml_response(root, 201)

    def _parent_of(self, fields: dict[str, str], sub_operation: str) -> SimBatch | None:
        parent_id = fields.get("parentBatchProcess", "")
        parent_job = fields.get("parentBatchProcessJobId", "")
        if sub_operation != LINE_ITEM:
            if parent_id or parent_job:
                raise EbillApiError(400, "Only Invoice Line Item batches have a parent.")
            return None
        if not parent_id and not parent_job:
            raise EbillApiError(
                400, "parentBatchProcess or parentBatchProcessJobId is required for line items."
            )
        by_id = self._batches.get(int(parent_id)) if parent_id.isdigit() else None
        by_job = self._find(parent_job) if parent_job else None
        if parent_id and parent_job and by_id is not by_job:
            raise EbillApiError(
                400, "parentBatchProcess and parentBatchProcessJobId name different batches."
            )
        parent = by_id or by_job
        if parent is None:
            raise EbillApiError(404, "Parent batch process not found.")
        if parent.sub_operation != INVOICE or parent.status != "Draft":
            raise EbillApiError(400, "The parent must be an Invoice batch process in Draft.")
        return parent

    def _finalize(self) -> Response:
        fields = self._fields()
        batch_id, job_id = fields.get("id", ""), fields.get("jobId", "")
        with self._state_lock:
            self._finalize_bodies.append({"id": batch_id, "jobId": job_id})
            if not batch_id and not job_id:
                raise EbillApiError(400, "id or jobId is required.")
            by_id = self._batches.get(int(batch_id)) if batch_id.isdigit() else None
            by_job = self._find(job_id) if job_id else None
            if batch_id and job_id and by_id is not by_job:
                raise EbillApiError(400, "id and jobId do not identify the same batch process.")
            batch = by_id or by_job
            if batch is None:
                raise EbillApiError(404, "Batch process not found.")
            if batch.parent_id is not None:
                raise EbillApiError(
                    400, "Invoice Line Item batches are finalized with their Invoice batch."
                )
            if batch.operation != OPERATION:
                raise EbillApiError(400, "Only eBill-Import batches can be finalized.")
            batch.finalize_calls += 1
            if batch.status == "Draft":
                if batch.object_path is None:
                    self._fail_unread(batch, "Input file not found")
                    for child_id in batch.children:
                        self._fail_unread(
                            self._batches[child_id],
                            "The invoice batch failed: Input file not found",
                        )
                else:
                    batch.status = "Queued"
                    for child_id in batch.children:
                        self._batches[child_id].status = "Queued"
            queued = "BatchProcess is in Queue" if batch.status == "Queued" else None
            root = self._xml(batch, message=queued, top=False)
            _text(root, "downloadUrl", self._download_url(batch))
        return _xml_response(root)

    def _status(self) -> Response:
        batch_id, job_id = request.args.get("id"), request.args.get("jobId")
        if not batch_id and not job_id:
            raise EbillApiError(400, "id or jobId is required.")
        with self._state_lock:
            batch = self._find(batch_id) if batch_id else self._find(job_id)
            if batch is None or (batch_id and job_id and batch is not self._find(job_id)):
                raise EbillApiError(404, "Batch process not found.")
            if (
                self.auto_progress
                and batch.parent_id is None
                and batch.status not in TERMINAL
                and batch.status != "Draft"
            ):
                batch.polls += 1
                if batch.polls >= self.polls_per_stage:
                    batch.polls = 0
                    self._step(batch)
            root = self._xml(batch)
        return _xml_response(root)

    def _download_url(self, batch: SimBatch) -> str:
        if batch.status not in TERMINAL or batch.output_path is None:
            return ""
        return self._presign(
            "GET", f"acme/archive/out/{batch.output_name}", self.download_url_ttl_s
        )

    def _message(self, batch: SimBatch) -> str:
        if batch.status == "Draft":
            return "BatchProcess is created"
        if batch.status == "Queued":
            return "Batch Process is in Queue"
        if batch.status == "Processing":
            return "BatchProcess is Processing"
        return (
            f"Success, {batch.success_count} records successfully processed, "
            f"{batch.fail_count} failed"
        )

    def _xml(self, batch: SimBatch, *, message: str | None = None, top: bool = True) -> ET.Element:
        """A batch as eBill answers it; ``top`` adds the children (and a downloadUrl)."""
        root = ET.Element("batchProcess")
        if batch.operation != OPERATION:
            _text(root, "id", batch.id)
            _text(root, "jobId", batch.job_id)
            child = ET.SubElement(root, "child")
            for tag, values in batch.init_children.items():
                node = ET.SubElement(child, tag)
                for name, value in values.items():
                    _text(node, name, value)
            return root
        self._fill(root, batch, message)
        if not top:
            return root
        if batch.status != "Draft":
            _text(root, "downloadUrl", self._download_url(batch))
        if batch.children:
            child = ET.SubElement(root, "child")
            for child_id in batch.children:
                node = ET.SubElement(child, "batchProcess")
                self._fill(node, self._batches[child_id], None)
                _text(node, "downloadUrl", self._download_url(self._batches[child_id]))
        return root

    def _fill(self, node: ET.Element, batch: SimBatch, message: str | None) -> None:
        _text(node, "id", batch.id)
        _text(node, "jobId", batch.job_id)
        _text(node, "status", batch.status)
        _text(node, "operation", batch.operation)
        _text(node, "subOperation", batch.sub_operation)
        _text(node, "successCount", batch.success_count)
        _text(node, "successMessage", message or self._message(batch))
        _text(node, "errorMessage", batch.error_message)
        _text(node, "failCount", batch.fail_count)

    # ================================================================= processing

    def _step(self, batch: SimBatch) -> None:
        if batch.status == "Queued":
            batch.status = "Processing"
            for child_id in batch.children:
                self._batches[child_id].status = "Processing"
        elif batch.status == "Processing":
            self._process(batch)
            for child_id in batch.children:
                self._process(self._batches[child_id], parent=batch)

    def _fail_unread(self, batch: SimBatch, message: str) -> None:
        batch.status = "Failed"
        batch.error_message = message
        batch.success_count = 0
        batch.fail_count = 0

    def _process(self, batch: SimBatch, parent: SimBatch | None = None) -> None:
        if batch.object_path is None:
            self._fail_unread(batch, "Input file not found")
            return
        validate = self._row_rules(batch, parent)
        output_name = f"{Path(batch.input_filename).stem}_Batch_{batch.id}_{_now_ms()}_output.csv"
        output = self._storage / f"out-{batch.id}-{secrets.token_hex(4)}.csv"
        try:
            with (
                batch.object_path.open(encoding="utf-8-sig", newline="", errors="strict") as source,
                output.open("w", encoding="utf-8", newline="") as sink,
            ):
                reader = csv.reader(source)
                header = next(reader, None)
                if header is None:
                    self._fail_unread(batch, "The file is empty.")
                    return
                header = [h.strip() for h in header]
                missing = [c for c in _REQUIRED_COLUMNS[batch.sub_operation] if c not in header]
                if missing:
                    self._fail_unread(batch, f"Missing column(s): {', '.join(missing)}")
                    return
                writer = csv.writer(sink)
                writer.writerow([*header, "Result", "Error Message"])
                ok = failed = 0
                for row in reader:
                    if not any(cell.strip() for cell in row):
                        continue
                    values = {
                        name: (row[i].strip() if i < len(row) else "")
                        for i, name in enumerate(header)
                    }
                    problem = validate(values, ok + failed + 1)
                    if problem:
                        failed += 1
                    else:
                        ok += 1
                    writer.writerow([*row, "Failed" if problem else "Success", problem or ""])
        except UnicodeDecodeError:
            output.unlink(missing_ok=True)
            self._fail_unread(batch, "The file is not valid UTF-8 text.")
            return
        except csv.Error as error:
            output.unlink(missing_ok=True)
            self._fail_unread(batch, f"The file is not a readable CSV: {error}")
            return
        if ok + failed == 0:
            output.unlink(missing_ok=True)
            self._fail_unread(batch, "The file has no records.")
            return
        batch.success_count, batch.fail_count = ok, failed
        batch.output_path, batch.output_name = output, output_name
        batch.status = "Success" if not failed else ("Failed" if not ok else "Partial Success")

    def _row_rules(
        self, batch: SimBatch, parent: SimBatch | None
    ) -> Callable[[dict[str, str], int], str | None]:
        """The validation of one row of this batch's file: a problem, or None."""
        rules = _RowRules(self._customers, self._invoices, batch, parent)
        return {CUSTOMER: rules.customer, INVOICE: rules.invoice, LINE_ITEM: rules.line_item}[
            batch.sub_operation
        ]

    # ================================================================= BatchInit

    def _batch_init(self) -> Response:
        fields = self._fields()
        job_id = fields.get("jobId", "")
        if not job_id:
            raise EbillApiError(400, "jobId is required.")

        def flag(*names: str) -> bool:
            return any(fields.get(name, "").lower() == "true" for name in names)

        with self._state_lock:
            if job_id in self._by_job and self.reject_duplicate_job_ids:
                raise EbillApiError(400, f"A batch process with jobId {job_id} already exists.")
            batch = SimBatch(
                id=self._next_id(),
                job_id=job_id,
                operation="BatchInit",
                sub_operation="",
                status="Success",
            )
            self._batches[batch.id] = batch
            self._by_job[job_id] = batch.id
            empty = {
                name: ""
                for name in (
                    "id", "jobId", "status", "operation", "subOperation", "successCount",
                    "successMessage", "errorMessage", "failCount",
                )
            }  # fmt: skip
            children = {
                "carryForwardInvoice": dict(empty),
                "carryForwardCreditMemo": dict(empty),
                "carryForwardDebitMemo": dict(empty),
            }
            if flag("carryForwardInvoices", "carryforwardInvoices"):
                moved = 0
                for invoice in self._invoices.values():
                    if invoice["status"] != "CarriedOver":
                        invoice["status"] = "CarriedOver"
                        moved += 1
                children["carryForwardInvoice"] = {
                    "id": str(self._next_id()),
                    "jobId": "",
                    "status": "Success",
                    "operation": "CarryForward",
                    "subOperation": "Invoice",
                    "successCount": str(moved),
                    "successMessage": f"Success, {moved} records successfully processed,0failed",
                    "errorMessage": "",
                    "failCount": "0",
                }
            if flag("zeroOutCustomerBalance"):
                for customer in self._customers.values():
                    customer["balance"] = Decimal(0)
            batch.init_children = children
            root = self._xml(batch)
        return _xml_response(root)


class _RowRules:
    """eBill's row validation as this simulator defines it; a successful row takes effect."""

    def __init__(
        self,
        customers: dict[str, dict[str, Any]],
        invoices: dict[str, dict[str, Any]],
        batch: SimBatch,
        parent: SimBatch | None,
    ) -> None:
        self.customers = customers
        self.invoices = invoices
        self.batch = batch
        self.parent = parent
        self.seen: dict[str, int] = {}

    def _duplicate(self, key: str, row: int) -> str | None:
        if key in self.seen:
            return f"duplicate in this file (first at row {self.seen[key]})"
        self.seen[key] = row
        return None

    def customer(self, values: dict[str, str], row: int) -> str | None:
        """A customer row; a valid one creates (or updates) the customer."""
        account = values.get("Account Number", "")
        problem = None
        if not account:
            problem = "Account Number is required"
        elif len(account) > 50:
            problem = "Account Number is longer than 50 characters"
        elif again := self._duplicate(account, row):
            problem = f"Account Number {account}: {again}"
        elif not _EMAIL.match(values.get("Primary Email", "")):
            problem = "Primary Email is not a valid e-mail address"
        elif not values.get("Company Name") and not (
            values.get("First Name") and values.get("Last Name")
        ):
            problem = "Company Name, or First Name and Last Name, are required"
        elif values.get("Login") and len(values["Login"]) < 6:
            problem = "Login must have at least 6 characters"
        elif values.get("Password") and not _strong(values["Password"]):
            problem = "Password needs 8 characters with upper and lower case and a digit"
        if problem is None:
            self.customers.setdefault(account, {"balance": Decimal(0)})
        return problem

    def invoice(self, values: dict[str, str], row: int) -> str | None:
        """An invoice row; a valid one books the invoice."""
        number = values.get("Invoice Number", "")
        customer_ref = values.get("Customer Ref", "")
        problem = None
        if not number:
            problem = "Invoice Number is required"
        elif again := self._duplicate(number, row):
            problem = f"Invoice Number {number}: {again}"
        elif number in self.invoices:
            problem = f"Invoice Number {number} already exists"
        elif customer_ref not in self.customers:
            problem = f"Unknown customer {customer_ref or '(empty Customer Ref)'}"
        else:
            problem = _invoice_field_problem(values)
        if problem is None:
            status = values.get("Status") or "Outstanding"
            self.invoices[number] = {"customer": customer_ref, "status": status}
            self.batch.imported_invoices.add(number)
        return problem

    def line_item(self, values: dict[str, str], row: int) -> str | None:
        """A line-item row: its invoice must have been imported by the parent batch."""
        number = values.get("Invoice Number", "")
        if not number:
            return "Invoice Number is required"
        if self.parent is None or number not in self.parent.imported_invoices:
            return f"Invoice {number} is not an imported invoice of this batch"
        if not values.get("Description"):
            return "Description is required"
        if not _is_decimal(values.get("Quantity", "")):
            return "Quantity must be a decimal number"
        if not _is_decimal(values.get("Unit Price", "")):
            return "Unit Price must be a decimal number"
        return None


def _invoice_field_problem(values: dict[str, str]) -> str | None:
    if not _is_iso_date(values.get("Invoice Date", "")):
        return "Invoice Date must be a date as YYYY-MM-DD"
    if values.get("Due Date") and not _is_iso_date(values["Due Date"]):
        return "Due Date must be a date as YYYY-MM-DD"
    if values.get("Status") and values["Status"] not in {"Paid", "Outstanding"}:
        return "Status must be Paid or Outstanding"
    if values.get("Amount") and not _is_decimal(values["Amount"]):
        return "Amount must be a decimal number"
    return None


def _strong(password: str) -> bool:
    return (
        len(password) >= 8
        and any(c.isupper() for c in password)
        and any(c.islower() for c in password)
        and any(c.isdigit() for c in password)
    )
