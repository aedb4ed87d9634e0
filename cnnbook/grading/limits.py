"""Limits for a grading sandbox as a whole: memory, processes, disk.

``prlimit`` (:mod:`cnnbook.grading.sandbox`) bounds each process on its
own: three processes may each take the whole memory limit, every file may
reach the file-size limit. The kernel's own mechanisms bound a group of
processes together; :func:`detect` picks the one this machine offers:

``cgroup-v1``
    the v1 ``memory`` and ``pids`` controllers, writable by root on
    machines like the CI's: a child group per grade (``memory.limit_in_
    bytes``, ``memory.memsw.limit_in_bytes`` where swap is accounted,
    ``pids.max``).
``cgroup-v2``
    the unified hierarchy, where its ``memory`` and ``pids`` controllers
    are the grader's to hand down (``memory.max``, ``memory.swap.max``,
    ``pids.max``).
``systemd-run``
    a desktop with systemd: ``systemd-run --scope`` makes a transient
    group (``MemoryMax``, ``TasksMax``); no readings then.
``none``
    nothing usable (:attr:`Support.reasons` says why): only the
    per-process limits of ``prlimit`` apply, and the report says so.

The scratch folder the grader shares with the kernel is a tmpfs of fixed
size (:class:`ScratchTmpfs`, root only); its pages are memory, charged to
the group of the process that wrote them. :class:`Confinement` puts the
three together for one grade, with the user the sandbox runs as
(:func:`sandbox_uid`).
"""

from __future__ import annotations

import dataclasses
import errno
import grp
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import threading
import time
import uuid

MECHANISMS = ("cgroup-v1", "cgroup-v2", "systemd-run", "none")


class LimitsUnavailable(RuntimeError):
    """The mechanism asked for cannot be used here; the message says why."""


# ------------------------------------------------------------ detection
def _mounts(path="/proc/self/mounts"):
    """(mount point, type, options) of every cgroup file system."""
    out = []
    try:
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                    point = parts[1].replace("\\040", " ")
                    out.append((point, parts[2], set(parts[3].split(","))))
    except OSError:
        pass
    return out


def _own_groups(path="/proc/self/cgroup"):
    """{controller or "" for v2: this process's group path}."""
    groups = {}
    try:
        with open(path) as fh:
            for line in fh:
                _, controllers, group = line.rstrip("\n").split(":", 2)
                for name in controllers.split(",") if controllers else [""]:
                    groups[name] = group
    except (OSError, ValueError):
        pass
    return groups


def _probe_dir(parent):
    """'' when a child group can be made (and removed) in ``parent``."""
    probe = os.path.join(parent, f"cnnbook-probe-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(probe)
    except OSError as exc:
        return f"cannot create a group in {parent} ({exc.strerror})"
    try:
        os.rmdir(probe)
    except OSError:
        pass
    return ""


def _v1_parents():
    """({controller: folder the child groups go in}, why not)."""
    mounts = _mounts()
    own = _own_groups()
    parents = {}
    for controller in ("memory", "pids"):
        point = next(
            (
                p
                for p, kind, opts in mounts
                if kind == "cgroup" and controller in opts
            ),
            None,
        )
        if point is None:
            return {}, f"no cgroup v1 {controller} hierarchy is mounted"
        group = own.get(controller, "/")
        parent = os.path.join(point, group.lstrip("/"))
        if not os.path.isdir(parent):  # another namespace's path
            parent = point
        why = _probe_dir(parent)
        if why:
            return {}, f"cgroup v1 {controller}: {why}"
        parents[controller] = parent
    return parents, ""


def _v2_parent():
    """(folder the child group goes in, why not)."""
    point = next((p for p, kind, _ in _mounts() if kind == "cgroup2"), None)
    if point is None:
        return "", "no cgroup v2 hierarchy is mounted"
    group = _own_groups().get("", "/")
    parent = os.path.join(point, group.lstrip("/"))
    if not os.path.isdir(parent):
        parent = point
    try:
        with open(os.path.join(parent, "cgroup.controllers")) as fh:
            available = set(fh.read().split())
    except OSError as exc:
        return "", f"cgroup v2 at {point}: {exc.strerror}"
    missing = {"memory", "pids"} - available
    if missing:
        return "", (
            f"cgroup v2 at {point} lacks the "
            f"{' and '.join(sorted(missing))} controller"
            f"{'s' if len(missing) > 1 else ''} (they belong to the v1 "
            "hierarchies here)"
        )
    why = _probe_dir(parent)
    if why:
        return "", f"cgroup v2: {why}"
    return parent, ""


def _systemd_reason():
    if shutil.which("systemd-run") is None:
        return "systemd-run is not installed"
    if not os.path.isdir("/run/systemd/system"):
        return (
            "systemd is not running here (PID 1 is "
            f"{_pid1_name()!r}), so systemd-run --scope cannot start a scope"
        )
    return ""


def _pid1_name():
    try:
        with open("/proc/1/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


@dataclasses.dataclass
class Support:
    """What this machine offers: the mechanism chosen and why not others."""

    mechanism: str
    reasons: dict  # mechanism -> why it cannot be used ('' if it can)
    parents: dict  # where the groups go: controller or "v2" -> folder

    def describe(self):
        if self.mechanism == "none":
            return (
                "no whole-sandbox limits on this machine ("
                + "; ".join(f"{k}: {v}" for k, v in self.reasons.items())
                + "): only the per-process limits of prlimit apply"
            )
        others = "; ".join(
            f"{k}: {v}"
            for k, v in self.reasons.items()
            if v and k != self.mechanism
        )
        return f"whole-sandbox limits through {self.mechanism}" + (
            f" (not used: {others})" if others else ""
        )


def detect(prefer=MECHANISMS):
    """The first mechanism of ``prefer`` that works here, as a Support."""
    reasons, parents, chosen = {}, {}, "none"
    for mechanism in prefer:
        if mechanism == "none":
            break
        if mechanism == "cgroup-v1":
            found, why = _v1_parents()
            if not why:
                parents.update(found)
        elif mechanism == "cgroup-v2":
            parent, why = _v2_parent()
            if not why:
                parents["v2"] = parent
        elif mechanism == "systemd-run":
            why = _systemd_reason()
        else:
            raise ValueError(f"unknown mechanism {mechanism!r}")
        reasons[mechanism] = why
        if not why:
            chosen = mechanism
            break
    return Support(chosen, reasons, parents)


# ------------------------------------------------------------ the group
def _read(path, default=None):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return default


def _read_int(path):
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    return None if text == "max" else int(text)


def _keyed(path, key):
    """The value of ``key`` in a flat keyed file (``oom_kill 2``)."""
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return None


def _write(path, value):
    with open(path, "w") as fh:
        fh.write(str(value))


@dataclasses.dataclass
class Usage:
    mechanism: str
    peak_memory_bytes: int | None  # most memory the group held at once
    memory_bytes: int | None  # now
    peak_processes: int | None  # most tasks (threads count) at once
    processes: int | None  # now
    oom_kills: int | None  # processes the memory limit killed
    fork_refusals: int | None  # forks refused at the process limit


class SandboxGroup:
    """A process tree under one memory and process limit.

    ``memory_mb`` bounds the memory of every process in it together
    (anonymous memory, page cache and the tmpfs pages they write);
    ``max_pids`` the number of its tasks (threads included). ``None``
    leaves one unbounded but still measured. The group is made on
    ``__enter__`` and removed on ``__exit__``, after killing whatever is
    still in it, even when the body raised.
    """

    def __init__(self, memory_mb=None, max_pids=None, support=None):
        self.memory_mb, self.max_pids = memory_mb, max_pids
        self.support = support or detect()
        self.mechanism = self.support.mechanism
        self.name = f"cnnbook-grade-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dirs = {}  # controller (or "v2") -> group folder
        self.problems = []  # what went wrong on removal
        self._sampled_pids = 0
        self._stop = threading.Event()
        self._sampler = None

    # -- set-up and removal
    def __enter__(self):
        if self.mechanism == "cgroup-v1":
            self._make_v1()
        elif self.mechanism == "cgroup-v2":
            self._make_v2()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _make_v1(self):
        try:
            for controller in ("memory", "pids"):
                path = os.path.join(
                    self.support.parents[controller], self.name
                )
                os.mkdir(path)
                self.dirs[controller] = path
            mem = self.dirs["memory"]
            if self.memory_mb:
                limit = int(self.memory_mb) * 2**20
                _write(os.path.join(mem, "memory.limit_in_bytes"), limit)
                memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
                if os.path.exists(memsw):  # swap is accounted: no escape
                    _write(memsw, limit)
            if self.max_pids:
                _write(
                    os.path.join(self.dirs["pids"], "pids.max"),
                    int(self.max_pids),
                )
        except BaseException:
            self.close()
            raise
        if not os.path.exists(os.path.join(self.dirs["pids"], "pids.peak")):
            self._start_sampler(
                os.path.join(self.dirs["pids"], "pids.current")
            )

    def _make_v2(self):
        parent = self.support.parents["v2"]
        control = os.path.join(parent, "cgroup.subtree_control")
        enabled = set((_read(control) or "").split())
        try:
            for controller in {"memory", "pids"} - enabled:
                _write(control, f"+{controller}")
        except OSError as exc:
            raise LimitsUnavailable(
                f"cannot enable the memory and pids controllers below "
                f"{parent} ({exc.strerror}: a v2 group with processes of "
                "its own cannot hand controllers to its children)"
            ) from None
        path = os.path.join(parent, self.name)
        os.mkdir(path)
        self.dirs["v2"] = path
        try:
            if self.memory_mb:
                _write(
                    os.path.join(path, "memory.max"),
                    int(self.memory_mb) * 2**20,
                )
                swap = os.path.join(path, "memory.swap.max")
                if os.path.exists(swap):
                    _write(swap, 0)
            if self.max_pids:
                _write(os.path.join(path, "pids.max"), int(self.max_pids))
        except BaseException:
            self.close()
            raise
        if not os.path.exists(os.path.join(path, "pids.peak")):
            self._start_sampler(os.path.join(path, "pids.current"))

    def _start_sampler(self, path):
        """Without a pids.peak file, the peak is sampled (a lower bound)."""

        def sample():
            while not self._stop.wait(0.05):
                now = _read_int(path)
                if now is not None:
                    self._sampled_pids = max(self._sampled_pids, now)

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def procs_files(self):
        """The ``cgroup.procs`` files a process is added through."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    def pids(self):
        """The processes in the group now."""
        found = set()
        for path in self.procs_files():
            found |= {int(x) for x in (_read(path) or "").split()}
        return found

    def kill(self):
        """SIGKILL every process in the group, until none is left (or 5 s
        have passed); returns the number of processes still there."""
        deadline = time.monotonic() + 5
        kill_file = os.path.join(
            self.dirs.get("v2", "/nonexistent"), "cgroup.kill"
        )
        while True:
            left = self.pids()
            if not left or time.monotonic() > deadline:
                return len(left)
            if os.path.exists(kill_file):
                _write(kill_file, 1)
            else:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(0.05)

    def close(self):
        """Kill what is left, remove the groups (idempotent)."""
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(timeout=1)
        if not self.dirs:
            return
        self.final_usage = self.usage()
        left = self.kill()
        if left:
            self.problems.append(f"{left} processes survived SIGKILL")
        for key, path in list(self.dirs.items()):
            for _ in range(100):  # dying tasks keep a group busy a moment
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        self.problems.append(f"rmdir {path}: {exc.strerror}")
                        break
                    time.sleep(0.05)
            else:
                self.problems.append(f"{path} is still busy")
            del self.dirs[key]

    # -- putting processes in it
    def preexec(self):
        """For ``subprocess.Popen(preexec_fn=...)``: the child joins the
        group before it runs anything."""
        files = self.procs_files()

        def join():
            for path in files:
                with open(path, "w") as fh:
                    fh.write("0")  # "0": the writing process itself

        return join

    def prefix(self):
        """A command prefix: what follows it runs inside the group.

        For tools that take a command line and no ``preexec_fn`` (the
        grader's kernel manager): a shell adds itself, then ``exec``s the
        command. With systemd, ``systemd-run --scope`` does the same.
        """
        if self.mechanism == "systemd-run":
            user = [] if os.geteuid() == 0 else ["--user"]
            props = []
            if self.memory_mb:
                props += [
                    "-p",
                    f"MemoryMax={int(self.memory_mb)}M",
                    "-p",
                    "MemorySwapMax=0",
                ]
            if self.max_pids:
                props += ["-p", f"TasksMax={int(self.max_pids)}"]
            return [
                "systemd-run",
                *user,
                "--scope",
                "--quiet",
                f"--unit={self.name}",
                *props,
                "--",
            ]
        files = self.procs_files()
        if not files:
            return []
        script = " && ".join(
            f'echo $$ > "${i}"' for i in range(1, len(files) + 1)
        )
        script += f' && shift {len(files)} && exec "$@"'
        return ["/bin/sh", "-c", script, "cnnbook-limits", *files]

    # -- readings
    def usage(self):
        """What the group used so far (None where this mechanism cannot
        say)."""
        if not self.dirs:
            return getattr(self, "final_usage", None) or Usage(
                self.mechanism, None, None, None, None, None, None
            )
        if "v2" in self.dirs:
            d = self.dirs["v2"]
            mem_dir = pid_dir = d
            peak = _read_int(os.path.join(d, "memory.peak"))
            now = _read_int(os.path.join(d, "memory.current"))
            ooms = _keyed(os.path.join(d, "memory.events"), "oom_kill")
        else:
            mem_dir, pid_dir = self.dirs["memory"], self.dirs["pids"]
            peak = _read_int(
                os.path.join(mem_dir, "memory.max_usage_in_bytes")
            )
            now = _read_int(os.path.join(mem_dir, "memory.usage_in_bytes"))
            ooms = _keyed(
                os.path.join(mem_dir, "memory.oom_control"), "oom_kill"
            )
        tasks = _read_int(os.path.join(pid_dir, "pids.current"))
        peak_tasks = _read_int(os.path.join(pid_dir, "pids.peak"))
        if peak_tasks is None and tasks is not None:
            peak_tasks = max(self._sampled_pids, tasks)
        return Usage(
            self.mechanism,
            peak,
            now,
            peak_tasks,
            tasks,
            ooms,
            _keyed(os.path.join(pid_dir, "pids.events"), "max"),
        )


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
