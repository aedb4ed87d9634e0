"""Chapter 4 (VGG): counts against keras.applications, blocks, the narrow
variant, stacked 3x3 arithmetic, checks and the numbers of the page."""

import gc
import re

import keras
import numpy as np
import pytest
from conftest import (
    ROOT,
    assert_reference_answers_pass,
    solution_namespace,
)

from cnnbook import arithmetic, diagrams, models
from cnnbook.grading.chapters import exercises
from cnnbook.grading.checks import ch04
from cnnbook.grading.runner import run_exercise
from cnnbook.grading.structure import layer_signature

PAGE = ROOT / "book" / "ch04-vgg.md"
VGG16_PARAMS = 138_357_544  # the figure of the issue and of the page


def _signature(builder):
    """Layer signature and count of a big model, which is freed at once."""
    model = builder()
    result = layer_signature(model), model.count_params()
    del model
    keras.backend.clear_session()
    gc.collect()
    return result


@pytest.fixture(scope="module")
def vgg16_table():
    return diagrams.describe(models.vgg16)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (models.vgg16, lambda: keras.applications.VGG16(weights=None)),
        (models.vgg19, lambda: keras.applications.VGG19(weights=None)),
    ],
    ids=["vgg16", "vgg19"],
)
def test_equal_to_keras_applications(ours, theirs):
    mine, count = _signature(ours)
    reference, reference_count = _signature(theirs)
    assert mine == reference
    assert count == reference_count


def test_vgg16_count_is_the_issue_figure(vgg16_table):
    assert vgg16_table.total_params == VGG16_PARAMS
    convs = [r for r in vgg16_table if r.kind == "Conv2D"]
    dense = [r for r in vgg16_table if r.kind == "Dense"]
    assert len(convs) + len(dense) == 16


def test_vgg16_shapes_follow_the_rule(vgg16_table):
    """3x3 'same' convs keep the size, each pool halves it; by arithmetic."""
    size, depth = 224, 3
    for row in vgg16_table:
        if row.kind == "Conv2D":
            size = arithmetic.conv_output_size(
                size, 3, arithmetic.same_padding(3)
            )
            filters = row.output_shape[-1]
            assert row.params == arithmetic.conv_params(3, depth, filters)
            depth = filters
        elif row.kind == "MaxPooling2D":
            size = arithmetic.pool_output_size(size, 2, 2)
        if row.kind in ("Conv2D", "MaxPooling2D"):
            assert row.output_shape[1:3] == (size, size)
    pools = [
        r.output_shape[1:] for r in vgg16_table if r.kind == "MaxPooling2D"
    ]
    assert pools == [
        (112, 112, 64),
        (56, 56, 128),
        (28, 28, 256),
        (14, 14, 512),
        (7, 7, 512),
    ]


def test_vgg19_count():
    vgg19 = diagrams.describe(models.vgg19)
    extra = arithmetic.conv_params(3, 256, 256) + 2 * arithmetic.conv_params(
        3, 512, 512
    )
    assert vgg19.total_params == VGG16_PARAMS + extra == 143_667_240


@pytest.mark.parametrize(
    "num_convs, filters, shape",
    [(2, 64, (32, 32, 3)), (3, 256, (14, 14, 128)), (1, 8, (6, 6, 1))],
)
def test_vgg_block(num_convs, filters, shape):
    x = keras.Input(shape=shape)
    model = keras.Model(x, models.vgg_block(x, num_convs, filters))
    assert len(model.layers) == 1 + num_convs + 1  # input, convs, pool
    assert model.output_shape == (None, shape[0] // 2, shape[1] // 2, filters)
    expected = arithmetic.conv_params(3, shape[2], filters) + (
        num_convs - 1
    ) * arithmetic.conv_params(3, filters, filters)
    assert model.count_params() == expected


@pytest.mark.parametrize("size, width", [(32, 8), (64, 16)])
def test_fashion_variant(size, width):
    net = models.vgg_fashion(resize_to=size, width=width)
    assert net.input_shape == (None, 28, 28, 1)
    assert net.output_shape == (None, 10)
    pools = [
        layer.output.shape[1:]
        for layer in net.layers
        if type(layer).__name__ == "MaxPooling2D"
    ]
    assert [p[0] for p in pools] == [size // 2**k for k in range(1, 6)]
    assert pools[-1][-1] == 8 * width


def test_fashion_variant_needs_multiple_of_32():
    with pytest.raises(ValueError, match="32"):
        models.vgg_fashion(resize_to=48)


def test_stacked_3x3_arithmetic():
    for channels in (1, 64, 512):
        for k, f in ((2, 5), (3, 7)):
            assert ch04.reference_receptive_field(k) == f
            assert k * arithmetic.conv_params(
                3, channels, channels
            ) < arithmetic.conv_params(f, channels, channels)


# ------------------------------------------------------------ checks
def _vgg_block_layers(num_convs, filters):
    """Exercise 4.1's answer (a list of new layers), read off the
    package's block."""
    x = keras.Input((8, 8, 1))
    block = keras.Model(x, models.vgg_block(x, num_convs, filters))
    return [type(a).from_config(a.get_config()) for a in block.layers[1:]]


def test_the_solutions_answers_pass_visible_and_hidden():
    """The solution notebook's own code, as a learner would submit it."""
    ns = solution_namespace("ch04-vgg")
    assert_reference_answers_pass("ch04", ns, seed=3)


def test_wrong_answers_fail():
    by_key = {ex.key: ex for ex in exercises("ch04")}
    ns = solution_namespace("ch04-vgg")

    def block_valid_padding(n, f):
        return [
            keras.layers.Conv2D(f, 3, activation="relu") for _ in range(n)
        ] + [keras.layers.MaxPooling2D(2)]

    def block_no_relu(n, f):
        return [
            keras.layers.Conv2D(f, 3, padding="same") for _ in range(n)
        ] + [keras.layers.MaxPooling2D(2)]

    for wrong in (block_valid_padding, block_no_relu):
        result = run_exercise(by_key["4.1"], dict(ns, vgg_block=wrong))
        assert not result.passed

    def vgg16_one_dense(input_shape=(224, 224, 3), num_classes=1000):
        model = keras.Sequential([keras.Input(shape=input_shape)])
        for num_convs, filters in models.VGG16_BLOCKS:
            for layer in _vgg_block_layers(num_convs, filters):
                model.add(layer)
        model.add(keras.layers.Flatten())
        model.add(keras.layers.Dense(4096, activation="relu"))
        model.add(keras.layers.Dense(num_classes, activation="softmax"))
        return model

    result = run_exercise(by_key["4.2"], dict(ns, build_vgg16=vgg16_one_dense))
    assert not result.passed
    # the first dense layer missing: layer 21 is already the output layer
    assert "layer 21 (" in result.message
    assert (
        "output shape (None, 1000), the specification has (None, 4096)"
        in result.message
    ), result.message

    ignores_args = dict(ns, build_vgg16=lambda *a, **k: models.vgg16())
    result = run_exercise(by_key["4.2"], ignores_args, hidden=True)
    assert result.visible_passed and not result.passed

    no_bias = dict(ns, stacked_params=lambda k, c: k * 9 * c * c)
    assert not run_exercise(by_key["4.3"], no_bias).passed
    wrong_field = dict(ns, receptive_field=lambda k, f=3: k * f)
    assert not run_exercise(by_key["4.3"], wrong_field).passed


# ------------------------------------------------------------ the page
def test_page_numbers_are_computed(vgg16_table):
    text = PAGE.read_text()
    assert text.startswith("(ch04-vgg)=")
    fc1 = next(r.params for r in vgg16_table if r.name == "fc1")
    numbers = [
        VGG16_PARAMS,
        143_667_240,
        fc1,
        vgg16_table.total_multiplications,
        2 * arithmetic.conv_params(3, 64, 64),
        arithmetic.conv_params(5, 64, 64),
        3 * arithmetic.conv_params(3, 64, 64),
        arithmetic.conv_params(7, 64, 64),
        7 * 7 * 512,
        143_667_240 - VGG16_PARAMS,
    ]
    for number in numbers:
        assert f"{number:,}" in text, number
    assert re.search(r"7\s*×\s*7\s*×\s*512", text)


def test_parameter_shares_one_precision_every_bar_labelled(vgg16_table):
    """The VGG-16 parameters figure labels every bar, the small ones of
    blocks 1 to 3 included, at one precision (second review, finding 7),
    and the page's share of fc1, body, summary and Korean summary alike,
    is the figure's."""
    fig = diagrams.parameter_distribution(vgg16_table)
    rows = [row for row in vgg16_table if row.params > 0]
    labels = [text.get_text() for text in fig.axes[0].texts]
    total = vgg16_table.total_params
    assert labels == [diagrams.share_label(r.params / total) for r in rows]
    assert all(re.fullmatch(r"(<0\.1|\d+\.\d)%", label) for label in labels)
    assert [r.name for r in rows][:2] == ["block1_conv1", "block1_conv2"]
    fc1 = next(r.params for r in rows if r.name == "fc1")
    share = diagrams.share_label(fc1 / total)
    text = " ".join(PAGE.read_text().split())
    for told in (
        f"102,764,544 parameters or {share} of the network",
        f"the {share} of {{term}}`weights <weight>` in one dense layer",
        f"{share} of VGG-16's parameters are in its first dense layer",
        f"VGG-16 매개변수의 {share}가 첫 완전 연결층",
    ):
        assert told in text, told


def test_vgg16_architecture_two_rows_draw_every_volume_once(vgg16_table):
    """The page's VGG-16 diagram (scripts/redraw_figures.py) spreads its
    23 volumes over two rows on one scale, every label inside the figure,
    so that it stays legible at the width of a page; the stored PNG is
    that narrow, and its last layer is the builder's `classifier`."""
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    drawn = [row[0] for row in diagrams.volume_rows(vgg16_table)]
    fig = diagrams.architecture_diagram(vgg16_table, rows=2)
    try:
        assert len(fig.axes) == 2
        # each volume writes its shape, then its name (and detail)
        per_axis = [
            [text.get_text().split("\n")[0] for text in ax.texts[1::2]]
            for ax in fig.axes
        ]
        assert [len(names) for names in per_axis] == [12, 11]
        assert per_axis[0] + per_axis[1] == drawn
        assert drawn[-1] == "classifier"
        assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        width, height = fig.canvas.get_width_height()
        for ax in fig.axes:
            for text in [*ax.texts, ax.title]:
                box = text.get_window_extent(renderer)
                assert 0 <= box.x0 and box.x1 <= width, text.get_text()
                assert 0 <= box.y0 and box.y1 <= height, text.get_text()
    finally:
        plt.close(fig)
    stored = mpimg.imread(
        ROOT / "book" / "figures" / "ch04-vgg16-architecture.png"
    )
    assert stored.shape[1] < 1100 and stored.shape[0] > stored.shape[1] / 2


def test_augmented_alters_training_batches_only():
    """``augmented(net)`` shares weights and is the identity at test time."""
    from cnnbook.train import augmented

    net = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="out"),
        ]
    )
    model = augmented(net)
    assert model.get_layer(net.name) is net
    assert model.count_params() == net.count_params()
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    same = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(
        same, keras.ops.convert_to_numpy(net(x)), rtol=1e-5, atol=1e-6
    )
    shift = model.get_layer("random_shift")
    seen = keras.ops.convert_to_numpy(shift(x, training=True))
    assert seen.shape == x.shape and not np.allclose(seen, x)
