"""The grading sub-package's own parts: chapters, the report and its
schema, the Keras overlays, the one executor and the one time limit."""

from __future__ import annotations

import json
import re
import time

import jsonschema
import nbformat
import pytest
from conftest import ROOT

from cnnbook import execution
from cnnbook.grading import chapters, package, report
from cnnbook.grading.runner import Result
from cnnbook.grading.timeout import Timeout, call_with_timeout


# ---------------------------------------------------------------- chapters
@pytest.mark.parametrize(
    ("name", "chapter"),
    [
        ("ch01-layer-arithmetic.ipynb", "ch01"),
        ("ch01.ipynb", "ch01"),
        ("CH02-mine.ipynb", "ch02"),
        ("ch05.backup-2.ipynb", "ch05"),
        ("alice.ipynb", None),
        ("ch99-nothing.ipynb", None),
    ],
)
def test_one_rule_reads_the_chapter_from_a_file_name(name, chapter):
    assert chapters.from_file_name(f"/some/where/{name}") == chapter


def test_a_chapter_is_resolved_once():
    first = chapters.resolve("ch04")
    assert chapters.resolve("ch04") is first
    assert first.checks_module == "cnnbook.grading.checks.ch04"
    assert [ex.key for ex in first.exercises] == ["4.1", "4.2", "4.3"]
    assert first.keras_applications == {"vgg16": ["4.2"], "vgg19": ["4.2"]}
    assert chapters.resolve("ch01").needs_keras is False
    with pytest.raises(KeyError):
        chapters.resolve("ch99")


# ------------------------------------------------------------------ report
def _report():
    ch = chapters.resolve("ch01")
    first = ch.exercises[0]
    made = report.Report("sub/ch01-x.ipynb", sandboxed=True, graded=True)
    made.sha256 = "0" * 64
    made.score(ch, {first.key: Result(first.key, first.title, 1, 1, "ok")})
    made.cell_errors = [report.CellError(3, "NameError: x")]
    return made, ch


def test_the_report_serialises_to_the_documented_fields_in_order():
    made, ch = _report()
    data = made.to_json()
    assert list(data) == list(report.schema()["properties"])
    assert data["schema_version"] == report.SCHEMA_VERSION
    assert data["chapter"] == "ch01" and data["points"] == 1
    assert data["max_points"] == ch.max_points and not data["full_marks"]
    rows = data["exercises"]
    assert list(rows[0]) == list(
        report.schema()["$defs"]["exercise"]["properties"]
    )
    assert rows[0]["passed"] and not rows[1]["passed"]
    assert rows[1]["message"] == report.NOT_GRADED
    assert data["cell_errors"] == [{"cell": 3, "error": "NameError: x"}]
    json.dumps(data)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d.pop("max_points"),
        lambda d: d.update(extra=1),
        lambda d: d.update(points="7"),
        lambda d: d["exercises"][0].pop("passed"),
        lambda d: d["cell_errors"].append({"cell": 0, "error": "x"}),
    ],
)
def test_the_schema_refuses_a_report_that_breaks_it(spoil):
    data = _report()[0].to_json()
    spoil(data)
    with pytest.raises(jsonschema.ValidationError):
        report.validate(data)


def test_a_dead_graders_report_is_valid_and_short(tmp_path):
    data = report.died("sub/eve.ipynb", "the grader ran past 10 s")
    report.write(data, tmp_path / "eve.json")
    back = json.loads((tmp_path / "eve.json").read_text())
    assert back["points"] is None and back["problems"] == [
        "the grader ran past 10 s"
    ]
    with pytest.raises(jsonschema.ValidationError):
        report.validate(dict(back, graded=True))


def test_the_reference_page_lists_the_schemas_fields():
    page = (ROOT / "book" / "grading-reference.md").read_text()
    assert report.field_table() in page
    assert report.field_table("exercise") in page
    version = re.search(r"## The report \(schema version (\d+)\)", page)
    assert version and int(version.group(1)) == report.SCHEMA_VERSION


# ---------------------------------------------------------------- overlays
def test_keras_overlays_cover_the_files_of_chapter_4(tmp_path):
    apps = chapters.resolve("ch04").keras_applications
    made = package.keras_overlays(apps, tmp_path)
    assert sorted(
        o.name for _, o in made if o.parent.name == "applications"
    ) == [
        "vgg16.py",
        "vgg19.py",
    ]
    text = made[0][0].read_text()
    assert "ImportError" in text and "4.2" in text


def test_a_missing_keras_file_stops_the_grade(tmp_path, monkeypatch):
    """A Keras upgrade that moves a covered file must not quietly make the
    answer importable again."""
    moved = tmp_path / "applications"
    moved.mkdir()
    (moved / "vgg16.py").write_text("def VGG16():\n    pass\n")
    monkeypatch.setattr(package, "applications_root", lambda: moved)
    apps = chapters.resolve("ch04").keras_applications
    with pytest.raises(package.OverlayMissing, match=r"vgg19\.py.*4\.2"):
        package.keras_overlays(apps, tmp_path / "k")


# ------------------------------------------- the executor and time limit
def test_the_executor_caps_output_but_keeps_errors(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("print('small')"),
            nbformat.v4.new_code_cell("print('x' * 5000)"),
            nbformat.v4.new_code_cell("print('y' * 5000)\n1 / 0"),
        ]
    )
    client = execution.client(
        nb, tmp_path, 60, output_limit=1000, allow_errors=True
    )
    client.execute()

    def printed(cell):
        return "".join(o.get("text", "") for o in cell.outputs)

    assert printed(nb.cells[0]).strip() == "small"
    assert printed(nb.cells[1]) == ""  # over the cap: dropped
    assert printed(nb.cells[2]) == ""
    errors = [o for o in nb.cells[2].outputs if o.output_type == "error"]
    assert errors[0].ename == "ZeroDivisionError"


def test_the_time_limit_stops_a_call_and_lets_a_quick_one_through():
    assert call_with_timeout(lambda x: x + 1, 1, 41) == 42
    start = time.perf_counter()
    with pytest.raises(Timeout):
        call_with_timeout(time.sleep, 0.2, 5)
    assert time.perf_counter() - start < 2
