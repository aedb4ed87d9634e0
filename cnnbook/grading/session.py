"""The learner's kernel, in the sandbox, cell by cell.

Introduced with the grader (Chapter 1). A :class:`Session` starts a
Jupyter kernel inside the bubblewrap sandbox (:mod:`cnnbook.grading.sandbox`)
with the stripped package (:mod:`cnnbook.grading.package`) on its path,
runs cells one at a time with a time limit each through the package's one
executor (:mod:`cnnbook.execution`, output capped), and after a timeout or
a dead kernel starts a fresh kernel and replays the cells that worked. It
never touches the learner's notebook: it runs sources, in cells of its own.

The whole sandbox is bounded by
:class:`cnnbook.grading.confinement.Confinement` (a cgroup for its memory
and processes, the scratch folder as a tmpfs of fixed size, an
unprivileged user of its own where the grader is root).
The kernel's connection file and sockets live in a folder of the grader's
that the sandbox sees read-only (the sockets' own folder writable only
until the kernel has made them, where the sandbox runs as its own user):
nothing the grader removes or connects to is a path the notebook's code
can change.
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
import zmq
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from cnnbook import execution
from cnnbook.data import cache_dir
from cnnbook.grading import confinement, sandbox

OUTPUT_LIMIT = 100_000  # characters of output kept per cell (errors always)
# the largest message the grader takes from the kernel: cell outputs and
# errors are small (the grader's requests and answers go through files)
MAX_MESSAGE_BYTES = 32 * 2**20


# the only variables of the grader's environment the kernel sees (the
# rest may name the grader's folders and files, such as CNNBOOK_RESULTS,
# or hold what is not the learner's business); CNNBOOK_DATA is the
# sandbox's own copy, CNNBOOK_PROFILE the grade's
KERNEL_ENV = frozenset(
    {
        "LANG",
        "LC_ALL",
        "OMP_NUM_THREADS",
        "TF_NUM_INTEROP_THREADS",
        "CNNBOOK_SEED",
        "CNNBOOK_PRECISION",
        "CNNBOOK_TUNE",
        "CNNBOOK_SMOKE_EAGER",
    }
)


@dataclasses.dataclass
class Limits:
    cell_timeout: float = 120.0
    total_timeout: float = 900.0
    check_timeout: float = 60.0
    check_slack: float = 30.0  # import time etc. on top of 2 x check_timeout
    memory_mb: int = 6144  # address-space limit of the kernel; 0: none
    profile: str = "smoke"
    sandbox: bool = True  # False: run the kernel unisolated (--no-sandbox)
    max_processes: int = 2048  # per user (prlimit), threads included
    max_file_mb: int = 1024  # largest file the notebook may write
    # the sandbox as a whole (cnnbook.grading.confinement; 0: no limit)
    sandbox_memory_mb: int = 4096  # every process of it, tmpfs pages too
    sandbox_processes: int = 1024  # its processes and threads together
    scratch_mb: int = 1024  # the scratch folder, where it can be a tmpfs
    tmp_mb: int = 512  # its private /tmp


# Runs first in every kernel, before any of the learner's cells: limits the
# kernel's memory (the sandbox does too) and keeps the function that serves
# the grader's calls under a private name.
_PRELUDE = """
def _cnnbook_prelude():
    import os, resource, sys
    try:
        os.chdir({workdir!r})
    except OSError:  # the notebook's code replaced it: its own loss
        pass
    limit = {memory}
    if limit:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass
    import cnnbook.grading.server
    sys.modules["_cnnbook_serve"] = cnnbook.grading.server
_cnnbook_prelude()
del _cnnbook_prelude
"""


class SandboxedKernelManager(AsyncKernelManager):
    """Starts ``python -m ipykernel_launcher`` behind a command prefix.

    The kernel talks over Unix sockets in the scratch folder (the
    sandbox has no network, not even the host's loopback).
    """

    cnnbook_prefix: list = []
    cnnbook_uid = None  # the sandbox's own user, if any

    def write_connection_file(self, **kwargs):
        super().write_connection_file(**kwargs)
        if self.cnnbook_uid is not None:  # the kernel must read it
            os.chown(self.connection_file, self.cnnbook_uid, -1)

    def client(self, **kwargs):
        """The grader's client of the kernel, whose sockets refuse a
        message over :data:`MAX_MESSAGE_BYTES`: zmq drops such a message
        (and its sender) before it is read, so no message of the kernel
        can make the grader hold more than that at once."""
        kc = super().client(**kwargs)
        kc.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        return kc

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
        self.confinement = None  # limits of the sandbox as a whole
        self.limits_report = None  # what they were, for the report
        self.uid = None  # the sandbox's user (None: the grader's own)
        self.kernels = None  # the grader's folder of connection folders
        self.kdir = None  # this kernel's, in it

    def _env(self):
        env = {k: v for k, v in os.environ.items() if k in KERNEL_ENV}
        env.update(
            CNNBOOK_PROFILE=self.limits.profile,
            TF_CPP_MIN_LOG_LEVEL="3",
            MPLBACKEND="Agg",
            PYTHONHASHSEED="0",
        )
        return env

    # -- the folders the grader shares with the sandbox
    def _prepare(self):
        """Once per grade: the limits of the whole sandbox, its user, the
        scratch folder's contents and the grader's connection folder."""
        lim = self.limits
        # a short path of its own: a socket's path has at most 107 bytes
        self.kernels = tempfile.mkdtemp(
            prefix=confinement.leftover_name("kernels")
        )
        if lim.sandbox:
            # the scratch tmpfs goes in a mount namespace of this thread's
            # own: it dies with the grader, however the grader ends
            confinement.private_mounts()
            self.uid = confinement.sandbox_uid()
            self.confinement = confinement.Confinement(
                self.scratch_dir,
                lim.sandbox_memory_mb,
                lim.sandbox_processes,
                lim.scratch_mb,
                self.uid,
            ).__enter__()
        if self.uid is not None:
            os.chown(self.scratch_dir, self.uid, self.uid)
        self._make_shared("work")
        _copy_font_cache(os.path.join(self.scratch_dir, "home"))
        self._give(self.scratch_dir, ("home", "home/.matplotlib"))
        if self.uid is not None:
            self._give_tree(os.path.join(self.scratch_dir, "home"))

    def _give(self, folder, names):
        if self.uid is None:
            return
        for name in names:
            os.chown(
                os.path.join(folder, name),
                self.uid,
                self.uid,
                follow_symlinks=False,
            )

    def _give_tree(self, top):
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                self._give(root, (name,))

    def _make_shared(self, name):
        """A fresh folder ``name`` in the scratch folder, the sandbox's
        (made only if absent; an existing entry, maybe a link planted by
        the notebook, is left alone and never followed)."""
        fd = os.open(self.scratch_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.mkdir(name, 0o700, dir_fd=fd)
        except FileExistsError:
            return
        finally:
            os.close(fd)
        self._give(self.scratch_dir, (name,))

    def shared_folder(self, prefix):
        """A fresh folder in the scratch space for the grader's requests:
        (its path, a descriptor of it opened without following a link)."""
        fd = os.open(self.scratch_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            name = prefix + os.urandom(8).hex()
            os.mkdir(name, 0o700, dir_fd=fd)
            if self.uid is not None:
                os.chown(
                    name, self.uid, self.uid, dir_fd=fd, follow_symlinks=False
                )
            # O_NOFOLLOW: had the notebook swapped it for a link since, the
            # open fails instead of reaching elsewhere
            folder = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd
            )
        finally:
            os.close(fd)
        return os.path.join(self.scratch_dir, name), folder

    def _new_kernel_dir(self):
        """This kernel's connection folder, in the grader's own folder: the
        connection file read-only to the sandbox, the sockets in ``s``."""
        self.kdir = tempfile.mkdtemp(prefix="k", dir=self.kernels)
        os.mkdir(os.path.join(self.kdir, "s"), 0o700)
        if self.uid is not None:
            os.chmod(self.kdir, 0o711)
            os.chown(os.path.join(self.kdir, "s"), self.uid, self.uid)
        return self.kdir

    def _lock_sockets(self):
        """Once the kernel has made its sockets, their folder is the
        grader's again: the sandbox's user can no longer swap a socket
        for a link the grader's connection would follow."""
        if self.uid is not None and self.kdir is not None:
            os.chown(os.path.join(self.kdir, "s"), 0, 0)
            os.chmod(os.path.join(self.kdir, "s"), 0o711)

    def _sandbox_command(self, kdir):
        lim = self.limits
        prefix = sandbox.command(
            self.scratch_dir,
            self.package_dir,
            self._env(),
            memory_mb=lim.memory_mb,
            cpu_seconds=4 * lim.total_timeout + 3600,
            max_processes=lim.max_processes,
            max_file_mb=lim.max_file_mb,
            data_dir=str(cache_dir()),
            overlays=self.overlays,
            tmp_mb=lim.tmp_mb,
            connection_dir=kdir,
            uid=self.uid,
        )
        return prefix

    def start(self):
        if self.kernels is None:
            self._prepare()
        self.starts += 1
        self._make_shared("work")  # again if the notebook deleted it
        kdir = self._new_kernel_dir()
        km = SandboxedKernelManager(
            kernel_name="python3",
            transport="ipc",
            ip=os.path.join(kdir, "s", "k"),
            connection_file=os.path.join(kdir, "kernel.json"),
        )
        if self.limits.sandbox:
            km.cnnbook_prefix = [
                *self.confinement.prefix(),
                *self._sandbox_command(kdir),
            ]
            km.cnnbook_uid = self.uid
            env = {}
        else:
            env = dict(
                os.environ, **self._env(), PYTHONPATH=str(self.package_dir)
            )
        self.client = execution.client(
            self.slot,
            # where the kernel's launcher starts: in the sandbox, the
            # grader's own folder (bubblewrap then changes to the working
            # folder inside); a path in the scratch space may be a link
            kdir if self.limits.sandbox else self.workdir,
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
            _PRELUDE.format(
                memory=int(self.limits.memory_mb) * 2**20,
                workdir=self.workdir,
            ),
            timeout=max(60, self.limits.cell_timeout),
        )
        if error:
            raise RuntimeError(
                f"the grader could not prepare the kernel: {error}"
            )
        self._lock_sockets()
        for source in self.replay:
            self.run(source, timeout=self.limits.cell_timeout)

    def _stop_kernel(self):
        if self.client is not None and self.client.km is not None:
            try:
                self.client._cleanup_kernel()  # noqa: SLF001 - no public API
            except Exception:  # noqa: BLE001 - a dead kernel may refuse
                pass
        self.client = None
        if self.kdir is not None:
            # the grader's own folder (the sandbox saw it read-only);
            # rm -rf never follows a link inside it
            confinement.remove_tree(self.kdir)
            self.kdir = None

    def stop(self):
        """Stop the kernel and end the grade's sandbox: every process left
        in its group killed, its limits and usage kept in
        ``limits_report``, the scratch tmpfs unmounted."""
        self._stop_kernel()
        if self.confinement is not None:
            self.confinement.close()
            self.limits_report = self.confinement.describe()
            self.confinement = None
        if self.kernels is not None:
            confinement.remove_tree(self.kernels)
            self.kernels = None

    def restart(self):
        self._stop_kernel()
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
