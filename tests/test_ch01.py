"""Chapter 1 (CNN layer arithmetic): numbers, reference code, checks, page."""

import re

import keras
import numpy as np
import pytest
from conftest import ROOT

from cnnbook import arithmetic, reference
from cnnbook.grading.chapters import exercises
from cnnbook.grading.runner import run_exercise
from cnnbook.models import basics, lenet_like, simple_convnet

PAGE = ROOT / "book" / "ch01-layer-arithmetic.md"


@pytest.fixture(scope="module")
def lenet():
    return lenet_like()


@pytest.fixture(scope="module")
def simple():
    return simple_convnet()


# ------------------------------------------------------------ the numbers
def test_39x39x3_example_ends_at_1960_features(simple):
    sizes = [39]
    for f, s in [(3, 1), (5, 2), (5, 2)]:
        sizes.append(arithmetic.conv_output_size(sizes[-1], f, 0, s))
    assert sizes == [39, 37, 17, 7]
    assert (
        7 * 7 * 40 == 1960 and 7 * 7 * 10 == 490
    )  # the notes' 7x7x10 is wrong
    shapes = [row.output_shape for row in arithmetic.layer_table(simple)]
    assert shapes[:4] == [
        (None, 37, 37, 10),
        (None, 17, 17, 20),
        (None, 7, 7, 40),
        (None, 1960),
    ]


def test_ten_3x3x3_filters_have_280_parameters():
    assert arithmetic.conv_params(3, 3, 10) == (3 * 3 * 3 + 1) * 10 == 280
    layer = keras.layers.Conv2D(10, 3)
    layer.build((None, 39, 39, 3))
    assert layer.count_params() == 280


def test_pooling_has_no_parameters(lenet):
    for cls in (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D):
        layer = cls(2)
        layer.build((None, 8, 8, 3))
        assert layer.count_params() == 0
    pools = [r for r in arithmetic.layer_table(lenet) if "Pooling" in r.kind]
    assert len(pools) == 2 and all(r.params == 0 for r in pools)
    assert arithmetic.pool_params(2, 2) == 0


def test_lenet_like_table(lenet):
    table = arithmetic.layer_table(lenet)
    assert table.total_params == lenet.count_params() == 62_958
    rows = {r.name: r for r in table}
    assert [r.name for r in table] == [
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "flatten",
        "fc3",
        "fc4",
        "classifier",
    ]
    assert rows["conv1"].output_shape == (None, 28, 28, 8)
    assert rows["pool1"].output_shape == (None, 14, 14, 8)
    assert rows["conv2"].output_shape == (None, 10, 10, 16)
    assert rows["pool2"].output_shape == (None, 5, 5, 16)
    assert rows["flatten"].output_shape == (None, 400)
    assert rows["conv1"].params == arithmetic.conv_params(5, 3, 8) == 608
    assert rows["conv2"].params == arithmetic.conv_params(5, 8, 16) == 3_216
    assert rows["fc3"].params == arithmetic.dense_params(400, 120) == 48_120
    assert rows["fc4"].params == arithmetic.dense_params(120, 84) == 10_164
    assert rows["classifier"].params == arithmetic.dense_params(84, 10) == 850
    assert rows["conv1"].multiplications == arithmetic.conv_multiplications(
        28, 28, 8, 5, 3
    )


def test_layer_table_total_equals_count_params_on_other_models(simple):
    table = arithmetic.layer_table(simple)
    assert (
        table.total_params
        == simple.count_params()
        == 280 + 5_020 + 20_040 + 19_610
    )
    text = str(table)
    assert "total" in text and f"{simple.count_params():,}" in text


def test_dense_layer_for_the_same_mapping():
    dense = arithmetic.dense_params(32 * 32 * 3, 28 * 28 * 8)
    assert dense == 19_273_856
    assert arithmetic.conv_params(5, 3, 8) == 608
    assert dense // 608 == 31_700


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(n=5, f=7), "does not fit"),
        (dict(n=5, f=7, p=0, s=2), "does not fit"),
        (dict(n=0, f=1), "positive"),
        (dict(n=5, f=0), "positive"),
        (dict(n=5, f=3, s=0), "positive"),
        (dict(n=5, f=3, p=-1), "non-negative"),
        (dict(n=5, f=3, p=0.5), "non-negative integer"),
        (dict(n=5.0, f=3), "positive integer"),
        (dict(n=True, f=1), "positive integer"),
    ],
)
def test_conv_output_size_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        arithmetic.conv_output_size(**kwargs)


def test_conv_output_size_floors():
    assert arithmetic.conv_output_size(8, 3, 0, 2) == 3  # (8-3)/2 = 2.5
    assert arithmetic.conv_output_size(6, 3, 1, 1) == 6  # 'same'
    assert arithmetic.conv_output_size(5, 3, 1, 2) == 3


# ------------------------------------------------------ reference vs Keras
@pytest.mark.parametrize("seed", range(4))
def test_conv_forward_equals_keras_conv2d(seed):
    rng = np.random.default_rng(seed)
    f = int(rng.choice([1, 2, 3, 5]))
    pad, stride = int(rng.integers(0, 3)), int(rng.integers(1, 4))
    A = rng.standard_normal(
        (2, int(rng.integers(f, 10)), int(rng.integers(f, 10)), 3)
    ).astype("float32")
    W = rng.standard_normal((f, f, 3, 4)).astype("float32")
    b = rng.standard_normal(4).astype("float32")
    ours = reference.conv_forward(A, W, b, stride, pad)
    theirs = reference.keras_conv(A, W, b, stride, pad)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_same_padding_equals_keras_same():
    rng = np.random.default_rng(7)
    A = rng.standard_normal((1, 7, 6, 2)).astype("float32")
    W = rng.standard_normal((5, 5, 2, 3)).astype("float32")
    b = rng.standard_normal(3).astype("float32")
    layer = keras.layers.Conv2D(3, 5, padding="same")
    layer.build(A.shape)
    layer.set_weights([W, b])
    np.testing.assert_allclose(
        reference.conv_forward(A, W, b, 1, arithmetic.same_padding(5)),
        keras.ops.convert_to_numpy(layer(A)),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("f,stride", [(2, 2), (3, 2), (3, 1), (2, 3)])
def test_pool_forward_equals_keras(mode, f, stride):
    A = (
        np.random.default_rng(f * 10 + stride)
        .standard_normal((2, 7, 8, 3))
        .astype("float32")
    )
    theirs = reference.keras_pool(A, f, stride, mode)
    ours = reference.pool_forward(A, f, stride, mode)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_zero_pad_equals_numpy_and_keras():
    A = (
        np.random.default_rng(0)
        .standard_normal((2, 3, 4, 2))
        .astype("float32")
    )
    padded = reference.zero_pad(A, 2)
    assert padded.dtype == A.dtype
    np.testing.assert_array_equal(
        padded, np.pad(A, ((0, 0), (2, 2), (2, 2), (0, 0)))
    )
    np.testing.assert_array_equal(
        padded, keras.ops.convert_to_numpy(keras.layers.ZeroPadding2D(2)(A))
    )
    assert reference.zero_pad(A, 0).shape == A.shape


def test_conv_single_step():
    rng = np.random.default_rng(1)
    a, w = rng.standard_normal((3, 3, 2)), rng.standard_normal((3, 3, 2))
    value = reference.conv_single_step(a, w, 0.25)
    assert isinstance(value, float)
    assert value == pytest.approx(float((a * w).sum()) + 0.25)


def test_reference_rejects_bad_input():
    with pytest.raises(ValueError, match="4 axes"):
        reference.zero_pad(np.zeros((3, 3)), 1)
    with pytest.raises(ValueError, match="non-negative"):
        reference.zero_pad(np.zeros((1, 3, 3, 1)), -1)
    with pytest.raises(ValueError, match="same shape"):
        reference.conv_single_step(np.zeros((3, 3, 2)), np.zeros((3, 3, 1)), 0)
    with pytest.raises(ValueError, match="do not fit"):
        reference.conv_forward(
            np.zeros((1, 5, 5, 2)), np.zeros((3, 3, 1, 4)), np.zeros(4)
        )
    with pytest.raises(ValueError, match="mode"):
        reference.pool_forward(np.zeros((1, 4, 4, 1)), 2, 2, "median")
    with pytest.raises(ValueError, match="does not fit"):
        reference.conv_forward(
            np.zeros((1, 2, 2, 1)), np.zeros((3, 3, 1, 1)), np.zeros(1)
        )


def test_translation_equivariance():
    rng = np.random.default_rng(3)
    x = np.zeros((1, 12, 12, 1))
    x[0, 3:7, 3:7, 0] = rng.standard_normal((4, 4))
    W = rng.standard_normal((3, 3, 1, 2))
    b = np.zeros(2)
    moved = np.roll(x, (2, 1), axis=(1, 2))
    np.testing.assert_allclose(
        reference.conv_forward(moved, W, b, 1, 1),
        np.roll(reference.conv_forward(x, W, b, 1, 1), (2, 1), axis=(1, 2)),
    )


def test_basics_module_exports():
    assert set(basics.__all__) == {"simple_convnet", "lenet_like"}


def test_models_package_exports_what_each_module_exports():
    """``cnnbook.models.__all__`` is the union of its modules' ``__all__``,
    and each name there is the module's object: the builder ``alexnet``,
    not the module of the same name."""
    import importlib
    import pkgutil

    from cnnbook import models

    modules = [
        importlib.import_module(f"cnnbook.models.{info.name}")
        for info in pkgutil.iter_modules(models.__path__)
        if not info.name.startswith("_")
    ]
    assert {m.__name__.rsplit(".", 1)[1] for m in modules} >= {
        "basics",
        "lenet",
        "alexnet",
        "vgg",
        "resnet",
        "inception",
    }
    exported = [name for module in modules for name in module.__all__]
    assert sorted(models.__all__) == sorted(exported)
    for module in modules:
        for name in module.__all__:
            assert getattr(models, name) is getattr(module, name), name
    assert callable(models.alexnet)


# ------------------------------------------------------------- the checks
ANSWERS = {
    "1.1": ("conv_output_size", arithmetic.conv_output_size),
    "1.2": ("conv_layer_params", arithmetic.conv_params),
    "1.3": ("zero_pad", reference.zero_pad),
    "1.4": ("conv_single_step", reference.conv_single_step),
    "1.5": ("conv_forward", reference.conv_forward),
    "1.6": ("pool_forward", reference.pool_forward),
}


def _blank(*_args, **_kwargs):
    raise NotImplementedError


WRONG = {
    "1.1": (lambda n, f, p=0, s=1: (n + 2 * p - f) / s + 1, "floor"),
    "1.2": (lambda f, c_prev, c: f * f * c_prev * c, "bias"),
    "1.3": (lambda X, pad: np.pad(X, pad), "not the examples or the channels"),
    "1.4": (lambda a, W, b: float(np.sum(a * W)), "add the bias"),
    "1.5": (
        lambda A, W, b, stride, pad: reference.conv_forward(A, W, b, 1, pad)[
            :,
            : arithmetic.conv_output_size(A.shape[1], W.shape[0], pad, stride),
            : arithmetic.conv_output_size(A.shape[2], W.shape[0], pad, stride),
        ],
        "one pixel at a time",  # the stride left out: a recognised mistake
    ),
    "1.6": (
        lambda A, f, stride, mode="max": reference.pool_forward(
            A, f, stride, "max"
        ),
        "other mode",
    ),
}


def test_six_exercises_with_points():
    found = {e.key: e.points for e in exercises("ch01")}
    assert found == {
        "1.1": 1,
        "1.2": 1,
        "1.3": 1,
        "1.4": 1,
        "1.5": 3,
        "1.6": 2,
    }


@pytest.mark.parametrize("key", sorted(ANSWERS))
def test_reference_answer_passes_visible_and_hidden(key):
    ex = {e.key: e for e in exercises("ch01")}[key]
    name, answer = ANSWERS[key]
    result = run_exercise(ex, {name: answer}, hidden=True)
    assert result.passed and result.hidden_passed, result.message


@pytest.mark.parametrize("key", sorted(ANSWERS))
def test_blank_and_wrong_answers_fail_with_a_message(key):
    ex = {e.key: e for e in exercises("ch01")}[key]
    name, _ = ANSWERS[key]
    blank = run_exercise(ex, {name: _blank}, hidden=True)
    assert blank.points == 0 and "not answered" in blank.message
    wrong, hint = WRONG[key]
    result = run_exercise(ex, {name: wrong}, hidden=True)
    assert result.points == 0 and hint in result.message, result.message


def test_hard_coded_visible_answers_fail_the_hidden_check():
    ex = {e.key: e for e in exercises("ch01")}["1.1"]
    table = {
        (39, 3, 0, 1): 37,
        (37, 5, 0, 2): 17,
        (17, 5, 0, 2): 7,
        (6, 3, 1, 1): 6,
        (8, 3, 0, 2): 3,
        (28, 5, 2, 1): 28,
    }
    result = run_exercise(
        ex,
        {
            "conv_output_size": lambda n, f, p=0, s=1: table.get(
                (n, f, p, s), 0
            )
        },
        hidden=True,
    )
    assert result.visible_passed and result.points == 0
    assert "hidden" in result.message


# --------------------------------------------------------------- the page
def test_page_states_the_computed_numbers(lenet):
    text = PAGE.read_text()
    assert text.startswith("(ch01-layer-arithmetic)=\n# ")
    conv_total = arithmetic.conv_params(5, 3, 8) + arithmetic.conv_params(
        5, 8, 16
    )
    for number in (
        "37×37×10",
        "17×17×20",
        "7×7×40",
        "1,960",
        "490",
        "280",
        f"{lenet.count_params():,}",
        f"{19_273_856:,}",
        f"{simple_convnet().count_params():,}",
        f"{arithmetic.conv_params(5, 10, 20):,}",
        f"{arithmetic.conv_params(5, 20, 40):,}",
        f"{arithmetic.dense_params(1960, 10):,}",
        f"{conv_total:,}",
        f"{5 * 5 * 8} of the 6,272",
        "31,700",
    ):
        assert number in text, number
    simple_part = text[
        text.index("(ch01-simple-convnet)=") : text.index("(ch01-pooling)=")
    ]
    lenet_part = text[
        text.index("(ch01-lenet-like)=") : text.index(
            "(ch01-why-convolutions)="
        )
    ]
    for part, model in [(simple_part, simple_convnet()), (lenet_part, lenet)]:
        for row in arithmetic.layer_table(model):
            line = next(
                (
                    text_line
                    for text_line in part.splitlines()
                    if text_line.startswith(f"| {row.name} ")
                ),
                None,
            )
            assert line is not None, f"no table row for {row.name}"
            shape = "×".join(str(d) for d in row.output_shape[1:])
            size = int(np.prod(row.output_shape[1:]))
            assert f"{row.params:,}" in line, line
            assert shape in line or f"{size:,}" in line, line
            if model is lenet:
                assert f"{size:,}" in line, line
    total = next(
        text_line
        for text_line in lenet_part.splitlines()
        if text_line.startswith("| total ")
    )
    assert f"{lenet.count_params():,}" in total
    assert text.index("## Summary") < text.index("## Exercises")
    assert "exercises/ch01-layer-arithmetic.ipynb" in text


def test_page_figures_exist():
    images = re.findall(r"```\{figure\} (\S+)", PAGE.read_text())
    assert len(images) >= 3
    for image in images:
        assert (PAGE.parent / image).exists(), image


# ------------------------------------------------------- edge detection
@pytest.mark.parametrize("kind", ["plain", "sobel"])
@pytest.mark.parametrize(
    "orientation,axis", [("vertical", 1), ("horizontal", 0)]
)
def test_edge_filters_equal_scipy_prewitt_and_sobel(kind, orientation, axis):
    """SciPy's Prewitt and Sobel operators take right minus left (bottom
    minus top); the book's filters take left minus right, as the course
    does, so they agree up to the sign away from the border."""
    from scipy import ndimage

    from cnnbook import edges

    image = np.random.default_rng(5).standard_normal((7, 9))
    scipy_operator = {"plain": ndimage.prewitt, "sobel": ndimage.sobel}[kind]
    np.testing.assert_allclose(
        edges.filter_image(image, edges.edge_filter(kind, orientation)),
        -scipy_operator(image, axis=axis)[1:-1, 1:-1],
    )


@pytest.mark.parametrize("kind", ["plain", "sobel", "scharr"])
def test_edge_filters_ignore_flat_regions_and_filter_like_scipy(kind):
    from scipy import signal

    from cnnbook import edges

    vertical = edges.edge_filter(kind, "vertical")
    horizontal = edges.edge_filter(kind, "horizontal")
    np.testing.assert_array_equal(horizontal, vertical.T)
    flat = np.full((5, 5), 7.0)
    for kernel in (vertical, horizontal):
        assert not edges.filter_image(flat, kernel).any()
    image = np.random.default_rng(6).standard_normal((6, 8))
    np.testing.assert_allclose(
        edges.filter_image(image, vertical),
        signal.correlate2d(image, vertical, mode="valid"),
    )


def test_edge_sign_tells_light_to_dark_from_dark_to_light():
    from cnnbook import edges

    vertical = edges.edge_filter()
    light_to_dark = edges.filter_image(edges.step_image(), vertical)
    dark_to_light = edges.filter_image(
        edges.step_image(bright_side="right"), vertical
    )
    assert light_to_dark.shape == (4, 4)
    # the band in the two middle columns, zero where the window is flat
    assert (light_to_dark[:, 1:3] > 0).all()
    assert not light_to_dark[:, [0, 3]].any()
    np.testing.assert_array_equal(dark_to_light, -light_to_dark)
    # the horizontal filter on a top/bottom step is the transposed case
    np.testing.assert_array_equal(
        edges.filter_image(
            edges.step_image(bright_side="top"),
            edges.edge_filter("plain", "horizontal"),
        ),
        light_to_dark.T,
    )
    quadrants = edges.filter_image(
        edges.quadrant_image(), edges.edge_filter("plain", "horizontal")
    )
    middle = quadrants[1:3]
    assert (middle[:, :2] > 0).all() and (middle[:, 2:] < 0).all()
    assert (np.abs(middle[:, 1]) < np.abs(middle[:, 0])).all()


def test_edge_inputs_are_checked():
    from cnnbook import edges

    with pytest.raises(ValueError, match="kind must be one of"):
        edges.edge_filter("canny")
    with pytest.raises(ValueError, match="orientation"):
        edges.edge_filter("plain", "diagonal")
    with pytest.raises(ValueError, match="even number"):
        edges.step_image(5)
    with pytest.raises(ValueError, match="bright_side"):
        edges.step_image(bright_side="centre")
    with pytest.raises(ValueError, match="2-D"):
        edges.filter_image(np.zeros((1, 6, 6)), edges.edge_filter())


def _pmatrix(array):
    rows = " \\\\ ".join(
        " & ".join(f"{value:g}" for value in row) for row in array
    )
    return f"\\begin{{pmatrix}} {rows} \\end{{pmatrix}}"


def _squeezed(text):
    return re.sub(r"\s+", " ", text)


def test_page_shows_the_computed_edge_examples():
    from cnnbook import edges

    page = _squeezed(PAGE.read_text())
    section = page[
        page.index("(ch01-edge-detection)=") : page.index(
            "(ch01-padding-stride)="
        )
    ]
    vertical = edges.edge_filter()
    horizontal = edges.edge_filter("plain", "horizontal")
    shown = [
        vertical,
        horizontal,
        edges.edge_filter("sobel"),
        edges.edge_filter("scharr"),
        edges.filter_image(edges.step_image(), vertical),
        edges.filter_image(edges.step_image(bright_side="right"), vertical),
        edges.filter_image(edges.quadrant_image(), horizontal),
    ]
    for array in shown:
        assert _pmatrix(array) in section, _pmatrix(array)
    for kind in ("plain", "sobel", "scharr"):
        band = edges.filter_image(edges.step_image(), edges.edge_filter(kind))
        assert f"{band[0, 1]:g}" in section, (kind, band[0, 1])
    assert "figures/ch01-edges.png" in section


def test_edge_figure_shows_the_computed_values():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnbook import edges

    fig = edges.draw_edge_examples()
    try:
        axes = np.array(fig.axes).reshape(3, 3)
        expected = [
            edges.filter_image(edges.step_image(), edges.edge_filter()),
            edges.filter_image(
                edges.step_image(bright_side="right"), edges.edge_filter()
            ),
            edges.filter_image(
                edges.quadrant_image(),
                edges.edge_filter("plain", "horizontal"),
            ),
        ]
        for row, output in enumerate(expected):
            written = [float(t.get_text()) for t in axes[row, 2].texts]
            assert written == output.ravel().tolist()
    finally:
        plt.close(fig)
    figure = PAGE.parent / "figures" / f"{edges.FIGURE}.png"
    assert figure.exists(), "run: .venv/bin/python -m cnnbook.edges"
