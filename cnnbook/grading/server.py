"""The kernel's side of the wire: a request run against the learner's code.

Introduced with the grader (Chapter 1). In the sandboxed kernel, the
grader's prelude keeps this module under a private name, and each call a
check makes there (:class:`~cnnbook.grading.remote.RemoteFunction`) runs
:func:`serve`: it reads the request (:mod:`cnnbook.grading.reader`), calls
the learner's function under the time limit (:mod:`cnnbook.grading.timeout`)
and the tripwire (:mod:`cnnbook.grading.tripwire`), and writes the value or
the error back (:mod:`cnnbook.grading.wire`). Only the kernel runs it.
"""

from __future__ import annotations

import json
import linecache
import os
import sys
import traceback

import numpy as np
from IPython import get_ipython

from cnnbook.grading.reader import decode
from cnnbook.grading.timeout import Timeout, call_with_timeout
from cnnbook.grading.wire import encode, write
from cnnbook.kinds import is_layer


def _error_tree(exc, package_dir):
    frames = traceback.extract_tb(exc.__traceback__)
    here = os.path.dirname(os.path.abspath(__file__))
    # the software's own files (the standard library, site-packages, this
    # package) are never the learner's: a line there is no line of theirs
    package = os.path.dirname(here)  # cnnbook/ (the sandbox's copy)
    software = {
        os.path.join(p, "")
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, package)
        if p
    }
    learner = [
        f
        for f in frames
        if not any(f.filename.startswith(p) for p in software)
        and not (package_dir and f.filename.startswith(package_dir))
        and "site-packages" not in f.filename
    ]
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:500],
        "line": (
            _cell_line(learner[-1].filename, learner[-1].lineno)
            if learner
            else None
        ),
        "not_implemented": isinstance(exc, NotImplementedError),
    }


def _cell_line(filename, lineno):
    """``lineno`` of the code compiled from a cell, as a line of the cell
    the learner wrote: IPython drops a cell's leading blank lines before
    it compiles it, so their count is added back."""
    try:
        shell = get_ipython()
        compiled = [line.rstrip() for line in linecache.getlines(filename)]
        if shell is None or not compiled:
            return lineno
        for raw in reversed(shell.history_manager.input_hist_raw):
            lines = [line.rstrip() for line in raw.splitlines()]
            blank = 0
            while blank < len(lines) and not lines[blank].strip():
                blank += 1
            if lines[blank:] == compiled:
                return lineno + blank
    except Exception:  # noqa: BLE001 - the compiled line will do
        pass
    return lineno


def _grader_error(exc):
    """An error of the grader's own side (its request could not be read
    or decoded): reported as the grader's, with no line of the learner's."""
    return {
        "type": "GraderError",
        "message": (
            "the grader could not read its own request "
            f"({type(exc).__name__}: {str(exc)[:300]})"
        ),
        "line": None,
        "not_implemented": False,
    }


def serve(path, namespace):
    """Run the request at ``path`` (.json/.npz) against ``namespace``.

    Called by the grader in the learner's kernel. Writes ``path`` +
    ``.out.json``/``.out.npz``: the value (and the arrays and models
    passed in, as the call left them) or the error the call raised.
    """
    out = path + ".out"
    try:
        with open(path + ".json") as fh:
            request = json.load(fh)
        with np.load(path + ".npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - the grader's side failed
        write(out, {"ok": False, "error": _grader_error(exc)}, {})
        return
    if request.get("op") == "defined":
        names = {
            n: callable(namespace.get(n))
            for n in request["names"]
            if n in namespace
        }
        write(out, {"ok": True, "value": names}, {})
        return
    inputs = []
    try:
        args = [decode(a, arrays, inputs) for a in request["args"]]
        kwargs = {k: decode(v, arrays, inputs) for k, v in request["kwargs"]}
    except Exception as exc:  # noqa: BLE001 - the grader's side failed
        write(out, {"ok": False, "error": _grader_error(exc)}, {})
        return
    before = [a.copy() if isinstance(a, np.ndarray) else None for a in args]
    func = namespace.get(request["name"])
    if request.get("seed") is not None:
        import keras  # delays keras

        keras.utils.set_random_seed(int(request["seed"]))
    seconds = float(request.get("timeout") or 0)
    try:
        value = _watched(
            request["name"], call_with_timeout, func, seconds, *args, **kwargs
        )
        if request.get("block"):
            value = _as_model(value, inputs)
        result_arrays = {}
        tree = {
            "ok": True,
            "value": encode(value, result_arrays, bool(request["weights"])),
            "changed": [],
        }
        for i, (a, b) in enumerate(zip(args, before)):
            if b is not None and (
                a.shape != b.shape or not np.array_equal(a, b, equal_nan=True)
            ):
                tree["changed"].append([i, encode(a, result_arrays)])
            elif is_layer(a, "Model"):
                tree["changed"].append([i, encode(a, result_arrays, True)])
    except Timeout:
        tree, result_arrays = {"ok": False, "timeout": True}, {}
    except Forbidden as exc:
        tree = {"ok": False, "error": exc.tree()}
        result_arrays = {}
    except BaseException as exc:  # noqa: BLE001 - report whatever it raised
        if isinstance(exc, KeyboardInterrupt):
            raise
        tree = {"ok": False, "error": _error_tree(exc, None)}
        result_arrays = {}
    write(out, tree, result_arrays)


class Forbidden(Exception):
    """The tripwire saw a framework's function do the exercise's work (or
    something that could hide one) during a watched call."""

    def __init__(self, name, verdict):
        problems = "; ".join(str(p) for p in verdict.get("problems", []))
        key, asks = verdict.get("key"), verdict.get("asks")
        if key:
            message = (
                f"while {name} ran, {problems}: exercise {key} asks you to "
                f"implement {asks} yourself, so a library's version earns "
                "no points"
            )
        else:
            message = (
                f"while {name} ran, {problems}: the grader cannot vouch "
                "for this answer"
            )
        super().__init__(message)

    def tree(self):
        return {
            "type": "ForbiddenCall",
            "message": str(self)[:500],
            "line": None,
            "not_implemented": False,
        }


def _watched_names():
    """The functions the sandbox's tripwire watches (none elsewhere)."""
    grading = sys.modules.get("cnnbook.grading")
    return getattr(grading, "WATCHED", frozenset())


def _watched(name, call, /, *args, **kwargs):
    """``call(*args, **kwargs)`` under the tripwire of
    :mod:`cnnbook.grading.tripwire` (where the kernel has one: in the
    grading sandbox); raise :class:`Forbidden` on its verdict."""
    box = []
    sys.audit("cnnbook.watch", "start", name, box)
    if not box and name in _watched_names():
        # the tripwire should have answered: the kernel's start-up was
        # changed (its audit hook is missing), so no call can be vouched
        raise Forbidden(name, {"problems": ["the grader's tripwire is off"]})
    try:
        value = call(*args, **kwargs)
    finally:
        sys.audit("cnnbook.watch", "stop", box)
    verdict = box[1] if len(box) > 1 else None
    if isinstance(verdict, dict) and verdict.get("problems"):
        raise Forbidden(name, verdict)
    return value


def _as_model(value, inputs):
    """A block's output tensor, wrapped into a model from the inputs."""
    if not is_layer(value, "KerasTensor"):
        return value
    import keras  # delays keras

    return keras.Model(inputs if len(inputs) > 1 else inputs[0], value)
