"""Residual networks (He et al., 2015): blocks, ResNet-18/50, depth. Ch. 5.

Every builder names its layers after the stage and block they belong to,
the way ``keras.applications.ResNet50`` does (``conv3_block2_1_conv`` is
the first convolution of the second block of stage ``conv3``), so that
:func:`stage_table` can summarise any of these models, Keras's included,
one row per stage.

* :func:`identity_block` and :func:`convolutional_block` are the
  *bottleneck* blocks (1x1, 3x3, 1x1 convolutions) of ResNet-50/101/152;
  the second one has a projection shortcut (a strided 1x1 convolution).
* :func:`basic_block` is the two-convolution block of ResNet-18/34 and of
  the CIFAR-style networks; with ``residual=False`` it is the same block
  without its shortcut, the "plain" network of the depth experiment.
* :func:`resnet50` reproduces ``keras.applications.ResNet50(weights=None)``
  layer for layer (25,636,712 parameters); :func:`resnet18` is ResNet-18
  with a choice of stem and width; :func:`cifar_style_net` builds the
  6n+2-layer plain and residual networks of the depth experiment.
"""

from __future__ import annotations

import re
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
    "identity_block",
    "convolutional_block",
    "basic_block",
    "resnet50",
    "resnet18",
    "cifar_style_net",
    "stage_table",
    "StageRow",
    "RESNET_STAGES",
    "BN_EPSILON",
]

# Blocks per stage (conv2..conv5) of the networks of He et al., Table 1.
RESNET_STAGES = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
# The batch-normalisation epsilon of keras.applications.ResNet50.
BN_EPSILON = 1.001e-5


def _bn(name, momentum):
    return bn_layer(name, momentum=momentum, epsilon=BN_EPSILON)


def identity_block(
    x, filters, kernel_size=3, *, name="block", bn_momentum=BN_MOMENTUM
):
    """Bottleneck block whose shortcut is the identity. Chapter 5.

    ``filters = (F1, F2, F3)``: a 1x1 convolution to F1 channels, a
    ``kernel_size`` "same" convolution to F2, a 1x1 convolution to F3,
    each followed by batch normalisation, ReLU after the first two. The
    input ``x`` is added before the last ReLU, so it must already have F3
    channels: ``a[l+2] = relu(z[l+2] + a[l])``.
    """
    _, _, f3 = filters
    if x.shape[-1] != f3:
        raise ValueError(
            f"an identity block needs {f3} input channels to add "
            f"the shortcut, got {x.shape[-1]}: use "
            "convolutional_block to change the shape"
        )
    return _bottleneck_and_add(
        x, x, filters, kernel_size, 1, name, bn_momentum
    )


def convolutional_block(
    x,
    filters,
    kernel_size=3,
    strides=2,
    *,
    name="block",
    bn_momentum=BN_MOMENTUM,
):
    """Bottleneck block with a projection shortcut. Chapter 5.

    As :func:`identity_block`, but the first 1x1 convolution has stride
    ``strides`` and the shortcut is a 1x1 convolution to F3 channels with
    the same stride, followed by batch normalisation, so that the two
    paths have equal shapes where they are added. (Keras's ResNet50, which
    this matches, puts the stride on the first 1x1 convolution; the
    parameter count is the same with the stride on the 3x3 one.)
    """
    _, _, f3 = filters
    shortcut = layers.Conv2D(f3, 1, strides=strides, name=f"{name}_0_conv")(x)
    shortcut = _bn(f"{name}_0_bn", bn_momentum)(shortcut)
    return _bottleneck_and_add(
        x, shortcut, filters, kernel_size, strides, name, bn_momentum
    )


def _bottleneck_and_add(
    x, shortcut, filters, kernel_size, strides, name, bn_momentum
):
    """Main path 1x1 -> kxk -> 1x1 (the first with ``strides``), then the
    addition of ``shortcut`` before the last ReLU. Chapter 5."""
    f1, f2, f3 = filters
    x = layers.Conv2D(f1, 1, strides=strides, name=f"{name}_1_conv")(x)
    x = _bn(f"{name}_1_bn", bn_momentum)(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.Conv2D(f2, kernel_size, padding="same", name=f"{name}_2_conv")(
        x
    )
    x = _bn(f"{name}_2_bn", bn_momentum)(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(f3, 1, name=f"{name}_3_conv")(x)
    x = _bn(f"{name}_3_bn", bn_momentum)(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def basic_block(
    x,
    filters,
    strides=1,
    *,
    residual=True,
    name="block",
    bn_momentum=BN_MOMENTUM,
):
    """Two 3x3 convolutions with batch norm: the block of ResNet-18/34. Ch. 5.

    With ``residual=True`` the input is added before the second ReLU; the
    shortcut is the identity when the shapes agree and a strided 1x1
    convolution with batch normalisation when they do not. With
    ``residual=False`` the block is the same without the shortcut (a
    "plain" block, for the depth experiment). Convolutions have no bias:
    the batch normalisation that follows has its own shift.
    """
    init = "he_normal"
    shortcut = x
    y = layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=init,
        name=f"{name}_1_conv",
    )(x)
    y = _bn(f"{name}_1_bn", bn_momentum)(y)
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer=init,
        name=f"{name}_2_conv",
    )(y)
    y = _bn(f"{name}_2_bn", bn_momentum)(y)
    if residual:
        if strides != 1 or x.shape[-1] != filters:
            shortcut = layers.Conv2D(
                filters,
                1,
                strides=strides,
                use_bias=False,
                kernel_initializer=init,
                name=f"{name}_0_conv",
            )(x)
            shortcut = _bn(f"{name}_0_bn", bn_momentum)(shortcut)
        y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _bottleneck_stage(x, filters, blocks, strides, name, bn_momentum):
    x = convolutional_block(
        x,
        (filters, filters, 4 * filters),
        strides=strides,
        name=f"{name}_block1",
        bn_momentum=bn_momentum,
    )
    for i in range(2, blocks + 1):
        x = identity_block(
            x,
            (filters, filters, 4 * filters),
            name=f"{name}_block{i}",
            bn_momentum=bn_momentum,
        )
    return x


def _imagenet_stem(inputs, width, use_bias, bn_momentum):
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(
        width,
        7,
        strides=2,
        use_bias=use_bias,
        kernel_initializer="glorot_uniform" if use_bias else "he_normal",
        name="conv1_conv",
    )(x)
    x = _bn("conv1_bn", bn_momentum)(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def _small_image_stem(inputs, width, bn_momentum):
    """One 3x3 stride-1 convolution, batch norm and ReLU (``conv1``)."""
    x = layers.Conv2D(
        width,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name="conv1_conv",
    )(inputs)
    x = _bn("conv1_bn", bn_momentum)(x)
    return layers.Activation("relu", name="conv1_relu")(x)


def _classifier(inputs, x, num_classes, name):
    """Global average pooling and the classifier; the finished model."""
    head = classifier_head(num_classes, pooling="average")
    return keras.Model(inputs, apply(head, x), name=name)


def resnet50(
    input_shape=(224, 224, 3), num_classes=1000, *, bn_momentum=BN_MOMENTUM
):
    """ResNet-50, layer for layer as ``keras.applications.ResNet50``. Ch. 5.

    Stem (7x7/2 convolution, 3x3/2 max pooling), then stages conv2..conv5
    of 3, 4, 6 and 3 bottleneck blocks with 64, 128, 256 and 512 filters
    (x4 at each block's output), global average pooling and a softmax.
    With the defaults it has 25,636,712 parameters, Keras's count: its
    convolutions keep their biases although batch norm follows each one.
    """
    inputs = keras.Input(input_shape)
    x = _imagenet_stem(inputs, 64, True, bn_momentum)
    for stage, (filters, blocks) in enumerate(
        zip((64, 128, 256, 512), RESNET_STAGES[50]), start=2
    ):
        x = _bottleneck_stage(
            x,
            filters,
            blocks,
            1 if stage == 2 else 2,
            f"conv{stage}",
            bn_momentum,
        )
    return _classifier(inputs, x, num_classes, "resnet50")


def resnet18(
    input_shape=(28, 28, 1),
    num_classes=10,
    *,
    width=64,
    stem="cifar",
    bn_momentum=BN_MOMENTUM,
):
    """ResNet-18: stem, four stages of two basic blocks, pool, softmax. Ch. 5.

    ``stem="imagenet"`` is the stem of the paper (7x7/2 convolution and
    3x3/2 max pooling, for 224x224 inputs). ``stem="cifar"`` is one 3x3
    stride-1 convolution, the usual choice for small images: a 28x28
    Fashion-MNIST image keeps its resolution into the first stage instead
    of shrinking to 7x7. ``width`` is the number of filters of the first
    stage (64 in the paper); the stages have width, 2x, 4x and 8x.
    """
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
    inputs = keras.Input(input_shape)
    if stem == "imagenet":
        x = _imagenet_stem(inputs, width, False, bn_momentum)
    else:
        x = _small_image_stem(inputs, width, bn_momentum)
    for stage, blocks in enumerate(RESNET_STAGES[18], start=2):
        filters = width * 2 ** (stage - 2)
        for block in range(1, blocks + 1):
            strides = 2 if stage > 2 and block == 1 else 1
            x = basic_block(
                x,
                filters,
                strides=strides,
                name=f"conv{stage}_block{block}",
                bn_momentum=bn_momentum,
            )
    return _classifier(inputs, x, num_classes, f"resnet18_{stem}_w{width}")


def cifar_style_net(
    depth,
    input_shape=(28, 28, 1),
    num_classes=10,
    *,
    residual=True,
    widths=(16, 32, 64),
    bn_momentum=BN_MOMENTUM,
):
    """The 6n+2-layer networks of He et al., Section 4.2. Chapter 5.

    One 3x3 convolution, three stages of ``n = (depth - 2) / 6`` basic
    blocks with ``widths`` filters (the second and third stage halve the
    resolution), global average pooling and a softmax layer: 6n + 2
    weighted layers. ``residual=False`` gives the "plain" network with the
    same layers and no shortcuts. Where a residual stage changes shape the
    shortcut is a 1x1 projection (the paper's option B; the paper's own
    CIFAR-10 networks use option A, parameter-free shortcuts: identity at
    stride 2 with zero-padded channels), so the residual network has two
    1x1 convolutions more than the plain one (at the start of the second
    and third stage); they are not counted in the depth, as in the paper.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1, got {depth}")
    n = (depth - 2) // 6
    inputs = keras.Input(input_shape)
    x = _small_image_stem(inputs, widths[0], bn_momentum)
    for stage, filters in enumerate(widths, start=2):
        for block in range(1, n + 1):
            strides = 2 if stage > 2 and block == 1 else 1
            x = basic_block(
                x,
                filters,
                strides=strides,
                residual=residual,
                name=f"conv{stage}_block{block}",
                bn_momentum=bn_momentum,
            )
    kind = "resnet" if residual else "plain"
    return _classifier(inputs, x, num_classes, f"{kind}{depth}")


@dataclass
class StageRow:
    """One row of :func:`stage_table`."""

    stage: str
    blocks: int
    layers: int
    output_shape: tuple
    params: int


class StageTable(Shown, list):
    """A list of :class:`StageRow` that shows itself as a table (HTML in a
    notebook, text when printed). Chapter 5."""

    @property
    def total_params(self):
        return sum(r.params for r in self)

    def columns(self):
        return ("stage", "blocks", "layers", "output", "params")

    def cells(self):
        rows = [
            (r.stage, r.blocks, r.layers, shape_text(r.output_shape), r.params)
            for r in self
        ]
        return [*rows, ("total", "", "", "", self.total_params)]


_BLOCK = re.compile(r"^(conv\d+)_(block\d+)_")


def _stage_of(name):
    """('conv3', 'block2') for 'conv3_block2_1_conv'; ('conv1', None) etc."""
    match = _BLOCK.match(name)
    if match:
        return match.group(1), match.group(2)
    if name.startswith(("conv1", "pool1")):
        return "conv1", None
    return "head", None


def stage_table(model):
    """Blocks, weighted layers, output shape, parameters per stage. Ch. 5.

    "Layers" counts convolutions and dense layers, projection shortcuts
    included (the depth in a ResNet's name leaves the projections out).
    Stages are read from the layer names (``conv1`` is the stem, with its
    pooling; ``conv2``..``conv5`` the residual stages; ``head`` the pooling
    and classifier). Works for every builder of this module and for
    ``keras.applications.ResNet50``. The total equals
    ``model.count_params()``.
    """
    table, index, seen = StageTable(), {}, set()
    for layer in model.layers:
        if is_layer(layer, "InputLayer"):
            continue
        stage, block = _stage_of(layer.name)
        if stage not in index:
            index[stage] = StageRow(stage, 0, 0, (), 0)
            table.append(index[stage])
        row = index[stage]
        if block and (stage, block) not in seen:
            seen.add((stage, block))
            row.blocks += 1
        row.layers += int(is_layer(layer, "Conv2D", "Dense"))
        row.params += layer.count_params()
        row.output_shape = tuple(layer.output.shape)
    return table
