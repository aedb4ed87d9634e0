"""AlexNet: the canonical ImageNet network and a Fashion-MNIST variant.

Chapter 3. :func:`alexnet` is the single-tower network of Krizhevsky,
Sutskever and Hinton (2012) with the two GPU halves merged: 227x227x3 in,
1000 classes out, 62,378,344 parameters. :func:`alexnet_fashion` is the same
stack of layers adapted to 28x28 grey images (resized inside the model).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from cnnbook import arithmetic
from cnnbook.models._layers import (
    BN_MOMENTUM,
    CLASSIFIER,
    bn_layer,
    classifier_head,
)

__all__ = [
    "alexnet",
    "alexnet_spec",
    "alexnet_fashion",
    "LocalResponseNormalization",
    "local_response_normalization",
]

# (filters, kernel, stride, padding, pool after?) of the five convolutions.
CONV_SPEC = (
    (96, 11, 4, "valid", True),
    (256, 5, 1, "same", True),
    (384, 3, 1, "same", False),
    (384, 3, 1, "same", False),
    (256, 3, 1, "same", True),
)
DENSE_UNITS = (4096, 4096)


def local_response_normalization(
    x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75
):
    """Divide each activation by its neighbours across channels. Chapter 3.

    ``b[..., c] = a[..., c] / (bias + alpha * sum(a[..., j]**2))**beta`` with
    ``j`` running over the channels ``c - depth_radius ... c + depth_radius``
    that exist. The defaults are the paper's k=2, n=5, alpha=1e-4,
    beta=0.75. Works on numpy arrays and on Keras tensors (channels last).
    """
    squared = ops.square(x)
    pad = [[0, 0]] * (len(squared.shape) - 1) + [[depth_radius, depth_radius]]
    padded = ops.pad(squared, pad)
    channels = squared.shape[-1]
    window = sum(
        padded[..., i : i + channels] for i in range(2 * depth_radius + 1)
    )
    return x / ops.power(bias + alpha * window, beta)


class LocalResponseNormalization(layers.Layer):
    """Keras layer for :func:`local_response_normalization`. Chapter 3."""

    def __init__(
        self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs
    ):
        super().__init__(**kwargs)
        self.depth_radius, self.bias = depth_radius, bias
        self.alpha, self.beta = alpha, beta

    def call(self, x):
        return local_response_normalization(
            x, self.depth_radius, self.bias, self.alpha, self.beta
        )

    def get_config(self):
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }


def _add_convolutions(
    model, *, lrn=False, batch_norm=False, bn_momentum=BN_MOMENTUM
):
    """AlexNet's five convolutions (ReLU) and three 3x3/2 max pools, added
    to ``model``; with ``batch_norm``, each convolution loses its bias and
    is followed by batch normalisation, then the ReLU. Chapter 3."""
    for i, (filters, size, stride, padding, pool) in enumerate(CONV_SPEC, 1):
        model.add(
            layers.Conv2D(
                filters,
                size,
                strides=stride,
                padding=padding,
                activation=None if batch_norm else "relu",
                use_bias=not batch_norm,
                name=f"conv{i}",
            )
        )
        if batch_norm:
            model.add(bn_layer(f"conv{i}_bn", momentum=bn_momentum))
            model.add(layers.Activation("relu", name=f"conv{i}_relu"))
        if lrn and i <= 2:
            model.add(LocalResponseNormalization(name=f"lrn{i}"))
        if pool:
            model.add(layers.MaxPooling2D(3, strides=2, name=f"pool{i}"))


def alexnet(
    input_shape=(227, 227, 3), num_classes=1000, *, lrn=False, dropout=0.5
):
    """The canonical single-tower AlexNet. Chapter 3.

    Five convolutions (96 11x11/4, 256 5x5, 384, 384, 256 3x3) with three
    3x3/2 max-pools, then FC 4096, FC 4096 and a softmax. At 1000 classes it
    has 62,378,344 parameters. ``lrn=True`` adds the paper's local response
    normalisation after the first two convolutions (no parameters).
    """
    model = keras.Sequential(name="alexnet")
    model.add(keras.Input(shape=input_shape))
    _add_convolutions(model, lrn=lrn)
    return _add_head(model, num_classes, DENSE_UNITS, dropout)


def _add_head(model, num_classes, units, dropout):
    """Flatten, ``fc6``, ``fc7`` (ReLU, dropout after each) and the
    classifier, the paper's numbering of the dense layers. Chapter 3."""
    head = classifier_head(num_classes, units=units, first=6, dropout=dropout)
    for layer in head:
        model.add(layer)
    return model


def alexnet_spec(input_shape=(227, 227, 3), num_classes=1000):
    """Output shape and parameters of each :func:`alexnet` layer by formula.

    Chapter 3. A list of ``(name, output shape without the batch axis,
    parameters)`` for the convolutions, the pools and the dense layers
    (``conv1``, ``pool1``, ... ``fc7``, ``classifier``), computed with
    :mod:`cnnbook.arithmetic` alone, no Keras.
    """
    height, width, depth = input_shape
    rows = []
    for i, (filters, f, s, padding, pool) in enumerate(CONV_SPEC, 1):
        p = arithmetic.same_padding(f) if padding == "same" else 0
        height = arithmetic.conv_output_size(height, f, p, s)
        width = arithmetic.conv_output_size(width, f, p, s)
        rows.append(
            (
                f"conv{i}",
                (height, width, filters),
                arithmetic.conv_params(f, depth, filters),
            )
        )
        depth = filters
        if pool:
            height = arithmetic.pool_output_size(height, 3, 2)
            width = arithmetic.pool_output_size(width, 3, 2)
            rows.append((f"pool{i}", (height, width, filters), 0))
    n_in = height * width * depth
    for name, units in (
        ("fc6", DENSE_UNITS[0]),
        ("fc7", DENSE_UNITS[1]),
        (CLASSIFIER, num_classes),
    ):
        rows.append((name, (units,), arithmetic.dense_params(n_in, units)))
        n_in = units
    return rows


def alexnet_fashion(
    input_shape=(28, 28, 1),
    num_classes=10,
    *,
    resize_to=112,
    batch_norm=True,
    dropout=0.5,
    dense_units=DENSE_UNITS,
    bn_momentum=BN_MOMENTUM,
):
    """AlexNet for 28x28x1 images: resized inside the model. Chapter 3.

    The same five convolutions and three pools as :func:`alexnet` on one
    input channel; a ``Resizing`` layer scales each batch to
    ``resize_to`` pixels (at least 67, so that the last pool still has a
    3x3 window), so the dataset never has to be resized in memory. With
    ``batch_norm`` every convolution is followed by batch normalisation
    (momentum ``bn_momentum``), which lets Adam train it quickly; the dense
    layers keep dropout.
    """
    if resize_to < 67:
        raise ValueError(
            "AlexNet's stride-4 stem and three 3x3/2 pools need "
            f"an input of at least 67 pixels, got resize_to={resize_to}"
        )

    model = keras.Sequential(name="alexnet_fashion")
    model.add(keras.Input(shape=input_shape))
    model.add(layers.Resizing(resize_to, resize_to, name="resize"))
    _add_convolutions(model, batch_norm=batch_norm, bn_momentum=bn_momentum)
    # No batch normalisation in the dense layers: after dropout, the
    # statistics it learned in training would not match at test time.
    return _add_head(model, num_classes, dense_units, dropout)
