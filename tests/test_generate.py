"""The exercise generator: markers, locking, sync, and learners' work kept."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cnnbook import notebooks

SOLUTION = '''def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    y = 2 * x
    return y
    ### END SOLUTION
'''


def test_strip_solution_keeps_indentation():
    stub = notebooks.strip_solution(SOLUTION)
    assert "2 * x" not in stub
    assert "    # YOUR CODE HERE\n    raise NotImplementedError" in stub
    assert stub.startswith('def double(x):\n    """Twice x."""')


@pytest.mark.parametrize(
    "source,message",
    [
        ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
        ("x = 1\n### END SOLUTION\n", "END without BEGIN"),
        (
            "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION",
            "BEGIN inside",
        ),
    ],
)
def test_unbalanced_markers_are_errors(source, message):
    with pytest.raises(notebooks.MarkerError, match=message):
        notebooks.strip_solution(source)


def _solution_notebook():
    check = new_code_cell('check("9.1")', metadata={"tags": ["check"]})
    check.outputs = [nbformat.v4.new_output("stream", text="ok\n")]
    check.execution_count = 3
    return new_notebook(
        cells=[new_markdown_cell("# Title"), new_code_cell(SOLUTION), check]
    )


def test_exercise_is_blank_locked_and_clean():
    ex = notebooks.exercise_from_solution(_solution_notebook())
    code, check = ex.cells[1], ex.cells[2]
    assert "raise NotImplementedError" in code.source
    assert check.outputs == [] and check.execution_count is None
    assert check.metadata["editable"] is False
    assert check.metadata["deletable"] is False
    assert "BEGIN SOLUTION" not in notebooks.render(ex)


def test_learner_edits_are_never_overwritten(tmp_path):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nbformat.write(_solution_notebook(), sol / "ch09-demo.ipynb")
    assert notebooks.generate(sol, ex) == [ex / "ch09-demo.ipynb"]
    assert notebooks.generate(sol, ex) == []  # idempotent

    mine = nbformat.read(ex / "ch09-demo.ipynb", as_version=4)
    mine.cells[1].source = "def double(x):\n    return x + x\n"
    nbformat.write(mine, ex / "ch09-demo.ipynb")
    learner_bytes = (ex / "ch09-demo.ipynb").read_bytes()

    new = _solution_notebook()
    new.cells[0].source = "# A new title"
    nbformat.write(new, sol / "ch09-demo.ipynb")
    assert notebooks.generate(sol, ex, check_only=True) == [
        ex / "ch09-demo.ipynb"
    ]
    with pytest.raises(notebooks.LearnerEditsFound, match="--backup"):
        notebooks.generate(sol, ex)
    assert (ex / "ch09-demo.ipynb").read_bytes() == learner_bytes

    notebooks.generate(sol, ex, backup=True)
    backups = list(ex.glob("ch09-demo.ipynb.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == learner_bytes
    assert "A new title" in (ex / "ch09-demo.ipynb").read_text()


def test_pristine_exercise_is_refreshed(tmp_path):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nbformat.write(_solution_notebook(), sol / "ch09-demo.ipynb")
    notebooks.generate(sol, ex)
    new = _solution_notebook()
    new.cells[0].source = "# Changed upstream"
    nbformat.write(new, sol / "ch09-demo.ipynb")
    assert notebooks.generate(sol, ex) == [ex / "ch09-demo.ipynb"]
    assert "Changed upstream" in (ex / "ch09-demo.ipynb").read_text()


def test_repository_exercises_are_in_sync(root):
    stale = notebooks.generate(
        root / "solutions", root / "exercises", check_only=True
    )
    assert stale == [], (
        f"exercises/ is out of date for {stale}: run `make exercises`"
    )
    solutions = sorted(p.name for p in (root / "solutions").glob("*.ipynb"))
    exercises = sorted(p.name for p in (root / "exercises").glob("*.ipynb"))
    assert solutions == exercises


def test_solutions_have_markers_checks_and_chapter(root):
    for path in sorted((root / "solutions").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        chapter = nb.metadata.get("cnnbook", {}).get("chapter")
        assert chapter and path.name.startswith(chapter), path
        text = "".join(c.source for c in nb.cells)
        assert "### BEGIN SOLUTION" in text, path
        checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
        assert len(checks) >= 3, f"{path}: fewer than 3 check cells"
