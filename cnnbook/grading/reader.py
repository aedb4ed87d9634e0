"""Reading a value back from the wire, bounded before anything is built.

Introduced with the grader (Chapter 1). The other half of
:mod:`cnnbook.grading.wire`: :func:`read` takes the JSON and the arrays a
side wrote, checking each size against the wire's limits before it
decodes it, and :func:`decode` turns the tree back into a value. Reading
a learner's answer never unpickles and never rebuilds a Keras object
outside Keras's safe mode, and every Keras configuration must name only
Keras's own modules.

One answer has one :class:`Budget`: its arrays and the weights of every
Keras object rebuilt from it count together against
:data:`~cnnbook.grading.wire.MAX_ANSWER_BYTES` (and its Keras objects
against :data:`~cnnbook.grading.wire.MAX_KERAS_OBJECTS`), each weight
counted from its shape before it is allocated. A model is accepted only
as a whole value (never inside a list, tuple or dict), and a compiled
model is rebuilt uncompiled with a mark that it was compiled: no
optimizer, and no optimizer state, is ever built from a learner's
configuration.

This module runs on both sides (the kernel decodes the grader's
requests): it holds no answer and no expected value.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile

import numpy as np

from cnnbook.grading import rebuild
from cnnbook.grading.wire import (
    MAX_ANSWER_BYTES,
    MAX_ARRAY_BYTES,
    MAX_ARRAYS,
    MAX_DEPTH,
    MAX_JSON_BYTES,
    MAX_JSON_ITEMS,
    MAX_KERAS_OBJECTS,
    MAX_NPZ_BYTES,
    Opaque,
    WireError,
    open_file,
)


def read(path, dir_fd=None):
    """The (tree, arrays) written by :func:`cnnbook.grading.wire.write`,
    read with limits (and, with ``dir_fd``, never through a symbolic
    link).

    Nothing is built before its size is known: the JSON's count of values,
    then each array's shape and dtype from its header (and the zip's own
    sizes) are checked against the wire's limits first.
    """
    with open_file(path + ".json", "rb", dir_fd) as fh:
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
    with open_file(path + ".npz", "rb", dir_fd) as fh:
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


# What the grader counts for one stand-in of a value that cannot travel
# (:class:`~cnnbook.grading.wire.Opaque`), besides its two strings
OPAQUE_BYTES = 64


class Budget:
    """What one answer may make its reader hold: ``limit`` bytes for its
    arrays (``arrays``, counted at once) and the weights of the Keras
    objects rebuilt from it, and :data:`MAX_KERAS_OBJECTS` objects named
    by their configurations, together. ``weights``: the reader asked for
    the weights of every model (a model that comes without them is
    refused, never rebuilt empty)."""

    def __init__(self, arrays=(), limit=MAX_ANSWER_BYTES, weights=False):
        self.limit, self.weights = limit, weights
        self.used = sum(int(a.nbytes) for a in dict(arrays).values())
        self.objects = 0
        if self.used > self.limit:
            raise WireError("the answer's arrays are too large")

    def count(self, objects):
        self.objects += objects
        if self.objects > MAX_KERAS_OBJECTS:
            raise WireError(
                f"its configurations name more than {MAX_KERAS_OBJECTS} "
                "Keras objects together"
            )

    def charge(self, nbytes, what=None):
        """Count ``nbytes`` more (the weights of a Keras object, or what
        ``what`` names), or refuse before they are allocated."""
        if self.used + nbytes > self.limit:
            if what is None:
                what = f"its weights would take {nbytes / 2**30:.1f} GiB"
            raise WireError(
                f"{what}, and the whole answer more than the "
                f"{self.limit / 2**30:.1f} GiB the grader reads back from "
                "one call (a model may have twice the parameters of the "
                "largest model a check builds)"
            )
        self.used += nbytes


def decode(tree, arrays, inputs=None, depth=0, budget=None):
    """The value encoded as ``tree``.

    ``inputs`` (a list) collects the ``keras.Input`` tensors made for
    :class:`KerasInput` markers (only requests carry those). ``budget``
    (a :class:`Budget`) is shared by every value decoded from one answer;
    without it, this value has one of its own.
    """
    if budget is None:
        budget = Budget(arrays)
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
        items = [
            decode(v, arrays, inputs, depth + 1, budget) for v in tree["v"]
        ]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        out = {}
        for k, v in tree["v"]:
            key = decode(k, arrays, inputs, depth + 1, budget)
            if isinstance(key, list):
                key = tuple(key)
            try:
                out[key] = decode(v, arrays, inputs, depth + 1, budget)
            except TypeError as exc:
                raise WireError(f"a key cannot be used: {exc}") from None
        return out
    if kind == "opaque":
        type_name = str(tree.get("type", "object"))[:80] or "object"
        text = str(tree["repr"])[:200]
        budget.charge(
            OPAQUE_BYTES + len(type_name) + len(text),
            "it holds values of types that cannot travel",
        )
        return Opaque(text, type_name)
    if kind == "input":
        # only the grader's requests carry them (the kernel collects them
        # in ``inputs``); an answer that holds one is refused, since each
        # would make the grader build a Keras tensor (red team 6)
        if inputs is None:
            raise WireError("it holds Keras inputs: an answer cannot")
        import keras  # delays keras

        tensor = keras.Input(tuple(tree["shape"]), name=tree.get("name"))
        if inputs is not None:
            inputs.append(tensor)
        return tensor
    if kind == "model" and depth > 0:
        raise WireError(
            "a model can only be returned on its own, not inside a list, "
            "tuple or dict"
        )
    if kind in ("model", "layer"):
        return rebuild.decode_keras(tree, arrays, budget)
    raise WireError(f"unknown kind of value {kind!r}")
