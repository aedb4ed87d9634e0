"""Pieces shared by several model builders.

The conventions every builder of :mod:`cnnbook.models` follows (written
out in CONTRIBUTING.md):

* signature ``builder(input_shape, num_classes, *, options)``: the input
  shape (height, width, channels) first, the number of classes second,
  every other option keyword-only; a builder whose architecture needs a
  defining argument (a depth, a list of blocks) takes it before those two;
* the model ends in a softmax: it returns class probabilities, trained with
  ``"sparse_categorical_crossentropy"``;
* batch normalisation comes from :func:`bn_layer`, whose momentum is the
  builder's ``bn_momentum`` option (Keras's 0.99 unless a lab asks for
  another);
* augmentation is not part of a builder: :func:`cnnbook.train.augmented`
  puts it in front of any model.
"""

from keras import layers

# Keras's own default; the labs that train for a few epochs pass 0.9.
BN_MOMENTUM = 0.99


def bn_layer(name, momentum=BN_MOMENTUM, epsilon=1e-3):
    """The batch-normalisation layer of every builder (channels last)."""
    return layers.BatchNormalization(
        axis=-1, momentum=momentum, epsilon=epsilon, name=name
    )


def classifier_layer(num_classes, name):
    """The last layer of every builder: dense, softmax over the classes."""
    return layers.Dense(num_classes, activation="softmax", name=name)


def add_dense_classifier(model, dense_units, dropout, num_classes, first=1):
    """Flatten, then ReLU dense layers (``fc<first>``, ...) each followed by
    dropout when ``dropout`` is set, then the softmax layer
    ``fc<first + len(dense_units)>``. Chapters 3-4."""
    model.add(layers.Flatten(name="flatten"))
    for i, units in enumerate(dense_units, first):
        model.add(layers.Dense(units, activation="relu", name=f"fc{i}"))
        if dropout:
            model.add(layers.Dropout(dropout, name=f"dropout{i}"))
    model.add(classifier_layer(num_classes, f"fc{first + len(dense_units)}"))
    return model
