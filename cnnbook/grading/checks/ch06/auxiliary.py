"""Chapter 6, exercise 6.4: the auxiliary classifier."""

from __future__ import annotations

import numpy as np

from cnnbook.grading.api import (
    CheckFailure,
    add_hint,
    call_learner,
    exercise,
    expect_equal,
    with_options,
)
from cnnbook.grading.checks.ch06.modules import (
    MODULE_4A,
    MODULE_4B,
    expect_outputs,
    layer_differences,
    tensor_shape,
)
from cnnbook.grading.structure import (
    expect_same_settings,
    layer_signature,
    parent_layers,
)
from cnnbook.kinds import is_layer

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch06', the folder's name


# ------------------------------------------------------------------ 6.4
def _trunk(input_shape, num_classes):
    """Modules 4a and 4b of GoogLeNet, pooled, with a softmax on top."""
    import keras  # delays keras
    from keras import layers  # delays keras

    from cnnbook.models import inception_module  # delays keras

    inputs = keras.Input(input_shape, name="features")
    x = inception_module(inputs, *MODULE_4A, name="inception_4a")
    x = inception_module(x, *MODULE_4B, name="inception_4b")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    out = layers.Dense(num_classes, activation="softmax", name="main")(x)
    return keras.Model(inputs, out, name="trunk")


def _same_layer(model, layer):
    """Whether ``model`` holds ``layer``: the very object (checked in the
    notebook) or, for a model rebuilt by the grader, a layer of the same
    name, type and weights."""
    try:
        mine = model.get_layer(layer.name)
    except ValueError:
        return False
    if mine is layer:
        return True
    a, b = mine.get_weights(), layer.get_weights()
    return (
        type(mine).__name__ == type(layer).__name__
        and len(a) == len(b)
        and all(
            x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b)
        )
    )


def _head_reference(feature_shape, num_classes):
    import keras  # delays keras

    from cnnbook.models import auxiliary_head  # delays keras

    inputs = keras.Input(feature_shape)
    return keras.Model(inputs, auxiliary_head(inputs, num_classes))


def _check_auxiliary(func, input_shape, num_classes, rng):
    branch = "inception_4a_concat"
    trunk = _trunk(input_shape, num_classes)
    what = f"add_auxiliary_output(model, {branch!r}, {num_classes})"
    model = call_learner(
        with_options(func, weights=True),
        trunk,
        branch,
        num_classes,
        what=what,
    )
    expect_outputs(
        model, 2, what, "it should have two: [main output, auxiliary output]"
    )
    expect_equal(
        [tensor_shape(o) for o in model.outputs],
        [(None, num_classes)] * 2,
        f"{what}: output shapes",
    )
    for layer in trunk.layers:
        if not _same_layer(model, layer):
            raise CheckFailure(
                f"{what}: the layer '{layer.name}' of the model passed in is "
                "not part of the new model; build the new model on "
                "model.input and the existing tensors, so that both outputs "
                "share the trunk's weights"
            )
    trunk_names = {layer.name for layer in trunk.layers}
    head = [layer for layer in model.layers if layer.name not in trunk_names]
    # the head starts from the layer it is asked for, not another of the
    # same shape (red team 8: a head on module 4b's output instead of 4a's)
    parents = parent_layers(model)
    head_names = {layer.name for layer in head}
    outside = {
        p
        for layer in head
        for p in parents.get(layer.name, [])
        if p not in head_names
    }
    if outside != {branch}:
        raise CheckFailure(
            f"{what}: the auxiliary head should take the output of "
            f"'{branch}', it takes {', '.join(sorted(outside)) or 'nothing'}"
        )
    feature_shape = tensor_shape(trunk.get_layer(branch).output)[1:]
    reference = _head_reference(feature_shape, num_classes)
    mine = [
        (
            type(layer).__name__,
            tensor_shape(layer.output),
            layer.count_params(),
        )
        for layer in head
    ]
    problem = layer_differences(mine, layer_signature(reference))
    if problem:
        kinds = [type(x).__name__ for x in head]
        hint = None
        if "AveragePooling2D" not in kinds:
            hint = "the head starts with 5x5 average pooling, not max pooling"
        elif "Flatten" not in kinds:
            hint = "the head flattens the 1x1 convolution's output"
        elif [x.get_config().get("strides") for x in head][:1] != [
            (3, 3)
        ] and any(
            is_layer(x, "AveragePooling2D")
            and tuple(x.get_config()["strides"]) != (3, 3)
            for x in head
        ):
            hint = "the 5x5 average pooling has stride 3"
        raise add_hint(
            CheckFailure(
                f"{what}: the auxiliary head differs from the "
                f"specification: {problem}."
            ),
            hint,
        )
    expect_same_settings(head, reference.layers, f"{what}: the auxiliary head")
    rates = sorted(
        getattr(layer, "rate", None)
        for layer in head
        if is_layer(layer, "Dropout")
    )
    if rates != [0.7]:
        raise CheckFailure(
            f"{what}: the head's dropout rate should be 0.7, got {rates}"
        )
    x = rng.standard_normal((2, *input_shape)).astype("float32")
    main, aux = (np.asarray(v) for v in model.predict(x, verbose=0))
    if not np.allclose(
        main, np.asarray(trunk.predict(x, verbose=0)), atol=1e-5
    ):
        raise CheckFailure(
            f"{what}: the first output should be the model's "
            "own output, unchanged"
        )
    if not np.allclose(aux.sum(axis=1), 1.0, atol=1e-4) or (aux < 0).any():
        raise CheckFailure(
            f"{what}: the auxiliary output should be a "
            "softmax (probabilities that sum to 1)"
        )


@exercise(
    CHAPTER,
    "6.4",
    "attach an auxiliary classifier",
    points=3,
    names=["add_auxiliary_output"],
)
def auxiliary_visible(ns):
    _check_auxiliary(
        ns["add_auxiliary_output"], (14, 14, 480), 10, np.random.default_rng(0)
    )


@auxiliary_visible.hidden_check
def auxiliary_hidden(ns, rng):
    size = int(rng.integers(8, 18))
    _check_auxiliary(
        ns["add_auxiliary_output"],
        (size, size, int(rng.integers(16, 200))),
        int(rng.integers(2, 50)),
        rng,
    )
