"""The sandbox a graded notebook runs in (bubblewrap), and what it sees.

Introduced with the grader (Chapter 1). :func:`command` wraps the
learner's kernel in `bubblewrap <https://github.com/containers/bubblewrap>`_
(``bwrap``, Debian package ``bubblewrap``): new user, PID, network, IPC
and UTS namespaces (no network at all), every capability dropped, the
software (``/usr``, the Python installation, the virtual environment)
read-only, one private scratch folder as the only writable place on
disk (``/tmp`` is a private tmpfs of bounded size), the dataset cache
read-only, nothing else of the machine (no home folder, no
repository, no other submission, none of the grader's files). ``prlimit``
bounds its memory, processes, file sizes and CPU time, and the whole
sandbox dies with the grader.

What the sandbox sees of :mod:`cnnbook` and Keras is built by
:mod:`cnnbook.grading.package`.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

SANDBOX_PACKAGES = "/opt/cnnbook-sandbox"  # where the copy is mounted


class SandboxUnavailable(RuntimeError):
    """No working sandbox on this machine; the message says why."""


_PROBE = None


def check_available():
    """Raise SandboxUnavailable unless bwrap can make a sandbox here."""
    global _PROBE
    if _PROBE is None:
        _PROBE = _probe()
    if _PROBE:
        raise SandboxUnavailable(_PROBE)


def _probe():
    if not sys.platform.startswith("linux"):
        return (
            f"the grading sandbox (bubblewrap) needs Linux; this is "
            f"{sys.platform}"
        )
    if shutil.which("bwrap") is None:
        return (
            "bubblewrap is not installed (Debian/Ubuntu: "
            "apt-get install bubblewrap; `make system-deps` does it as root)"
        )
    if shutil.which("prlimit") is None:
        return "prlimit (util-linux) is not installed"
    try:
        done = subprocess.run(
            [*_base_args(), "--", "/bin/true"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()[:300]
        return (
            "bubblewrap cannot create a sandbox here (user namespaces "
            f"disabled?): {why}"
        )
    return ""


def _base_args():
    args = [
        "bwrap",
        "--unshare-all",  # user, pid, net, ipc, uts, cgroup namespaces
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--clearenv",
    ]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        link = pathlib.Path("/") / name
        if link.is_symlink():
            args += ["--symlink", os.readlink(link), str(link)]
        elif link.is_dir():
            args += ["--ro-bind", str(link), str(link)]
    for name in (
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/fonts",
        "/etc/localtime",
        "/etc/passwd",
        "/etc/group",
        "/etc/alternatives",
    ):
        if os.path.exists(name):
            args += ["--ro-bind", name, name]
    return args


def _software_dirs():
    """Read-only folders the kernel needs: Python and its packages."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    real = os.path.realpath(sys.executable)
    dirs.add(str(pathlib.Path(real).parent.parent))
    out = []
    for d in sorted(dirs):
        if d.startswith("/usr/") or d == "/usr" or not os.path.isdir(d):
            continue
        out.append(d)
    return out


def command(
    scratch,
    package_dir,
    env,
    memory_mb=6144,
    cpu_seconds=3600,
    max_processes=2048,
    max_file_mb=1024,
    data_dir=None,
    overlays=(),
    tmp_mb=512,
):
    """The command prefix that runs a program in the sandbox.

    ``scratch`` is bound read-write at the same path (the kernel's
    connection file, sockets, working folder and the grader's requests
    live there); ``package_dir`` (holding the stripped ``cnnbook``) is
    mounted read-only at :data:`SANDBOX_PACKAGES` and put first on
    ``PYTHONPATH``; ``overlays`` are (file, path) pairs bound read-only
    over files of the software. ``env`` is the whole environment.
    """
    # /tmp first: a private tmpfs of bounded size. The binds below come
    # after it, so a checkout, a venv or a dataset cache that lives under
    # /tmp on this machine stays visible inside.
    args = _base_args() + [
        "--size",
        str(int(tmp_mb) * 2**20),
        "--tmpfs",
        "/tmp",
    ]
    for d in _software_dirs():
        args += ["--ro-bind", d, d]
    if data_dir and os.path.isdir(data_dir):
        args += ["--ro-bind", str(data_dir), str(data_dir)]
    for source, target in overlays:
        args += ["--ro-bind", str(source), str(target)]
    # Only the scratch folder itself is bound: anything inside it may have
    # been replaced by the notebook's code (a link to elsewhere on this
    # machine), so no path under it is ever a source of a bind.
    home = os.path.join(scratch, "home")
    if not os.path.lexists(home):
        os.mkdir(home)
    args += [
        "--bind",
        str(scratch),
        str(scratch),
        "--ro-bind",
        str(package_dir),
        SANDBOX_PACKAGES,
        "--chdir",
        os.path.join(scratch, "work"),
    ]
    env = dict(env)
    env.update(
        HOME=home,
        TMPDIR="/tmp",
        PYTHONPATH=SANDBOX_PACKAGES,
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        MPLCONFIGDIR=os.path.join(home, ".matplotlib"),
        KERAS_HOME=os.path.join(home, ".keras"),
        PATH=f"{os.path.dirname(sys.executable)}:/usr/bin:/bin",
    )
    if data_dir:
        env["CNNBOOK_DATA"] = str(data_dir)
    for key, value in sorted(env.items()):
        args += ["--setenv", key, str(value)]
    limits = [
        "prlimit",
        f"--nproc={int(max_processes)}",
        f"--fsize={int(max_file_mb) * 2**20}",
        f"--cpu={int(cpu_seconds)}",
        "--core=0",
    ]
    if memory_mb:
        limits.append(f"--as={int(memory_mb) * 2**20}")
    return [*args, "--", *limits, "--"]
