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

from cnnbook.grading.wire import (
    MAX_ACTIVATION_BYTES,
    MAX_ANSWER_BYTES,
    MAX_ARRAY_BYTES,
    MAX_ARRAYS,
    MAX_DEPTH,
    MAX_JSON_BYTES,
    MAX_JSON_ITEMS,
    MAX_KERAS_OBJECTS,
    MAX_MODEL_BYTES,
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
        return _decode_keras(tree, arrays, budget)
    raise WireError(f"unknown kind of value {kind!r}")


# The only modules a configuration may name: Keras's layers, models and
# what a layer is made of (initializers, regularizers, constraints,
# activations). The checks need nothing else: metrics, losses, optimizers
# and schedules are refused (a metric's constructor can allocate from one
# number of its configuration, AUC's num_thresholds, before any budget
# sees it), as is every other function Keras could be asked to look up
# (Keras's safe mode refuses Lambda layers).
KERAS_MODULES = frozenset(
    {
        "keras",
        "keras.layers",
        "keras.initializers",
        "keras.regularizers",
        "keras.constraints",
        "keras.activations",
        "keras.models",
        "keras.src.models.functional",
        "keras.src.models.sequential",
        "keras.src.models.model",
    }
)
# What a configuration may name in the module "keras" itself (Keras looks
# up "keras.<class_name>", so a dotted name such as "metrics.AUC" would
# reach any of Keras's exports)
KERAS_TOP_LEVEL = frozenset(
    {"DTypePolicy", "FloatDTypePolicy", "Model", "Sequential", "Functional"}
)


# Keras's layers a configuration may name: those of these packages (their
# memory is in their weights, which the budget counts before they exist)
# and a few preprocessing layers that allocate nothing when built. Other
# layers may allocate from their configuration alone while they are built
# (a Normalization layer given its mean and variance broadcasts them to
# its input's whole shape), and no check needs them.
LAYER_PACKAGES = tuple(
    f"keras.src.layers.{name}"
    for name in (
        "activations",
        "convolutional",
        "core",
        "merging",
        "normalization",
        "pooling",
        "regularization",
        "reshaping",
    )
)
PREPROCESSING_LAYERS = frozenset(
    {
        "CenterCrop",
        "Normalization",  # without a mean and variance of its own
        "RandomContrast",
        "RandomCrop",
        "RandomFlip",
        "RandomRotation",
        "RandomTranslation",
        "RandomZoom",
        "Rescaling",
        "Resizing",
    }
)


def _refuse_layer(config):
    """Why the layer ``config`` describes (module ``keras.layers``) cannot
    be rebuilt, or None."""
    import keras  # delays keras

    name = config["class_name"]
    cls = getattr(keras.layers, name, None)
    if not isinstance(cls, type):
        return None  # Keras itself refuses it
    if cls.__module__.startswith(LAYER_PACKAGES):
        return None
    inner = config.get("config")
    if name in PREPROCESSING_LAYERS and not (
        name == "Normalization"
        and isinstance(inner, dict)
        and (
            inner.get("mean") is not None or inner.get("variance") is not None
        )
    ):
        return None
    return (
        f"it uses Keras's {name[:80]} layer"
        + (
            " with a mean and variance fixed in its configuration"
            if name == "Normalization"
            else ""
        )
        + ": only the convolution, dense, pooling, normalization, merging, "
        "reshaping, activation and dropout layers (and a few preprocessing "
        "layers) can be checked"
    )


def _refuse_object(config):
    """Why the object ``config`` describes cannot be rebuilt, or None.

    It must name a class (or function) of :data:`KERAS_MODULES` by a
    plain name, with no registered name of another object: Keras looks a
    registered name up first, and a dotted class name reaches beyond the
    module. Keras's own markers (``__keras_tensor__``, ``__tuple__``...)
    carry no module.
    """
    name, module = config.get("class_name"), config.get("module")
    if "module" not in config and isinstance(name, str):
        if name.startswith("__") and name.endswith("__"):
            return None
    if (
        module not in KERAS_MODULES
        or not isinstance(name, str)
        or not name.isidentifier()
        or (module == "keras" and name not in KERAS_TOP_LEVEL)
        or config.get("registered_name") not in (None, name)
    ):
        return (
            f"it uses {str(name)[:80]!r} from {str(module)[:80]!r}: only "
            "Keras's own layers can be checked"
        )
    if module == "keras.layers":
        return _refuse_layer(config)
    return None


def _check_config(config, depth=0):
    """Refuse configurations that name anything but Keras's layers,
    models and their parts."""
    if depth > 200:
        raise WireError("the model's configuration is nested too deeply")
    if isinstance(config, dict):
        if "module" in config or "class_name" in config:
            why = _refuse_object(config)
            if why:
                raise WireError(why)
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


def _check_activations(model):
    """Refuse a model whose layers' outputs for one image would take more
    than :data:`MAX_ACTIVATION_BYTES` (float32), or whose size is not
    fixed: a check may run it (a layer that resizes, pads or repeats its
    input costs no weight but any amount of memory when it runs)."""
    total, seen, stack = 0, set(), [model]
    while stack:
        for layer in getattr(stack.pop(), "layers", []):
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if hasattr(layer, "layers"):
                stack.append(layer)
            for node in layer._inbound_nodes:
                for out in node.output_tensors:
                    if any(d is None for d in out.shape[1:]):
                        raise WireError(
                            f"its layer {str(layer.name)[:80]!r} has an "
                            f"output of unfixed size {out.shape}: build it "
                            "for the input shape the check gives"
                        )
                    total += math.prod(out.shape[1:]) * 4
                    if total > MAX_ACTIVATION_BYTES:
                        raise WireError(
                            "its layers' outputs for one image would take "
                            f"more than {MAX_ACTIVATION_BYTES // 2**20} MiB, "
                            "far more than any network of the book"
                        )


def _decode_keras(tree, arrays, budget):
    import keras  # delays keras
    from keras.src.backend.common import global_state  # delays keras
    from keras.src.backend.common.variables import (  # delays keras
        initialize_all_variables,
    )

    config = tree["config"]
    # Whether the model was compiled is all a check needs of its compile
    # configuration (its optimizer's slots could take twice the weights'
    # memory again): it is dropped before anything is looked at.
    if isinstance(config, dict) and "compile_config" in config:
        config = {k: v for k, v in config.items() if k != "compile_config"}
    _check_config(config)
    budget.count(_count_objects(config))
    keys = tree.get("weights") if tree["t"] == "model" else None
    if tree["t"] == "model" and budget.weights and keys is None:
        raise WireError(
            "a model came back without its weights: the grader asked for them"
        )
    if tree["t"] == "model":
        # the grader sets the weights it needs itself: skip random draws
        config = _zero_initializers(config)
    # Rebuilt in a stateless scope, Keras makes every weight without its
    # memory (shape and dtype only): the total is checked before any
    # weight is allocated.
    global_state.set_global_attribute("uninitialized_variables", [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            obj = keras.saving.deserialize_keras_object(config, safe_mode=True)
        expected = keras.Model if tree["t"] == "model" else keras.layers.Layer
        if not isinstance(obj, expected):
            raise WireError(
                f"it is a {type(obj).__name__}, not a Keras "
                f"{'model' if tree['t'] == 'model' else 'layer'}"
            )
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
        budget.charge(size)
        if tree["t"] == "model":
            _check_activations(obj)
        initialize_all_variables()
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
        if keys is not None:
            try:
                obj.set_weights([arrays[k] for k in keys])
            except Exception as exc:  # noqa: BLE001
                raise WireError(
                    f"its weights do not fit its layers ({exc})"
                ) from None
    return obj
