"""Which mechanism bounds a group of processes on this machine.

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

:class:`cnnbook.grading.limits.SandboxGroup` makes the group.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
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


def own_groups(path="/proc/self/cgroup"):
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


def _outside_graders_group(group):
    """The group path child groups go in, for a process in ``group``.

    grade-batch puts each grader's own process in a group of its own
    (``cnnbook-grade-PID-g…``); the grader's sandbox then goes beside that
    group, not in it: its memory is bounded and counted on its own, its
    leftovers are where :func:`cnnbook.grading.confinement.clean_leftovers`
    looks, and cgroup v2 allows no child groups with controllers under a
    group that holds processes."""
    head, tail = os.path.split(group.rstrip("/"))
    return head or "/" if tail.startswith("cnnbook-grade-") else group


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
    own = own_groups()
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
        group = _outside_graders_group(own.get(controller, "/"))
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
    group = _outside_graders_group(own_groups().get("", "/"))
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
