"""The holes a red-team review found in the grader (issue #22), each
closed and kept closed: the submission's path is never written (a link
swapped in for it during a grade takes no write anywhere), and
``grade-batch`` grades the bytes it scanned."""

import glob
import hashlib
import json
import os
import signal
import tempfile
import time

import pytest
from conftest import ROOT, run_cli

from cnnbook.grading import batch
from cnnbook.grading import grade as grading
from cnnbook.grading.names import printable
from cnnbook.grading.session import Limits

SOLUTION = ROOT / "solutions" / "ch01-layer-arithmetic.ipynb"
CANARY = b"root-only: the grader must never write here\n"


def _canary(tmp_path):
    canary = tmp_path / "victim.conf"
    canary.write_bytes(CANARY)
    canary.chmod(0o600)
    return canary, canary.stat()


def _swapper(monkeypatch, swaps):
    """Make the grade's run (not the sandbox: the run is replaced) swap
    each path of ``swaps`` for a link to its target, as a racing student
    would while the notebook runs; the grade then checks nothing."""

    def swap(*_args):
        for path, target in swaps.items():
            if not path.is_symlink():
                path.unlink()
                path.symlink_to(target)
        return {}

    monkeypatch.setattr(grading, "_execute_and_check", swap)


def test_a_link_swapped_in_during_a_grade_takes_no_write(
    tmp_path, monkeypatch
):
    canary, before = _canary(tmp_path)
    existing = tmp_path / "a.ipynb"
    dangling = tmp_path / "b.ipynb"
    created = tmp_path / "profile.sh"  # what a dangling link names
    for path in (existing, dangling):
        path.write_bytes(SOLUTION.read_bytes())
    reports = []
    for path, target in ((existing, canary), (dangling, created)):
        _swapper(monkeypatch, {path: target})
        reports.append(
            grading.grade(path, chapter="ch01", limits=Limits(sandbox=False))
        )
    assert canary.read_bytes() == CANARY
    after = canary.stat()
    assert (after.st_mtime_ns, after.st_size) == (
        before.st_mtime_ns,
        before.st_size,
    )
    assert not os.path.lexists(created)
    assert existing.is_symlink() and dangling.is_symlink()  # left as found
    for report in reports:  # graded: the bytes read at the start
        sha = hashlib.sha256(SOLUTION.read_bytes()).hexdigest()
        assert report.sha256 == sha
        assert any("changed (or was replaced)" in p for p in report.problems)


def test_grade_batch_grades_the_bytes_it_scanned(tmp_path, monkeypatch):
    """The submissions are swapped for links while they are graded: the
    batch grades its own copies of the bytes it scanned, never opens the
    submission's path again, and writes nothing through the links."""
    canary, _ = _canary(tmp_path)
    subs = tmp_path / "subs"
    subs.mkdir()
    alice, bob = subs / "alice.ipynb", subs / "bob.ipynb"
    for path in (alice, bob):
        path.write_bytes(SOLUTION.read_bytes())
    created = tmp_path / "created.sh"
    _swapper(monkeypatch, {alice: canary, bob: created})
    graded = []

    def in_process(path, json_path, options, _hard_timeout, _grader_mb):
        # the real grade, in this process, so that the swap can be made
        # in the middle of it
        names = [o[7:] for o in options if o.startswith("--name=")]
        names = {"name": names[-1]} if names else {}
        graded.append(path)
        report = grading.grade(
            path, chapter="ch01", limits=Limits(sandbox=False), **names
        ).to_json()
        json_path.write_text(json.dumps(report))
        return report, None

    monkeypatch.setattr(batch, "grade_in_subprocess", in_process)
    rows = batch.grade_batch(subs, tmp_path / "out", "ch01", workers=1)
    assert canary.read_bytes() == CANARY
    assert not os.path.lexists(created)
    assert len(graded) == 2
    for path in graded:  # the grader's copies, gone with the batch
        assert subs not in path.parents and not os.path.lexists(path)
    assert [r["status"] for r in rows] == ["graded", "graded"]
    for path in (alice, bob):
        report = json.loads(
            (tmp_path / "out" / f"{path.stem}.json").read_text()
        )
        assert report["notebook"] == printable(path)
        assert (
            report["sha256"]
            == hashlib.sha256(SOLUTION.read_bytes()).hexdigest()
        )
        assert not any("changed" in p for p in report["problems"])


@pytest.mark.slow
def test_grade_batch_names_the_submission_not_its_copy(tmp_path):
    """Through the real ``python -m cnnbook grade`` processes: the report
    names the submission, not the grader's copy (a notebook that is not
    JSON: no kernel starts)."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "-carol.ipynb").write_text('{"cells": [')
    result = run_cli(
        "grade-batch", subs, "--out", tmp_path / "out", "--chapter", "ch01"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "-carol.json").read_text())
    assert report["notebook"] == printable(subs / "-carol.ipynb")
    assert not any("cnnbook-batch-" in p for p in report["problems"])
    assert report["sha256"] is not None


# ----------------------------------------------- fix 2: an unpredictable seed
# A notebook that answers 1.3, 1.5 and 1.6 from a table: it replays the
# checks' public input generation (visible seeds 1, 3, 4; hidden: one
# generator of the grade's seed per exercise), computes the answers at
# cell time with honest numpy code, and its functions only look them up.
TABLE_CODE = """
import numpy as np
def conv_output_size(n, f, p=0, s=1):
    return (n - f + 2 * p) // s + 1
def conv_layer_params(f, n_C_prev, n_C):
    return n_C * (n_C_prev * f * f) + n_C
def conv_single_step(a_slice_prev, W, b):
    return float((a_slice_prev * W).sum() + np.asarray(b).sum())
def _pad(X, p):
    m, h, w, c = X.shape
    out = np.zeros((m, h + 2 * p, w + 2 * p, c), X.dtype)
    out[:, p:p + h, p:p + w, :] = X
    return out
def _conv(A, W, b, s, p):
    A = _pad(A.astype(np.float64), p)
    f, n = W.shape[0], W.shape[3]
    h, w = (A.shape[1] - f) // s + 1, (A.shape[2] - f) // s + 1
    out = np.zeros((A.shape[0], h, w, n))
    for i in range(h):
        for j in range(w):
            win = A[:, i * s:i * s + f, j * s:j * s + f, :]
            out[:, i, j, :] = np.tensordot(win, W, axes=3) + b
    return out
def _pool(A, f, s, mode):
    h, w = (A.shape[1] - f) // s + 1, (A.shape[2] - f) // s + 1
    out = np.zeros((A.shape[0], h, w, A.shape[3]))
    for i in range(h):
        for j in range(w):
            win = A[:, i * s:i * s + f, j * s:j * s + f, :]
            out[:, i, j, :] = (
                win.max((1, 2)) if mode == "max" else win.mean((1, 2))
            )
    return out
TABLE = {}
def _stream(seed, exercise):
    # each exercise's hidden stream, as the grader draws it
    import zlib
    return np.random.default_rng(
        np.random.SeedSequence([seed, zlib.crc32(exercise.encode())])
    )
def key(*a):
    return tuple(
        (x.shape, x.dtype.str, x.tobytes())
        if isinstance(x, np.ndarray) else x
        for x in a
    )
def _case(rng, m, h, w, c, f, n):
    A = rng.standard_normal((m, h, w, c)).astype(np.float32)
    W = rng.standard_normal((f, f, c, n)).astype(np.float32)
    return A, W, rng.standard_normal(n).astype(np.float32)
def fill(seed=None):
    if seed is None:  # the visible examples
        rng = np.random.default_rng(1)
        for shape, p in (((4, 3, 3, 2), 2), ((1, 2, 5, 1), 1)):
            X = rng.standard_normal(shape)
            TABLE[key("pad", X, p)] = _pad(X, p)
        A, W, b = _case(np.random.default_rng(3), 2, 5, 7, 3, 3, 4)
        for s, p in [(1, 0), (2, 1)]:
            TABLE[key("conv", A, W, b, s, p)] = _conv(A, W, b, s, p)
        A = np.random.default_rng(4).standard_normal((2, 5, 5, 3))
        for f, s in [(2, 2), (3, 2)]:
            for mode in ("max", "average"):
                TABLE[key("pool", A, f, s, mode)] = _pool(A, f, s, mode)
        return
    rng = _stream(seed, "1.3")
    for _ in range(6):
        shape = tuple(int(d) for d in rng.integers(1, 6, size=4))
        p = int(rng.integers(0, 4))
        X = rng.standard_normal(shape)
        TABLE[key("pad", X, p)] = _pad(X, p)
    rng = _stream(seed, "1.5")
    for _ in range(5):
        f = int(rng.choice([1, 2, 3, 5]))
        p = int(rng.integers(0, 3))
        s = int(rng.integers(1, 4))
        h = int(rng.integers(max(1, f - 2 * p), 9))
        w = int(rng.integers(max(1, f - 2 * p), 9))
        m = int(rng.integers(1, 3))
        c = int(rng.integers(1, 4))
        A, W, b = _case(rng, m, h, w, c, f, int(rng.integers(1, 5)))
        TABLE[key("conv", A, W, b, s, p)] = _conv(A, W, b, s, p)
    rng = _stream(seed, "1.6")
    for k in range(6):
        f = int(rng.integers(1, 4))
        s = int(rng.integers(1, 4))
        shape = (
            int(rng.integers(1, 3)),
            int(rng.integers(f, 9)),
            int(rng.integers(f, 9)),
            int(rng.integers(1, 4)),
        )
        A = rng.standard_normal(shape).astype(np.float32)
        mode = ("max", "average")[k % 2]
        TABLE[key("pool", A, f, s, mode)] = _pool(A, f, s, mode)
def zero_pad(X, pad):
    return TABLE.get(key("pad", X, pad))
def conv_forward(A_prev, W, b, stride, pad):
    return TABLE.get(key("conv", A_prev, W, b, stride, pad))
def pool_forward(A_prev, f, stride, mode="max"):
    return TABLE.get(key("pool", A_prev, f, stride, mode))
fill()
"""
# the red team's way to the file's bytes, hence to a seed drawn from them:
# the cell's own source (IPython's history, linecache) in the one form the
# file is written in below
PREDICT_CODE = """
import hashlib, json, linecache
def _me():
    pass
cands = set()
try:
    cands.add(get_ipython().history_manager.input_hist_raw[-1])
except Exception:
    pass
cands.add("".join(linecache.getlines(_me.__code__.co_filename)))
for c in list(cands):
    cands |= {c.rstrip("\\n"), c.rstrip("\\n") + "\\n"}
for c in cands:
    text = json.dumps({"cells": [{"cell_type": "code", "source": c}]})
    fill(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
"""
TABLE_KEYS = ("1.3", "1.5", "1.6")


def _table_notebook(path):
    cell = {"cell_type": "code", "source": TABLE_CODE + PREDICT_CODE}
    path.write_text(json.dumps({"cells": [cell]}))
    return path


def test_the_table_notebook_answers_whenever_it_knows_the_seed():
    """What makes the next test mean something: given the seed, the table
    notebook's code passes the visible and hidden checks of 1.3, 1.5 and
    1.6 (the checks as they are now); given another, only the visible."""
    from cnnbook.grading import chapters
    from cnnbook.grading.runner import run_exercise

    ns = {}
    exec(compile(TABLE_CODE, "<table notebook>", "exec"), ns)
    ns["fill"](20240611)
    for ex in chapters.exercises("ch01"):
        if ex.key in TABLE_KEYS:
            known = run_exercise(ex, ns, hidden=True, seed=20240611)
            assert known.passed and known.hidden_passed, known.message
            other = run_exercise(ex, ns, hidden=True, seed=7)
            assert other.visible_passed and other.hidden_passed is False


def test_the_seed_is_the_graders_secret(tmp_path, monkeypatch):
    """Two grades of the same bytes draw different seeds, neither taken
    from the file's hash; --seed gives a grade its seed back; the report
    keeps it."""
    seeds = []

    def record(_nb, _chapter, _limits, seed, *_rest):
        seeds.append(seed)
        return {}

    monkeypatch.setattr(grading, "_execute_and_check", record)
    path = tmp_path / "ch01.ipynb"
    path.write_bytes(SOLUTION.read_bytes())
    off = Limits(sandbox=False)
    reports = [grading.grade(path, "ch01", off) for _ in range(2)]
    again = grading.grade(path, "ch01", off, seed=reports[0].seed)
    assert seeds[0] != seeds[1] and seeds[2] == seeds[0]
    assert [r.seed for r in (*reports, again)] == seeds
    assert all(0 <= s < 2**64 for s in seeds)
    from_bytes = int(reports[0].sha256[:8], 16)
    assert from_bytes not in seeds
    assert reports[0].to_json()["seed"] == seeds[0]


@pytest.mark.slow
def test_a_notebook_that_predicts_its_seed_earns_nothing_hidden(tmp_path):
    """The red team's a6 in the sandbox: it computes its own file's hash
    and fills its table for that seed, in vain: the visible checks pass
    (the table holds them), the hidden ones find nothing."""
    path = _table_notebook(tmp_path / "ch01-table.ipynb")
    out = tmp_path / "report.json"
    result = run_cli("grade", path, "--chapter", "ch01", "--json", out)
    report = json.loads(out.read_text())
    assert report["graded"], result.stdout + result.stderr
    rows = {r["key"]: r for r in report["exercises"]}
    for key in TABLE_KEYS:
        assert rows[key]["visible_passed"], rows[key]["message"]
        assert rows[key]["hidden_passed"] is False, rows[key]["message"]
        assert rows[key]["points"] == 0
    assert report["seed"] != int(report["sha256"][:8], 16)
    # the others are honest code and keep their points
    assert all(rows[k]["passed"] for k in ("1.1", "1.2", "1.4"))


def test_grade_takes_a_seed_to_reproduce_only_in_range(tmp_path):
    path = tmp_path / "ch01.ipynb"
    path.write_bytes(SOLUTION.read_bytes())
    for bad in ("-1", str(2**64), "x"):
        result = run_cli("grade", path, "--seed", bad, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "--seed" in result.stderr


# ------------------------------- fix 3: chapter 1 without the libraries at all
PROBES = {
    "tensorflow": "import tensorflow",
    "gen_array_ops": "from tensorflow.python.ops import gen_array_ops",
    "keras": "import keras",
    "jax": "import jax.numpy",
    "jaxlib": "import jaxlib",
    "scipy": "import scipy.signal",
    # red team 3, attack 3 (a01_base_scipy): the base interpreter's own
    # site-packages, put first on the path, held a second SciPy
    "base scipy": (
        "import os, sys\n"
        "for d in {hidden!r}:\n"
        "    assert not os.listdir(d), 'base site-packages visible'\n"
        "    sys.path.insert(0, d)\n"
        "for m in [m for m in sys.modules if m.split('.')[0] == 'scipy']:\n"
        "    del sys.modules[m]\n"
        "import scipy.signal"
    ),
    "numpy.pad": "import numpy\nnumpy.pad(numpy.ones((1, 2, 2, 1)), 1)",
    # numpy.pad's source and bytecode, read as files: the stub's
    "pad source": (
        "import pathlib, numpy\n"
        "lib = pathlib.Path(numpy.lib.__file__).parent\n"
        "text = (lib / '_arraypad_impl.py').read_text()\n"
        "assert '_pad_simple' not in text, 'numpy.pad source readable'\n"
        "raise RuntimeError('probed')"
    ),
    "pad bytecode": (
        "import pathlib, numpy\n"
        "cache = pathlib.Path(numpy.lib.__file__).parent / '__pycache__'\n"
        "for p in cache.glob('_arraypad_impl.*.pyc'):\n"
        "    assert b'_pad_simple' not in p.read_bytes(), 'bytecode'\n"
        "raise RuntimeError('probed')"
    ),
}


def test_absent_overlays_cover_the_libraries_and_numpy_pad(tmp_path):
    from cnnbook.grading import package

    pairs = package.absent_overlays("ch01", tmp_path / "a")
    targets = {str(t) for _, t in pairs}
    for name in ("tensorflow", "keras", "jax", "jaxlib", "scipy"):
        assert any(t.endswith(f"site-packages/{name}") for t in targets)
    assert any(t.endswith("numpy/lib/_arraypad_impl.py") for t in targets)
    assert package.absent_overlays("ch03", tmp_path / "b") == []


def test_no_second_copy_of_an_absent_library_is_in_the_sandbox(tmp_path):
    """Every folder the chapter-1 sandbox mounts is searched for an
    importable copy of a library it makes absent: each copy found is
    covered by a stub or lies in a folder hidden by an empty tmpfs (the
    base interpreter's site-packages, where red team 3 found SciPy)."""
    import subprocess

    from cnnbook.grading import package, sandbox

    overlays = package.absent_overlays("ch01", tmp_path / "a")
    (tmp_path / "s").mkdir()
    args = sandbox.command(
        str(tmp_path / "s"), str(tmp_path / "p"), {}, overlays=overlays
    )
    binds = [
        args[i + 1]
        for i, a in enumerate(args)
        if a in ("--ro-bind", "--bind") and args[i + 1] != str(tmp_path / "s")
    ]
    hidden = {args[i + 1] for i, a in enumerate(args) if a == "--tmpfs"}
    assert set(sandbox.hidden_site_dirs()) <= hidden
    covered = {str(t) for _, t in overlays}
    expression = []
    for name in package.ABSENT_LIBRARIES["ch01"]:
        for where in ("site-packages", "dist-packages"):
            expression += ["-o", "-path", f"*/{where}/{name}"]
    found = subprocess.run(
        [
            "find",
            *sorted({b for b in binds if os.path.isdir(b)}),
            "-maxdepth",
            "7",
            "-type",
            "d",
            "(",
            *expression[1:],
            ")",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert any(p.endswith("/scipy") for p in found), found  # it searches
    left = [
        p
        for p in found
        if p not in covered
        and not any(p.startswith(h.rstrip("/") + "/") for h in hidden)
    ]
    assert left == []


def test_a_missing_numpy_pad_file_fails_loudly(tmp_path, monkeypatch):
    from cnnbook.grading import package

    monkeypatch.setattr(package, "NUMPY_PAD_FILE", "lib/_moved_impl.py")
    with pytest.raises(package.OverlayMissing, match="numpy.pad"):
        package.absent_overlays("ch01", tmp_path / "a")


@pytest.mark.slow
def test_chapter_1_is_graded_without_the_libraries(tmp_path):
    """The honest solution with a cell per probe before it: each library
    import and numpy.pad raise the chapter's message, numpy.pad's file
    and bytecode are the stub's, and the solution keeps 9/9."""
    import nbformat
    from nbformat.v4 import new_code_cell

    from cnnbook import notebooks

    nb = nbformat.read(SOLUTION, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    from cnnbook.grading import sandbox

    hidden = sandbox.hidden_site_dirs()
    for source in reversed(PROBES.values()):
        source = source.replace("{hidden!r}", repr(hidden))
        nb.cells.insert(first + 1, new_code_cell(source))
    path = tmp_path / "ch01-probed.ipynb"
    path.write_text(notebooks.render(nb))
    out = tmp_path / "report.json"
    result = run_cli("grade", path, "--chapter", "ch01", "--json", out)
    report = json.loads(out.read_text())
    assert report["points"] == report["max_points"] == 9, result.stdout
    errors = [e["error"] for e in report["cell_errors"]]
    assert len(errors) == len(PROBES), errors
    imports = [e for e in errors if "chapter 1 is graded without" in e]
    assert len(imports) == 8, errors  # seven imports and numpy.pad
    assert "implement the operation yourself" in imports[0]
    # the two file probes reach their end: nothing of numpy.pad is read
    assert sum("RuntimeError: probed" in e for e in errors) == 2, errors
    assert sum("FileNotFoundError" in e for e in errors) == 0, errors


# Red team 3, attack 1 (a04_leak_scratch): a grader killed mid-grade (out
# of memory) left its scratch tmpfs mounted, its folder and its groups.
FILL_THEN_WAIT = """
import os, time
with open(os.path.join(os.environ["HOME"], "ballast"), "wb") as fh:
    for _ in range(64):
        fh.write(os.urandom(2**20))
open(os.path.join(os.environ["HOME"], "ready"), "w").close()
time.sleep(600)
"""


def _scratch_mounts(pid):
    """Processes whose mount table still holds a scratch tmpfs of the
    grader ``pid`` (while one does, its pages are not freed)."""
    marker = f"/cnnbook-grade-{pid}-"
    holders = []
    for mounts in glob.glob("/proc/[0-9]*/mounts"):
        try:
            with open(mounts) as fh:
                if any(
                    "cnnbook-scratch" in line and marker in line for line in fh
                ):
                    holders.append(mounts)
        except OSError:  # gone meanwhile
            pass
    return holders


def _descends_from_us(pid):
    """Whether process ``pid`` is a descendant of this test's process (the
    other pytest worker may be grading at the same moment: its groups are
    not this test's)."""
    me = os.getpid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                # the field after the command name, which may hold spaces
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == me:
            return True
    return False


def _grade_group(start):
    """(grader pid, group folder) of a sandbox group made after ``start``
    (a set of folders that existed before) by a grader this process
    started, once it holds processes."""
    from cnnbook.grading.cgroups import detect

    for parent in set(detect(("cgroup-v1", "cgroup-v2")).parents.values()):
        for path in glob.glob(os.path.join(parent, "cnnbook-grade-*")):
            if path in start or not _descends_from_us(
                int(path.split("-")[-2])
            ):
                continue
            try:
                with open(os.path.join(path, "cgroup.procs")) as fh:
                    if fh.read().split():
                        return int(path.split("-")[-2]), path
            except OSError:
                pass
    return None, None


@pytest.mark.slow
def test_a_killed_grader_leaves_nothing_behind(tmp_path):
    """A grade's process killed (SIGKILL, as the OOM killer does) while
    its kernel holds 64 MiB in the scratch tmpfs: grade-batch records the
    grade as killed, with no points, and nothing is left: no process
    sees the tmpfs (it was never in the machine's mount table), no
    folder and no group of that grader remains."""
    import threading

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from cnnbook import notebooks
    from cnnbook.grading.cgroups import detect

    support = detect(("cgroup-v1", "cgroup-v2"))
    if os.geteuid() != 0 or support.mechanism == "none":
        pytest.skip("needs root and cgroups (the CI's machine has both)")
    nb = new_notebook(cells=[new_code_cell(FILL_THEN_WAIT)])
    nb.metadata["cnnbook"] = {"chapter": "ch01"}
    path = tmp_path / "ch01-fill.ipynb"
    path.write_text(notebooks.render(nb))
    assert nbformat.reads(path.read_text(), as_version=4).cells
    before = {
        p
        for parent in set(support.parents.values())
        for p in glob.glob(os.path.join(parent, "cnnbook-grade-*"))
    }
    result = {}

    def run():
        result["out"] = batch.grade_in_subprocess(
            path,
            tmp_path / "report.json",
            ["--chapter", "ch01", "--cell-timeout", "600"],
            900,
        )

    worker = threading.Thread(target=run)
    worker.start()
    pid, group, ready = None, None, []
    deadline = time.monotonic() + 240
    while not ready and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.5)
        if pid is None:
            pid, group = _grade_group(before)
        if pid is not None:
            ready = glob.glob(
                f"/proc/{pid}/root/tmp/cnnbook-grade-{pid}-*/s/home/ready"
            )
    assert ready, result
    assert _scratch_mounts(pid)  # the grader's own namespace holds it
    with open("/proc/self/mounts") as fh:
        assert f"/cnnbook-grade-{pid}-" not in fh.read()
    os.kill(pid, signal.SIGKILL)
    worker.join(120)
    report, why = result["out"]
    assert report is None and "killed (signal 9)" in why, why
    assert not os.path.exists(group)
    assert not glob.glob(
        os.path.join(tempfile.gettempdir(), f"cnnbook-*-{pid}-*")
    )
    holders = _scratch_mounts(pid)
    for _ in range(50):  # the sandbox's last processes end a moment later
        if not holders:
            break
        time.sleep(0.1)
        holders = _scratch_mounts(pid)
    assert holders == []


def test_a_grader_over_its_memory_limit_is_killed_and_earns_nothing(tmp_path):
    """grade-batch puts each grader's own process (not its sandbox) in a
    memory group: one that goes past it (here a limit far below what the
    honest ch01 grader needs, 116 MiB measured) is killed by the kernel,
    earns no points, and its group is gone afterwards."""
    from cnnbook.grading.cgroups import detect

    support = detect(("cgroup-v1", "cgroup-v2"))
    if os.geteuid() != 0 or support.mechanism == "none":
        pytest.skip("needs root and cgroups (the CI's machine has both)")
    mine = f"cnnbook-grade-{os.getpid()}-g"
    report, why = batch.grade_in_subprocess(
        ROOT / "solutions" / "ch01-layer-arithmetic.ipynb",
        tmp_path / "report.json",
        ["--chapter", "ch01"],
        300,
        grader_memory_mb=40,
    )
    assert report is None and "killed (signal 9)" in why, why
    assert not [
        p
        for parent in set(support.parents.values())
        for p in glob.glob(os.path.join(parent, mine + "*"))
    ]
