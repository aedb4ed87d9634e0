"""The grading machine out of reach, and limits for the sandbox as a whole
(issue #22, items 2 and 3).

The first test is a whole grade: the notebook swaps every folder and file
it can write for a link to a folder of the grader's machine, then stops
its kernel, so that the grader cleans up (and restarts) through whatever
it left; the folder must come out untouched. The others start the
sandboxed kernel alone (:class:`cnnbook.grading.session.Session`, no
TensorFlow), which is quick: who the kernel runs as, and the memory, disk
and process limits of the whole sandbox against several processes or
files that each stay under the per-process limits.
"""

import os
import tempfile

import nbformat
import pytest
from conftest import ROOT
from nbformat.v4 import new_code_cell

from cnnbook import notebooks
from cnnbook.grading import cgroups, package, sandbox
from cnnbook.grading.confinement import Confinement, ScratchTmpfs
from cnnbook.grading.grade import grade
from cnnbook.grading.limits import SandboxGroup
from cnnbook.grading.report import format_report
from cnnbook.grading.session import Limits, Session

CH01 = ROOT / "solutions" / "ch01-layer-arithmetic.ipynb"
SUPPORT = cgroups.detect()
needs_group = pytest.mark.skipif(
    SUPPORT.mechanism not in ("cgroup-v1", "cgroup-v2"),
    reason=SUPPORT.describe(),
)
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the grader switches users only as root"
)
MiB = 2**20

# Everything the sandbox can write becomes a link to CANARY: each entry
# of the scratch folder, of its sub-folders, the kernel's connection
# folder and its sockets where it can reach them; then the kernel dies.
SWAP = """
import os

CANARY = {canary!r}


def _swap(path):
    # a folder becomes a link to the canary folder itself, a file a link
    # to the canary's file of the same name
    folder = os.path.isdir(path) and not os.path.islink(path)
    try:
        os.rename(path, path + ".moved")
    except OSError:
        try:
            os.remove(path)
        except OSError:
            return
    target = CANARY if folder else os.path.join(CANARY, os.path.basename(path))
    try:
        os.symlink(target, path)
    except OSError:
        pass


def _swap_all(folder, depth=0):
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path) and depth < 3:
            _swap_all(path, depth + 1)
        _swap(path)


scratch = os.path.dirname(os.getcwd())
_swap_all(scratch)
for name in ("k", "rpc", "kernels", "work", "home"):
    _swap(os.path.join(scratch, name))
try:
    from ipykernel.connect import get_connection_file

    kdir = os.path.dirname(get_connection_file())
    _swap_all(kdir)
    _swap(kdir)
except Exception:
    pass
os._exit(1)
"""

CANARY_FILES = [
    "kernel.json",
    *(f"s-{i}" for i in range(1, 6)),
    *(f"k-{i}" for i in range(1, 6)),
    "work",
    "home",
    "s",
]


def _canary(tmp_path):
    canary = tmp_path / "canary"
    canary.mkdir()
    for name in CANARY_FILES:
        (canary / name).write_text(name)
    (canary / "folder").mkdir()
    (canary / "folder" / "inside").write_text("inside")
    return canary


def _canary_intact(canary):
    names = sorted(p.name for p in canary.iterdir())
    assert names == sorted([*CANARY_FILES, "folder"]), names
    for name in CANARY_FILES:
        assert (canary / name).read_text() == name
    assert (canary / "folder" / "inside").read_text() == "inside"


@pytest.mark.slow
def test_links_for_everything_the_sandbox_can_write(tmp_path):
    """The issue's attack and its variants: the grader's clean-up and
    restart remove, create and connect through nothing the notebook
    swapped; the canary folder outside the sandbox survives."""
    sandbox.check_available()
    canary = _canary(tmp_path)
    nb = nbformat.read(CH01, as_version=4)
    hits = [
        i
        for i, c in enumerate(nb.cells)
        if "def conv_output_size(" in c.source
    ]
    nb.cells.insert(
        hits[0] + 1, new_code_cell(SWAP.format(canary=str(canary)))
    )
    path = tmp_path / "ch01-swap.ipynb"
    path.write_text(notebooks.render(nb))
    report = grade(
        path,
        limits=Limits(cell_timeout=120, total_timeout=400),
    ).to_json()
    summary = format_report(report)
    _canary_intact(canary)
    assert report["graded"], summary
    assert any("KernelDied" in e["error"] for e in report["cell_errors"])
    if os.geteuid() == 0:
        assert report["limits"]["unprivileged_user"], summary


def _session(tmp_path, **options):
    base = tempfile.mkdtemp(prefix="cnnbook-test-", dir=tmp_path)
    scratch = os.path.join(base, "s")
    os.mkdir(scratch)
    built = package.build_package({}, os.path.join(base, "p"))
    limits = Limits(cell_timeout=60, total_timeout=300, **options)
    return Session(scratch, built, limits)


def _stdout(session):
    return "".join(
        o.get("text", "")
        for o in session.slot.cells[0].get("outputs", [])
        if o.get("output_type") == "stream"
    )


@needs_root
def test_the_kernel_runs_as_a_user_of_no_account(tmp_path):
    """Where the grader is root, the sandbox is not: its files belong to
    a user of no account, its sockets' folder is the grader's once the
    kernel has made them, and the connection file is read-only to it."""
    sandbox.check_available()
    session = _session(tmp_path)
    try:
        session.start()
        assert session.uid not in (None, 0)
        error = session.run(
            "import os, pathlib\n"
            "pathlib.Path('mine').write_text('x')\n"
            "from ipykernel.connect import get_connection_file\n"
            "kdir = os.path.dirname(get_connection_file())\n"
            "for path in (kdir, os.path.join(kdir, 's')):\n"
            "    try:\n"
            "        open(os.path.join(path, 'new'), 'w')\n"
            "        print('wrote', path)\n"
            "    except OSError as exc:\n"
            "        print('refused', exc.errno)\n"
            "for name in ('cmdline', 'environ', 'task/1/cmdline',\n"
            "             'task/1/environ'):\n"
            "    try:\n"
            "        text = open(f'/proc/1/{name}', 'rb').read()\n"
            "        print('pid 1', name, len(text), text[:2000])\n"
            "    except OSError as exc:\n"
            "        print('pid 1', name, 'unreadable', exc.errno)\n",
            30,
        )
        assert error is None, error
        out = _stdout(session)
        assert "wrote" not in out and out.count("refused") == 2, out
        # red team 4, attack 5: bubblewrap's command line (process 1 of the
        # sandbox) named the grader's folders; it reads as nothing now
        # (red team 5: and under its thread's folder, /proc/1/task/1)
        assert out.count("pid 1") == 4, out
        assert "/tmp/cnnbook" not in out and session.scratch_dir not in out
        assert "--setenv" not in out and "--bind" not in out, out
        mine = os.stat(os.path.join(session.scratch_dir, "work", "mine"))
        assert mine.st_uid == session.uid
        sockets = os.stat(os.path.join(session.kdir, "s"))
        assert sockets.st_uid == os.geteuid()
        assert session.confinement.group.pids(), "kernel not in its group"
    finally:
        session.stop()
    assert session.kernels is None and session.kdir is None
    assert not os.path.ismount(session.scratch_dir)


SPAWN = """
import subprocess, sys
code = "b = bytearray({each}); import time; time.sleep(2); print('held')"
procs = [
    subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    for _ in range({count})
]
print([p.wait() for p in procs])
"""


@needs_group
def test_memory_is_bounded_for_the_sandbox_not_each_process(tmp_path):
    """Three processes of 160 MiB each, well under the per-process limit
    (6144 MiB of address space), do not fit a 320 MiB sandbox."""
    sandbox.check_available()
    session = _session(tmp_path, sandbox_memory_mb=320)
    try:
        session.start()
        error = session.run(SPAWN.format(each=160 * MiB, count=3), 60)
    finally:
        session.stop()
    report = session.limits_report
    assert report["memory_mb"] == 320
    assert report["oom_kills"] >= 1, (error, report)
    assert report["peak_memory_mb"] <= 320


FILL = """
import os
written = 0
for i in range(4):
    try:
        with open(f"big{i}", "wb") as fh:
            for _ in range(24):
                fh.write(bytes(2**20))
                written += 1
    except OSError as exc:
        print("stopped", exc.errno, written)
        break
else:
    print("wrote all", written)
"""


@needs_root
def test_the_scratch_folder_is_bounded_in_total(tmp_path):
    """Four files of 24 MiB, each under the 1024 MiB file-size limit, do
    not fit a 64 MiB scratch folder."""
    sandbox.check_available()
    if ScratchTmpfs.unavailable():
        pytest.skip(ScratchTmpfs.unavailable())
    session = _session(tmp_path, scratch_mb=64)
    try:
        session.start()
        assert session.run(FILL, 60) is None
        out = _stdout(session)
    finally:
        session.stop()
    assert "stopped 28" in out, out  # ENOSPC
    written = int(out.split()[-1])
    assert 40 <= written <= 64, out
    assert session.limits_report["scratch_mb"] == 64


FORK = """
import os, time
made = refused = 0
for _ in range(200):
    try:
        pid = os.fork()
    except BlockingIOError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(20)
        os._exit(0)
    made += 1
print(made, refused)
"""


@needs_group
def test_processes_are_bounded_for_the_sandbox(tmp_path):
    sandbox.check_available()
    session = _session(tmp_path, sandbox_processes=96)
    try:
        session.start()
        assert session.run(FORK, 60) is None
        made, refused = map(int, _stdout(session).split())
    finally:
        session.stop()
    assert made < 96 and refused == 200 - made
    assert session.limits_report["max_processes"] == 96
    assert session.limits_report["peak_processes"] <= 96


def test_the_reports_limits_follow_the_schema_and_the_page():
    """``limits`` of a report is Confinement.describe(); the schema holds
    it (and refuses a mechanism it does not know), the reference page
    lists its fields."""
    import jsonschema

    from cnnbook.grading import report

    support = cgroups.detect(prefer=("none",))
    confinement = Confinement("/nonexistent", 512, 64, 0)
    confinement.group = SandboxGroup(512, 64, support=support)
    with confinement:
        described = confinement.describe()
    assert described["mechanism"] == "none"
    assert described["memory_mb"] is None and described["scratch_mb"] is None
    assert any("prlimit" in note for note in described["notes"])
    made = report.Report("x.ipynb", sandboxed=True, limits=described)
    data = made.to_json()
    assert data["limits"] == described
    data["limits"] = dict(described, mechanism="ulimit")
    with pytest.raises(jsonschema.ValidationError):
        report.validate(data)
    page = (ROOT / "book" / "grading-reference.md").read_text()
    assert report.field_table("limits") in page
