"""What the checks of exercises 8.3 and 8.4 read of a model: its layers,
its trainable weights, its base's layout and head, what one training
step moves. Split from :mod:`cnnbook.grading.checks.ch08.transfer`,
which holds the exercises.
"""

from __future__ import annotations

import math

import numpy as np

from cnnbook.grading.api import (
    CheckFailure,
    expect_equal,
    mistake,
    type_name,
)
from cnnbook.grading.checks.ch08.blocks import randomise
from cnnbook.kinds import is_layer

BN_TRAINING = (
    "batch normalisation ran in training mode: a BatchNormalization layer "
    "that is trainable updates its moving mean and variance from every "
    "batch, so the statistics the base learnt are overwritten by those of "
    "the new data"
)
KEEP_BN_FROZEN = (
    "keep every BatchNormalization layer of the base frozen "
    "(layer.trainable = False) while the rest trains: in Keras 3 a frozen "
    "one runs in inference mode; calling the base with training=False is "
    "not enough, because fit calls the model with training=True, which "
    "overrides it"
)


# ----------------------------------------------------------------- helpers
def _all_layers(model):
    """Every layer of ``model``, those of nested models included."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _leaves(model):
    return [x for x in _all_layers(model) if not hasattr(x, "layers")]


def _size(weights):
    return sum(math.prod(w.shape) for w in weights)


def _base(rng):
    """A small base network standing in for a pretrained one: a strided
    3x3 convolution and an inverted residual block, with random weights
    and batch-norm statistics far from their defaults."""
    import keras  # delays keras
    from keras import layers  # delays keras

    from cnnbook.models import inverted_residual  # delays keras

    size = int(rng.integers(8, 17))
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(
        int(rng.integers(4, 13)),
        3,
        strides=2,
        padding="same",
        use_bias=False,
        name="stem",
    )(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu6", name="stem_relu6")(x)
    x = inverted_residual(
        x, int(rng.integers(4, 17)), expansion=3, name="block1"
    )
    base = keras.Model(inputs, x, name="base")
    randomise(base, rng)
    return base


def _head_params(base, num_classes):
    """Weights of global average pooling and a dense softmax layer."""
    return (base.output.shape[-1] + 1) * num_classes


def _bn_trainable(model):
    """Scale and offset of every batch normalisation of ``model``."""
    return sum(
        2 * x.get_weights()[0].size
        for x in _all_layers(model)
        if is_layer(x, "BatchNormalization")
    )


def _trainable_count(model):
    return _size(model.trainable_weights)


def _expect_model(model, num_classes, what):
    if model is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    if not hasattr(model, "outputs") or not hasattr(model, "layers"):
        raise CheckFailure(
            f"{what} should return a keras Model, got {type_name(model)}"
        )
    if len(model.outputs) != 1:
        raise CheckFailure(
            f"{what} should have one output, it has {len(model.outputs)}"
        )
    expect_equal(
        tuple(model.output.shape), (None, num_classes), f"{what}: output shape"
    )


def _weights_of(base):
    """The weights of each layer of ``base``, copied before the learner's
    code runs (a local answer could change them in place)."""
    return [
        (layer.name, [np.array(w) for w in layer.get_weights()])
        for layer in base.layers
    ]


def _keeps_base_weights(model, snapshot, what):
    """Fail unless every weight array of the base (``snapshot``, from
    :func:`_weights_of`) is in ``model``."""
    remaining = [np.asarray(w) for w in model.get_weights()]
    for name, weights in snapshot:
        for weight in weights:
            for index, candidate in enumerate(remaining):
                if candidate.shape == weight.shape and np.array_equal(
                    candidate, weight
                ):
                    del remaining[index]
                    break
            else:
                raise CheckFailure(
                    f"{what}: the weights of the base's layer '{name}' "
                    "are not in the model; build the new model on the base "
                    "passed in (call it, or use its input and output), so "
                    "that it keeps what the base learnt"
                )


# ------------------------------------------------- structure, before running
# the layers a head may have, by role: pooling (or flattening, a named
# mistake later), dropout, the dense layer, a softmax after a linear one
HEAD_ROLES = {
    "pool": ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten"),
    "dropout": ("Dropout",),
    "dense": ("Dense",),
    "softmax": ("Activation", "Softmax"),
}
HEAD_ORDERS = [
    ["pool", *dropout, "dense", *softmax]
    for dropout in ([], ["dropout"])
    for softmax in ([], ["softmax"])
]
HEAD = (
    "the new head is global average pooling, a dropout layer if you like, "
    "and one dense softmax layer"
)
BN_SETTINGS = ("center", "scale", "momentum", "epsilon", "axis")


def _kind_of(layer):
    return type(layer).__name__


def _config(layer):
    """A layer's configuration without its name, ``trainable`` (which
    freezing and unfreezing change) and initializers (the weights are set:
    the grader rebuilds a sandboxed answer with zero initializers)."""
    return {
        key: value
        for key, value in layer.get_config().items()
        if key not in ("name", "trainable")
        and not key.endswith("_initializer")
    }


def _layer_list(model):
    """``model``'s layers, nested models' flattened, inputs left out."""
    return [x for x in _leaves(model) if not is_layer(x, "InputLayer")]


def _layout(model):
    """(name, kind, configuration) of each of ``model``'s layers, taken
    before the learner's code runs."""
    return [(x.name, _kind_of(x), _config(x)) for x in _layer_list(model)]


def _describe(layer):
    return f"'{layer.name}' ({_kind_of(layer)})"


def _expect_input(model, input_shape, what):
    shapes = [tuple(x.shape[1:]) for x in model.inputs]
    if shapes != [tuple(input_shape)]:
        raise CheckFailure(
            f"{what}: the model's input has shape "
            f"{', '.join(str((None, *s)) for s in shapes)}, the base's "
            f"{(None, *input_shape)}: the new model takes the base's images "
            "as they are (keras.Input(base.inputs[0].shape[1:]))"
        )


def _expect_base_layers(layers, layout, what, where="the base's"):
    """Fail unless ``layers`` begin with those of ``layout`` (same kind and
    configuration, in order); return the layers after them."""
    for index, (layer, (name, kind, config)) in enumerate(zip(layers, layout)):
        if _kind_of(layer) != kind:
            raise CheckFailure(
                f"{what}: layer {index + 1} of the model is {_describe(layer)}"
                f", {where} layer {index + 1} is '{name}' ({kind}): the new "
                "model is the base's layers as they are, then the head; "
                f"{HEAD}"
            )
        got = _config(layer)
        if got == config:
            continue
        changed = sorted(
            k for k in set(got) | set(config) if got.get(k) != config.get(k)
        )
        if kind == "BatchNormalization":
            settings = [k for k in BN_SETTINGS if k in changed] or changed
            raise mistake(
                f"{what}: the batch normalisation layer {_describe(layer)} "
                "has "
                + ", ".join(f"{k}={got.get(k)!r}" for k in settings)
                + f" where {where} '{name}' has "
                + ", ".join(f"{k}={config.get(k)!r}" for k in settings),
                "freezing and unfreezing change which layers train "
                "(layer.trainable), not what they compute; " + KEEP_BN_FROZEN,
            )
        raise CheckFailure(
            f"{what}: the model's layer {_describe(layer)} differs from "
            f"{where} '{name}' ({', '.join(changed)}): keep the base's "
            "layers as they are"
        )
    if len(layers) < len(layout):
        raise CheckFailure(
            f"{what}: the model has {len(layers)} layers besides its input,"
            f" fewer than {where} {len(layout)}: build it on the whole base"
        )
    return layers[len(layout) :]


def _expect_head(head, what):
    """Fail unless ``head`` (the layers after the base's) is pooling, an
    optional dropout, one dense layer and an optional softmax layer, in
    that order; return its layers by role (the keys of ``HEAD_ROLES``)."""
    roles = []
    for layer in head:
        role = next(
            (r for r, kinds in HEAD_ROLES.items() if _kind_of(layer) in kinds),
            None,
        )
        if role is None:
            raise CheckFailure(
                f"{what}: the model's layer {_describe(layer)} is neither "
                f"one of the base's layers nor part of the head; {HEAD}, "
                "nothing else"
            )
        roles.append(role)
    if roles not in HEAD_ORDERS:
        raise CheckFailure(
            f"{what}: after the base's layers the model has "
            f"{', '.join(_describe(x) for x in head) or 'nothing'}; {HEAD}"
        )
    return dict(zip(roles, head))


def _training_step(model, rng, shape):
    """Weights before and after one step of SGD on a random batch of
    images of ``shape`` (the base's, never the returned model's), far from
    zero mean, so that statistics in training mode would move."""
    import keras  # delays keras

    num_classes = model.output.shape[-1]
    x = rng.normal(1.0, 2.0, (8, *shape)).astype("float32")
    y = rng.integers(0, num_classes, 8)

    def values(weights):
        return [keras.ops.convert_to_numpy(w) for w in weights]

    trainable = values(model.trainable_weights)
    frozen = values(model.non_trainable_weights)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss="sparse_categorical_crossentropy",
    )
    model.train_on_batch(x, y)
    return (
        trainable,
        values(model.trainable_weights),
        frozen,
        values(model.non_trainable_weights),
    )


def _moved_statistics(model, before):
    """The batch normalisation layers whose moving mean or variance
    differ from ``before`` (name -> its weights, taken earlier)."""
    return [
        x.name
        for x in _all_layers(model)
        if is_layer(x, "BatchNormalization")
        and not all(
            np.array_equal(a, b)
            for a, b in zip(before[x.name][2:], x.get_weights()[2:])
        )
    ]


def _statistics(model):
    return {
        x.name: [np.array(w) for w in x.get_weights()]
        for x in _all_layers(model)
        if is_layer(x, "BatchNormalization")
    }


def _predict(model, x, training=False):
    import keras  # delays keras

    return keras.ops.convert_to_numpy(model(x, training=training))


def _expect_probabilities(model, x, what):
    out = _predict(model, x)
    if not np.allclose(out.sum(axis=1), 1.0, atol=1e-4) or (out < 0).any():
        raise CheckFailure(
            f"{what}: the head ends in a softmax (probabilities that sum "
            "to 1, for sparse_categorical_crossentropy)"
        )


# ------------------------------------------------------------------ 8.3
