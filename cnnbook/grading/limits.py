"""A grading sandbox's processes as one group: memory and processes.

:class:`SandboxGroup` makes a group of processes with the mechanism
:func:`cnnbook.grading.cgroups.detect` picks (a cgroup v1 or v2 folder
per grade, or a transient systemd scope), bounds its memory and its
processes together, measures what it used (:class:`Usage`), and kills
and removes it when the grade ends.
:mod:`cnnbook.grading.confinement` puts it together with the scratch
folder's tmpfs and the sandbox's user.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import threading
import time
import uuid

from cnnbook.grading.cgroups import LimitsUnavailable, detect


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

    def __init__(self, memory_mb=None, max_pids=None, support=None, tag=""):
        self.memory_mb, self.max_pids = memory_mb, max_pids
        self.support = support or detect()
        self.mechanism = self.support.mechanism
        # named for the process that makes it (its leftovers are removed
        # once that process is gone); ``tag`` tells groups of one apart
        self.name = f"cnnbook-grade-{os.getpid()}-{tag}{uuid.uuid4().hex[:8]}"
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
