"""The two small networks of Chapter 1 (CNN layer arithmetic).

* :func:`simple_convnet`: three convolutions on a 39x39x3 image, no
  pooling, flattened into 7x7x40 = 1960 features and a softmax.
* :func:`lenet_like`: CONV-POOL-CONV-POOL-FC-FC-FC-softmax on a 32x32x3
  image, in the spirit of LeNet-5 (LeCun et al., 1998).

Both are used for their shapes and parameter counts; nothing in Chapter 1
trains them.
"""

from __future__ import annotations

import keras
from keras import layers

from cnnbook.models._layers import classifier_head

__all__ = ["simple_convnet", "lenet_like"]


def simple_convnet(input_shape=(39, 39, 3), num_classes=10):
    """39x39x3 -> 37x37x10 -> 17x17x20 -> 7x7x40 -> 1960 -> softmax. Ch. 1."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(10, 3, strides=1, activation="relu", name="conv1"),
            layers.Conv2D(20, 5, strides=2, activation="relu", name="conv2"),
            layers.Conv2D(40, 5, strides=2, activation="relu", name="conv3"),
            *classifier_head(num_classes),
        ],
        name="simple_convnet",
    )


def lenet_like(input_shape=(32, 32, 3), num_classes=10):
    """CONV-POOL-CONV-POOL-FC-FC-FC-softmax, LeNet-5 style. Chapter 1.

    5x5 convolutions with stride 1 and no padding (8 then 16 filters),
    each followed by 2x2 max pooling with stride 2, then fully connected
    layers of 120 and 84 units and a softmax.
    """
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(8, 5, strides=1, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, strides=2, name="pool1"),
            layers.Conv2D(16, 5, strides=1, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, strides=2, name="pool2"),
            *classifier_head(num_classes, units=(120, 84), first=3),
        ],
        name="lenet_like",
    )
