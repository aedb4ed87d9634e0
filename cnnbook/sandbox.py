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

:func:`build_package` writes the copy of :mod:`cnnbook` the sandbox sees
for one chapter: without the checks and the grader, and without the
implementations that answer one of the chapter's graded exercises (each
checks module lists them in ``ANSWERS``); importing one raises an
ImportError that says the exercise must be the learner's own code.
"""

from __future__ import annotations

import ast
import os
import pathlib
import shutil
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent
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
    import subprocess

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


# ------------------------------------------------- the package it sees
STUB_MESSAGE = (
    "{what} is not available while grading: the answer to exercise "
    "{keys} must be your own code"
)

_GRADING_STUB = '''"""cnnbook.grading inside the grading sandbox.

The grader checks every exercise itself, from outside; the notebook's own
check cells only say so.
"""


class checker:  # noqa: N801
    def __init__(self, chapter):
        self.chapter = chapter
        self.last = None

    def __call__(self, key):
        print(f"(exercise {key} is checked by the grader)")
'''


def _stub_source(module, names, keys, doc=None, only=None):
    """A module-level ``__getattr__`` that refuses the left-out names
    (``only``: just those; otherwise every name it lacks)."""
    lines = [
        repr(doc or f"{module} while grading: the answers are left out."),
        f"_LEFT_OUT = {sorted(names)!r}",
        f"_MESSAGE = {STUB_MESSAGE!r}",
        "",
        "",
        "def __getattr__(name):",
        "    if name.startswith('__')"
        + (f" or name not in {sorted(only)!r}" if only is not None else "")
        + ":",
        "        raise AttributeError(name)",
        f"    raise ImportError(_MESSAGE.format(what=name, keys={keys!r}))",
        "",
    ]
    return "\n".join(lines)


def _top_level_names(source):
    names = set()
    for node in ast.parse(source).body:
        if isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        ):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names - {"__all__"}


def _strip_source(source, module, names, keys):
    """``source`` without the top-level definitions of ``names``."""
    tree = ast.parse(source)
    body = []
    for node in tree.body:
        defined = set()
        if isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        ):
            defined = {node.name}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = (
                node.targets if isinstance(node, ast.Assign) else [node.target]
            )
            defined = {t.id for t in targets if isinstance(t, ast.Name)}
            if defined == {"__all__"} and isinstance(
                node.value, (ast.List, ast.Tuple)
            ):
                node.value.elts = [
                    e
                    for e in node.value.elts
                    if not (isinstance(e, ast.Constant) and e.value in names)
                ]
        if defined and defined <= set(names):
            continue
        body.append(node)
    tree.body = body
    stub = _stub_source(module, names, keys)
    return ast.unparse(tree) + "\n\n" + stub.split("\n", 1)[1]


def _strip_imports(source, names):
    """``source`` without ``names`` in its ``from ... import`` statements
    and in its ``__all__``."""
    tree = ast.parse(source)
    body = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            node.names = [a for a in node.names if a.name not in names]
            if not node.names:
                continue
        elif (
            isinstance(node, ast.Assign)
            and any(
                isinstance(t, ast.Name) and t.id == "__all__"
                for t in node.targets
            )
            and isinstance(node.value, (ast.List, ast.Tuple))
        ):
            node.value.elts = [
                e
                for e in node.value.elts
                if not (isinstance(e, ast.Constant) and e.value in names)
            ]
        body.append(node)
    tree.body = body
    return ast.unparse(tree) + "\n"


def build_package(answers, dest):
    """Write the sandbox's ``cnnbook`` under ``dest``; return ``dest``.

    ``answers`` maps a module (``"cnnbook.reference"``) to the exercise
    keys it answers and the names to leave out (``None``: all of it).
    """
    dest = pathlib.Path(dest)
    target = dest / "cnnbook"
    shutil.copytree(
        PACKAGE,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "checks"),
    )
    for name in ("grader.py", "__main__.py", "notebooks.py", "sandbox.py"):
        (target / name).unlink(missing_ok=True)
    (target / "grading.py").write_text(_GRADING_STUB)
    parents = {}
    for module, (keys, names) in answers.items():
        parts = module.split(".")
        assert parts[0] == "cnnbook", module
        path = target.joinpath(*parts[1:]).with_suffix(".py")
        keys = ", ".join(keys)
        source = path.read_text()
        if names is None:
            names = _top_level_names(source)
            path.write_text(_stub_source(module, names, keys))
        else:
            path.write_text(_strip_source(source, module, set(names), keys))
        init = path.parent / "__init__.py"
        if init != path and path.parent != target:
            parents.setdefault(init, ({}, set()))
            parents[init][0].update(dict.fromkeys(names, keys))
    for init, (names, _) in parents.items():
        # the package re-exports its modules' names by name: it must not
        # import the left-out ones itself
        init.write_text(_strip_imports(init.read_text(), set(names)))
        # `from cnnbook.models import identity_block` says why, too
        for keys in sorted(set(names.values())):
            chosen = sorted(n for n, k in names.items() if k == keys)
            stub = _stub_source("", chosen, keys, only=chosen)
            body = stub.split("\n", 1)[1].replace(
                "def __getattr__", f"def _left_out_{abs(hash(keys))}"
            )
            with open(init, "a") as fh:
                fh.write("\n\n" + body)
        funcs = [f"_left_out_{abs(hash(k))}" for k in set(names.values())]
        with open(init, "a") as fh:
            fh.write(
                "\n\ndef __getattr__(name):\n"
                + "".join(
                    f"    try:\n        {f}(name)\n"
                    "    except AttributeError:\n        pass\n"
                    for f in funcs
                )
                + "    raise AttributeError(name)\n"
            )
    return dest


def keras_overlays(modules, dest):
    """Stand-ins for ``keras.src.applications.<module>`` files.

    Every top-level name of the module stays defined (other Keras modules
    import them) but calling or using one raises ImportError.
    """
    import importlib.util

    spec = importlib.util.find_spec("keras")
    root = pathlib.Path(spec.origin).parent / "src" / "applications"
    out = []
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, keys in modules.items():
        original = root / f"{name}.py"
        if not original.exists():
            continue
        tree = ast.parse(original.read_text())
        names = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.append(node.name)
            elif isinstance(node, ast.Assign):
                names += [
                    t.id for t in node.targets if isinstance(t, ast.Name)
                ]
        message = STUB_MESSAGE.format(
            what=f"this part of keras.applications ({name})",
            keys=", ".join(keys),
        )
        lines = [
            f'"""keras.src.applications.{name} left out while grading."""',
            "",
            "",
            "class _LeftOut:",
            "    def __init__(self, *args, **kwargs):",
            f"        raise ImportError({message!r})",
            "",
            "    def __call__(self, *args, **kwargs):",
            f"        raise ImportError({message!r})",
            "",
            "",
        ]
        for n in sorted(set(names)):
            if n.startswith("__"):
                continue
            lines.append(f"{n} = _LeftOut")
        stub = dest / f"keras-{name}.py"
        stub.write_text("\n".join(lines) + "\n")
        out.append((stub, original))
    return out
