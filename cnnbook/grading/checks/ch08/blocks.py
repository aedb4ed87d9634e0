"""Chapter 8, exercise 8.2: MobileNet v2's inverted residual block,
compared with :func:`cnnbook.models.inverted_residual` layer by layer and
numerically with the same weights."""

from __future__ import annotations

import math

import numpy as np

from cnnbook.grading.api import (
    CheckFailure,
    add_hint,
    block_model,
    exercise,
    expect_array,
)
from cnnbook.kinds import is_layer

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch08', the folder's name

# (input shape, filters, expansion, stride): a block with the shortcut,
# one that halves the map and keeps the channels, one that changes the
# channels at stride 1, and one without expansion (MobileNet v2's first)
VISIBLE_CASES = [
    ((14, 14, 24), 24, 6, 1),
    ((14, 14, 24), 24, 6, 2),
    ((7, 7, 32), 64, 6, 1),
    ((28, 28, 32), 16, 1, 1),
]

SHORTCUT_HINT = (
    "the input is added back only where the block keeps the shape: "
    "stride 1 and as many output channels (filters) as input channels; "
    "elsewhere there is no shortcut (no projection either)"
)


def _kind(layer):
    """A layer's kind, with ReLU6 written the same whichever layer gives
    it (``Activation("relu6")`` or ``ReLU(6.0)``)."""
    config = layer.get_config()
    if is_layer(layer, "Activation"):
        return str(config.get("activation"))
    if is_layer(layer, "ReLU"):
        top = config.get("max_value")
        plain = not config.get("negative_slope") and not config.get(
            "threshold"
        )
        if plain and top is not None and float(top) == 6.0:
            return "relu6"
        return "relu" if plain and top is None else "ReLU"
    return type(layer).__name__


def _signature(model):
    return [
        (_kind(layer), tuple(layer.output.shape), layer.count_params())
        for layer in model.layers
        if not is_layer(layer, "InputLayer")
    ]


def _block_mistake(mine, ref, channels, filters, expansion):
    """The typical mistake of a block whose layers differ from the
    reference's, or None."""
    kinds = [k for k, _, _ in _signature(mine)]
    ref_kinds = [k for k, _, _ in _signature(ref)]
    convs = [x for x in mine.layers if is_layer(x, "Conv2D")]
    if "Add" in kinds and "Add" not in ref_kinds:
        return SHORTCUT_HINT
    if "Add" in ref_kinds and "Add" not in kinds:
        return (
            "where the stride is 1 and the channels match, the block adds "
            "its input to the projection's output (an Add layer)"
        )
    body = kinds[:-1] if kinds[-1:] == ["Add"] else kinds
    if body and body[-1] != "BatchNormalization":
        return (
            "the projection is linear: batch normalisation and no "
            "activation after the last 1x1 convolution (a ReLU there would "
            "zero part of the little the narrow output carries)"
        )
    if any(
        x.get_config().get("activation") not in (None, "linear")
        for x in mine.layers
        if is_layer(x, "Conv2D") or is_layer(x, "DepthwiseConv2D")
    ):
        return (
            "each convolution is followed by batch normalisation and then "
            "the activation: no activation inside the convolution"
        )
    if expansion == 1 and len(convs) > 1:
        return (
            "with expansion 1 there is nothing to widen: the block starts "
            "with the depthwise convolution (no 1x1 expansion)"
        )
    if (
        len(convs) > 1
        and filters != channels
        and convs[0].get_config()["filters"] == filters * expansion
    ):
        return (
            "the expansion multiplies the block's INPUT channels: the 1x1 "
            "expansion has expansion * n_C_prev filters, not expansion * "
            "filters"
        )
    if any(x.get_config().get("use_bias") for x in mine.layers):
        return (
            "a convolution followed by batch normalisation needs no bias "
            "(use_bias=False): the normalisation's beta plays its part"
        )
    if "relu6" not in kinds and ("relu" in kinds or "ReLU" in kinds):
        return "MobileNet v2's activation is ReLU6, min(max(x, 0), 6)"
    return None


def _compare_layers(mine, ref, what, channels, filters, expansion):
    a, b = _signature(mine), _signature(ref)
    problem = None
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            problem = (
                f"layer {index + 1} is a {x[0]} with output shape {x[1]} and "
                f"{x[2]:,} parameters, the block's layer {index + 1} is a "
                f"{y[0]} with output shape {y[1]} and {y[2]:,} parameters"
            )
            break
    if problem is None and len(a) != len(b):
        problem = f"it has {len(a)} layers, the block has {len(b)}"
    if problem:
        raise add_hint(
            CheckFailure(f"{what}: {problem}."),
            _block_mistake(mine, ref, channels, filters, expansion),
        )


def randomise(model, rng):
    """Random weights, and batch-norm statistics far from their defaults."""
    for layer in model.layers:
        weights = layer.get_weights()
        if is_layer(layer, "BatchNormalization"):
            size = weights[0].shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, size).astype("float32"),
                    rng.normal(0, 0.2, size).astype("float32"),
                    rng.normal(0, 0.2, size).astype("float32"),
                    rng.uniform(0.5, 1.5, size).astype("float32"),
                ]
            )
        elif weights:
            kernel = weights[0]
            fan_in = math.prod(kernel.shape[:-1])
            if is_layer(layer, "DepthwiseConv2D"):
                fan_in = math.prod(kernel.shape[:2])
            layer.set_weights(
                [
                    rng.normal(0, 1 / math.sqrt(fan_in), w.shape).astype(
                        "float32"
                    )
                    for w in weights
                ]
            )


def _check_block(func, case, rng):
    from cnnbook.models import inverted_residual  # delays keras

    input_shape, filters, expansion, stride = case
    what = f"inverted_residual_block(x, {filters}, {expansion}, {stride})"
    where = f"{what} on an input of shape {(None, *input_shape)}"
    try:
        mine = block_model(
            func, [input_shape], filters, expansion, stride, what=what
        )
    except CheckFailure as exc:
        # the learner's error, not the "on an input of shape" before it
        _, _, raised = str(exc).partition(" raised ")
        hint = None
        if "Add" in raised or "shape" in raised.lower():
            hint = SHORTCUT_HINT
        raise add_hint(exc, hint) from None
    ref = block_model(
        inverted_residual,
        [input_shape],
        filters,
        expansion=expansion,
        strides=stride,
        name="ref",
    )
    _compare_layers(mine, ref, where, input_shape[-1], filters, expansion)
    randomise(ref, rng)
    for a, b in zip(ref.layers, mine.layers):
        b.set_weights(a.get_weights())
    x = rng.normal(0, 1, (2, *input_shape)).astype("float32")
    expected = np.asarray(ref(x, training=False))
    got = np.asarray(mine(x, training=False))
    expect_array(
        got,
        expected,
        f"the output of {where} (inference mode, the reference's weights)",
        rtol=1e-4,
        atol=1e-4,
    )


@exercise(
    CHAPTER,
    "8.2",
    "the inverted residual block",
    points=3,
    names=["inverted_residual_block"],
)
def block_visible(ns):
    rng = np.random.default_rng(0)
    for case in VISIBLE_CASES:
        _check_block(ns["inverted_residual_block"], case, rng)


@block_visible.hidden_check
def block_hidden(ns, rng):
    for _ in range(3):
        size = int(rng.integers(4, 16))
        channels = int(rng.integers(2, 40))
        stride = int(rng.choice([1, 2]))
        filters = (
            channels
            if stride == 1 and rng.random() < 0.5
            else int(rng.integers(2, 40))
        )
        expansion = int(rng.choice([1, 2, 3, 4, 6]))
        case = ((size, size, channels), filters, expansion, stride)
        _check_block(ns["inverted_residual_block"], case, rng)
