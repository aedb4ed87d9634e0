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

import numpy as np

from cnnbook.grading.api import (
    CheckFailure,
    call_learner,
    exercise,
    mistake,
    with_options,
)
from cnnbook.grading.checks.ch08.transfer_model import (
    BN_TRAINING,
    KEEP_BN_FROZEN,
    _base,
    _bn_trainable,
    _describe,
    _expect_base_layers,
    _expect_head,
    _expect_input,
    _expect_model,
    _expect_probabilities,
    _head_params,
    _keeps_base_weights,
    _layer_list,
    _layout,
    _leaves,
    _moved_statistics,
    _predict,
    _size,
    _statistics,
    _trainable_count,
    _training_step,
    _weights_of,
)
from cnnbook.kinds import is_layer

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch08', the folder's name


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
