"""How the grader and a sandboxed learner's kernel exchange values.

Introduced with the grader (Chapter 1). The grader judges answers in its
own process; only the learner's functions run in the learner's kernel. A
check that calls ``ns["conv_forward"](A, W, b, 2, 1)`` there calls a
:class:`~cnnbook.grading.remote.RemoteFunction` that writes the
arguments to a request file in the sandbox's scratch folder, has the
kernel run :func:`serve` on it, and reads the answer back.

Values travel as JSON with the arrays in an ``.npz`` file next to it:
numbers, strings, lists, tuples, dicts, numpy arrays and scalars, Keras
layers and models (their configuration, and their weights where asked).
Anything else arrives as an :class:`Opaque` stand-in that only knows its
type name and ``repr``. Reading a learner's answer never unpickles and
never rebuilds a Keras object outside Keras's safe mode, and every Keras
configuration must name only Keras's own modules.

This module runs on both sides: it holds no answer and no expected value.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import traceback
import zipfile

import numpy as np

from cnnbook.grading.timeout import Timeout, call_with_timeout
from cnnbook.kinds import is_layer

MAX_JSON_BYTES = 64 * 2**20
MAX_NPZ_BYTES = 512 * 2**20
MAX_DEPTH = 32
# What the grader accepts back, bounded before anything is built:
# JSON values (each costs at most ~100 bytes of Python objects), the
# arrays' decoded bytes (np.savez stores them uncompressed, so an honest
# answer decodes to about its file's size), the arrays in one answer, and
# the weights of a rebuilt Keras model. The largest model any check
# builds is VGG-16 at 224x224x3 with 1000 classes (exercise 4.2,
# 138,357,544 parameters); a learner's model may have twice as many.
MAX_JSON_ITEMS = 4_000_000
MAX_ARRAY_BYTES = MAX_NPZ_BYTES
MAX_ARRAYS = 4096
LARGEST_REFERENCE_PARAMS = 138_357_544
MAX_MODEL_BYTES = 2 * LARGEST_REFERENCE_PARAMS * 4  # float32
MAX_KERAS_OBJECTS = 4000  # 4x ResNet-50's 866 (layers, initializers...)


class WireError(ValueError):
    """A value that cannot travel (too big, too deep, unsafe)."""


class Opaque:
    """Stands in for a value of a type that cannot travel."""

    type_name = "object"

    def __init__(self, text):
        self._text = text

    def __repr__(self):
        return self._text


_OPAQUE = {}


def _opaque(type_name, text):
    cls = _OPAQUE.get(type_name)
    if cls is None:
        cls = type(str(type_name)[:80] or "object", (Opaque,), {})
        cls.type_name = type_name
        _OPAQUE[type_name] = cls
    return cls(text)


class KerasInput:
    """Argument marker: the kernel passes ``keras.Input(shape)`` instead."""

    def __init__(self, shape, name=None):
        self.shape = tuple(int(d) for d in shape)
        self.name = name


# ------------------------------------------------------------------ encode
def encode(value, arrays, weights=False, depth=0):
    """A JSON-able tree for ``value``; arrays go into the dict ``arrays``."""
    if depth > MAX_DEPTH:
        raise WireError("the value is nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, KerasInput):
        return {"t": "input", "shape": list(value.shape), "name": value.name}
    if type(value) is int:
        return value
    if type(value) is float:
        if math.isfinite(value):
            return value
        return {"t": "float", "v": repr(value)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            return _opaque_of(value)
        key = f"a{len(arrays)}"
        arrays[key] = np.ascontiguousarray(value)
        return {"t": "array", "k": key}
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biufc":
            return _opaque_of(value)
        item = value.item()
        if isinstance(item, float) and not math.isfinite(item):
            item = repr(item)
        if isinstance(item, complex):
            return _opaque_of(value)
        return {"t": "np", "dtype": value.dtype.str, "v": item}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {
            "t": kind,
            "v": [encode(v, arrays, weights, depth + 1) for v in value],
        }
    if isinstance(value, dict):
        return {
            "t": "dict",
            "v": [
                [
                    encode(k, arrays, weights, depth + 1),
                    encode(v, arrays, weights, depth + 1),
                ]
                for k, v in value.items()
            ],
        }
    if isinstance(value, (int, float)):  # subclasses: as plain values
        return encode(
            int(value) if isinstance(value, int) else float(value),
            arrays,
            weights,
            depth,
        )
    if is_layer(value, "Model"):
        return _encode_model(value, arrays, weights)
    if is_layer(value, "Layer"):
        import keras

        return {
            "t": "layer",
            "config": _jsonable(keras.saving.serialize_keras_object(value)),
        }
    return _opaque_of(value)


def _opaque_of(value):
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a learner's __repr__ may raise
        text = "<unprintable>"
    return {"t": "opaque", "type": type(value).__name__, "repr": text[:200]}


def _jsonable(config):
    return json.loads(json.dumps(config, default=_json_default))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot describe {type(value).__name__}")


def _encode_model(model, arrays, weights):
    import keras

    out = {
        "t": "model",
        "config": _jsonable(keras.saving.serialize_keras_object(model)),
        "compiled": bool(
            getattr(model, "compiled", False)
            and getattr(model, "optimizer", None) is not None
        ),
    }
    if weights:
        keys = []
        for w in model.get_weights():
            key = f"a{len(arrays)}"
            arrays[key] = np.asarray(w)
            keys.append(key)
        out["weights"] = keys
    return out


def write(path, tree, arrays, dir_fd=None):
    """Write ``tree`` to ``path.json`` and ``arrays`` to ``path.npz``.

    With ``dir_fd`` (the grader's side), ``path`` is a name in that open
    folder, created anew: a symbolic link the notebook's code planted there
    is never followed.
    """
    with _open(path + ".npz", "wb", dir_fd) as fh:
        np.savez(fh, **arrays)
    with _open(path + ".json", "w", dir_fd) as fh:
        json.dump(tree, fh, allow_nan=False)


def _open(path, mode, dir_fd):
    if dir_fd is None:
        return open(path, mode)
    if "w" in mode:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    else:
        flags = os.O_RDONLY | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o644, dir_fd=dir_fd)
    if not os.path.stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WireError("the answer is not a plain file")
    return os.fdopen(fd, mode)


# ------------------------------------------------------------------ decode
def read(path, dir_fd=None):
    """The (tree, arrays) written by :func:`write`, read with limits (and,
    with ``dir_fd``, never through a symbolic link).

    Nothing is built before its size is known: the JSON's count of values,
    then each array's shape and dtype from its header (and the zip's own
    sizes) are checked against the limits above first.
    """
    with _open(path + ".json", "rb", dir_fd) as fh:
        if os.fstat(fh.fileno()).st_size > MAX_JSON_BYTES:
            raise WireError("the answer is too large")
        raw = fh.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise WireError("the answer is too large")
    # every JSON value but the first follows one of these bytes (counted
    # inside strings too: an upper bound)
    if sum(raw.count(c) for c in b",:[{") > MAX_JSON_ITEMS:
        raise WireError("the answer holds too many values")
    try:
        tree = json.loads(raw)
    except RecursionError:
        raise WireError("the value is nested too deeply") from None
    with _open(path + ".npz", "rb", dir_fd) as fh:
        arrays = load_arrays(fh)
    return tree, arrays


def load_arrays(fh):
    """The arrays of the ``.npz`` open as ``fh``, each bounded in memory
    before it is decoded (:data:`MAX_ARRAYS`, :data:`MAX_ARRAY_BYTES`)."""
    size = os.fstat(fh.fileno()).st_size
    if size > MAX_NPZ_BYTES:
        raise WireError("the answer is too large")
    _check_zip_directory(fh, size)
    try:
        with zipfile.ZipFile(fh) as zf:
            members = zf.infolist()
            if len(members) > MAX_ARRAYS:
                raise WireError("the answer holds too many arrays")
            headers, total = [], 0
            for info in members:
                shape, dtype, offset = _array_header(zf, info)
                nbytes = math.prod(shape) * dtype.itemsize  # Python ints
                total += nbytes
                if total > MAX_ARRAY_BYTES:
                    raise WireError("the answer's arrays are too large")
                if info.file_size != offset + nbytes:
                    raise WireError("an array's size does not match its file")
                headers.append(info)
            arrays = {}
            for info in headers:
                with zf.open(info) as member:
                    arrays[info.filename.removesuffix(".npy")] = (
                        np.lib.format.read_array(member, allow_pickle=False)
                    )
            return arrays
    except WireError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise WireError(
            f"the answer's arrays cannot be read ({type(exc).__name__})"
        ) from None


def _check_zip_directory(fh, size):
    """Refuse a zip whose central directory is large (every entry becomes
    an object when the zip is opened) or in the ZIP64 format, read from
    its end record; np.savez writes that record last, without a comment."""
    if size < 22:
        raise WireError("the answer's arrays cannot be read (not a zip)")
    fh.seek(size - 22)
    end = fh.read(22)
    fh.seek(0)
    if end[:4] != b"PK\x05\x06":
        raise WireError("the answer's arrays cannot be read (not a zip)")
    entries, directory = struct.unpack("<HI", end[10:16])
    if entries > MAX_ARRAYS or directory > MAX_ARRAYS * 1024:
        raise WireError("the answer holds too many arrays")
    if entries == 0xFFFF or directory == 0xFFFFFFFF:
        raise WireError("the answer's arrays cannot be read (ZIP64)")


def _array_header(zf, info):
    """(shape, dtype, bytes before the data) of one ``.npy`` member, read
    from its header alone."""
    with zf.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(member)
        else:
            raise WireError("the answer's arrays cannot be read (version)")
        shape, _, dtype = header
        offset = member.tell()
    if dtype.kind not in "biufc" or dtype.hasobject:
        raise WireError("arrays must hold numbers")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise WireError("the answer's arrays cannot be read (shape)")
    return shape, dtype, offset


def decode(tree, arrays, inputs=None, depth=0):
    """The value encoded as ``tree``.

    ``inputs`` (a list) collects the ``keras.Input`` tensors made for
    :class:`KerasInput` markers (only requests carry those).
    """
    if depth > MAX_DEPTH:
        raise WireError("the value is nested too deeply")
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if not isinstance(tree, dict):
        raise WireError(f"unexpected {type(tree).__name__} in an answer")
    kind = tree.get("t")
    if kind == "float":
        return float(tree["v"])
    if kind == "array":
        value = arrays[tree["k"]]
        if value.dtype.kind not in "biufc":
            raise WireError("arrays must hold numbers")
        return value
    if kind == "np":
        dtype = np.dtype(tree["dtype"])
        if dtype.kind not in "biufc":
            raise WireError("numbers only")
        v = tree["v"]
        return dtype.type(float(v) if isinstance(v, str) else v)
    if kind in ("list", "tuple"):
        items = [decode(v, arrays, inputs, depth + 1) for v in tree["v"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        out = {}
        for k, v in tree["v"]:
            key = decode(k, arrays, inputs, depth + 1)
            if isinstance(key, list):
                key = tuple(key)
            try:
                out[key] = decode(v, arrays, inputs, depth + 1)
            except TypeError as exc:
                raise WireError(f"a key cannot be used: {exc}") from None
        return out
    if kind == "opaque":
        return _opaque(str(tree.get("type", "object")), str(tree["repr"]))
    if kind == "input":
        import keras

        tensor = keras.Input(tuple(tree["shape"]), name=tree.get("name"))
        if inputs is not None:
            inputs.append(tensor)
        return tensor
    if kind in ("model", "layer"):
        return _decode_keras(tree, arrays)
    raise WireError(f"unknown kind of value {kind!r}")


# The only modules a configuration may name: Keras's layers, models and
# what they are built from. (Keras's safe mode refuses Lambda layers; this
# also keeps out every other function Keras could be asked to look up.)
KERAS_MODULES = frozenset(
    {
        "keras",
        "keras.layers",
        "keras.initializers",
        "keras.regularizers",
        "keras.constraints",
        "keras.activations",
        "keras.optimizers",
        "keras.optimizers.schedules",
        "keras.losses",
        "keras.metrics",
        "keras.models",
        "keras.src.models.functional",
        "keras.src.models.sequential",
        "keras.src.models.model",
    }
)


def _check_config(config, depth=0):
    """Refuse configurations that name anything but Keras's own parts."""
    if depth > 200:
        raise WireError("the model's configuration is nested too deeply")
    if isinstance(config, dict):
        module = config.get("module")
        if "module" in config and module not in KERAS_MODULES:
            raise WireError(
                f"it uses {str(config.get('class_name'))[:80]!r} from "
                f"{str(module)[:80]!r}: only Keras's own layers can be "
                "checked"
            )
        if config.get("class_name") in ("Lambda", "TFSMLayer"):
            raise WireError(
                "it uses a Lambda layer: only Keras's own layers can be "
                "checked"
            )
        for value in config.values():
            _check_config(value, depth + 1)
    elif isinstance(config, list):
        for value in config:
            _check_config(value, depth + 1)


def _zero_initializers(config):
    if isinstance(config, dict):
        return {
            k: (
                {
                    "module": "keras.initializers",
                    "class_name": "Zeros",
                    "config": {},
                    "registered_name": None,
                }
                if k.endswith("_initializer") and isinstance(v, dict)
                else _zero_initializers(v)
            )
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [_zero_initializers(v) for v in config]
    return config


def _count_objects(config, depth=0):
    """The Keras objects a configuration names (layers, initializers...)."""
    if depth > 200:
        raise WireError("the model's configuration is nested too deeply")
    if isinstance(config, dict):
        return ("class_name" in config) + sum(
            _count_objects(v, depth + 1) for v in config.values()
        )
    if isinstance(config, list):
        return sum(_count_objects(v, depth + 1) for v in config)
    return 0


def _decode_keras(tree, arrays):
    import keras
    from keras.src.backend.common import global_state
    from keras.src.backend.common.variables import initialize_all_variables
    from keras.src.saving.serialization_lib import SafeModeScope

    config = tree["config"]
    _check_config(config)
    if _count_objects(config) > MAX_KERAS_OBJECTS:
        raise WireError(
            f"its configuration names more than {MAX_KERAS_OBJECTS} "
            "Keras objects"
        )
    if tree["t"] == "model":
        # the grader sets the weights it needs itself: skip random draws
        config = _zero_initializers(config)
    # Rebuilt in a stateless scope, Keras makes every weight without its
    # memory (shape and dtype only): the total is checked before any
    # weight is allocated.
    # (An optimizer cannot be made there: a compiled model is compiled
    # once its weights exist, as Keras itself does after rebuilding.)
    compile_config = None
    if isinstance(config, dict) and config.get("compile_config"):
        compile_config = config["compile_config"]
        config = {k: v for k, v in config.items() if k != "compile_config"}
    global_state.set_global_attribute("uninitialized_variables", [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            obj = keras.saving.deserialize_keras_object(config, safe_mode=True)
        pending = global_state.get_global_attribute(
            "uninitialized_variables", []
        )
        size = sum(
            math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in pending
        )
        if size > MAX_MODEL_BYTES:
            raise WireError(
                f"its weights would take {size / 2**30:.1f} GiB, more than "
                f"twice the largest model a check builds "
                f"({MAX_MODEL_BYTES / 2**30:.1f} GiB)"
            )
        initialize_all_variables()
        if compile_config:
            with SafeModeScope(True):
                obj.compile_from_config(compile_config)
            obj.compiled = True
    except WireError:
        global_state.set_global_attribute("uninitialized_variables", [])
        raise
    except Exception as exc:  # noqa: BLE001 - a config Keras cannot rebuild
        global_state.set_global_attribute("uninitialized_variables", [])
        raise WireError(
            f"Keras cannot rebuild it from its configuration "
            f"({type(exc).__name__}: {str(exc)[:200]}); use Keras's own "
            "layers"
        ) from None
    if tree["t"] == "model":
        obj._cnnbook_compiled = bool(tree.get("compiled"))
        keys = tree.get("weights")
        if keys is not None:
            try:
                obj.set_weights([arrays[k] for k in keys])
            except Exception as exc:  # noqa: BLE001
                raise WireError(
                    f"its weights do not fit its layers ({exc})"
                ) from None
    return obj


# --------------------------------------------------- the kernel's side
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
        import linecache

        from IPython import get_ipython

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
        import keras

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
    import keras

    return keras.Model(inputs if len(inputs) > 1 else inputs[0], value)
