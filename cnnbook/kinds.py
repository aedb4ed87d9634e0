"""What kind of Keras object a value is, without importing Keras for it.

One helper in place of comparing class-name strings
(``type(layer).__name__ == "InputLayer"``): :func:`is_layer` asks
``isinstance`` against the Keras class of that name, so a subclass counts
and a misspelt name fails loudly. Keras is only looked at when the process
has already imported it: a value cannot be a Keras object otherwise, and
the grader's side that never builds a model stays free of TensorFlow.
"""

from __future__ import annotations

import sys

__all__ = ["is_layer", "keras_class"]


def keras_class(name):
    """The class ``keras.layers.<name>`` (or ``keras.Model``/``Sequential``
    for those names); ``AttributeError`` names a misspelt one."""
    import keras  # delays keras (reached only once keras is imported)

    for space in (keras.layers, keras):
        found = getattr(space, name, None)
        if isinstance(found, type):
            return found
    raise AttributeError(f"keras has no layer class named {name!r}")


def is_layer(value, *names):
    """True when ``value`` is an instance of one of the Keras classes
    ``names`` (``"InputLayer"``, ``"Conv2D"``, ``"Model"``...)."""
    if not names:
        raise TypeError("is_layer needs at least one class name")
    if "keras" not in sys.modules:
        return False
    return isinstance(value, tuple(keras_class(n) for n in names))
