"""The grader: run a learner's notebook in a sandbox and score it.

Introduced in Chapter 1 (``python -m cnnbook grade NOTEBOOK``; a folder
of submissions: ``python -m cnnbook grade-batch DIR --out OUTDIR``). The
notebook is read once and rebuilt from its cells' types and sources only
(broken metadata cannot matter), then executed from memory, cell by cell,
with a per-cell timeout and a limit for the whole notebook, in a kernel
that runs inside a bubblewrap sandbox (:mod:`cnnbook.sandbox`): no
network, the software read-only, a private scratch folder as the only
writable place, limits on memory, processes, file sizes and CPU time,
and none of the grader's files, the repository or other submissions in
view. The ``cnnbook`` the notebook imports there lacks the checks and
every implementation that answers one of the chapter's exercises. A cell
that fails, loops or kills the kernel costs only the exercises that
depend on it: the kernel is restarted and the cells that worked are
replayed.

Then the checks run here, in the grader's own process: each call of a
learner's function (on inputs the checks chose) is sent into the kernel,
and only the result comes back (:mod:`cnnbook.wire`: numbers, arrays, a
Keras model's configuration). Expected values, reference implementations
and the judgement never exist in the learner's process, so nothing the
learner's code can reach (stack frames, ``gc``, patched modules) holds an
answer. The check cells of the notebook play no part in the grade. The
submitted file is never written (the sandbox cannot even see it; without
a sandbox, a changed file is put back and the report says so).

Without a working sandbox :func:`grade` raises
:class:`cnnbook.sandbox.SandboxUnavailable` unless
``Limits(sandbox=False)`` (``--no-sandbox``) asks for a grade without
isolation, which protects nothing against a learner who cheats. Batch
grading runs every submission in its own process, so one that takes its
grader down costs only its own grade.

Report schema (``--json``; ``grade-batch`` writes one per submission),
version 1 (documented for readers in book/grading-reference.md)::

    {"schema_version": 1,       # bumped on any incompatible change
     "notebook": str,           # the path as given
     "graded": bool,            # false: could not be read or run at all
     "sha256": str|null,        # of the submitted bytes
     "chapter": str|null,
     "points": int|null,        # null only in grade-batch, when the grader
     "max_points": int,         #   itself died (see "problems")
     "full_marks": bool,
     "seconds": float,
     "exercises": [{"key": str, "title": str, "points": int,
                    "max_points": int, "passed": bool, "message": str,
                    "visible_passed": bool, "hidden_passed": bool|null}],
     "cell_errors": [{"cell": int, "error": str}],   # cell numbers from 1
     "problems": [str]}        # whole-notebook problems, in plain words
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
import threading
import time

import nbformat

SCHEMA_VERSION = 1
_ROOT = pathlib.Path(__file__).resolve().parent.parent  # holds cnnbook/
OUTPUT_LIMIT = 100_000  # characters of output kept per cell (errors always)


@dataclasses.dataclass
class Limits:
    cell_timeout: float = 120.0
    total_timeout: float = 900.0
    check_timeout: float = 60.0
    check_slack: float = 30.0  # import time etc. on top of 2 x check_timeout
    memory_mb: int = 6144  # address-space limit of the kernel; 0: none
    profile: str = "smoke"
    sandbox: bool = True  # False: run the kernel unisolated (--no-sandbox)
    max_processes: int = 2048  # processes and threads in the sandbox
    max_file_mb: int = 1024  # largest file the notebook may write


class NotebookProblem(Exception):
    """The file cannot be graded at all (not JSON, not a notebook...)."""


def _read_notebook(raw, path):
    """A clean notebook built from the cells' types and sources only.

    Whatever a learner did to the cell metadata, outputs or ids cannot
    matter: the grader keeps nothing else.
    """
    if not raw.strip():
        raise NotebookProblem(
            f"{path} is empty: it is not a notebook "
            "(start over from a fresh copy of the exercise)"
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotebookProblem(
            f"{path} is not valid JSON ({exc}); open it in JupyterLab and "
            "save it again, or start over from a fresh copy"
        ) from None
    try:
        if not isinstance(data, dict) or not isinstance(
            data.get("cells"), list
        ):
            raise ValueError("it has no list of cells")
        cells = []
        for number, cell in enumerate(data["cells"], 1):
            if not isinstance(cell, dict):
                raise ValueError(f"cell {number} is not an object")
            source = cell.get("source", "")
            if isinstance(source, list) and all(
                isinstance(x, str) for x in source
            ):
                source = "".join(source)
            if not isinstance(source, str):
                raise ValueError(f"the source of cell {number} is not text")
            kind = cell.get("cell_type")
            if kind == "code":
                cells.append(nbformat.v4.new_code_cell(source))
            else:  # markdown, raw or anything else: never executed
                cells.append(nbformat.v4.new_markdown_cell(source))
        meta = data.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        cnnbook_meta = meta.get("cnnbook")
        nb = nbformat.v4.new_notebook(cells=cells)
        if isinstance(cnnbook_meta, dict) and isinstance(
            cnnbook_meta.get("chapter"), str
        ):
            nb.metadata["cnnbook"] = {"chapter": cnnbook_meta["chapter"]}
    except ValueError as exc:
        raise NotebookProblem(
            f"{path} is not a Jupyter notebook: {exc}"
        ) from None
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
        f"{', '.join(known)}); pass --chapter"
    )


def _output_size(msg):
    content = msg.get("content", {})
    if msg["header"]["msg_type"] == "stream":
        return len(content.get("text", ""))
    data = content.get("data", {})
    return (
        sum(
            len(v) if isinstance(v, str) else len(json.dumps(v))
            for v in data.values()
        )
        if isinstance(data, dict)
        else 0
    )


def _capped_client_class():
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """Keeps at most OUTPUT_LIMIT characters of output per cell.

        The grader reads only errors, so a cell printing megabytes (or
        displaying huge images) costs transfer time but no memory.
        """

        def output(self, outs, msg, display_id, cell_index):
            if msg["header"]["msg_type"] != "error":
                size = _output_size(msg)
                used = getattr(self, "_cnnbook_used", {})
                self._cnnbook_used = used
                used[cell_index] = used.get(cell_index, 0) + size
                if used[cell_index] > OUTPUT_LIMIT:
                    return None
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


# Runs first in every kernel, before any of the learner's cells: limits the
# kernel's memory (the sandbox does too) and keeps the function that serves
# the grader's calls under a private name.
_PRELUDE = """
def _cnnbook_prelude():
    import resource, sys
    limit = {memory}
    if limit:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass
    import cnnbook.wire
    sys.modules["_cnnbook_serve"] = cnnbook.wire
_cnnbook_prelude()
del _cnnbook_prelude
"""

# One call of a learner's function, made by the checks (see _Remote).
_CALL = (
    "__import__('sys').modules['_cnnbook_serve'].serve({path!r}, globals())"
)


def _kernel_manager_class():
    from jupyter_client.manager import AsyncKernelManager

    class SandboxedKernelManager(AsyncKernelManager):
        """Starts ``python -m ipykernel_launcher`` behind a command prefix.

        The kernel talks over Unix sockets in the scratch folder (the
        sandbox has no network, not even the host's loopback).
        """

        cnnbook_prefix: list = []

        def format_kernel_cmd(self, extra_arguments=None):
            import sys

            return [
                *self.cnnbook_prefix,
                sys.executable,
                "-Xfrozen_modules=off",
                "-m",
                "ipykernel_launcher",
                "-f",
                self.connection_file,
            ]

    return SandboxedKernelManager


class _Session:
    """A kernel that can be restarted and brought back to where it was."""

    def __init__(self, nb, scratch, package_dir, limits, overlays=()):
        self.nb, self.scratch_dir, self.limits = nb, scratch, limits
        self.package_dir, self.overlays = package_dir, overlays
        self.workdir = os.path.join(scratch, "work")
        # nbclient stores every executed cell back at nb.cells[index]; the
        # grader's own cells (prelude, calls) go to this extra last slot so
        # that they never overwrite one of the learner's cells.
        nb.cells.append(nbformat.v4.new_markdown_cell(""))
        self.scratch = len(nb.cells) - 1
        self.client = None
        self.replay = []  # indices of cells that ran to completion
        self.starts = 0
        self.prefix = None  # the sandbox command, made once

    def _env(self):
        keep = ("LANG", "LC_ALL", "OMP_NUM_THREADS", "TF_NUM_INTEROP_THREADS")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            {
                k: v
                for k, v in os.environ.items()
                if k.startswith("CNNBOOK_") and k != "CNNBOOK_DATA"
            }
        )
        env.update(
            CNNBOOK_PROFILE=self.limits.profile,
            TF_CPP_MIN_LOG_LEVEL="3",
            MPLBACKEND="Agg",
            PYTHONHASHSEED="0",
        )
        return env

    def start(self):
        from cnnbook import sandbox
        from cnnbook.data import cache_dir

        # Everything under the scratch folder may have been replaced by the
        # notebook's code (a symbolic link to somewhere else on this
        # machine): the grader creates only fresh, unguessable names there,
        # never follows a link in it, and binds nothing from it but itself.
        self.starts += 1
        kdir = tempfile.mkdtemp(prefix="k", dir=self.scratch_dir)
        if self.starts == 1:
            os.mkdir(self.workdir)
            _copy_font_cache(os.path.join(self.scratch_dir, "home"))
        elif not os.path.lexists(self.workdir):  # the notebook deleted it
            os.mkdir(self.workdir)
        km = _kernel_manager_class()(
            kernel_name="python3",
            transport="ipc",
            ip=os.path.join(kdir, "s"),
            connection_file=os.path.join(kdir, "kernel.json"),
        )
        env = self._env()
        if self.limits.sandbox and self.prefix is None:
            self.prefix = sandbox.command(
                self.scratch_dir,
                self.package_dir,
                env,
                memory_mb=self.limits.memory_mb,
                cpu_seconds=4 * self.limits.total_timeout + 3600,
                max_processes=self.limits.max_processes,
                max_file_mb=self.limits.max_file_mb,
                data_dir=str(cache_dir()),
                overlays=self.overlays,
            )
        if self.limits.sandbox:
            km.cnnbook_prefix = self.prefix
            env = {}
        else:
            env = dict(os.environ, **env, PYTHONPATH=str(self.package_dir))
        self.client = _capped_client_class()(
            self.nb,
            timeout=self.limits.cell_timeout,
            kernel_name="python3",
            allow_errors=True,
            interrupt_on_timeout=False,
            record_timing=False,
            iopub_timeout=10,
            resources={"metadata": {"path": self.workdir}},
        )
        self.client.km = km
        self.client.start_new_kernel(
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.client.start_new_kernel_client()
        prelude = nbformat.v4.new_code_cell(
            _PRELUDE.format(memory=int(self.limits.memory_mb) * 2**20)
        )
        error = self.run(
            prelude, -1, timeout=max(60, self.limits.cell_timeout)
        )
        if error:
            raise RuntimeError(
                f"the grader could not prepare the kernel: {error}"
            )
        for index in self.replay:
            self.run(
                self.nb.cells[index], index, timeout=self.limits.cell_timeout
            )

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

        ``index < 0`` marks one of the grader's own cells. After a timeout
        the kernel is restarted and the good cells replayed; a kernel that
        died is restarted by the caller.
        """
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        cell.outputs = []
        if index < 0:
            index = self.scratch
        self.client.timeout = max(1, int(timeout))
        self.client._cnnbook_used = {}  # output budget, per run
        try:
            self.client.execute_cell(cell, index)
        except DeadKernelError:
            return "KernelDied: the cell stopped the Python kernel"
        except CellTimeoutError:
            # An interrupted kernel aborts the requests queued behind it, so
            # the reliable way on is a fresh kernel, good cells replayed.
            self.restart()
            return (
                f"CellTimeout: the cell ran past its {int(timeout)} s "
                "limit and was stopped (an endless loop?)"
            )
        finally:
            if self.client is not None:
                self.client.timeout = self.limits.cell_timeout
        errors = [
            o for o in cell.get("outputs", []) if o.output_type == "error"
        ]
        cell.outputs = []
        if errors:
            return f"{errors[0].ename}: {errors[0].evalue}"[:500]
        return None


def _copy_font_cache(home):
    """Give the sandbox matplotlib's font list (else it rebuilds it, slowly,
    in every grade)."""
    import glob
    import shutil

    target = os.path.join(home, ".matplotlib")
    if os.path.isdir(target):
        return
    os.makedirs(target)
    try:
        import matplotlib

        cache = matplotlib.get_cachedir()
    except Exception:  # noqa: BLE001 - no cache: the sandbox builds one
        return
    for path in glob.glob(os.path.join(cache, "fontlist-*.json")):
        shutil.copy(path, target)


class _Remote:
    """The learner's namespace, seen from the grader: calls go to the kernel.

    ``remote["conv_forward"](A, W, b, 1, 0)`` writes the arguments into the
    scratch folder, runs :func:`cnnbook.wire.serve` in the kernel and
    returns the decoded result; arrays the call changed in place are
    changed here too, and so are the weights of a model passed in. An
    exception of the learner's code is raised here under its own name.
    """

    def __init__(self, session, names, slack):
        self.session, self.slack = session, slack
        # a fresh folder, used through a descriptor: if the notebook's code
        # swaps it for a link, the grader still writes and reads only here
        self.rpc = tempfile.mkdtemp(prefix="rpc", dir=session.scratch_dir)
        self.fd = os.open(self.rpc, os.O_RDONLY | os.O_DIRECTORY)
        self.count = 0
        self.deadline = None
        self.defined = {}
        self.defined = self._request({"op": "defined", "names": list(names)})

    # -- the Mapping the checks see
    def __contains__(self, name):
        return name in self.defined

    def __getitem__(self, name):
        if name not in self.defined:
            raise KeyError(name)
        return RemoteFunction(self, name)

    def get(self, name, default=None):
        return self[name] if name in self else default

    def start_phase(self, seconds):
        self.deadline = time.monotonic() + seconds

    # -- one call
    def call(self, name, args, kwargs, block=False, weights=False, seed=None):
        from cnnbook import grading, wire

        left = 3600.0
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0.5:
                raise grading.Timeout()
        arrays = {}
        request = {
            "op": "call",
            "name": name,
            "args": [wire.encode(a, arrays, True) for a in args],
            "kwargs": [
                [k, wire.encode(v, arrays, True)] for k, v in kwargs.items()
            ],
            "block": block,
            "weights": weights,
            "seed": seed,
            "timeout": left,
        }
        answer, out_arrays = self._exchange(request, arrays, left)
        if not answer.get("ok"):
            if answer.get("timeout"):
                raise grading.Timeout()
            error = answer.get("error")
            raise _learner_error(error if isinstance(error, dict) else {})
        try:
            for index, tree in answer.get("changed") or []:
                if isinstance(index, int) and 0 <= index < len(args):
                    _update_argument(
                        args[index], wire.decode(tree, out_arrays)
                    )
            return wire.decode(answer["value"], out_arrays)
        except Exception as exc:  # noqa: BLE001 - whatever the kernel wrote
            raise grading.CheckFailure(
                f"{name} returned something the grader cannot read: "
                f"{type(exc).__name__}: {str(exc)[:200]}"
            ) from None

    def _request(self, request):
        from cnnbook import grading

        answer, arrays = self._exchange(request, {}, 60)
        value = answer.get("value")
        if not answer.get("ok") or not isinstance(value, dict):
            raise grading.CheckFailure(
                "the notebook's code broke the grader's calls into it"
            )
        return {str(k): bool(v) for k, v in value.items()}

    def _exchange(self, request, arrays, seconds):
        from cnnbook import grading, wire

        self.count += 1
        name = f"r{self.count}"
        base = os.path.join(self.rpc, name)
        wire.write(name, request, arrays, dir_fd=self.fd)
        error = self.session.run(
            nbformat.v4.new_code_cell(_CALL.format(path=base)),
            -1,
            timeout=seconds + self.slack,
        )
        if error and error.startswith("KernelDied"):
            self.session.restart()
            raise grading.KernelStopped()
        if error and error.startswith("CellTimeout"):
            raise grading.Timeout()
        try:
            answer, arrays = wire.read(name + ".out", dir_fd=self.fd)
            if not isinstance(answer, dict):
                raise ValueError("not an answer")
            return answer, arrays
        except wire.WireError as exc:
            raise grading.CheckFailure(str(exc)) from None
        except (OSError, ValueError, TypeError):
            why = f" ({error})" if error else ""
            raise grading.CheckFailure(
                f"the notebook's code broke the grader's calls into it{why}"
            ) from None
        finally:
            for suffix in (".json", ".npz", ".out.json", ".out.npz"):
                try:
                    os.remove(name + suffix, dir_fd=self.fd)
                except OSError:
                    pass

    def close(self):
        os.close(self.fd)


class RemoteFunction:
    """A learner's function that runs in the sandboxed kernel."""

    def __init__(self, remote, name, **options):
        self.remote, self.__name__, self.options = remote, name, options

    def __call__(self, *args, **kwargs):
        return self.remote.call(self.__name__, args, kwargs, **self.options)

    def with_options(self, weights=None, seed=None):
        """The same function; models come back with their weights
        (``weights=True``), or the kernel seeds Keras first (``seed``)."""
        options = dict(self.options)
        if weights is not None:
            options["weights"] = weights
        if seed is not None:
            options["seed"] = int(seed)
        return RemoteFunction(self.remote, self.__name__, **options)

    def block(self, inputs, *args, **kwargs):
        """Call on ``keras.Input`` tensors made in the kernel.

        ``inputs`` holds :class:`cnnbook.wire.KerasInput` markers, passed
        as the first arguments; a Keras tensor that comes back arrives as
        the model from those inputs to it.
        """
        return self.remote.call(
            self.__name__,
            (*inputs, *args),
            kwargs,
            **dict(self.options, block=True),
        )


def _learner_error(error):
    from cnnbook import grading

    kind = str(error.get("type") or "Exception")[:80]
    message = str(error.get("message") or "")
    if error.get("not_implemented"):
        return NotImplementedError(message)
    cls = type(kind, (grading.LearnerError,), {})
    return cls(message, error.get("line"))


def _update_argument(original, changed):
    import numpy as np

    if isinstance(original, np.ndarray):
        if getattr(changed, "shape", None) == original.shape:
            original[...] = changed
        else:  # reshaped in place: still a change the checks must see
            original[...] = np.nan if original.dtype.kind in "fc" else 0
    elif hasattr(original, "set_weights") and hasattr(changed, "get_weights"):
        original.set_weights(changed.get_weights())
        original._cnnbook_compiled = getattr(
            changed, "_cnnbook_compiled", False
        )


def _defining_cells(nb, name):
    pattern = re.compile(
        rf"^\s*(def|class)\s+{re.escape(name)}\b|"
        rf"^\s*{re.escape(name)}\s*=",
        re.M,
    )
    return [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and pattern.search(c.source)
    ]


def grade(path, chapter=None, limits=None, seed=None):
    """Grade the notebook at ``path``; return the report (schema above)."""
    from cnnbook import grading

    limits = limits or Limits()
    if limits.sandbox:
        from cnnbook import sandbox

        sandbox.check_available()  # SandboxUnavailable: no silent fallback
    path = pathlib.Path(path)
    start = time.perf_counter()
    report = {
        "schema_version": SCHEMA_VERSION,
        "notebook": str(path),
        "graded": False,
        "sandboxed": bool(limits.sandbox),
        "sha256": None,
        "chapter": chapter,
        "points": 0,
        "max_points": 0,
        "full_marks": False,
        "seconds": 0.0,
        "exercises": [],
        "cell_errors": [],
        "problems": [],
    }
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
    try:
        grading.exercises(chapter)
    except KeyError:
        report["problems"].append(
            f"there are no checks for chapter {chapter!r}"
        )
        return _finish(report, None, {}, start)
    report["chapter"] = chapter
    if seed is None:
        seed = int(report["sha256"][:8], 16)
    try:
        results = _execute_and_check(nb, chapter, limits, seed, report)
        report["graded"] = True
    except Exception as exc:  # noqa: BLE001 - report, never crash a batch
        results = {}
        report["problems"].append(
            f"the grader could not run this notebook: {type(exc).__name__}: "
            f"{exc}"[:500]
        )
    finally:
        if not path.exists() or path.read_bytes() != raw:
            path.write_bytes(raw)
            report["problems"].append(
                "the notebook's code changed its own file; the submitted "
                "version was restored"
            )
    return _finish(report, chapter, results, start)


def _chapter_from_name(path, known):
    stem = pathlib.Path(path).name.split("-")[0].lower()
    return stem if stem in known else None


def _finish(report, chapter, results, start):
    from cnnbook import grading

    report["chapter"] = chapter
    rows = []
    for ex in grading.exercises(chapter) if chapter else []:
        r = results.get(ex.key) or grading.Result(
            ex.key,
            ex.title,
            0,
            ex.points,
            "not graded: the notebook could not be run (see above)",
        )
        row = dataclasses.asdict(r)
        row["passed"] = r.passed
        rows.append(row)
    report["exercises"] = rows
    report["points"] = sum(r["points"] for r in rows)
    report["max_points"] = sum(r["max_points"] for r in rows)
    report["full_marks"] = (
        bool(rows) and report["points"] == report["max_points"]
    )
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


def _execute_and_check(nb, chapter, limits, seed, report):
    from cnnbook import grading, sandbox

    exercises = grading.exercises(chapter)
    deadline = time.monotonic() + limits.total_timeout
    cell_errors = {}
    source_cells = [c.source for c in nb.cells]
    with tempfile.TemporaryDirectory(prefix="cnnbook-grade-") as tmp:
        # tmp/p: the grader's (the package the sandbox sees, Keras stubs);
        # tmp/s: the sandbox's scratch folder, its only writable place
        scratch = os.path.join(tmp, "s")
        os.mkdir(scratch)
        answers, keras_apps = grading.answers(chapter)
        package = sandbox.build_package(answers, os.path.join(tmp, "p"))
        overlays = []
        if limits.sandbox:
            overlays = sandbox.keras_overlays(
                keras_apps, os.path.join(tmp, "k")
            )
        session = _Session(nb, scratch, package, limits, overlays)
        # the checks use Keras here: import it while the notebook runs,
        # once its set-up cell (which imports Keras there) is done
        warm = grading.needs_keras(chapter)
        try:
            session.start()
            learner_cells = nb.cells[: session.scratch]
            for index, cell in enumerate(learner_cells):
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
                    cell, index, min(limits.cell_timeout, left)
                )
                if warm:
                    threading.Thread(target=_import_keras, daemon=True).start()
                    warm = False
                if error is None:
                    session.replay.append(index)
                    continue
                first = cell.source.strip().splitlines()[0][:40]
                cell_errors[index] = f"{error} [cell starting `{first}`]"
                if error.startswith("KernelDied"):
                    session.restart()
            results = {}
            names = [n for ex in exercises for n in ex.names]
            for ex in exercises:
                results[ex.key] = _check_one(session, ex, names, seed, limits)
        finally:
            session.stop()
    skipped = [i for i, e in cell_errors.items() if e.startswith("NotRun")]
    if skipped:
        report["problems"].append(
            f"the notebook ran past its {limits.total_timeout:.0f} s limit: "
            f"cells {min(skipped) + 1} to {max(skipped) + 1} were not run"
        )
    report["cell_errors"] = [
        {"cell": i + 1, "error": e} for i, e in sorted(cell_errors.items())
    ]
    for ex in exercises:
        r = results[ex.key]
        if r.passed:
            continue
        related = [
            f"cell {i + 1} raised {cell_errors[i]}"
            for name in ex.names
            for i in _defining_cells(nb, name)
            if i in cell_errors
        ]
        if related:
            r.message += " (" + "; ".join(related) + ")"
    _name_failed_dependencies(exercises, results, source_cells)
    return results


def _import_keras():
    try:
        import keras  # noqa: F401
    except Exception:  # noqa: BLE001 - the checks will report it
        pass


def _name_failed_dependencies(exercises, results, sources):
    """Say so when a failed answer calls another failed exercise's answer."""
    import types

    nb = types.SimpleNamespace(
        cells=[nbformat.v4.new_code_cell(s) for s in sources]
    )
    failed = [ex for ex in exercises if not results[ex.key].passed]
    for ex in failed:
        code = "\n".join(
            sources[i] for name in ex.names for i in _defining_cells(nb, name)
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
    from cnnbook import grading

    remote = None
    try:
        remote = _Remote(session, names, limits.check_slack)
        return grading.run_exercise(
            ex, remote, hidden=True, seed=seed, timeout=limits.check_timeout
        )
    except grading.KernelStopped:
        why = "your code stopped the Python kernel while being checked"
    except grading.Timeout:
        why = "your code took too long while being checked"
    except grading.CheckFailure as exc:
        why = str(exc)
    except Exception as exc:  # noqa: BLE001 - never crash on a notebook
        why = (
            "the notebook's code broke the grader's calls into it "
            f"({type(exc).__name__})"
        )
    finally:
        if remote is not None:
            remote.close()
    return grading.Result(
        ex.key, ex.title, 0, ex.points, f"could not be checked: {why}"
    )


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
            lines.append(
                f"  {mark} {label}  {r['points']:>2}/{r['max_points']:<2}"
                f"  {'' if r['passed'] else r['message']}".rstrip()
            )
    for e in report["cell_errors"]:
        lines.append(f"  cell {e['cell']}: {e['error']}")
    lines.append(
        f"Total: {report['points']}/{report['max_points']} points "
        f"({report['seconds']:.1f} s)"
    )
    return "\n".join(lines)


# ------------------------------------------------------------ batch grading
def _submissions(folder):
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


def _grade_in_subprocess(path, json_path, options, hard_timeout):
    """``python -m cnnbook grade`` in its own process; returns (report, why).

    A separate process per submission: a notebook that takes its grader
    down (or hangs it) costs only its own grade. After ``hard_timeout``
    the process gets SIGTERM (it then stops its kernel), then SIGKILL.
    """
    import signal
    import sys

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
    above) and ``OUTDIR/summary.csv`` with the columns ``name``, one per
    exercise key (points), ``total``, ``max_points``, ``status``
    (``graded`` or ``not graded: why``). Prints one progress line per
    submission to ``progress`` (default stderr). Returns the list of
    summary rows; a submission that could not be graded has points None.
    """
    import csv
    import sys
    from concurrent.futures import ThreadPoolExecutor, as_completed

    progress = progress or sys.stderr
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    subs = _submissions(folder)
    total = len(subs)
    start = time.perf_counter()
    print(
        f"grading {total} notebooks from {folder} with {workers} workers",
        file=progress,
        flush=True,
    )
    rows = {}

    def one(name, path):
        report, why = _grade_in_subprocess(
            path, outdir / f"{name}.json", list(options), hard_timeout
        )
        if report is not None and not report.get("graded", True):
            why = (
                "; ".join(report["problems"])
                or "the notebook could not be run"
            )
        if report is None:
            report = {
                "schema_version": SCHEMA_VERSION,
                "notebook": str(path),
                "graded": False,
                "points": None,
                "exercises": [],
                "problems": [why],
            }
            (outdir / f"{name}.json").write_text(
                json.dumps(report, indent=2) + "\n"
            )
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
