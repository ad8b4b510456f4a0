"""`erphub map check` and `erphub map preview`, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from erphub.mapfile import PACKAGED
from erphub_local.cli import main
from erphub_local.seed import build_annotation_content
from tests.unit.test_procuros_send_flow import erp_document


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env or {})
    return result.exit_code, result.output


@pytest.mark.parametrize("name", ["rossum-invoice.yaml", "erp-outgoing.yaml"])
def test_check_accepts_the_packaged_defaults(name: str) -> None:
    code, output = run("map", "check", str(PACKAGED / name))
    assert code == 0, output
    assert "a valid" in output


def test_check_names_every_problem_with_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "m.yaml"
    text = (PACKAGED / "rossum-invoice.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("issueDate: date_issue", "issueDat: date_issue"))
    line = text.splitlines().index("  issueDate: date_issue") + 1
    code, output = run("map", "check", str(broken))
    assert code == 1
    assert f"{broken}:{line}: fields: the invoice has no field 'issueDat'" in output
    assert "issueDate is required by the invoice but not mapped" in output


def test_check_needs_to_know_the_kind(tmp_path: Path) -> None:
    unknown = tmp_path / "m.yaml"
    unknown.write_text("fields: {}\n")
    code, output = run("map", "check", str(unknown))
    assert (code, output.strip()) == (
        1,
        f"{unknown}:1: the file must say which mapping it is: kind: rossum-invoice or erp-outgoing",
    )


def export_page(tmp_path: Path) -> Path:
    good = build_annotation_content()
    bad = build_annotation_content(invoice_number="", total="1,19")
    page = {
        "pagination": {"total": 2},
        "results": [
            {"url": "https://x/api/v1/annotations/1", "status": "confirmed", "content": good},
            {"url": "https://x/api/v1/annotations/2", "status": "confirmed", "content": bad},
        ],
    }
    path = tmp_path / "export.json"
    path.write_text(json.dumps(page))
    return path


def test_preview_prints_each_invoice_or_its_problems(tmp_path: Path) -> None:
    code, output = run("map", "preview", "--annotation", str(export_page(tmp_path)))
    assert code == 1  # one document has problems
    first, second = json.loads(output)
    assert first["invoice"]["externalReference"] == "rossum:1"
    assert first["invoice"]["totalAmount"] == "119.00"
    assert second == {
        "annotation": 2,
        "problems": ["amount_total: '1,19' is not a number", "document_id: missing"],
    }


def test_preview_uses_the_configured_mapping(tmp_path: Path) -> None:
    custom = tmp_path / "m.yaml"
    text = (PACKAGED / "rossum-invoice.yaml").read_text(encoding="utf-8")
    custom.write_text(text.replace('separator: "."\n  group: [" "]', 'separator: ","'))
    env = {"ROSSUM_MAPPING": str(custom)}
    _, output = run("map", "preview", "--annotation", str(export_page(tmp_path)), env=env)
    assert json.loads(output)[1]["problems"] == ["document_id: missing"]  # 1,19 is a number
    _, output = run(
        "map", "preview", "--annotation", str(export_page(tmp_path)), "--mapping", "", env=env
    )
    assert "amount_total: '1,19' is not a number" in output


def test_preview_of_outgoing_documents_checks_what_procuros_would_refuse(tmp_path: Path) -> None:
    good, refused = erp_document("A"), erp_document("B")
    del refused["document"]["orderNumber"]
    path = tmp_path / "outgoing.json"
    path.write_text(json.dumps({"items": [good, refused], "nextCursor": None}))
    code, output = run("map", "preview", "--outgoing", str(path))
    assert code == 1
    first, second = json.loads(output)
    assert first["transaction"]["type"] == "INVOICE" and "problems" not in first
    assert second["problems"] == [
        "Procuros would refuse it: content.header.orderIdentifier: is required"
    ]


def test_preview_needs_exactly_one_input(tmp_path: Path) -> None:
    code, output = run("map", "preview")
    assert code == 2 and "give --annotation or --outgoing" in output


def test_a_broken_mapping_is_reported_not_raised(tmp_path: Path) -> None:
    broken = tmp_path / "m.yaml"
    broken.write_text("kind: rossum-invoice\nfields: {}\n")
    code, output = run(
        "map", "preview", "--annotation", str(export_page(tmp_path)), "--mapping", str(broken)
    )
    assert code == 1
    assert f"{broken}:2: fields: invoiceNumber is required by the invoice" in output
