"""The grade report: typed, checked against its JSON Schema, printed.

Introduced with the grader (Chapter 1). :class:`Report` is what
:func:`cnnbook.grading.grade.grade` returns; :meth:`Report.to_json` gives
the JSON object that ``python -m cnnbook grade --json`` and
``grade-batch`` write (schema version :data:`SCHEMA_VERSION`, the schema
in ``report.schema.json`` next to this module, documented in
``book/grading-reference.md``). Every report is validated with
``jsonschema`` before it is written.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import jsonschema

from cnnbook.grading.names import one_line

SCHEMA_VERSION = 1  # bumped on any change that could break a reader
SCHEMA_PATH = pathlib.Path(__file__).with_name("report.schema.json")
NOT_GRADED = "not graded: the notebook could not be run (see above)"


@dataclasses.dataclass
class ExerciseRow:
    key: str
    title: str
    points: int
    max_points: int
    message: str
    visible_passed: bool
    hidden_passed: bool | None
    passed: bool

    @classmethod
    def from_result(cls, r):
        """The row for a :class:`cnnbook.grading.runner.Result`."""
        return cls(
            r.key,
            r.title,
            r.points,
            r.max_points,
            r.message,
            r.visible_passed,
            r.hidden_passed,
            r.passed,
        )

    @classmethod
    def not_graded(cls, ex):
        """The row of an exercise the grader could not check at all."""
        return cls(
            ex.key, ex.title, 0, ex.points, NOT_GRADED, False, None, False
        )


@dataclasses.dataclass
class CellError:
    cell: int  # numbered from 1, markdown cells included
    error: str


@dataclasses.dataclass
class Report:
    """One notebook's grade; the fields are the JSON object's, in order."""

    notebook: str
    sandboxed: bool
    chapter: str | None = None
    graded: bool = False
    sha256: str | None = None
    seed: int | None = None  # the hidden checks'; None: nothing checked
    points: int = 0
    max_points: int = 0
    full_marks: bool = False
    seconds: float = 0.0
    kernel_starts: int = 0
    stopped: str | None = None
    exercises: list[ExerciseRow] = dataclasses.field(default_factory=list)
    cell_errors: list[CellError] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    limits: dict | None = None  # see cnnbook.grading.confinement.Confinement

    def score(self, chapter, results):
        """Fill the exercises and totals from ``results`` (exercise key ->
        Result) for the :class:`~cnnbook.grading.chapters.Chapter`
        ``chapter`` (None: no exercises)."""
        self.chapter = chapter.id if chapter else self.chapter
        self.exercises = [
            ExerciseRow.from_result(results[ex.key])
            if ex.key in results
            else ExerciseRow.not_graded(ex)
            for ex in (chapter.exercises if chapter else ())
        ]
        self.points = sum(r.points for r in self.exercises)
        self.max_points = sum(r.max_points for r in self.exercises)
        self.full_marks = bool(self.exercises) and (
            self.points == self.max_points
        )

    def to_json(self):
        """The report as the JSON object of the schema, validated."""
        data = {
            "schema_version": SCHEMA_VERSION,
            "notebook": self.notebook,
            "graded": self.graded,
            "sandboxed": self.sandboxed,
            "sha256": self.sha256,
            "seed": self.seed,
            "chapter": self.chapter,
            "points": self.points,
            "max_points": self.max_points,
            "full_marks": self.full_marks,
            "seconds": self.seconds,
            "kernel_starts": self.kernel_starts,
            "stopped": self.stopped,
            "exercises": [dataclasses.asdict(r) for r in self.exercises],
            "cell_errors": [dataclasses.asdict(e) for e in self.cell_errors],
            "problems": list(self.problems),
            "limits": self.limits,
        }
        validate(data)
        return data


def died(notebook, why):
    """The report ``grade-batch`` writes when the grader of ``notebook``
    itself died: points null, the reason in ``problems``."""
    data = {
        "schema_version": SCHEMA_VERSION,
        "notebook": str(notebook),
        "graded": False,
        "points": None,
        "exercises": [],
        "problems": [why],
    }
    validate(data)
    return data


@functools.cache
def schema():
    """The report's JSON Schema (a dict)."""
    return json.loads(SCHEMA_PATH.read_text())


def validate(data):
    """Raise ``jsonschema.ValidationError`` unless ``data`` is a report."""
    jsonschema.Draft202012Validator(schema()).validate(data)


def write(data, path):
    """Validate the report ``data`` (a dict) and write it to ``path``."""
    validate(data)
    pathlib.Path(path).write_text(json.dumps(data, indent=2) + "\n")


_TYPE_WORDS = {
    "integer": "int",
    "boolean": "bool",
    "string": "string",
    "number": "float",
    "array": "list",
    "object": "object",
}


def _type_words(prop):
    kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    words = [_TYPE_WORDS[k] for k in kinds if k != "null"]
    text = " or ".join(words)
    if prop.get("items", {}).get("type") == "string":
        text += " of strings"
    return text + (" or null" if "null" in kinds else "")


def field_table(definition=None):
    """The Markdown table (field, type, meaning) of an object of the
    schema: the report itself, or ``"exercise"``; the reference page holds
    these tables as they are."""
    part = schema() if definition is None else schema()["$defs"][definition]
    lines = ["| field | type | meaning |", "|---|---|---|"]
    for name, prop in part["properties"].items():
        lines.append(
            f"| `{name}` | {_type_words(prop)} | {prop['description']} |"
        )
    return "\n".join(lines)


def format_report(report):
    """The per-exercise table the CLI prints, for a report's JSON object.

    Every text that may come from the notebook (messages, problems, cell
    errors, the notebook's name) is printed on one printable line: no
    line break or terminal control code of the learner's can forge or
    hide a line of it (red team 7)."""
    lines = [
        f"Grading {one_line(report['notebook'])} "
        f"(chapter {one_line(report['chapter'])})"
    ]
    for problem in report["problems"]:
        lines.append(f"  ! {one_line(problem)}")
    rows = report["exercises"]
    if rows:
        width = max(len(f"{r['key']} {r['title']}") for r in rows)
        for r in rows:
            mark = "\u2714" if r["passed"] else "\u2718"
            label = f"{r['key']} {r['title']}".ljust(width)
            lines.append(
                f"  {mark} {label}  {r['points']:>2}/{r['max_points']:<2}"
                f"  {'' if r['passed'] else one_line(r['message'])}".rstrip()
            )
    for e in report["cell_errors"]:
        lines.append(f"  cell {e['cell']}: {one_line(e['error'])}")
    lines.append(
        f"Total: {report['points']}/{report['max_points']} points "
        f"({report['seconds']:.1f} s)"
    )
    return "\n".join(lines)
