"""Shared fixtures and the environment every test runs in."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("CNNBOOK_DATA", str(ROOT / ".data"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CNNBOOK_PROFILE", "smoke")


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


def page_text(page):
    """``book/PAGE`` with its whitespace collapsed, for phrase searches."""
    return " ".join((ROOT / "book" / page).read_text().split())
