"""Chapter 8's networks and arithmetic: MobileNet v1 and v2 and
EfficientNet-B0 against Keras's own builders, the inverted residual
block's rules, the lab's network, and the depthwise-separable count."""

import keras
import numpy as np
import pytest

from cnnbook import arithmetic, models
from cnnbook.arithmetic import layer_table
from cnnbook.compare import cost
from cnnbook.kinds import is_layer

CANONICAL = [
    ("mobilenet_v1", keras.applications.MobileNet),
    ("mobilenet_v2", keras.applications.MobileNetV2),
    ("efficientnet_b0", keras.applications.EfficientNetB0),
]


@pytest.mark.parametrize(
    "ours, theirs", CANONICAL, ids=[c[0] for c in CANONICAL]
)
def test_canonical_networks_cost_what_keras_builds(ours, theirs):
    """At 224x224x3 and 1000 classes, the parameters (trainable and not)
    and multiply-accumulates equal those of keras.applications' builder
    with weights=None, counted by the same code."""
    mine = getattr(models, ours)()
    keras_net = theirs(weights=None)
    assert (cost(mine).parameters, cost(mine).macs) == (
        cost(keras_net).parameters,
        cost(keras_net).macs,
    )

    def trainable(net):
        return sum(int(np.prod(w.shape)) for w in net.trainable_weights)

    assert trainable(mine) == trainable(keras_net)
    assert mine.output_shape == keras_net.output_shape == (None, 1000)


def _block(channels_in, filters, **options):
    inputs = keras.Input((8, 8, channels_in))
    out = models.inverted_residual(inputs, filters, name="b", **options)
    return keras.Model(inputs, out)


@pytest.mark.parametrize(
    "channels_in, filters, strides, shortcut",
    [(16, 16, 1, True), (16, 24, 1, False), (16, 16, 2, False)],
)
def test_the_shortcut_only_where_shapes_match(
    channels_in, filters, strides, shortcut
):
    block = _block(channels_in, filters, strides=strides)
    adds = [layer for layer in block.layers if is_layer(layer, "Add")]
    assert bool(adds) is shortcut
    assert block.output_shape[-1] == filters


def test_expansion_counts_input_channels_and_the_projection_is_linear():
    block = _block(16, 24, expansion=6)
    expand = block.get_layer("b_expand")
    assert expand.filters == 6 * 16
    project_bn = block.get_layer("b_project_bn")
    # nothing after the projection's batch normalisation: no activation
    assert block.layers[-1] is project_bn
    # a linear output takes negative values; a ReLU6 output would not
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 16)).astype("float32")
    out = keras.ops.convert_to_numpy(block(x, training=False))
    assert out.min() < 0


def test_expansion_one_has_no_expansion_layer():
    block = _block(32, 16, expansion=1)
    assert not [layer for layer in block.layers if "expand" in layer.name]


def test_the_lab_network_maps_28_to_4():
    net = models.mobilenet_v2_small((28, 28, 1), 10, width=0.5)
    sizes = []
    for layer in net.layers:
        if is_layer(layer, "DepthwiseConv2D"):
            size = layer.output.shape[1]
            if not sizes or sizes[-1] != size:
                sizes.append(size)
    assert sizes == [28, 14, 7, 4]
    assert net.output_shape == (None, 10)
    assert net.layers[-1].name == "classifier"


def test_block_table_adds_up():
    net = models.mobilenet_v2_small((28, 28, 1), 10, width=0.25)
    table = models.block_table(net)
    assert table.total_params == net.count_params()
    assert sum(row.shortcut for row in table) == sum(
        is_layer(layer, "Add") for layer in net.layers
    )


@pytest.mark.parametrize("value", [4, 8, 12, 16.8, 24, 37, 100, 1280 * 0.35])
def test_make_divisible(value):
    rounded = models.make_divisible(value)
    assert rounded % 8 == 0 and rounded >= 8
    assert rounded >= 0.9 * value
    assert abs(rounded - value) <= 8


def test_separable_cost_of_the_courses_example():
    """6x6x3 input, 3x3 filters, 5 of them, 4x4x5 output: the counts
    follow from the definitions, and the ratio from 1/n_C + 1/f²."""
    c = arithmetic.separable_cost(4, 4, 3, 3, 5)
    assert c.normal == 4 * 4 * 5 * (3 * 3 * 3)
    assert c.depthwise == 4 * 4 * 3 * (3 * 3)
    assert c.pointwise == 4 * 4 * 5 * 3
    assert c.ratio == pytest.approx(arithmetic.separable_ratio(5, 3))


def test_separable_cost_matches_the_layers_keras_builds():
    rng = np.random.default_rng(8)
    for _ in range(3):
        n, c_in, c_out = (int(v) for v in rng.integers(3, 12, size=3))
        f = int(rng.choice([1, 3, 5]))
        inputs = keras.Input((n, n, c_in))
        normal = keras.Model(
            inputs, keras.layers.Conv2D(c_out, f, padding="same")(inputs)
        )
        d = keras.layers.DepthwiseConv2D(f, padding="same")(inputs)
        separable = keras.Model(inputs, keras.layers.Conv2D(c_out, 1)(d))
        counted = [r.multiplications for r in layer_table(separable)]
        c = arithmetic.separable_cost(n, n, c_in, f, c_out)
        assert layer_table(normal).total_multiplications == c.normal
        assert counted[-2:] == [c.depthwise, c.pointwise]
