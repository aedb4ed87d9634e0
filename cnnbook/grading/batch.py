"""Grading a folder of submissions, each in its own process.

Introduced in Chapter 1 (``python -m cnnbook grade-batch DIR --out
OUTDIR``). Every submission is graded by ``python -m cnnbook grade`` in a
process of its own, so one that takes its grader down (or hangs it)
costs only its own grade; a summary CSV lists them all.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from cnnbook.grading import report as reports


def submissions(folder):
    """(name, path) of every notebook under ``folder``; the name is the
    path below it, ``__`` for each ``/``."""
    folder = pathlib.Path(folder)
    found = sorted(
        p
        for p in folder.rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts and p.is_file()
    )
    names, out = set(), []
    for p in found:
        name = "__".join(p.relative_to(folder).with_suffix("").parts)
        while name in names:  # only possible with odd folder layouts
            name += "_"
        names.add(name)
        out.append((name, p))
    return out


def grade_in_subprocess(path, json_path, options, hard_timeout):
    """``python -m cnnbook grade`` in its own process; returns (report, why).

    A separate process per submission: a notebook that takes its grader
    down (or hangs it) costs only its own grade. After ``hard_timeout``
    the process gets SIGTERM (it then stops its kernel), then SIGKILL.
    """
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
    try:
        report = json.loads(pathlib.Path(json_path).read_text())
    except (OSError, ValueError):
        tail = (err or b"").decode(errors="replace").strip().splitlines()[-1:]
        return None, (
            "the grader stopped without a report (exit status "
            f"{proc.returncode}{': ' + tail[0] if tail else ''})"
        )
    return report, None


def grade_batch(
    folder, outdir, workers=2, options=(), hard_timeout=1800, progress=None
):
    """Grade every ``*.ipynb`` under ``folder``, ``workers`` at a time.

    Writes ``OUTDIR/<name>.json`` (one report per submission, the schema
    of :mod:`cnnbook.grading.report`) and ``OUTDIR/summary.csv`` with the
    columns ``name``, one per exercise key (points), ``total``,
    ``max_points``, ``status`` (``graded`` or ``not graded: why``).
    Prints one progress line per submission to ``progress`` (default
    stderr). Returns the list of summary rows; a submission that could
    not be graded has points None.
    """
    progress = progress or sys.stderr
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    subs = submissions(folder)
    total = len(subs)
    start = time.perf_counter()
    print(
        f"grading {total} notebooks from {folder} with {workers} workers",
        file=progress,
        flush=True,
    )
    rows = {}

    def one(name, path):
        report, why = grade_in_subprocess(
            path, outdir / f"{name}.json", list(options), hard_timeout
        )
        if report is not None and not report.get("graded", True):
            why = (
                "; ".join(report["problems"])
                or "the notebook could not be run"
            )
        if report is None:
            report = reports.died(path, why)
            reports.write(report, outdir / f"{name}.json")
        return name, report, why

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        futures = [pool.submit(one, name, path) for name, path in subs]
        for done, future in enumerate(as_completed(futures), 1):
            name, report, why = future.result()
            rows[name] = (report, why)
            bar = "#" * int(20 * done / total) if total else ""
            head = f"[{bar:<20}] {done}/{total}"
            if why:
                line = f"{head} {name}: NOT GRADED: {why}"
            else:
                line = (
                    f"{head} {name}: {report['points']}/"
                    f"{report['max_points']} points "
                    f"({report['seconds']:.1f} s)"
                )
            print(line, file=progress, flush=True)

    keys = []
    for name, _ in subs:
        for row in rows[name][0].get("exercises", []):
            if row["key"] not in keys:
                keys.append(row["key"])
    summary = []
    with open(outdir / "summary.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", *keys, "total", "max_points", "status"])
        for name, _ in subs:
            report, why = rows[name]
            points = {
                r["key"]: r["points"] for r in report.get("exercises", [])
            }
            row = {
                "name": name,
                "points": None if why else points,
                "total": None if why else report["points"],
                "max_points": report.get("max_points"),
                "status": f"not graded: {why}" if why else "graded",
            }
            summary.append(row)
            writer.writerow(
                [
                    name,
                    *[("" if why else points.get(k, "")) for k in keys],
                    "" if why else report["points"],
                    report.get("max_points", ""),
                    row["status"],
                ]
            )
    seconds = time.perf_counter() - start
    bad = sum(1 for r in summary if r["total"] is None)
    rate = 60 * total / seconds if seconds else 0.0
    print(
        f"done: {total - bad} graded, {bad} not graded, {seconds:.0f} s "
        f"({rate:.1f} notebooks per minute); summary in "
        f"{outdir / 'summary.csv'}",
        file=progress,
        flush=True,
    )
    return summary
