"""Shared fixtures and the environment every test runs in."""

import os
import pathlib
import shutil
import subprocess
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("CNNBOOK_DATA", str(ROOT / ".data"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CNNBOOK_PROFILE", "smoke")


@pytest.fixture(autouse=True)
def _eager_switch_restored():
    """setup() under smoke makes TensorFlow run functions eagerly for the
    whole process (cnnbook.machine.smoke_eagerly): put the switch back
    after each test, so that no test inherits it from one that ran
    before it in the same worker."""
    tf = sys.modules.get("tensorflow")
    before = tf.config.functions_run_eagerly() if tf else False
    yield
    tf = sys.modules.get("tensorflow")
    if tf is not None and tf.config.functions_run_eagerly() != before:
        tf.config.run_functions_eagerly(before)


@pytest.fixture(scope="session")
def root():
    return ROOT


def run_cli(*args, timeout=900):
    """``python -m cnnbook ARGS`` in a subprocess; returns CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "cnnbook", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stored_output(notebook):
    """All stored text output of ``notebooks/NOTEBOOK`` (a real run's)."""
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )


def solution_namespace(stem):
    """The globals left by running the code of ``solutions/STEM.ipynb``
    (its check cells left out): the answers a learner would submit."""
    nb = nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", as_version=4)
    ns = {"__name__": f"solution_{stem.replace('-', '_')}"}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if "check" in cell.metadata.get("tags", []):
            continue
        exec(compile(cell.source, f"<{stem} cell {index}>", "exec"), ns)
    return ns


def assert_reference_answers_pass(chapter, ns, seed, at_least=3):
    """The answers in ``ns`` pass every exercise of ``chapter``, visible
    and hidden checks (drawn with ``seed``); there are ``at_least`` of
    them."""
    from cnnbook.grading.chapters import exercises
    from cnnbook.grading.runner import run_exercise

    found = exercises(chapter)
    assert len(found) >= at_least, [ex.key for ex in found]
    for ex in found:
        result = run_exercise(ex, ns, hidden=True, seed=seed)
        assert result.passed, (ex.key, result.message)


def page_text(page):
    """``book/PAGE`` with its whitespace collapsed, for phrase searches."""
    return " ".join((ROOT / "book" / page).read_text().split())


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """The HTML book, built once a session as `make book` builds it.

    Warnings are errors (``-W -n``). Returns the ``_build/html`` folder.
    Tests that use it carry ``xdist_group("book")``, so that under
    ``pytest -n`` they share one worker and one build.
    """
    out = tmp_path_factory.mktemp("book")
    jb = ROOT / ".venv" / "bin" / "jupyter-book"
    cmd = [
        str(jb) if jb.exists() else "jupyter-book",
        "build",
        str(ROOT),
        "--path-output",
        str(out),
        "--warningiserror",
        "--nitpick",
        "--keep-going",
        "--builder",
        "html",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (
        result.stdout[-5000:] + result.stderr[-5000:]
    )
    return out / "_build" / "html"


CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


def chromium_path():
    """Debian's Chromium, which the browser tests drive.

    Without it the test fails (it never skips): CI must not be green
    without its browser tests. ``make system-deps`` installs it.
    """
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail(
            "Debian's chromium is not installed, and the browser tests "
            "need it: run `make system-deps` (as root it installs it; "
            "otherwise it prints the apt-get line to run)",
            pytrace=False,
        )
    return path


def launch_chromium(playwright):
    """Headless Chromium, offline-minded, through Playwright."""
    return playwright.chromium.launch(
        executable_path=chromium_path(), args=list(CHROMIUM_ARGS)
    )


def redraw_script():
    """scripts/redraw_figures.py as a module (it is a script, not part of
    the package)."""
    import importlib.util

    path = ROOT / "scripts" / "redraw_figures.py"
    spec = importlib.util.spec_from_file_location("redraw_figures", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script
