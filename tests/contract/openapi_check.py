"""Validate real httpx exchanges against ``contracts/erp-openapi.yaml`` with openapi-core.

Reusable by any test that has an ``httpx.Request``/``httpx.Response`` pair, e.g. one captured
from the hub's ERP adapter with an ``httpx`` event hook or transport wrapper::

    spec = load_erp_spec()
    check_exchange(spec, response.request, response)
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

if TYPE_CHECKING:
    import httpx

ERP_SPEC_PATH = Path(__file__).resolve().parents[2] / "contracts" / "erp-openapi.yaml"


@cache
def load_erp_spec(path: Path = ERP_SPEC_PATH) -> OpenAPI:
    """The parsed (and spec-validated) ERP contract; cached per path."""
    return OpenAPI.from_file_path(str(path))


class HttpxOpenAPIRequest:
    """openapi-core's ``Request`` protocol over an ``httpx.Request``."""

    def __init__(self, request: httpx.Request) -> None:
        url = request.url
        self.host_url = f"{url.scheme}://{url.netloc.decode('ascii')}"
        self.path = url.path
        self.method = request.method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(url.params.multi_items())),
            header=Headers(list(request.headers.multi_items())),
            cookie=ImmutableMultiDict(),
        )
        # A streamed body must be read once before its bytes are available.
        self.body: bytes | None = request.read() or None
        self.content_type = request.headers.get("content-type", "").lower()


class HttpxOpenAPIResponse:
    """openapi-core's ``Response`` protocol over an ``httpx.Response``."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.headers = Headers(list(response.headers.multi_items()))
        self.content_type = response.headers.get("content-type", "").lower()
        self.data: bytes | None = response.read() or None


def check_exchange(
    spec: OpenAPI,
    request: httpx.Request,
    response: httpx.Response,
    *,
    request_valid: bool | None = True,
) -> None:
    """Assert that a request/response pair conforms to the spec.

    The response must always conform. ``request_valid=True`` also requires a conforming
    request, ``False`` requires the request to break the contract (for deliberately bad
    requests such as a missing field or token), ``None`` skips the request check.
    """
    openapi_request = HttpxOpenAPIRequest(request)
    request_errors = list(spec.iter_request_errors(openapi_request))
    if request_valid is True:
        assert not request_errors, _describe("request", request, request_errors)
    elif request_valid is False:
        assert request_errors, f"expected {request.method} {request.url} to break the contract"
    response_errors = list(
        spec.iter_response_errors(openapi_request, HttpxOpenAPIResponse(response))
    )
    assert not response_errors, _describe(
        f"response {response.status_code} {response.text[:500]!r}", request, response_errors
    )


def _describe(what: str, request: httpx.Request, errors: list[Exception]) -> str:
    reasons = []
    for error in errors:
        reasons.append(f"{type(error).__name__}: {error}")
        # openapi-core wraps schema errors; their causes name the offending fields.
        for inner in getattr(error, "schema_errors", None) or []:
            reasons.append(f"  - {getattr(inner, 'message', inner)}")
        cause = error.__cause__
        for inner in getattr(cause, "schema_errors", None) or []:
            reasons.append(f"  - {getattr(inner, 'message', inner)}")
    return f"{request.method} {request.url}: {what} breaks the contract:\n" + "\n".join(reasons)
