"""Every grade ends (issue #22, item 4): one deadline for the whole grade,
replays after a restart and checks included, and a bounded number of
kernel restarts; the report says why a grade stopped."""

import json
import pathlib
import signal
import time
import uuid

import nbformat
import pytest
from conftest import ROOT, run_cli
from nbformat.v4 import new_code_cell

from cnnbook import notebooks
from cnnbook.grading import grade as grading
from cnnbook.grading import session as session_module
from cnnbook.grading.session import Limits

SOLUTION = ROOT / "solutions" / "ch01-layer-arithmetic.ipynb"
FULL = {"1.1": 1, "1.2": 1, "1.3": 1, "1.4": 1, "1.5": 3, "1.6": 2}

# sleeps only when the kernel replays it (its marker file survives restarts)
SLEEPS_WHEN_REPLAYED = """
import os, time
if os.path.exists('replayed'):
    time.sleep(100000)
open('replayed', 'w').close()
"""
KILLS_ONCE = """
import os
if not os.path.exists('killed'):
    open('killed', 'w').close()
    os._exit(1)
"""

pytestmark = pytest.mark.slow


def _notebook(path, *cells, at=2):
    nb = nbformat.read(SOLUTION, as_version=4)
    for offset, source in enumerate(cells):
        nb.cells.insert(at + offset, new_code_cell(source))
    path.write_text(notebooks.render(nb))
    return path


def _marked_processes(mark):
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


def _grade_cli(path, limit, cell_timeout):
    """``grade --timeout LIMIT``: (exit status, report, wall seconds)."""
    out = path.with_suffix(".json")
    start = time.monotonic()
    result = run_cli(
        "grade",
        path,
        "--json",
        out,
        "--timeout",
        limit,
        "--cell-timeout",
        cell_timeout,
        timeout=limit + 120,
    )
    wall = time.monotonic() - start
    return result, json.loads(out.read_text()), wall


def test_a_replay_that_never_ends_is_replayed_once(tmp_path):
    """The attack of issue #22: before, each replay ran past its cell
    limit and restarted the kernel, which replayed it again, for ever. A
    cell that fails when replayed is now left out of later replays: the
    grade goes on and the notebook's answers keep their points."""
    path = _notebook(
        tmp_path / "ch01-endless.ipynb", SLEEPS_WHEN_REPLAYED, KILLS_ONCE
    )
    limit = 300
    # the replayed sleeper waits out this cell limit; the set-up cell's
    # replay (numpy and the package: chapter 1 is graded without Keras)
    # ran within 1 s on a two-core machine at load 9
    result, report, wall = _grade_cli(path, limit, 8)
    assert wall < limit, (wall, result.stdout)
    assert report["stopped"] is None, result.stdout
    # the first start, after the kill, after the replay's timeout
    assert report["kernel_starts"] == 3, result.stdout
    assert {r["key"]: r["points"] for r in report["exercises"]} == FULL
    problems = " ".join(report["problems"])
    assert "left out of later replays" in problems, problems
    errors = {e["cell"]: e["error"] for e in report["cell_errors"]}
    assert errors[3].startswith("ReplayFailed"), errors  # the sleeper
    assert errors[4].startswith("KernelDied"), errors


def test_a_grade_ends_at_its_deadline_checks_included(tmp_path):
    """A cell that sleeps past the whole grade's limit (its own limit is
    longer): the grade stops at --timeout, says why, and checks nothing
    more."""
    path = _notebook(
        tmp_path / "ch01-sleeps.ipynb", "import time\ntime.sleep(600)"
    )
    limit = 12  # the set-up cell and the start of the sleeper fit in it
    result, report, wall = _grade_cli(path, limit, 120)
    assert result.returncode == 1, result.stdout + result.stderr
    # measured: 2 to 5 s past the limit (starting Python, stopping the
    # kernel) on a loaded two-core machine
    assert wall < limit + 20, (wall, result.stdout)
    assert report["seconds"] <= limit + grading.HARD_STOP_GRACE
    assert report["stopped"] == "deadline", result.stdout
    assert report["kernel_starts"] == 1
    assert report["points"] == 0
    problems = " ".join(report["problems"])
    assert f"ran past its {limit} s limit" in problems, problems
    assert "were not checked" in problems, problems
    # the deadline fell in the sleeper (cell 2), not in a cell before it
    not_run = [
        e["cell"]
        for e in report["cell_errors"]
        if e["error"].startswith("NotRun")
    ]
    assert not_run and min(not_run) == 3, report["cell_errors"]
    for row in report["exercises"]:
        assert row["message"].startswith(grading.NOT_CHECKED), row


def test_kernel_restarts_are_capped(tmp_path):
    """A notebook that stops its kernel in cell after cell: the kernel
    starts at most 1 + max_restarts times, the rest is not run."""
    kill = "import os\nos._exit(1)"
    path = _notebook(tmp_path / "ch01-kills.ipynb", *[kill] * 5)
    limits = Limits(cell_timeout=60, total_timeout=600)
    start = time.monotonic()
    report = grading.grade(path, limits=limits, max_restarts=2).to_json()
    assert time.monotonic() - start < 300
    assert report["kernel_starts"] == 3, report
    assert report["stopped"] == "restarts", report
    assert report["points"] == 0
    errors = [e["error"] for e in report["cell_errors"]]
    assert sum(e.startswith("KernelDied") for e in errors) == 3, errors
    assert any("restarted more than 2 times" in e for e in errors), errors
    assert "restarted more than 2 times" in " ".join(report["problems"])


def test_the_restart_cap_leaves_an_honest_notebook_alone(tmp_path):
    """Two cells that stop the kernel once each cost two restarts and
    nothing else: the answers keep full marks."""
    path = _notebook(
        tmp_path / "ch01-two-deaths.ipynb",
        KILLS_ONCE.replace("'killed'", "'killed-1'"),
        KILLS_ONCE.replace("'killed'", "'killed-2'"),
    )
    report = grading.grade(
        path, limits=Limits(cell_timeout=60, total_timeout=600)
    ).to_json()
    got = {r["key"]: r["points"] for r in report["exercises"]}
    assert got == FULL, report
    assert report["kernel_starts"] == 3 and report["stopped"] is None


def test_the_hard_stop_ends_a_wait_nothing_else_cuts(tmp_path, monkeypatch):
    """Past the deadline and its grace, SIGALRM stops the grader wherever
    it waits; the kernel is stopped with it. (The grace is made negative
    here so that the alarm, not the session's own cut, ends the cell.)"""
    mark = uuid.uuid4().hex
    monkeypatch.setenv("CNNBOOK_TEST_MARK", mark)
    # inherited by the kernel (only the variables it needs ever are)
    monkeypatch.setattr(
        session_module,
        "KERNEL_ENV",
        session_module.KERNEL_ENV | {"CNNBOOK_TEST_MARK"},
    )
    monkeypatch.setattr(grading, "HARD_STOP_GRACE", -50.0)
    path = _notebook(
        tmp_path / "ch01-sleeps.ipynb", "import time\ntime.sleep(600)"
    )
    before = signal.getsignal(signal.SIGALRM)
    start = time.monotonic()
    report = grading.grade(
        path, limits=Limits(cell_timeout=120, total_timeout=60)
    ).to_json()
    assert time.monotonic() - start < 40, report
    assert report["stopped"] == "deadline", report
    assert report["points"] == 0 and report["graded"], report
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    for _ in range(20):  # the kernel goes with the grade
        if not _marked_processes(mark):
            break
        time.sleep(0.5)
    assert _marked_processes(mark) == []


def test_the_kernel_sees_only_the_variables_it_needs(monkeypatch):
    """The grader's own variables (a results folder, anything an
    instructor set) never reach the learner's kernel; the profile is the
    grade's, whatever the grader's shell says."""
    from types import SimpleNamespace

    monkeypatch.setenv("CNNBOOK_RESULTS", "/srv/instructor/results")
    monkeypatch.setenv("CNNBOOK_CANONICAL", "1")
    monkeypatch.setenv("CNNBOOK_PROFILE", "full")
    monkeypatch.setenv("CNNBOOK_SEED", "7")
    monkeypatch.setenv("HOME", "/root")
    fake = SimpleNamespace(limits=SimpleNamespace(profile="smoke"))
    env = session_module.Session._env(fake)
    assert env["CNNBOOK_PROFILE"] == "smoke" and env["CNNBOOK_SEED"] == "7"
    assert not {"CNNBOOK_RESULTS", "CNNBOOK_CANONICAL", "HOME"} & set(env)
    assert set(env) - session_module.KERNEL_ENV == {
        "CNNBOOK_PROFILE",
        "TF_CPP_MIN_LOG_LEVEL",
        "MPLBACKEND",
        "PYTHONHASHSEED",
    }
