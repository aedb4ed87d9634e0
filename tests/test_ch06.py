"""Chapter 6 (Inception, GoogLeNet): the page's numbers, the builders, the
checks, and the measured cost ratio quoted from the stored lab run."""

import re

import keras
import numpy as np
import pytest
from conftest import (
    ROOT,
    assert_reference_answers_pass,
    solution_namespace,
    stored_output,
)

from cnnbook import arithmetic
from cnnbook.grading.chapters import exercises
from cnnbook.grading.runner import run_exercise
from cnnbook.models import (
    alexnet,
    auxiliary_head,
    googlenet,
    googlenet_small,
    inception_module,
    naive_inception_module,
)
from cnnbook.models.inception import GOOGLENET_MODULES

PAGE = ROOT / "book" / "ch06-inception.md"
COST_LAB = ROOT / "notebooks" / "ch06-inception-cost.ipynb"


# ------------------------------------------------------- cost arithmetic
def test_1x1_convolution_shrinks_channels():
    x = keras.Input((28, 28, 192))
    y = keras.layers.Conv2D(32, 1)(x)
    assert tuple(y.shape) == (None, 28, 28, 32)
    assert arithmetic.conv_output_size(28, 1) == 28


def test_naive_5x5_branch_costs():
    assert arithmetic.conv_multiplications(28, 28, 32, 5, 192) == 120_422_400


def test_bottleneck_5x5_branch_costs():
    squeeze = arithmetic.conv_multiplications(28, 28, 16, 1, 192)
    expand = arithmetic.conv_multiplications(28, 28, 32, 5, 16)
    assert (squeeze, expand) == (2_408_448, 10_035_200)
    assert squeeze + expand == 12_443_648
    ratio = (squeeze + expand) / 120_422_400
    assert 0.1 < ratio < 0.11 and round(1 / ratio) == 10


def test_layer_table_counts_the_same_branch():
    x = keras.Input((28, 28, 192))
    y = keras.layers.Conv2D(16, 1, use_bias=False)(x)
    y = keras.layers.Conv2D(32, 5, padding="same", use_bias=False)(y)
    table = arithmetic.layer_table(keras.Model(x, y))
    assert table.total_multiplications == 12_443_648


def test_first_inception_example_has_256_channels():
    x = keras.Input((28, 28, 192))
    branches = [
        keras.layers.Conv2D(64, 1, padding="same")(x),
        keras.layers.Conv2D(128, 3, padding="same")(x),
        keras.layers.Conv2D(32, 5, padding="same")(x),
        keras.layers.Conv2D(32, 1)(
            keras.layers.MaxPooling2D(3, strides=1, padding="same")(x)
        ),
    ]
    y = keras.layers.Concatenate()(branches)
    assert tuple(y.shape) == (None, 28, 28, 256)


# --------------------------------------------------------------- modules
def test_reduced_module_3a_shape_and_parameters():
    x = keras.Input((28, 28, 192))
    model = keras.Model(x, inception_module(x, 64, 96, 128, 16, 32, 32))
    assert tuple(model.output.shape) == (None, 28, 28, 256)
    expected = (
        arithmetic.conv_params(1, 192, 64)
        + arithmetic.conv_params(1, 192, 96)
        + arithmetic.conv_params(3, 96, 128)
        + arithmetic.conv_params(1, 192, 16)
        + arithmetic.conv_params(5, 16, 32)
        + arithmetic.conv_params(1, 192, 32)
    )
    assert model.count_params() == expected == 163_696


def test_naive_module_passes_pool_channels_through():
    x = keras.Input((28, 28, 192))
    y = naive_inception_module(x, 64, 128, 32)
    assert tuple(y.shape) == (None, 28, 28, 64 + 128 + 32 + 192)


# -------------------------------------------------------------- googlenet
@pytest.fixture(scope="module")
def canonical():
    return googlenet(aux_classifiers=False)


def test_googlenet_module_channels_follow_the_paper(canonical):
    expected_sizes = {"3": 28, "4": 14, "5": 7}
    for key, (f1, _, f3, _, f5, proj) in GOOGLENET_MODULES.items():
        shape = canonical.get_layer(f"inception_{key}_concat").output.shape
        size = expected_sizes[key[0]]
        assert tuple(shape) == (None, size, size, f1 + f3 + f5 + proj), key
    assert canonical.get_layer("inception_5b_concat").output.shape[-1] == 1024
    assert len(GOOGLENET_MODULES) == 9


def test_googlenet_single_output_and_parameter_count(canonical):
    assert len(canonical.outputs) == 1
    assert tuple(canonical.output.shape) == (None, 1000)
    assert (
        canonical.count_params()
        == arithmetic.layer_table(canonical).total_params
        == 6_998_552
    )


def test_googlenet_has_far_fewer_parameters_than_alexnet(canonical):
    alex = alexnet().count_params()
    assert alex == 62_378_344
    by_formula = (
        arithmetic.conv_params(11, 3, 96)
        + arithmetic.conv_params(5, 96, 256)
        + arithmetic.conv_params(3, 256, 384)
        + arithmetic.conv_params(3, 384, 384)
        + arithmetic.conv_params(3, 384, 256)
        + arithmetic.dense_params(6 * 6 * 256, 4096)
        + arithmetic.dense_params(4096, 4096)
        + arithmetic.dense_params(4096, 1000)
    )
    assert by_formula == alex
    ratio = alex / canonical.count_params()
    # The paper's "12 times fewer" compares rounded figures (60 M against
    # about 5 M); counting every weight and bias gives 8.9 times.
    assert round(ratio, 1) == 8.9


def test_googlenet_auxiliary_heads_are_extra_outputs():
    model = googlenet(num_classes=10, input_shape=(224, 224, 3))
    assert [tuple(o.shape) for o in model.outputs] == [(None, 10)] * 3
    assert model.output_names == ["classifier", "aux1", "aux2"]
    features = keras.Input((14, 14, 512))
    head = keras.Model(features, auxiliary_head(features, 10))
    single = googlenet(num_classes=10, aux_classifiers=False)
    extra = model.count_params() - single.count_params()
    assert head.get_layer("aux_pool").output.shape[1:3] == (4, 4)
    # aux1 reads 4a (512 channels), aux2 reads 4d (528 channels)
    assert extra == 2 * head.count_params() + (528 - 512) * 128


@pytest.mark.parametrize("aux", [True, False])
def test_small_googlenet_runs_on_fashion_mnist_shapes(aux):
    model = googlenet_small(aux_classifiers=aux, width=0.125)
    outputs = model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0)
    outputs = outputs if aux else [outputs]
    assert len(outputs) == (3 if aux else 1)
    for out in outputs:
        assert out.shape == (2, 10)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_small_googlenet_stem_as_the_page_tells_it():
    """ch06: googlenet_small "uses a stem of 3×3, 1×1 and 3×3 convolutions
    at stride 1 that ends in a 3×3 max pool of stride 2, so the modules
    see 14×14, 7×7 and 4×4 maps"."""
    model = googlenet_small(aux_classifiers=False, width=0.125)
    stem = [layer for layer in model.layers if layer.name.startswith("stem")]
    convolutions = [
        layer for layer in stem if isinstance(layer, keras.layers.Conv2D)
    ]
    assert [layer.kernel_size for layer in convolutions] == [
        (3, 3),
        (1, 1),
        (3, 3),
    ]
    assert all(layer.strides == (1, 1) for layer in convolutions)
    weighted = [layer for layer in stem if layer.count_params()]
    last = stem[-1]
    assert isinstance(last, keras.layers.MaxPooling2D), last.name
    assert (last.pool_size, last.strides) == ((3, 3), (2, 2))
    assert model.layers.index(last) > model.layers.index(weighted[-1])
    sides = sorted(
        {
            layer.output.shape[1]
            for layer in model.layers
            if re.fullmatch(r"inception_\w\w_1x1", layer.name)
        },
        reverse=True,
    )
    assert sides == [14, 7, 4], sides
    told = (
        "uses a stem of 3×3, 1×1 and 3×3 convolutions at stride 1 that "
        "ends in a 3×3 max pool of stride 2, so the modules see 14×14, "
        "7×7 and 4×4 maps"
    )
    assert told in " ".join(PAGE.read_text().split())


# ---------------------------------------------------------------- checks
def test_the_solutions_answers_pass_visible_and_hidden_checks():
    """The solution notebook's own code, as a learner would submit it."""
    ns = solution_namespace("ch06-inception")
    assert_reference_answers_pass("ch06", ns, seed=3, at_least=4)


def test_wrong_answers_fail():
    ns = solution_namespace("ch06-inception")
    by_key = {e.key: e for e in exercises("ch06")}

    def without_bottleneck(n_h, n_w, n_c_prev, f, n_c, bottleneck=None):
        return arithmetic.conv_multiplications(n_h, n_w, n_c, f, n_c_prev)

    def naive_repair(input_shape=(28, 28, 192)):
        x = keras.Input(input_shape)
        return keras.Model(x, naive_inception_module(x, 64, 128, 32))

    def swapped_module(x, f1, f3_reduce, f3, f5_reduce, f5, pool_proj):
        return inception_module(x, f1, f5_reduce, f3, f3_reduce, f5, pool_proj)

    def aux_replacing_main(model, layer_name, num_classes):
        aux = auxiliary_head(model.get_layer(layer_name).output, num_classes)
        return keras.Model(model.input, aux)

    for key, name, wrong in (
        ("6.1", "branch_multiplications", without_bottleneck),
        ("6.2", "inception_module", swapped_module),
        ("6.3", "build_reduced_model", naive_repair),
        ("6.4", "add_auxiliary_output", aux_replacing_main),
    ):
        result = run_exercise(by_key[key], {**ns, name: wrong}, hidden=True)
        assert not result.passed and result.message, key


# ------------------------------------------------- measured ratio quoted
def _stored_ratio():
    text = stored_output(COST_LAB.name)
    assert "profile: smoke" not in text
    match = re.search(
        r"predicted ratio (\d\.\d+), measured ratio (\d\.\d+)", text
    )
    assert match, "the cost lab must store the measured ratio"
    return match.groups()


def test_measured_time_falls_less_than_the_multiplications():
    """What the page says of the stored timing run: at every batch size
    the measured ratio lies above the predicted one."""
    predicted, _ = _stored_ratio()
    text = stored_output(COST_LAB.name)
    measured = re.findall(r"measured ratio (\d\.\d+)\n", text)
    assert len(measured) >= 3
    assert all(float(m) > float(predicted) for m in measured)


# ------------------------------------------------- numbers on the page
def test_module_tables_quoted_on_the_page():
    x = keras.Input((28, 28, 192))
    naive = arithmetic.layer_table(
        keras.Model(x, naive_inception_module(x, 64, 128, 32))
    )
    reduced = arithmetic.layer_table(
        keras.Model(x, inception_module(x, 64, 96, 128, 16, 32, 32))
    )
    assert (naive.total_params, naive.total_multiplications) == (
        387_296,
        303_464_448,
    )
    assert (reduced.total_params, reduced.total_multiplications) == (
        163_696,
        128_049_152,
    )
    assert arithmetic.conv_params(1, 192, 32) == 6_176
    page = PAGE.read_text()
    for number in (
        "387,296",
        "303,464,448",
        "163,696",
        "128,049,152",
        "6{,}176",
        "120{,}422{,}400",
        "2{,}408{,}448",
        "10{,}035{,}200",
        "12{,}443{,}648",
    ):
        assert number in page, number


def test_googlenet_counts_quoted_on_the_page(canonical):
    with_aux = googlenet().count_params()
    single = canonical.count_params()
    page = PAGE.read_text()
    for number in (single, with_aux, with_aux - single, 62_378_344):
        assert f"{number:,}" in page, number
    assert f"{62_378_344 / single:.1f} times" in page
    mults = arithmetic.layer_table(canonical).total_multiplications
    assert f"{mults:,} multiplications" in page


def test_page_table_matches_the_builder():
    rows = re.findall(
        r"^\s*\| (\d[a-e]) \|(.*)\|\s*$", PAGE.read_text(), re.MULTILINE
    )
    table = {
        key: tuple(int(v) for v in cells.split("|")) for key, cells in rows
    }
    assert list(table) == list(GOOGLENET_MODULES)
    for key, filters in GOOGLENET_MODULES.items():
        f1, _, f3, _, f5, proj = filters
        assert table[key] == (*filters, f1 + f3 + f5 + proj), key
