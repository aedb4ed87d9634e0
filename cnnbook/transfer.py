"""Transfer learning without downloads. Chapter 8.

No pretrained weights can be fetched offline, so chapter 8's transfer lab
makes its own: it trains a *source* network on some classes of a dataset
and reuses its features for a *target* task made of the other classes,
with few labelled images. :func:`task_split` draws either task (labels
renumbered from 0), :func:`repeated` stretches a handful of labelled
images to a fixed number of training steps, :func:`feature_extractor`
cuts a trained network below its head, :func:`with_new_head` puts a new
classifier on it, and :func:`freeze` and :func:`unfreeze` set what trains.

Freezing the Keras 3 way: ``base.trainable = False`` makes every layer of
the base untrainable, and a ``BatchNormalization`` layer that is not
trainable runs in inference mode (it uses and keeps its moving mean and
variance) whatever ``training`` it is called with. For fine-tuning, the
base is made trainable again *except* its batch normalisation layers;
``base(x, training=False)`` alone would not keep them in inference mode,
because ``fit`` calls the model with ``training=True`` and a functional
model passes that on (keras-team/keras#20285).
"""

from __future__ import annotations

import keras
import numpy as np

from cnnbook import data
from cnnbook.kinds import is_layer
from cnnbook.models._layers import apply, classifier_head

__all__ = [
    "task_split",
    "repeated",
    "feature_extractor",
    "pretrained_base",
    "with_new_head",
    "freeze",
    "unfreeze",
    "trainable_count",
    "moving_statistics",
    "statistics_change",
]

# The name of the base inside the models :func:`with_new_head` builds.
BASE = "base"


def task_split(dataset, classes, train_size, test_size, *, seed=0):
    """The images of ``classes`` only, as a :class:`cnnbook.data.Split`
    whose labels are the positions in ``classes`` (0, 1, ...). Chapter 8.

    ``train_size`` training images are drawn class-balanced by
    :func:`cnnbook.data.subset` with ``seed``, so ``n * len(classes)``
    gives exactly ``n`` of each class; ``test_size`` test images are drawn
    the same way with seed 0, so that every seed is scored on the same
    images."""
    classes = [int(c) for c in classes]
    (x_train, y_train), (x_test, y_test) = data.LOADERS[dataset]()
    position = np.full(max(classes) + 1, -1, np.int64)
    position[classes] = np.arange(len(classes))

    def only(x, y, size, draw_seed):
        keep = np.isin(y, classes)
        x, y = data.subset(x[keep], y[keep], size, draw_seed)
        return data.to_float(x), position[y]

    x_train, y_train = only(x_train, y_train, train_size, seed)
    x_test, y_test = only(x_test, y_test, test_size, 0)
    name = f"{dataset} classes {', '.join(str(c) for c in classes)}"
    return data.Split(name, x_train, y_train, x_test, y_test)


def repeated(split, images, *, seed=0):
    """``split`` with its training images repeated to exactly ``images``,
    each as often as any other (to within one), so that a run over a few
    labelled images lasts a fixed number of steps in one epoch. Ch. 8."""
    count = len(split.y_train)
    rng = np.random.default_rng(seed)
    rounds = -(-images // count)
    order = np.concatenate([rng.permutation(count) for _ in range(rounds)])
    order = order[:images]
    name = f"{split.dataset}: {count:,} labelled images repeated to {images:,}"
    return data.Split(
        name,
        split.x_train[order],
        split.y_train[order],
        split.x_test,
        split.y_test,
    )


def feature_extractor(model, *, name=BASE):
    """A model from ``model``'s input to the feature map its head pools
    (the input of its ``avg_pool`` layer): the trained network without its
    classifier, sharing its weights. Chapter 8."""
    pooled = model.get_layer("avg_pool").input
    return keras.Model(model.inputs, pooled, name=name)


def pretrained_base(model, *, name=BASE):
    """:func:`feature_extractor` of a copy of ``model`` with its trained
    weights: each arm of the lab starts from the same pretrained weights,
    whatever the arms before it did to theirs. Chapter 8."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return feature_extractor(copy, name=name)


def with_new_head(base, num_classes, *, dropout=0.2, name="transfer"):
    """``base`` (from :func:`feature_extractor`) under a new head of
    :func:`cnnbook.models._layers.classifier_head`: average pooling,
    ``dropout`` and a softmax over ``num_classes``. The base keeps its
    weights and its ``trainable`` setting. Chapter 8."""
    inputs = keras.Input(base.input_shape[1:], name="image")
    head = classifier_head(num_classes, pooling="average", dropout=dropout)
    return keras.Model(inputs, apply(head, base(inputs)), name=name)


def freeze(base):
    """``base`` with no trainable weight: in Keras 3 its batch
    normalisation then runs in inference mode too. Chapter 8."""
    base.trainable = False
    return base


def unfreeze(base, *, keep_batch_norm=True):
    """``base`` trainable again for fine-tuning; with ``keep_batch_norm``
    (the right way) its batch normalisation layers stay frozen, in
    inference mode, so that small batches of the new task do not replace
    the moving statistics the base was trained with. Chapter 8."""
    base.trainable = True
    # each layer set explicitly: in Keras 3.15 ``base.trainable = True``
    # does not reach a layer that was made untrainable on its own
    for layer in base.layers:
        batch_norm = is_layer(layer, "BatchNormalization")
        layer.trainable = not (keep_batch_norm and batch_norm)
    return base


def trainable_count(model):
    """The number of weights ``fit`` would change. Chapter 8."""
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def moving_statistics(base):
    """Every moving mean and variance of ``base``'s batch normalisation
    layers, as one vector. Chapter 8."""
    found = [
        keras.ops.convert_to_numpy(variable).ravel()
        for layer in base.layers
        if is_layer(layer, "BatchNormalization")
        for variable in (layer.moving_mean, layer.moving_variance)
    ]
    return np.concatenate(found)


def statistics_change(before, after):
    """How far the moving statistics moved: the summed absolute change
    over the summed absolute values before (0 when none moved). Ch. 8."""
    return float(np.abs(after - before).sum() / np.abs(before).sum())
