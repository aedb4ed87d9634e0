"""The holes a red-team review found in the grader (issue #22), each
closed and kept closed: the submission's path is never written (a link
swapped in for it during a grade takes no write anywhere), and
``grade-batch`` grades the bytes it scanned."""

import hashlib
import json
import os

import pytest
from conftest import ROOT, run_cli

from cnnbook.grading import batch
from cnnbook.grading import grade as grading
from cnnbook.grading.names import printable
from cnnbook.grading.session import Limits

SOLUTION = ROOT / "solutions" / "ch01-layer-arithmetic.ipynb"
CANARY = b"root-only: the grader must never write here\n"


def _canary(tmp_path):
    canary = tmp_path / "victim.conf"
    canary.write_bytes(CANARY)
    canary.chmod(0o600)
    return canary, canary.stat()


def _swapper(monkeypatch, swaps):
    """Make the grade's run (not the sandbox: the run is replaced) swap
    each path of ``swaps`` for a link to its target, as a racing student
    would while the notebook runs; the grade then checks nothing."""

    def swap(*_args):
        for path, target in swaps.items():
            if not path.is_symlink():
                path.unlink()
                path.symlink_to(target)
        return {}

    monkeypatch.setattr(grading, "_execute_and_check", swap)


def test_a_link_swapped_in_during_a_grade_takes_no_write(
    tmp_path, monkeypatch
):
    canary, before = _canary(tmp_path)
    existing = tmp_path / "a.ipynb"
    dangling = tmp_path / "b.ipynb"
    created = tmp_path / "profile.sh"  # what a dangling link names
    for path in (existing, dangling):
        path.write_bytes(SOLUTION.read_bytes())
    reports = []
    for path, target in ((existing, canary), (dangling, created)):
        _swapper(monkeypatch, {path: target})
        reports.append(
            grading.grade(path, chapter="ch01", limits=Limits(sandbox=False))
        )
    assert canary.read_bytes() == CANARY
    after = canary.stat()
    assert (after.st_mtime_ns, after.st_size) == (
        before.st_mtime_ns,
        before.st_size,
    )
    assert not os.path.lexists(created)
    assert existing.is_symlink() and dangling.is_symlink()  # left as found
    for report in reports:  # graded: the bytes read at the start
        sha = hashlib.sha256(SOLUTION.read_bytes()).hexdigest()
        assert report.sha256 == sha
        assert any("changed (or was replaced)" in p for p in report.problems)


def test_grade_batch_grades_the_bytes_it_scanned(tmp_path, monkeypatch):
    """The submissions are swapped for links while they are graded: the
    batch grades its own copies of the bytes it scanned, never opens the
    submission's path again, and writes nothing through the links."""
    canary, _ = _canary(tmp_path)
    subs = tmp_path / "subs"
    subs.mkdir()
    alice, bob = subs / "alice.ipynb", subs / "bob.ipynb"
    for path in (alice, bob):
        path.write_bytes(SOLUTION.read_bytes())
    created = tmp_path / "created.sh"
    _swapper(monkeypatch, {alice: canary, bob: created})
    graded = []

    def in_process(path, json_path, options, _hard_timeout):
        # the real grade, in this process, so that the swap can be made
        # in the middle of it
        names = [o[7:] for o in options if o.startswith("--name=")]
        names = {"name": names[-1]} if names else {}
        graded.append(path)
        report = grading.grade(
            path, chapter="ch01", limits=Limits(sandbox=False), **names
        ).to_json()
        json_path.write_text(json.dumps(report))
        return report, None

    monkeypatch.setattr(batch, "grade_in_subprocess", in_process)
    rows = batch.grade_batch(subs, tmp_path / "out", "ch01", workers=1)
    assert canary.read_bytes() == CANARY
    assert not os.path.lexists(created)
    assert len(graded) == 2
    for path in graded:  # the grader's copies, gone with the batch
        assert subs not in path.parents and not os.path.lexists(path)
    assert [r["status"] for r in rows] == ["graded", "graded"]
    for path in (alice, bob):
        report = json.loads(
            (tmp_path / "out" / f"{path.stem}.json").read_text()
        )
        assert report["notebook"] == printable(path)
        assert (
            report["sha256"]
            == hashlib.sha256(SOLUTION.read_bytes()).hexdigest()
        )
        assert not any("changed" in p for p in report["problems"])


@pytest.mark.slow
def test_grade_batch_names_the_submission_not_its_copy(tmp_path):
    """Through the real ``python -m cnnbook grade`` processes: the report
    names the submission, not the grader's copy (a notebook that is not
    JSON: no kernel starts)."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "-carol.ipynb").write_text('{"cells": [')
    result = run_cli(
        "grade-batch", subs, "--out", tmp_path / "out", "--chapter", "ch01"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "-carol.json").read_text())
    assert report["notebook"] == printable(subs / "-carol.ipynb")
    assert not any("cnnbook-batch-" in p for p in report["problems"])
    assert report["sha256"] is not None
