"""Command line: ``python -m cnnbook COMMAND``.

Commands: grade, grade-batch, generate, execute, data, bundle, run-labs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import sys

from cnnbook import bundle, profiles, records


def _limits(args):
    from cnnbook.grading.session import Limits  # delays matplotlib

    return Limits(
        cell_timeout=args.cell_timeout,
        total_timeout=args.timeout,
        profile=args.profile,
        check_timeout=min(60.0, args.cell_timeout),
        # --memory bounds the sandbox as a whole (a cgroup); each process's
        # address space gets at least ADDRESS_SPACE_MB, as TensorFlow
        # reserves far more than it uses
        sandbox_memory_mb=args.memory,
        memory_mb=max(args.memory, ADDRESS_SPACE_MB) if args.memory else 0,
        sandbox=not args.no_sandbox,
    )


# measured: the heaviest honest notebook (ch04, VGG-16) peaks at about
# 1,700 MiB for the whole sandbox (book/grading-reference.md)
SANDBOX_MEMORY_MB = 4096
ADDRESS_SPACE_MB = 6144


NO_SANDBOX = (
    "error: {why}.\nThe grader runs notebooks only in a sandbox; "
    "--no-sandbox grades without one, but then the notebook's code runs "
    "with your rights, can read the answers and can change your files: "
    "use it only for notebooks you trust."
)


def _grade(args):
    from cnnbook.grading import batch  # delays numpy
    from cnnbook.grading import report as reports  # delays numpy
    from cnnbook.grading.grade import grade  # delays matplotlib
    from cnnbook.grading.sandbox import SandboxUnavailable  # delays numpy

    def stop(_signum, _frame):  # stop the kernel too (finally blocks run)
        raise SystemExit(3)

    signal.signal(signal.SIGTERM, stop)
    # a file name need not be UTF-8: print it escaped, never crash on it
    sys.stdout.reconfigure(errors="backslashreplace")
    limits = _limits(args)
    memory = (
        batch.GRADER_MEMORY_MB
        if args.grader_memory is None
        else args.grader_memory
    )
    try:
        with batch.own_grader_group(memory):
            report = grade(
                args.notebook,
                chapter=args.chapter,
                limits=limits,
                seed=args.seed,
                name=args.name,
            ).to_json()
    except SandboxUnavailable as exc:
        print(NO_SANDBOX.format(why=exc), file=sys.stderr)
        return 2
    print(reports.format_report(report))
    if args.json:
        reports.write(report, args.json)
    return 0 if report["full_marks"] else 1


def _grade_batch(args):
    from cnnbook.grading import batch  # delays numpy
    from cnnbook.grading.folder import folder_chapter, scan  # delays numpy

    options = [
        "--cell-timeout",
        str(args.cell_timeout),
        "--timeout",
        str(args.timeout),
        "--profile",
        args.profile,
        "--memory",
        str(args.memory),
    ]
    if args.no_sandbox:
        options.append("--no-sandbox")
    else:
        from cnnbook.grading.sandbox import (  # delays numpy
            SandboxUnavailable,
            check_available,
        )

        try:
            check_available()
        except SandboxUnavailable as exc:
            print(NO_SANDBOX.format(why=exc), file=sys.stderr)
            return 2
    folder = pathlib.Path(args.folder)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    # the chapter is the instructor's, never a submission's
    try:
        configured = folder_chapter(folder)
    except batch.BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    chapter = args.chapter or configured
    if chapter is None:
        print(
            "error: grade-batch grades every submission as the chapter you "
            "name, never as the one a notebook or its file name claims: "
            "pass --chapter chNN, or put a file cnnbook-grading.toml "
            f'holding chapter = "chNN" in {folder}',
            file=sys.stderr,
        )
        return 2
    if configured and configured != chapter:
        print(
            f"note: --chapter {chapter} overrides the folder's {configured}",
            file=sys.stderr,
        )
    if not scan(folder):
        print(f"error: no .ipynb files under {folder}", file=sys.stderr)
        return 2
    # each grade stops itself by its --timeout (plus seconds to stop its
    # kernel); past this margin the grader itself is stopped
    try:
        summary = batch.grade_batch(
            folder,
            args.out,
            chapter,
            workers=args.workers,
            options=options,
            hard_timeout=args.timeout + batch.HARD_MARGIN,
            grader_memory_mb=(
                batch.GRADER_MEMORY_MB
                if args.grader_memory is None
                else args.grader_memory
            ),
        )
    except batch.BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if any(row["total"] is None for row in summary) else 0


def _seed(text):
    seed = int(text)
    if not 0 <= seed < 2**64:
        raise argparse.ArgumentTypeError("a seed is from 0 to 2**64 - 1")
    return seed


def _grading_options(parser):
    parser.add_argument(
        "--chapter",
        help="chapter to grade as (the notebook's own claim is not "
        "trusted; grade-batch needs it or a cnnbook-grading.toml)",
    )
    parser.add_argument(
        "--cell-timeout",
        type=float,
        default=120.0,
        help="limit for one cell, seconds (default 120)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="limit for the whole grade (cells, replays after a restart "
        "and checks), seconds (default 900)",
    )
    parser.add_argument(
        "--profile",
        default="smoke",
        help="profile the notebook runs under (default smoke)",
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=SANDBOX_MEMORY_MB,
        help="memory of the sandbox as a whole (every process of the "
        f"notebook, its in-memory files too) in MiB, 0 for none (default "
        f"{SANDBOX_MEMORY_MB})",
    )
    parser.add_argument(
        "--grader-memory",
        type=int,
        default=None,
        metavar="MB",
        help="MiB of memory for the grader's own process (each grader's, "
        "under grade-batch), apart from its sandbox (as root, where cgroups "
        "exist; 0: no limit; default 6144)",
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run the notebook's code without the sandbox (bubblewrap): "
        "only for notebooks you trust",
    )


def _generate(args):
    from cnnbook import notebooks  # delays nbclient

    try:
        changed = notebooks.generate(backup=args.backup, check_only=args.check)
    except (notebooks.LearnerEditsFound, notebooks.MarkerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "out of date" if args.check else "written"
    for path in changed:
        print(f"{verb}: {path}")
    if not changed:
        print("exercises/ is up to date")
    return 1 if (args.check and changed) else 0


def _execute(args):
    from cnnbook import notebooks, records  # delays nbclient

    # a canonical run: its records and figures replace the book's
    # (results/, book/figures/); a learner's run never sets this
    os.environ[records.CANONICAL_VAR] = "1"
    failed = 0
    for path in args.notebooks:
        try:
            seconds = notebooks.execute(path, timeout=args.timeout)
            print(f"{path}: executed in {seconds:.1f} s")
        except Exception as exc:  # noqa: BLE001 - report and go on
            failed += 1
            print(
                f"{path}: FAILED, file left unchanged\n{exc}", file=sys.stderr
            )
    return 1 if failed else 0


def _data(_args):
    from cnnbook import data  # delays numpy

    try:
        data.prepare()
    except data.DatasetUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _bench(args):
    from cnnbook import bench, machine, profiles, tables  # delays numpy

    try:
        bench.chosen(args.networks or None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.seconds <= 0:
        print(
            "error: --rounds must be 1 or more, --seconds positive",
            file=sys.stderr,
        )
        return 2
    found = bench.run(
        args.networks or None, rounds=args.rounds, seconds=args.seconds
    )
    print(
        f"device: {profiles.device_description()} | cores: "
        f"{machine.cpu_count()} | {machine.tune_allocator()} | "
        f"{args.rounds} rounds of {args.seconds:g} s a network, interleaved"
    )
    print(tables.render(*bench.table(found), "simple"))
    if args.out:
        record = bench.make_record(found, args.rounds, args.seconds)
        print(f"record: {bench.write(record, args.out)}")
    return 0


def _bundle(args):
    labs = [x for x in (args.labs or "").split(",") if x]
    try:
        path = bundle.build(
            args.out,
            python=args.python,
            platform=args.platform,
            labs=labs,
            fast=args.fast,
        )
    except bundle.BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = path.stat().st_size / 1e6
    print(f"{path} ({size:.1f} MB)")
    return 0


def _run_labs(args):
    if args.profile not in profiles.PROFILES:
        print(
            f"error: --profile {args.profile!r}: use one of "
            f"{', '.join(profiles.PROFILES)}",
            file=sys.stderr,
        )
        return 2
    labs = [x for x in (args.labs or "").split(",") if x]
    book = records.BOOK_RESULTS.resolve()
    if pathlib.Path(args.results).resolve() == book and not (
        records.canonical()
    ):
        print(
            f"error: --results {args.results}: that is the book's own "
            "records folder, which only a canonical run replaces; pick "
            "another folder, or set CNNBOOK_CANONICAL=1 to replace the "
            "book's runs",
            file=sys.stderr,
        )
        return 2
    try:
        _rows, failed = bundle.run_labs(
            args.notebooks,
            args.results,
            args.profile,
            labs=labs,
            timeout=args.timeout,
        )
    except bundle.BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser(prog="python -m cnnbook")
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser(
        "bench", help="bare training images/s of every network of the labs"
    )
    b.add_argument("networks", nargs="*", help="some of them (default all)")
    b.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds; each times every network once, in turn (default 3)",
    )
    b.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="timed seconds a network a round (default 5)",
    )
    b.add_argument(
        "--out",
        metavar="FOLDER",
        help="also store the run as FOLDER/<device>.<backend>.json "
        "(the book's record: --out results/bench); default: store nothing",
    )
    b.set_defaults(func=_bench)

    g = sub.add_parser("grade", help="grade an exercise notebook")
    g.add_argument("notebook")
    g.add_argument("--json", metavar="FILE", help="also write the report here")
    g.add_argument(
        "--name",
        help="what the report calls the notebook (default: its path; "
        "grade-batch grades its own copy under the submission's name)",
    )
    g.add_argument(
        "--seed",
        type=_seed,
        help="seed of the hidden checks, to reproduce a grade (its report's "
        "seed); default: a new secret one for each grade",
    )
    _grading_options(g)
    g.set_defaults(func=_grade)

    b = sub.add_parser("grade-batch", help="grade a folder of submissions")
    b.add_argument(
        "folder",
        help="folder with the submitted notebooks (searched 32 levels deep)",
    )
    b.add_argument(
        "--out",
        required=True,
        metavar="OUTDIR",
        help="where NAME.json and summary.csv are written",
    )
    b.add_argument(
        "--workers",
        type=int,
        default=2,
        help="notebooks graded at once (default 2)",
    )
    _grading_options(b)
    b.set_defaults(func=_grade_batch)

    gen = sub.add_parser("generate", help="write exercises/ from solutions/")
    gen.add_argument(
        "--check",
        action="store_true",
        help="only report what is out of date (exit 1 if any)",
    )
    gen.add_argument(
        "--backup",
        action="store_true",
        help="replace edited exercises, keeping a .bak copy",
    )
    gen.set_defaults(func=_generate)

    ex = sub.add_parser(
        "execute",
        help="run notebooks in place as canonical runs (their records and "
        "figures replace the book's)",
    )
    ex.add_argument("notebooks", nargs="+")
    ex.add_argument(
        "--timeout",
        type=int,
        default=3600,
        help="seconds per cell (a full training cell can take 30 min)",
    )
    ex.set_defaults(func=_execute)

    d = sub.add_parser("data", help="fill the dataset cache")
    d.set_defaults(func=_data)

    bu = sub.add_parser(
        "bundle",
        help="write the offline archive for a GPU node (JAX backend)",
    )
    bu.add_argument("--out", default="dist", help="folder (default dist)")
    bu.add_argument(
        "--python",
        default="3.12",
        help="the node's Python version (default 3.12)",
    )
    bu.add_argument(
        "--platform",
        default="manylinux_2_28_x86_64",
        help="the node's wheel platform (default manylinux_2_28_x86_64)",
    )
    bu.add_argument(
        "--labs",
        help="comma-separated notebook stems (default: every lab)",
    )
    bu.add_argument(
        "--fast",
        action="store_true",
        help="compress quickly (a larger archive; for tests)",
    )
    bu.set_defaults(func=_bundle)

    rl = sub.add_parser(
        "run-labs",
        help="execute the lab notebooks into a results folder, summarise",
    )
    rl.add_argument(
        "--profile",
        default=os.environ.get("CNNBOOK_PROFILE") or "gpu",
        help="profile to run under (default $CNNBOOK_PROFILE, else gpu)",
    )
    rl.add_argument(
        "--results",
        default=str(records.LEARNER_RESULTS),
        help="folder for notebooks/, runs/ and the summary (default "
        "my-results beside the package; the book's own results/ only with "
        "CNNBOOK_CANONICAL=1)",
    )
    rl.add_argument(
        "--notebooks",
        default=str(
            pathlib.Path(__file__).resolve().parent.parent / "notebooks"
        ),
        help="folder of lab notebooks (default: the repository's)",
    )
    rl.add_argument(
        "--labs",
        help="comma-separated notebook stems (default: every lab)",
    )
    rl.add_argument(
        "--timeout",
        type=int,
        default=3600,
        help="seconds per cell (default 3600)",
    )
    rl.set_defaults(func=_run_labs)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
