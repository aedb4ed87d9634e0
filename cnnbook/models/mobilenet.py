"""MobileNet v1 and v2 and EfficientNet-B0 (Chapter 8).

Three networks built for small devices, each from its chapter block:

* :func:`separable_block`: a 3×3 depthwise convolution (one filter per
  input channel) then a 1×1 pointwise convolution that mixes the
  channels, each followed by batch normalisation and ReLU6. MobileNet v1
  (:func:`mobilenet_v1`) is a 3×3 convolution and 13 of them.
* :func:`inverted_residual`: MobileNet v2's block. A 1×1 convolution
  widens the input ``expansion`` times, a 3×3 depthwise convolution
  filters it, a 1×1 *linear* projection (batch normalisation, no ReLU)
  narrows it again, and the input is added back only where the stride is
  1 and the channels match. :func:`mobilenet_v2` stacks 17.
* :func:`mbconv`: EfficientNet's block, the inverted residual with swish
  activations, 3×3 or 5×5 depthwise kernels and a squeeze-and-excitation
  step between the depthwise and the projection. :func:`efficientnet_b0`
  stacks 16.

At 224×224×3 and 1000 classes with ``width=1`` the three networks have
the parameters and multiply-accumulates of ``keras.applications``'
``MobileNet``, ``MobileNetV2`` and ``EfficientNetB0`` (a test compares
them). Two differences from those builders leave the counts unchanged:
the classifier is a dense layer (Keras's MobileNet v1 uses a 1×1
convolution on the pooled vector, the same weights), and a stride-2
convolution pads with ``"same"`` (Keras pads by hand and uses
``"valid"``, which gives the same output size at 224). Keras's
EfficientNet-B0 also rescales its input from [0, 255] (a layer without
parameters), which the book's data in [0, 1] do not need.

:func:`mobilenet_v2_small` is the network of the chapter's lab: MobileNet
v2's stages for 28×28 images with two of the five stride-2 steps removed
(the stem's and the third stage's), as the labs of chapters 5 and 6 shrink
their networks' early downsampling for small images.
"""

import math
from dataclasses import dataclass

import keras
from keras import layers

from cnnbook.kinds import is_layer
from cnnbook.models._layers import (
    BN_MOMENTUM,
    apply,
    bn_layer,
    classifier_head,
)
from cnnbook.tables import Shown, shape_text

__all__ = [
    "make_divisible",
    "separable_block",
    "inverted_residual",
    "squeeze_excite",
    "mbconv",
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v2_small",
    "efficientnet_b0",
    "EFFICIENTNET_B0_STAGES",
    "MOBILENET_V2_STAGES",
    "block_table",
    "BlockTable",
]

# MobileNet v2's stages (Sandler et al. 2018, Table 2): expansion t,
# output channels c, blocks n, stride s of the first block.
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# EfficientNet-B0's stages (Tan and Le 2019, Table 1): expansion, kernel,
# output channels, blocks, stride of the first block.
EFFICIENTNET_B0_STAGES = (
    (1, 3, 16, 1, 1),
    (6, 3, 24, 2, 2),
    (6, 5, 40, 2, 2),
    (6, 3, 80, 3, 2),
    (6, 5, 112, 3, 1),
    (6, 5, 192, 4, 2),
    (6, 3, 320, 1, 1),
)


def make_divisible(value, divisor=8):
    """``value`` rounded to the nearest multiple of ``divisor``, never below
    ``divisor`` nor more than 10% under ``value``: how MobileNet v2 and
    EfficientNet turn a width multiplier into a channel count."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv_bn(x, filters, kernel, strides, name, activation, bn_momentum):
    x = layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=False,
        name=name,
    )(x)
    x = bn_layer(f"{name}_bn", momentum=bn_momentum)(x)
    if activation is not None:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def _depthwise_bn(x, kernel, strides, name, activation, bn_momentum):
    x = layers.DepthwiseConv2D(
        kernel, strides=strides, padding="same", use_bias=False, name=name
    )(x)
    x = bn_layer(f"{name}_bn", momentum=bn_momentum)(x)
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


def separable_block(x, filters, *, strides=1, name, bn_momentum=BN_MOMENTUM):
    """MobileNet v1's block: 3×3 depthwise (stride ``strides``) then 1×1
    pointwise to ``filters`` channels, each with batch normalisation and
    ReLU6."""
    x = _depthwise_bn(x, 3, strides, f"{name}_dw", "relu6", bn_momentum)
    return _conv_bn(x, filters, 1, 1, f"{name}_pw", "relu6", bn_momentum)


def inverted_residual(
    x,
    filters,
    *,
    expansion=6,
    strides=1,
    kernel=3,
    activation="relu6",
    se_ratio=None,
    name,
    bn_momentum=BN_MOMENTUM,
):
    """MobileNet v2's inverted residual block (and, with ``se_ratio`` and
    ``activation="swish"``, EfficientNet's MBConv).

    1×1 expansion to ``expansion`` times the *input* channels (left out
    when ``expansion`` is 1), ``kernel``×``kernel`` depthwise convolution
    with ``strides``, optional squeeze-and-excitation, then a linear 1×1
    projection to ``filters`` channels: batch normalisation and no
    activation, because a ReLU on the narrow output would zero part of the
    little information that it carries. The input is added back only when
    the stride is 1 and the input already has ``filters`` channels.
    """
    channels = x.shape[-1]
    inputs = x
    if expansion != 1:
        x = _conv_bn(
            x,
            channels * expansion,
            1,
            1,
            f"{name}_expand",
            activation,
            bn_momentum,
        )
    x = _depthwise_bn(
        x, kernel, strides, f"{name}_dw", activation, bn_momentum
    )
    if se_ratio:
        x = squeeze_excite(
            x,
            max(1, int(channels * se_ratio)),
            activation=activation,
            name=f"{name}_se",
        )
    x = _conv_bn(x, filters, 1, 1, f"{name}_project", None, bn_momentum)
    if strides == 1 and channels == filters:
        x = layers.Add(name=f"{name}_add")([inputs, x])
    return x


def squeeze_excite(x, reduced, *, activation="swish", name):
    """Squeeze-and-excitation: average each channel over the map, pass the
    vector through a 1×1 layer of ``reduced`` units and one back to the
    channel count with a sigmoid, and scale every channel by its weight."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv2D(
        reduced, 1, activation=activation, name=f"{name}_reduce"
    )(s)
    s = layers.Conv2D(
        channels, 1, activation="sigmoid", name=f"{name}_expand"
    )(s)
    return layers.Multiply(name=f"{name}_excite")([x, s])


def mbconv(x, filters, *, expansion, kernel, strides, name, **options):
    """EfficientNet's MBConv block: :func:`inverted_residual` with swish,
    a ``kernel``×``kernel`` depthwise convolution and squeeze-and-
    excitation to a quarter of the block's input channels."""
    return inverted_residual(
        x,
        filters,
        expansion=expansion,
        strides=strides,
        kernel=kernel,
        activation="swish",
        se_ratio=0.25,
        name=name,
        **options,
    )


def _head(inputs, x, num_classes, dropout, name):
    x = apply(
        classifier_head(num_classes, pooling="average", dropout=dropout), x
    )
    return keras.Model(inputs, x, name=name)


def mobilenet_v1(
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    width=1.0,
    dropout=1e-3,
    bn_momentum=BN_MOMENTUM,
):
    """MobileNet v1 (Howard et al. 2017, Table 1): a 3×3 stride-2
    convolution, 13 :func:`separable_block` s, average pooling and the
    classifier. ``width`` is the width multiplier α (every layer's
    channels times α); the resolution multiplier ρ is the input size."""
    plan = (
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        *[(512, 1)] * 5,
        (1024, 2),
        (1024, 1),
    )
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, int(32 * width), 3, 2, "conv1", "relu6", bn_momentum)
    for i, (filters, strides) in enumerate(plan, 1):
        x = separable_block(
            x,
            int(filters * width),
            strides=strides,
            name=f"block{i}",
            bn_momentum=bn_momentum,
        )
    return _head(inputs, x, num_classes, dropout, "mobilenet_v1")


def _v2_body(x, stages, width, bn_momentum, depth=1.0):
    block = 0
    for expansion, channels, repeats, strides in stages:
        filters = make_divisible(channels * width)
        for i in range(math.ceil(repeats * depth)):
            x = inverted_residual(
                x,
                filters,
                expansion=expansion,
                strides=strides if i == 0 else 1,
                name=f"block{block}",
                bn_momentum=bn_momentum,
            )
            block += 1
    return x


def mobilenet_v2(
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    width=1.0,
    dropout=None,
    bn_momentum=BN_MOMENTUM,
):
    """MobileNet v2 (Sandler et al. 2018, Table 2): a 3×3 stride-2
    convolution to 32 channels, the 17 :func:`inverted_residual` blocks of
    :data:`MOBILENET_V2_STAGES`, a 1×1 convolution to 1280 channels,
    average pooling and the classifier. ``width`` is the width multiplier
    (channels rounded by :func:`make_divisible`; the last convolution
    never narrower than 1280)."""
    inputs = keras.Input(input_shape)
    x = _conv_bn(
        inputs, make_divisible(32 * width), 3, 2, "conv1", "relu6", bn_momentum
    )
    x = _v2_body(x, MOBILENET_V2_STAGES, width, bn_momentum)
    last = make_divisible(1280 * width) if width > 1 else 1280
    x = _conv_bn(x, last, 1, 1, "conv_last", "relu6", bn_momentum)
    return _head(inputs, x, num_classes, dropout, "mobilenet_v2")


def mobilenet_v2_small(
    input_shape=(28, 28, 1),
    num_classes=10,
    *,
    width=1.0,
    depth=1.0,
    last_channels=None,
    dropout=0.2,
    bn_momentum=0.9,
):
    """MobileNet v2 for 28×28 images: the stem convolution and the third
    stage keep stride 1, so the maps go 28 → 14 → 7 → 4 (the second,
    fourth and sixth stages halve them) instead of 224 → 7; every block
    otherwise as in :func:`mobilenet_v2`. The last 1×1 convolution has
    ``last_channels`` channels (default 1280 times ``width``, rounded).
    ``depth`` multiplies each stage's number of blocks, rounded up, as
    EfficientNet scales depth (0.5: 11 blocks instead of 17)."""
    stages = list(MOBILENET_V2_STAGES)
    stages[2] = (*stages[2][:3], 1)  # 14x14 through the third stage
    inputs = keras.Input(input_shape)
    x = _conv_bn(
        inputs, make_divisible(32 * width), 3, 1, "conv1", "relu6", bn_momentum
    )
    x = _v2_body(x, stages, width, bn_momentum, depth)
    last = last_channels or make_divisible(1280 * width)
    x = _conv_bn(x, last, 1, 1, "conv_last", "relu6", bn_momentum)
    name = f"mobilenet_v2_small_w{width:g}"  # the run records' name
    if depth != 1:
        name += f"_d{depth:g}"
    return _head(inputs, x, num_classes, dropout, name)


def efficientnet_b0(
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    dropout=0.2,
    normalize=True,
    bn_momentum=BN_MOMENTUM,
):
    """EfficientNet-B0 (Tan and Le 2019, Table 1): a 3×3 stride-2
    convolution to 32 channels, the 16 :func:`mbconv` blocks of
    :data:`EFFICIENTNET_B0_STAGES`, a 1×1 convolution to 1280 channels,
    average pooling and the classifier. Swish activations throughout.
    (The paper's stochastic depth, a dropout of whole blocks, is left
    out: it has no parameters and changes no count.)

    ``normalize`` puts a ``Normalization`` layer in front, as Keras's
    builder does: it standardises each input channel with a mean and a
    variance that ``adapt`` learns from data (7 values that are not
    trained: 3 means, 3 variances and a count)."""
    inputs = keras.Input(input_shape)
    x = (
        layers.Normalization(name="normalization")(inputs)
        if normalize
        else inputs
    )
    x = _conv_bn(x, 32, 3, 2, "conv1", "swish", bn_momentum)
    block = 0
    for expansion, kernel, filters, repeats, strides in EFFICIENTNET_B0_STAGES:
        for i in range(repeats):
            x = mbconv(
                x,
                filters,
                expansion=expansion,
                kernel=kernel,
                strides=strides if i == 0 else 1,
                name=f"block{block}",
                bn_momentum=bn_momentum,
            )
            block += 1
    x = _conv_bn(x, 1280, 1, 1, "conv_last", "swish", bn_momentum)
    return _head(inputs, x, num_classes, dropout, "efficientnet_b0")


@dataclass
class BlockRow:
    """One block: its name, expansion (channels in the middle over
    channels in), output shape, whether it adds its input back, and its
    parameters."""

    block: str
    expansion: float
    output_shape: tuple
    shortcut: bool
    params: int


class BlockTable(Shown, list):
    """A list of :class:`BlockRow` that shows itself as a table. Ch. 8."""

    @property
    def total_params(self):
        return sum(r.params for r in self)

    def columns(self):
        return ("block", "expansion", "output", "shortcut", "params")

    def cells(self):
        rows = [
            (
                r.block,
                f"{r.expansion:g}" if r.expansion else "",
                shape_text(r.output_shape),
                "yes" if r.shortcut else "",
                r.params,
            )
            for r in self
        ]
        return [*rows, ("total", "", "", "", self.total_params)]


def block_table(model):
    """:class:`BlockTable` of a network built here: the stem (``conv1``),
    every block, and the head (the last convolution, pooling and
    classifier). The total equals ``model.count_params()``."""
    table, index = BlockTable(), {}
    for layer in model.layers:
        if is_layer(layer, "InputLayer"):
            continue
        prefix = layer.name.split("_")[0]
        name = prefix if prefix.startswith(("block", "conv1")) else "head"
        if name not in index:
            index[name] = BlockRow(name, 0, (), False, 0)
            table.append(index[name])
        row = index[name]
        row.params += layer.count_params()
        row.output_shape = tuple(layer.output.shape)
        if layer.name.endswith("_add"):
            row.shortcut = True
        if is_layer(layer, "DepthwiseConv2D"):
            row.expansion = layer.input.shape[-1] / _block_input(model, name)
    return table


def _block_input(model, block):
    """Channels entering ``block``: those of the first layer's input."""
    for layer in model.layers:
        if layer.name.startswith(f"{block}_"):
            return layer.input.shape[-1]
    raise KeyError(block)
