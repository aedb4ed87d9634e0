"""Chapter 8, exercises 8.3 and 8.4: a base network frozen under a new
head, then unfrozen for fine-tuning with its batch normalisation kept in
inference mode.

Both are judged by what Keras does with the model the learner returns:
how many weights are trainable, and which weights one training step
changes. In Keras 3 a ``BatchNormalization`` layer whose ``trainable`` is
False runs in inference mode (it neither learns its scale and offset nor
updates its moving mean and variance), whatever ``training`` it is
called with; the ``training=False`` given when the base is called in a
functional model is overridden by the ``training=True`` that ``fit``
passes (keras-team/keras#20285), so it alone does not keep the
statistics still once the base is trainable.

The returned model runs in the grader's own process, so its structure is
checked before anything runs: the base's input shape, the base's layers
as they were (class and configuration, in order), then the expected head
and nothing else. Random inputs take their shape from the base the check
built, never from the returned model.
"""

from __future__ import annotations

import math

import numpy as np

from cnnbook.grading.api import (
    CheckFailure,
    call_learner,
    exercise,
    expect_equal,
    mistake,
    type_name,
    with_options,
)
from cnnbook.grading.checks.ch08.blocks import randomise
from cnnbook.kinds import is_layer

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch08', the folder's name

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
def reference_frozen(base, num_classes):
    """The reference answer of 8.3: the base frozen, called in inference
    mode, then global average pooling and a dense softmax layer."""
    import keras  # delays keras
    from keras import layers  # delays keras

    base.trainable = False
    inputs = keras.Input(tuple(base.inputs[0].shape[1:]))
    x = base(inputs, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def _frozen_mistake(got, base, num_classes, base_trainable, base_bn):
    """The mistake that gives ``got`` trainable weights; the base's
    counts are taken before the learner's code could change it."""
    head = _head_params(base, num_classes)
    height, width, channels = base.output.shape[1:]
    variants = [
        (
            0,
            "the head is frozen too: nothing would train; freeze the base "
            "only (base.trainable = False), not the whole model",
        ),
        (
            head + base_trainable,
            "the base is not frozen: set base.trainable = False, so that "
            "only the new head trains",
        ),
        (
            head + base_bn,
            "the base's batch normalisation layers are left trainable; "
            + BN_TRAINING
            + ". Freeze the whole base: base.trainable = False",
        ),
        (
            (height * width * channels + 1) * num_classes,
            "pool the base's output (GlobalAveragePooling2D) before the "
            "dense layer: flattening it gives the head height x width "
            "times as many weights",
        ),
    ]
    for count, hint in variants:
        if got == count:
            return hint
    return None


def _check_frozen(func, num_classes, rng):
    base = _base(rng)
    shape = tuple(base.inputs[0].shape[1:])
    base_trainable = _size(base.trainable_weights)
    base_bn = _bn_trainable(base)
    layout = _layout(base)
    snapshot = _weights_of(base)
    x = rng.normal(0, 1, (2, *shape)).astype("float32")
    features = _predict(base, x)
    what = f"frozen_with_head(base, {num_classes})"
    model = call_learner(
        with_options(func, weights=True), base, num_classes, what=what
    )
    _expect_model(model, num_classes, what)
    # nothing of the returned model runs before its structure is known
    _expect_input(model, shape, what)
    head = _expect_head(
        _expect_base_layers(_layer_list(model), layout, what), what
    )
    _keeps_base_weights(model, snapshot, what)
    got = _trainable_count(model)
    expected = _head_params(base, num_classes)
    if got != expected:
        hint = _frozen_mistake(got, base, num_classes, base_trainable, base_bn)
        message = (
            f"{what} has {got:,} trainable weights, expected {expected:,} "
            "(those of the new head)"
        )
        if hint:
            raise mistake(message, hint)
        raise CheckFailure(message)
    _expect_probabilities(model, x, what)
    _expect_head_on_base(model, x, features, head.values(), what)
    statistics = _statistics(model)
    before, after, frozen_before, frozen_after = _training_step(
        model, rng, shape
    )
    moved = _moved_statistics(model, statistics)
    if moved:
        raise mistake(
            f"{what}: one training step changed the moving statistics of "
            f"'{moved[0]}'",
            BN_TRAINING,
        )
    if any(
        not np.array_equal(a, b) for a, b in zip(frozen_before, frozen_after)
    ):
        raise CheckFailure(
            f"{what}: one training step changed weights of the frozen base"
        )
    if all(np.array_equal(a, b) for a, b in zip(before, after)):
        raise CheckFailure(
            f"{what}: one training step left the head's weights unchanged; "
            "the new dense layer must train"
        )


def _expect_head_on_base(model, x, features, head, what):
    """The model's output is its head's layers applied to the output of
    the base passed in (``features``, computed before the learner's code
    ran), all in inference mode."""
    expected = features
    for layer in head:
        expected = layer(expected, training=False)
    expected = np.asarray(expected)
    if not np.allclose(_predict(model, x), expected, rtol=1e-4, atol=1e-6):
        raise CheckFailure(
            f"{what}: the model's output (inference mode) is not its head "
            "applied to the output of the base passed in; connect the "
            "base's output to the pooling layer, and the head's layers one "
            "after the other"
        )


@exercise(
    CHAPTER,
    "8.3",
    "freeze a base and add a head",
    points=3,
    names=["frozen_with_head"],
)
def frozen_visible(ns):
    _check_frozen(ns["frozen_with_head"], 5, np.random.default_rng(0))


@frozen_visible.hidden_check
def frozen_hidden(ns, rng):
    _check_frozen(ns["frozen_with_head"], int(rng.integers(2, 30)), rng)


# ------------------------------------------------------------------ 8.4
def _unfreeze_expected(model):
    """Trainable weights once every layer but batch normalisation trains."""
    return sum(
        x.count_params()
        for x in _leaves(model)
        if not is_layer(x, "BatchNormalization")
    )


def _unfreeze_mistake(got, model, expected, head):
    variants = [
        (
            head,
            "the base is still frozen: make the base trainable again "
            "(its layer in the model, model.get_layer(...).trainable = "
            "True), then freeze its batch normalisation layers",
        ),
        (
            expected + _bn_trainable(model),
            f"{BN_TRAINING}. {KEEP_BN_FROZEN}",
        ),
        (
            expected - head,
            "the head must keep training while the base is fine-tuned",
        ),
    ]
    for count, hint in variants:
        if got == count:
            return hint
    return None


def _check_unfreeze(func, num_classes, rng):
    base = _base(rng)
    shape = tuple(base.inputs[0].shape[1:])
    frozen = reference_frozen(base, num_classes)
    head = _head_params(base, num_classes)
    expected = _unfreeze_expected(frozen)
    layout = _layout(frozen)
    snapshot = _weights_of(base)
    x = rng.normal(1.0, 2.0, (4, *shape)).astype("float32")
    outputs = _predict(frozen, x)
    what = "unfreeze_for_fine_tuning(model)"
    model = call_learner(with_options(func, weights=True), frozen, what=what)
    _expect_model(model, num_classes, what)
    # nothing of the returned model runs before its structure is known
    _expect_input(model, shape, what)
    extra = _expect_base_layers(
        _layer_list(model), layout, what, where="the given model's"
    )
    if extra:
        raise CheckFailure(
            f"{what}: the model's layer {_describe(extra[0])} is not one of "
            "the given model's: unfreezing adds no layer"
        )
    _keeps_base_weights(model, snapshot, what)
    got = _trainable_count(model)
    if got != expected:
        hint = _unfreeze_mistake(got, model, expected, head)
        message = (
            f"{what} has {got:,} trainable weights, expected {expected:,} "
            "(every weight but those of batch normalisation)"
        )
        if hint:
            raise mistake(message, hint)
        raise CheckFailure(message)
    _expect_same_computation(model, x, outputs, what)
    statistics = _statistics(model)
    before, after, _, _ = _training_step(model, rng, shape)
    moved = _moved_statistics(model, statistics)
    if moved:
        raise mistake(
            f"{what}: one training step changed the moving statistics of "
            f"'{moved[0]}'",
            f"{BN_TRAINING}. {KEEP_BN_FROZEN}",
        )
    if all(np.array_equal(a, b) for a, b in zip(before, after)):
        raise CheckFailure(
            f"{what}: one training step left every weight unchanged"
        )


def _expect_same_computation(model, x, outputs, what):
    """Unfreezing changes no computation: in inference mode the model
    gives the given model's ``outputs`` (computed before the learner's
    code ran), and, its batch normalisation frozen, the same in training
    mode."""
    inference = _predict(model, x)
    if not np.allclose(inference, outputs, rtol=1e-4, atol=1e-6):
        raise CheckFailure(
            f"{what}: in inference mode the model's output differs from "
            "that of the model passed in; unfreezing changes which weights "
            "train, not what the model computes (keep its layers, their "
            "weights and their connections)"
        )
    training = _predict(model, x, training=True)
    if not np.allclose(training, inference, rtol=1e-4, atol=1e-6):
        raise mistake(
            f"{what}: in training mode the model's output differs from its "
            "output in inference mode",
            f"{BN_TRAINING}. {KEEP_BN_FROZEN}",
        )


@exercise(
    CHAPTER,
    "8.4",
    "unfreeze for fine-tuning",
    points=2,
    names=["unfreeze_for_fine_tuning"],
)
def unfreeze_visible(ns):
    _check_unfreeze(
        ns["unfreeze_for_fine_tuning"], 5, np.random.default_rng(1)
    )


@unfreeze_visible.hidden_check
def unfreeze_hidden(ns, rng):
    _check_unfreeze(
        ns["unfreeze_for_fine_tuning"], int(rng.integers(2, 30)), rng
    )
