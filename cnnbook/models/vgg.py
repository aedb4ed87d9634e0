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
    add_dense_classifier,
    bn_layer,
    classifier_layer,
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


def vgg_block(num_convs, filters, name=None):
    """The layers of one VGG block. Chapter 4.

    ``num_convs`` 3x3 'same' convolutions with ReLU, stride 1, then a 2x2
    max-pool with stride 2: height and width halve, the depth becomes
    ``filters``. Returns a list of layers, ready to be added to a model.
    """
    prefix = f"{name}_" if name else ""
    block = [
        layers.Conv2D(
            filters,
            3,
            padding="same",
            activation="relu",
            name=f"{prefix}conv{i}" if name else None,
        )
        for i in range(1, num_convs + 1)
    ]
    block.append(
        layers.MaxPooling2D(
            2, strides=2, name=f"{prefix}pool" if name else None
        )
    )
    return block


def vgg_network(
    blocks,
    input_shape=(224, 224, 3),
    num_classes=1000,
    *,
    dense_units=(4096, 4096),
    name="vgg",
):
    """A VGG network from its ``(num_convs, filters)`` blocks. Chapter 4.

    The classifier is flatten, two ReLU dense layers and a softmax, as in
    ``keras.applications`` (which leaves dropout out of its definition).
    """
    model = keras.Sequential(name=name)
    model.add(keras.Input(shape=input_shape))
    for i, (num_convs, filters) in enumerate(blocks, 1):
        for layer in vgg_block(num_convs, filters, name=f"block{i}"):
            model.add(layer)
    model.add(layers.Flatten(name="flatten"))
    for i, units in enumerate(dense_units, 1):
        model.add(layers.Dense(units, activation="relu", name=f"fc{i}"))
    model.add(classifier_layer(num_classes, "predictions"))
    return model


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
    smaller classifier.
    """
    if resize_to % 2 ** len(blocks):
        raise ValueError(
            f"resize_to must be a multiple of "
            f"{2 ** len(blocks)}, got {resize_to}"
        )
    scale = width / blocks[0][1]
    model = keras.Sequential(name="vgg_fashion")
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Resizing(resize_to, resize_to, name="resize"))
    for b, (num_convs, filters) in enumerate(blocks, 1):
        for c in range(1, num_convs + 1):
            name = f"block{b}_conv{c}"
            model.add(
                layers.Conv2D(
                    max(1, round(filters * scale)),
                    3,
                    padding="same",
                    use_bias=not batch_norm,
                    name=name,
                )
            )
            if batch_norm:
                model.add(bn_layer(f"{name}_bn", bn_momentum))
            model.add(layers.Activation("relu", name=f"{name}_relu"))
        model.add(layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool"))
    return add_dense_classifier(model, dense_units, dropout, num_classes)
