"""Batch grading for instructors: one JSON per submission, a summary CSV,
progress on stderr, bounded workers, and a clear line for what failed; a
folder that cannot fool it (issue #22, item 5): links are not graded,
every name is written safely, identical files are reported, the chapter
is the instructor's."""

import csv
import json
import os

import nbformat
import pytest
from conftest import ROOT, run_cli
from nbformat.v4 import new_code_cell

from cnnbook import notebooks
from cnnbook.grading import batch, chapters, folder
from cnnbook.grading import report as reports
from cnnbook.grading.names import one_line, printable

SOLUTION = ROOT / "solutions" / "ch01-layer-arithmetic.ipynb"
KEYS = ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6"]


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
    # a link to the book's solution is not a submission of its own
    (subs / "linked.ipynb").symlink_to(SOLUTION)
    # the same bytes as bob's, under a name that is not UTF-8 and breaks
    # a line: graded, written escaped, reported as a duplicate
    weird = os.path.join(os.fsencode(subs), b"bob-\xff\n.ipynb")
    with open(weird, "wb") as fh:
        fh.write((subs / "bob.ipynb").read_bytes())
    # the chapter is the instructor's, in the folder's configuration
    (subs / "cnnbook-grading.toml").write_text('chapter = "ch01"\n')
    return subs


WEIRD = "bob-\\xff\\n"  # the name of bob's double, as written


@pytest.mark.slow
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
        "--cell-timeout",
        60,
        "--timeout",
        180,
        timeout=900,
    )
    err = result.stderr
    assert result.returncode == 1, err  # some were not graded
    names = [
        "alice",
        "bob",
        WEIRD,
        "carol",
        "dave__ch01-layer-arithmetic",
        "eve",
        "linked",
    ]
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(names)
    assert "as chapter ch01 with 2 workers" in err and "6/6" in err, err
    assert "carol: NOT GRADED: " in err and "not valid JSON" in err, err
    assert "linked: NOT GRADED: a symbolic link" in err, err
    assert "eve: 9/9 points" in err, err
    assert "alice: 9/9 points" in err and "bob: 0/9 points" in err, err
    assert f"{WEIRD}: 0/9 points" in err, err
    assert "5 graded, 2 not graded" in err, err
    assert "warning: 1 entry is a link and was not graded: linked" in err
    assert f"2 submissions have the same bytes: bob, {WEIRD}" in err, err
    assert all(line.isprintable() for line in err.splitlines()), err

    with open(out / "summary.csv", newline="", encoding="utf-8") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert list(rows) == names
    header = list(rows["alice"])
    assert header == [
        "name",
        *KEYS,
        "total",
        "max_points",
        "same_bytes_as",
        "status",
    ]
    assert rows["bob"]["same_bytes_as"] == WEIRD
    assert rows[WEIRD]["same_bytes_as"] == "bob"
    assert rows[WEIRD]["total"] == "0" and rows["alice"]["same_bytes_as"] == ""
    linked = rows["linked"]
    assert linked["total"] == "" and "symbolic link" in linked["status"]
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
    assert alice["graded"] and alice["chapter"] == "ch01"
    assert json.loads((out / "linked.json").read_text())["points"] is None
    carol = json.loads((out / "carol.json").read_text())
    assert not carol["graded"] and carol["points"] == 0
    eve = json.loads((out / "eve.json").read_text())
    assert eve["graded"] and eve["sandboxed"] and eve["points"] == 9
    assert {p: p.read_bytes() for p in subs.rglob("*.ipynb")} == before


def test_submissions_are_named_by_their_path(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("x.ipynb", "a/x.ipynb", "a/b/y.ipynb"):
        (tmp_path / p).write_text("{}")
    names = [n for n, _ in folder.submissions(tmp_path)]
    assert names == ["a__b__y", "a__x", "x"]


def test_the_scan_follows_no_link_and_reads_only_regular_files(tmp_path):
    subs = tmp_path / "subs"
    (subs / "carol").mkdir(parents=True)
    (subs / "alice.ipynb").write_text('{"cells": []}')
    (subs / "carol" / "ch01.ipynb").write_text('{"cells": []}')
    (subs / "bob.ipynb").symlink_to(subs / "alice.ipynb")  # a classmate's
    (subs / "sol.ipynb").symlink_to(SOLUTION)  # the book's answers
    (subs / "dave").symlink_to(SOLUTION.parent)  # a folder of them
    (subs / "dave.ipynb").mkdir()  # a folder, not a notebook: listed
    os.mkfifo(subs / "eve.ipynb")  # would hang a reader
    entries = {e.name: e for e in folder.scan(subs)}
    assert sorted(entries) == [
        "alice",
        "bob",
        "carol__ch01",
        "dave",
        "dave-folder",
        "eve",
        "sol",
    ]
    assert "a folder, not a notebook" in entries["dave-folder"].problem
    for name in ("bob", "sol", "dave"):
        assert entries[name].problem.startswith("a symbolic link"), name
        assert entries[name].sha256 is None
    assert str(SOLUTION) in entries["sol"].problem
    assert "not a regular file" in entries["eve"].problem
    assert entries["alice"].problem is None
    assert entries["alice"].sha256 == entries["carol__ch01"].sha256
    assert folder.same_bytes(entries.values()) == {
        "alice": ["carol__ch01"],
        "carol__ch01": ["alice"],
    }
    assert [n for n, _ in folder.submissions(subs)] == ["alice", "carol__ch01"]


def test_names_are_printable_and_never_collide():
    cases = [
        b"plain name",
        b"menu-\xc3\xa9",  # UTF-8: kept
        b"menu-\xe9",  # Latin-1: not UTF-8
        b"menu-\\xe9",  # the same, written out with a backslash
        b"two\nlines",
        b"two\\nlines",
        b"\x1b[31mred",
        b"tab\there",
    ]
    written = [printable(c) for c in cases]
    assert written[:2] == ["plain name", "menu-\u00e9"]
    assert written[2] == "menu-\\xe9" and written[3] == "menu-\\\\xe9"
    assert len(set(written)) == len(cases)
    for text in written:
        assert text.isprintable()
        text.encode("utf-8")  # never a lone surrogate
    assert printable(os.fsdecode(b"menu-\xe9")) == written[2]
    assert one_line("a\nb\x1bc") == "a\\nb\\u001bc"


def test_the_summary_is_valid_csv_whatever_the_names(tmp_path):
    rows = [
        {
            "name": printable(b"bob-\xff\n"),
            "points": {"1.1": 1},
            "total": 1,
            "max_points": 9,
            "status": "graded",
            "same_bytes_as": ["=HYPERLINK(1)"],
        },
        {
            "name": "=cmd|' /C calc'!A0",
            "points": None,
            "total": None,
            "max_points": None,
            "status": 'not graded: a, b; "quoted"',
            "same_bytes_as": [],
        },
    ]
    path = tmp_path / "summary.csv"
    batch.write_summary(path, ["1.1", "1.2"], rows)
    with open(path, newline="", encoding="utf-8") as fh:
        back = list(csv.DictReader(fh))
    assert [r["name"] for r in back] == ["bob-\\xff\\n", "'=cmd|' /C calc'!A0"]
    assert back[0]["1.1"] == "1" and back[0]["1.2"] == ""
    assert back[0]["same_bytes_as"] == "'=HYPERLINK(1)"
    assert back[1]["status"] == 'not graded: a, b; "quoted"'
    assert back[1]["total"] == "" and back[1]["max_points"] == ""


@pytest.mark.parametrize(
    "files, chapter",
    [
        ({}, None),
        ({"cnnbook-grading.toml": 'chapter = "ch03"\n'}, "ch03"),
        ({"cnnbook-grading.json": '{"chapter": "ch02"}'}, "ch02"),
        (
            {
                "cnnbook-grading.toml": 'chapter = "ch02"',
                "cnnbook-grading.json": '{"chapter": "ch02"}',
            },
            "ch02",
        ),
    ],
)
def test_the_folder_names_its_chapter(tmp_path, files, chapter):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "sub").mkdir()  # a sub-folder's file does not count
    (tmp_path / "sub" / "cnnbook-grading.toml").write_text('chapter = "ch05"')
    assert folder.folder_chapter(tmp_path) == chapter


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("cnnbook-grading.toml", 'chapter = "ch99"', "names chapter 'ch99'"),
        ("cnnbook-grading.toml", "chapter = ", "cannot read"),
        ("cnnbook-grading.toml", 'chapters = "ch01"', "one thing"),
        ("cnnbook-grading.json", '["ch01"]', "one thing"),
        ("cnnbook-grading.json", "link", "not a regular file"),
    ],
)
def test_a_broken_folder_configuration_stops_the_batch(
    tmp_path, name, text, words
):
    if text == "link":
        (tmp_path / "elsewhere.json").write_text('{"chapter": "ch01"}')
        (tmp_path / name).symlink_to(tmp_path / "elsewhere.json")
    else:
        (tmp_path / name).write_text(text)
    with pytest.raises(batch.BatchError, match=words):
        folder.folder_chapter(tmp_path)


def test_two_configurations_that_disagree_stop_the_batch(tmp_path):
    (tmp_path / "cnnbook-grading.toml").write_text('chapter = "ch01"')
    (tmp_path / "cnnbook-grading.json").write_text('{"chapter": "ch02"}')
    with pytest.raises(batch.BatchError, match="different chapters"):
        folder.folder_chapter(tmp_path)


def test_no_chapter_from_the_instructor_no_batch(tmp_path):
    """A folder without --chapter or configuration is refused before
    anything runs: a submission never picks its own chapter."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "ch05-resnet.ipynb").write_bytes(SOLUTION.read_bytes())
    result = run_cli("grade-batch", subs, "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "--chapter" in result.stderr
    assert "cnnbook-grading.toml" in result.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(batch.BatchError, match="no checks for chapter"):
        batch.grade_batch(subs, tmp_path / "out", None)


def test_a_file_swapped_after_the_scan_does_not_count(tmp_path, monkeypatch):
    """The grade must be of the bytes the batch read: a report of other
    bytes (the file or a folder on its way swapped meanwhile) is void."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "alice.ipynb").write_bytes(SOLUTION.read_bytes())

    def fake(path, json_path, options, hard_timeout, grader_memory_mb):
        assert options[-2:] == ["--chapter", "ch01"]
        return {"sha256": "0" * 64, "graded": True, "points": 9}, None

    monkeypatch.setattr(batch, "grade_in_subprocess", fake)
    progress = open(tmp_path / "progress.txt", "w")
    summary = batch.grade_batch(
        subs, tmp_path / "out", "ch01", progress=progress
    )
    progress.close()
    assert summary[0]["total"] is None
    assert "the file changed while it was graded" in summary[0]["status"]
    saved = json.loads((tmp_path / "out" / "alice.json").read_text())
    assert saved["points"] is None


def test_grade_alone_trusts_no_chapter_that_disagrees(tmp_path):
    """Chapter 1's notebook named ch05-resnet.ipynb: neither chapter is
    graded, the report says why; with --chapter the instructor decides
    (nothing runs in either case here, so this is fast)."""
    path = tmp_path / "ch05-resnet.ipynb"
    path.write_bytes(SOLUTION.read_bytes())
    out = tmp_path / "report.json"
    result = run_cli("grade", path, "--json", out, timeout=300)
    report = json.loads(out.read_text())
    assert result.returncode == 1, result.stdout
    assert report["points"] == 0 and not report["graded"]
    assert report["chapter"] is None and report["exercises"] == []
    assert "says chapter ch05" in report["problems"][0]
    assert "metadata says ch01" in report["problems"][0]
    assert chapters.decide("ch05", "ch01", path) == (
        "ch05",
        "graded as ch05, the chapter the instructor named; the notebook's "
        "file name or metadata names ch01",
    )
    assert chapters.decide(None, "ch01", tmp_path / "mine.ipynb") == (
        "ch01",
        None,
    )


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


@pytest.mark.slow
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
