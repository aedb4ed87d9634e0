"""Notebook tools: generate exercises from solutions, execute notebooks.

``solutions/`` is the single source of every exercise. :func:`generate`
turns each solution notebook into its student version in ``exercises/``:
the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` become
``# YOUR CODE HERE`` and ``raise NotImplementedError``, outputs are cleared,
and check cells are locked. A learner's edited notebook is never
overwritten: :func:`generate` refuses unless asked to keep a backup.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pathlib
import re
import time

import nbformat

from cnnbook import execution

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN = re.compile(r"^(\s*)### BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
CHECK_TAG = "check"


class MarkerError(ValueError):
    """Unbalanced solution markers in a solution notebook."""


class LearnerEditsFound(RuntimeError):
    """An exercise notebook holds a learner's work; it was not replaced."""


def strip_solution(source, where="cell"):
    """Replace every marked solution block by a stub; keep indentation."""
    out, inside, indent = [], False, ""
    for number, line in enumerate(source.splitlines(), 1):
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise MarkerError(f"{where} line {number}: BEGIN inside BEGIN")
            inside, indent = True, begin.group(1)
            out += [
                f"{indent}# YOUR CODE HERE",
                f"{indent}raise NotImplementedError",
            ]
        elif END.match(line):
            if not inside:
                raise MarkerError(f"{where} line {number}: END without BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: BEGIN SOLUTION is never closed")
    return "\n".join(out)


def _fingerprint(nb):
    """Hash of the cell sources: tells a pristine generated notebook apart."""
    text = json.dumps([c.source for c in nb.cells])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def exercise_from_solution(solution):
    """The student notebook (a new NotebookNode) for a solution notebook."""
    nb = copy.deepcopy(solution)
    for index, cell in enumerate(nb.cells):
        cell.source = strip_solution(cell.source, f"cell {index}")
        if cell.cell_type != "code":
            continue
        cell.outputs = []
        cell.execution_count = None
        meta = cell.metadata
        meta.pop("execution", None)
        if CHECK_TAG in meta.get("tags", []):
            meta["editable"] = False
            meta["deletable"] = False
    meta = nb.metadata
    meta.pop("widgets", None)
    meta.setdefault("cnnbook", {})
    meta["cnnbook"]["generated_from"] = "solutions"
    meta["cnnbook"]["fingerprint"] = _fingerprint(nb)
    return nb


def render(nb):
    """The exact text written to disk for a notebook."""
    return nbformat.writes(nb) + "\n"


def is_pristine(path):
    """True when ``path`` is a generated exercise nobody has edited."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable: treat as the learner's
        return False
    recorded = nb.metadata.get("cnnbook", {}).get("fingerprint")
    return recorded is not None and recorded == _fingerprint(nb)


def generate(
    solutions=ROOT / "solutions",
    exercises=ROOT / "exercises",
    backup=False,
    check_only=False,
):
    """Write ``exercises/`` from ``solutions/``; return the changed paths.

    With ``check_only`` nothing is written: the return value lists the
    exercise notebooks that are missing or out of date. An exercise
    notebook with a learner's edits is left alone (LearnerEditsFound)
    unless ``backup`` is set, in which case it is first copied to
    ``NAME.ipynb.bak-<timestamp>``.
    """
    solutions, exercises = pathlib.Path(solutions), pathlib.Path(exercises)
    changed, refused = [], []
    for source in sorted(solutions.glob("*.ipynb")):
        target = exercises / source.name
        text = render(
            exercise_from_solution(nbformat.read(source, as_version=4))
        )
        if target.exists() and target.read_text() == text:
            continue
        changed.append(target)
        if check_only:
            continue
        if target.exists() and not is_pristine(target):
            if not backup:
                refused.append(target)
                continue
            stamp = time.strftime("%Y%m%d-%H%M%S")
            target.rename(target.with_name(f"{target.name}.bak-{stamp}"))
        exercises.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if refused:
        names = ", ".join(str(p) for p in refused)
        raise LearnerEditsFound(
            f"not replaced, because they hold edits: {names}. Copy your work "
            "elsewhere, or run `python -m cnnbook generate --backup` to keep "
            "it as NAME.ipynb.bak-<time> next to the new version."
        )
    return changed


def execute(path, timeout=3600, kernel="python3"):
    """Run a notebook in place from its own folder, storing its outputs.

    The file is replaced only when every cell ran without an error (cells
    tagged ``raises-exception`` excepted); otherwise it is left untouched
    and the error is raised. Output on stderr is not stored.
    """
    path = pathlib.Path(path)
    nb = nbformat.read(path, as_version=4)
    seconds = execution.run(nb, path.parent, timeout, kernel)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            # Library warnings on stderr differ between runs and machines;
            # the book removes them too (nb_output_stderr: remove).
            cell.outputs = [
                o
                for o in cell.outputs
                if not (o.output_type == "stream" and o.name == "stderr")
            ]
    path.write_text(render(nb))
    return seconds
