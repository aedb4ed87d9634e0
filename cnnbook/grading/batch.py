"""Grading a folder of submissions, each in its own process.

Introduced in Chapter 1 (``python -m cnnbook grade-batch DIR --out
OUTDIR --chapter chNN``). Every submission is graded by ``python -m
cnnbook grade`` in a process of its own, so one that takes its grader
down (or hangs it) costs only its own grade; a summary CSV lists them
all.

The folder is not trusted. The chapter comes from the instructor
(``--chapter``, or the folder's ``cnnbook-grading.toml`` or
``cnnbook-grading.json``), never from a submission. :func:`scan` never
follows a link: a submission that is a symbolic link (or lies in a linked
folder) is reported and not graded, and so is anything that is not a
regular file. The bytes of each file are read (and hashed) once, before
grading, and copied into a folder of the grader's own: the grade is of
that copy, so the submission's path is never opened again (a link swapped
in for it during the batch is neither followed nor written through). A
grade whose report names other bytes does not count, and submissions
with the same bytes are reported. Every name is written as printable text
(:func:`cnnbook.grading.names.printable`), through the ``csv`` module.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from cnnbook.grading import chapters
from cnnbook.grading import report as reports
from cnnbook.grading.cgroups import detect, own_groups
from cnnbook.grading.folder import (
    BatchError,
    same_bytes,
    scan,
)
from cnnbook.grading.limits import SandboxGroup
from cnnbook.grading.names import one_line, printable

# seconds a grade's process may take past its --timeout before grade-batch
# stops it: the grade stops itself at its deadline (plus a few seconds to
# stop its kernel); this is for a grader that hangs itself
HARD_MARGIN = 300
# the grader's own process (not its sandbox), where cgroups allow: it
# imports TensorFlow and Keras and decodes at most one answer's budget at
# a time (cnnbook.grading.wire.MAX_ANSWER_BYTES, a compiled model's
# optimizer twice more); measured peaks are in the grading reference
GRADER_MEMORY_MB = 6144


def grade_in_subprocess(
    path, json_path, options, hard_timeout, grader_memory_mb=GRADER_MEMORY_MB
):
    """``python -m cnnbook grade`` in its own process; returns (report, why).

    A separate process per submission: a notebook that takes its grader
    down (or hangs it) costs only its own grade. After ``hard_timeout``
    the process gets SIGTERM (it then stops its kernel), then SIGKILL.
    Where the machine has cgroups (as root), the grader's own process is
    in a group of at most ``grader_memory_mb`` MiB (0: none), apart from
    its sandbox's: what it decodes from a submission cannot take the
    machine's memory. However it ended, what it left behind is removed
    (:func:`cnnbook.grading.confinement.clean_leftovers`); a grader that
    was killed (out of memory, say) gets no points, and the batch goes on.
    """
    with _grader_group(grader_memory_mb) as group:
        return _grade_in(group, path, json_path, options, hard_timeout)


@contextlib.contextmanager
def _grader_group(memory_mb):
    """A memory group for one grader process, or None where there is no
    limit to set (no cgroups here, not root, or ``memory_mb`` 0)."""
    support = detect(("cgroup-v1", "cgroup-v2"))
    if not memory_mb or os.geteuid() != 0 or support.mechanism == "none":
        yield None
        return
    with SandboxGroup(memory_mb=memory_mb, support=support, tag="g") as group:
        yield group


@contextlib.contextmanager
def own_grader_group(memory_mb=GRADER_MEMORY_MB):
    """``grade`` on its own: this process moves into a memory group of at
    most ``memory_mb`` MiB for the block, as grade-batch puts each of its
    graders (as root where cgroups exist; its sandbox goes beside it).
    What the grader decodes from a notebook then cannot take the
    machine's memory: past the limit the grader is killed. Nothing is
    done when this process is already in a grader's group (grade-batch's,
    or a test's) or there is no limit to set."""
    inside = any(
        os.path.basename(g.rstrip("/")).startswith("cnnbook-grade-")
        for g in own_groups().values()
    )
    if inside:
        yield None
        return
    with _grader_group(memory_mb) as group:
        if group is None:
            yield None
            return
        for procs in group.procs_files():
            with open(procs, "w") as fh:
                fh.write(str(os.getpid()))
        try:
            yield group
        finally:  # back where it was, so that the group can go
            for procs in group.procs_files():
                parent = os.path.dirname(os.path.dirname(procs))
                with open(os.path.join(parent, "cgroup.procs"), "w") as fh:
                    fh.write(str(os.getpid()))


def _grade_in(group, path, json_path, options, hard_timeout):
    cmd = [
        sys.executable,
        "-m",
        "cnnbook",
        "grade",
        str(path),
        "--json",
        str(json_path),
        *options,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    if group is not None:  # before it has imported anything
        for procs in group.procs_files():
            with open(procs, "w") as fh:
                fh.write(str(proc.pid))
    try:
        _, err = proc.communicate(timeout=hard_timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        return (
            None,
            f"the grader ran past {hard_timeout:.0f} s and was stopped",
        )
    finally:
        if proc.returncode is not None:
            _clean_after(proc.pid)
    if proc.returncode < 0:
        return None, (
            f"the grader was killed (signal {-proc.returncode}): it ran out "
            "of memory or was stopped; no points"
        )
    try:
        report = json.loads(pathlib.Path(json_path).read_text())
    except (OSError, ValueError):
        tail = (err or b"").decode(errors="replace").strip().splitlines()[-1:]
        return None, (
            "the grader stopped without a report (exit status "
            f"{proc.returncode}{': ' + one_line(tail[0]) if tail else ''})"
        )
    return report, None


def _clean_after(pid):
    from cnnbook.grading import confinement  # delays cgroups detection

    try:
        confinement.clean_leftovers(pid)
    except OSError:  # nothing left to clean, or no right to
        pass


def _cell(text):
    """A CSV cell a spreadsheet shows as text, never as a formula."""
    text = "" if text is None else str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def grade_batch(
    folder,
    outdir,
    chapter,
    workers=2,
    options=(),
    hard_timeout=1800,
    progress=None,
    grader_memory_mb=GRADER_MEMORY_MB,
):
    """Grade every ``*.ipynb`` under ``folder`` as ``chapter``, ``workers``
    at a time.

    Writes ``OUTDIR/<name>.json`` (one report per entry of :func:`scan`,
    the schema of :mod:`cnnbook.grading.report`) and
    ``OUTDIR/summary.csv`` with the columns ``name``, one per exercise
    key (points), ``total``, ``max_points``, ``same_bytes_as`` (the other
    submissions with the same bytes) and ``status`` (``graded`` or ``not
    graded: why``). Prints one progress line per submission and
    warnings for links and identical files to ``progress`` (default
    stderr). Returns the list of summary rows; a submission that was not
    graded has points None.
    """
    if chapter not in chapters.known():
        raise BatchError(
            f"no checks for chapter {chapter!r}; there are checks for "
            f"{', '.join(chapters.known())}"
        )
    progress = progress or sys.stderr
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    # the grader's own copies of the bytes scanned (a private folder)
    with tempfile.TemporaryDirectory(prefix="cnnbook-batch-") as keep:
        return _grade_entries(
            scan(folder, keep),
            folder,
            outdir,
            chapter,
            workers=workers,
            options=options,
            hard_timeout=hard_timeout,
            progress=progress,
            grader_memory_mb=grader_memory_mb,
        )


def _grade_entries(entries, folder, outdir, chapter, **how):
    workers, options, progress = (
        how["workers"],
        how["options"],
        how["progress"],
    )
    hard_timeout, grader_memory_mb = (
        how["hard_timeout"],
        how["grader_memory_mb"],
    )
    graded = [e for e in entries if e.problem is None]
    same = same_bytes(graded)
    total = len(graded)
    start = time.perf_counter()

    def say(line):
        print(one_line(line), file=progress, flush=True)

    say(
        f"grading {total} notebooks from {printable(folder)} as chapter "
        f"{chapter} with {workers} workers"
    )
    rows = {}
    for e in entries:
        if e.problem is not None:
            say(f"{e.name}: NOT GRADED: {e.problem}")
            report = reports.died(printable(e.path), e.problem)
            reports.write(report, _json(outdir, e))
            rows[e.name] = ({}, e.problem)

    def one(e):
        # the copy of the bytes scanned is graded, under the entry's name
        report, why = grade_in_subprocess(
            e.copy,
            _json(outdir, e),
            [*options, f"--name={printable(e.path)}", "--chapter", chapter],
            hard_timeout,
            grader_memory_mb,
        )
        if report is not None and report.get("sha256") != e.sha256:
            report, why = (
                None,
                (
                    "the file changed while it was graded (its report names "
                    "other bytes than those scanned): this grade does not "
                    "count"
                ),
            )
        elif report is not None and not report.get("graded", True):
            why = (
                "; ".join(report["problems"])
                or "the notebook could not be run"
            )
        if report is None:
            report = reports.died(printable(e.path), why)
            reports.write(report, _json(outdir, e))
        return e, report, why

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        futures = [pool.submit(one, e) for e in graded]
        for done, future in enumerate(as_completed(futures), 1):
            e, report, why = future.result()
            rows[e.name] = (report, why)
            bar = "#" * int(20 * done / total) if total else ""
            head = f"[{bar:<20}] {done}/{total}"
            if why:
                say(f"{head} {e.name}: NOT GRADED: {why}")
            else:
                say(
                    f"{head} {e.name}: {report['points']}/"
                    f"{report['max_points']} points "
                    f"({report['seconds']:.1f} s)"
                )

    keys = [ex.key for ex in chapters.exercises(chapter)]
    summary = []
    for e in entries:
        report, why = rows[e.name]
        points = {r["key"]: r["points"] for r in report.get("exercises", [])}
        summary.append(
            {
                "name": e.name,
                "points": None if why else points,
                "total": None if why else report["points"],
                "max_points": report.get("max_points"),
                "status": f"not graded: {one_line(why)}" if why else "graded",
                "same_bytes_as": same.get(e.name, []),
            }
        )
    write_summary(outdir / "summary.csv", keys, summary)
    seconds = time.perf_counter() - start
    bad = sum(1 for r in summary if r["total"] is None)
    rate = 60 * total / seconds if seconds else 0.0
    say(
        f"done: {len(summary) - bad} graded, {bad} not graded, {seconds:.0f}"
        f" s ({rate:.1f} notebooks per minute); summary in "
        f"{printable(outdir / 'summary.csv')}"
    )
    links = [
        e.name for e in entries if e.problem and "symbolic link" in e.problem
    ]
    if links:
        say(
            f"warning: {len(links)} "
            f"{'entry is a link' if len(links) == 1 else 'entries are links'}"
            f" and {'was' if len(links) == 1 else 'were'} not graded: "
            f"{', '.join(links)}"
        )
    groups = {tuple(sorted([n, *others])) for n, others in same.items()}
    for group in sorted(groups):
        say(
            f"warning: {len(group)} submissions have the same bytes: "
            f"{', '.join(group)}"
        )
    return summary


def _json(outdir, entry):
    return outdir / f"{entry.name}.json"


def write_summary(path, keys, summary):
    """Write the summary rows (of :func:`grade_batch`) as CSV to ``path``,
    with the exercise ``keys`` as columns; every cell is printable text
    and none starts like a spreadsheet formula."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["name", *keys, "total", "max_points", "same_bytes_as", "status"]
        )
        for row in summary:
            points = row["points"] or {}
            writer.writerow(
                [
                    _cell(row["name"]),
                    *[points.get(k, "") for k in keys],
                    "" if row["total"] is None else row["total"],
                    "" if row["max_points"] is None else row["max_points"],
                    _cell("; ".join(row["same_bytes_as"])),
                    _cell(row["status"]),
                ]
            )
