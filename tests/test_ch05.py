"""Chapter 5 (ResNet): model builders, the numbers of the page, the checks."""

import keras
import numpy as np
import pytest
from conftest import ROOT, page_text, stored_output
from keras import layers

from cnnbook import arithmetic
from cnnbook.grading.chapters import exercises
from cnnbook.grading.checks.ch05.curves import degradation_gaps_reference
from cnnbook.grading.checks.ch05.identity import residual_forward_reference
from cnnbook.grading.runner import run_exercise
from cnnbook.grading.structure import expect_same_layers
from cnnbook.models import resnet


# --------------------------------------------------------------- builders
@pytest.fixture(scope="module")
def keras_resnet50():
    return keras.applications.ResNet50(weights=None)


def test_resnet50_matches_keras_layer_by_layer(keras_resnet50):
    model = resnet.resnet50()
    assert model.count_params() == keras_resnet50.count_params() == 25_636_712
    expect_same_layers(model, keras_resnet50, "cnnbook's resnet50")


def test_stage_table_of_resnet50(keras_resnet50):
    ours, theirs = (
        resnet.stage_table(resnet.resnet50()),
        resnet.stage_table(keras_resnet50),
    )
    assert ours == theirs
    assert ours.total_params == 25_636_712
    assert [r.stage for r in ours] == [
        "conv1",
        "conv2",
        "conv3",
        "conv4",
        "conv5",
        "head",
    ]
    assert [r.blocks for r in ours[1:5]] == list(resnet.RESNET_STAGES[50])
    # 1 stem convolution + 3 per block + 1 projection per stage + 1 dense
    assert sum(r.layers for r in ours) - 4 == 50
    assert [r.output_shape for r in ours] == [
        (None, 56, 56, 64),
        (None, 56, 56, 256),
        (None, 28, 28, 512),
        (None, 14, 14, 1024),
        (None, 7, 7, 2048),
        (None, 1000),
    ]


def test_stage_table_prints_one_row_per_stage():
    lines = str(resnet.stage_table(resnet.cifar_style_net(20))).splitlines()
    head = ["stage", "blocks", "layers", "output", "params"]
    assert lines[0].split() == head
    assert lines[2].split() == ["conv1", "0", "1", "28\u00d728\u00d716", "208"]
    assert lines[-1].split() == ["total", "273,754"]
    assert len({len(line) for line in lines}) == 1  # numbers aligned right
    assert len(lines) == 2 + 5 + 1  # conv1, conv2-conv4, head; total


def test_resnet50_conv_biases_are_redundant_parameters():
    """The page: Keras keeps a bias in every convolution of ResNet-50."""
    model = resnet.resnet50()
    biases = sum(
        layer.filters
        for layer in model.layers
        if isinstance(layer, layers.Conv2D)
    )
    assert biases == 26_560


def _resnet18_imagenet_trainable():
    """Trainable weights of ResNet-18 (ImageNet) from the layer formulas."""

    def bn(channels):
        return 2 * channels  # gamma and beta

    total = arithmetic.conv_params(7, 3, 64, bias=False) + bn(64)
    c_in = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for block in range(2):
            total += arithmetic.conv_params(3, c_in, width, bias=False) + bn(
                width
            )
            total += arithmetic.conv_params(3, width, width, bias=False) + bn(
                width
            )
            if block == 0 and stage > 0:
                total += arithmetic.conv_params(
                    1, c_in, width, bias=False
                ) + bn(width)
            c_in = width
    return total + arithmetic.dense_params(512, 1000)


def test_resnet18_counts():
    model = resnet.resnet18((224, 224, 3), 1000, stem="imagenet")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == _resnet18_imagenet_trainable() == 11_689_512
    bn_channels = sum(
        layer.gamma.shape[0]
        for layer in model.layers
        if isinstance(layer, layers.BatchNormalization)
    )
    assert model.count_params() == trainable + 2 * bn_channels == 11_699_112
    small = resnet.resnet18((28, 28, 1), 10)
    assert small.count_params() == 11_182_410
    table = resnet.stage_table(small)
    assert table.total_params == small.count_params()
    assert [r.output_shape[1] for r in table[:5]] == [28, 28, 14, 7, 4]


@pytest.mark.parametrize("depth", [8, 20, 32, 56])
def test_cifar_style_depth(depth):
    def weighted(model):
        return sum(
            isinstance(layer, (layers.Conv2D, layers.Dense))
            for layer in model.layers
        )

    plain = resnet.cifar_style_net(depth, residual=False)
    residual = resnet.cifar_style_net(depth, residual=True)
    assert weighted(plain) == depth
    assert weighted(residual) == depth + 2  # the two projection shortcuts
    assert not any(isinstance(layer, layers.Add) for layer in plain.layers)
    assert (
        sum(isinstance(layer, layers.Add) for layer in residual.layers)
        == 3 * (depth - 2) // 6
    )


def test_cifar_style_rejects_bad_depth():
    with pytest.raises(ValueError, match="6n"):
        resnet.cifar_style_net(21)


def test_identity_block_needs_matching_channels():
    with pytest.raises(ValueError, match="convolutional_block"):
        resnet.identity_block(keras.Input((8, 8, 8)), (4, 4, 16))


@pytest.mark.parametrize("builder", ["identity", "basic"])
def test_zero_weights_give_identity(builder):
    inputs = keras.Input((5, 5, 12))
    if builder == "identity":
        out = resnet.identity_block(inputs, (4, 4, 12))
    else:
        out = resnet.basic_block(inputs, 12)
    block = keras.Model(inputs, out)
    block.set_weights([np.zeros_like(w) for w in block.get_weights()])
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 5, 5, 12)).astype("float32")
    out = np.asarray(block(np.abs(a), training=False))
    np.testing.assert_array_equal(out, np.abs(a))
    out = np.asarray(block(a, training=False))
    np.testing.assert_array_equal(out, np.maximum(a, 0))


# ----------------------------------------------------------------- checks
def _grade(key, ns):
    ex = {e.key: e for e in exercises("ch05")}[key]
    return run_exercise(ex, ns, hidden=True, seed=3)


def test_chapter_has_enough_graded_exercises():
    exs = exercises("ch05")
    assert len(exs) >= 4
    assert all(e.hidden is not None for e in exs)


def _blank(*args, **kwargs):
    raise NotImplementedError


def _degradation_gaps(curves):
    kinds = {k for k, _ in curves}
    out = {}
    for kind in kinds:
        depths = sorted(d for k, d in curves if k == kind)
        out[kind] = curves[kind, depths[-1]][-1] - curves[kind, depths[0]][-1]
    return out


REFERENCE_ANSWERS = {
    "5.1": {"identity_block": resnet.identity_block},
    "5.2": {"convolutional_block": resnet.convolutional_block},
    "5.3": {"resnet50": resnet.resnet50},
    "5.4": {"residual_forward": residual_forward_reference},
    "5.5": {"degradation_gaps": _degradation_gaps},
}


@pytest.mark.parametrize("key", sorted(REFERENCE_ANSWERS))
def test_reference_answers_get_full_marks(key):
    result = _grade(key, REFERENCE_ANSWERS[key])
    assert result.passed, result.message


@pytest.mark.parametrize("key", sorted(REFERENCE_ANSWERS))
def test_blank_answers_get_nothing(key):
    ns = {name: _blank for name in REFERENCE_ANSWERS[key]}
    result = _grade(key, ns)
    assert result.points == 0
    assert "not answered" in result.message


def _bn(x):
    return layers.BatchNormalization(epsilon=resnet.BN_EPSILON)(x)


def _conv_block_main_first(x, filters, kernel_size=3, strides=2, name="b"):
    """Correct, but builds the main path before the shortcut."""
    f1, f2, f3 = filters
    y = layers.Activation("relu")(
        _bn(layers.Conv2D(f1, 1, strides=strides)(x))
    )
    y = layers.Activation("relu")(
        _bn(layers.Conv2D(f2, kernel_size, padding="same")(y))
    )
    y = _bn(layers.Conv2D(f3, 1)(y))
    s = _bn(layers.Conv2D(f3, 1, strides=strides)(x))
    return layers.Activation("relu")(layers.Add()([y, s]))


def test_branch_order_does_not_matter():
    result = _grade("5.2", {"convolutional_block": _conv_block_main_first})
    assert result.passed, result.message


def _identity_relu_before_add(x, filters, kernel_size=3, name="b"):
    f1, f2, f3 = filters
    y = layers.Activation("relu")(_bn(layers.Conv2D(f1, 1)(x)))
    y = layers.Activation("relu")(
        _bn(layers.Conv2D(f2, kernel_size, padding="same")(y))
    )
    y = layers.Activation("relu")(_bn(layers.Conv2D(f3, 1)(y)))
    return layers.Add()([x, y])


def _identity_without_shortcut(x, filters, kernel_size=3, name="b"):
    f1, f2, f3 = filters
    y = layers.Activation("relu")(_bn(layers.Conv2D(f1, 1)(x)))
    y = layers.Activation("relu")(
        _bn(layers.Conv2D(f2, kernel_size, padding="same")(y))
    )
    return layers.Activation("relu")(_bn(layers.Conv2D(f3, 1)(y)))


def _identity_adds_wrong_tensor(x, filters, kernel_size=3, name="b"):
    """Same layers, but the shortcut skips only the last convolution."""
    f1, f2, f3 = filters
    y = layers.Activation("relu")(_bn(layers.Conv2D(f1, 1)(x)))
    y = layers.Activation("relu")(
        _bn(layers.Conv2D(f2, kernel_size, padding="same")(y))
    )
    z = _bn(layers.Conv2D(f3, 1)(y))
    pad = layers.Add()(
        [z, layers.Conv2D(f3, 1, use_bias=False, trainable=False)(y)]
    )
    return layers.Activation("relu")(pad)


@pytest.mark.parametrize(
    "wrong, pattern",
    [
        (_identity_relu_before_add, r"layer 9 \("),
        (_identity_without_shortcut, r"the specification has Add"),
        # its extra bias-free 1x1 convolution (6 to 16 channels) meets the
        # specification's last 1x1 convolution, which has a bias
        (
            _identity_adds_wrong_tensor,
            r"layer 7 \('\w+'\) has parameter count 96, "
            r"the specification has 112",
        ),
    ],
)
def test_wrong_identity_blocks_fail(wrong, pattern):
    import re

    result = _grade("5.1", {"identity_block": wrong})
    assert result.points == 0
    assert re.search(pattern, result.message), result.message


def test_wrong_numbers_in_identity_block_fail():
    """Right layers, wrong wiring: caught by comparing how the layers are
    connected (before the outputs are compared)."""

    def valid_after_same(x, filters, kernel_size=3, name="b"):
        f1, f2, f3 = filters
        y = layers.Activation("relu")(_bn(layers.Conv2D(f1, 1)(x)))
        y = layers.Activation("relu")(
            _bn(layers.Conv2D(f2, kernel_size, padding="same")(y))
        )
        y = _bn(layers.Conv2D(f3, 1)(y))
        # adds the input *after* the ReLU of a sum with itself
        return layers.Activation("relu")(layers.Add()([y, y]))

    result = _grade("5.1", {"identity_block": valid_after_same})
    assert result.points == 0
    assert "not connected as the specification" in result.message


def test_resnet50_with_same_padding_stem_names_the_layer():
    def resnet50(input_shape=(224, 224, 3), num_classes=1000):
        inputs = keras.Input(input_shape)
        x = layers.Conv2D(64, 7, strides=2, padding="same")(inputs)
        x = layers.Activation("relu")(_bn(x))
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        for stage, (f, blocks) in enumerate(
            [(64, 3), (128, 4), (256, 6), (512, 3)], start=2
        ):
            x = resnet.convolutional_block(
                x,
                (f, f, 4 * f),
                strides=1 if stage == 2 else 2,
                name=f"s{stage}b1",
            )
            for b in range(2, blocks + 1):
                x = resnet.identity_block(
                    x, (f, f, 4 * f), name=f"s{stage}b{b}"
                )
        x = layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, layers.Dense(num_classes, "softmax")(x))

    result = _grade("5.3", {"resnet50": resnet50})
    assert result.points == 0
    assert "layer 1 (" in result.message and "ZeroPadding2D" in result.message


@pytest.mark.parametrize(
    "wrong",
    [
        lambda a, W1, b1, W2, b2: (
            np.maximum(np.maximum(a @ W1 + b1, 0) @ W2 + b2, 0) + a
        ),
        lambda a, W1, b1, W2, b2: np.maximum((a @ W1 + b1) @ W2 + b2 + a, 0),
        lambda a, W1, b1, W2, b2: np.maximum(
            np.maximum(a @ W1 + b1, 0) @ W2 + b2, 0
        ),
    ],
)
def test_wrong_residual_forward_fails(wrong):
    assert _grade("5.4", {"residual_forward": wrong}).points == 0


@pytest.mark.parametrize(
    "wrong",
    [
        lambda c: {k: -v for k, v in _degradation_gaps(c).items()},
        lambda c: {k: 100 * v for k, v in _degradation_gaps(c).items()},
        lambda c: {
            kind: c[keys[-1]][-1] - c[keys[0]][-1]
            for kind in ("plain", "residual")
            for keys in [[k for k in c if k[0] == kind]]
        },  # insertion order
        lambda c: {
            kind: min(c[kind, d][-1] for k, d in c if k == kind)
            for kind in ("plain", "residual")
        },
    ],
)
def test_wrong_degradation_gaps_fail(wrong):
    result = _grade("5.5", {"degradation_gaps": wrong})
    assert result.points == 0, result.message


def test_degradation_reference_on_a_known_case():
    curves = {
        ("plain", 8): [0.3, 0.1],
        ("plain", 32): [0.4, 0.15],
        ("residual", 8): [0.3, 0.1],
        ("residual", 32): [0.3, 0.08],
    }
    gaps = degradation_gaps_reference(curves)
    assert gaps["plain"] == pytest.approx(0.05)
    assert gaps["residual"] == pytest.approx(-0.02)


# ------------------------------------------------ numbers stated on the page
def test_depths_of_the_resnet_family():
    depth = {
        n: (2 if n < 50 else 3) * sum(stages) + 2
        for n, stages in resnet.RESNET_STAGES.items()
    }
    assert depth == {18: 18, 34: 34, 50: 50, 101: 101, 152: 152}


def test_bottleneck_saves_weights():
    bottleneck = (
        arithmetic.conv_params(1, 256, 64, bias=False)
        + arithmetic.conv_params(3, 64, 64, bias=False)
        + arithmetic.conv_params(1, 64, 256, bias=False)
    )
    basic = 2 * arithmetic.conv_params(3, 256, 256, bias=False)
    assert (bottleneck, basic) == (69_632, 1_179_648)
    assert basic // bottleneck == 16 and round(basic / bottleneck) == 17


def _conv_weights(block, channels):
    """Kernel weights of the convolutions of ``block`` on a 56x56 input
    with ``channels`` channels (biases and batch norm left out)."""
    inputs = keras.Input((56, 56, channels))
    model = keras.Model(inputs, block(inputs))
    return sum(
        int(np.prod(layer.kernel.shape))
        for layer in model.layers
        if isinstance(layer, layers.Conv2D)
    )


def test_bottleneck_against_resnet34s_basic_block_as_the_page_tells_it():
    """ch05: the bottleneck's 69,632 weights against "two 3×3 convolutions
    on 256 channels" (1,179,648) and against ResNet-34's first-stage basic
    block, "two 3×3 convolutions on 64 channels have 73,728 weights, about
    as many as the bottleneck" (the paper's figure 5)."""
    bottleneck = _conv_weights(
        lambda x: resnet.identity_block(x, (64, 64, 256)), 256
    )
    basic_64 = _conv_weights(lambda x: resnet.basic_block(x, 64), 64)
    basic_256 = _conv_weights(lambda x: resnet.basic_block(x, 256), 256)
    assert basic_64 == 2 * arithmetic.conv_params(3, 64, 64, bias=False)
    assert basic_256 == 2 * arithmetic.conv_params(3, 256, 256, bias=False)
    assert 0.9 < basic_64 / bottleneck < 1.1
    page = _page()
    for number in (bottleneck, basic_256, basic_64):
        assert f"{number:,}" in page, number
    told = f"two 3×3 convolutions on 64 channels have {basic_64:,} weights"
    assert told in page


def test_last_stage_holds_over_half_of_resnet50():
    table = resnet.stage_table(resnet.resnet50())
    conv5 = next(r for r in table if r.stage == "conv5")
    assert conv5.params / table.total_params > 0.5
    assert sum(r.layers for r in table) == 54


def test_quarter_width_resnet18_of_the_stored_run():
    """The page's counts of the stored run's network and of the full
    width one, all weights and the trainable ones, as Keras counts them."""
    counts = {}
    for width in (16, 64):
        model = resnet.resnet18((28, 28, 1), 10, width=width)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        counts[width] = (model.count_params(), trainable)
    assert counts[16][0] == 703_578
    text = " ".join(_page().split())
    assert (
        f"{counts[16][1]:,} trainable weights instead of {counts[64][1]:,}, "
        f"or {counts[16][0]:,} instead of {counts[64][0]:,} as "
        "`count_params()` counts them"
    ) in text


# ------------------------------------- the page quotes the stored runs
def _page():
    return page_text("ch05-resnet.md")


def test_exercise_curves_are_the_stored_run():
    """Exercise 5.5 shows the training-error curves of the stored depth
    run: the solution's ``stored_run`` equals the curves the lab printed."""
    import ast

    import nbformat

    text = stored_output("ch05-resnet-depth.ipynb")
    printed = {}
    for line in text.splitlines():
        if line.startswith("('"):
            key, values = line.split(": ", 1)
            printed[ast.literal_eval(key)] = ast.literal_eval(values)
    assert len(printed) == 4
    solution = nbformat.read(
        ROOT / "solutions" / "ch05-resnet.ipynb", as_version=4
    )
    cell = next(c for c in solution.cells if "stored_run = {" in c.source)
    assignment = ast.parse(cell.source).body[0]
    assert ast.literal_eval(assignment.value) == printed


def test_parent_layers_reads_the_graph_from_the_public_config():
    from cnnbook.grading.structure import parent_layers

    x = keras.Input((8, 8, 4), name="image")
    block = keras.Model(x, resnet.basic_block(x, 8, strides=2, name="b"))
    parents = parent_layers(block)
    assert parents["b_1_conv"] == ["image"]
    assert parents["b_0_conv"] == ["image"]  # the projection shortcut
    assert sorted(parents["b_add"]) == ["b_0_bn", "b_2_bn"]
    assert parents["b_out"] == ["b_add"]
    chain = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="d1")]
        + [keras.layers.Dense(2, name="d2")]
    )
    assert parent_layers(chain)["d2"] == ["d1"]


def _depth_steps(settings):
    """Optimiser steps of a depth-experiment run under ``settings``."""
    import math

    per_epoch = math.ceil(settings["train_size"] / settings["batch_size"])
    return settings["epochs"] * per_epoch


def test_gpu_profile_budget_as_the_page_tells_it():
    """ch05: "The `gpu` profile trains the same four networks on all
    60,000 images, but only for 6 epochs of 256 images a step: 1,410
    steps, a little over twice the `full` run's 632 and about 2% of the
    paper's 64,000", computed from the lab's registered settings."""
    from cnnbook.labs import lab

    depth = lab("ch05-resnet-depth")
    gpu, full = depth.settings("gpu"), depth.settings("full")
    told = (
        f"on all {gpu['train_size']:,} images, but only for "
        f"{gpu['epochs']} epochs of {gpu['batch_size']} images a step: "
        f"{_depth_steps(gpu):,} steps, a little over twice the `full` "
        f"run's {_depth_steps(full):,} and about "
        f"{round(100 * _depth_steps(gpu) / 64_000)}% of the paper's 64,000"
    )
    assert told in _page(), told
    assert 2 < _depth_steps(gpu) / _depth_steps(full) < 2.5, "a little over"
    assert gpu["depths"] == full["depths"], "the same four networks"
    from cnnbook import records

    stored = records.find("ch05-resnet-depth", "residual56", profile="full")
    assert _depth_steps(stored["settings"]) == _depth_steps(full), "632"
