"""VGG: blocks of 3x3 convolutions; VGG-16, VGG-19 and a narrow variant.

Chapter 4. :func:`vgg16` and :func:`vgg19` have, layer for layer, the shapes
and parameter counts of ``keras.applications.VGG16/VGG19(weights=None)``
(138,357,544 and 143,667,240 parameters). :func:`vgg_fashion` is a narrower
VGG for 28x28 grey images.
"""

from __future__ import annotations

import keras
from keras import layers

from cnnbook.models._layers import (
    BN_MOMENTUM,
    apply,
    bn_layer,
    classifier_head,
)

__all__ = [
    "vgg_block",
    "vgg_network",
    "vgg16",
    "vgg19",
    "vgg_fashion",
    "VGG16_BLOCKS",
    "VGG19_BLOCKS",
]

# (number of 3x3 convolutions, filters) of each block.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
VGG19_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))


def vgg_block(
    x,
    num_convs,
    filters,
    *,
    name=None,
    batch_norm=False,
    bn_momentum=BN_MOMENTUM,
):
    """One VGG block applied to the tensor ``x``. Chapter 4.

    ``num_convs`` 3x3 'same' convolutions with ReLU, stride 1, then a 2x2
    max-pool with stride 2: height and width halve, the depth becomes
    ``filters``. With ``batch_norm`` each convolution loses its bias and
    is followed by batch normalisation (momentum ``bn_momentum``), then
    the ReLU. Layers are named ``<name>_conv1``, ..., ``<name>_pool``
    when ``name`` is given. Returns the block's output tensor.
    """

    def named(part):
        return f"{name}_{part}" if name else None

    for i in range(1, num_convs + 1):
        conv = named(f"conv{i}")
        if not batch_norm:
            x = layers.Conv2D(
                filters, 3, padding="same", activation="relu", name=conv
            )(x)
            continue
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=conv
        )(x)
        x = bn_layer(conv and f"{conv}_bn", momentum=bn_momentum)(x)
        x = layers.Activation("relu", name=conv and f"{conv}_relu")(x)
    return layers.MaxPooling2D(2, strides=2, name=named("pool"))(x)


def vgg_network(
    blocks,
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    dense_units=(4096, 4096),
    dropout=None,
    name="vgg",
):
    """A VGG network from its ``(num_convs, filters)`` blocks. Chapter 4.

    One :func:`vgg_block` per entry of ``blocks`` (``block1``, ...), then
    the classifier head: flatten, two ReLU dense layers and a softmax, as
    in ``keras.applications`` (which leaves dropout out of its definition;
    ``dropout`` puts it back after each dense layer).
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, (num_convs, filters) in enumerate(blocks, 1):
        x = vgg_block(x, num_convs, filters, name=f"block{i}")
    head = classifier_head(num_classes, units=dense_units, dropout=dropout)
    return keras.Model(inputs, apply(head, x), name=name)


def vgg16(input_shape=(224, 224, 3), num_classes=1000):
    """VGG-16: 13 convolutions and 3 dense layers, 138,357,544 parameters.

    Chapter 4.
    """
    return vgg_network(VGG16_BLOCKS, input_shape, num_classes, name="vgg16")


def vgg19(input_shape=(224, 224, 3), num_classes=1000):
    """VGG-19: 16 convolutions and 3 dense layers, 143,667,240 parameters.

    Chapter 4.
    """
    return vgg_network(VGG19_BLOCKS, input_shape, num_classes, name="vgg19")


def vgg_fashion(
    input_shape=(28, 28, 1),
    num_classes=10,
    *,
    resize_to=64,
    width=16,
    blocks=VGG16_BLOCKS,
    dense_units=(512, 512),
    batch_norm=True,
    dropout=0.5,
    bn_momentum=BN_MOMENTUM,
):
    """A narrower VGG for 28x28x1 images, resized inside the model. Ch. 4.

    The VGG-16 block pattern with the filters divided so that the first
    block has ``width`` of them (VGG-16 has 64), an input resized to
    ``resize_to`` pixels (halved five times, so a multiple of 32), batch
    normalisation (momentum ``bn_momentum``) after each convolution and a
    smaller classifier: :func:`vgg_block` for each block, then the head.
    """
    if resize_to % 2 ** len(blocks):
        raise ValueError(
            f"resize_to must be a multiple of "
            f"{2 ** len(blocks)}, got {resize_to}"
        )
    scale = width / blocks[0][1]
    inputs = keras.Input(shape=input_shape)
    x = layers.Resizing(resize_to, resize_to, name="resize")(inputs)
    for b, (num_convs, filters) in enumerate(blocks, 1):
        x = vgg_block(
            x,
            num_convs,
            max(1, round(filters * scale)),
            name=f"block{b}",
            batch_norm=batch_norm,
            bn_momentum=bn_momentum,
        )
    head = classifier_head(num_classes, units=dense_units, dropout=dropout)
    return keras.Model(inputs, apply(head, x), name="vgg_fashion")
