"""How the grader and a sandboxed learner's kernel exchange values: the
format, and how a value is written.

Introduced with the grader (Chapter 1). The grader judges answers in its
own process; only the learner's functions run in the learner's kernel. A
check that calls ``ns["conv_forward"](A, W, b, 2, 1)`` there calls a
:class:`~cnnbook.grading.remote.RemoteFunction` that writes the
arguments to a request file in the sandbox's scratch folder, has the
kernel run :func:`cnnbook.grading.server.serve` on it, and reads the
answer back with :mod:`cnnbook.grading.reader`.

Values travel as JSON with the arrays in an ``.npz`` file next to it:
numbers, strings, lists, tuples, dicts, numpy arrays and scalars, Keras
layers and models (their configuration, and their weights where asked).
Anything else arrives as an :class:`Opaque` stand-in that only knows its
type name and ``repr``. This module holds the format's bounds and writes
values; reading them back, with those bounds, is
:mod:`cnnbook.grading.reader`'s job.

This module runs on both sides: it holds no answer and no expected value.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

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
# what one image makes a returned model hold while the grader runs it
# (every layer's output, float32): ResNet-50 at 224x224 holds 142 MiB; the
# checks run a model on at most 8 images at a time
MAX_ACTIVATION_BYTES = 256 * 2**20
MAX_KERAS_OBJECTS = 4000  # 4x ResNet-50's 866 (layers, initializers...)
# layers of one answer: Keras builds a graph by recursion, and a chain of
# 1000 layers ran out of Python's stack in the grader (red team 10);
# Keras's EfficientNetB0, the deepest network a chapter uses, has 240
MAX_LAYERS = 600
# Everything one answer makes the grader hold, together: its arrays and
# the weights of every Keras object rebuilt from it (a model comes back
# only as the answer itself or as an argument it changed, never inside a
# list; no optimizer state is ever built from a learner's configuration).
MAX_ANSWER_BYTES = MAX_ARRAY_BYTES + MAX_MODEL_BYTES


class WireError(ValueError):
    """A value that cannot travel (too big, too deep, unsafe)."""


class Opaque:
    """Stands in for a value of a type that cannot travel: one class for
    all of them, the name of the value's type held as data
    (``type_name``), never as a class of its own (a class per name met
    would be memory no answer's budget sees, kept for the whole grade)."""

    __slots__ = ("type_name", "_text")

    def __init__(self, text, type_name="object"):
        self._text = text
        self.type_name = type_name

    def __repr__(self):
        return self._text


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
        import keras  # delays keras

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
    import keras  # delays keras

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
    with open_file(path + ".npz", "wb", dir_fd) as fh:
        np.savez(fh, **arrays)
    with open_file(path + ".json", "w", dir_fd) as fh:
        json.dump(tree, fh, allow_nan=False)


def open_file(path, mode, dir_fd):
    """``path`` opened in ``mode``; with ``dir_fd``, a name in that open
    folder, never through a symbolic link, and only a plain file."""
    if dir_fd is None:
        return open(path, mode)
    if "w" in mode:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    else:
        flags = os.O_RDONLY | os.O_NOFOLLOW
    # O_NONBLOCK: opening a FIFO the kernel put in the answer's place
    # would wait for a writer that never comes (red team 9)
    fd = os.open(path, flags | os.O_NONBLOCK, 0o644, dir_fd=dir_fd)
    if not os.path.stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WireError("the answer is not a plain file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, mode)
