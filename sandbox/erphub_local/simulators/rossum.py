"""A Rossum API simulator: login, queue export (read and status switch) and annotations.

It follows the wire facts the hub relies on: ``/api/v1`` paths, Bearer/Token auth with
expiring keys, DRF-style error bodies, page/page_size pagination with absolute ``next`` and
``previous`` URLs, export results without ``id`` (only ``url``), and the annotation lifecycle
used by the export flow (``confirmed`` -> ``exported`` / ``failed_export`` ...).
"""

from __future__ import annotations

import copy
import math
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException

from erphub_local.simulators.base import JsonApiError, Simulator

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ALLOWED_TRANSITIONS", "STATUSES", "RossumApiError", "RossumSimulator"]

JsonDict = dict[str, Any]

STATUSES = frozenset(
    {
        "created",
        "importing",
        "failed_import",
        "split",
        "to_review",
        "reviewing",
        "in_workflow",
        "confirmed",
        "rejected",
        "exporting",
        "exported",
        "failed_export",
        "postponed",
        "deleted",
        "purged",
    }
)

#: Status changes accepted by ``PATCH /annotations/{id}``; patching to the current status is
#: always accepted (it only updates the other fields).
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "to_review": frozenset({"confirmed", "postponed", "deleted"}),
    "confirmed": frozenset({"to_review", "exporting", "exported", "failed_export", "deleted"}),
    "exporting": frozenset({"exported", "failed_export"}),
    "failed_export": frozenset({"to_review", "exporting", "exported", "deleted"}),
    "exported": frozenset({"deleted"}),
    "postponed": frozenset({"to_review", "confirmed", "deleted"}),
    "rejected": frozenset({"to_review", "deleted"}),
    "deleted": frozenset({"to_review"}),
}

#: Statuses an export with ``to_status`` moves; ``exported``/``exporting`` are left untouched
#: by definition, and the rest are not part of the export flow.
_EXPORTABLE = frozenset({"confirmed", "failed_export"})
_EXPORT_TARGETS = frozenset({"exported", "exporting"})
_MESSAGE_TYPES = frozenset({"error", "warning", "info"})
_TIME_FILTERS = ("arrived_at", "exported_at", "export_failed_at", "modified_at", "confirmed_at")
DEFAULT_TOKEN_LIFETIME_S = 162 * 3600
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class RossumApiError(JsonApiError):
    """Raised inside a view to answer with ``status`` and a DRF-style JSON ``body``."""


@dataclass
class _Annotation:
    id: int
    queue_id: int
    status: str
    content: list[JsonDict]
    file_name: str
    arrived_at: datetime
    metadata: JsonDict = field(default_factory=dict)
    messages: list[JsonDict] = field(default_factory=list)
    modified_at: datetime | None = None
    confirmed_at: datetime | None = None
    exported_at: datetime | None = None
    export_failed_at: datetime | None = None
    history: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class _ListQuery:
    statuses: frozenset[str] | None
    ids: frozenset[int] | None
    queues: frozenset[int] | None
    page: int
    page_size: int
    time_bounds: list[tuple[str, str, datetime]]


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


class RossumSimulator(Simulator):
    """In-memory Rossum with the export flow endpoints, served over real HTTP.

    ``export_moves`` decides what a POST export with ``to_status`` switches: ``"page"`` (the
    annotations on the requested page, so paging through a changing result set skips items as
    it does against the real API) or ``"all"`` (every matching annotation).
    ``auto_complete_exporting`` finishes ``exporting`` annotations at the next request; switch
    it off and call :meth:`complete_exporting` to keep them stuck.
    """

    name = "rossum"

    def __init__(
        self,
        *,
        username: str = "demo@example.com",
        password: str = "demo-password",  # noqa: S107 - local demo credentials
        token_lifetime_s: float = DEFAULT_TOKEN_LIFETIME_S,
        domain: str | None = None,
        first_annotation_id: int = 315000,
        export_moves: Literal["page", "all"] = "page",
        auto_complete_exporting: bool = True,
        latency_s: float = 0.0,
    ) -> None:
        super().__init__(latency_s=latency_s)
        self.username = username
        self.password = password
        self.token_lifetime_s = token_lifetime_s
        self.domain = domain
        self.export_moves = export_moves
        self.auto_complete_exporting = auto_complete_exporting
        self._state_lock = threading.RLock()
        self._tokens: dict[str, float] = {}
        self._queues: dict[int, str] = {}
        self._annotations: dict[int, _Annotation] = {}
        self._next_id = first_annotation_id
        self._document_offset = 100
        self._pending_exporting: list[int] = []
        self._register_routes()

    @property
    def api_url(self) -> str:
        """The API base URL, ``<url>/api`` (clients append ``/v1/...``)."""
        return f"{self.url}/api"

    def hub_env(self) -> dict[str, str]:
        """The variables that point erphub at this simulator (URL and credentials)."""
        return {
            "ROSSUM_BASE_URL": self.api_url,
            "ROSSUM_USERNAME": self.username,
            "ROSSUM_PASSWORD": self.password,
        }

    def fault_body(self, status: int) -> JsonDict:
        """DRF-style bodies for injected faults."""
        if status == 429:
            return {"detail": "Request was throttled."}
        if status == 401:
            return {"detail": "Invalid token."}
        return {"detail": f"Simulated error {status}."}

    # ================================================================= seed / test API

    def add_queue(self, queue_id: int, name: str | None = None) -> None:
        """Create a queue (with the confirmed state enabled)."""
        with self._state_lock:
            self._queues[queue_id] = name or f"Queue {queue_id}"

    def add_annotation(
        self,
        queue_id: int,
        content: list[JsonDict],
        status: str = "confirmed",
        file_name: str | None = None,
        metadata: JsonDict | None = None,
    ) -> int:
        """Add an annotation with a datapoint tree; returns its id (ids increase)."""
        if status not in STATUSES:
            raise ValueError(f"unknown annotation status {status!r}")
        with self._state_lock:
            if queue_id not in self._queues:
                self.add_queue(queue_id)
            annotation_id = self._next_id
            self._next_id += 1
            now = _now()
            self._annotations[annotation_id] = _Annotation(
                id=annotation_id,
                queue_id=queue_id,
                status=status,
                content=copy.deepcopy(content),
                file_name=file_name or f"invoice_{annotation_id}.pdf",
                arrived_at=now,
                modified_at=now,
                metadata=copy.deepcopy(metadata or {}),
                confirmed_at=now if status == "confirmed" else None,
                history=[("", status, "seed")],
            )
            return annotation_id

    def annotation(self, annotation_id: int) -> JsonDict:
        """A copy of an annotation's state (with its datapoint tree as ``content``)."""
        with self._state_lock:
            ann = self._annotations[annotation_id]
            return {
                "id": ann.id,
                "queue": ann.queue_id,
                "status": ann.status,
                "file_name": ann.file_name,
                "arrived_at": _iso(ann.arrived_at),
                "modified_at": _iso(ann.modified_at),
                "confirmed_at": _iso(ann.confirmed_at),
                "exported_at": _iso(ann.exported_at),
                "export_failed_at": _iso(ann.export_failed_at),
                "metadata": copy.deepcopy(ann.metadata),
                "messages": copy.deepcopy(ann.messages),
                "content": copy.deepcopy(ann.content),
            }

    def statuses(self, queue_id: int | None = None) -> dict[int, str]:
        """Annotation id -> status, optionally for one queue."""
        with self._state_lock:
            return {
                ann.id: ann.status
                for ann in self._annotations.values()
                if queue_id is None or ann.queue_id == queue_id
            }

    def history(self, annotation_id: int) -> list[tuple[str, str, str]]:
        """Status changes as ``(from, to, how)``; ``how`` is seed/export/patch/async/test."""
        with self._state_lock:
            return list(self._annotations[annotation_id].history)

    def set_status(self, annotation_id: int, status: str) -> None:
        """Force a status (no transition rules), e.g. to simulate a human in the UI."""
        if status not in STATUSES:
            raise ValueError(f"unknown annotation status {status!r}")
        with self._state_lock:
            self._change_status(self._annotations[annotation_id], status, "test")

    def expire_tokens(self) -> None:
        """Invalidate every issued token now; the next authenticated call gets 401."""
        with self._state_lock:
            self._tokens.clear()

    @property
    def active_tokens(self) -> int:
        """How many issued tokens are still valid."""
        now = time.monotonic()
        with self._state_lock:
            return sum(1 for expiry in self._tokens.values() if expiry > now)

    def complete_exporting(self, fail: Iterable[int] = ()) -> list[int]:
        """Finish every ``exporting`` annotation (``fail`` ids go to ``failed_export``)."""
        failing = set(fail)
        with self._state_lock:
            done = [a.id for a in self._annotations.values() if a.status == "exporting"]
            for annotation_id in done:
                target = "failed_export" if annotation_id in failing else "exported"
                self._change_status(self._annotations[annotation_id], target, "async")
            self._pending_exporting.clear()
            return done

    # ================================================================= state helpers

    def _change_status(self, ann: _Annotation, status: str, how: str) -> None:
        if ann.status == status:
            return
        now = _now()
        ann.history.append((ann.status, status, how))
        ann.status = status
        ann.modified_at = now
        if status == "confirmed":
            ann.confirmed_at = now
        elif status == "exported":
            ann.exported_at = now
        elif status == "failed_export":
            ann.export_failed_at = now
        elif status == "exporting":
            self._pending_exporting.append(ann.id)

    def _finish_pending_exports(self) -> None:
        # Runs before each request: exports started by an earlier request complete "later".
        if not self.auto_complete_exporting:
            return
        with self._state_lock:
            pending, self._pending_exporting = self._pending_exporting, []
            for annotation_id in pending:
                ann = self._annotations.get(annotation_id)
                if ann is not None and ann.status == "exporting":
                    self._change_status(ann, "exported", "async")

    def _select(self, query: _ListQuery) -> list[_Annotation]:
        selected = []
        for ann in sorted(self._annotations.values(), key=lambda a: a.id):
            if query.queues is not None and ann.queue_id not in query.queues:
                continue
            if query.statuses is not None and ann.status not in query.statuses:
                continue
            if query.ids is not None and ann.id not in query.ids:
                continue
            if all(_within(ann, bound) for bound in query.time_bounds):
                selected.append(ann)
        return selected

    # ================================================================= HTTP plumbing

    def _register_routes(self) -> None:
        app = self.app
        app.before_request(self._finish_pending_exports)
        app.register_error_handler(HTTPException, self._on_http_error)
        app.add_url_rule("/api/v1/auth/login", view_func=self._login, methods=["POST"])
        app.add_url_rule("/api/v1/auth/logout", view_func=self._logout, methods=["POST"])
        app.add_url_rule("/api/v1/queues/<int:queue_id>", view_func=self._get_queue)
        app.add_url_rule(
            "/api/v1/queues/<int:queue_id>/export", view_func=self._export, methods=["GET", "POST"]
        )
        app.add_url_rule("/api/v1/annotations", view_func=self._list_annotations)
        app.add_url_rule(
            "/api/v1/annotations/<int:annotation_id>",
            view_func=self._annotation_detail,
            methods=["GET", "PATCH"],
        )

    @staticmethod
    def _on_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 404:
            detail = "Not found."
        elif status == 405:
            detail = f'Method "{request.method}" not allowed.'
        else:
            detail = error.description or error.name
        response = jsonify({"detail": detail})
        response.status_code = status
        return response

    def _authenticate(self, *, allow_basic: bool = False) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        scheme = scheme.lower()
        if scheme in ("bearer", "token") and credential:
            with self._state_lock:
                expiry = self._tokens.get(credential)
                if expiry is not None and expiry > time.monotonic():
                    return
                self._tokens.pop(credential, None)
        elif scheme == "basic" and allow_basic:
            auth = request.authorization
            if auth is not None and (auth.username, auth.password) == (
                self.username,
                self.password,
            ):
                return
        raise RossumApiError(
            401, {"detail": "Invalid token."}, {"WWW-Authenticate": 'Bearer realm="api"'}
        )

    def _base(self) -> str:
        return request.host_url.rstrip("/") + "/api/v1"

    # ================================================================= auth

    def _login(self) -> Response:
        data: Any = request.get_json(silent=True) if request.is_json else request.form.to_dict()
        if not isinstance(data, dict):
            raise RossumApiError(400, {"non_field_errors": ["Invalid data."]})
        missing = {
            name: ["This field is required."]
            for name in ("username", "password")
            if not data.get(name)
        }
        if missing:
            raise RossumApiError(400, missing)
        lifetime = float(self.token_lifetime_s)
        if data.get("max_token_lifetime_s") not in (None, ""):
            try:
                requested = float(data["max_token_lifetime_s"])
            except (TypeError, ValueError):
                raise RossumApiError(
                    400, {"max_token_lifetime_s": ["A valid number is required."]}
                ) from None
            lifetime = min(lifetime, max(requested, 0.0))
        if (data["username"], data["password"]) != (self.username, self.password):
            raise RossumApiError(401, {"detail": "Unable to log in with provided credentials."})
        key = secrets.token_hex(20)
        with self._state_lock:
            self._tokens[key] = time.monotonic() + lifetime
        return jsonify({"key": key, "domain": self.domain})

    def _logout(self) -> Response:
        self._authenticate()
        _, _, key = request.headers.get("Authorization", "").strip().partition(" ")
        with self._state_lock:
            self._tokens.pop(key.strip(), None)
        return jsonify({"detail": "Successfully logged out."})

    # ================================================================= queues / export

    def _get_queue(self, queue_id: int) -> Response:
        self._authenticate()
        with self._state_lock:
            if queue_id not in self._queues:
                raise RossumApiError(404, {"detail": "Not found."})
            counts: dict[str, int] = {}
            for ann in self._annotations.values():
                if ann.queue_id == queue_id:
                    counts[ann.status] = counts.get(ann.status, 0) + 1
            return jsonify(
                {
                    "id": queue_id,
                    "url": f"{self._base()}/queues/{queue_id}",
                    "name": self._queues[queue_id],
                    "use_confirmed_state": True,
                    "counts": counts,
                }
            )

    def _export(self, queue_id: int) -> Response:
        self._authenticate(allow_basic=True)
        args = request.args
        export_format = args.get("format", "json").lower()
        if export_format not in ("json", "xml"):
            raise RossumApiError(400, {"format": [f'"{export_format}" is not supported here.']})
        to_status = args.get("to_status")
        if to_status is not None:
            if request.method != "POST":
                raise RossumApiError(
                    400, {"to_status": ["This parameter is only valid with POST."]}
                )
            if to_status not in _EXPORT_TARGETS:
                raise RossumApiError(400, {"to_status": [f'"{to_status}" is not a valid choice.']})
        query = _parse_list_query(args, queues=frozenset({queue_id}))
        with self._state_lock:
            if queue_id not in self._queues:
                raise RossumApiError(404, {"detail": "Not found."})
            matched = self._select(query)
            page_items, pagination = self._paginate(matched, query)
            if to_status is not None:
                movable = matched if self.export_moves == "all" else page_items
                for ann in movable:
                    if ann.status in _EXPORTABLE:
                        self._change_status(ann, to_status, "export")
            results = [self._export_result(ann) for ann in page_items]
        if export_format == "xml":
            return _xml_response(results, pagination)
        return jsonify({"pagination": pagination, "results": results})

    def _paginate(
        self, items: list[_Annotation], query: _ListQuery
    ) -> tuple[list[_Annotation], JsonDict]:
        total = len(items)
        # DRF paginators report one (empty) page for an empty result set.
        total_pages = max(1, math.ceil(total / query.page_size))
        if query.page > total_pages:
            raise RossumApiError(404, {"detail": "Invalid page."})
        start = (query.page - 1) * query.page_size
        pagination = {
            "total": total,
            "total_pages": total_pages,
            "next": _page_url(query.page + 1) if query.page < total_pages else None,
            "previous": _page_url(query.page - 1) if query.page > 1 else None,
        }
        return items[start : start + query.page_size], pagination

    def _export_result(self, ann: _Annotation) -> JsonDict:
        base = self._base()
        document_url = f"{base}/documents/{ann.id + self._document_offset}"
        return {
            "url": f"{base}/annotations/{ann.id}",
            "status": ann.status,
            "arrived_at": _iso(ann.arrived_at),
            "exported_at": _iso(ann.exported_at),
            "document": {
                "url": document_url,
                "file_name": ann.file_name,
                "file": f"{document_url}/content",
            },
            "modifier": None,
            "schema": {"url": f"{base}/schemas/{ann.queue_id + 30000}"},
            "metadata": copy.deepcopy(ann.metadata),
            "content": copy.deepcopy(ann.content),
        }

    # ================================================================= annotations

    def _annotation_object(self, ann: _Annotation) -> JsonDict:
        base = self._base()
        url = f"{base}/annotations/{ann.id}"
        return {
            "id": ann.id,
            "url": url,
            "status": ann.status,
            "arrived_at": _iso(ann.arrived_at),
            "modified_at": _iso(ann.modified_at),
            "confirmed_at": _iso(ann.confirmed_at),
            "exported_at": _iso(ann.exported_at),
            "export_failed_at": _iso(ann.export_failed_at),
            "document": f"{base}/documents/{ann.id + self._document_offset}",
            "queue": f"{base}/queues/{ann.queue_id}",
            "schema": f"{base}/schemas/{ann.queue_id + 30000}",
            "modifier": None,
            "content": f"{url}/content",
            "metadata": copy.deepcopy(ann.metadata),
            "messages": copy.deepcopy(ann.messages),
        }

    def _list_annotations(self) -> Response:
        self._authenticate()
        query = _parse_list_query(request.args, queues=_parse_ids(request.args, "queue"))
        with self._state_lock:
            page_items, pagination = self._paginate(self._select(query), query)
            results = [self._annotation_object(ann) for ann in page_items]
        return jsonify({"pagination": pagination, "results": results})

    def _annotation_detail(self, annotation_id: int) -> Response:
        self._authenticate()
        with self._state_lock:
            ann = self._annotations.get(annotation_id)
            if ann is None:
                raise RossumApiError(404, {"detail": "Not found."})
            if request.method == "PATCH":
                self._patch(ann, request.get_json(silent=True))
            return jsonify(self._annotation_object(ann))

    def _patch(self, ann: _Annotation, data: Any) -> None:
        if ann.status == "reviewing":
            raise RossumApiError(409, {"detail": "Annotation is being reviewed by another user."})
        if not isinstance(data, dict):
            raise RossumApiError(
                400, {"non_field_errors": ["Invalid data. Expected a dictionary."]}
            )
        errors: dict[str, list[str]] = {}
        status = data.get("status", ann.status)
        if not isinstance(status, str) or status not in STATUSES:
            errors["status"] = [f'"{status}" is not a valid choice.']
        elif status != ann.status and status not in ALLOWED_TRANSITIONS.get(ann.status, ()):
            errors["status"] = [f"Cannot change status from {ann.status} to {status}."]
        messages = data.get("messages")
        if messages is not None and not _valid_messages(messages):
            errors["messages"] = [
                'Expected a list of {"type": "error|warning|info", "content": "..."} objects.'
            ]
        metadata = data.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            errors["metadata"] = ["Expected a dictionary."]
        if errors:
            raise RossumApiError(400, errors)
        if messages is not None:
            ann.messages = [
                {"type": m["type"], "content": m["content"], "id": m.get("id")} for m in messages
            ]
        if metadata is not None:
            ann.metadata = copy.deepcopy(metadata)
        ann.modified_at = _now()
        self._change_status(ann, status, "patch")


# ===================================================================== module helpers


def _parse_ids(args: Any, name: str) -> frozenset[int] | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return frozenset(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise RossumApiError(400, {name: ["Enter a comma separated list of ids."]}) from None


def _parse_positive(args: Any, name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RossumApiError(400, {name: ["A valid integer is required."]}) from None
    if value < 1:
        raise RossumApiError(400, {name: ["Ensure this value is greater than or equal to 1."]})
    return value


def _parse_list_query(args: Any, *, queues: frozenset[int] | None) -> _ListQuery:
    statuses = args.get("status")
    status_set = (
        frozenset(part.strip() for part in statuses.split(",") if part.strip())
        if statuses
        else None
    )
    if status_set is not None and (unknown := status_set - STATUSES):
        raise RossumApiError(400, {"status": [f'"{sorted(unknown)[0]}" is not a valid choice.']})
    page_size = _parse_positive(args, "page_size", DEFAULT_PAGE_SIZE)
    if page_size > MAX_PAGE_SIZE:
        raise RossumApiError(
            400, {"page_size": [f"Ensure this value is less than or equal to {MAX_PAGE_SIZE}."]}
        )
    bounds: list[tuple[str, str, datetime]] = []
    for name in _TIME_FILTERS:
        for side in ("before", "after"):
            raw = args.get(f"{name}_{side}")
            if raw:
                bounds.append((name, side, _parse_time(f"{name}_{side}", raw)))
    return _ListQuery(
        statuses=status_set,
        ids=_parse_ids(args, "id"),
        queues=queues,
        page=_parse_positive(args, "page", 1),
        page_size=page_size,
        time_bounds=bounds,
    )


def _parse_time(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise RossumApiError(400, {name: ["Enter a valid date/time."]}) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _within(ann: _Annotation, bound: tuple[str, str, datetime]) -> bool:
    name, side, limit = bound
    value: datetime | None = getattr(ann, name)
    if value is None:
        return False
    return value < limit if side == "before" else value > limit


def _page_url(page: int) -> str:
    # Keep every query parameter of the current request, only the page number changes.
    params = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]
    params.append(("page", str(page)))
    return f"{request.base_url}?{urlencode(params)}"


def _valid_messages(messages: Any) -> bool:
    return isinstance(messages, list) and all(
        isinstance(m, dict)
        and m.get("type") in _MESSAGE_TYPES
        and isinstance(m.get("content"), str)
        for m in messages
    )


# ===================================================================== XML export


def _xml_response(results: list[JsonDict], pagination: JsonDict) -> Response:
    root = ET.Element("export")
    results_el = ET.SubElement(root, "results")
    for result in results:
        _xml_annotation(results_el, result)
    pagination_el = ET.SubElement(root, "pagination")
    for key in ("next", "previous", "total", "total_pages"):
        child = ET.SubElement(pagination_el, key)
        if pagination[key] is not None:
            child.text = str(pagination[key])
    body = '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")
    return Response(body.encode(), status=200, content_type="application/xml; charset=utf-8")


def _xml_annotation(parent: ET.Element, result: JsonDict) -> None:
    ann_el = ET.SubElement(parent, "annotation", url=result["url"])
    for key in ("status", "arrived_at", "exported_at"):
        child = ET.SubElement(ann_el, key)
        if result[key] is not None:
            child.text = str(result[key])
    document = result["document"]
    doc_el = ET.SubElement(ann_el, "document", url=document["url"])
    ET.SubElement(doc_el, "file_name").text = document["file_name"]
    ET.SubElement(doc_el, "file").text = document["file"]
    ET.SubElement(ann_el, "modifier")
    ET.SubElement(ann_el, "schema", url=result["schema"]["url"])
    metadata_el = ET.SubElement(ann_el, "metadata")
    for key, value in result["metadata"].items():
        ET.SubElement(metadata_el, "item", key=str(key)).text = str(value)
    content_el = ET.SubElement(ann_el, "content")
    for node in result["content"]:
        _xml_node(content_el, node)


def _xml_node(parent: ET.Element, node: JsonDict) -> None:
    category = str(node.get("category", "datapoint"))
    element = ET.SubElement(parent, category, schema_id=str(node.get("schema_id", "")))
    if category == "datapoint":
        element.set("type", str(node.get("type", "string")))
        if node.get("rir_confidence") is not None:
            element.set("rir_confidence", str(node["rir_confidence"]))
        value = node.get("value")
        element.text = "" if value is None else str(value)
        return
    for child in node.get("children", []):
        _xml_node(element, child)
