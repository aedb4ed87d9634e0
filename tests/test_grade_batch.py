"""Batch grading for instructors: one JSON per submission, a summary CSV,
progress on stderr, bounded workers, and a clear line for what failed."""

import csv
import json

import nbformat
import pytest
from conftest import ROOT, run_cli
from nbformat.v4 import new_code_cell

from cnnbook import notebooks
from cnnbook.grading import batch
from cnnbook.grading import report as reports

SOLUTION = ROOT / "solutions" / "ch01-layer-arithmetic.ipynb"
KEYS = ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6"]

pytestmark = pytest.mark.slow


def _write(path, nb):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(notebooks.render(nb))


def _class_folder(tmp_path):
    subs = tmp_path / "submissions"
    solved = nbformat.read(SOLUTION, as_version=4)
    _write(subs / "alice.ipynb", solved)
    _write(subs / "bob.ipynb", notebooks.exercise_from_solution(solved))
    (subs / "carol.ipynb").write_text('{"cells": [')  # broken JSON
    partly = nbformat.read(SOLUTION, as_version=4)
    for cell in partly.cells:  # 1.6 wrong
        if cell.source.startswith("def pool_forward("):
            cell.source = cell.source.replace("window.max(", "window.min(")
    _write(subs / "dave" / "ch01-layer-arithmetic.ipynb", partly)
    # tries to kill its grader; in the sandbox its parent is the sandbox's
    # own first process, which a signal from inside cannot stop
    hostile = nbformat.read(SOLUTION, as_version=4)
    hostile.cells.insert(
        3,
        new_code_cell(
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"
        ),
    )
    _write(subs / "eve.ipynb", hostile)
    (subs / ".ipynb_checkpoints").mkdir()
    _write(subs / ".ipynb_checkpoints" / "alice-checkpoint.ipynb", solved)
    return subs


def test_grade_batch_cli(tmp_path):
    subs = _class_folder(tmp_path)
    before = {p: p.read_bytes() for p in subs.rglob("*.ipynb")}
    out = tmp_path / "grades"
    result = run_cli(
        "grade-batch",
        subs,
        "--out",
        out,
        "--workers",
        2,
        "--chapter",
        "ch01",
        "--cell-timeout",
        60,
        "--timeout",
        180,
        timeout=600,
    )
    err = result.stderr
    assert result.returncode == 1, err  # one could not be graded
    names = ["alice", "bob", "carol", "dave__ch01-layer-arithmetic", "eve"]
    assert sorted(p.stem for p in out.glob("*.json")) == names
    assert "with 2 workers" in err and "5/5" in err, err
    assert "carol: NOT GRADED: " in err and "not valid JSON" in err, err
    assert "eve: 9/9 points" in err, err
    assert "alice: 9/9 points" in err and "bob: 0/9 points" in err, err
    assert "4 graded, 1 not graded" in err, err

    with open(out / "summary.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert list(rows) == names
    header = list(rows["alice"])
    assert header == ["name", *KEYS, "total", "max_points", "status"]
    assert (
        rows["alice"]["total"] == "9" and rows["alice"]["status"] == "graded"
    )
    assert rows["bob"]["total"] == "0" and rows["bob"]["1.5"] == "0"
    dave = rows["dave__ch01-layer-arithmetic"]
    assert dave["1.6"] == "0" and dave["1.5"] == "3" and dave["total"] == "7"
    assert rows["carol"]["total"] == "" and rows["carol"]["status"].startswith(
        "not graded: "
    ), rows["carol"]
    assert rows["eve"]["total"] == "9", rows["eve"]

    alice = json.loads((out / "alice.json").read_text())
    assert alice["schema_version"] == reports.SCHEMA_VERSION
    assert alice["graded"]
    carol = json.loads((out / "carol.json").read_text())
    assert not carol["graded"] and carol["points"] == 0
    eve = json.loads((out / "eve.json").read_text())
    assert eve["graded"] and eve["sandboxed"] and eve["points"] == 9
    assert {p: p.read_bytes() for p in subs.rglob("*.ipynb")} == before


def test_submissions_are_named_by_their_path(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("x.ipynb", "a/x.ipynb", "a/b/y.ipynb"):
        (tmp_path / p).write_text("{}")
    names = [n for n, _ in batch.submissions(tmp_path)]
    assert names == ["a__b__y", "a__x", "x"]


def _marked_processes(mark):
    import pathlib

    found = []
    for proc in pathlib.Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and mark.encode() in (proc / "environ").read_bytes()
            ):
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def test_a_hung_grade_is_stopped_with_its_kernel(tmp_path, monkeypatch):
    import time
    import uuid

    mark = uuid.uuid4().hex
    monkeypatch.setenv("CNNBOOK_TEST_MARK", mark)  # inherited by the kernel
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.cells.insert(2, new_code_cell("import time\ntime.sleep(300)"))
    path = tmp_path / "ch01-hangs.ipynb"
    _write(path, nb)
    start = time.monotonic()
    report, why = batch.grade_in_subprocess(
        path,
        tmp_path / "hangs.json",
        ["--cell-timeout", "600", "--timeout", "900"],
        hard_timeout=10,
    )
    assert report is None and "ran past 10 s" in why
    assert time.monotonic() - start < 40
    for _ in range(20):  # the kernel goes with its grader
        if not _marked_processes(mark):
            break
        time.sleep(0.5)
    assert _marked_processes(mark) == []
