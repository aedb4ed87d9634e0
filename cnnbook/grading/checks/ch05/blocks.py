"""Chapter 5, exercises 5.1 and 5.2: the identity and the convolutional
block, compared with the reference blocks layer by layer and numerically."""

from __future__ import annotations

import math

import keras
import numpy as np

from cnnbook.grading.api import (
    CheckFailure,
    add_hint,
    block_model,
    exercise,
    expect_array,
    match_mistake,
    mistake,
)
from cnnbook.grading.structure import (
    expect_same_layers,
    parent_layers,
)
from cnnbook.kinds import is_layer
from cnnbook.models import resnet

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch05', the folder's name


# ------------------------------------------------------------------ helpers
class InputOrder:
    """A model whose ``layers`` are listed by distance from the input.

    Keras lists the layers of two parallel branches (main path and
    shortcut) in the order they were created, so two correct blocks built
    in a different order would not line up. Ordering by the longest path
    from the input (then type, shape and parameters) gives the same list
    whichever branch was written first.
    """

    def __init__(self, model):
        depth, keys = {}, []
        parents = parent_layers(model)
        for index, layer in enumerate(model.layers):
            depth[layer.name] = 1 + max(
                (depth.get(p, 0) for p in parents.get(layer.name, [])),
                default=-1,
            )
            out = layer.output
            shape = tuple(out.shape) if hasattr(out, "shape") else ()
            keys.append(
                (
                    (
                        depth[layer.name],
                        type(layer).__name__,
                        str(shape),
                        layer.count_params(),
                        index,
                    ),
                    layer,
                )
            )
        self.layers = [layer for _, layer in sorted(keys, key=lambda k: k[0])]
        self._model = model

    def count_params(self):
        return self._model.count_params()


def _block_model(func, input_shape, *args, what="it", **kwargs):
    try:
        return block_model(func, [input_shape], *args, what=what, **kwargs)
    except CheckFailure as exc:
        text = str(exc).lower()
        if " raised " in text and ("incompatible" in text or "shape" in text):
            raise add_hint(
                exc,
                "the two paths must have the same shape where they are "
                "added: the middle convolution keeps the size "
                "(padding='same'), the last one has F3 filters, and a "
                "block that changes the shape needs the projection shortcut",
            ) from None
        raise


def _randomise(model, rng):
    """Random weights, and batch-norm statistics far from their defaults."""
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D" or kind == "Dense":
            weights = layer.get_weights()
            fan_in = int(np.prod(weights[0].shape[:-1]))
            new = [rng.normal(0, 1 / math.sqrt(fan_in), weights[0].shape)]
            new += [rng.normal(0, 0.1, w.shape) for w in weights[1:]]
            layer.set_weights([w.astype("float32") for w in new])
        elif kind == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0, 0.2, beta.shape).astype("float32"),
                    rng.normal(0, 0.2, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, var.shape).astype("float32"),
                ]
            )


def _copy_weights(source, target):
    for a, b in zip(InputOrder(source).layers, InputOrder(target).layers):
        try:
            b.set_weights(a.get_weights())
        except ValueError as exc:
            raise CheckFailure(
                f"layer '{b.name}' cannot take the weights of "
                f"the specification's layer: {exc}"
            ) from exc


def _block_mistake(learner, ref):
    """The typical mistake of a bottleneck block that differs from the spec."""

    def count(model, kind):
        return sum(is_layer(x, kind) for x in model.layers)

    projection = count(ref, "Conv2D") == 4
    convs = [x.get_config() for x in learner.layers if is_layer(x, "Conv2D")]
    if projection and count(learner, "Conv2D") == 3:
        return (
            "the shortcut needs a 1x1 convolution (with the block's stride "
            "and F3 filters) so that it has the shape of the main path"
        )
    if count(learner, "BatchNormalization") < count(ref, "BatchNormalization"):
        if projection and count(learner, "Conv2D") == 4:
            bns = count(learner, "BatchNormalization")
            if bns == 3:
                return (
                    "the projection shortcut needs batch normalisation "
                    "after its 1x1 convolution, like every convolution of "
                    "the main path"
                )
        return "every convolution is followed by batch normalisation"
    if any(c.get("activation") not in (None, "linear") for c in convs):
        return (
            "the ReLU comes after batch normalisation (a separate "
            "Activation layer), not inside the convolution"
        )
    if any(
        tuple(c["strides"]) != (1, 1) and tuple(c["kernel_size"]) != (1, 1)
        for c in convs
    ):
        return (
            "the stride goes on the first 1x1 convolution (and the "
            "shortcut), not on the middle one"
        )
    if any(
        c["padding"] != "same" and tuple(c["kernel_size"]) != (1, 1)
        for c in convs
    ):
        return "the middle convolution keeps the size: padding='same'"
    if count(learner, "Activation") < count(ref, "Activation"):
        return (
            "a ReLU is missing: one after each of the first two batch "
            "normalisations and one after the addition"
        )
    if count(learner, "Add") != 1:
        return "the shortcut is added once, with an Add layer"
    order = [type(x).__name__ for x in InputOrder(learner).layers]
    if (
        "Add" in order
        and order[-1] != "Activation"
        and order[-2:]
        != [
            "Add",
            "Activation",
        ]
    ):
        return (
            "the ReLU comes after the addition, not before it: "
            "relu(main path + shortcut)"
        )
    return None


def _output_mistake(got, ref, x, name):
    """Whether ``got`` is the block with its last ReLU misplaced."""

    main = keras.Model(ref.inputs, ref.get_layer(f"{name}_3_bn").output)
    main = keras.ops.convert_to_numpy(main(x, training=False))
    if any(layer.name == f"{name}_0_bn" for layer in ref.layers):
        short = keras.Model(ref.inputs, ref.get_layer(f"{name}_0_bn").output)
        short = keras.ops.convert_to_numpy(short(x, training=False))
    else:
        short = x
    return match_mistake(
        got,
        [
            (
                "the block ends with a ReLU after the addition: "
                "relu(main path + shortcut)",
                main + short,
            ),
            (
                "the ReLU comes after the addition, not before it: "
                "relu(main path + shortcut)",
                np.maximum(main, 0) + short,
            ),
            (
                "the shortcut is not added: the output is relu(main path "
                "+ shortcut)",
                np.maximum(main, 0),
            ),
        ],
        rtol=1e-4,
        atol=1e-4,
    )


def _compare_blocks(learner, ref, what, rng, batch=3):
    """Layer by layer, then numerically with the reference's weights."""
    try:
        expect_same_layers(InputOrder(learner), InputOrder(ref), what)
    except CheckFailure as exc:
        raise add_hint(exc, _block_mistake(learner, ref)) from None
    _randomise(ref, rng)
    _copy_weights(ref, learner)
    x = rng.normal(0, 1, (batch, *ref.input_shape[1:])).astype("float32")

    expected = keras.ops.convert_to_numpy(ref(x, training=False))
    got = keras.ops.convert_to_numpy(learner(x, training=False))
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
        hint = _output_mistake(got, ref, x, "ref")
        if hint:
            raise mistake(f"the output of {what}", hint)
    expect_array(
        got,
        expected,
        f"the output of {what} (inference mode, "
        "same weights as the reference)",
        rtol=1e-4,
        atol=1e-4,
    )


# ------------------------------------------------------- 5.1 identity block
def _check_identity(func, rng, input_shape, filters, kernel_size):
    what = f"identity_block(x, filters={filters}, kernel_size={kernel_size})"
    learner = _block_model(
        func, input_shape, filters, kernel_size, name="learner", what=what
    )
    ref = _block_model(
        resnet.identity_block, input_shape, filters, kernel_size, name="ref"
    )
    _compare_blocks(learner, ref, what, rng)


@exercise(CHAPTER, "5.1", "identity block", points=3, names=["identity_block"])
def identity_visible(ns):
    rng = np.random.default_rng(51)
    _check_identity(ns["identity_block"], rng, (8, 8, 16), (4, 6, 16), 3)


@identity_visible.hidden_check
def identity_hidden(ns, rng):
    for _ in range(2):
        f3 = int(rng.integers(4, 20))
        filters = (int(rng.integers(2, 9)), int(rng.integers(2, 9)), f3)
        size = int(rng.integers(4, 10))
        kernel = int(rng.choice([1, 3, 5]))
        _check_identity(
            ns["identity_block"], rng, (size, size, f3), filters, kernel
        )


# -------------------------------------------------- 5.2 convolutional block
def _check_conv_block(func, rng, input_shape, filters, kernel_size, strides):
    what = (
        f"convolutional_block(x, filters={filters}, "
        f"kernel_size={kernel_size}, strides={strides})"
    )
    learner = _block_model(
        func,
        input_shape,
        filters,
        kernel_size,
        strides,
        name="learner",
        what=what,
    )
    ref = _block_model(
        resnet.convolutional_block,
        input_shape,
        filters,
        kernel_size,
        strides,
        name="ref",
    )
    _compare_blocks(learner, ref, what, rng)


@exercise(
    CHAPTER,
    "5.2",
    "convolutional block (projection shortcut)",
    points=3,
    names=["convolutional_block"],
)
def conv_visible(ns):
    rng = np.random.default_rng(52)
    func = ns["convolutional_block"]
    _check_conv_block(func, rng, (8, 8, 6), (4, 5, 16), 3, 2)
    _check_conv_block(func, rng, (7, 7, 8), (3, 3, 12), 3, 1)


@conv_visible.hidden_check
def conv_hidden(ns, rng):
    for _ in range(2):
        filters = tuple(int(v) for v in rng.integers(2, 12, 3))
        size = int(rng.integers(5, 12))
        _check_conv_block(
            ns["convolutional_block"],
            rng,
            (size, size, int(rng.integers(1, 10))),
            filters,
            int(rng.choice([1, 3])),
            int(rng.choice([1, 2, 3])),
        )
