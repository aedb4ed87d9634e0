"""Rebuilding a Keras layer or model from a learner's configuration,
bounded before anything is built.

Part of :mod:`cnnbook.grading.reader`, which calls
:func:`decode_keras` for a value of kind ``model`` or ``layer``. A
configuration may name only Keras's own layers (of the families the
checks need), models and what a layer is made of; the weights are
counted from their shapes, and a model's activations for one image from
its graph, before any memory is taken; no optimizer is ever built.
Runs on both sides of the sandbox, like the reader.
"""

from __future__ import annotations

import math

import numpy as np

from cnnbook.grading.wire import (
    MAX_ACTIVATION_BYTES,
    MAX_LAYERS,
    MAX_MODEL_BYTES,
    WireError,
)

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


# layers of those packages whose weights grow with a number of their
# configuration and no check needs (an embedding's table, an einsum's
# output shape, a wrapper of another layer)
UNCHECKED_LAYERS = frozenset(
    {"Embedding", "ReversibleEmbedding", "EinsumDense", "Wrapper"}
)
# The largest sizes a layer may name: twice the largest the book's
# networks use (4096 units in VGG's and AlexNet's dense layers, 2048
# filters in ResNet-50, 11x11 kernels in AlexNet), and a depth multiplier
# of 8 where the book's networks use 1: a
# layer that comes back unbuilt takes its weights only when a check
# builds it on its input, so its sizes are bounded here, before.
MAX_LAYER_SIZES = {
    "units": 8192,
    "filters": 4096,
    "kernel_size": 22,
    "depth_multiplier": 8,
}


def _too_large(inner):
    """The first size of a layer's configuration over its bound, or None."""
    for key, most in MAX_LAYER_SIZES.items():
        value = inner.get(key)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, (int, float)) and not v <= most:
                return f"{key}={v!r} (at most {most} can be checked)"
    return None


def _refuse_layer(config):
    """Why the layer ``config`` describes (module ``keras.layers``) cannot
    be rebuilt, or None."""
    import keras  # delays keras

    name = config["class_name"]
    cls = getattr(keras.layers, name, None)
    if not isinstance(cls, type):
        return None  # Keras itself refuses it
    inner = config.get("config")
    if isinstance(inner, dict):
        size = _too_large(inner)
        if size:
            return f"its {name[:80]} layer has {size}"
    if (
        cls.__module__.startswith(LAYER_PACKAGES)
        and name not in UNCHECKED_LAYERS
    ):
        return None
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


def _count_layers(config):
    """The layers a configuration holds, nested models' included."""
    count, stack = 0, [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("layers"), list):  # a model's
                count += len(item["layers"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


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


def _graph_nodes(model):
    """The nodes of ``model``'s own graph (a Sequential model keeps its
    graph in a functional model; its layers also hold stale nodes of the
    graphs each ``add`` made, which are not run)."""
    graph = getattr(model, "_functional", None) or model
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if by_depth is None:
        raise WireError("it is a model without a graph of layers")
    return [node for nodes in by_depth.values() for node in nodes]


def check_activations(model):
    """Refuse a model whose layers' outputs for one image would take more
    than :data:`MAX_ACTIVATION_BYTES` (float32), or whose size is not
    fixed: a check may run it (a layer that resizes, pads or repeats its
    input costs no weight but any amount of memory when it runs). Models
    inside it count with their own graphs."""
    total, stack, seen = 0, [model], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for node in _graph_nodes(current):
            operation = node.operation
            if operation is not current and hasattr(operation, "layers"):
                stack.append(operation)
            for out in node.output_tensors:
                if any(d is None for d in out.shape[1:]):
                    raise WireError(
                        f"its layer {str(operation.name)[:80]!r} has an "
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
    return total


def bounded_build(make, budget=None):
    """``make()``, with every weight it makes counted before any is
    allocated: in a stateless scope Keras gives a weight its shape and
    dtype only. Over :data:`MAX_MODEL_BYTES` (or the ``budget``) it raises
    :class:`WireError`; a model's activations are bounded too
    (:func:`check_activations`). For the answer itself and for what a
    check builds from it in the grader's process (a VGG block's layers,
    returned unbuilt, are built on the check's input: red team 9)."""
    import keras  # delays keras
    from keras.src.backend.common import global_state  # delays keras
    from keras.src.backend.common.variables import (  # delays keras
        initialize_all_variables,
    )

    global_state.set_global_attribute("uninitialized_variables", [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            obj = make()
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
        if budget is not None:
            budget.charge(size)
        if isinstance(obj, keras.Model):
            check_activations(obj)
        initialize_all_variables()
    except BaseException:
        global_state.set_global_attribute("uninitialized_variables", [])
        raise
    return obj


def decode_keras(tree, arrays, budget):
    import keras  # delays keras

    config = tree["config"]
    # Whether the model was compiled is all a check needs of its compile
    # configuration (its optimizer's slots could take twice the weights'
    # memory again): it is dropped before anything is looked at.
    if isinstance(config, dict) and "compile_config" in config:
        config = {k: v for k, v in config.items() if k != "compile_config"}
    # A layer comes back unbuilt: built from the learner's build
    # configuration, its initializers would draw every weight (twice its
    # size while they do, red team 6); a check builds it on its own input.
    if tree["t"] == "layer" and isinstance(config, dict):
        config = {k: v for k, v in config.items() if k != "build_config"}
    _check_config(config)
    budget.count(_count_objects(config))
    if _count_layers(config) > MAX_LAYERS:
        raise WireError(
            f"it has more than {MAX_LAYERS} layers (Keras's EfficientNetB0, "
            "the deepest network a chapter uses, has 240)"
        )
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
    expected = keras.Model if tree["t"] == "model" else keras.layers.Layer

    def make():
        obj = keras.saving.deserialize_keras_object(config, safe_mode=True)
        if not isinstance(obj, expected):
            raise WireError(
                f"it is a {type(obj).__name__}, not a Keras "
                f"{'model' if tree['t'] == 'model' else 'layer'}"
            )
        return obj

    try:
        obj = bounded_build(make, budget)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - a config Keras cannot rebuild
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
