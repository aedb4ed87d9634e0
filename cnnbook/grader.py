"""The grader: run a learner's notebook in a fresh kernel and score it.

Introduced in Chapter 1 (``python -m cnnbook grade NOTEBOOK``). The
notebook is read once and executed from memory in a temporary working
folder, cell by cell, with a per-cell timeout and a limit for the whole
notebook. A cell that fails, loops or kills the kernel costs only the
exercises that depend on it: the kernel is restarted and the cells that
worked are replayed. Then each exercise's visible and hidden checks run
in the kernel, from a freshly imported copy of the checks (so patching
the checking module from the notebook changes nothing). The submitted
file is never written; if the notebook's own code changes it, the
original bytes are put back and the report says so.

Report schema (``--json``), version 1::

    {"schema_version": 1, "notebook": str, "sha256": str, "chapter": str,
     "points": int, "max_points": int, "full_marks": bool, "seconds": float,
     "exercises": [{"key": str, "title": str, "points": int,
                    "max_points": int, "passed": bool, "message": str,
                    "visible_passed": bool, "hidden_passed": bool|null}],
     "cell_errors": [{"cell": int, "error": str}],
     "problems": [str]}
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import subprocess
import tempfile
import time
import uuid

import nbformat

SCHEMA_VERSION = 1
OUTPUT_LIMIT = 100_000  # characters of output kept per cell (errors always)


@dataclasses.dataclass
class Limits:
    cell_timeout: float = 120.0
    total_timeout: float = 900.0
    check_timeout: float = 60.0
    profile: str = "smoke"


class NotebookProblem(Exception):
    """The file cannot be graded at all (not JSON, not a notebook...)."""


def _read_notebook(raw, path):
    if not raw.strip():
        raise NotebookProblem(f"{path} is empty: it is not a notebook")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotebookProblem(
            f"{path} is not valid JSON ({exc}); open it in JupyterLab and "
            "save it again, or start over from a fresh copy") from None
    try:
        nb = nbformat.from_dict(data)
        nb = nbformat.convert(nb, 4) if nb.get("nbformat", 4) != 4 else nb
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
        for cell in nb.cells:
            if isinstance(cell.get("source"), list):
                cell.source = "".join(cell.source)
            if not isinstance(cell.get("source", ""), str):
                raise ValueError("a cell's source is not text")
    except Exception as exc:  # noqa: BLE001 - any malformed structure
        raise NotebookProblem(f"{path} is not a Jupyter notebook: {exc}") from None
    return nb


def detect_chapter(nb, path, known):
    """Chapter id from the notebook's metadata, else from its file name."""
    meta = nb.get("metadata", {}).get("cnnbook", {})
    known = list(known)
    chapter = meta.get("chapter") if isinstance(meta, dict) else None
    if chapter in known:
        return chapter
    stem = pathlib.Path(path).name.split("-")[0].split(".")[0].lower()
    if stem in known:
        return stem
    raise NotebookProblem(
        f"cannot tell which chapter {path} belongs to (its metadata lost "
        f"the chapter and its name does not start with one of "
        f"{', '.join(known)}); pass --chapter")


def _capped_client_class():
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """Drops stream output past OUTPUT_LIMIT so huge prints cost nothing."""

        def output(self, outs, msg, display_id, cell_index):
            if msg["header"]["msg_type"] == "stream":
                size = sum(len(o.get("text", "")) for o in outs)
                if size > OUTPUT_LIMIT:
                    return None
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


class _Session:
    """A kernel that can be restarted and brought back to where it was."""

    def __init__(self, nb, workdir, limits):
        self.nb, self.workdir, self.limits = nb, workdir, limits
        self.client = None
        self.replay = []  # indices of cells that ran to completion

    def start(self):
        env = dict(os.environ, CNNBOOK_PROFILE=self.limits.profile,
                   TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg",
                   PYTHONHASHSEED="0")
        self.client = _capped_client_class()(
            self.nb, timeout=self.limits.cell_timeout, kernel_name="python3",
            allow_errors=True, interrupt_on_timeout=False,
            record_timing=False, iopub_timeout=10,
            resources={"metadata": {"path": self.workdir}})
        self.client.km = self.client.create_kernel_manager()
        self.client.start_new_kernel(env=env, stderr=subprocess.DEVNULL)
        self.client.start_new_kernel_client()
        for index in self.replay:
            self.run(self.nb.cells[index], index, timeout=self.limits.cell_timeout)

    def stop(self):
        if self.client is not None and self.client.km is not None:
            try:
                self.client._cleanup_kernel()  # noqa: SLF001 - no public API
            except Exception:  # noqa: BLE001 - a dead kernel may refuse
                pass
        self.client = None

    def restart(self):
        self.stop()
        self.start()

    def run(self, cell, index, timeout):
        """Execute one cell; return an error string or None.

        After a timeout the kernel is interrupted; if it does not answer a
        probe within 15 s it is restarted (and the good cells replayed).
        """
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        cell.outputs = []
        self.client.timeout = max(1, int(timeout))
        try:
            self.client.execute_cell(cell, index)
        except DeadKernelError:
            return "KernelDied: the cell stopped the Python kernel"
        except CellTimeoutError:
            # An interrupted kernel aborts the requests queued behind it, so
            # the reliable way on is a fresh kernel with the good cells replayed.
            self.restart()
            return (f"CellTimeout: the cell ran past its {int(timeout)} s "
                    "limit and was stopped (an endless loop?)")
        finally:
            if self.client is not None:
                self.client.timeout = self.limits.cell_timeout
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        cell.outputs = []
        if errors:
            return f"{errors[0].ename}: {errors[0].evalue}"[:500]
        return None


_GRADE_SNIPPET = """
def {fn}():
    import builtins, sys
    for _name in [m for m in list(sys.modules)
                  if m == "cnnbook" or m.startswith("cnnbook.")]:
        del sys.modules[_name]
    import dataclasses, json
    from cnnbook import grading
    _ex = [e for e in grading.exercises({chapter!r}) if e.key == {key!r}][0]
    _res = grading.run_exercise(_ex, dict(globals()), hidden=True,
                                seed={seed}, timeout={timeout})
    with builtins.open({out!r}, "w") as _fh:
        json.dump(dataclasses.asdict(_res), _fh)
{fn}()
del {fn}
"""


def _defining_cells(nb, name):
    pattern = re.compile(rf"^\s*(def|class)\s+{re.escape(name)}\b|"
                         rf"^\s*{re.escape(name)}\s*=", re.M)
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and pattern.search(c.source)]


def grade(path, chapter=None, limits=None, seed=None):
    """Grade the notebook at ``path``; return the report dict (schema above)."""
    from cnnbook import grading

    limits = limits or Limits()
    path = pathlib.Path(path)
    start = time.perf_counter()
    report = {"schema_version": SCHEMA_VERSION, "notebook": str(path),
              "sha256": None, "chapter": chapter, "points": 0,
              "max_points": 0, "full_marks": False, "seconds": 0.0,
              "exercises": [], "cell_errors": [], "problems": []}
    try:
        raw = path.read_bytes()
    except OSError as exc:
        report["problems"].append(f"cannot read {path}: {exc.strerror}")
        return report
    report["sha256"] = hashlib.sha256(raw).hexdigest()
    known = grading.chapters()
    try:
        nb = _read_notebook(raw, path)
        chapter = chapter or detect_chapter(nb, path, known)
    except NotebookProblem as exc:
        chapter = chapter or _chapter_from_name(path, known)
        report["problems"].append(str(exc))
        return _finish(report, chapter, {}, start)
    report["chapter"] = chapter
    if seed is None:
        seed = int(report["sha256"][:8], 16)
    try:
        results = _execute_and_check(nb, chapter, limits, seed, report)
    finally:
        if path.exists() and path.read_bytes() != raw:
            path.write_bytes(raw)
            report["problems"].append(
                "the notebook's code changed its own file; the submitted "
                "version was restored")
    return _finish(report, chapter, results, start)


def _chapter_from_name(path, known):
    stem = pathlib.Path(path).name.split("-")[0].lower()
    return stem if stem in known else None


def _finish(report, chapter, results, start):
    from cnnbook import grading

    report["chapter"] = chapter
    rows = []
    for ex in (grading.exercises(chapter) if chapter else []):
        r = results.get(ex.key) or grading.Result(
            ex.key, ex.title, 0, ex.points,
            "not graded: the notebook could not be run (see above)")
        row = dataclasses.asdict(r)
        row["passed"] = r.passed
        rows.append(row)
    report["exercises"] = rows
    report["points"] = sum(r["points"] for r in rows)
    report["max_points"] = sum(r["max_points"] for r in rows)
    report["full_marks"] = bool(rows) and report["points"] == report["max_points"]
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


def _execute_and_check(nb, chapter, limits, seed, report):
    from cnnbook import grading

    exercises = grading.exercises(chapter)
    deadline = time.monotonic() + limits.total_timeout
    cell_errors = {}
    with tempfile.TemporaryDirectory(prefix="cnnbook-grade-") as tmp:
        workdir = os.path.join(tmp, "work")
        os.mkdir(workdir)
        session = _Session(nb, workdir, limits)
        try:
            session.start()
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                left = deadline - time.monotonic()
                if left <= 1:
                    cell_errors[index] = ("NotRun: the whole notebook ran past "
                                          f"its {limits.total_timeout:.0f} s limit")
                    continue
                error = session.run(cell, index, min(limits.cell_timeout, left))
                if error is None:
                    session.replay.append(index)
                    continue
                first = cell.source.strip().splitlines()[0][:40]
                cell_errors[index] = f"{error} [cell starting `{first}`]"
                if error.startswith("KernelDied"):
                    session.restart()
            results = {}
            for ex in exercises:
                results[ex.key] = _check_one(session, ex, chapter, seed,
                                             limits, tmp)
        finally:
            session.stop()
    report["cell_errors"] = [{"cell": i + 1, "error": e}
                             for i, e in sorted(cell_errors.items())]
    for ex in exercises:
        r = results[ex.key]
        if r.passed:
            continue
        related = [f"cell {i + 1} raised {cell_errors[i]}"
                   for name in ex.names for i in _defining_cells(nb, name)
                   if i in cell_errors]
        if related:
            r.message += " (" + "; ".join(related) + ")"
    return results


def _check_one(session, ex, chapter, seed, limits, tmp):
    from cnnbook import grading

    fn = "_cnnbook_grade_" + uuid.uuid4().hex[:12]
    out = os.path.join(tmp, fn + ".json")
    code = _GRADE_SNIPPET.format(fn=fn, chapter=chapter, key=ex.key, seed=seed,
                                 timeout=limits.check_timeout, out=out)
    cell = nbformat.v4.new_code_cell(code)
    error = session.run(cell, -1, timeout=limits.check_timeout * 2 + 30)
    if error and error.startswith("KernelDied"):
        session.restart()
    try:
        with open(out) as fh:
            data = json.load(fh)
        return grading.Result(**data)
    except (OSError, ValueError, TypeError):
        why = error or "the checks produced no result"
        if error and error.startswith("KernelDied"):
            why = "your code stopped the Python kernel while being checked"
        elif error and error.startswith("CellTimeout"):
            why = "your code took too long while being checked"
        return grading.Result(ex.key, ex.title, 0, ex.points,
                              f"could not be checked: {why}")


def format_report(report):
    """The per-exercise table the CLI prints."""
    lines = [f"Grading {report['notebook']} (chapter {report['chapter']})"]
    for problem in report["problems"]:
        lines.append(f"  ! {problem}")
    rows = report["exercises"]
    if rows:
        width = max(len(f"{r['key']} {r['title']}") for r in rows)
        for r in rows:
            mark = "\u2714" if r["passed"] else "\u2718"
            label = f"{r['key']} {r['title']}".ljust(width)
            lines.append(f"  {mark} {label}  {r['points']:>2}/{r['max_points']:<2}"
                         f"  {'' if r['passed'] else r['message']}".rstrip())
    for e in report["cell_errors"]:
        lines.append(f"  cell {e['cell']}: {e['error']}")
    lines.append(f"Total: {report['points']}/{report['max_points']} points "
                 f"({report['seconds']:.1f} s)")
    return "\n".join(lines)
