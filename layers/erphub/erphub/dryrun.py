"""Dry runs: what a run would do with each document, changing nothing in any system.

A dry run reads everything a real run reads (the source system, the ledger, the target's
validation where it offers one), maps and checks each document, and writes a per-document
report to the payload bucket instead of sending anything. Its summary counts documents the way a
real run's outcome does, so the two can be compared: ``accepted`` (the target would hold it:
created now or already there), ``rejected`` (it would fail, with the reasons an operator would
read), ``deferred`` (a transient failure: the next run would try again), ``skipped`` (another
run holds it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erphub.models import CamelModel

if TYPE_CHECKING:
    from collections.abc import Sequence

    from erphub.payloads import PayloadStore

__all__ = ["DryRunReport", "DryRunSummary", "Preview", "Verdict", "write_report"]

Verdict = Literal["accepted", "rejected", "deferred", "skipped"]
VERDICTS: tuple[Verdict, ...] = ("accepted", "rejected", "deferred", "skipped")
REPORT_NAME = "dry-run-report.json"


class Preview(CamelModel):
    """What a real run would do with one document."""

    document_id: str
    correlation_id: str
    verdict: Verdict
    #: whether the real run would send it to the target system (False: already there, refused
    #: before sending, or left alone)
    sends: bool = False
    #: what the real run would do, in an operator's words
    action: str
    reasons: list[str] = Field(default_factory=list)
    #: what would be sent (the mapped document), when it could be mapped
    payload: dict[str, Any] | None = None


class DryRunSummary(CamelModel):
    """The output of a dry run: counts and where the per-document report is."""

    dry_run: Literal[True] = True
    flow: str
    run_id: str
    report_key: str
    documents: int
    accepted: int
    rejected: int
    deferred: int
    skipped: int
    #: how many documents would be sent to the target system
    sends: int
    #: what the prediction could not take into account, when something could not be checked
    note: str | None = None


class DryRunReport(CamelModel):
    """The per-document report stored in the payload bucket."""

    flow: str
    run_id: str
    created_at: str
    scope: dict[str, str] = Field(default_factory=dict)
    summary: DryRunSummary
    documents: list[Preview]


def summarise(
    flow: str, run_id: str, key: str, documents: Sequence[Preview], note: str | None = None
) -> DryRunSummary:
    """The counts of a dry run's previews."""
    counts = {verdict: sum(1 for d in documents if d.verdict == verdict) for verdict in VERDICTS}
    return DryRunSummary(
        flow=flow,
        run_id=run_id,
        report_key=key,
        documents=len(documents),
        sends=sum(1 for d in documents if d.sends),
        note=note,
        **counts,
    )


def write_report(
    payloads: PayloadStore,
    prefix: str,
    *,
    flow: str,
    run_id: str,
    documents: Sequence[Preview],
    scope: dict[str, str] | None = None,
    note: str | None = None,
) -> DryRunSummary:
    """Store the report under ``<prefix>/dry-run-report.json``; return its summary."""
    key = f"{prefix.rstrip('/')}/{REPORT_NAME}"
    summary = summarise(flow, run_id, key, documents, note)
    report = DryRunReport(
        flow=flow,
        run_id=run_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        scope=scope or {},
        summary=summary,
        documents=list(documents),
    )
    payloads.put_json(key, report.dump())
    return summary
