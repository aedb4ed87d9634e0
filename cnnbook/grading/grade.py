"""One grade: run a learner's notebook in the sandbox and score it.

Introduced in Chapter 1 (``python -m cnnbook grade NOTEBOOK``). The
notebook is read once and rebuilt from its cells' types and sources only
(:mod:`cnnbook.grading.notebook`), then executed cell by cell, with a
per-cell timeout and a limit for the whole notebook, in a kernel that
runs inside a bubblewrap sandbox (:mod:`cnnbook.grading.session`,
:mod:`cnnbook.grading.sandbox`): no network, the software read-only, a
private scratch folder as the only writable place, limits on memory,
processes, file sizes and CPU time, and none of the grader's files, the
repository or other submissions in view. The ``cnnbook`` the notebook
imports there lacks the checks and every implementation that answers one
of the chapter's exercises (:mod:`cnnbook.grading.package`). A cell that
fails, loops or kills the kernel costs only the exercises that depend on
it: the kernel is restarted and the cells that worked are replayed.

Then the checks run here, in the grader's own process, against
:class:`cnnbook.grading.remote.Remote`: each call of a learner's function
is sent into the kernel and only the result comes back. The check cells
of the notebook play no part in the grade. The submitted file is never
written (the sandbox cannot even see it; without a sandbox, a changed
file is put back and the report says so).

Without a working sandbox :func:`grade` raises
:class:`cnnbook.grading.sandbox.SandboxUnavailable` unless
``Limits(sandbox=False)`` (``--no-sandbox``) asks for a grade without
isolation, which protects nothing against a learner who cheats.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import tempfile
import threading
import time

from cnnbook.grading import chapters, package, sandbox
from cnnbook.grading.api import CheckFailure, KernelStopped
from cnnbook.grading.notebook import (
    NotebookProblem,
    chapter_of,
    defining_cells,
    read_notebook,
)
from cnnbook.grading.remote import Remote
from cnnbook.grading.report import CellError, Report
from cnnbook.grading.runner import Result, run_exercise
from cnnbook.grading.session import Limits, Session
from cnnbook.grading.timeout import Timeout


def grade(path, chapter=None, limits=None, seed=None):
    """Grade the notebook at ``path``; return its :class:`Report`.

    ``chapter`` (an id) overrides the one the notebook names; ``seed``
    draws the hidden checks (default: from the notebook's hash).
    """
    limits = limits or Limits()
    if limits.sandbox:
        sandbox.check_available()  # SandboxUnavailable: no silent fallback
    path = pathlib.Path(path)
    start = time.perf_counter()
    report = Report(str(path), sandboxed=bool(limits.sandbox), chapter=chapter)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        report.problems.append(f"cannot read {path}: {exc.strerror}")
        return report
    report.sha256 = hashlib.sha256(raw).hexdigest()
    results, nb = {}, None
    try:
        nb = read_notebook(raw, path)
        chapter = chapter or chapter_of(nb, path)
    except NotebookProblem as exc:
        chapter = chapter or chapters.from_file_name(path)
        report.problems.append(str(exc))
    try:
        resolved = chapters.resolve(chapter) if chapter else None
    except KeyError:
        report.problems.append(f"there are no checks for chapter {chapter!r}")
        report.chapter, resolved, nb = None, None, None
    if nb is not None and resolved is not None:
        if seed is None:
            seed = int(report.sha256[:8], 16)
        try:
            results = _execute_and_check(nb, resolved, limits, seed, report)
            report.graded = True
        except Exception as exc:  # noqa: BLE001 - report, never crash a batch
            report.problems.append(
                "the grader could not run this notebook: "
                f"{type(exc).__name__}: {exc}"[:500]
            )
        finally:
            if not path.exists() or path.read_bytes() != raw:
                path.write_bytes(raw)
                report.problems.append(
                    "the notebook's code changed its own file; the "
                    "submitted version was restored"
                )
    report.score(resolved, results)
    report.seconds = round(time.perf_counter() - start, 2)
    return report


def _execute_and_check(nb, chapter, limits, seed, report):
    """Run the notebook's code cells in the sandbox, then every check;
    return exercise key -> Result (cell errors go into ``report``)."""
    deadline = time.monotonic() + limits.total_timeout
    cell_errors = {}
    with tempfile.TemporaryDirectory(prefix="cnnbook-grade-") as tmp:
        # tmp/p: the grader's (the package the sandbox sees, Keras stubs);
        # tmp/s: the sandbox's scratch folder, its only writable place
        scratch = os.path.join(tmp, "s")
        os.mkdir(scratch)
        built = package.build_package(chapter.answers, os.path.join(tmp, "p"))
        overlays = []
        if limits.sandbox:
            overlays = package.keras_overlays(
                chapter.keras_applications, os.path.join(tmp, "k")
            )
        session = Session(scratch, built, limits, overlays)
        # the checks use Keras here: import it while the notebook runs,
        # once its set-up cell (which imports Keras there) is done
        warm = chapter.needs_keras
        try:
            session.start()
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                left = deadline - time.monotonic()
                if left <= 1:
                    cell_errors[index] = (
                        "NotRun: the whole notebook ran past "
                        f"its {limits.total_timeout:.0f} s limit"
                    )
                    continue
                error = session.run(
                    cell.source, min(limits.cell_timeout, left)
                )
                if warm:
                    threading.Thread(target=_import_keras, daemon=True).start()
                    warm = False
                if error is None:
                    session.replay.append(cell.source)
                    continue
                first = cell.source.strip().splitlines()[0][:40]
                cell_errors[index] = f"{error} [cell starting `{first}`]"
                if error.startswith("KernelDied"):
                    session.restart()
            results = {
                ex.key: _check_one(session, ex, chapter.names, seed, limits)
                for ex in chapter.exercises
            }
        finally:
            session.stop()
    skipped = [i for i, e in cell_errors.items() if e.startswith("NotRun")]
    if skipped:
        report.problems.append(
            f"the notebook ran past its {limits.total_timeout:.0f} s limit: "
            f"cells {min(skipped) + 1} to {max(skipped) + 1} were not run"
        )
    report.cell_errors = [
        CellError(i + 1, e) for i, e in sorted(cell_errors.items())
    ]
    for ex in chapter.exercises:
        r = results[ex.key]
        if r.passed:
            continue
        related = [
            f"cell {i + 1} raised {cell_errors[i]}"
            for name in ex.names
            for i in defining_cells(nb, name)
            if i in cell_errors
        ]
        if related:
            r.message += " (" + "; ".join(related) + ")"
    name_failed_dependencies(chapter.exercises, results, nb)
    return results


def _import_keras():
    try:
        import keras  # noqa: F401 - delayed: TensorFlow, in a side thread
    except Exception:  # noqa: BLE001 - the checks will report it
        pass


def name_failed_dependencies(exercises, results, nb):
    """Say so when a failed answer calls another failed exercise's answer
    (both defined in the notebook ``nb``)."""
    failed = [ex for ex in exercises if not results[ex.key].passed]
    for ex in failed:
        code = "\n".join(
            nb.cells[i].source
            for name in ex.names
            for i in defining_cells(nb, name)
        )
        used = [
            (name, other.key)
            for other in failed
            if other is not ex
            for name in other.names
            if name not in ex.names
            and re.search(rf"(?<![\w.])(?<!def ){re.escape(name)}\s*\(", code)
        ]
        if used:
            parts = ", ".join(
                f"{name} (your answer to {key})" for name, key in used
            )
            results[ex.key].message += (
                f"; it calls {parts}, which fails its own checks: "
                "fix that exercise first"
            )


def _check_one(session, ex, names, seed, limits):
    remote = None
    try:
        remote = Remote(session, names, limits.check_slack)
        return run_exercise(
            ex, remote, hidden=True, seed=seed, timeout=limits.check_timeout
        )
    except KernelStopped:
        why = "your code stopped the Python kernel while being checked"
    except Timeout:
        why = "your code took too long while being checked"
    except CheckFailure as exc:
        why = str(exc)
    except Exception as exc:  # noqa: BLE001 - never crash on a notebook
        why = (
            "the notebook's code broke the grader's calls into it "
            f"({type(exc).__name__})"
        )
    finally:
        if remote is not None:
            remote.close()
    return Result(
        ex.key, ex.title, 0, ex.points, f"could not be checked: {why}"
    )
