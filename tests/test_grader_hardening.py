"""The attack corpus of issue #22: a determined student with the source.

Each attack is a notebook built here (from a solution, or a few cells of
its own) and graded through the public command line, grouped into as few
runs as possible: one ``grade-batch`` per chapter (attacks and the honest
solution side by side) and single ``grade`` runs where an option or a
measurement is per grade (``--memory``, a deadline, the grader's peak
memory). Every test asserts what the issue demands: the attack earns 0
on its exercise, leaks nothing, leaves nothing outside its scratch space,
and the honest solution in the same batch keeps full marks.

Attacks that still work against today's grader are marked
``xfail(strict=True)`` with the item of the issue they belong to: a fix
makes the test pass, strict makes that an error, and whoever fixed it
removes the marker.
"""

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from conftest import ROOT
from nbformat.v4 import new_code_cell, new_notebook

from cnnbook import notebooks
from cnnbook.grading import limits as sandbox_limits

pytestmark = pytest.mark.slow

CH01 = ROOT / "solutions" / "ch01-layer-arithmetic.ipynb"
CH03 = ROOT / "solutions" / "ch03-alexnet.ipynb"
CH05 = ROOT / "solutions" / "ch05-resnet.ipynb"
FULL01 = {"1.1": 1, "1.2": 1, "1.3": 1, "1.4": 1, "1.5": 3, "1.6": 2}
MiB = 2**20
# the names jupyter_client removes when it stops a kernel, and one more
CANARY_FILES = ["kernel.json", *(f"s-{i}" for i in range(1, 6)), "keep.txt"]


def xfail(item):
    return pytest.mark.xfail(strict=True, reason=f"issue #22: {item}")


# ------------------------------------------------------------ notebooks
def solution(path=CH01):
    return nbformat.read(path, as_version=4)


def define(nb, name, body):
    """Replace the cell that defines ``name`` by ``body``."""
    hits = [i for i, c in enumerate(nb.cells) if f"def {name}(" in c.source]
    assert hits, name
    nb.cells[hits[0]].source = body
    return nb


def cells(chapter, *sources):
    """A notebook of just these code cells, its chapter in the metadata."""
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["cnnbook"] = {"chapter": chapter}
    return nb


def read_notebook(path):
    return nbformat.read(path, as_version=4)


def write(path, nb):
    path.write_text(notebooks.render(nb))
    return path


def canary(folder):
    """A folder of the grading machine that no grade may touch."""
    folder.mkdir()
    for name in CANARY_FILES:
        (folder / name).write_text(f"canary {name}\n")
    return folder


def assert_canary_intact(folder):
    assert sorted(p.name for p in folder.iterdir()) == sorted(CANARY_FILES)
    for name in CANARY_FILES:
        assert (folder / name).read_text() == f"canary {name}\n", name


# ------------------------------------------------------------ runs
# argv: PEAK_FILE COMMAND...; runs COMMAND, writes the peak RSS (KiB) of it
# and everything it reaped, exits with its status
PEAK_LAUNCHER = """
import resource, subprocess, sys
status = subprocess.call(sys.argv[2:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1], "w").write(str(peak))
sys.exit(status if status >= 0 else 128 - status)
"""


def run_measured(args, tmp, timeout, memory_mb=None):
    """``python -m cnnbook ARGS``; returns its exit status, output, wall
    time and the peak RSS of its process tree (the largest of the grader
    and every process it reaped, kernels included).

    The peak is read by a small launcher (PEAK_LAUNCHER), not by ``wait4``
    here: Linux carries a process's high-water RSS across fork and exec,
    so a child of this test process would report at least this process's
    own RSS, several GiB once other tests of the worker have built
    networks (the CI run measured this worker, not the grade). The
    launcher's children start from the launcher's few MiB.

    With ``memory_mb`` the whole tree runs in a memory group of that size
    where this machine has one (sandbox_limits), so that an attack that
    still works cannot take the machine down with it.
    """
    out, err = tmp / "stdout.txt", tmp / "stderr.txt"
    peak = tmp / "peak-rss.txt"
    peak.unlink(missing_ok=True)
    group = sandbox_limits.SandboxGroup(memory_mb=memory_mb)
    if group.mechanism not in ("cgroup-v1", "cgroup-v2"):
        group = None
    with open(out, "wb") as o, open(err, "wb") as e:
        if group is not None:
            group.__enter__()
        try:
            start = time.monotonic()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    PEAK_LAUNCHER,
                    str(peak),
                    sys.executable,
                    "-m",
                    "cnnbook",
                    *map(str, args),
                ],
                cwd=ROOT,
                stdout=o,
                stderr=e,
                start_new_session=True,
                preexec_fn=group.preexec() if group else None,
            )
            timed_out = False
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - start > timeout:
                    timed_out = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.2)
            seconds = time.monotonic() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if group is not None:
                group.__exit__(None, None, None)
    return {
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "seconds": seconds,
        # killed at the timeout, the launcher wrote nothing: the tree's
        # figure from wait4, an upper bound
        "max_rss": (
            int(peak.read_text()) if peak.exists() else usage.ru_maxrss
        )
        * 1024,
        "stdout": out.read_text(errors="replace"),
        "stderr": err.read_text(errors="replace"),
    }


def batch(subs, out, tmp, *options, timeout=600, memory_mb=None):
    run = run_measured(
        [
            "grade-batch",
            subs,
            "--out",
            out,
            "--workers",
            2,
            "--cell-timeout",
            60,
            "--timeout",
            300,
            *options,
        ],
        tmp,
        timeout,
        memory_mb,
    )
    run["reports"] = {
        p.stem: json.loads(p.read_text()) for p in out.glob("*.json")
    }
    summary = out / "summary.csv"
    run["csv"] = (
        summary.read_bytes().decode(errors="replace")
        if summary.exists()
        else ""
    )
    return run


def grade(path, tmp, *options, timeout=600, memory_mb=None):
    report = tmp / "report.json"
    run = run_measured(
        ["grade", path, "--json", report, "--cell-timeout", 60, *options],
        tmp,
        timeout,
        memory_mb,
    )
    run["report"] = json.loads(report.read_text()) if report.exists() else None
    return run


def points(report):
    return {r["key"]: r["points"] for r in report["exercises"]}


def message(report, key):
    return next(r["message"] for r in report["exercises"] if r["key"] == key)


# ------------------------------------------------------------ chapter 1
SHORTCUTS = {
    # 1.3 asks for the padding itself
    "zero_pad": '''
def zero_pad(X, pad):
    """Padding done by NumPy."""
    return np.pad(X, [(0, 0), (pad, pad), (pad, pad), (0, 0)],
                  mode="constant", constant_values=0)
''',
    # 1.5 asks for the loops of a convolution
    "conv_forward": '''
def conv_forward(A_prev, W, b, stride, pad):
    """The convolution done by Keras."""
    import keras
    x = zero_pad(np.asarray(A_prev, dtype=np.float64), pad)
    z = keras.ops.conv(x, np.asarray(W, dtype=np.float64), strides=stride,
                       padding="valid")
    return np.asarray(keras.ops.convert_to_numpy(z), dtype=np.float64) + b
''',
    # 1.6 asks for the pooling loops
    "pool_forward": '''
def pool_forward(A_prev, f, stride, mode="max"):
    """The pooling done by Keras."""
    import keras
    op = keras.ops.max_pool if mode == "max" else keras.ops.average_pool
    a = op(np.asarray(A_prev, dtype=np.float64), f, strides=stride,
           padding="valid")
    return np.asarray(keras.ops.convert_to_numpy(a), dtype=np.float64)
''',
}

# other routes to the package's answers, and a decoder failure
ROUTES = {
    "conv_single_step": '''
def _editable_copy(module):
    """The repository's own file, found through the editable install."""
    import importlib.util, pathlib, sys
    for folder in sys.path:
        for finder in pathlib.Path(folder).glob("__editable__*finder.py"):
            root = finder.read_text().split("'cnnbook': '")[1].split("'")[0]
            spec = importlib.util.spec_from_file_location(
                "_copy", f"{root}/{module}.py")
            copy = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(copy)
            return copy
    raise ImportError("no editable install in view")


def conv_single_step(a_slice_prev, W, b):
    return _editable_copy("reference").conv_single_step(a_slice_prev, W, b)
''',
    "conv_output_size": '''
def conv_output_size(n, f, p=0, s=1):
    """A helper of the package that computes it on the way."""
    from cnnbook import plots

    class Axes:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

        def set_title(self, text, **kwargs):
            self.title = text

    ax = Axes()
    plots.draw_padding(ax, n, p, f, s, "")
    return int(ax.title.split("->")[1].split("x")[0])
''',
    # a mistake, not an attack: the standard library raises, and the
    # report must point at the learner's line (3), not json's
    "conv_layer_params": """
def conv_layer_params(f, n_C_prev, n_C):
    settings = __import__("json").loads("{'f': %d}" % f)
    return (settings["f"] ** 2 * n_C_prev + 1) * n_C
""",
}

KERNEL_FOLDER_LINK = """
import glob, os
# the kernel's connection folder becomes a link to the grader's machine:
# stopping the kernel removes kernel.json and s-1...s-5 through it
for _k in glob.glob(os.path.join(os.path.dirname(os.getcwd()), "k*")):
    os.rename(_k, _k + ".moved")
    os.symlink({canary!r}, _k)
"""

SWAP_EVERYTHING = '''
def pool_forward(A_prev, f, stride, mode="max", _done=[]):
    """Right answer; on the first call every folder and file the sandbox
    can write becomes a link to a folder of the grading machine."""
    import os
    if not _done:
        _done.append(1)
        scratch = os.path.dirname(os.getcwd())
        for folder, dirs, files in os.walk(scratch, topdown=False):
            for name in files:
                path = os.path.join(folder, name)
                os.remove(path)
                os.symlink(os.path.join({canary!r}, name), path)
            for name in dirs:
                path = os.path.join(folder, name)
                if os.path.islink(path):
                    continue
                os.rename(path, path + ".moved")
                os.symlink({canary!r}, path)
    m, n_H_prev, n_W_prev, n_C = A_prev.shape
    n_H, n_W = (n_H_prev - f) // stride + 1, (n_W_prev - f) // stride + 1
    A = np.zeros((m, n_H, n_W, n_C))
    for h in range(n_H):
        for w in range(n_W):
            window = A_prev[:, h * stride:h * stride + f,
                            w * stride:w * stride + f, :]
            A[:, h, w, :] = (window.max(axis=(1, 2)) if mode == "max"
                             else window.mean(axis=(1, 2)))
    return A
'''

NPZ_BOMB_BYTES = 2048 * MiB
NPZ_BOMB = '''
def _bomb_savez(file, **arrays):
    """What the grader reads back: the real answer plus a few MB that
    inflate to {size} bytes."""
    import zipfile
    np.savez = _savez
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED,
                         compresslevel=1, allowZip64=True) as zf:
        for key, value in arrays.items():
            with zf.open(key + ".npy", "w") as fh:
                np.lib.format.write_array(fh, np.asanyarray(value))
        header = {{"descr": "<f8", "fortran_order": False,
                  "shape": ({size} // 8,)}}
        with zf.open("bomb.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            chunk = bytes(16 * 2**20)
            for _ in range({size} // len(chunk)):
                fh.write(chunk)


_savez = np.savez


def conv_forward(A_prev, W, b, stride, pad, _done=[]):
    if not _done:  # the first answer carries the bomb
        _done.append(1)
        np.savez = _bomb_savez
    m, n_H_prev, n_W_prev, _ = A_prev.shape
    f, _, _, n_C = W.shape
    n_H = conv_output_size(n_H_prev, f, pad, stride)
    n_W = conv_output_size(n_W_prev, f, pad, stride)
    Z = np.zeros((m, n_H, n_W, n_C))
    A_pad = zero_pad(A_prev, pad)
    for h in range(n_H):
        for w in range(n_W):
            window = A_pad[:, h * stride:h * stride + f,
                           w * stride:w * stride + f, :]
            Z[:, h, w, :] = np.tensordot(window, W, axes=3) + b
    return Z
'''


@pytest.fixture(scope="module")
def ch01_batch(tmp_path_factory):
    """One grade-batch, --chapter ch01: the honest solution, its duplicate,
    links, a file name that is not UTF-8, and the chapter-1 attacks."""
    tmp = tmp_path_factory.mktemp("ch01")
    subs, out = tmp / "submissions", tmp / "grades"
    subs.mkdir()
    kernel_canary = canary(tmp / "canary-kernel")
    swap_canary = canary(tmp / "canary-swap")

    alice = solution()
    alice.cells.insert(1, new_code_cell('learner = "alice"'))
    write(subs / "alice.ipynb", alice)
    shutil.copy(subs / "alice.ipynb", subs / "carol.ipynb")  # same bytes
    (subs / "bob.ipynb").symlink_to(subs / "alice.ipynb")  # a classmate's
    (subs / "answers.ipynb").symlink_to(CH01)  # the solutions
    eleve = cells("ch01", 'learner = "\u00e9l\u00e8ve"')
    with open(os.path.join(os.fsencode(subs), b"\xe9l\xe8ve.ipynb"), "w") as f:
        f.write(notebooks.render(eleve))

    nb = solution()
    for name, body in SHORTCUTS.items():
        define(nb, name, body)
    write(subs / "shortcuts.ipynb", nb)
    nb = solution()
    for name, body in ROUTES.items():
        define(nb, name, body)
    write(subs / "routes.ipynb", nb)
    nb = solution()
    nb.cells.append(
        new_code_cell(KERNEL_FOLDER_LINK.format(canary=str(kernel_canary)))
    )
    write(subs / "kernel-link.ipynb", nb)
    nb = define(
        solution(),
        "pool_forward",
        SWAP_EVERYTHING.replace("{canary!r}", repr(str(swap_canary))),
    )
    write(subs / "swap-all.ipynb", nb)
    nb = define(
        solution(), "conv_forward", NPZ_BOMB.format(size=NPZ_BOMB_BYTES)
    )
    # without the cell that tries conv_forward, its first call is the
    # grader's, and the bomb goes back with the answer to 1.5
    nb.cells = [c for c in nb.cells if "conv_forward(image" not in c.source]
    write(subs / "npz-bomb.ipynb", nb)

    before = {
        p.name: p.read_bytes() for p in subs.iterdir() if not p.is_symlink()
    }
    run = batch(subs, out, tmp, "--chapter", "ch01", memory_mb=8192)
    run.update(
        subs=subs,
        out=out,
        before=before,
        kernel_canary=kernel_canary,
        swap_canary=swap_canary,
    )
    return run


def test_honest_solution_keeps_full_marks(ch01_batch):
    report = ch01_batch["reports"]["alice"]
    assert points(report) == FULL01, report
    assert report["sandboxed"] is True
    subs = ch01_batch["subs"]
    after = {
        p.name: p.read_bytes() for p in subs.iterdir() if not p.is_symlink()
    }
    assert after == ch01_batch["before"]  # no submission was changed


@pytest.mark.parametrize(
    "key, words",
    [
        # chapter 1 is graded with these libraries absent: the refusal
        # names the library (the tripwire's words where one is present)
        ("1.3", ("np.pad", "numpy.pad")),
        ("1.5", ("keras.ops.conv", "ops.conv", "keras is not available")),
        (
            "1.6",
            (
                "keras.ops.max_pool",
                "ops.max_pool",
                "ops.average_pool",
                "keras is not available",
            ),
        ),
    ],
)
def test_framework_shortcuts_earn_nothing(ch01_batch, key, words):
    report = ch01_batch["reports"]["shortcuts"]
    got = points(report)
    assert got[key] == 0, report
    text = message(report, key)
    assert any(w in text for w in words), text  # says what was used
    # what the notebook answered itself keeps its points
    assert got["1.1"] == got["1.2"] == got["1.4"] == 1, report


def test_the_repository_is_out_of_reach_through_the_editable_install(
    ch01_batch,
):
    report = ch01_batch["reports"]["routes"]
    assert points(report)["1.4"] == 0, report
    assert str(ROOT) not in json.dumps(report)


def test_private_helpers_of_the_package_do_not_answer(ch01_batch):
    """cnnbook.plots.draw_padding computes an output size on the way."""
    report = ch01_batch["reports"]["routes"]
    assert points(report)["1.1"] == 0, report
    assert "must be your own code" in message(report, "1.1")


def test_an_error_in_the_standard_library_points_at_the_learners_line(
    ch01_batch,
):
    report = ch01_batch["reports"]["routes"]
    text = message(report, "1.2")
    assert "JSONDecodeError" in text, text
    lines = re.findall(r"\(line (\d+)\)", text)
    assert lines == ["3"], text  # the cell's line that called json.loads


def test_a_link_in_place_of_the_kernel_folder_deletes_nothing(ch01_batch):
    assert ch01_batch["reports"]["kernel-link"]["graded"]
    assert_canary_intact(ch01_batch["kernel_canary"])


def test_every_writable_path_swapped_for_a_link_changes_nothing(ch01_batch):
    report = ch01_batch["reports"]["swap-all"]
    assert report["graded"], report
    assert_canary_intact(ch01_batch["swap_canary"])


def test_a_compressed_bomb_is_refused_before_it_inflates(ch01_batch, tmp_path):
    report = ch01_batch["reports"]["npz-bomb"]
    assert points(report) == dict(FULL01, **{"1.5": 0}), report
    # graded alone, so that the peak is this grade's (grader and kernel)
    # and not another submission's of the batch
    nb = read_notebook(ch01_batch["subs"] / "npz-bomb.ipynb")
    path = write(tmp_path / "ch01-bomb.ipynb", nb)
    run = grade(path, tmp_path, "--chapter", "ch01", memory_mb=8192)
    assert run["max_rss"] < NPZ_BOMB_BYTES // 2, run["max_rss"]
    assert points(run["report"])["1.5"] == 0, run["report"]


@pytest.mark.parametrize("name", ["bob", "answers"])
def test_a_link_is_not_graded_as_a_submission_of_its_own(ch01_batch, name):
    report = ch01_batch["reports"].get(name)
    said = [
        line
        for line in ch01_batch["stderr"].splitlines()
        + ch01_batch["csv"].splitlines()
        if name in line and "link" in line.lower()
    ]
    if report is not None and report.get("graded") and not said:
        problems = " ".join(report.get("problems", [])).lower()
        assert "link" in problems, report
        assert not report["full_marks"], report


def test_every_name_reaches_the_summary(ch01_batch):
    rows = list(csv.reader(io.StringIO(ch01_batch["csv"])))
    assert rows and rows[0][0] == "name", ch01_batch["csv"]
    names = [r[0] for r in rows[1:]]
    assert len(names) == len(list(ch01_batch["subs"].iterdir())), names
    assert all(r[-1] for r in rows[1:]), rows  # every status written
    assert "Traceback" not in ch01_batch["stderr"], ch01_batch["stderr"]


def test_duplicate_submissions_are_reported(ch01_batch):
    reports = ch01_batch["reports"]
    texts = ch01_batch["stderr"].splitlines() + ch01_batch["csv"].splitlines()
    for name in ("alice", "carol"):
        texts += reports[name].get("problems", [])
    said = [
        t
        for t in texts
        if re.search(r"duplicate|same bytes|identical", t, re.I)
        and "alice" in t
        and "carol" in t
    ]
    assert said, texts[-20:]


# ------------------------------------------------------------ chapter 3
SLASH = '''
def alexnet_shapes(n):
    """The right sizes, divided with / instead of //."""
    convs = [(96, 11, 4, 0, True), (256, 5, 1, 2, True),
             (384, 3, 1, 1, False), (384, 3, 1, 1, False),
             (256, 3, 1, 1, True)]
    shapes, size = [], n
    for filters, f, s, p, pool in convs:
        size = (size + 2 * p - f) / s + 1
        shapes.append((size, size, filters))
        if pool:
            size = (size - 3) / 2 + 1
            shapes.append((size, size, filters))
    return shapes
'''

TF_LRN = '''
def lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):
    """TensorFlow's local response normalisation."""
    import tensorflow as tf
    a = np.asarray(a, dtype=np.float64)
    x = tf.constant(a.reshape(-1, 1, 1, a.shape[-1]), tf.float32)
    out = tf.nn.local_response_normalization(
        x, depth_radius=n // 2, bias=k, alpha=alpha, beta=beta)
    return out.numpy().astype(np.float64).reshape(a.shape)
'''


@pytest.fixture(scope="module")
def ch03_batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ch03")
    subs, out = tmp / "submissions", tmp / "grades"
    subs.mkdir()
    shutil.copy(CH03, subs / "honest.ipynb")
    nb = define(solution(CH03), "alexnet_shapes", SLASH)
    write(subs / "slash.ipynb", define(nb, "lrn", TF_LRN))
    return batch(subs, out, tmp, "--chapter", "ch03")


def test_honest_chapter_3_keeps_full_marks(ch03_batch):
    report = ch03_batch["reports"]["honest"]
    assert report["full_marks"], report


def test_sizes_computed_with_true_division_earn_nothing(ch03_batch):
    report = ch03_batch["reports"]["slash"]
    assert points(report)["3.1"] == 0, report


def test_tensorflow_lrn_earns_nothing(ch03_batch):
    report = ch03_batch["reports"]["slash"]
    assert points(report)["3.3"] == 0, report
    assert "local_response_normalization" in message(report, "3.3")


# ------------------------------------------------------------ chapters 4, 5
BYTECODE = '''
def _from_bytecode(module):
    """A module of keras.applications rebuilt from its compiled cache."""
    import glob, marshal, types
    import keras.src.applications as apps
    folder = apps.__path__[0] + "/__pycache__"
    path = glob.glob(f"{folder}/{module}.cpython-*.pyc")[0]
    with open(path, "rb") as fh:
        code = marshal.loads(fh.read()[16:])
    copy = types.ModuleType(f"keras.src.applications.{module}")
    exec(code, copy.__dict__)
    return copy
'''

RESNET_FROM_BYTECODE = (
    BYTECODE
    + """

def resnet50(input_shape=(224, 224, 3), num_classes=1000):
    return _from_bytecode("resnet").ResNet50(
        weights=None, input_shape=input_shape, classes=num_classes)
"""
)

# every other route to keras's ResNet50 in the chapter-5 sandbox; the
# outcome of each travels back in 5.5's error message
ROUTES_TO_RESNET = """
def _try(make):
    try:
        model = make()
        return f"OK{model.count_params()}"
    except BaseException as exc:
        return "blocked"


def _spec():
    import importlib.util, keras.src.applications as apps
    spec = importlib.util.spec_from_file_location(
        "_r", apps.__path__[0] + "/resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ResNet50(weights=None, input_shape=(32, 32, 3), classes=3)


def _alias():
    import keras
    return keras.applications.resnet.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=3)


def _tf_keras():
    import tensorflow as tf
    return tf.keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=3)


def _resnet_v2():
    from keras.src.applications import resnet_v2
    return resnet_v2.ResNet50V2(
        weights=None, input_shape=(32, 32, 3), classes=3)


def _site_copies():
    # another copy of Keras's ResNet on the machine, not the stand-in
    import glob, importlib.util, sys
    for folder in [*sys.path, "/usr/lib/python3", "/usr/local/lib", "/opt"]:
        for depth in range(4):
            pattern = folder + "/*" * depth + "/applications/resnet.py"
            for path in glob.glob(pattern):
                text = open(path).read()
                if "def ResNet50" in text and "_LeftOut" not in text:
                    spec = importlib.util.spec_from_file_location("_c", path)
                    copy = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(copy)
                    return copy.ResNet50(
                        weights=None, input_shape=(32, 32, 3), classes=3)
    raise ImportError("no other copy")


def degradation_gaps(curves):
    routes = {"spec": _spec, "alias": _alias, "tf_keras": _tf_keras,
              "resnet_v2": _resnet_v2, "site": _site_copies}
    raise ValueError(" ".join(f"{k}={_try(f)}" for k, f in routes.items()))
"""

DENSE_WIDTH = 23170  # 23170 x 23170 float32 weights: 2 GiB
DENSE_BOMB = f'''
def identity_block(x, filters, kernel_size=3, name="block"):
    """A block whose configuration, rebuilt by the grader, is Dense({
    DENSE_WIDTH
}) on a {DENSE_WIDTH}-wide input."""
    import sys
    wire = sys.modules["cnnbook.grading.wire"]

    def grow(config):
        if isinstance(config, dict):
            return {{k: {DENSE_WIDTH} if k == "units" else grow(v)
                    for k, v in config.items()}}
        if isinstance(config, list):
            if len(config) == 2 and config[0] is None:
                return [None, {DENSE_WIDTH}]
            return [grow(v) for v in config]
        return config

    def encode_model(model, arrays, weights):
        small = keras.Sequential([keras.Input((8,)), layers.Dense(8)])
        config = wire._jsonable(keras.saving.serialize_keras_object(small))
        return {{"t": "model", "config": grow(config), "compiled": False}}

    wire._encode_model = encode_model
    return layers.Activation("linear")(x)
'''


@pytest.fixture(scope="module")
def ch05_batch(tmp_path_factory):
    """--chapter ch05: Keras's ResNet50 from its bytecode (5.3), the other
    routes to it (5.5), a model configuration that inflates in the grader
    (5.1), and a Chapter 1 notebook named like Chapter 5."""
    tmp = tmp_path_factory.mktemp("ch05")
    subs, out = tmp / "submissions", tmp / "grades"
    subs.mkdir()
    setup = "import keras\nimport numpy as np\nfrom keras import layers"
    nb = cells("ch05", setup, RESNET_FROM_BYTECODE, ROUTES_TO_RESNET)
    write(subs / "bytecode.ipynb", nb)
    write(subs / "dense-bomb.ipynb", cells("ch05", setup, DENSE_BOMB))
    shutil.copy(CH01, subs / "ch05-resnet.ipynb")
    return batch(subs, out, tmp, "--chapter", "ch05", memory_mb=8192)


def test_resnet50_from_bytecode_earns_nothing(ch05_batch):
    report = ch05_batch["reports"]["bytecode"]
    assert points(report)["5.3"] == 0, report
    assert "must be your own code" in message(report, "5.3")


@pytest.mark.parametrize(
    "route", ["spec", "alias", "tf_keras", "resnet_v2", "site"]
)
def test_other_routes_to_resnet50_are_blocked(ch05_batch, route):
    text = message(ch05_batch["reports"]["bytecode"], "5.5")
    found = re.search(rf"\b{route}=(\S+)", text)
    assert found, text  # the probe ran
    assert found.group(1) == "blocked", text


def test_a_huge_model_configuration_is_refused_before_it_is_built(
    ch05_batch, tmp_path
):
    report = ch05_batch["reports"]["dense-bomb"]
    assert points(report)["5.1"] == 0, report
    # graded alone: the batch's peak is the ResNet-50 submission's kernel
    setup = "import keras\nimport numpy as np\nfrom keras import layers"
    path = write(
        tmp_path / "ch05-dense.ipynb", cells("ch05", setup, DENSE_BOMB)
    )
    run = grade(path, tmp_path, "--chapter", "ch05", memory_mb=8192)
    assert points(run["report"])["5.1"] == 0, run["report"]
    # rebuilt, the 2 GiB of weights would come on top of the grader's own
    assert run["max_rss"] < 2048 * MiB, run["max_rss"]


def test_the_instructors_chapter_wins_over_the_file(ch05_batch):
    report = ch05_batch["reports"]["ch05-resnet"]
    assert report["chapter"] == "ch05", report
    assert report["points"] == 0, report


@pytest.fixture(scope="module")
def ch04_probe(tmp_path_factory):
    """VGG-16 from its bytecode in the chapter-4 sandbox (4.2 is left
    unanswered: the probe's outcome comes back in 4.1's message)."""
    tmp = tmp_path_factory.mktemp("ch04")
    nb = cells(
        "ch04",
        "import keras\nimport numpy as np\nfrom keras import layers",
        BYTECODE
        + """

def vgg_block(num_convs, filters, name=None):
    try:
        model = _from_bytecode("vgg16").VGG16(
            weights=None, include_top=False, input_shape=(32, 32, 3))
        found = f"VGG16 from bytecode: {model.count_params()} parameters"
    except BaseException as exc:
        found = f"blocked: {type(exc).__name__}"
    raise ValueError(found)
""",
    )
    path = write(tmp / "ch04-vgg.ipynb", nb)
    return grade(path, tmp, "--chapter", "ch04", "--timeout", 120)


def test_vgg16_from_bytecode_is_out_of_reach(ch04_probe):
    text = message(ch04_probe["report"], "4.1")
    assert "blocked" in text or "not defined" in text, text
    assert "VGG16 from bytecode" not in text, text


# ------------------------------------------------------------ whole grades
PER_PROCESS = """
import os, subprocess, sys, time
_HOLD = "b = bytearray({mib} * 2**20); print('held', flush=True); input()"
_procs = [subprocess.Popen([sys.executable, "-c", _HOLD],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
          for _ in range({count})]
_said = [p.stdout.readline().strip() == b"held" for p in _procs]
# a process that said "held" may have been killed since, when a later
# one's allocation met the group's limit: count only those still alive
time.sleep(1)
held = sum(s and p.poll() is None for s, p in zip(_said, _procs))
for _p in _procs:
    _p.kill()
    _p.wait()
written = 0
for _i in range(3):
    try:
        with open(f"big{{_i}}", "wb") as _fh:
            os.posix_fallocate(_fh.fileno(), 0, 688 * 2**20)
        written += 1
    except OSError:
        pass


def conv_layer_params(f, n_C_prev, n_C):
    raise ValueError(f"HELD {{held}} WROTE {{written}}")
"""


@pytest.fixture(scope="module")
def per_process(tmp_path_factory):
    """Three processes of 700 MiB under --memory 1024, three files of
    688 MiB under the 1024 MiB file limit (NumPy only: TensorFlow does
    not load under 1024 MiB of address space)."""
    tmp = tmp_path_factory.mktemp("per-process")
    hog = PER_PROCESS.format(count=3, mib=700)
    path = write(tmp / "ch01-hog.ipynb", cells("ch01", "import numpy", hog))
    return grade(path, tmp, "--chapter", "ch01", "--memory", 1024)


@pytest.fixture(scope="module")
def per_file(tmp_path_factory):
    """No memory hogs, three files of 688 MiB under the 1024 MiB file
    limit: only the scratch space as a whole can stop the third."""
    tmp = tmp_path_factory.mktemp("per-file")
    hog = PER_PROCESS.format(count=0, mib=700)
    path = write(tmp / "ch01-hog.ipynb", cells("ch01", "import numpy", hog))
    return grade(path, tmp, "--chapter", "ch01")


@pytest.fixture(scope="module")
def whole_sandbox(tmp_path_factory):
    """Four processes of 1200 MiB under the default limits: each fits the
    address space a process may take, all four do not fit one sandbox."""
    tmp = tmp_path_factory.mktemp("whole-sandbox")
    hog = PER_PROCESS.format(count=4, mib=1200)
    path = write(tmp / "ch01-hog.ipynb", cells("ch01", "import numpy", hog))
    return grade(path, tmp, "--chapter", "ch01", memory_mb=8192)


def hog(run, what):
    """How many of the processes held their memory ("HELD"), or of the
    three files reached their size ("WROTE")."""
    text = message(run["report"], "1.2")
    found = re.search(rf"{what} (\d)", text)
    assert found, text  # the attack ran
    return int(found.group(1))


def held_or_killed(run, most):
    """At most ``most`` of the processes held their memory, or the
    sandbox's memory limit killed the kernel itself (the group counts the
    kill): either way the sandbox as a whole stayed within its bound."""
    report = run["report"]
    text = message(report, "1.2")
    if "KernelDied" in text:
        assert report["limits"]["oom_kills"] >= 1, report["limits"]
        assert points(report).get("1.2", 0) == 0
    else:
        assert hog(run, "HELD") <= most


def test_memory_is_limited_for_the_sandbox_as_a_whole(per_process):
    held_or_killed(per_process, 1)


def test_the_default_sandbox_has_a_memory_bound_of_its_own(whole_sandbox):
    held_or_killed(whole_sandbox, 3)


def test_disk_is_limited_for_the_sandbox_as_a_whole(per_file):
    assert hog(per_file, "WROTE") <= 1


NEVER_ENDS = [
    "import os, time",
    # sleeps only when replayed: the marker survives restarts
    'if os.path.exists("seen"):\n    time.sleep(10**6)\n'
    'open("seen", "w").close()',
    # kills the kernel once, so that the cell above is replayed
    'if not os.path.exists("killed"):\n'
    '    open("killed", "w").close()\n    os._exit(1)',
    "def conv_output_size(n, f, p=0, s=1):\n"
    "    return (n + 2 * p - f) // s + 1",
]


def test_a_grade_ends_at_its_deadline(tmp_path):
    # the replayed sleeper is left out of later replays after one timeout:
    # three kernel starts, then the answer is checked well within this
    deadline, margin = 60, 30
    path = write(tmp_path / "ch01-forever.ipynb", cells("ch01", *NEVER_ENDS))
    run = grade(
        path,
        tmp_path,
        "--timeout",
        deadline,
        "--cell-timeout",
        3,
        timeout=deadline + margin,
    )
    assert not run["timed_out"], f"still running after {run['seconds']:.0f} s"
    report = run["report"]
    assert points(report)["1.1"] == 1, report  # the answer is still checked
    assert any("limit" in p for p in report["problems"]), report


def test_a_name_and_metadata_that_disagree_earn_nothing(tmp_path):
    path = tmp_path / "ch05-resnet.ipynb"
    shutil.copy(CH01, path)  # Chapter 1's notebook, named Chapter 5
    run = grade(path, tmp_path, "--timeout", 120)
    report = run["report"]
    assert not any(
        p for k, p in points(report).items() if k.startswith("1.")
    ), report
    problems = " ".join(report["problems"])
    assert "ch01" in problems and "ch05" in problems, report
