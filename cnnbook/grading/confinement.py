"""Everything that bounds one grade's sandbox as a whole.

The scratch folder the grader shares with the kernel is a tmpfs of fixed
size (:class:`ScratchTmpfs`, root only); its pages are memory, charged to
the group of the process that wrote them
(:class:`cnnbook.grading.limits.SandboxGroup`). :class:`Confinement` puts
the group, the tmpfs and the user the sandbox runs as
(:func:`sandbox_uid`) together for one grade.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import subprocess

from cnnbook.grading.cgroups import LimitsUnavailable
from cnnbook.grading.limits import SandboxGroup


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
