"""Inception modules and GoogLeNet (Szegedy et al., 2014). Chapter 6.

* :func:`naive_inception_module`: 1x1, 3x3 and 5x5 convolutions and a 3x3
  max pool side by side, concatenated along the channels.
* :func:`inception_module`: the same with 1x1 "reduce" convolutions before
  the 3x3 and 5x5 convolutions and a 1x1 projection after the pool.
* :func:`auxiliary_head`: the side classifier GoogLeNet attaches to the
  outputs of modules 4a and 4d during training.
* :func:`googlenet`: the network of the paper at 224x224x3, with its nine
  modules and their filter numbers (``GOOGLENET_MODULES``).
* :func:`googlenet_small`: the same layout, narrower and adapted to
  28x28 greyscale images, which trains on Fashion-MNIST.
"""

from __future__ import annotations

import keras
from keras import layers

from cnnbook.kinds import is_layer
from cnnbook.models._layers import (
    BN_MOMENTUM,
    apply,
    bn_layer,
    classifier_head,
    classifier_layer,
)
from cnnbook.tables import Shown, shape_text

__all__ = [
    "GOOGLENET_MODULES",
    "naive_inception_module",
    "inception_module",
    "auxiliary_head",
    "googlenet",
    "googlenet_small",
    "module_table",
    "module_model",
]

# Table 1 of the paper: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5,
# pool proj) for each of the nine inception modules.
GOOGLENET_MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
# Modules followed by a 3x3, stride-2 max pool, and those that feed an
# auxiliary classifier during training.
_POOL_AFTER = ("3b", "4e")
_AUX_AFTER = {"4a": "aux1", "4d": "aux2"}


def _conv(
    x,
    filters,
    size,
    name,
    *,
    batch_norm=False,
    strides=1,
    bn_momentum=BN_MOMENTUM,
):
    """Convolution + ReLU ('same' padding), with optional batch norm."""
    if not batch_norm:
        return layers.Conv2D(
            filters,
            size,
            strides=strides,
            padding="same",
            activation="relu",
            name=name,
        )(x)
    x = layers.Conv2D(
        filters,
        size,
        strides=strides,
        padding="same",
        use_bias=False,
        name=name,
    )(x)
    x = bn_layer(f"{name}_bn", momentum=bn_momentum)(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _name(prefix, part):
    return f"{prefix}_{part}" if prefix else None


def naive_inception_module(x, f1, f3, f5, *, name=None):
    """1x1, 3x3 and 5x5 convolutions and a 3x3 max pool, concatenated.

    Chapter 6. Every branch keeps the height and width ('same' padding,
    stride 1), so the output has ``f1 + f3 + f5 + n_C_prev`` channels,
    ``n_C_prev`` being the number of input channels passed on by the pool.
    """
    b1 = _conv(x, f1, 1, _name(name, "1x1"))
    b3 = _conv(x, f3, 3, _name(name, "3x3"))
    b5 = _conv(x, f5, 5, _name(name, "5x5"))
    bp = layers.MaxPooling2D(
        3, strides=1, padding="same", name=_name(name, "pool")
    )(x)
    return layers.Concatenate(axis=-1, name=_name(name, "concat"))(
        [b1, b3, b5, bp]
    )


def inception_module(
    x,
    f1,
    f3_reduce,
    f3,
    f5_reduce,
    f5,
    pool_proj,
    *,
    name=None,
    batch_norm=False,
    bn_momentum=BN_MOMENTUM,
):
    """Inception module with dimension reduction (Figure 2b of the paper).

    Chapter 6. Four branches on the same input, concatenated along the
    channels into ``f1 + f3 + f5 + pool_proj`` channels of the input's
    height and width:

    * a 1x1 convolution with ``f1`` filters;
    * a 1x1 convolution down to ``f3_reduce`` channels, then 3x3 with ``f3``;
    * a 1x1 convolution down to ``f5_reduce`` channels, then 5x5 with ``f5``;
    * a 3x3 max pool (stride 1, 'same'), then a 1x1 projection to
      ``pool_proj`` channels.

    Every convolution is followed by a ReLU (and, with ``batch_norm``, a
    batch normalisation before it, with momentum ``bn_momentum``, which the
    original network did not have).
    """
    bn = {"batch_norm": batch_norm, "bn_momentum": bn_momentum}
    b1 = _conv(x, f1, 1, _name(name, "1x1"), **bn)
    b3 = _conv(x, f3_reduce, 1, _name(name, "3x3_reduce"), **bn)
    b3 = _conv(b3, f3, 3, _name(name, "3x3"), **bn)
    b5 = _conv(x, f5_reduce, 1, _name(name, "5x5_reduce"), **bn)
    b5 = _conv(b5, f5, 5, _name(name, "5x5"), **bn)
    bp = layers.MaxPooling2D(
        3, strides=1, padding="same", name=_name(name, "pool")
    )(x)
    bp = _conv(bp, pool_proj, 1, _name(name, "pool_proj"), **bn)
    return layers.Concatenate(axis=-1, name=_name(name, "concat"))(
        [b1, b3, b5, bp]
    )


def module_model(module, input_shape, *filters, name=None, **options):
    """One module on its own, as a Keras model: ``module`` (such as
    :func:`inception_module`) applied to an input of ``input_shape`` with
    ``filters`` and ``options``. Chapter 6."""
    inputs = keras.Input(input_shape)
    outputs = module(inputs, *filters, name=name, **options)
    return keras.Model(inputs, outputs, name=name)


def auxiliary_head(
    x,
    num_classes,
    *,
    name="aux",
    pool_size=5,
    pool_strides=3,
    conv_filters=128,
    dense_units=1024,
    dropout=0.7,
):
    """GoogLeNet's auxiliary classifier on a feature map ``x``. Chapter 6.

    Average pool (5x5, stride 3), 1x1 convolution with 128 filters and ReLU,
    a fully connected layer of 1024 units with ReLU, dropout 70% and a
    softmax over ``num_classes``. The last layer is named ``name`` so that
    its output can be given its own loss (weight 0.3 in the paper).
    """
    x = layers.AveragePooling2D(
        pool_size, strides=pool_strides, name=f"{name}_pool"
    )(x)
    x = layers.Conv2D(conv_filters, 1, activation="relu", name=f"{name}_conv")(
        x
    )
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return classifier_layer(num_classes, name=name)(x)


def googlenet(
    input_shape=(224, 224, 3), num_classes=1000, *, aux_classifiers=True
):
    """GoogLeNet as in Table 1 of the paper (no local response norm).

    Chapter 6. Stem: 7x7/2 convolution (64), 3x3/2 max pool, 1x1 (64) and
    3x3 (192) convolutions, 3x3/2 max pool; then modules 3a-3b, max pool,
    4a-4e, max pool, 5a-5b; global average pooling, dropout 40% and a
    softmax layer named ``classifier``. With ``aux_classifiers`` the model
    has three outputs ``[classifier, aux1, aux2]``, the auxiliary heads
    reading the outputs of 4a and 4d; without, it has the single output
    ``classifier``.
    The local response normalisation layers of the stem are left out:
    they have no parameters and later versions dropped them.
    """
    inputs = keras.Input(input_shape, name="image")
    x = _conv(inputs, 64, 7, "stem_conv1", strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool1")(x)
    x = _conv(x, 64, 1, "stem_conv2_reduce")
    x = _conv(x, 192, 3, "stem_conv2")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool2")(x)
    aux = []
    for key, filters in GOOGLENET_MODULES.items():
        x = inception_module(x, *filters, name=f"inception_{key}")
        if aux_classifiers and key in _AUX_AFTER:
            aux.append(auxiliary_head(x, num_classes, name=_AUX_AFTER[key]))
        if key in _POOL_AFTER:
            x = layers.MaxPooling2D(
                3, strides=2, padding="same", name=f"pool_after_{key}"
            )(x)
    return _output_classifier(inputs, x, aux, num_classes, "googlenet")


def googlenet_small(
    input_shape=(28, 28, 1),
    num_classes=10,
    *,
    aux_classifiers=True,
    width=0.25,
    batch_norm=True,
    bn_momentum=BN_MOMENTUM,
):
    """A narrow GoogLeNet for 28x28 greyscale images (Fashion-MNIST).

    Chapter 6. The layout of :func:`googlenet` (stem, 3a-3b, pool, 4a-4e,
    pool, 5a-5b, global average pool, dropout, softmax) with every filter
    number multiplied by ``width``. The stem uses 3x3 convolutions at
    stride 1 and a single max pool, so the modules see 14x14, 7x7 and 4x4
    maps; the auxiliary heads (after 4a and 4d, on 7x7 maps) pool 3x3 with
    stride 2. ``batch_norm`` adds batch normalisation after every
    convolution (an addition of Inception v2; it makes training from
    scratch quick and stable), with momentum ``bn_momentum``.
    """

    def w(n):
        return max(4, int(round(n * width)))

    inputs = keras.Input(input_shape, name="image")
    norm = {"batch_norm": batch_norm, "bn_momentum": bn_momentum}
    x = _conv(inputs, w(64), 3, "stem_conv1", **norm)
    x = _conv(x, w(64), 1, "stem_conv2_reduce", **norm)
    x = _conv(x, w(192), 3, "stem_conv2", **norm)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    aux = []
    for key, filters in GOOGLENET_MODULES.items():
        x = inception_module(
            x,
            *(w(f) for f in filters),
            name=f"inception_{key}",
            **norm,
        )
        if aux_classifiers and key in _AUX_AFTER:
            aux.append(
                auxiliary_head(
                    x,
                    num_classes,
                    name=_AUX_AFTER[key],
                    pool_size=3,
                    pool_strides=2,
                    conv_filters=w(128),
                    dense_units=w(1024),
                )
            )
        if key in _POOL_AFTER:
            x = layers.MaxPooling2D(
                3, strides=2, padding="same", name=f"pool_after_{key}"
            )(x)
    return _output_classifier(inputs, x, aux, num_classes, "googlenet_small")


def _output_classifier(inputs, x, aux, num_classes, name):
    """Global average pooling, dropout 0.4 and the classifier; the
    auxiliary heads (if any) become extra outputs after it. Chapter 6."""
    head = classifier_head(num_classes, pooling="average", dropout=0.4)
    main = apply(head, x)
    return keras.Model(inputs, [main, *aux] if aux else main, name=name)


class ModuleTable(Shown, list):
    """The rows ``(stage, output shape, parameters)`` of
    :func:`module_table`; shows itself as a table. Chapter 6."""

    def columns(self):
        return ("stage", "output", "params")

    def cells(self):
        return [(stage, shape_text(shape), p) for stage, shape, p in self]


def module_table(model):
    """Output shape and parameters after the stem and each inception module
    of a :func:`googlenet` or :func:`googlenet_small` model, auxiliary heads
    left out. Chapter 6.

    A layer belongs to the stage its name starts with: ``stem_*`` to the
    stem, ``inception_3a_*`` to module 3a, and so on; pooling between
    modules and the head (``avg_pool``, ``dropout``, ``classifier``) are
    their own rows; rows without parameters are left out. The shape of a
    stage is the output of its last layer. The result shows itself as a
    table (:class:`ModuleTable`).
    """
    rows, index = [], {}
    for layer in model.layers:
        if is_layer(layer, "InputLayer"):
            continue
        if layer.name.startswith("aux"):
            continue
        parts = layer.name.split("_")
        stage = "_".join(parts[:2]) if parts[0] == "inception" else parts[0]
        if stage not in index:
            index[stage] = len(rows)
            rows.append([stage, (), 0])
        row = rows[index[stage]]
        row[1] = tuple(layer.output.shape)[1:]
        row[2] += layer.count_params()
    return ModuleTable(tuple(row) for row in rows if row[2])
