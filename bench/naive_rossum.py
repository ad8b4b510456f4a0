"""The naive baseline: the source article's steps, one document at a time.

Log in, page through the confirmed annotations, and for each one: push it to the ERP, then move
it to exported with its own export POST (or to failed_export). No batching, no concurrency, no
ledger. It exists only to be timed against erphub on the same data and latency.
"""

from __future__ import annotations

import httpx

from erphub.invoices import ExportedAnnotation
from erphub.mapping import MappingError, to_invoice


def run(
    *,
    rossum_api_url: str,
    username: str,
    password: str,
    queue_id: int,
    erp_url: str,
    erp_token: str,
) -> dict[str, int]:
    """Export every confirmed annotation of the queue; counts by outcome."""
    counts = {"exported": 0, "failed_export": 0}
    with httpx.Client(timeout=30) as http:
        key = http.post(
            f"{rossum_api_url}/v1/auth/login", json={"username": username, "password": password}
        ).json()["key"]
        rossum = {"Authorization": f"Bearer {key}"}
        erp = {"Authorization": f"Bearer {erp_token}"}
        results = []
        page = 1
        while True:
            body = http.get(
                f"{rossum_api_url}/v1/queues/{queue_id}/export",
                params={"status": "confirmed", "format": "json", "page_size": 100, "page": page},
                headers=rossum,
            ).json()
            results += body["results"]
            if page >= body["pagination"]["total_pages"]:
                break
            page += 1
        for result in results:
            annotation = ExportedAnnotation.model_validate(result)
            try:
                invoice = to_invoice(annotation)
                response = http.post(f"{erp_url}/invoices", json=invoice.dump(), headers=erp)
                accepted = response.status_code in (201, 409)
            except MappingError:
                accepted = False
            if accepted:
                http.post(
                    f"{rossum_api_url}/v1/queues/{queue_id}/export",
                    params={"to_status": "exported", "id": str(annotation.id), "format": "json"},
                    headers=rossum,
                )
                counts["exported"] += 1
            else:
                http.patch(
                    f"{rossum_api_url}/v1/annotations/{annotation.id}",
                    json={"status": "failed_export"},
                    headers=rossum,
                )
                counts["failed_export"] += 1
    return counts
