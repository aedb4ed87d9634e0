"""Comparing a learner's network with the specification's, layer by
layer: classes, output shapes and parameters (:func:`layer_signature`),
what each layer computes beyond those (:func:`layer_settings`) and how
the layers are connected (:func:`layer_wiring`). Used by the checks of
chapters 2 to 6; split from :mod:`cnnbook.grading.api`.
"""

from __future__ import annotations

import collections

from cnnbook.arithmetic import layer_table
from cnnbook.grading.api import CheckFailure, _describe
from cnnbook.kinds import is_layer


def layer_signature(model):
    """(class, output shape, parameters) per layer, inputs left out."""
    return layer_table(model).signature()


def _keras_histories(value):
    """The layer names in the ``keras_history`` of every Keras tensor
    described in ``value`` (part of a model's configuration)."""
    if isinstance(value, dict):
        history = value.get("config", {}).get("keras_history")
        if value.get("class_name") == "__keras_tensor__" and history:
            return [history[0]]
        return [n for item in value.values() for n in _keras_histories(item)]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _keras_histories(item)]
    return []


def parent_layers(model):
    """Layer name -> names of the layers whose outputs it takes, read from
    ``model.get_config()`` (Keras's public description of the graph). A
    ``Sequential`` model's layers each take the previous one's output.
    Chapter 5."""
    layers = model.get_config().get("layers", [])
    parents = {}
    for index, layer in enumerate(layers):
        name = layer.get("name") or layer["config"]["name"]
        nodes = layer.get("inbound_nodes")
        if nodes is None:  # Sequential: a chain
            before = layers[index - 1] if index else None
            parents[name] = (
                [before.get("name") or before["config"]["name"]]
                if before
                else []
            )
            continue
        parents[name] = _keras_histories(nodes)
    return parents


def _shape_of(layer):
    try:
        out = layer.output
    except (AttributeError, ValueError):  # never called, or called twice
        return ()
    if isinstance(out, (list, tuple)):
        return tuple(tuple(o.shape) for o in out)
    return tuple(out.shape)


def _depths(names, parents, inputs):
    """Layer name -> the longest chain of layers from an input (depth 0)
    to it, without recursion (a chain of 1000 layers is no problem); a
    layer with no parent but the model's input (a Sequential model's
    first) is at depth 1."""
    depth, pending = (
        dict.fromkeys(inputs, 0),
        [n for n in names if n not in inputs],
    )
    while pending:
        rest = []
        for name in pending:
            before = [p for p in parents.get(name, []) if p in names]
            if all(p in depth for p in before):
                depth[name] = 1 + max((depth[p] for p in before), default=0)
            else:
                rest.append(name)
        if len(rest) == len(pending):  # no progress: not a graph Keras makes
            depth.update(dict.fromkeys(rest, -1))
            break
        pending = rest
    return depth


def layer_wiring(model):
    """(class, output shape, depth, settings, and the same of each layer it
    takes its inputs from) for every layer but the inputs: how the layers
    are connected, whatever their names and order (red team 7: a ResNet
    whose blocks added their main path to itself had the right layers).
    The depth (the longest chain from an input) tells apart two layers
    alike in class and shape (red team 10: identity blocks whose shortcut
    came from their stage's first block), the settings two branches that
    end alike (a 5x5 branch swapped with the pool branch). A
    concatenation's inputs count in their order (red team 8: a module
    that concatenated its branches in reverse), others' in any order."""
    base = getattr(model, "_model", model)  # an ordering wrapper's model
    parents = parent_layers(base)
    by_name = {layer.name: layer for layer in base.layers}
    depth = _depths(
        by_name,
        parents,
        {x.name for x in base.layers if is_layer(x, "InputLayer")},
    )

    def describe(layer):
        settings = layer_settings([layer])
        return (
            type(layer).__name__,
            _shape_of(layer),
            depth.get(layer.name, -1),
            settings[0][2] if settings else (),
        )

    out = []
    for layer in base.layers:
        if is_layer(layer, "InputLayer"):
            continue
        takes = [
            describe(by_name[p])
            for p in parents.get(layer.name, [])
            if p in by_name
        ]
        if not takes:  # a Sequential model's first layer: its input
            takes = [("InputLayer", tuple(base.inputs[0].shape), 0, ())]
        if not is_layer(layer, "Concatenate"):  # order matters only there
            takes = sorted(takes, key=repr)
        out.append((*describe(layer), tuple(takes)))
    return out


def expect_same_wiring(model, reference, what="your model"):
    """The same connections as the reference (as a multiset: branches may
    be built in any order)."""
    mine = collections.Counter(layer_wiring(model))
    ref = collections.Counter(layer_wiring(reference))
    extra = list((mine - ref).elements())
    if extra:
        kind, shape, depth, _settings, takes = extra[0]
        inputs = (
            ", ".join(f"{k} {s} at depth {d}" for k, s, d, _ in takes)
            or "nothing"
        )
        raise CheckFailure(
            f"{what}: its layers are not connected as the specification's: "
            f"its {kind} at depth {depth} with output {shape} takes "
            f"{inputs} (depth: the most layers on a path from the input)"
        )


def expect_same_layers(model, reference, what="your model"):
    """Compare two models layer by layer; name the first layer that differs."""
    if model is None or not hasattr(model, "layers"):
        raise CheckFailure(
            f"{what} should be a keras Model, got {_describe(model)}"
        )
    mine, ref = layer_signature(model), layer_signature(reference)
    fields = ("type", "output shape", "parameter count")
    for i, (a, b) in enumerate(zip(mine, ref)):
        for name, x, y in zip(fields, a, b):
            if x != y:
                layer = [
                    candidate
                    for candidate in model.layers
                    if not is_layer(candidate, "InputLayer")
                ][i]
                raise CheckFailure(
                    f"{what}: layer {i + 1} ('{layer.name}') has {name} {x}, "
                    f"the specification has {y}"
                )
    if len(mine) != len(ref):
        raise CheckFailure(
            f"{what} has {len(mine)} layers, the specification has {len(ref)}"
        )
    total, expected = model.count_params(), reference.count_params()
    if total != expected:
        raise CheckFailure(
            f"{what} has {total:,} parameters, expected {expected:,}"
        )
    mine = [x for x in model.layers if not is_layer(x, "InputLayer")]
    ref = [x for x in reference.layers if not is_layer(x, "InputLayer")]
    mine_settings, ref_settings = layer_settings(mine), layer_settings(ref)
    # in any order: the structure above is compared in order already
    same = collections.Counter(mine_settings) == collections.Counter(
        ref_settings
    )
    for i, (a, b) in enumerate(zip(mine_settings, ref_settings)):
        if a != b and not same:
            differ = ", ".join(
                f"{k}={v!r}" for (k, v) in a[2] if (k, v) not in b[2]
            )
            wanted = ", ".join(
                f"{k}={v!r}" for (k, v) in b[2] if (k, v) not in a[2]
            )
            raise CheckFailure(
                f"{what}: layer {i + 1} ('{mine[i].name}') has "
                f"{differ or 'other settings'}, the specification has "
                f"{wanted or 'other settings'}"
            )
    expect_same_wiring(model, reference, what)


# what a layer computes beyond its class, output shape and parameter count:
# two networks alike in those three can still differ here (a 1x9 kernel
# with dilation where the specification has 3x3, no activation where it
# has ReLU: red team 6)
SETTINGS = (
    "kernel_size",
    "strides",
    "padding",
    "dilation_rate",
    "activation",
    "pool_size",
    "groups",
    "depth_multiplier",
    "data_format",  # a channels_first pool keeps the shape (red team 9)
    "max_value",  # ReLU6 against ReLU
    "epsilon",
    "rate",
)


def _plain(value):
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("config", value))
    return value


def layer_settings(layers):
    """(class, output shape, settings) of every layer in ``layers``, inputs
    left out; the settings are those of :data:`SETTINGS` the layer has."""
    out = []
    for layer in layers:
        if is_layer(layer, "InputLayer"):
            continue
        config = layer.get_config()
        settings = tuple(
            (key, _plain(config[key])) for key in SETTINGS if key in config
        )
        shape = (
            tuple(tuple(o.shape) for o in layer.output)
            if isinstance(layer.output, (list, tuple))
            else tuple(layer.output.shape)
        )
        out.append((type(layer).__name__, shape, settings))
    return out


def expect_same_settings(layers, reference_layers, what="your model"):
    """The same layers, with the same settings, as the reference, in any
    order (a module's branches may be built in another order); name the
    first difference."""
    mine = collections.Counter(layer_settings(layers))
    ref = collections.Counter(layer_settings(reference_layers))
    missing, extra = (
        list((ref - mine).elements()),
        list((mine - ref).elements()),
    )
    if not (missing or extra):
        return
    parts = []
    if missing:
        kind, shape, settings = missing[0]
        told = ", ".join(f"{k}={v!r}" for k, v in settings) or "no settings"
        parts.append(
            f"the specification has a {kind} with output {shape} and {told}"
        )
    if extra:
        kind, shape, settings = extra[0]
        told = ", ".join(f"{k}={v!r}" for k, v in settings) or "no settings"
        parts.append(f"yours has a {kind} with output {shape} and {told}")
    raise CheckFailure(f"{what}: " + "; ".join(parts))
