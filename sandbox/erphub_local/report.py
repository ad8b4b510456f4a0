"""`erphub report`: a self-contained HTML page of the recent runs of every flow.

:func:`collect` reads the ledger and the Step Functions executions of a :class:`Target`;
:func:`render_html` turns that into one HTML file with its CSS and charts inline (SVG drawn
here, no script, nothing loaded from the network), so it can be mailed or archived as it is.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from erphub.flows.beqom_import import MANIFEST_FLOW
from erphub.ledger import Entry, Status
from erphub_local.operations import (
    BEQOM,
    EBILL,
    FAILED,
    IN_PROGRESS,
    PROCUROS,
    REJECTED,
    ROSSUM,
    STATE_MACHINES,
    Advice,
    Target,
    advise,
    category,
    is_document,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

TITLES: Final = {
    ROSSUM: "Rossum → ERP export",
    PROCUROS: "ERP → Procuros send",
    EBILL: "S3 drop → eBill batch upload",
    BEQOM: "S3 drop → beqom import",
}
#: how each flow's unit of work is called
UNITS: Final = {ROSSUM: "invoices", PROCUROS: "documents", EBILL: "batches", BEQOM: "documents"}
OUTCOMES: Final = (
    ("done", "#2e7d32"),
    ("rejected", "#ef6c00"),
    ("failed", "#c62828"),
    ("deferred", "#78909c"),
)
RUN_STATES: Final = (
    ("succeeded", "#2e7d32"),
    ("failed", "#c62828"),
    ("running", "#1565c0"),
    ("stopped", "#78909c"),
)
MAX_RUNS: Final = 500
MAX_DESCRIBED: Final = 20
MAX_ATTENTION: Final = 300
_BUCKETS: Final = (10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)
_MAX_BARS: Final = 48


@dataclass(frozen=True)
class Run:
    """One Step Functions execution of a flow."""

    flow: str
    name: str
    status: str
    started: datetime
    stopped: datetime | None
    error: str | None = None
    cause: str | None = None

    @property
    def seconds(self) -> float | None:
        """How long it ran."""
        return (self.stopped - self.started).total_seconds() if self.stopped else None


@dataclass
class FlowReport:
    """What one flow did in the period."""

    flow: str
    counts: dict[str, int] = field(default_factory=dict)
    #: (when, outcome): the last outcome of each document in each run
    outcomes: list[tuple[datetime, str]] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    has_runs: bool = True


@dataclass(frozen=True)
class Attention:
    """A document an operator has to look at (or that waits for a later run)."""

    entry: Entry
    advice: Advice


@dataclass
class Report:
    """Everything the page shows."""

    label: str
    generated: datetime
    since: datetime
    flows: list[FlowReport]
    attention: list[Attention]
    attention_total: int


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _outcome(status: str) -> str | None:
    try:
        kind = category(Status(status))
    except ValueError:  # CLAIM and other markers
        return None
    if status == Status.DEFERRED.value:
        return "deferred"
    return kind if kind in ("done", "rejected", "failed") else None


def outcomes_of(entry: Entry, since: datetime) -> list[tuple[datetime, str]]:
    """The last outcome of each run of a document (a run records several steps)."""
    last: dict[str, tuple[datetime, str]] = {}
    for event in entry.history:
        kind = _outcome(event.status)
        moment = _time(event.at)
        if kind is not None and moment >= since:
            last[event.run] = (moment, kind)
    return sorted(last.values())


def needs_attention(entry: Entry, now: datetime) -> bool:
    """Rejected or failed, or in progress with no run holding it (stuck until the next run)."""
    if entry.status in REJECTED or entry.status in FAILED:
        return True
    if entry.status in IN_PROGRESS:
        return not (entry.lease_until and entry.lease_until > now.timestamp())
    return False


def _entries(target: Target, flow: str, since: datetime) -> list[Entry]:
    found = []
    for entry in target.ledger.entries(flow):  # newest first
        if _time(entry.updated_at) < since:
            break
        found.append(entry)
    return found


def _runs(target: Target, flow: str, since: datetime) -> list[Run] | None:
    machine = STATE_MACHINES.get(flow)
    if machine is None or machine not in target.physical or target.clients is None:
        return None
    sfn = target.client("stepfunctions")
    runs: list[Run] = []
    described = 0
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=target.physical[machine])
    for page in pages:
        for item in page["executions"]:
            started = _aware(item["startDate"])
            if started < since or len(runs) >= MAX_RUNS:
                return runs
            error = cause = None
            if item["status"] in ("FAILED", "TIMED_OUT", "ABORTED") and described < MAX_DESCRIBED:
                described += 1
                full = sfn.describe_execution(executionArn=item["executionArn"])
                error, cause = full.get("error"), full.get("cause")
            stopped = item.get("stopDate")
            runs.append(
                Run(
                    flow=flow,
                    name=item["name"],
                    status=item["status"],
                    started=started,
                    stopped=_aware(stopped) if stopped else None,
                    error=error,
                    cause=cause,
                )
            )
    return runs


def _aware(moment: Any) -> datetime:
    if isinstance(moment, str):
        return _time(moment)
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def collect(target: Target, *, days: float = 7, now: datetime | None = None) -> Report:
    """Read the last ``days`` of the ledger and of the executions."""
    moment = now or datetime.now(UTC)
    since = moment - timedelta(days=days)
    flows = []
    attention: list[Attention] = []
    for flow in (ROSSUM, PROCUROS, EBILL, BEQOM):
        entries = _entries(target, flow, since)
        documents = [e for e in entries if is_document(e)]
        report = FlowReport(flow=flow)
        for entry in documents:
            kind = category(entry.status)
            report.counts[kind] = report.counts.get(kind, 0) + 1
            report.outcomes += outcomes_of(entry, since)
        runs = _runs(target, flow, since)
        report.has_runs = runs is not None
        report.runs = runs or []
        flows.append(report)
        attention += [
            Attention(e, advise(e, target.parameters, moment))
            for e in entries
            if needs_attention(e, moment)
        ]
    attention += [
        Attention(e, advise(e, target.parameters, moment))
        for e in _entries(target, MANIFEST_FLOW, since)
        if needs_attention(e, moment)
    ]
    attention.sort(key=lambda a: (not is_document(a.entry), a.entry.updated_at), reverse=False)
    return Report(
        label=target.label,
        generated=moment,
        since=since,
        flows=flows,
        attention=attention[:MAX_ATTENTION],
        attention_total=len(attention),
    )


# --- charts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """The time buckets every chart of a report shares."""

    start: datetime
    seconds: int
    count: int

    def index(self, moment: datetime) -> int:
        """The bucket of ``moment`` (clamped to the axis)."""
        position = int((moment - self.start).total_seconds() // self.seconds)
        return min(max(position, 0), self.count - 1)

    def label(self, index: int) -> str:
        """The time a bucket starts, as short as its size allows."""
        moment = self.start + timedelta(seconds=index * self.seconds)
        if self.seconds >= 86400:
            return f"{moment:%d %b}"
        return f"{moment:%H:%M}" if self.seconds >= 60 else f"{moment:%H:%M:%S}"


def axis_for(moments: Iterable[datetime], now: datetime) -> Axis:
    """Buckets of a round size covering ``moments`` in at most ``_MAX_BARS`` bars."""
    times = sorted(moments)
    first, last = (times[0], times[-1]) if times else (now - timedelta(hours=1), now)
    span = max((last - first).total_seconds(), 1.0)
    seconds = next((s for s in _BUCKETS if span / s < _MAX_BARS), _BUCKETS[-1])
    start = datetime.fromtimestamp(first.timestamp() // seconds * seconds, UTC)
    count = int((last - start).total_seconds() // seconds) + 1
    return Axis(start=start, seconds=seconds, count=max(count, 1))


def _nice_step(maximum: float) -> int:
    raw = max(maximum / 4, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    return int(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def stacked_bars(
    axis: Axis,
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    label: str,
    width: int = 560,
    height: int = 200,
) -> str:
    """An SVG stacked bar chart: one bar per bucket, one colour per series, tooltips by title."""
    left, right, top, bottom = 40, 8, 8, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for _, _, values in series) for i in range(axis.count)]
    step = _nice_step(max(totals, default=0))
    ceiling = max(step * math.ceil(max(max(totals, default=0), 1) / step), step)
    slot = plot_w / axis.count
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="{html.escape(label)}">'
    ]
    for tick in range(0, ceiling + 1, step):
        y = top + plot_h - tick / ceiling * plot_h
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{tick}</text>'
        )
    every = max(1, math.ceil(axis.count / 8))
    for i in range(axis.count):
        x = left + i * slot
        base: float = top + plot_h
        for name, colour, values in series:
            value = values[i]
            if not value:
                continue
            h = value / ceiling * plot_h
            base -= h
            parts.append(
                f'<rect x="{x + slot * 0.12:.1f}" y="{base:.1f}" width="{slot * 0.76:.1f}"'
                f' height="{h:.1f}" fill="{colour}">'
                f"<title>{html.escape(axis.label(i))}: {value} {html.escape(name)}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height - 10}" class="tick"'
                f' text-anchor="middle">{html.escape(axis.label(i))}</text>'
            )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"'
        ' class="axis"/></svg>'
    )
    return "".join(parts)


def _legend(series: Iterable[tuple[str, str]]) -> str:
    return (
        '<div class="legend">'
        + "".join(
            f'<span><i style="background:{colour}"></i>{html.escape(name)}</span>'
            for name, colour in series
        )
        + "</div>"
    )


def _run_state(status: str) -> str:
    return {"SUCCEEDED": "succeeded", "FAILED": "failed", "RUNNING": "running"}.get(
        status, "stopped"
    )


# --- the page ------------------------------------------------------------------------------------

_CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2933;
background:#f4f6f8}
header{background:#102a43;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#bcccdc}
main{padding:20px 28px;max-width:1340px}
h2{font-size:18px;margin:28px 0 10px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px #0002}
.card h3{margin:0 0 6px;font-size:14px}
.nums{display:flex;gap:14px;flex-wrap:wrap}.nums b{display:block;font-size:20px}
.nums span{font-size:12px;color:#52606d}
.done{color:#2e7d32}.rejected{color:#ef6c00}.failed{color:#c62828}.progress{color:#1565c0}
.flow{background:#fff;border-radius:8px;padding:12px 16px;margin-bottom:14px;
box-shadow:0 1px 2px #0002}
.flow h3{margin:0 0 8px}.charts{display:flex;gap:24px;flex-wrap:wrap}
.charts figure{margin:0}.charts figcaption{font-weight:600;margin-bottom:4px}
.chart .grid{stroke:#e4e7eb}.chart .axis{stroke:#9aa5b1}
.chart .tick{font-size:10px;fill:#52606d}
.legend{display:flex;gap:12px;font-size:12px;margin-top:2px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.empty{color:#7b8794;font-style:italic;padding:30px 0}
table{border-collapse:collapse;width:100%;table-layout:fixed;background:#fff;border-radius:8px;
overflow:hidden;box-shadow:0 1px 2px #0002;font-size:13px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e4e7eb;vertical-align:top;
overflow-wrap:anywhere}
table.attention col.flow{width:8%} table.attention col.doc{width:15%}
table.attention col.status{width:11%} table.attention col.why{width:22%}
table.attention col.where{width:22%} table.attention col.fix{width:22%}
th{background:#f0f4f8} td code{font-size:12px}
.badge{display:inline-block;padding:1px 6px;border-radius:4px;font-size:11px;color:#fff}
.b-rejected{background:#ef6c00}.b-failed{background:#c62828}.b-progress{background:#1565c0}
footer{padding:20px 28px;color:#7b8794;font-size:12px}
"""


def _badge(status: Status) -> str:
    kind = category(status)
    css = {"rejected": "b-rejected", "failed": "b-failed"}.get(kind, "b-progress")
    return f'<span class="badge {css}">{html.escape(status.value)}</span>'


def _card(flow: FlowReport) -> str:
    counts = flow.counts
    runs_ok = sum(1 for r in flow.runs if r.status == "SUCCEEDED")
    runs_bad = sum(1 for r in flow.runs if r.status in ("FAILED", "TIMED_OUT", "ABORTED"))
    numbers = [
        ("done", "done", counts.get("done", 0)),
        ("rejected", "rejected", counts.get("rejected", 0)),
        ("failed", "failed", counts.get("failed", 0)),
        ("progress", "in progress", counts.get("in progress", 0)),
    ]
    runs = (
        f"<p>{runs_ok} runs succeeded, {runs_bad} failed</p>"
        if flow.has_runs
        else "<p>runs per queue batch (no executions)</p>"
    )
    return (
        f'<div class="card"><h3>{html.escape(TITLES[flow.flow])}</h3><div class="nums">'
        + "".join(
            f'<div><b class="{css}">{n}</b><span>{html.escape(name)}</span></div>'
            for css, name, n in numbers
        )
        + f"</div>{runs}</div>"
    )


def _flow_section(flow: FlowReport, axis: Axis) -> str:
    unit = UNITS[flow.flow]
    buckets: dict[str, list[int]] = {name: [0] * axis.count for name, _ in OUTCOMES}
    for moment, kind in flow.outcomes:
        buckets[kind][axis.index(moment)] += 1
    charts = []
    if flow.outcomes:
        outcome_chart = stacked_bars(
            axis,
            [(name, colour, buckets[name]) for name, colour in OUTCOMES],
            label=f"{TITLES[flow.flow]}: {unit} per outcome over time",
        )
    else:
        outcome_chart = f'<div class="empty">no {unit} in this period</div>'
    charts.append(
        f"<figure><figcaption>{html.escape(unit.capitalize())} by outcome</figcaption>"
        f"{outcome_chart}{_legend(OUTCOMES)}</figure>"
    )
    if flow.has_runs:
        states: dict[str, list[int]] = {name: [0] * axis.count for name, _ in RUN_STATES}
        for run in flow.runs:
            states[_run_state(run.status)][axis.index(run.started)] += 1
        run_chart = (
            stacked_bars(
                axis,
                [(name, colour, states[name]) for name, colour in RUN_STATES],
                label=f"{TITLES[flow.flow]}: executions over time",
                width=420,
            )
            if flow.runs
            else '<div class="empty">no executions in this period</div>'
        )
        durations = [r.seconds for r in flow.runs if r.seconds is not None]
        took = (
            f" · median {sorted(durations)[len(durations) // 2]:.1f} s,"
            f" longest {max(durations):.1f} s"
            if durations
            else ""
        )
        charts.append(
            f"<figure><figcaption>Executions{took}</figcaption>{run_chart}"
            f"{_legend(RUN_STATES)}</figure>"
        )
    return (
        f'<section class="flow" id="{flow.flow}"><h3>{html.escape(TITLES[flow.flow])}'
        f' <small>({html.escape(flow.flow)})</small></h3><div class="charts">'
        + "".join(charts)
        + "</div></section>"
    )


def _attention_table(report: Report) -> str:
    if not report.attention:
        return '<p class="empty">Nothing is rejected, failed or stuck.</p>'
    rows = []
    for item in report.attention:
        entry, advice = item.entry, item.advice
        why = "<br>".join(html.escape(reason) for reason in advice.why[:3]) or "—"
        where = "<br>".join(html.escape(place) for place in advice.where[:2])
        rows.append(
            "<tr>"
            f"<td>{html.escape(entry.flow)}</td>"
            f"<td><code>{html.escape(entry.document_id)}</code></td>"
            f"<td>{_badge(entry.status)}<br><small>{html.escape(entry.updated_at[:19])}</small></td>"
            f"<td>{why}</td><td>{where}</td><td>{html.escape(advice.fix)}</td>"
            "</tr>"
        )
    more = (
        f"<p>and {report.attention_total - len(report.attention)} more:"
        " <code>erphub status --failed</code></p>"
        if report.attention_total > len(report.attention)
        else ""
    )
    return (
        '<table class="attention"><colgroup><col class="flow"><col class="doc">'
        '<col class="status"><col class="why"><col class="where"><col class="fix"></colgroup>'
        "<thead><tr><th>flow</th><th>document</th><th>status</th><th>why</th>"
        "<th>where</th><th>how to fix</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + more
    )


def _failed_runs_table(report: Report) -> str:
    failed = [r for f in report.flows for r in f.runs if r.status not in ("SUCCEEDED", "RUNNING")]
    if not failed:
        return '<p class="empty">No execution failed.</p>'
    rows = [
        "<tr>"
        f"<td>{html.escape(run.flow)}</td><td><code>{html.escape(run.name)}</code></td>"
        f"<td>{html.escape(run.status)}</td><td>{run.started:%Y-%m-%d %H:%M:%S}</td>"
        f"<td>{html.escape(run.error or '')}</td><td>{html.escape((run.cause or '')[:400])}</td>"
        "</tr>"
        for run in sorted(failed, key=lambda r: r.started, reverse=True)[:100]
    ]
    return (
        "<table><thead><tr><th>flow</th><th>execution</th><th>status</th><th>started</th>"
        "<th>error</th><th>cause</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min" if seconds < 3600 else f"{seconds // 3600} h"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document."""
    moments = [m for f in report.flows for m, _ in f.outcomes]
    moments += [r.started for f in report.flows for r in f.runs]
    axis = axis_for(moments, report.generated)
    title = f"erphub report — {report.label}"
    period = (
        f"{report.since:%Y-%m-%d %H:%M} to {report.generated:%Y-%m-%d %H:%M} UTC,"
        f" bars of {_duration(axis.seconds)}"
        if axis.seconds < 86400
        else f"{report.since:%Y-%m-%d} to {report.generated:%Y-%m-%d} UTC, bars of a day"
    )
    body = [
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(period)}</p></header><main>",
        '<div class="cards">' + "".join(_card(f) for f in report.flows) + "</div>",
        "<h2>Flows</h2>",
        *(_flow_section(f, axis) for f in report.flows),
        f"<h2>Needs attention ({report.attention_total})</h2>",
        _attention_table(report),
        "<h2>Failed executions</h2>",
        _failed_runs_table(report),
        "</main><footer>Every document's full history: <code>erphub show &lt;document&gt;</code>."
        f" Generated {report.generated:%Y-%m-%d %H:%M:%S} UTC.</footer>",
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
