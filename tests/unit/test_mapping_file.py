"""Mapping files: the packaged defaults, every kind of mistake (named with its line), and where a
mapping is loaded from (packaged, a file, SSM Parameter Store)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from erphub import mapping, procuros_mapping
from erphub.errors import ConfigurationError
from erphub.mapfile import PACKAGED, FieldType, MappingFileError, load, parse
from erphub.settings import MappingSettings

ROSSUM = mapping.TARGET
ERP = procuros_mapping.TARGET

#: The smallest valid Rossum mapping; tests add or break one thing at a time.
MINIMAL = """\
kind: rossum-invoice
fields:
  invoiceNumber: document_id
  issueDate: date_issue
  currency: {from: currency, type: currency}
  supplier.name: sender_name
  supplier.vatId: sender_vat_id
  totalAmount: amount_total
  netAmount: {from: amount_total_base, compute: "totalAmount - taxAmount"}
  taxAmount: amount_total_tax
"""


def problems(text: str, target: object = ROSSUM) -> list[str]:
    with pytest.raises(MappingFileError) as raised:
        parse(textwrap.dedent(text), "m.yaml", target)  # type: ignore[arg-type]
    assert str(raised.value).startswith("mapping m.yaml has ")
    return raised.value.problems


def test_the_packaged_defaults_are_valid_and_typed_from_the_target() -> None:
    rossum = mapping.default_mapping()
    fields = {spec.target: spec for spec in rossum.common.fields}
    assert fields["issueDate"].type is FieldType.DATE
    assert fields["totalAmount"].type is FieldType.DECIMAL
    assert fields["currency"].type is FieldType.CURRENCY
    assert fields["netAmount"].compute is not None
    assert fields["netAmount"].compute.names == {"totalAmount", "taxAmount"}
    (lines,) = rossum.common.lists
    assert (lines.target, lines.source) == ("lines", "line_items")
    erp = procuros_mapping.default_mapping()
    assert erp.trim is False
    assert set(erp.by_type) == set(procuros_mapping.SUPPORTED_TYPES)
    shipping = erp.section("SHIPPING_NOTICE")
    assert {item.target for item in shipping.lists} == {"lines", "transportUnits"}
    assert {item.target for item in erp.section("INVOICE").lists} == {"lines"}
    assert sorted(p.name for p in PACKAGED.glob("*.yaml")) == [
        "erp-outgoing.yaml",
        "rossum-invoice.yaml",
    ]


def test_a_minimal_file_is_enough() -> None:
    spec = parse(MINIMAL, "m.yaml", ROSSUM)
    assert spec.origin == "m.yaml" and spec.trim is True and spec.common.lists == ()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("  totalAmount: amount_total\n", "  totalAmont: amount_total\n"),
            [
                "m.yaml:2: fields: totalAmount is required by the invoice but not mapped",
                "m.yaml:8: fields: the invoice has no field 'totalAmont' (did you mean"
                " totalAmount?)",
                "m.yaml:9: fields.netAmount: compute: unknown field totalAmount (did you mean"
                " taxAmount?) in 'totalAmount - taxAmount'",
            ],
        ),
        (
            ("  issueDate: date_issue\n", "  issueDate: {from: date_issue, type: decimal}\n"),
            ["m.yaml:4: fields.issueDate: the field is a date, it cannot be decimal"],
        ),
        (
            ("  issueDate: date_issue\n", "  issueDate: {from: date_issue, typ: date}\n"),
            [
                "m.yaml:4: fields.issueDate: unknown key 'typ' (known: compute, decimal,"
                " default, formats, from, required, round, type, values)"
            ],
        ),
        (
            ("  issueDate: date_issue\n", "  issueDate: {from: date_issue, default: soon}\n"),
            ["m.yaml:4: fields.issueDate: default 'soon' is not a date (YYYY-MM-DD)"],
        ),
        (
            ("  issueDate: date_issue\n", "  issueDate: {from: date_issue, required: false}\n"),
            ["m.yaml:4: fields.issueDate: issueDate is always required"],
        ),
        (
            ("  issueDate: date_issue\n", "  issueDate: {from: date_issue, round: 2}\n"),
            ["m.yaml:4: fields.issueDate: round applies to decimal fields only"],
        ),
        (
            ("  issueDate: date_issue\n", "  issueDate: {from: date_issue, formats: [DD.MM]}\n"),
            ["m.yaml:4: formats must be strptime formats such as '%d.%m.%Y'"],
        ),
        (
            ("  issueDate: date_issue\n", "  issueDate: {type: date}\n"),
            ["m.yaml:4: fields.issueDate: give 'from', 'compute' or 'default'"],
        ),
        (
            ("  issueDate: date_issue\n", "  issueDate: date issue\n"),
            ["m.yaml:4: fields.issueDate: 'from' must be a field name or a list of them"],
        ),
        (
            ("  totalAmount: amount_total\n", "  totalAmount: {from: x, round: -1}\n"),
            ["m.yaml:8: fields.totalAmount: round must be a number of places from 0 to 10"],
        ),
        (
            ("  totalAmount: amount_total\n", "  totalAmount: {from: x, type: money}\n"),
            [
                "m.yaml:8: fields.totalAmount: type 'money' is unknown (text, decimal,"
                " integer, date, currency, boolean, any)"
            ],
        ),
        (
            ("  taxAmount: amount_total_tax\n", "  taxAmount: {from: t, compute: 1}\n"),
            ["m.yaml:10: fields.taxAmount: compute must be an expression in quotes"],
        ),
        (
            ("  taxAmount: amount_total_tax\n", "  taxAmount: {from: t, values: {a: [1]}}\n"),
            ["m.yaml:10: fields.taxAmount.values: 'a' must map to a plain value"],
        ),
        (
            ("  taxAmount: amount_total_tax\n", "  externalReference: id\n"),
            [
                "m.yaml:2: fields: taxAmount is required by the invoice but not mapped",
                "m.yaml:9: fields.netAmount: compute: unknown field taxAmount (did you mean"
                " totalAmount?) in 'totalAmount - taxAmount'",
                "m.yaml:10: fields: externalReference is set by erphub (rossum:<annotation id>),"
                " it cannot be mapped",
            ],
        ),
        (
            ("  taxAmount: amount_total_tax\n", "  taxAmount: a\n  taxAmount: b\n"),
            ["m.yaml:11: 'taxAmount' is given twice (first on line 10)"],
        ),
        (
            ("kind: rossum-invoice\n", "kind: erp-outgoing\n"),
            ["m.yaml:1: kind is 'erp-outgoing', expected 'rossum-invoice'"],
        ),
        (
            ("kind: rossum-invoice\n", "kind: rossum-invoice\nversion: 2\nlanguage: de\n"),
            [
                "m.yaml:2: version 2 is not supported (only 1)",
                "m.yaml:3: top level: unknown key 'language' (known: date, decimal,"
                " description, fields, kind, lists, trim, types, version)",
            ],
        ),
        (
            ("kind: rossum-invoice\n", "kind: rossum-invoice\ndecimal: {separator: ';'}\n"),
            ["m.yaml:2: decimal separator must be '.' or ','"],
        ),
        (
            ("kind: rossum-invoice\n", "kind: rossum-invoice\ndecimal: {group: ['.']}\n"),
            ["m.yaml:2: decimal: '.' cannot both separate and group"],
        ),
        (
            ("kind: rossum-invoice\n", "kind: rossum-invoice\ntypes: {INVOICE: {}}\n"),
            ["m.yaml:2: a rossum-invoice mapping has no 'types' section"],
        ),
    ],
)
def test_every_mistake_is_named_with_its_line(change: tuple[str, str], expected: list[str]) -> None:
    old, new = change
    assert old in MINIMAL
    assert problems(MINIMAL.replace(old, new, 1)) == expected


def test_lists_are_checked_like_fields() -> None:
    found = problems(
        MINIMAL
        + """\
lists:
  lines:
    from: line_items
    fields:
      quantity: {from: q, compute: "unitPrice * 2"}
  positions:
    from: x
    fields: {}
  items: {fields: {}}
"""
    )
    assert found == [
        "m.yaml:14: lists.lines.fields: description is required in every item of lines but not"
        " mapped",
        "m.yaml:14: lists.lines.fields: unitPrice is required in every item of lines but not"
        " mapped",
        "m.yaml:14: lists.lines.fields: amount is required in every item of lines but not mapped",
        "m.yaml:15: lists.lines.fields.quantity: compute: unknown field unitPrice in"
        " 'unitPrice * 2'",
        "m.yaml:16: lists.positions: the invoice has no list 'positions' (lines)",
        "m.yaml:19: lists.items: the invoice has no list 'items' (lines)",
    ]


def test_per_type_sections_of_an_erp_mapping_are_checked_for_each_type() -> None:
    text = (PACKAGED / "erp-outgoing.yaml").read_text(encoding="utf-8")
    broken = text.replace("  ORDER_RESPONSE:\n", "  ORDER:\n").replace(
        "      reason: reason\n", "      reason: reason\n      creditReason: x\n"
    )
    broken = broken.replace("  documentDate: documentDate\n", "")
    found = problems(broken, ERP)
    assert any("types: 'ORDER' is not a type erphub maps" in p for p in found)
    assert any(
        "types.CREDIT_NOTE.fields: the trade document has no field 'creditReason'" in p
        for p in found
    )
    # documentDate is required: each type (listed or not) is told, at the fields it uses.
    assert sum("documentDate is required by the trade document" in p for p in found) == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "m.yaml:1: the file is empty"),
        ("kind: [", "m.yaml:1: not valid YAML"),
        ("- a\n- b\n", "m.yaml:1: the file must be a mapping of names to values"),
        ("fields: {}\n", "m.yaml:1: kind is missing: this file needs 'kind: rossum-invoice'"),
    ],
)
def test_what_is_not_a_mapping_file(text: str, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(text)), problems(text)


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefg":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [*{previous}, *{previous}, *{previous}, *{previous}]\n"
    with pytest.raises(MappingFileError, match="more than 20000 YAML nodes"):
        parse("kind: rossum-invoice\n" + bomb, "m.yaml", ROSSUM)


def test_a_huge_file_is_refused() -> None:
    with pytest.raises(MappingFileError, match="larger than 256 KB"):
        parse("# " + "x" * 300_000, "m.yaml", ROSSUM)


def test_locations(tmp_path: Path) -> None:
    assert load("", ROSSUM) is mapping.default_mapping()
    assert load("ssm:", ROSSUM) is mapping.default_mapping()
    path = tmp_path / "custom.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load(str(path), ROSSUM).origin == str(path)
    with pytest.raises(ConfigurationError, match=r"cannot read the mapping file .*missing\.yaml"):
        load(str(tmp_path / "missing.yaml"), ROSSUM)


def test_a_mapping_in_parameter_store() -> None:
    with mock_aws():
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name="/erphub/test/rossum", Value=MINIMAL, Type="String")
        assert mapping.load_mapping("ssm:/erphub/test/rossum").origin == "ssm:/erphub/test/rossum"
        ssm.put_parameter(
            Name="/erphub/test/broken", Value=MINIMAL.replace("kind", "knd"), Type="String"
        )
        with pytest.raises(MappingFileError, match="ssm:/erphub/test/broken:1: kind is missing"):
            mapping.load_mapping("ssm:/erphub/test/broken")
        with pytest.raises(ConfigurationError, match="SSM parameter /erphub/test/none"):
            mapping.load_mapping("ssm:/erphub/test/none")


def test_settings_take_a_location_and_refuse_a_name_with_spaces() -> None:
    settings = MappingSettings(rossum_mapping=" ssm:/a/b ", procuros_mapping="/opt/m.yaml")
    assert (settings.rossum_mapping, settings.procuros_mapping) == ("ssm:/a/b", "/opt/m.yaml")
    assert MappingSettings().rossum_mapping == ""
    with pytest.raises(ValidationError, match="an SSM parameter name has no spaces"):
        MappingSettings(rossum_mapping="ssm:/a b")
