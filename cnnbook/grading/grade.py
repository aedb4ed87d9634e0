"""One grade: run a learner's notebook in the sandbox and score it.

Introduced in Chapter 1 (``python -m cnnbook grade NOTEBOOK``). The
notebook is read once and rebuilt from its cells' types and sources only
(:mod:`cnnbook.grading.notebook`), then executed cell by cell, with a
per-cell timeout, in a kernel that
runs inside a bubblewrap sandbox (:mod:`cnnbook.grading.session`,
:mod:`cnnbook.grading.sandbox`): no network, the software read-only, a
private scratch folder as the only writable place, limits on memory,
processes, file sizes and CPU time, and none of the grader's files, the
repository or other submissions in view. The ``cnnbook`` the notebook
imports there lacks the checks and every implementation that answers one
of the chapter's exercises (:mod:`cnnbook.grading.package`). A cell that
fails, loops or kills the kernel costs only the exercises that depend on
it: the kernel is restarted and the cells that worked are replayed.

Every grade ends: one deadline (``Limits.total_timeout``, ``--timeout``)
covers the whole grade, the cells, their replays after a restart and the
checks, and the kernel is started at most ``1 + MAX_RESTARTS`` times
(:class:`BoundedSession`). Each wait for the kernel is cut to what is
left of the deadline; a ``SIGALRM`` :data:`HARD_STOP_GRACE` seconds past
it stops whatever the grader is still doing (when :func:`grade` runs in
the main thread). What was not run or checked by then earns nothing, and
the report's ``stopped`` says why.

The chapter comes from the caller (the instructor's ``--chapter``) when
it names one; otherwise the notebook's metadata and file name must agree
(:func:`cnnbook.grading.chapters.decide`).

Then the checks run here, in the grader's own process, against
:class:`cnnbook.grading.remote.Remote`: each call of a learner's function
is sent into the kernel and only the result comes back. The check cells
of the notebook play no part in the grade. The submitted file is never
written, only read: once at the start (what is graded) and once at the
end, without following a link, to say in the report when it changed
meanwhile (the sandbox cannot even see it; without a sandbox the
notebook's code can change it).

Without a working sandbox :func:`grade` raises
:class:`cnnbook.grading.sandbox.SandboxUnavailable` unless
``Limits(sandbox=False)`` (``--no-sandbox``) asks for a grade without
isolation, which protects nothing against a learner who cheats.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import secrets
import signal
import stat
import threading
import time

from cnnbook.grading import chapters, confinement, package, sandbox
from cnnbook.grading.api import CheckFailure, KernelStopped
from cnnbook.grading.names import printable
from cnnbook.grading.notebook import (
    MAX_NOTEBOOK_BYTES,
    NotebookProblem,
    defining_cells,
    names_used,
    read_bounded,
    read_notebook,
)
from cnnbook.grading.remote import Remote
from cnnbook.grading.report import CellError, Report
from cnnbook.grading.runner import Result, run_exercise
from cnnbook.grading.session import Limits, Session
from cnnbook.grading.timeout import Timeout

# Kernel restarts one grade may make (after a cell or a check stopped the
# kernel or ran past its limit); the kernel starts at most 1 + this often.
MAX_RESTARTS = 10
# Seconds past the deadline after which SIGALRM stops the grader itself,
# for a wait that no timeout of the kernel's cuts short.
HARD_STOP_GRACE = 10.0
# failing cells named in an exercise's message (the rest are counted)
MAX_RELATED = 3
NOT_CHECKED = "not checked: the grade stopped early: "
REPLAY_FAILED = (
    "ReplayFailed: the cell worked, then failed when run again after a "
    "restart, and was left out of later replays"
)


class GradeStopped(BaseException):  # checks catching Exception miss it
    """The grade reached its deadline or its number of kernel restarts."""


class BoundedSession(Session):
    """A :class:`Session` that ends at ``deadline`` (``time.monotonic``)
    and starts its kernel at most ``1 + max_restarts`` times.

    Every cell it runs, a replayed one or a check's call included, gets at
    most what is left of the deadline; a cell that fails when replayed is
    kept in ``dropped`` and never replayed again. Past the deadline, or
    asked for one restart too many, it raises :class:`GradeStopped` and
    keeps the reason in ``stopped`` (``"deadline"`` or ``"restarts"``)
    and the words for the report in ``why``.
    """

    def __init__(self, *args, deadline, max_restarts, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline, self.max_restarts = deadline, max_restarts
        self.stopped = self.why = None
        self.dropped = []  # sources that failed when replayed

    def stop_grade(self, reason):
        if self.stopped is None:
            self.stopped = reason
            self.why = (
                "the grade ran past its "
                f"{self.limits.total_timeout:.0f} s limit"
                if reason == "deadline"
                else f"the kernel had to be restarted more than "
                f"{self.max_restarts} times"
            )
        raise GradeStopped(self.why)

    def start(self):
        if self.stopped:
            raise GradeStopped(self.why)
        if self.starts > self.max_restarts:
            self.stop_grade("restarts")
        if self.deadline - time.monotonic() <= 1:
            self.stop_grade("deadline")
        # the replay is made here, not by Session.start: a cell that
        # worked once but fails, stops the kernel or runs past its limit
        # when replayed is left out of every later replay (else it could
        # make each replay restart the kernel and replay it again)
        pending, self.replay = self.replay, []
        super().start()
        for source in pending:
            error = self.run(source, self.limits.cell_timeout)
            if error is None:
                self.replay.append(source)  # the list of the latest start
                continue
            self.dropped.append(source)
            if error.startswith("KernelDied"):
                self.restart()  # replays what is kept so far

    def run(self, source, timeout):
        if self.stopped:
            raise GradeStopped(self.why)
        left = self.deadline - time.monotonic()
        if left <= 1:
            self.stop_grade("deadline")
        return super().run(source, min(timeout, left))


def grade(
    path, chapter=None, limits=None, seed=None, max_restarts=None, name=None
):
    """Grade the notebook at ``path``; return its :class:`Report`.

    ``chapter`` (an id, the instructor's) is the chapter to grade; without
    it the notebook's metadata and file name decide, and must agree.
    ``seed`` draws the hidden checks (default: a new secret of the
    grader's, :func:`secrets.randbits`; the report keeps it, and the same
    ``seed`` reproduces the grade);
    ``max_restarts`` bounds the kernel's restarts (default
    :data:`MAX_RESTARTS`); ``name`` is what the report calls the
    notebook (default: ``path``; ``grade-batch`` grades a copy of the
    bytes it scanned under the submission's name). The grade ends by
    ``limits.total_timeout`` seconds after it starts, plus the time to
    stop the kernel.
    """
    limits = limits or Limits()
    if max_restarts is None:
        max_restarts = MAX_RESTARTS
    if limits.sandbox:
        sandbox.check_available()  # SandboxUnavailable: no silent fallback
        # folders and groups of graders that were killed (their tmpfs
        # went with them: confinement.private_mounts)
        confinement.clean_leftovers()
    path = pathlib.Path(path)
    shown = printable(path) if name is None else name
    start = time.perf_counter()
    deadline = time.monotonic() + limits.total_timeout
    report = Report(shown, sandboxed=bool(limits.sandbox), chapter=chapter)
    try:
        with open(path, "rb") as fh:
            raw = read_bounded(fh)
    except OSError as exc:
        report.problems.append(f"cannot read {shown}: {exc.strerror}")
        return report
    if len(raw) <= MAX_NOTEBOOK_BYTES:  # else read_notebook refuses it
        report.sha256 = hashlib.sha256(raw).hexdigest()
    results, nb = {}, None
    try:
        nb = read_notebook(raw, shown)
    except NotebookProblem as exc:
        chapter = chapter or chapters.from_file_name(path)
        report.problems.append(str(exc))
    if nb is not None:
        metadata = nb.metadata.get("cnnbook", {}).get("chapter")
        chapter, note = chapters.decide(chapter, metadata, path)
        if note:
            report.problems.append(note)
        elif chapter is None:
            report.problems.append(
                f"cannot tell which chapter {shown} belongs to "
                "(its metadata lost the chapter and its name does not "
                f"start with one of {', '.join(chapters.known())}); pass "
                "--chapter"
            )
    try:
        resolved = chapters.resolve(chapter) if chapter else None
    except KeyError:
        report.problems.append(f"there are no checks for chapter {chapter!r}")
        report.chapter, resolved, nb = None, None, None
    if nb is not None and resolved is not None:
        if seed is None:
            # the grader's secret, new for each grade: never derived from
            # anything the notebook can see (its own bytes included)
            seed = secrets.randbits(64)
        report.seed = seed
        try:
            results = _execute_and_check(
                nb, resolved, limits, seed, report, deadline, max_restarts
            )
            report.graded = True
        except (Exception, GradeStopped) as exc:  # noqa: BLE001 - report, never crash a batch
            report.problems.append(
                "the grader could not run this notebook: "
                f"{type(exc).__name__}: {exc}"[:500]
            )
        finally:
            # never written, only looked at: a link swapped in for the
            # file would take a write anywhere the grader may write
            if _changed(path, report.sha256):
                report.problems.append(
                    "the submitted file changed (or was replaced) while "
                    "it was graded; this grade is of the bytes read at "
                    "its start, and the file was left as it now is"
                )
    report.score(resolved, results)
    report.seconds = round(time.perf_counter() - start, 2)
    return report


def _changed(path, sha256):
    """Whether ``path`` is no longer the regular file whose bytes hash to
    ``sha256``; read without following a link in its last part, never
    written."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # gone, a link, unreadable
        return True
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return True
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest() != sha256
    finally:
        os.close(fd)


def _execute_and_check(nb, chapter, limits, seed, report, deadline, restarts):
    """Run the notebook's code cells in the sandbox, then every check,
    until ``deadline`` (``time.monotonic``) and at most ``restarts``
    kernel restarts; return exercise key -> Result (cell errors, the
    kernel's starts and why the grade stopped go into ``report``)."""
    cell_errors = {}
    with confinement.grade_folder() as tmp:
        # tmp/p: the grader's (the package the sandbox sees, Keras stubs);
        # tmp/s: the sandbox's scratch folder, its only writable place
        scratch = os.path.join(tmp, "s")
        os.mkdir(scratch)
        built = package.build_package(chapter.answers, os.path.join(tmp, "p"))
        overlays = []
        if limits.sandbox:
            overlays = package.keras_overlays(
                chapter.keras_applications, os.path.join(tmp, "k")
            ) + package.absent_overlays(chapter.id, os.path.join(tmp, "a"))
        session = BoundedSession(
            scratch,
            built,
            limits,
            overlays,
            deadline=deadline,
            max_restarts=restarts,
        )
        code = [
            i
            for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and cell.source.strip()
        ]
        # the checks use Keras here: import it while the notebook runs,
        # once its set-up cell (which imports Keras there) is done
        warm = chapter.needs_keras
        try:
            with _hard_stop(deadline + HARD_STOP_GRACE, session):
                done = 0
                try:
                    session.start()
                    for index in code:
                        cell = nb.cells[index]
                        error = session.run(cell.source, limits.cell_timeout)
                        done += 1
                        if warm:
                            threading.Thread(
                                target=_import_keras, daemon=True
                            ).start()
                            warm = False
                        if error is None:
                            session.replay.append(cell.source)
                            continue
                        first = cell.source.strip().splitlines()[0][:40]
                        cell_errors[index] = (
                            f"{error} [cell starting `{first}`]"
                        )
                        if error.startswith("KernelDied"):
                            session.restart()
                except GradeStopped:
                    for index in code[done:]:
                        cell_errors[index] = (
                            f"NotRun: the grade stopped early ({session.why})"
                        )
                results = {}
                for ex in chapter.exercises:
                    try:
                        results[ex.key] = _check_one(
                            session, ex, chapter.names, seed, limits
                        )
                    except GradeStopped:  # the alarm, between two calls
                        results[ex.key] = Result(
                            ex.key,
                            ex.title,
                            0,
                            ex.points,
                            NOT_CHECKED + session.why,
                        )
        finally:
            session.stop()
    report.kernel_starts = session.starts
    report.limits = session.limits_report
    report.stopped = session.stopped
    dropped = sorted(
        {i for i in code if nb.cells[i].source in session.dropped}
    )
    for index in dropped:
        cell_errors.setdefault(index, REPLAY_FAILED)
    if dropped:
        report.problems.append(
            "cells "
            + ", ".join(str(i + 1) for i in dropped)
            + " ran, but failed, stopped the kernel or ran past their limit "
            "when run again after a restart: they were left out of later "
            "replays"
        )
    skipped = [i for i, e in cell_errors.items() if e.startswith("NotRun")]
    if skipped:
        report.problems.append(
            f"the grade stopped early: {session.why}; cells "
            f"{min(skipped) + 1} to {max(skipped) + 1} were not run"
        )
    unchecked = [
        k for k, r in results.items() if r.message.startswith(NOT_CHECKED)
    ]
    if session.stopped and unchecked:
        report.problems.append(
            f"the grade stopped early: {session.why}; exercises "
            f"{', '.join(unchecked)} were not checked and earn no points"
        )
    report.cell_errors = [
        CellError(i + 1, e) for i, e in sorted(cell_errors.items())
    ]
    # what explains a failure; an exercise never checked needs no more
    checked = [
        ex
        for ex in chapter.exercises
        if not results[ex.key].message.startswith(NOT_CHECKED)
    ]
    for ex in checked:
        r = results[ex.key]
        if r.passed:
            continue
        related = [
            f"cell {i + 1} raised {cell_errors[i]}"
            for name in ex.names
            for i in defining_cells(nb, name)
            if i in cell_errors
        ]
        if len(related) > MAX_RELATED:
            more = len(related) - MAX_RELATED
            related = [*related[:MAX_RELATED], f"{more} more"]
        if related:
            r.message += " (" + "; ".join(related) + ")"
    name_failed_dependencies(checked, results, nb)
    for r in results.values():
        r.cut()  # the notes count against the message's bound too
    return results


@contextlib.contextmanager
def _hard_stop(when, session):
    """Stop the grade with :class:`GradeStopped` at ``when``
    (``time.monotonic``) whatever it is waiting for; only in the main
    thread and when no one else's ``SIGALRM`` timer runs (elsewhere the
    session's own cuts must do)."""

    def fire(_signum, _frame):
        session.stopped = session.stopped or "deadline"
        session.why = session.why or (
            f"the grade ran past its {session.limits.total_timeout:.0f} s "
            "limit"
        )
        raise GradeStopped(session.why)

    if signal.getitimer(signal.ITIMER_REAL)[0] > 0:  # someone else's
        yield
        return
    try:
        previous = signal.signal(signal.SIGALRM, fire)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, max(0.01, when - time.monotonic()))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _import_keras():
    try:
        import keras  # noqa: F401 - delays keras (a side thread's)
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
            if name not in ex.names and name in names_used(code)
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
        if session.stopped:
            raise GradeStopped(session.why)
        remote = Remote(session, names, limits.check_slack)
        result = run_exercise(
            ex, remote, hidden=True, seed=seed, timeout=limits.check_timeout
        )
        if not session.stopped:
            return result
        why = session.why  # the checks' own calls hit the grade's end
    except GradeStopped:
        why = session.why
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
    if session.stopped and why == session.why:
        return Result(ex.key, ex.title, 0, ex.points, NOT_CHECKED + why)
    return Result(
        ex.key, ex.title, 0, ex.points, f"could not be checked: {why}"
    )
