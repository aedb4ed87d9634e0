"""Answers out of reach for real (issue #22, item 1).

An audit of everything the sandbox can read that computes a graded
answer: the stripped copy of :mod:`cnnbook` (no answer's definition, no
copy of one under another name), Keras's applications and their compiled
bytecode (covered, so ``marshal`` gives nothing back), and no other copy
of those networks in site-packages. Then exercises that ask for an
operation earn 0 when a library's function does the work, however the
notebook reaches that function: in chapter 1 TensorFlow, Keras, JAX, SciPy
and np.pad are absent from the sandbox (the exercise earns 0 with the
message that says so), and the in-process tripwire is the second layer,
the one in force for the NumPy functions chapter 1 keeps (np.correlate)
and for chapter 3's 3.3 (TensorFlow present). Sizes are exact integers.
"""

import ast
import json
import marshal
import pathlib
import subprocess
import sys
import textwrap

import nbformat
import numpy as np
import pytest
from conftest import ROOT
from nbformat.v4 import new_code_cell

from cnnbook import notebooks
from cnnbook.grading import api, chapters, package, sandbox, tripwire
from cnnbook.grading.api import CheckFailure
from cnnbook.grading.grade import grade
from cnnbook.grading.report import format_report
from cnnbook.grading.runner import run_exercise
from cnnbook.grading.session import Limits

CH01 = ROOT / "solutions" / "ch01-layer-arithmetic.ipynb"
CH03 = ROOT / "solutions" / "ch03-alexnet.ipynb"
FULL = {"1.1": 1, "1.2": 1, "1.3": 1, "1.4": 1, "1.5": 3, "1.6": 2}
LIMITS = Limits(
    cell_timeout=120, total_timeout=400, check_timeout=60, check_slack=30
)


def _has_sandbox():
    try:
        sandbox.check_available()
    except sandbox.SandboxUnavailable:
        return False
    return True


needs_sandbox = pytest.mark.skipif(
    not _has_sandbox(), reason="no bubblewrap sandbox on this machine"
)


# ------------------------------------------------------------- the audit
def _functions(tree):
    """name -> normalised dump of every function defined in ``tree``
    (docstrings left out, so a renamed copy still compares equal)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = list(node.body)
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                body = body[1:]
            dump = ast.dump(ast.Module(body=body, type_ignores=[]))
            out.setdefault(dump, []).append(node.name)
    return out


def _answer_functions(answers):
    """Dumps of the bodies of every function that answers an exercise
    (each ANSWERS entry; None: every function of that module)."""
    found = {}
    for module, (keys, names) in answers.items():
        path = package.PACKAGE.joinpath(*module.split(".")[1:])
        path = path.with_suffix(".py")
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            ):
                continue
            if names is not None and node.name not in names:
                continue
            for fn in ast.walk(node):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                # short bodies (`return sum(r.params for r in self)`) are
                # too common to mean a copy: only real computations count
                if sum(1 for _ in ast.walk(fn)) < 40:
                    continue
                for dump in _functions(ast.Module(body=[fn], type_ignores=[])):
                    if fn.name in (names or [fn.name]) or names is None:
                        found[dump] = (module, fn.name, keys)
    return found


@pytest.mark.parametrize("chapter", chapters.known())
def test_the_sandbox_package_holds_no_answer(chapter, tmp_path):
    """Every module of the stripped copy: no definition of an answer's
    name survives, and no function anywhere in the copy (private helpers
    included) has the body of an answer under another name."""
    resolved = chapters.resolve(chapter)
    package.build_package(resolved.answers, tmp_path)
    answers = _answer_functions(resolved.answers)
    left_out = {
        (module, name)
        for module, (_, names) in resolved.answers.items()
        for name in (names or [])
    }
    for path in sorted((tmp_path / "cnnbook").rglob("*.py")):
        rel = path.relative_to(tmp_path).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert (module, node.name) not in left_out, (path, node.name)
        for dump, names in _functions(tree).items():
            assert dump not in answers, (
                f"{path} defines {names}, a copy of {answers[dump]}"
            )
    # nothing compiled travels with the copy
    assert not list((tmp_path / "cnnbook").rglob("*.pyc"))


def test_the_audit_finds_a_renamed_copy(tmp_path):
    """The audit above is not vacuous: a private copy of an answer, put
    in a module the sandbox keeps, is caught."""
    resolved = chapters.resolve("ch01")
    answers = _answer_functions(resolved.answers)
    source = (package.PACKAGE / "reference.py").read_text()
    node = next(
        n
        for n in ast.parse(source).body
        if isinstance(n, ast.FunctionDef) and n.name == "pool_forward"
    )
    node.name = "_helper"
    copied = ast.parse(ast.unparse(node))
    assert any(dump in answers for dump in _functions(copied))


def _covered(chapter_ids=("ch04", "ch05")):
    modules = {}
    for chapter in chapter_ids:
        modules.update(chapters.resolve(chapter).keras_applications)
    return modules


def test_every_compiled_copy_of_a_covered_keras_file_is_covered(tmp_path):
    modules = _covered()
    made = package.keras_overlays(modules, tmp_path)
    targets = {str(target) for _, target in made}
    root = package.applications_root()
    for name in modules:
        source = root / f"{name}.py"
        assert str(source) in targets
        for pyc in package.compiled_copies(source):
            assert str(pyc) in targets, pyc
    # this machine's Keras has them compiled: the cover is not vacuous
    covers = [(c, t) for c, t in made if str(t).endswith(".pyc")]
    assert covers
    # and what covers them is the stand-in's bytecode: unmarshalled, it
    # defines the networks as the stand-in that refuses to build them
    for cover, _ in covers:
        code = marshal.loads(cover.read_bytes()[16:])
        assert "_LeftOut" in code.co_names, cover


def test_the_editable_install_does_not_name_the_repository(tmp_path):
    """The finder and .pth of an editable install, and direct_url.json,
    name the repository's folder: covered with empty files."""
    made = package.keras_overlays({}, tmp_path)
    covered = {str(t) for _, t in made}
    for folder in {p for p in sys.path if p.endswith("site-packages")}:
        for path in pathlib.Path(folder).glob("__editable__*cnnbook*"):
            assert str(path) in covered
    for cover, _ in made:
        assert cover.read_bytes() == b""


def _public_builders(modules):
    root = package.applications_root()
    names = set()
    for name in modules:
        tree = ast.parse((root / f"{name}.py").read_text())
        names |= {
            n.name
            for n in tree.body
            if isinstance(n, ast.FunctionDef) and n.name[:1].isupper()
        }
    return names


def test_no_other_copy_of_the_covered_networks_is_installed():
    """``tf.keras.applications``, ``keras._tf_keras`` and the like only
    re-export Keras's files; no other installed file (a
    ``keras_applications`` or ``tf_keras`` package) defines them."""
    modules = _covered()
    builders = sorted(_public_builders(modules))
    assert {"ResNet50", "VGG16"} <= set(builders)
    site = {p for p in sys.path if p.endswith("site-packages")}
    pattern = r"^def (" + "|".join(builders) + r")\("
    done = subprocess.run(
        ["grep", "-rlE", "--include=*.py", pattern, *sorted(site)],
        capture_output=True,
        text=True,
    )
    root = package.applications_root()
    covered = {str(root / f"{name}.py") for name in modules}
    found = set(done.stdout.split()) - covered
    assert not found, found


AUDIT = textwrap.dedent(
    """
    import json, marshal, os, sys
    covered, builders = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
    found = []

    def names(code):
        out = {code.co_name}
        for c in code.co_consts:
            if hasattr(c, "co_code"):
                out |= names(c)
        return out

    root = os.path.dirname(os.path.dirname(os.path.abspath(os.__file__)))
    for top in sys.path:
        apps = os.path.join(top, "keras", "src", "applications")
        if not os.path.isdir(apps):
            continue
        for folder in (apps, os.path.join(apps, "__pycache__")):
            for entry in sorted(os.listdir(folder)):
                if entry.split(".")[0] not in covered:
                    continue
                path = os.path.join(folder, entry)
                data = open(path, "rb").read()
                if entry.endswith(".pyc"):
                    try:
                        code = marshal.loads(data[16:])
                    except Exception:
                        continue
                    hit = names(code) & builders
                else:
                    hit = {b for b in builders if f"def {b}(" in data.decode()}
                if hit:
                    found.append([path, sorted(hit)])
    import importlib
    for name in covered:
        module = importlib.import_module(f"keras.src.applications.{name}")
        for b in builders:
            if hasattr(module, b):
                try:
                    getattr(module, b)()
                except ImportError:
                    continue
                except Exception as exc:
                    found.append([name, b, type(exc).__name__])
    print(json.dumps(found))
    """
)


@needs_sandbox
@pytest.mark.slow
def test_inside_the_sandbox_no_covered_network_can_be_read(tmp_path):
    """The sandbox's own view: every file of Keras's covered applications
    (source and bytecode, read and unmarshalled) holds none of their
    builders, and importing one raises the ImportError that says why."""
    from cnnbook.data import cache_dir

    modules = _covered()
    builders = sorted(_public_builders(modules))
    scratch = tmp_path / "s"
    (scratch / "work").mkdir(parents=True)
    built = package.build_package({}, tmp_path / "p")
    overlays = package.keras_overlays(modules, tmp_path / "k")
    prefix = sandbox.command(
        str(scratch),
        str(built),
        {"TF_CPP_MIN_LOG_LEVEL": "3"},
        data_dir=str(cache_dir()),
        overlays=overlays,
    )
    done = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-c",
            AUDIT,
            json.dumps(sorted(modules)),
            json.dumps(builders),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == [], found


def test_the_sandbox_audit_sees_an_uncovered_bytecode_file(tmp_path):
    """Without the covers the same audit finds the networks (outside the
    sandbox, on the installed files): the test above can fail."""
    modules = _covered()
    builders = sorted(_public_builders(modules))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            AUDIT.replace(
                "import importlib", "import importlib\ncovered = []"
            ),
            json.dumps(sorted(modules)),
            json.dumps(builders),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert any(path.endswith(".pyc") for path, _ in found), found


# --------------------------------------------- exact integers for sizes
def test_a_size_computed_with_a_slash_is_a_named_mistake():
    with pytest.raises(CheckFailure, match="use // : the size is an integer"):
        api.expect_equal(55.0, 55, "conv_output_size(...)")
    with pytest.raises(CheckFailure, match="use //"):
        api.exact_int(np.float64(13.0), "the conv1 entry")
    assert api.exact_int(np.int64(13), "n") == 13
    api.expect_equal(np.int32(55), 55, "n")


def test_alexnet_shapes_computed_with_a_slash_earn_nothing():
    from cnnbook.grading.checks import ch03

    def slash(n):
        return [
            tuple(float(d) for d in shape)
            for shape in ch03.reference_shapes(n)
        ]

    def floor(n):
        return list(ch03.reference_shapes(n))

    ex = next(e for e in chapters.exercises("ch03") if e.key == "3.1")
    with pytest.raises(CheckFailure, match="use // : the size is an integer"):
        ex.visible({"alexnet_shapes": slash})
    ex.visible({"alexnet_shapes": floor})


# ------------------------------------------------- grader-side failures
def test_a_failure_of_the_grader_is_not_blamed_on_the_learner():
    """An error raised in the grader's own code or the standard library
    (a JSON decoder, here) is the grader's, with no line; an error raised
    in a line of the notebook's is the learner's, with its line."""
    grader_side = api.Exercise("ch99", "9.1", "decode", 1, (), json.loads)
    result = run_exercise(grader_side, "{not json")
    assert result.points == 0
    assert "your code" not in result.message
    assert "(line" not in result.message
    assert "the grader failed" in result.message

    namespace = {}
    exec(
        compile("def f(ns):\n    return 1 / 0\n", "<cell 3>", "exec"),
        namespace,
    )
    learner_side = api.Exercise("ch99", "9.2", "divide", 1, (), namespace["f"])
    result = run_exercise(learner_side, {})
    assert result.message == (
        "your code raised ZeroDivisionError: division by zero (line 2)"
    )


# ----------------------------------------------------------- the tripwire
def test_operation_exercises_name_what_they_forbid():
    declared = {
        ex.key: ex.forbidden
        for chapter in ("ch01", "ch03")
        for ex in chapters.exercises(chapter)
        if ex.forbidden
    }
    assert declared == {
        "1.3": tripwire.PAD,
        "1.5": tripwire.CONV,
        "1.6": tripwire.POOL,
        "3.3": tripwire.LRN,
    }
    # every label names a real function of an installed library
    for fragment, name, _ in [f for fs in declared.values() for f in fs]:
        assert fragment and name


def _solution(path=CH01):
    return nbformat.read(path, as_version=4)


def _define(nb, name, body):
    hits = [i for i, c in enumerate(nb.cells) if f"def {name}(" in c.source]
    nb.cells[hits[0]].source = body
    return nb


# A convolution forward whose every dot product is numpy.correlate's (a
# NumPy function chapter 1 keeps, watched by the tripwire): CORRELATE is
# how the body reaches it, PREFIX what runs first in the function.
def _correlating(correlate="np.correlate", prefix=""):
    return (
        "def conv_forward(A_prev, W, b, stride, pad):\n"
        f"{prefix}"
        "    A = zero_pad(A_prev, pad)\n"
        "    m, f, n_C = A.shape[0], W.shape[0], W.shape[3]\n"
        "    n_H = (A.shape[1] - f) // stride + 1\n"
        "    n_W = (A.shape[2] - f) // stride + 1\n"
        "    Z = np.zeros((m, n_H, n_W, n_C))\n"
        "    for i in range(m):\n"
        "        for h in range(n_H):\n"
        "            for w in range(n_W):\n"
        "                s = A[i, h * stride : h * stride + f,\n"
        "                      w * stride : w * stride + f].ravel()\n"
        "                for c in range(n_C):\n"
        f"                    d = {correlate}(s, W[..., c].ravel())[0]\n"
        "                    Z[i, h, w, c] = d + b[c]\n"
        "    return Z\n"
    )


def _absent(what):
    """What the sandbox says when chapter 1's code reaches ``what``."""
    return package.ABSENT_MESSAGE.format(chapter="1", what=what)


# Each attack: (exercise, the cells that replace its definition, cells
# inserted at the top of the notebook (after the set-up cell), the
# exercises it costs, what each of their messages says).
#
# First layer, chapter 1 only: TensorFlow, Keras, JAX, SciPy and np.pad
# are absent from the sandbox. However the notebook reaches them, the
# exercise earns 0 with the message that says so; 1.5, which calls the
# notebook's zero_pad, earns 0 with it when 1.3 used np.pad.
ABSENT = {
    # the plain shortcut
    "np.pad": (
        "1.3",
        "def zero_pad(X, pad):\n"
        "    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))\n",
        "",
        {"1.3", "1.5"},
        [_absent("numpy.pad")],
    ),
    # a reference taken before grading, under another name, through getattr
    "captured-alias": (
        "1.3",
        "def zero_pad(X, pad):\n"
        "    return _fill(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))\n",
        "import numpy\n_fill = getattr(numpy, 'pad')\ndel numpy\n",
        {"1.3", "1.5"},
        [_absent("numpy.pad")],
    ),
    "tf.pad": (
        "1.3",
        "def zero_pad(X, pad):\n"
        "    import tensorflow as tf\n"
        "    p = ((0, 0), (pad, pad), (pad, pad), (0, 0))\n"
        "    return tf.pad(X, p).numpy()\n",
        "",
        {"1.3", "1.5"},
        [_absent("tensorflow")],
    ),
    # scipy's correlate doing the convolution, called from a thread
    "scipy.signal": (
        "1.5",
        "def conv_forward(A_prev, W, b, stride, pad):\n"
        "    import threading\n"
        "    from scipy.signal import correlate\n"
        "    out = {}\n"
        "    def work():\n"
        "        A = zero_pad(A_prev, pad)\n"
        "        m, f, n_C = A.shape[0], W.shape[0], W.shape[3]\n"
        "        n_H = (A.shape[1] - f) // stride + 1\n"
        "        n_W = (A.shape[2] - f) // stride + 1\n"
        "        Z = np.zeros((m, n_H, n_W, n_C))\n"
        "        for i in range(m):\n"
        "            for c in range(n_C):\n"
        "                full = correlate(A[i], W[..., c], mode='valid')"
        "[..., 0]\n"
        "                Z[i, :, :, c] = full[::stride, ::stride][:n_H, :n_W]"
        " + b[c]\n"
        "        out['Z'] = Z\n"
        "    t = threading.Thread(target=work)\n"
        "    t.start()\n"
        "    t.join()\n"
        "    return out['Z']\n",
        "",
        {"1.5"},
        [_absent("scipy")],
    ),
    # scipy's filters doing the pooling
    "scipy.ndimage": (
        "1.6",
        "def pool_forward(A_prev, f, stride, mode='max'):\n"
        "    import scipy.ndimage as ndi\n"
        "    m, h, w, c = A_prev.shape\n"
        "    n_H = (h - f) // stride + 1\n"
        "    n_W = (w - f) // stride + 1\n"
        "    filt = ndi.maximum_filter if mode == 'max' else "
        "ndi.uniform_filter\n"
        "    full = filt(A_prev, size=(1, f, f, 1), mode='constant',\n"
        "                origin=(0, -(f // 2), -(f // 2), 0))\n"
        "    return full[:, : n_H * stride : stride, "
        ": n_W * stride : stride]\n",
        "",
        {"1.6"},
        [_absent("scipy")],
    ),
    "keras.ops": (
        "1.6",
        "def pool_forward(A_prev, f, stride, mode='max'):\n"
        "    import keras\n"
        "    pool = keras.ops.max_pool if mode == 'max' else "
        "keras.ops.average_pool\n"
        "    return np.asarray(pool(A_prev, f, stride))\n",
        "",
        {"1.6"},
        [_absent("keras")],
    ),
}

# Second layer, the tripwire: in chapter 1 it is what keeps the NumPy
# functions the sandbox leaves (np.correlate, np.convolve) from doing the
# work, so its own cases are tested there, on 1.5.
WATCHED = "exercise 1.5 asks you to implement"
TRIPWIRE = {
    "np.correlate": (
        "1.5",
        _correlating(),
        "",
        {"1.5"},
        [WATCHED, "numpy.correlate did the work"],
    ),
    # a copy of the function object, rebuilt from its code before grading
    "function-copy": (
        "1.5",
        _correlating("_copy"),
        "import types, numpy\n"
        "_impl = numpy.correlate._implementation\n"
        "_copy = types.FunctionType(_impl.__code__, _impl.__globals__,\n"
        "    'mine', _impl.__defaults__, _impl.__closure__)\n",
        {"1.5"},
        [WATCHED, "numpy.correlate did the work"],
    ),
    # switching the profile hook off before the library does the work
    "setprofile-off": (
        "1.5",
        _correlating(prefix="    import sys\n    sys.setprofile(None)\n"),
        "",
        {"1.5"},
        [WATCHED, "it set a profile function (sys.setprofile)"],
    ),
    # the library called from a thread the function starts
    "thread": (
        "1.5",
        _correlating(
            "_in_thread",
            "    import threading\n"
            "    def _in_thread(*args):\n"
            "        out = []\n"
            "        t = threading.Thread(\n"
            "            target=lambda: out.append(np.correlate(*args)))\n"
            "        t.start()\n"
            "        t.join()\n"
            "        return out[0]\n",
        ),
        "",
        {"1.5"},
        [WATCHED, "it started a thread the grader cannot watch"],
    ),
    # a thread pool started before the checks does the work while the
    # function waits for it: it runs through the checks, so every watched
    # call of the notebook is unverifiable, not only the one that used it
    "pool-thread": (
        "1.5",
        _correlating("_pooled"),
        "from concurrent.futures import ThreadPoolExecutor\n"
        "_pool = ThreadPoolExecutor(1)\n"
        "_pool.submit(int).result()\n"
        "def _pooled(*args):\n"
        "    return _pool.submit(np.correlate, *args).result()\n",
        {"1.3", "1.5", "1.6"},
        [WATCHED, "threads of the notebook's own were running"],
    ),
}
SHORTCUTS = {**ABSENT, **TRIPWIRE}


@needs_sandbox
@pytest.mark.slow
@pytest.mark.parametrize("case", list(SHORTCUTS))
def test_a_library_doing_the_work_earns_nothing(case, tmp_path):
    """The shortcut's exercise earns 0 with the message of the layer that
    stops it (the absent library, or the tripwire's reason), every
    exercise it does not reach keeps its points."""
    key, body, prelude, zeros, says = SHORTCUTS[case]
    nb = _solution()
    names = {ex.key: ex.names[0] for ex in chapters.exercises("ch01")}
    _define(nb, names[key], body)
    if prelude:
        setup = next(i for i, c in enumerate(nb.cells) if "import" in c.source)
        nb.cells.insert(setup + 1, new_code_cell(prelude))
    path = tmp_path / "ch01-shortcut.ipynb"
    path.write_text(notebooks.render(nb))
    report = grade(path, limits=LIMITS).to_json()
    summary = format_report(report)
    got = {r["key"]: r["points"] for r in report["exercises"]}
    assert got == {k: (0 if k in zeros else v) for k, v in FULL.items()}, (
        summary
    )
    message = next(r for r in report["exercises"] if r["key"] == key)[
        "message"
    ]
    for fragment in says:
        assert fragment in message, summary
    if case in ABSENT:
        # the absent library stops it before the tripwire sees anything
        assert "asks you to implement" not in message, summary


@needs_sandbox
@pytest.mark.slow
def test_tf_local_response_normalisation_earns_nothing(tmp_path):
    nb = _solution(CH03)
    _define(
        nb,
        "lrn",
        "def lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):\n"
        "    import tensorflow as tf\n"
        "    return tf.nn.local_response_normalization(\n"
        "        a, depth_radius=n // 2, bias=k, alpha=alpha, beta=beta\n"
        "    ).numpy()\n",
    )
    path = tmp_path / "ch03-shortcut.ipynb"
    path.write_text(notebooks.render(nb))
    report = grade(path, limits=LIMITS).to_json()
    summary = format_report(report)
    got = {
        r["key"]: (r["points"], r["max_points"]) for r in report["exercises"]
    }
    assert got["3.3"][0] == 0, summary
    assert all(p == m for k, (p, m) in got.items() if k != "3.3"), summary
    message = next(r for r in report["exercises"] if r["key"] == "3.3")[
        "message"
    ]
    assert "tf.nn.local_response_normalization did the work" in message


def test_the_learners_keywords_reach_the_learners_function():
    """The watched call passes every keyword on, even one named like the
    grader's own parameters (a block's ``name=``)."""
    from cnnbook.grading import server

    def block(x, name="block", call=None):
        return (x, name, call)

    assert server._watched("block", block, 1, name="b", call=2) == (1, "b", 2)
