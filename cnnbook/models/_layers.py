"""Pieces shared by several model builders."""

from keras import layers


def add_dense_classifier(model, dense_units, dropout, num_classes, first=1):
    """Flatten, then ReLU dense layers (``fc<first>``, ...) each followed by
    dropout when ``dropout`` is set, then a ``logits`` layer. Chapters 3-4."""
    model.add(layers.Flatten(name="flatten"))
    for i, units in enumerate(dense_units, first):
        model.add(layers.Dense(units, activation="relu", name=f"fc{i}"))
        if dropout:
            model.add(layers.Dropout(dropout, name=f"dropout{i}"))
    model.add(layers.Dense(num_classes, name="logits"))
    return model
