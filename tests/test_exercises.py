"""Every exercise fails on the blank notebook and passes on the solution.

Both go through the grade CLI, as a learner's notebook would.
"""

import json

import nbformat
import pytest
from conftest import ROOT, run_cli

from cnnbook import notebooks
from cnnbook.grading import chapters
from cnnbook.grading.session import Limits

SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def _grade(path, tmp_path):
    out = tmp_path / (path.stem + ".json")
    result = run_cli("grade", path, "--json", out)
    return result, json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_blank_scores_zero_and_solution_full(solution, tmp_path):
    chapter = nbformat.read(solution, as_version=4).metadata["cnnbook"][
        "chapter"
    ]
    expected = {e.key: e.points for e in chapters.exercises(chapter)}
    assert len(expected) >= 3

    blank = tmp_path / solution.name
    blank.write_text(
        notebooks.render(
            notebooks.exercise_from_solution(
                nbformat.read(solution, as_version=4)
            )
        )
    )
    before = blank.read_bytes()
    result, report = _grade(blank, tmp_path)
    assert result.returncode == 1, result.stdout
    assert report["points"] == 0, result.stdout
    assert {r["key"] for r in report["exercises"]} == set(expected)
    for row in report["exercises"]:
        assert not row["passed"] and row["message"], row
    assert blank.read_bytes() == before

    solved = tmp_path / "solved" / solution.name
    solved.parent.mkdir()
    solved.write_bytes(solution.read_bytes())
    result, report = _grade(solved, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["full_marks"] and report["points"] == sum(expected.values())
    assert report["max_points"] == sum(expected.values())
    assert report["schema_version"] == 1
    # the grading reference sizes the sandbox's memory default at a little
    # more than twice the heaviest solution's peak: hold it where measured
    limits = report["limits"] or {}
    if limits.get("peak_memory_mb") is not None:
        assert limits["memory_mb"] == Limits().sandbox_memory_mb
        assert limits["peak_memory_mb"] <= limits["memory_mb"] / 2, limits
