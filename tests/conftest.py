"""Shared fixtures; also keeps each notebook's nbval cells on one worker."""
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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With ``--dist loadgroup``, a notebook's cells must share one kernel,
    and each slow parametrised case may go to any worker."""
    for item in items:
        path = pathlib.Path(str(item.fspath))
        if path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group(path.name))
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def root():
    return ROOT


def run_cli(*args, timeout=900):
    """``python -m cnnbook ARGS`` in a subprocess; returns CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "cnnbook", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
