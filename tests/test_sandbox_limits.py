"""Whole-sandbox limits (cnnbook.grading.limits, .cgroups, .confinement),
tried for real.

Each test puts a small process tree under a group and checks what the
kernel did: a child past the memory limit is killed and the group says
so, a fork bomb stops at the process limit, files stop at the size of
their tmpfs, and the group is gone afterwards even when the body raised.
Where this machine offers no mechanism (no root, no systemd) the tests
that need one are skipped with the reason detect() gives.
"""

import os
import subprocess
import sys

import pytest

from cnnbook.grading import cgroups
from cnnbook.grading import limits as sl
from cnnbook.grading.confinement import ScratchTmpfs

SUPPORT = cgroups.detect()
needs_group = pytest.mark.skipif(
    SUPPORT.mechanism not in ("cgroup-v1", "cgroup-v2"),
    reason=SUPPORT.describe(),
)
MiB = 2**20

ALLOCATE = """
import sys
blocks = []
for _ in range({n}):
    blocks.append(bytearray({block}))  # bytearray writes every page
    print(len(blocks), flush=True)
"""

FORK_BOMB = """
import os, sys, time
made = refused = 0
for _ in range({tries}):
    try:
        pid = os.fork()
    except BlockingIOError:
        refused += 1
        continue
    if pid == 0:
        os.closerange(1, 3)  # the test reads the output to its end
        time.sleep(30)
        os._exit(0)
    made += 1
print(made, refused, flush=True)
"""


def test_detect_names_a_mechanism_and_every_reason():
    assert SUPPORT.mechanism in cgroups.MECHANISMS
    text = SUPPORT.describe()
    if SUPPORT.mechanism == "none":
        assert "prlimit" in text
        assert set(SUPPORT.reasons) == {
            "cgroup-v1",
            "cgroup-v2",
            "systemd-run",
        }
        assert all(SUPPORT.reasons.values()), SUPPORT.reasons
    else:
        assert SUPPORT.mechanism in text
        assert SUPPORT.reasons[SUPPORT.mechanism] == ""


def test_systemd_is_detected_only_where_it_runs():
    support = cgroups.detect(prefer=("systemd-run", "none"))
    running = os.path.isdir("/run/systemd/system")
    if running and support.reasons["systemd-run"] == "":
        assert support.mechanism == "systemd-run"
    else:
        assert support.mechanism == "none"
        assert "systemd" in support.reasons["systemd-run"]


def test_nothing_to_use_says_so():
    support = cgroups.detect(prefer=("none",))
    assert support.mechanism == "none"
    with sl.SandboxGroup(memory_mb=64, support=support) as group:
        assert group.prefix() == []
        assert group.usage().peak_memory_bytes is None
    assert "prlimit" in support.describe()


@needs_group
def test_prefix_and_preexec_put_the_command_in_the_group():
    with sl.SandboxGroup(memory_mb=256, max_pids=64) as group:
        via_prefix = subprocess.run(
            [*group.prefix(), "cat", "/proc/self/cgroup"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        via_preexec = subprocess.run(
            ["cat", "/proc/self/cgroup"],
            preexec_fn=group.preexec(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for text in (via_prefix, via_preexec):
            lines = [ln for ln in text.splitlines() if group.name in ln]
            wanted = 2 if group.mechanism == "cgroup-v1" else 1
            assert len(lines) == wanted, text
        dirs = list(group.dirs.values())
        assert all(os.path.isdir(d) for d in dirs)
    assert not any(os.path.exists(d) for d in dirs)
    assert group.problems == []


@needs_group
def test_a_child_past_the_memory_limit_is_killed_and_counted():
    limit = 96
    code = ALLOCATE.format(n=40, block=8 * MiB)  # 320 MiB in 8 MiB steps
    with sl.SandboxGroup(memory_mb=limit, max_pids=64) as group:
        done = subprocess.run(
            [sys.executable, "-c", code],
            preexec_fn=group.preexec(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        usage = group.usage()
    assert done.returncode == -9, (done.returncode, done.stderr)
    reached = int(done.stdout.split()[-1]) * 8
    assert 8 <= reached <= limit, reached  # stopped near the limit
    assert usage.oom_kills >= 1, usage
    assert usage.peak_memory_bytes <= limit * MiB
    assert usage.peak_memory_bytes >= (reached - 8) * MiB


@needs_group
def test_the_limit_is_for_the_group_not_each_process():
    """Three processes of 48 MiB each fit a 96 MiB per-process limit but
    not a 96 MiB group: at least one of them is killed."""
    code = ALLOCATE.format(n=6, block=8 * MiB) + "import time; time.sleep(1)"
    with sl.SandboxGroup(memory_mb=96, max_pids=64) as group:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                preexec_fn=group.preexec(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(3)
        ]
        codes = [p.wait(timeout=60) for p in procs]
        usage = group.usage()
    assert -9 in codes, codes
    assert usage.oom_kills >= 1
    assert usage.peak_memory_bytes <= 96 * MiB


@needs_group
def test_a_fork_bomb_stops_at_pids_max():
    with sl.SandboxGroup(memory_mb=512, max_pids=12) as group:
        done = subprocess.run(
            [sys.executable, "-c", FORK_BOMB.format(tries=60)],
            preexec_fn=group.preexec(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        usage = group.usage()
        dirs = list(group.dirs.values())
    made, refused = map(int, done.stdout.split())
    assert made < 12 and refused == 60 - made, done.stdout
    assert usage.fork_refusals >= refused
    assert usage.peak_processes == 12  # the parent and its children
    # the sleeping children were killed when the group was removed
    assert not any(os.path.exists(d) for d in dirs)
    assert group.problems == []


@needs_group
def test_the_group_is_removed_when_the_body_raises():
    group = sl.SandboxGroup(memory_mb=64, max_pids=16)
    with pytest.raises(RuntimeError, match="grader failed"):
        with group:
            child = subprocess.Popen(
                ["sleep", "60"], preexec_fn=group.preexec()
            )
            dirs = list(group.dirs.values())
            raise RuntimeError("grader failed")
    assert child.wait(timeout=10) == -9
    assert not any(os.path.exists(d) for d in dirs)


def test_the_sandbox_tmp_stops_files_at_its_size(tmp_path):
    """The sandbox's /tmp is a tmpfs of ``tmp_mb``: a file stops there."""
    from cnnbook.grading import sandbox

    sandbox.check_available()
    scratch = tmp_path / "s"
    (scratch / "work").mkdir(parents=True)
    script = (
        "head -c 3145728 /dev/zero > /tmp/big; echo rc=$?; stat -c %s /tmp/big"
    )
    prefix = sandbox.command(str(scratch), str(tmp_path), {}, tmp_mb=2)
    done = subprocess.run(
        [*prefix, "/bin/sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "No space left on device" in done.stderr, done.stderr
    assert "rc=1" in done.stdout
    assert int(done.stdout.split()[-1]) <= 2 * MiB


def test_scratch_tmpfs_is_bounded_and_unmounted(tmp_path):
    why = ScratchTmpfs.unavailable()
    if why:
        pytest.skip(why)
    scratch = tmp_path / "s"
    scratch.mkdir()
    with ScratchTmpfs(scratch, 2) as fs:
        assert os.path.ismount(scratch)
        with pytest.raises(OSError) as info:
            with open(scratch / "big", "wb") as fh:
                for _ in range(4):
                    fh.write(b"\0" * MiB)
        assert "No space left" in str(info.value)
        assert fs.used_bytes() <= 2 * MiB
    assert not os.path.ismount(scratch)
    assert list(scratch.iterdir()) == []


def test_a_sandbox_group_goes_beside_its_graders_own_group():
    """A grader that grade-batch put in a group of its own makes its
    sandbox's group beside that group (siblings under the same parent),
    any other process in its own group."""
    from cnnbook.grading.cgroups import _outside_graders_group

    assert _outside_graders_group("/a/b/cnnbook-grade-12-gabc") == "/a/b"
    assert _outside_graders_group("/cnnbook-grade-12-gabc") == "/"
    assert _outside_graders_group("/a/b") == "/a/b"
    assert _outside_graders_group("/") == "/"
