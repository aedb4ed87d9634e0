"""The copy of :mod:`cnnbook` (and of a few Keras files) the sandbox sees.

Introduced with the grader (Chapter 1). :func:`build_package` writes the
``cnnbook`` a graded notebook imports: without the grader and the checks
(of :mod:`cnnbook.grading` it keeps only what runs in the kernel: the
wire format, its reading, the server of the grader's calls, the time
limit, the tripwire and a ``checker`` that only says the grader
checks), and without the implementations that answer one of the
chapter's graded exercises (each checks module lists them in
``ANSWERS``); importing one raises an ImportError that says the exercise
must be the learner's own code. :func:`keras_overlays` does the same for
the parts of ``keras.applications`` that answer an exercise, and fails
loudly when Keras no longer has a file it must cover.
"""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import py_compile
import shutil
import sys
from importlib import metadata

from cnnbook.grading import api

PACKAGE = pathlib.Path(__file__).resolve().parent.parent  # cnnbook/
# what the sandbox keeps of cnnbook/grading/: the kernel's side only
KERNEL_SIDE = (
    "wire.py",
    "reader.py",
    "rebuild.py",
    "server.py",
    "timeout.py",
    "tripwire.py",
)
# modules of cnnbook the kernel never needs
LEFT_OUT = ("__main__.py", "notebooks.py", "execution.py")


class OverlayMissing(RuntimeError):
    """Keras lacks a file the sandbox must cover (a Keras upgrade moved
    it): grading would leave that answer importable, so it stops."""


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


def _tripwire_source(answers):
    """The lines of the sandbox's ``cnnbook.grading`` that arm the
    tripwire (:mod:`cnnbook.grading.tripwire`) for the exercises, among
    those ``answers`` names, that ask for an operation a library has."""

    keys = {k for exercise_keys, _ in answers.values() for k in exercise_keys}
    watched = {}
    for ex in api.registered_keys(keys):
        if not ex.forbidden:
            continue
        for name in ex.names:
            watched[name] = (ex.key, ex.asks, [list(f) for f in ex.forbidden])
    if not watched:
        return ""
    return (
        "\n\n# the exercises that ask for an operation a library has: their\n"
        "# calls are watched (cnnbook.grading.tripwire)\n"
        f"WATCHED = frozenset({sorted(watched)!r})\n"
        "from cnnbook.grading import tripwire as _tripwire  # noqa: E402\n\n"
        f"_tripwire.install({watched!r})\n"
        "del _tripwire\n"
    )


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
        ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", "grading", *LEFT_OUT
        ),
    )
    grading = target / "grading"
    grading.mkdir()
    for name in KERNEL_SIDE:
        shutil.copy(PACKAGE / "grading" / name, grading / name)
    (grading / "__init__.py").write_text(
        _GRADING_STUB + _tripwire_source(answers)
    )
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


def applications_root():
    """The folder of ``keras.src.applications`` (found without importing
    Keras)."""
    spec = importlib.util.find_spec("keras")
    return pathlib.Path(spec.origin).parent / "src" / "applications"


def keras_overlays(modules, dest):
    """Stand-ins for ``keras.src.applications.<module>`` files.

    Every top-level name of the module stays defined (other Keras modules
    import them) but calling or using one raises ImportError. A module
    Keras no longer has raises :class:`OverlayMissing`: left uncovered, a
    renamed file would make its answer importable again.
    """
    root = applications_root()
    out = []
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, keys in modules.items():
        original = root / f"{name}.py"
        if not original.is_file():
            raise OverlayMissing(
                f"keras {_keras_version()} has no {original}: the sandbox "
                f"must cover it (exercise {', '.join(keys)}); update "
                "KERAS_APPLICATIONS in the chapter's checks module"
            )
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
        # the compiled copies of the original next to it: the stand-in's
        # own bytecode over each, so `marshal` gives back the stand-in
        copies = compiled_copies(original)
        if copies:
            compiled = dest / f"keras-{name}.pyc"
            py_compile.compile(str(stub), cfile=str(compiled), doraise=True)
            out += [(compiled, pyc) for pyc in copies]
    return out + editable_overlays(dest)


# Libraries absent from the sandbox, by chapter: where every graded
# exercise asks for an operation in numpy, a library that computes it is
# not watched (in the learner's process, a watch can be got round) but
# gone: its package folder is covered by a stub whose import raises, and
# numpy.pad's file (and its bytecode) by a stub whose pad raises. A
# library that is not installed is absent already.
ABSENT_LIBRARIES = {
    "ch01": (
        "tensorflow",
        "keras",
        "jax",
        "jaxlib",
        "scipy",
        "torch",
        "cv2",
        "skimage",
    ),
}
ABSENT_MESSAGE = (
    "chapter {chapter} is graded without TensorFlow, Keras, JAX, SciPy "
    "(nor PyTorch, OpenCV or scikit-image) and without numpy.pad: {what} "
    "is not available here; implement the operation yourself with "
    "numpy's arrays"
)
NUMPY_PAD_FILE = "lib/_arraypad_impl.py"  # under numpy's folder


def absent_overlays(chapter, dest):
    """(stub, path) pairs that make the libraries of
    :data:`ABSENT_LIBRARIES` absent for ``chapter`` (nothing for a chapter
    not listed): a stub package over each installed package's folder, and
    a stub ``_arraypad_impl`` over numpy's (and over its compiled
    copies). Raises :class:`OverlayMissing` when numpy no longer has that
    file or a library is installed as something other than a package
    folder: left uncovered, the library would stay usable."""
    names = ABSENT_LIBRARIES.get(chapter, ())
    if not names:
        return []
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    number = chapter[2:].lstrip("0")
    out = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue  # not installed
        folders = list(spec.submodule_search_locations or [])
        # once imported, a package may list its own subfolders too
        # (tensorflow/_api/v2): only the outermost folder is covered
        folders = [
            f
            for f in folders
            if not any(
                pathlib.Path(g) in pathlib.Path(f).parents for g in folders
            )
        ]
        if not folders:
            raise OverlayMissing(
                f"{name} is installed as {spec.origin}, not as a package "
                "folder: the sandbox cannot make it absent"
            )
        message = ABSENT_MESSAGE.format(chapter=number, what=name)
        stub = dest / name
        stub.mkdir()
        (stub / "__init__.py").write_text(
            f'"""{name}, absent while grading."""\n\n'
            f"raise ImportError({message!r})\n"
        )
        out += [(stub, pathlib.Path(folder)) for folder in folders]
    numpy = importlib.util.find_spec("numpy")
    original = pathlib.Path(numpy.submodule_search_locations[0])
    original = original / NUMPY_PAD_FILE
    if "def pad(" not in (original.read_text() if original.is_file() else ""):
        raise OverlayMissing(
            f"numpy {metadata.version('numpy')} has no pad in {original}: "
            "the sandbox must cover numpy.pad; update NUMPY_PAD_FILE"
        )
    message = ABSENT_MESSAGE.format(chapter=number, what="numpy.pad")
    stub = dest / "numpy-arraypad.py"
    stub.write_text(
        '"""numpy.pad, absent while grading."""\n\n'
        '__all__ = ["pad"]\n\n\n'
        'def pad(array, pad_width, mode="constant", **kwargs):\n'
        f"    raise ImportError({message!r})\n"
    )
    out.append((stub, original))
    copies = compiled_copies(original)
    if copies:
        compiled = dest / "numpy-arraypad.pyc"
        py_compile.compile(str(stub), cfile=str(compiled), doraise=True)
        out += [(compiled, pyc) for pyc in copies]
    return out


def editable_overlays(dest):
    """Empty files over what an editable install of :mod:`cnnbook` leaves
    in site-packages (the finder and ``.pth`` that point at the
    repository, and ``direct_url.json``, which names it): the repository
    is not in the sandbox, and its path is not either."""
    empty = pathlib.Path(dest) / "empty"
    empty.touch()
    out = []
    for folder in sorted({p for p in sys.path if p.endswith("-packages")}):
        site = pathlib.Path(folder)
        if not site.is_dir():
            continue
        found = [
            *site.glob("__editable__*cnnbook*"),
            *site.glob("cnnbook-*.dist-info/direct_url.json"),
        ]
        out += [(empty, path) for path in sorted(found) if path.is_file()]
    return out


def compiled_copies(source):
    """Every bytecode file the interpreter may hold for ``source``: those
    in its ``__pycache__`` (any interpreter, any optimisation level) and a
    legacy ``.pyc`` beside it."""
    source = pathlib.Path(source)
    stem = source.stem
    found = []
    cache = source.parent / "__pycache__"
    if cache.is_dir():
        found += sorted(
            p
            for p in cache.iterdir()
            if p.name.startswith(f"{stem}.") and p.suffix == ".pyc"
        )
    legacy = source.with_suffix(".pyc")
    if legacy.is_file():
        found.append(legacy)
    return found


def _keras_version():
    try:
        return metadata.version("keras")
    except metadata.PackageNotFoundError:
        return "(version unknown)"
