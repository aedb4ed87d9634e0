"""Everything that bounds one grade's sandbox as a whole.

The scratch folder the grader shares with the kernel is a tmpfs of fixed
size (:class:`ScratchTmpfs`, root only); its pages are memory, charged to
the group of the process that wrote them
(:class:`cnnbook.grading.limits.SandboxGroup`). :class:`Confinement` puts
the group, the tmpfs and the user the sandbox runs as
(:func:`sandbox_uid`) together for one grade.

Nothing of a grade outlives a grader that is killed. The tmpfs is
mounted in a mount namespace of the grader's own
(:func:`private_mounts`): the machine's mount table never shows it, and
it goes, pages and all, with the last process that sees it. The grade's
folders and groups carry the grader's process id in their names
(:func:`leftover_name`); :func:`clean_leftovers` removes those of a grader
that is gone, and ``grade-batch`` calls it after each grade's process
ends, ``grade`` before it starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

from cnnbook.grading.cgroups import LimitsUnavailable, detect
from cnnbook.grading.limits import SandboxGroup

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 0x40000


# ------------------------------------------------------------ leftovers
def leftover_name(kind, pid=None):
    """The prefix of a grade's folder or group: ``cnnbook-KIND-PID-``."""
    return f"cnnbook-{kind}-{os.getpid() if pid is None else int(pid)}-"


def remove_tree(path):
    """Remove the folder ``path`` and all in it, never following a link
    and staying on its file system; True when it is gone. GNU ``rm`` walks
    without recursion: ``shutil.rmtree`` ran out of Python's stack on
    1,500 nested folders a notebook made in its scratch space, and the
    grade's clean-up (and every later grade's) stopped there (red team
    10). A folder the notebook made unreadable (without root, the scratch
    space is the grader's user's) is given its owner's rights back first:
    ``chmod -R`` ignores the links it meets."""
    path = os.fspath(path)
    for tool in (None, "chmod"):
        if tool == "chmod":
            _run_tool("chmod", "-R", "u+rwx", "--", path)
        _run_tool("rm", "-rf", "--one-file-system", "--", path)
        if not os.path.lexists(path):
            return True
    return False


def _run_tool(name, *args):
    """A system tool by its absolute path (the grader's PATH may be
    bare); Python's own removal where ``rm`` cannot be found."""
    tool = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/bin/{name}") if os.path.exists(p)),
        None,
    )
    if tool is not None:
        subprocess.run([tool, *args], capture_output=True, check=False)
    elif name == "rm":
        try:
            shutil.rmtree(args[-1], ignore_errors=True)
        except RecursionError:
            pass


@contextlib.contextmanager
def grade_folder(kind="grade", parent=None):
    """A new folder named for this grader (``cnnbook-KIND-PID-...``),
    removed with :func:`remove_tree` when the block ends."""
    path = tempfile.mkdtemp(prefix=leftover_name(kind), dir=parent)
    try:
        yield path
    finally:
        remove_tree(path)


def private_mounts():
    """Move the calling thread (and every process it starts from now on)
    into a mount namespace of its own, with nothing shared back (root
    only); True if it did.

    A tmpfs mounted afterwards exists only there: it is never in the
    machine's mount table, and the kernel frees it when the last process
    of the namespace (the grader, its sandbox) is gone, however the
    grader ends. Each call makes a fresh namespace; one left behind goes
    with the thread.
    """
    if os.geteuid() != 0 or not os.path.exists("/proc/self/ns/mnt"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "cannot make the mounts private")
    return True


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(pid=None):
    """Remove what graders that are gone left behind: their folders
    (``cnnbook-grade-PID-*``, ``cnnbook-kernels-PID-*`` in the folder for
    temporary files), with any tmpfs still mounted in them, and their
    sandboxes' groups (``cnnbook-grade-PID-*``, every process in them
    killed). ``pid``: only that grader's, and only once it is gone; None:
    those of every grader that is gone. Returns the paths removed."""
    pattern = re.compile(r"cnnbook-(grade|kernels)-(\d+)-")
    removed = []

    def gone(name):
        match = pattern.match(name)
        if match is None:
            return False
        owner = int(match.group(2))
        return (pid is None or owner == int(pid)) and not _alive(owner)

    top = tempfile.gettempdir()
    for path in sorted(glob.glob(os.path.join(top, "cnnbook-*-*-*"))):
        if not gone(os.path.basename(path)) or os.path.islink(path):
            continue
        for point in _mounts_under(path):
            subprocess.run(["umount", "-l", point], capture_output=True)
        if remove_tree(path):
            removed.append(path)
    for parent in set(detect(("cgroup-v1", "cgroup-v2")).parents.values()):
        for path in sorted(glob.glob(os.path.join(parent, "cnnbook-grade-*"))):
            if gone(os.path.basename(path)) and _remove_group(path):
                removed.append(path)
    return removed


def _mounts_under(path):
    points = []
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                point = line.split()[1].replace("\\040", " ")
                if point == path or point.startswith(path + "/"):
                    points.append(point)
    except OSError:
        pass
    return sorted(points, reverse=True)


def _remove_group(path):
    """Kill every process in the group at ``path``, then remove it."""
    for _ in range(100):
        try:
            with open(os.path.join(path, "cgroup.procs")) as fh:
                pids = [int(x) for x in fh.read().split()]
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return False
        time.sleep(0.05)
    return False


# ------------------------------------------------------------ the disk
class ScratchTmpfs:
    """A tmpfs of at most ``size_mb`` MiB mounted on ``path`` (root only),
    owned by ``uid`` (default: root).

    For the scratch folder the grader and the kernel share: bubblewrap's
    own tmpfs would be invisible to the grader. Unmounted on exit (lazily
    if something still holds it), even when the body raised: nothing in
    it is ever removed one path at a time.
    """

    def __init__(self, path, size_mb, uid=None):
        self.path, self.size_mb, self.uid = str(path), int(size_mb), uid
        self.mounted = False

    @staticmethod
    def unavailable():
        """'' when this process may mount a tmpfs, else why not."""
        if os.geteuid() != 0:
            return "mounting a tmpfs needs root"
        if shutil.which("mount") is None:
            return "mount (util-linux) is not installed"
        return ""

    def __enter__(self):
        why = self.unavailable()
        if why:
            raise LimitsUnavailable(why)
        options = f"size={self.size_mb * 2**20},mode=0700,nosuid,nodev"
        if self.uid is not None:
            options += f",uid={int(self.uid)},gid={int(self.uid)}"
        done = subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                options,
                "cnnbook-scratch",
                self.path,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise LimitsUnavailable(
                f"cannot mount a tmpfs on {self.path}: "
                f"{done.stderr.strip()[:300]}"
            )
        self.mounted = True
        return self

    def used_bytes(self):
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def __exit__(self, *exc):
        if self.mounted:
            done = subprocess.run(
                ["umount", self.path], capture_output=True, text=True
            )
            if done.returncode != 0:  # a process still has a file open
                subprocess.run(["umount", "-l", self.path], check=False)
            self.mounted = False
        return False


# ------------------------------------------------------------ the user
UID_FIRST, UID_COUNT = 1_700_000_000, 100_000_000


def sandbox_uid():
    """A user id of no account on this machine, for one grade's sandbox,
    when the grader is root and can switch to it (``setpriv``); else None.

    The sandbox then runs as that user (:func:`cnnbook.grading.sandbox.
    as_user`), so the process limit applies (the kernel exempts root from
    it) and nothing the grader owns is the sandbox's to change.
    """
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    for _ in range(100):
        uid = UID_FIRST + secrets.randbelow(UID_COUNT)
        try:
            pwd.getpwuid(uid)
        except KeyError:
            try:
                grp.getgrgid(uid)
            except KeyError:
                return uid
    return None


# ------------------------------------------------------------ one grade
class Confinement:
    """Everything that bounds one grade's sandbox as a whole.

    A :class:`SandboxGroup` of ``memory_mb`` and ``max_pids`` (where this
    machine has a mechanism), the scratch folder as a tmpfs of
    ``scratch_mb`` (where the grader may mount one) and the user the
    sandbox runs as (:func:`sandbox_uid`). :meth:`prefix` goes in front of
    the sandbox's command; :meth:`describe` is the report's ``limits``.
    """

    def __init__(self, scratch, memory_mb, max_pids, scratch_mb, uid=None):
        self.scratch, self.scratch_mb, self.uid = scratch, scratch_mb, uid
        self.group = SandboxGroup(memory_mb or None, max_pids or None)
        self.tmpfs = None
        self.notes = []

    def __enter__(self):
        self.group.__enter__()
        if self.group.mechanism == "none":
            self.notes.append(self.group.support.describe())
        why = ScratchTmpfs.unavailable() if self.scratch_mb else "no size"
        if why:
            self.notes.append(f"scratch folder without a total size: {why}")
        else:
            try:
                self.tmpfs = ScratchTmpfs(
                    self.scratch, self.scratch_mb, self.uid
                ).__enter__()
            except BaseException:
                self.group.close()
                raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        try:
            self.group.close()
        finally:
            if self.tmpfs is not None:
                self.tmpfs.__exit__()

    def prefix(self):
        return self.group.prefix()

    def describe(self):
        """What bounded the sandbox, and what it used (a JSON object)."""
        usage = self.group.usage()
        grouped = self.group.mechanism != "none"
        peak = usage.peak_memory_bytes
        return {
            "mechanism": self.group.mechanism,
            "memory_mb": self.group.memory_mb if grouped else None,
            "max_processes": self.group.max_pids if grouped else None,
            "scratch_mb": self.scratch_mb if self.tmpfs else None,
            "unprivileged_user": self.uid is not None,
            "peak_memory_mb": None if peak is None else round(peak / 2**20),
            "peak_processes": usage.peak_processes,
            "oom_kills": usage.oom_kills,
            "notes": list(self.notes + self.group.problems),
        }
