"""Pieces shared by the model builders, and the convention they follow.

The convention of :mod:`cnnbook.models` (CONTRIBUTING.md, "Model
builders", says the same):

* **Builders**: ``builder(input_shape, num_classes, *, options)``; the
  input shape (height, width, channels) first, the number of classes
  second, every other option keyword-only. A builder whose architecture
  needs a defining argument (a depth, a list of blocks) takes it before
  those two. A network that is a plain stack of layers is a
  ``keras.Sequential``; one with branches or several outputs is a
  functional ``keras.Model``.
* **Blocks are functional**: a block (``vgg_block``, ``identity_block``,
  ``convolutional_block``, ``basic_block``, ``inception_module``,
  ``auxiliary_head``) takes a tensor and returns a tensor,
  ``block(x, <its shape arguments>, *, name=..., bn_momentum=..., ...)``;
  its options are keyword-only. A builder is built on its chapter's
  blocks (VGG's builders on ``vgg_block``); a Sequential builder whose
  block is functional is a functional model instead.
* **One head, one name**: every network ends in :func:`classifier_head`,
  whose last layer is :func:`classifier_layer`, a dense softmax layer
  named ``"classifier"`` (:data:`CLASSIFIER`) that returns class
  probabilities, trained with ``"sparse_categorical_crossentropy"``.
  GoogLeNet's auxiliary heads are the only other softmax layers
  (``aux1``, ``aux2``).
* **Batch normalisation** comes from :func:`bn_layer`, whose momentum is
  the builder's ``bn_momentum=`` option (Keras's 0.99 unless a lab asks
  for another).
* **Layer kinds** are asked with :func:`cnnbook.kinds.is_layer`, never by
  comparing class-name strings.
* Augmentation is not part of a builder: :func:`cnnbook.train.augmented`
  puts it in front of any model.
"""

from keras import layers

__all__ = [
    "BN_MOMENTUM",
    "CLASSIFIER",
    "bn_layer",
    "classifier_layer",
    "classifier_head",
    "apply",
]

# Keras's own default; the labs that train for a few epochs pass 0.9.
BN_MOMENTUM = 0.99
# The name of the last layer of every network.
CLASSIFIER = "classifier"


def bn_layer(name, *, momentum=BN_MOMENTUM, epsilon=1e-3):
    """The batch-normalisation layer of every builder (channels last)."""
    return layers.BatchNormalization(
        axis=-1, momentum=momentum, epsilon=epsilon, name=name
    )


def classifier_layer(num_classes, *, name=CLASSIFIER):
    """The last layer of every network: dense, softmax over the classes.
    Only GoogLeNet's auxiliary heads give it another ``name``."""
    return layers.Dense(num_classes, activation="softmax", name=name)


def classifier_head(
    num_classes,
    *,
    pooling="flatten",
    units=(),
    prefix="fc",
    first=1,
    activation="relu",
    dropout=None,
):
    """The layers from the last feature map to :func:`classifier_layer`.

    ``pooling="flatten"`` (``flatten``, chapters 1-4) keeps every position
    as a feature; ``"average"`` (``avg_pool``, chapters 5-6) averages each
    channel over the map. Then one dense layer per entry of ``units``,
    named ``<prefix><first>``, ``<prefix><first + 1>``... with
    ``activation``, each followed by ``dropout<i>`` when ``dropout`` is
    set; with no ``units``, ``dropout`` (named ``dropout``) comes straight
    before the classifier. Returns a list of layers, so that a Sequential
    builder adds them and a functional one applies them (:func:`apply`).
    """
    if pooling not in ("flatten", "average"):
        raise ValueError(f"pooling is 'flatten' or 'average', not {pooling!r}")
    head = [
        layers.Flatten(name="flatten")
        if pooling == "flatten"
        else layers.GlobalAveragePooling2D(name="avg_pool")
    ]
    for i, width in enumerate(units, first):
        head.append(
            layers.Dense(width, activation=activation, name=f"{prefix}{i}")
        )
        if dropout:
            head.append(layers.Dropout(dropout, name=f"dropout{i}"))
    if dropout and not units:
        head.append(layers.Dropout(dropout, name="dropout"))
    head.append(classifier_layer(num_classes))
    return head


def apply(stack, x):
    """``x`` through the layers of ``stack`` in order (a functional model's
    way of using :func:`classifier_head`)."""
    for layer in stack:
        x = layer(x)
    return x
