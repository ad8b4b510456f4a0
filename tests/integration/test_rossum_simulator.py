"""The Rossum simulator, driven over loopback HTTP by the official SDK and by plain httpx."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from rossum_api import SyncRossumAPIClient
from rossum_api.clients.external_sync_client import SyncRossumAPIClientWithDefaultDeserializer
from rossum_api.domain_logic.resources import Resource
from rossum_api.dtos import UserCredentials
from rossum_api.exceptions import APIClientError

from erphub_local.seed import build_annotation_content
from erphub_local.simulators import Fault, RossumSimulator

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

QUEUE = 1001
USER, PASSWORD = "demo@example.com", "demo-password"
Sdk = SyncRossumAPIClientWithDefaultDeserializer


def _body(error: APIClientError) -> Any:
    """The JSON error body the SDK kept as text."""
    return json.loads(str(error.error))


def _id_from_url(url: str) -> int:
    return int(url.rstrip("/").rsplit("/", 1)[1])


def _add(
    sim: RossumSimulator, count: int, *, queue: int = QUEUE, status: str = "confirmed"
) -> list[int]:
    return [
        sim.add_annotation(
            queue, build_annotation_content(invoice_number=f"INV-{queue}-{n}"), status=status
        )
        for n in range(count)
    ]


def _sdk(sim: RossumSimulator) -> Sdk:
    client: Sdk = SyncRossumAPIClient(
        base_url=f"{sim.api_url}/v1", credentials=UserCredentials(USER, PASSWORD)
    )
    # The SDK retries with exponential backoff; these tests need the retries, not the waiting.
    client.internal_client.retry_backoff_factor = 0
    client.internal_client.retry_max_jitter = 0
    return client


@pytest.fixture
def sdk(rossum_sim: RossumSimulator) -> Iterator[Sdk]:
    client = _sdk(rossum_sim)
    yield client
    client.internal_client.client.close()


@pytest.fixture
def http(rossum_sim: RossumSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{rossum_sim.api_url}/v1") as client:
        yield client


def _token(http: httpx.Client) -> str:
    response = http.post("/auth/login", json={"username": USER, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["key"])


def _export(sdk: Sdk, **filters: Any) -> list[dict[str, Any]]:
    rows = list(sdk.internal_client.export(Resource.Queue, QUEUE, "json", **filters))
    assert all(isinstance(row, dict) for row in rows)
    return [row for row in rows if isinstance(row, dict)]


# --------------------------------------------------------------------------- export, reading


def test_sdk_pages_through_all_confirmed_annotations(rossum_sim: RossumSimulator, sdk: Sdk) -> None:
    confirmed = _add(rossum_sim, 230)
    _add(rossum_sim, 3, status="to_review")
    _add(rossum_sim, 4, queue=2002)

    rows = _export(sdk, status="confirmed", page_size=100)

    ids = [_id_from_url(row["url"]) for row in rows]
    assert sorted(ids) == confirmed
    assert len(ids) == len(set(ids))
    assert all("id" not in row for row in rows)
    first = rows[0]
    assert first["url"] == f"{rossum_sim.api_url}/v1/annotations/{confirmed[0]}"
    assert first["status"] == "confirmed"
    assert first["schema"]["url"].startswith(f"{rossum_sim.api_url}/v1/schemas/")
    assert first["document"]["file"].endswith("/content")
    assert {"arrived_at", "exported_at", "modifier", "metadata"} <= first.keys()
    section = first["content"][0]
    assert section["category"] == "section"
    assert section["children"][0]["schema_id"] == "document_id"
    assert {"value", "type", "rir_confidence"} <= section["children"][0].keys()
    pages = [
        call.query.get("page", "1")
        for call in rossum_sim.calls
        if call.path == f"/api/v1/queues/{QUEUE}/export"
    ]
    assert pages == ["1", "2", "3"]
    assert rossum_sim.count("POST", "/api/v1/auth/login") == 1


def test_pagination_links_are_absolute_and_keep_the_query(
    rossum_sim: RossumSimulator, http: httpx.Client
) -> None:
    _add(rossum_sim, 45)
    headers = {"Authorization": f"Bearer {_token(http)}"}
    params = {"status": "confirmed", "format": "json", "page_size": "20", "page": "2"}

    body = http.get(f"/queues/{QUEUE}/export", params=params, headers=headers).json()

    pagination = body["pagination"]
    assert pagination["total"] == 45
    assert pagination["total_pages"] == 3
    assert len(body["results"]) == 20
    following = httpx.URL(pagination["next"])
    assert str(following).startswith(f"{rossum_sim.api_url}/v1/queues/{QUEUE}/export?")
    assert dict(following.params) == {**params, "page": "3"}
    assert dict(httpx.URL(pagination["previous"]).params)["page"] == "1"
    last = http.get(pagination["next"], headers=headers).json()
    assert len(last["results"]) == 5
    assert last["pagination"]["next"] is None


def test_default_page_size_is_20_and_page_size_101_is_rejected(
    rossum_sim: RossumSimulator, sdk: Sdk, http: httpx.Client
) -> None:
    _add(rossum_sim, 25)
    headers = {"Authorization": f"Bearer {_token(http)}"}
    body = http.get(f"/queues/{QUEUE}/export", headers=headers).json()
    assert len(body["results"]) == 20

    with pytest.raises(APIClientError) as error:
        _export(sdk, status="confirmed", page_size=101)

    assert error.value.status_code == 400
    assert "page_size" in _body(error.value)


def test_xml_export_is_valid_and_paginated(rossum_sim: RossumSimulator, http: httpx.Client) -> None:
    ids = _add(rossum_sim, 3)
    response = http.get(
        f"/queues/{QUEUE}/export",
        params={"format": "xml", "status": "confirmed", "page_size": "2"},
        auth=(USER, PASSWORD),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")

    root = ET.fromstring(response.content)
    annotations = root.findall("./results/annotation")
    assert [_id_from_url(a.attrib["url"]) for a in annotations] == ids[:2]
    assert annotations[0].findtext("status") == "confirmed"
    assert root.findtext("./pagination/total") == "3"
    assert root.findtext("./pagination/total_pages") == "2"
    assert "page=2" in (root.findtext("./pagination/next") or "")
    number = annotations[0].find(".//datapoint[@schema_id='document_id']")
    assert number is not None
    assert number.text == f"INV-{QUEUE}-0"
    assert root.find(".//multivalue[@schema_id='line_items']/tuple") is not None


# --------------------------------------------------------------------------- export, switching


def test_post_to_status_exported_moves_only_the_listed_ids(
    rossum_sim: RossumSimulator, sdk: Sdk
) -> None:
    ids = _add(rossum_sim, 5)
    chosen = ids[:3]
    id_list = ",".join(map(str, chosen))

    rows = _export(sdk, status="confirmed", id=id_list, to_status="exported", page_size=100)

    assert sorted(_id_from_url(row["url"]) for row in rows) == chosen
    assert {row["status"] for row in rows} == {"exported"}
    assert all(row["exported_at"] for row in rows)
    assert rossum_sim.count("POST", f"/api/v1/queues/{QUEUE}/export") == 1
    assert rossum_sim.statuses(QUEUE) == {
        **dict.fromkeys(chosen, "exported"),
        **dict.fromkeys(ids[3:], "confirmed"),
    }

    (late,) = _add(rossum_sim, 1)
    (in_review,) = _add(rossum_sim, 1, status="to_review")
    again = _export(sdk, status="confirmed", id=id_list, to_status="exported", page_size=100)
    unfiltered = _export(sdk, id=f"{id_list},{in_review}", to_status="exported", page_size=100)

    assert again == []
    assert [row["status"] for row in unfiltered] == ["exported"] * 3 + ["to_review"]
    assert rossum_sim.statuses()[late] == "confirmed"
    assert rossum_sim.statuses()[in_review] == "to_review"
    for annotation_id in chosen:
        assert rossum_sim.history(annotation_id) == [
            ("", "confirmed", "seed"),
            ("confirmed", "exported", "export"),
        ]


def test_to_status_is_post_only_and_limited_to_export_states(
    rossum_sim: RossumSimulator, http: httpx.Client
) -> None:
    (annotation_id,) = _add(rossum_sim, 1)
    headers = {"Authorization": f"Bearer {_token(http)}"}
    url = f"/queues/{QUEUE}/export"

    as_get = http.get(url, params={"to_status": "exported", "id": annotation_id}, headers=headers)
    wrong_target = http.post(url, params={"to_status": "confirmed"}, headers=headers)

    assert as_get.status_code == 400
    assert "to_status" in as_get.json()
    assert wrong_target.status_code == 400
    assert "to_status" in wrong_target.json()
    assert rossum_sim.statuses() == {annotation_id: "confirmed"}


def test_exporting_completes_on_a_later_request(
    rossum_sim: RossumSimulator, http: httpx.Client
) -> None:
    (annotation_id,) = _add(rossum_sim, 1)
    headers = {"Authorization": f"Bearer {_token(http)}"}

    moved = http.post(
        f"/queues/{QUEUE}/export",
        params={"to_status": "exporting", "status": "confirmed", "id": annotation_id},
        headers=headers,
    )
    later = http.get(f"/annotations/{annotation_id}", headers=headers)

    assert [row["status"] for row in moved.json()["results"]] == ["exporting"]
    assert later.json()["status"] == "exported"
    assert rossum_sim.history(annotation_id)[-1] == ("exporting", "exported", "async")


def test_exporting_can_be_held_and_failed() -> None:
    with RossumSimulator(auto_complete_exporting=False) as sim:
        first, second = _add(sim, 2)
        token = httpx.post(
            f"{sim.api_url}/v1/auth/login", data={"username": USER, "password": PASSWORD}
        ).json()["key"]
        httpx.post(
            f"{sim.api_url}/v1/queues/{QUEUE}/export",
            params={"to_status": "exporting"},
            headers={"Authorization": f"token {token}"},
        )
        assert sim.statuses() == {first: "exporting", second: "exporting"}

        assert sorted(sim.complete_exporting(fail=[second])) == [first, second]
        assert sim.statuses() == {first: "exported", second: "failed_export"}
        assert sim.annotation(second)["export_failed_at"] is not None


def test_switching_a_whole_result_set_page_by_page_skips_items(
    rossum_sim: RossumSimulator, sdk: Sdk
) -> None:
    """Pitfall: without ids, page 2 is computed on the already shrunk result set."""
    _add(rossum_sim, 150)

    with pytest.raises(APIClientError) as error:
        _export(sdk, status="confirmed", to_status="exported", page_size=100)

    assert error.value.status_code == 404
    assert sorted(rossum_sim.statuses().values()).count("confirmed") == 50


# --------------------------------------------------------------------------- annotations


def test_patch_failed_export_with_messages(rossum_sim: RossumSimulator, sdk: Sdk) -> None:
    (annotation_id,) = _add(rossum_sim, 1)
    messages = [{"type": "error", "content": "ERP rejected: VAT id unknown", "id": None}]

    body = sdk.internal_client.request_json(
        "PATCH",
        f"annotations/{annotation_id}",
        json={"status": "failed_export", "messages": messages},
    )

    assert body["id"] == annotation_id
    assert body["status"] == "failed_export"
    assert body["export_failed_at"]
    assert body["messages"] == messages
    assert body["url"] == f"{rossum_sim.api_url}/v1/annotations/{annotation_id}"
    stored = rossum_sim.annotation(annotation_id)
    assert stored["messages"] == messages
    assert rossum_sim.history(annotation_id)[-1] == ("confirmed", "failed_export", "patch")
    fetched = sdk.internal_client.request_json("GET", f"annotations/{annotation_id}")
    assert fetched["status"] == "failed_export"

    back = sdk.internal_client.request_json(
        "PATCH", f"annotations/{annotation_id}", json={"status": "to_review"}
    )
    assert back["status"] == "to_review"


def test_patch_rejects_bad_transitions_conflicts_and_unknown_ids(
    rossum_sim: RossumSimulator, sdk: Sdk
) -> None:
    exported, reviewing = _add(rossum_sim, 2)
    rossum_sim.set_status(exported, "exported")
    rossum_sim.set_status(reviewing, "reviewing")

    def patch(annotation_id: int, body: dict[str, Any]) -> APIClientError:
        with pytest.raises(APIClientError) as error:
            sdk.internal_client.request_json("PATCH", f"annotations/{annotation_id}", json=body)
        return error.value

    invalid = patch(exported, {"status": "failed_export"})
    unknown_status = patch(exported, {"status": "shipped"})
    bad_messages = patch(exported, {"messages": "not a list"})
    conflict = patch(reviewing, {"status": "failed_export"})
    missing = patch(999_999, {"status": "failed_export"})

    assert invalid.status_code == 400
    assert "exported" in _body(invalid)["status"][0]
    assert unknown_status.status_code == 400
    assert "status" in _body(unknown_status)
    assert bad_messages.status_code == 400
    assert "messages" in _body(bad_messages)
    assert conflict.status_code == 409
    assert "detail" in _body(conflict)
    assert missing.status_code == 404
    assert _body(missing) == {"detail": "Not found."}
    assert rossum_sim.statuses() == {exported: "exported", reviewing: "reviewing"}


def test_list_and_read_annotations(rossum_sim: RossumSimulator, sdk: Sdk) -> None:
    confirmed = _add(rossum_sim, 3)
    _add(rossum_sim, 2, status="to_review")
    _add(rossum_sim, 2, queue=2002)

    listed = list(
        sdk.internal_client.fetch_resources(Resource.Annotation, queue=QUEUE, status="confirmed")
    )
    by_id = list(
        sdk.internal_client.fetch_resources(
            Resource.Annotation, id=f"{confirmed[0]},{confirmed[2]}"
        )
    )
    single = sdk.internal_client.fetch_resource(Resource.Annotation, confirmed[1])

    assert [row["id"] for row in listed] == confirmed
    assert [row["id"] for row in by_id] == [confirmed[0], confirmed[2]]
    assert single["id"] == confirmed[1]
    assert single["queue"].endswith(f"/queues/{QUEUE}")


# --------------------------------------------------------------------------- authentication


def test_login_accepts_json_and_form_bodies(
    rossum_sim: RossumSimulator, http: httpx.Client
) -> None:
    as_json = http.post("/auth/login", json={"username": USER, "password": PASSWORD})
    as_form = http.post("/auth/login", data={"username": USER, "password": PASSWORD})
    wrong = http.post("/auth/login", json={"username": USER, "password": "nope"})
    incomplete = http.post("/auth/login", data={"username": USER})

    for response in (as_json, as_form):
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"key", "domain"}
        assert len(response.json()["key"]) == 40
    assert as_json.json()["key"] != as_form.json()["key"]
    assert wrong.status_code == 401
    assert "detail" in wrong.json()
    assert incomplete.status_code == 400
    assert "password" in incomplete.json()
    assert rossum_sim.count("POST", "/api/v1/auth/login") == 4


def test_auth_schemes_and_logout(rossum_sim: RossumSimulator, http: httpx.Client) -> None:
    (annotation_id,) = _add(rossum_sim, 1)
    token = _token(http)
    path = f"/annotations/{annotation_id}"

    for scheme in ("Bearer", "Token", "token", "BEARER"):
        response = http.get(path, headers={"Authorization": f"{scheme} {token}"})
        assert response.status_code == 200, (scheme, response.text)
    for header in ("", f"Bearer {token}x", f"Digest {token}", token):
        response = http.get(path, headers={"Authorization": header})
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid token."}
    # HTTP Basic is accepted by the export endpoint only.
    assert http.get(path, auth=(USER, PASSWORD)).status_code == 401
    assert http.get(f"/queues/{QUEUE}/export", auth=(USER, PASSWORD)).status_code == 200
    assert http.get(f"/queues/{QUEUE}/export", auth=(USER, "nope")).status_code == 401

    logout = http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert logout.json() == {"detail": "Successfully logged out."}
    assert http.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_token_lifetime_can_be_lowered_at_login(http: httpx.Client) -> None:
    body = {"username": USER, "password": PASSWORD, "max_token_lifetime_s": 0}
    token = http.post("/auth/login", json=body).json()["key"]

    response = http.get("/annotations", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401


def test_sdk_logs_in_again_after_token_expiry(rossum_sim: RossumSimulator, sdk: Sdk) -> None:
    (annotation_id,) = _add(rossum_sim, 1)
    sdk.internal_client.fetch_resource(Resource.Annotation, annotation_id)
    assert rossum_sim.count("POST", "/api/v1/auth/login") == 1

    rossum_sim.expire_tokens()
    fetched = sdk.internal_client.fetch_resource(Resource.Annotation, annotation_id)

    assert fetched["id"] == annotation_id
    assert rossum_sim.count("POST", "/api/v1/auth/login") == 2
    statuses = [call.status for call in rossum_sim.calls if call.path.startswith("/api/v1/annot")]
    assert statuses == [200, 401, 200]
    assert rossum_sim.active_tokens == 1


# --------------------------------------------------------------------------- faults


def test_sdk_retries_a_429_with_retry_after(rossum_sim: RossumSimulator, sdk: Sdk) -> None:
    _add(rossum_sim, 3)
    seen: list[tuple[int, str | None]] = []
    sdk.internal_client.response_post_processor = lambda response: seen.append(
        (response.status_code, response.headers.get("Retry-After"))
    )
    rossum_sim.inject(Fault(429, retry_after=1, path_prefix="/api/v1/queues/"))

    rows = _export(sdk, status="confirmed")

    assert len(rows) == 3
    assert seen[-2:] == [(429, "1"), (200, None)]
    assert rossum_sim.faults_served == 1
    assert rossum_sim.pending_faults == 0
    faulted = [call for call in rossum_sim.calls if call.faulted]
    assert [(call.method, call.status) for call in faulted] == [("GET", 429)]
    assert faulted[0].query["status"] == "confirmed"


def test_fault_matching_order_and_bodies(rossum_sim: RossumSimulator, http: httpx.Client) -> None:
    token = _token(http)
    headers = {"Authorization": f"Bearer {token}"}
    rossum_sim.inject(
        Fault(503, method="PATCH"),
        Fault(500, times=2, path_prefix="/api/v1/annotations"),
    )

    statuses = [http.get("/annotations", headers=headers).status_code for _ in range(3)]
    fourth = http.get("/annotations", headers=headers)

    assert statuses == [500, 500, 200]
    assert fourth.status_code == 200
    assert rossum_sim.pending_faults == 1
    assert rossum_sim.faults_served == 2
    rossum_sim.clear_faults()
    assert rossum_sim.pending_faults == 0


def test_retry_after_violations_are_counted(
    rossum_sim: RossumSimulator, http: httpx.Client
) -> None:
    rossum_sim.inject(Fault(429, retry_after=3600))

    first = http.get("/annotations")
    early = http.get("/annotations")

    assert first.status_code == 429
    assert first.headers["Retry-After"] == "3600"
    assert first.json() == {"detail": "Request was throttled."}
    assert early.status_code == 401
    assert rossum_sim.retry_after_violations == 1


def test_fault_after_processing_keeps_the_change(
    rossum_sim: RossumSimulator, http: httpx.Client
) -> None:
    (annotation_id,) = _add(rossum_sim, 1)
    headers = {"Authorization": f"Bearer {_token(http)}"}
    rossum_sim.inject(Fault(500, method="POST", after_processing=True))

    response = http.post(
        f"/queues/{QUEUE}/export",
        params={"to_status": "exported", "id": annotation_id},
        headers=headers,
    )

    assert response.status_code == 500
    assert rossum_sim.statuses() == {annotation_id: "exported"}
    assert [call.status for call in rossum_sim.calls if call.method == "POST"][-1] == 500


def test_reset_connection_drops_the_request(
    rossum_sim: RossumSimulator, http: httpx.Client
) -> None:
    (annotation_id,) = _add(rossum_sim, 1)
    headers = {"Authorization": f"Bearer {_token(http)}"}
    rossum_sim.inject(Fault(502, reset_connection=True, after_processing=True))

    with pytest.raises(httpx.TransportError):
        http.patch(
            f"/annotations/{annotation_id}", json={"status": "failed_export"}, headers=headers
        )

    assert rossum_sim.statuses() == {annotation_id: "failed_export"}
    last = rossum_sim.calls[-1]
    assert (last.method, last.status, last.faulted) == ("PATCH", 0, True)
    assert last.body == {"status": "failed_export"}
