"""Checks of Chapter 4 (VGG). Expected values come from the arithmetic
module and from :mod:`cnnbook.models.vgg`, never typed in."""

from __future__ import annotations

import gc

from cnnbook import arithmetic as ar
from cnnbook.grading.api import (
    CheckFailure,
    add_hint,
    call_learner,
    exercise,
    expect_equal_or_mistake,
    type_name,
)
from cnnbook.grading.rebuild import bounded_build
from cnnbook.grading.structure import (
    expect_same_layers,
)
from cnnbook.grading.wire import MAX_LAYERS, WireError
from cnnbook.kinds import is_layer

CHAPTER = "ch04"

# What answers an exercise of this chapter; left out of the sandbox.
ANSWERS = {"cnnbook.models.vgg": (["4.1", "4.2"], None)}
KERAS_APPLICATIONS = {"vgg16": ["4.2"], "vgg19": ["4.2"]}


def _free():
    import keras  # delays keras

    keras.backend.clear_session()
    gc.collect()


def _block_model(block, input_shape, what):
    import keras  # delays keras

    if block is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    if isinstance(block, keras.Model) or not isinstance(block, (list, tuple)):
        raise CheckFailure(
            f"{what} should return a list of layers, got {type_name(block)}"
        )
    if len(block) > MAX_LAYERS:
        raise CheckFailure(
            f"{what} returned {len(block)} layers; a VGG block has a few"
        )
    for layer in block:
        if not isinstance(layer, keras.layers.Layer):
            raise CheckFailure(
                f"{what} should hold only Keras layers, got {type_name(layer)}"
            )
    # the layers came back unbuilt: their weights are counted before the
    # grader's process allocates them (red team 9: nine Dense(8192))
    try:
        return bounded_build(
            lambda: keras.Sequential([keras.Input(shape=input_shape), *block])
        )
    except WireError as exc:
        raise CheckFailure(f"{what}: {exc}") from None


def _compare_block(func, num_convs, filters, input_shape):
    from cnnbook.models.inception import module_model  # delays keras
    from cnnbook.models.vgg import vgg_block  # delays keras

    what = f"vgg_block({num_convs}, {filters})"
    mine = _block_model(func(num_convs, filters), input_shape, what)
    # the package's block is functional (tensor in, tensor out)
    ref = module_model(vgg_block, input_shape, num_convs, filters)
    try:
        expect_same_layers(mine, ref, f"{what} on a {input_shape} input")
    except CheckFailure as exc:
        raise add_hint(exc, _block_mistake(mine)) from None
    for layer in mine.layers:
        if is_layer(layer, "Conv2D"):
            config = layer.get_config()
            if config["activation"] != "relu":
                raise CheckFailure(
                    f"{what}: the convolutions should use the "
                    f"ReLU activation, not "
                    f"{config['activation']!r}"
                )
            if tuple(config["strides"]) != (1, 1):
                raise CheckFailure(f"{what}: the convolutions have stride 1")


def _block_mistake(model):
    """The typical mistake of a VGG block that differs from the spec."""
    layers = [x for x in model.layers if not is_layer(x, "InputLayer")]
    convs = [x.get_config() for x in layers if is_layer(x, "Conv2D")]
    pools = [x.get_config() for x in layers if is_layer(x, "MaxPooling2D")]
    if not pools:
        return "the block ends with a 2x2 max pool with stride 2"
    if any(c["padding"] != "same" for c in convs):
        return "the 3x3 convolutions keep the size: padding='same'"
    if any(tuple(c["kernel_size"]) != (3, 3) for c in convs):
        return "every convolution of a VGG block is 3x3"
    if any(
        tuple(p["pool_size"]) != (2, 2) or tuple(p["strides"]) != (2, 2)
        for p in pools
    ):
        return "the pool is 2x2 with stride 2: it halves height and width"
    return None


@exercise(CHAPTER, "4.1", "vgg_block", points=2, names=["vgg_block"])
def block_visible(ns):
    _compare_block(ns["vgg_block"], 2, 64, (32, 32, 3))
    _compare_block(ns["vgg_block"], 3, 256, (28, 28, 128))
    _free()


@block_visible.hidden_check
def block_hidden(ns, rng):
    for _ in range(4):
        size = 2 * int(rng.integers(2, 20))
        _compare_block(
            ns["vgg_block"],
            int(rng.integers(1, 5)),
            int(rng.integers(1, 40)),
            (size, size, int(rng.integers(1, 9))),
        )
    _free()


def _compare_vgg16(func, input_shape, num_classes):
    import keras  # delays keras

    from cnnbook.models.vgg import vgg16  # delays keras

    what = f"build_vgg16({input_shape}, {num_classes})"
    mine = call_learner(func, input_shape, num_classes, what=what)
    if not isinstance(mine, keras.Model):
        raise CheckFailure(
            f"{what} should return a keras Model, got {type_name(mine)}"
        )
    reference = vgg16(input_shape, num_classes)
    try:
        expect_same_layers(mine, reference, what)
    except CheckFailure as exc:
        raise add_hint(exc, _vgg16_mistake(mine, num_classes)) from None
    finally:
        del mine, reference
        _free()


def _vgg16_mistake(model, num_classes):
    kinds = [type(x).__name__ for x in model.layers]
    dense = [x for x in model.layers if is_layer(x, "Dense")]
    if kinds.count("Conv2D") != 13:
        return (
            "VGG-16 has 13 convolutions: 2, 2, 3, 3 and 3 in its five blocks"
        )
    if kinds.count("MaxPooling2D") != 5:
        return "each of the five blocks ends with a max pool"
    if "Flatten" not in kinds:
        return "the last volume is flattened before the dense layers"
    if dense and dense[-1].get_config()["units"] != num_classes:
        return "the output layer has num_classes units, not a fixed number"
    if any(x.get_config()["units"] != 4096 for x in dense[:-1]):
        return "the two hidden dense layers have 4096 units each"
    return None


@exercise(
    CHAPTER, "4.2", "VGG-16 to the parameter", points=3, names=["build_vgg16"]
)
def vgg16_visible(ns):
    _compare_vgg16(ns["build_vgg16"], (224, 224, 3), 1000)


@vgg16_visible.hidden_check
def vgg16_hidden(ns, rng):
    for _ in range(2):
        size = 32 * int(rng.integers(1, 4))
        _compare_vgg16(
            ns["build_vgg16"],
            (size, size, int(rng.choice([1, 3]))),
            int(rng.integers(2, 200)),
        )


def reference_receptive_field(num_layers, f=3):
    """Side of the input patch seen by a stack of f x f, stride-1 convs."""
    return 1 + num_layers * (f - 1)


def _compare_stack(ns, num_layers, channels, f):
    c = channels
    expect_equal_or_mistake(
        ns["stacked_params"](num_layers, channels),
        num_layers * ar.conv_params(3, channels, channels),
        f"stacked_params({num_layers}, {channels})",
        [
            ("each convolution has a bias per filter", num_layers * 9 * c * c),
            (
                "every one of the num_layers convolutions has its own "
                "weights: multiply by num_layers",
                ar.conv_params(3, c, c),
            ),
        ],
    )
    expect_equal_or_mistake(
        ns["single_conv_params"](f, channels),
        ar.conv_params(f, channels, channels),
        f"single_conv_params({f}, {channels})",
        [
            ("each filter has a bias", f * f * c * c),
            ("an f x f filter has f * f weights per channel", (f * c + 1) * c),
        ],
    )
    for args in ((num_layers,), (num_layers, f)):
        size = args[1] if len(args) > 1 else 3
        expect_equal_or_mistake(
            ns["receptive_field"](*args),
            reference_receptive_field(*args),
            f"receptive_field({', '.join(map(str, args))})",
            [
                (
                    "each layer widens the field by f - 1 pixels, not f",
                    1 + num_layers * size,
                ),
                (
                    "the field starts at 1 pixel: add 1 to "
                    "num_layers * (f - 1)",
                    num_layers * (size - 1),
                ),
                (
                    "stacked layers add to the field, they do not multiply it",
                    size**num_layers,
                ),
            ],
        )


@exercise(
    CHAPTER,
    "4.3",
    "Stacked 3x3 versus one large filter",
    points=2,
    names=["stacked_params", "single_conv_params", "receptive_field"],
)
def stack_visible(ns):
    _compare_stack(ns, 2, 64, 5)
    _compare_stack(ns, 3, 256, 7)


@stack_visible.hidden_check
def stack_hidden(ns, rng):
    for _ in range(6):
        _compare_stack(
            ns,
            int(rng.integers(1, 8)),
            int(rng.integers(1, 600)),
            int(rng.choice([1, 3, 5, 7, 9, 11])),
        )
