"""The learner's kernel, in the sandbox, cell by cell.

Introduced with the grader (Chapter 1). A :class:`Session` starts a
Jupyter kernel inside the bubblewrap sandbox (:mod:`cnnbook.grading.sandbox`)
with the stripped package (:mod:`cnnbook.grading.package`) on its path,
runs cells one at a time with a time limit each through the package's one
executor (:mod:`cnnbook.execution`, output capped), and after a timeout or
a dead kernel starts a fresh kernel and replays the cells that worked. It
never touches the learner's notebook: it runs sources, in cells of its own.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import matplotlib
import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from cnnbook import execution
from cnnbook.data import cache_dir
from cnnbook.grading import sandbox

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
    import cnnbook.grading.wire
    sys.modules["_cnnbook_serve"] = cnnbook.grading.wire
_cnnbook_prelude()
del _cnnbook_prelude
"""


class SandboxedKernelManager(AsyncKernelManager):
    """Starts ``python -m ipykernel_launcher`` behind a command prefix.

    The kernel talks over Unix sockets in the scratch folder (the
    sandbox has no network, not even the host's loopback).
    """

    cnnbook_prefix: list = []

    def format_kernel_cmd(self, extra_arguments=None):
        return [
            *self.cnnbook_prefix,
            sys.executable,
            "-Xfrozen_modules=off",
            "-m",
            "ipykernel_launcher",
            "-f",
            self.connection_file,
        ]


class Session:
    """A kernel that can be restarted and brought back to where it was."""

    def __init__(self, scratch, package_dir, limits, overlays=()):
        self.scratch_dir, self.limits = scratch, limits
        self.package_dir, self.overlays = package_dir, overlays
        self.workdir = os.path.join(scratch, "work")
        # nbclient stores each executed cell into its notebook: the
        # session's own, of one slot, never the learner's
        self.slot = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell("")]
        )
        self.client = None
        self.replay = []  # sources of the cells that ran to completion
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
        km = SandboxedKernelManager(
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
        self.client = execution.client(
            self.slot,
            self.workdir,
            self.limits.cell_timeout,
            output_limit=OUTPUT_LIMIT,
            allow_errors=True,
            interrupt_on_timeout=False,
            record_timing=False,
            iopub_timeout=10,
        )
        self.client.km = km
        self.client.start_new_kernel(
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.client.start_new_kernel_client()
        error = self.run(
            _PRELUDE.format(memory=int(self.limits.memory_mb) * 2**20),
            timeout=max(60, self.limits.cell_timeout),
        )
        if error:
            raise RuntimeError(
                f"the grader could not prepare the kernel: {error}"
            )
        for source in self.replay:
            self.run(source, timeout=self.limits.cell_timeout)

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

    def run(self, source, timeout):
        """Execute ``source`` as one cell; return an error string or None.

        After a timeout the kernel is restarted and the good cells
        replayed; a kernel that died is restarted by the caller.
        """
        cell = nbformat.v4.new_code_cell(source)
        self.client.timeout = max(1, int(timeout))
        self.client.reset_output_budget()
        try:
            self.client.execute_cell(cell, 0)
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
        if errors:
            return f"{errors[0].ename}: {errors[0].evalue}"[:500]
        return None


def _copy_font_cache(home):
    """Give the sandbox matplotlib's font list (else it rebuilds it, slowly,
    in every grade)."""
    target = os.path.join(home, ".matplotlib")
    if os.path.isdir(target):
        return
    os.makedirs(target)
    try:
        cache = matplotlib.get_cachedir()
    except Exception:  # noqa: BLE001 - no cache: the sandbox builds one
        return
    for path in glob.glob(os.path.join(cache, "fontlist-*.json")):
        shutil.copy(path, target)
