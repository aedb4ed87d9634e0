"""The grader under bad input: a corpus of broken, hostile and odd notebooks.

Every submission is built in a temporary folder from the Chapter 1
solution (or its generated exercise) and graded. Each case states the
points every exercise must get and words the report must contain, and
every case checks that the submitted file is byte-identical afterwards.
The loop and limit cases run with small timeouts to keep the corpus fast.
"""

import hashlib
import json
import time

import nbformat
import pytest
from conftest import ROOT
from nbformat.v4 import new_code_cell

from cnnbook import notebooks
from cnnbook.grading import report as reports
from cnnbook.grading.grade import grade
from cnnbook.grading.session import Limits

SOLUTION = ROOT / "solutions" / "ch01-layer-arithmetic.ipynb"
FULL = {"1.1": 1, "1.2": 1, "1.3": 1, "1.4": 1, "1.5": 3, "1.6": 2}
ZERO = dict.fromkeys(FULL, 0)

# no xdist_group: with `--dist loadgroup` the cases spread over the workers
pytestmark = pytest.mark.slow


def solution():
    return nbformat.read(SOLUTION, as_version=4)


def blank():
    return notebooks.exercise_from_solution(solution())


def index_of(nb, text):
    hits = [i for i, c in enumerate(nb.cells) if text in c.source]
    assert hits, f"no cell contains {text!r}"
    return hits[0]


def define(nb, name, body):
    """Replace the cell defining ``name`` by ``body``."""
    nb.cells[index_of(nb, f"def {name}(")].source = body
    return nb


def insert_after(nb, text, source):
    nb.cells.insert(index_of(nb, text) + 1, new_code_cell(source))
    return nb


def check_cells(nb):
    return [c for c in nb.cells if "check" in c.metadata.get("tags", [])]


def zero(*keys, base=FULL):
    return {k: (0 if k in keys else v) for k, v in base.items()}


# ------------------------------------------------------------- the builders
def edit_checks(nb):
    for c in check_cells(nb):
        key = c.source.split('"')[1]
        c.source = f'print("\u2714 Exercise {key}: full points")'
        c.metadata = {"editable": True, "tags": []}
    return nb


def delete_checks(nb):
    nb.cells = [c for c in nb.cells if c not in check_cells(nb)]
    return nb


def reorder(nb):
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = code[::-1]
    return nb


def break_metadata(nb):
    for c in nb.cells:
        c.metadata = {
            "editable": True,
            "deletable": True,
            "tags": "nonsense",
            "execution": 42,
        }
    nb.metadata["kernelspec"] = {"name": "no-such-kernel"}
    return nb


HARDCODED = """def conv_layer_params(f, n_c_prev, n_c):
    # the answers the visible check asks for, typed in
    return {(3, 3, 10): 280, (5, 10, 20): 5020, (5, 20, 40): 20040,
            (1, 192, 32): 6176}[(f, n_c_prev, n_c)]
"""

PATCHES = """import builtins, json, sys
import numpy
import cnnbook.grading as g
g.run_exercise = lambda ex, ns, **kw: g.Result(ex.key, ex.title, ex.points,
                                              ex.points, "correct", True, True)
g.expect_array = lambda *a, **k: None
g.expect_equal = lambda *a, **k: None
g.CheckFailure = type("Never", (Exception,), {})
numpy.isclose = lambda a, b, **k: numpy.ones(numpy.broadcast(a, b).shape, bool)
numpy.allclose = lambda *a, **k: True
_dump = json.dump
json.dump = lambda obj, fh, **k: _dump(
    dict(obj, points=obj.get("max_points", 0)), fh)
# a fake checking package in the working folder, first on the path
import os
os.makedirs("cnnbook", exist_ok=True)
open("cnnbook/__init__.py", "w").write("")
os.makedirs("cnnbook/grading", exist_ok=True)
open("cnnbook/grading/__init__.py", "w").write("raise SystemExit('fake')\\n")
sys.path.insert(0, os.getcwd())
"""

ZEROS_POOL = """def pool_forward(A_prev, f, stride, mode="max"):
    m, n_H_prev, n_W_prev, n_C = A_prev.shape
    n = (n_H_prev - f) // stride + 1, (n_W_prev - f) // stride + 1
    return np.zeros((m, *n, n_C))  # wrong values, right shape
"""

LOOP_SWALLOW = """def conv_layer_params(f, n_c_prev, n_c):
    import time
    while True:  # swallows the grader's alarm and KeyboardInterrupt
        try:
            time.sleep(0.2)
        except BaseException:
            pass
"""

FILES = """import os, pathlib, shutil
pathlib.Path("notes.txt").write_text("scratch")
os.makedirs("out", exist_ok=True)
for name in os.listdir("."):
    shutil.rmtree(name) if os.path.isdir(name) else os.remove(name)
target = pathlib.Path({path!r})
target.write_text("overwritten by the notebook")
target.unlink()
shutil.rmtree(os.getcwd())
"""

CONV_FWD = solution().cells[index_of(solution(), "def conv_forward(")].source
POOL_FWD = solution().cells[index_of(solution(), "def pool_forward(")].source
FAST = dict(
    cell_timeout=60, total_timeout=240, check_timeout=20, check_slack=30
)
# The loop cases wait for these limits, so they are short. Chapter 1 is
# graded without Keras (its set-up cell imports numpy and the package
# only): the honest cells ran within a 1 s cell limit on a 2-core machine
# at load 9 (measured), so 5 s leaves the loops all the waiting and the
# set-up cell a fivefold margin. The loop that swallows the checks' alarm
# is cut at check_timeout + check_slack; the slack (the kernel reading and
# answering one call) needs well under a second for chapter 1's checks.
LOOP = dict(cell_timeout=5, total_timeout=240, check_timeout=4, check_slack=6)
# the whole grade's limit in the case that sleeps past it
DEADLINE = 10

# name: (build(path) -> bytes, points per exercise, {where: [words]}, limits)
# where is an exercise key, "cells" (the cell errors) or "problems".
CASES = {
    "solution": (solution, FULL, {}, FAST),
    "blank": (blank, ZERO, {k: ["not answered yet"] for k in FULL}, FAST),
    "syntax-error": (
        lambda: define(
            solution(),
            "conv_forward",
            "def conv_forward(A_prev, W, b, stride, pad):\n"
            "    return A_prev +\n",
        ),
        zero("1.5"),
        {"1.5": ["conv_forward is not defined", "SyntaxError"]},
        FAST,
    ),
    "name-error-in-function": (
        lambda: define(
            solution(),
            "zero_pad",
            "def zero_pad(X, pad):\n    return np.pad(X, padding)\n",
        ),
        zero("1.3", "1.5"),
        {"1.3": ["NameError", "padding"]},
        FAST,
    ),
    "name-error-at-top-level": (
        lambda: insert_after(
            solution(), "def conv_output_size(", "print(undefined_variable)"
        ),
        FULL,
        {"cells": ["NameError"]},
        FAST,
    ),
    "exception-in-one-exercise": (
        lambda: define(
            solution(),
            "conv_layer_params",
            "def conv_layer_params(f, n_c_prev, n_c):\n"
            "    raise ValueError('I give up')\n",
        ),
        zero("1.2"),
        {"1.2": ["ValueError", "I give up"]},
        FAST,
    ),
    "endless-loop-cell": (
        lambda: insert_after(
            solution(), "def zero_pad(", "while True:\n    pass"
        ),
        FULL,
        {"cells": ["CellTimeout", f"{LOOP['cell_timeout']} s"]},
        LOOP,
    ),
    # (the two cases below drop the check cells: in the notebook each of
    # them would loop too and cost one more cell timeout, nothing new)
    "endless-loop-in-function": (
        lambda: define(
            delete_checks(solution()),
            "conv_single_step",
            "def conv_single_step(a_slice_prev, W, b):\n    while True:\n"
            "        pass\n",
        ),
        zero("1.4", "1.5"),
        {"1.4": ["too long"], "1.5": ["too long"], "cells": ["CellTimeout"]},
        LOOP,
    ),
    "endless-loop-swallowing-interrupts": (
        lambda: define(
            delete_checks(solution()), "conv_layer_params", LOOP_SWALLOW
        ),
        zero("1.2"),
        {"1.2": ["too long"]},
        LOOP,
    ),
    "sleep-past-notebook-limit": (
        lambda: insert_after(
            solution(), 'check("1.3")', "import time\ntime.sleep(600)"
        ),
        # the deadline bounds the whole grade, checks included
        # (book/grading-reference.md): a cell that sleeps past it, under a
        # longer cell limit, stops the grade; what was not run or checked
        # by then earns nothing, the answers that ran before it included
        ZERO,
        {
            "1.1": ["not checked", f"ran past its {DEADLINE} s limit"],
            "1.4": ["not checked", f"ran past its {DEADLINE} s limit"],
            "cells": ["NotRun: the grade stopped early"],
            "problems": [
                f"ran past its {DEADLINE} s limit",
                "were not run",
                "were not checked and earn no points",
            ],
        },
        dict(
            cell_timeout=300,
            total_timeout=DEADLINE,
            check_timeout=20,
            check_slack=30,
        ),
    ),
    "wrong-shape": (
        lambda: define(
            solution(),
            "conv_forward",
            CONV_FWD.replace("return Z", "return Z.transpose(0, 3, 1, 2)"),
        ),
        zero("1.5"),
        {"1.5": ["has shape", "order of the axes"]},
        FAST,
    ),
    "wrong-dtype": (
        lambda: define(
            solution(),
            "conv_forward",
            CONV_FWD.replace(
                "np.zeros((m, n_H, n_W, n_C))",
                "np.zeros((m, n_H, n_W, n_C), dtype=int)",
            ),
        ),
        zero("1.5"),
        {"1.5": ["dtype int64", "expected floats"]},
        FAST,
    ),
    "nan-output": (
        lambda: define(
            solution(),
            "pool_forward",
            POOL_FWD.replace(
                "    return A", "    A[0, 0, 0, 0] = np.nan\n    return A"
            ),
        ),
        zero("1.6"),
        {"1.6": ["contains NaN"]},
        FAST,
    ),
    "right-values-wrong-layout": (
        lambda: define(
            solution(),
            "pool_forward",
            POOL_FWD.replace("    return A", "    return A[:, ::-1]"),
        ),
        zero("1.6"),
        {"1.6": ["wrong places"]},
        FAST,
    ),
    "function-renamed": (
        lambda: define(
            solution(),
            "conv_forward",
            CONV_FWD.replace("def conv_forward(", "def conv_fwd("),
        ),
        zero("1.5"),
        {"1.5": ["conv_forward is not defined"]},
        FAST,
    ),
    "function-deleted": (
        lambda: define(solution(), "pool_forward", ""),
        zero("1.6"),
        {"1.6": ["pool_forward is not defined"]},
        FAST,
    ),
    "check-cells-edited": (lambda: edit_checks(solution()), FULL, {}, FAST),
    "check-cells-edited-blank": (
        lambda: edit_checks(blank()),
        ZERO,
        {"1.1": ["not answered yet"]},
        FAST,
    ),
    "check-cells-deleted": (lambda: delete_checks(solution()), FULL, {}, FAST),
    "check-cells-deleted-blank": (
        lambda: delete_checks(blank()),
        ZERO,
        {},
        FAST,
    ),
    "cells-reordered": (
        lambda: reorder(solution()),
        FULL,
        {"cells": ["NameError"]},
        FAST,
    ),
    "cell-metadata-broken": (
        lambda: break_metadata(solution()),
        FULL,
        {},
        FAST,
    ),
    "visible-answers-hard-coded": (
        lambda: define(solution(), "conv_layer_params", HARDCODED),
        zero("1.2"),
        {"1.2": ["visible check passed", "hidden randomised checks failed"]},
        FAST,
    ),
    "monkeypatched-checks": (
        lambda: insert_after(
            define(blank(), "pool_forward", ZEROS_POOL),
            "def pool_forward(",
            PATCHES,
        ),
        ZERO,
        {"1.6": ["differs at"]},
        FAST,
    ),
    "sys-exit": (
        lambda: define(
            insert_after(
                solution(), "def zero_pad(", "import sys\nsys.exit(3)"
            ),
            "conv_layer_params",
            "def conv_layer_params(f, n_c_prev, n_c):\n    import sys\n"
            "    sys.exit('bye')\n",
        ),
        zero("1.2"),
        {"1.2": ["SystemExit"], "cells": ["SystemExit"]},
        FAST,
    ),
    "os-exit": (
        lambda: insert_after(
            solution(), "def conv_single_step(", "import os\nos._exit(0)"
        ),
        FULL,
        {"cells": ["KernelDied"]},
        FAST,
    ),
    "kernel-killed": (
        lambda: insert_after(
            solution(),
            "def conv_output_size(",
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        ),
        FULL,
        {"cells": ["KernelDied"]},
        FAST,
    ),
    "kernel-killed-while-checked": (
        lambda: define(
            solution(),
            "pool_forward",
            POOL_FWD.replace(
                '    """Max', '    import os\n    os._exit(1)\n    """Max'
            ),
        ),
        zero("1.6"),
        {"1.6": ["stopped the Python kernel"]},
        FAST,
    ),
    "huge-output": (
        lambda: insert_after(
            solution(),
            "def zero_pad(",
            'print("x" * 5_000_000)\nfor i in range(100_000):\n'
            '    print(i, "y" * 40)',
        ),
        FULL,
        {},
        FAST,
    ),
    "huge-allocation": (
        lambda: insert_after(
            insert_after(
                solution(),
                "def zero_pad(",
                "big = np.ones((100_000, 100_000))",
            ),
            "def conv_single_step(",
            "big = np.empty(8 * 2**30, dtype=np.uint8)",
        ),
        FULL,
        {"cells": ["MemoryError", "8.00 GiB"]},
        FAST,
    ),  # the memory limit
    # the sandbox does not even see the submitted file: the write fails
    "files-written-and-deleted": (
        None,
        FULL,
        {"cells": ["FileNotFoundError"]},
        FAST,
    ),
    "invalid-json": (
        lambda: b'{"cells": [{"cell_type": "code", ',
        ZERO,
        {"problems": ["not valid JSON"], "1.1": ["could not be run"]},
        FAST,
    ),
    "empty-file": (lambda: b"", ZERO, {"problems": ["is empty"]}, FAST),
    "json-but-not-a-notebook": (
        lambda: b"[1, 2, 3]",
        ZERO,
        {"problems": ["not a Jupyter notebook"]},
        FAST,
    ),
}


def _bytes(case, path):
    build = CASES[case][0]
    if case == "files-written-and-deleted":
        nb = insert_after(
            solution(),
            "def zero_pad(",
            FILES.format(path=str(path)) + "\nos._exit(0)",
        )
        return notebooks.render(nb).encode()
    made = build()
    return made if isinstance(made, bytes) else notebooks.render(made).encode()


def _text(report, where):
    if where == "cells":
        return " ".join(e["error"] for e in report["cell_errors"])
    if where == "problems":
        return " ".join(report["problems"])
    return next(r["message"] for r in report["exercises"] if r["key"] == where)


@pytest.mark.parametrize("case", list(CASES))
def test_corpus(case, tmp_path):
    _, points, words, limits = CASES[case]
    path = tmp_path / "ch01-submission.ipynb"
    path.write_bytes(_bytes(case, path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    start = time.perf_counter()
    report = grade(path, limits=Limits(**limits)).to_json()
    seconds = time.perf_counter() - start

    summary = reports.format_report(report)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, summary
    assert report["schema_version"] == reports.SCHEMA_VERSION
    assert report["sha256"] == digest
    got = {r["key"]: r["points"] for r in report["exercises"]}
    assert got == points, summary
    assert report["points"] == sum(points.values())
    assert report["max_points"] == sum(FULL.values())
    for row in report["exercises"]:
        assert row["message"], summary  # never a silent zero
        assert row["passed"] == (row["points"] == row["max_points"])
    for where, expected in words.items():
        text = _text(report, where)
        for word in expected:
            assert word in text, (
                f"{where}: {word!r} not in {text!r}\n{summary}"
            )
    if case == "sleep-past-notebook-limit":
        # the deadline fell in the sleeping cell, not in one before it:
        # every cell after the sleeper, and none before, was not run
        nb = nbformat.reads(path.read_text(), as_version=4)
        sleeper = index_of(nb, "time.sleep(600)")
        not_run = [
            e["cell"]
            for e in report["cell_errors"]
            if e["error"].startswith("NotRun")
        ]
        assert not_run and min(not_run) == sleeper + 1, summary
    json.dumps(report)  # serialisable as it stands
    print(
        f"{case}: {report['points']}/{report['max_points']} in {seconds:.1f} s"
    )


def test_check_cells_are_locked_in_every_exercise(root):
    """The generator locks check cells; the grader never needs them."""
    for path in sorted((root / "exercises").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        checks = check_cells(nb)
        assert checks, path
        for cell in checks:
            assert cell.metadata.get("editable") is False, (path, cell.source)
            assert cell.metadata.get("deletable") is False, (path, cell.source)


# A start-up file the notebook plants where IPython would look for one:
# the home folder (inside the writable scratch folder), the running
# kernel's own profile and $IPYTHONDIR. Had a restarted kernel run it, it
# would run before the grader's prelude (before the tripwire is armed).
PLANT = """import builtins, os
payload = "import builtins\\nbuiltins.PLANTED_START_UP_RAN = True\\n"
places = [
    os.path.expanduser("~/.ipython/profile_default/startup"),
    get_ipython().profile_dir.startup_dir,
]
if os.environ.get("IPYTHONDIR"):
    places.append(
        os.path.join(os.environ["IPYTHONDIR"], "profile_default", "startup")
    )
written = []
for place in places:
    try:
        os.makedirs(place, exist_ok=True)
        with open(os.path.join(place, "00-planted.py"), "w") as f:
            f.write(payload)
        written.append(place)
    except OSError:
        pass
assert written, "no start-up file could be planted"
assert not hasattr(builtins, "PLANTED_START_UP_RAN")
"""
ASK = """import builtins
assert not hasattr(builtins, "PLANTED_START_UP_RAN"), (
    "PLANTED: the start-up file ran in the restarted kernel"
)
"""


def test_a_planted_start_up_file_does_not_run_after_a_restart(tmp_path):
    """The kernel's IPython folder is not one the notebook can write: a
    start-up file planted before a restart never runs in the new kernel."""
    nb = insert_after(solution(), "def zero_pad(", PLANT)
    nb = insert_after(
        nb, "no start-up file could be planted", "import os\nos._exit(0)"
    )
    nb = insert_after(nb, "os._exit(0)", ASK)
    path = tmp_path / "ch01-submission.ipynb"
    nbformat.write(nb, path)
    report = grade(path, limits=Limits(**FAST)).to_json()
    summary = reports.format_report(report)
    errors = [e["error"] for e in report["cell_errors"]]
    # the planting cell ran (no error of its own), the kernel was restarted
    # (the one KernelDied), and the cell asking afterwards found no trace
    assert len(errors) == 1 and errors[0].startswith("KernelDied"), summary
    assert report["kernel_starts"] == 2, summary
    assert {r["key"]: r["points"] for r in report["exercises"]} == FULL
