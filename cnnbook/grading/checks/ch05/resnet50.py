"""Chapter 5, exercise 5.3: ResNet-50, compared with Keras's own."""

from __future__ import annotations

import keras

from cnnbook.grading.api import (
    CheckFailure,
    add_hint,
    exercise,
)
from cnnbook.grading.checks.ch05.blocks import InputOrder
from cnnbook.grading.structure import (
    expect_same_layers,
)
from cnnbook.kinds import is_layer

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch05', the folder's name


# ------------------------------------------------------------ 5.3 ResNet-50
def _check_resnet50(func, input_shape=None, num_classes=None):
    kwargs = {}
    if input_shape is not None:
        kwargs = dict(input_shape=input_shape, num_classes=num_classes)
    what = "resnet50(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
    try:
        model = func(**kwargs)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CheckFailure(
            f"{what} raised {type(exc).__name__}: {exc}"
        ) from exc
    ref = keras.applications.ResNet50(
        weights=None, input_shape=input_shape, classes=num_classes or 1000
    )
    try:
        expect_same_layers(InputOrder(model), InputOrder(ref), what)
    except CheckFailure as exc:
        raise add_hint(exc, _resnet50_mistake(model, num_classes)) from None


def _resnet50_mistake(model, num_classes):
    if not hasattr(model, "layers"):
        return None
    kinds = [type(x).__name__ for x in model.layers]
    dense = [x for x in model.layers if is_layer(x, "Dense")]
    if kinds.count("Add") != 16:
        return (
            f"ResNet-50 has 16 bottleneck blocks (3, 4, 6 and 3 in its four "
            f"stages); this model adds {kinds.count('Add')} shortcuts"
        )
    if kinds.count("ZeroPadding2D") != 2:
        return (
            "the stem pads the image by 3 pixels before its 7x7, stride-2 "
            "convolution and by 1 before its 3x3 max pool (ZeroPadding2D)"
        )
    if "GlobalAveragePooling2D" not in kinds:
        return (
            "the network ends with global average pooling, then one "
            "dense softmax layer"
        )
    if dense and dense[-1].get_config()["units"] != (num_classes or 1000):
        return "the output layer has num_classes units, not a fixed number"
    return None


@exercise(
    CHAPTER,
    "5.3",
    "ResNet-50 to the exact parameter count",
    points=3,
    names=["resnet50"],
)
def resnet50_visible(ns):
    _check_resnet50(ns["resnet50"])


@resnet50_visible.hidden_check
def resnet50_hidden(ns, rng):
    size = int(rng.choice([64, 96, 128]))
    _check_resnet50(ns["resnet50"], (size, size, 3), int(rng.integers(2, 50)))
