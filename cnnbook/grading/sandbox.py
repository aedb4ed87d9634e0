"""The sandbox a graded notebook runs in (bubblewrap), and what it sees.

Introduced with the grader (Chapter 1). :func:`command` wraps the
learner's kernel in `bubblewrap <https://github.com/containers/bubblewrap>`_
(``bwrap``, Debian package ``bubblewrap``): new user, PID, network, IPC
and UTS namespaces (no network at all), every capability dropped, the
software (``/usr``, the Python installation's standard library, the
virtual environment) read-only (the base installation's own
``site-packages`` hidden: :func:`hidden_site_dirs`), one private scratch
folder as the only writable place on disk (``/tmp`` is a private tmpfs
of bounded size), the dataset cache read-only, IPython's folder empty
and read-only (no start-up file the notebook plants runs in a restarted
kernel), nothing else of the machine (no home folder, no repository, no
other submission, none of the grader's files). ``prlimit`` bounds its
memory, processes, file sizes and CPU time, and the whole sandbox dies
with the grader.

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
# IPython's folder for the kernel (IPYTHONDIR): an empty tmpfs mounted
# read-only, so no start-up file or configuration the notebook writes
# (its home folder is in the writable scratch folder) runs in a
# restarted kernel before the grader's prelude
IPYTHON_DIR = "/opt/cnnbook-ipython"


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


def _base_args(uid=None):
    """bubblewrap's options for the namespaces and the base system.

    ``uid`` None: a user namespace in which the sandbox is ``nobody`` (for
    a grader that is not root; outside, its processes are the grader's
    user). With ``uid`` (a grader that is root): no user namespace;
    bubblewrap makes the mounts with root's rights and keeps only the
    capabilities to switch users, which :func:`as_user` uses to become
    ``uid`` (and to drop every capability) before anything else runs.
    """
    if uid is None:
        users = ["--unshare-all", "--uid", "65534", "--gid", "65534"]
    else:
        users = [
            *("--unshare-ipc", "--unshare-pid", "--unshare-net"),
            *("--unshare-uts", "--unshare-cgroup-try"),
        ]
    keep = ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    keep += ["--cap-add", "CAP_SETPCAP"]
    args = [
        "bwrap",
        *users,
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        *(keep if uid is not None else []),
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
        "--proc",
        "/proc",
        # process 1 of the sandbox is bubblewrap itself: its command line
        # names every mount, folder and variable of the sandbox, and its
        # environment is the grader's (readable where the sandbox is the
        # grader's own user); both read as nothing, under the process's
        # folder and under its only thread's (red team 5)
        *("--ro-bind", "/dev/null", "/proc/1/cmdline"),
        *("--ro-bind", "/dev/null", "/proc/1/environ"),
        *("--ro-bind", "/dev/null", "/proc/1/task/1/cmdline"),
        *("--ro-bind", "/dev/null", "/proc/1/task/1/environ"),
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


def as_user(uid):
    """The command that becomes ``uid`` inside the sandbox: no groups,
    no capabilities (bounding set included), no new privileges (set-user-ID
    programs of ``/usr`` stay powerless)."""
    return [
        "setpriv",
        f"--reuid={int(uid)}",
        f"--regid={int(uid)}",
        "--clear-groups",
        "--no-new-privs",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--",
    ]


def _bind(args, kind, source, target, made):
    """Bind ``source`` at ``target``, each folder above it made first with
    mode 0755 (bubblewrap would make them 0700, closed to the sandbox's
    own user)."""
    parts = pathlib.PurePosixPath(target).parents
    for parent in reversed(list(parts)[:-1]):
        name = str(parent)
        if name not in made and name not in ("/usr", "/tmp"):
            args += ["--perms", "0755", "--dir", name]
            made.add(name)
    args += [kind, str(source), str(target)]
    made.add(str(target))


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


def hidden_site_dirs():
    """The base interpreter's own ``site-packages`` folders, when the
    grader runs from a virtual environment: the sandbox sees the base
    installation's standard library only, and an empty read-only folder
    in their place (else a second copy of a library the sandbox makes
    absent, SciPy say, could be imported from there)."""
    if sys.prefix == sys.base_prefix:
        return []  # no virtual environment: these hold the software
    import site

    bases = [sys.base_prefix, sys.base_exec_prefix]
    keep = {os.path.realpath(p) for p in site.getsitepackages([sys.prefix])}
    return sorted(
        {
            d
            for d in site.getsitepackages(bases)
            if os.path.isdir(d) and os.path.realpath(d) not in keep
        }
    )


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
    connection_dir=None,
    uid=None,
):
    """The command prefix that runs a program in the sandbox.

    ``scratch`` is bound read-write at the same path (the kernel's
    connection file, sockets, working folder and the grader's requests
    live there); ``package_dir`` (holding the stripped ``cnnbook``) is
    mounted read-only at :data:`SANDBOX_PACKAGES` and put first on
    ``PYTHONPATH``; ``overlays`` are (file, path) pairs bound read-only
    over files of the software. ``env`` is the whole environment.
    ``connection_dir`` (the kernel's connection file, the grader's) is
    bound read-only, its sub-folder ``s`` (where the kernel makes its
    sockets) read-write. With ``uid`` (the grader is root) the sandbox's
    processes run as that user of no account (:func:`_base_args`).
    """
    # /tmp first: a private tmpfs of bounded size. The binds below come
    # after it, so a checkout, a venv or a dataset cache that lives under
    # /tmp on this machine stays visible inside.
    args = _base_args(uid) + [
        "--perms",
        "1777",
        "--size",
        str(int(tmp_mb) * 2**20),
        "--tmpfs",
        "/tmp",
    ]
    made = set()
    if data_dir:  # a relative $CNNBOOK_DATA means nothing in the sandbox
        data_dir = os.path.realpath(data_dir)
    for d in _software_dirs():
        _bind(args, "--ro-bind", d, d, made)
    for d in hidden_site_dirs():
        args += ["--perms", "0555", "--tmpfs", d, "--remount-ro", d]
    if data_dir and os.path.isdir(data_dir):
        _bind(args, "--ro-bind", data_dir, data_dir, made)
    for source, target in overlays:
        args += ["--ro-bind", str(source), str(target)]
    # Only the scratch folder itself is bound: anything inside it may have
    # been replaced by the notebook's code (a link to elsewhere on this
    # machine), so no path under it is ever a source of a bind.
    home = os.path.join(scratch, "home")
    if not os.path.lexists(home):
        os.mkdir(home)
    _bind(args, "--bind", scratch, scratch, made)
    _bind(args, "--ro-bind", package_dir, SANDBOX_PACKAGES, made)
    # IPython finds this folder read-only and keeps its profile in a fresh
    # folder of the private /tmp instead: gone when the kernel stops
    args += ["--perms", "0555", "--tmpfs", IPYTHON_DIR]
    args += ["--remount-ro", IPYTHON_DIR]
    if connection_dir is not None:
        sockets = os.path.join(connection_dir, "s")
        _bind(args, "--ro-bind", connection_dir, connection_dir, made)
        args += ["--bind", sockets, sockets]
    # as root without its capabilities bubblewrap could not enter the
    # sandbox user's folder: the kernel's prelude changes to it then
    work = os.path.join(scratch, "work")
    args += ["--chdir", work if uid is None else "/"]
    env = dict(env)
    env.update(
        HOME=home,
        IPYTHONDIR=IPYTHON_DIR,
        TMPDIR="/tmp",
        PYTHONPATH=SANDBOX_PACKAGES,
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        MPLCONFIGDIR=os.path.join(home, ".matplotlib"),
        KERAS_HOME=os.path.join(home, ".keras"),
        PATH=f"{os.path.dirname(sys.executable)}:/usr/bin:/bin",
        USER="sandbox",
        LOGNAME="sandbox",
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
    user = as_user(uid) if uid is not None else []
    return [*args, "--", *user, *limits, "--"]
