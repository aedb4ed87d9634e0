"""LeNet-5 (LeCun et al., 1998): the modern and the classic form. Chapter 2.

Both forms take 32x32x1 images, as the 1998 network did. MNIST digits are
28x28, so :func:`pad_digits` puts a 2-pixel border of background around
each one; the models themselves contain no padding layer, which keeps their
layer tables identical to the architecture of the paper.

The module also holds what the chapter says about the 1998 network: the
connection table of its layer C3 (:data:`C3_TABLE`), the parameter count of
a convolution with such partial connections (:func:`partial_conv_params`),
and the per-layer trainable parameters of the original network
(:func:`lenet5_1998_params`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from cnnbook import arithmetic
from cnnbook.models._layers import classifier_head

__all__ = [
    "lenet5",
    "lenet5_classic",
    "pad_digits",
    "c3_connection_table",
    "partial_conv_params",
    "lenet5_1998_params",
    "lenet5_spec",
]

# Table I of the paper: row i is S2's feature map i, column j is C3's map j;
# "X" marks that C3 map j sees S2 map i.
C3_TABLE = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)


def c3_connection_table():
    """C3's connection table as a boolean array (6 S2 maps, 16 C3 maps).

    Chapter 2. Entry ``[i, j]`` is True when C3's map ``j`` takes S2's map
    ``i`` as input (Table I of LeCun et al., 1998).
    """
    return np.array([[c == "X" for c in row] for row in C3_TABLE])


def partial_conv_params(connections, f, bias=True):
    """Parameters of a convolution whose filters see only some input maps.

    Chapter 2. ``connections`` is a boolean (input maps, output maps)
    table; output map ``j`` has one ``f x f`` kernel per input map it sees
    and one bias. With every entry True this equals
    :func:`cnnbook.arithmetic.conv_params`.
    """
    table = np.asarray(connections, bool)
    if table.ndim != 2:
        raise ValueError("connections must be a 2-D (inputs, outputs) table")
    return int(f * f * table.sum() + int(bool(bias)) * table.shape[1])


def lenet5_1998_params():
    """Trainable parameters per layer of the 1998 LeNet-5, as a dict.

    Chapter 2. Convolutions C1, C3 (partial connections) and C5; the
    subsampling layers S2 and S4 learn one coefficient and one bias per
    map; F6 is fully connected. The RBF output layer is left out: its 84
    weights per class were fixed by hand, not learned.
    """
    return {
        "C1": arithmetic.conv_params(5, 1, 6),
        "S2": 6 * 2,
        "C3": partial_conv_params(c3_connection_table(), 5),
        "S4": 16 * 2,
        "C5": arithmetic.conv_params(5, 16, 120),
        "F6": arithmetic.dense_params(120, 84),
    }


def pad_digits(images, size=32):
    """uint8 digits (n, 28, 28) to float32 (n, size, size, 1) in [0, 1].

    Chapter 2. The digit stays in the centre; the added border is
    background (0), like the blank margin of the 1998 network's input
    field, so that strokes near the edge of a digit can still fall in the
    middle of the receptive fields of the last convolution.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(
            f"expected images of shape (n, h, w), got {images.shape}"
        )
    height, width = images.shape[1:]
    extra_h, extra_w = size - height, size - width
    if extra_h < 0 or extra_w < 0:
        raise ValueError(
            f"images of {height}x{width} do not fit in {size}x{size}"
        )
    out = np.zeros((len(images), size, size, 1), np.float32)
    top, left = extra_h // 2, extra_w // 2
    out[:, top : top + height, left : left + width, 0] = images / np.float32(
        255
    )
    return out


def _build(name, activation, pooling, input_shape, num_classes):
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(6, 5, activation=activation, name="c1"),
            pooling(2, name="s2"),
            layers.Conv2D(16, 5, activation=activation, name="c3"),
            pooling(2, name="s4"),
            *classifier_head(
                num_classes,
                units=(120, 84),
                prefix="f",
                first=5,
                activation=activation,
            ),
        ],
        name=name,
    )


def lenet5(input_shape=(32, 32, 1), num_classes=10):
    """LeNet-5 in its modern form: ReLU, max pooling, softmax. Chapter 2.

    Valid 5x5 convolutions with 6 and 16 filters, each followed by 2x2
    max pooling with stride 2, then dense layers of 120 and 84 units and a
    softmax over ``num_classes``: 61,706 parameters for 10 classes.
    """

    return _build(
        "lenet5", "relu", layers.MaxPooling2D, input_shape, num_classes
    )


def lenet5_classic(input_shape=(32, 32, 1), num_classes=10):
    """LeNet-5 closer to 1998: tanh and average pooling. Chapter 2.

    The same layers and parameter count as :func:`lenet5`; it keeps the
    softmax output (the paper's RBF output layer is described in the
    chapter) and full connections in C3.
    """

    return _build(
        "lenet5_classic",
        "tanh",
        layers.AveragePooling2D,
        input_shape,
        num_classes,
    )


def lenet5_spec(input_shape=(32, 32, 1), num_classes=10):
    """Output shape and parameters of each :func:`lenet5` layer by formula.

    Chapter 2. A list of ``(name, output shape without the batch axis,
    parameters)`` computed with :mod:`cnnbook.arithmetic` alone, no Keras.
    """
    height, width, channels = input_shape

    def after_c1_to_s4(size):
        conv1 = arithmetic.conv_output_size(size, 5)
        pool1 = arithmetic.pool_output_size(conv1, 2)
        conv2 = arithmetic.conv_output_size(pool1, 5)
        return conv1, pool1, conv2, arithmetic.pool_output_size(conv2, 2)

    c1_h, s2_h, c3_h, s4_h = after_c1_to_s4(height)
    c1_w, s2_w, c3_w, s4_w = after_c1_to_s4(width)
    flat = s4_h * s4_w * 16
    return [
        ("c1", (c1_h, c1_w, 6), arithmetic.conv_params(5, channels, 6)),
        ("s2", (s2_h, s2_w, 6), arithmetic.pool_params()),
        ("c3", (c3_h, c3_w, 16), arithmetic.conv_params(5, 6, 16)),
        ("s4", (s4_h, s4_w, 16), arithmetic.pool_params()),
        ("flatten", (flat,), 0),
        ("f5", (120,), arithmetic.dense_params(flat, 120)),
        ("f6", (84,), arithmetic.dense_params(120, 84)),
        (
            "classifier",
            (num_classes,),
            arithmetic.dense_params(84, num_classes),
        ),
    ]
