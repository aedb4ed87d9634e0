"""Chapter 2 (LeNet-5): models, tables, C3, padding, checks, page numbers."""

import re

import numpy as np
import pytest
from conftest import ROOT

from cnnbook import arithmetic
from cnnbook.arithmetic import layer_table
from cnnbook.grading.api import CheckFailure
from cnnbook.grading.chapters import exercises
from cnnbook.grading.checks import ch02
from cnnbook.grading.runner import run_exercise
from cnnbook.models import (
    c3_connection_table,
    lenet,
    lenet5,
    lenet5_1998_params,
    lenet5_classic,
    lenet5_spec,
    pad_digits,
    partial_conv_params,
)

PAGE = ROOT / "book" / "ch02-lenet.md"


@pytest.fixture(scope="module")
def modern():
    return lenet5()


@pytest.fixture(scope="module")
def classic():
    return lenet5_classic()


# ------------------------------------------------------------ the models
def test_parameter_counts(modern, classic):
    assert modern.count_params() == 61706
    assert classic.count_params() == 61706
    assert lenet5(num_classes=2).count_params() == 61706 - 8 * 85


def test_modern_and_classic_differ_in_activation_and_pooling(modern, classic):
    kinds = [type(layer).__name__ for layer in modern.layers]
    assert kinds == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dense",
        "Dense",
    ]
    assert [type(layer).__name__ for layer in classic.layers] == [
        k.replace("Max", "Average") for k in kinds
    ]
    for form, hidden in ((modern, "relu"), (classic, "tanh")):
        acts = [
            layer.activation.__name__
            for layer in form.layers
            if hasattr(layer, "activation")
        ]
        assert acts == [hidden] * 4 + ["softmax"]
    assert modern.input_shape == classic.input_shape == (None, 32, 32, 1)


def _summary_text(model):
    lines = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    return "\n".join(lines)


@pytest.mark.parametrize("build", [lenet5, lenet5_classic])
def test_table_equals_formulas_and_summary(build):
    model = build()
    table = layer_table(model)
    rows = [(r.name, r.output_shape[1:], r.params) for r in table]
    assert rows == lenet5_spec()
    assert table.total_params == model.count_params()
    summary = _summary_text(model)
    for row in table:
        line = next(s for s in summary.splitlines() if f" {row.name} (" in s)
        shape = ", ".join(
            "None" if d is None else str(d) for d in row.output_shape
        )
        assert f"({shape})" in line, (row.name, line)
        assert re.search(rf"\b{row.params:,}\b|\b{row.params}\b", line)
    total = re.search(r"Total params:\s*([\d,]+)", summary).group(1)
    assert int(total.replace(",", "")) == model.count_params()


@pytest.mark.parametrize(
    "shape,classes",
    [
        ((28, 28, 1), 3),
        ((40, 40, 1), 10),
        ((64, 64, 1), 100),
        ((36, 48, 3), 5),
    ],
)
def test_spec_follows_input_shape(shape, classes):
    rows = [
        (r.name, r.output_shape[1:], r.params)
        for r in layer_table(lenet5(shape, classes))
    ]
    assert rows == lenet5_spec(shape, classes)


# ------------------------------------------------------------ C3 and 1998
def test_c3_table_matches_the_rule_of_the_paper():
    table = c3_connection_table()
    assert table.shape == (6, 16) and table.dtype == bool
    np.testing.assert_array_equal(table, ch02.paper_c3_table())
    assert table.sum(axis=0).tolist() == [3] * 6 + [4] * 9 + [6]


def test_c3_parameter_count():
    table = c3_connection_table()
    assert partial_conv_params(table, 5) == 25 * 60 + 16 == 1516
    full = np.ones((6, 16), bool)
    assert partial_conv_params(full, 5) == arithmetic.conv_params(5, 6, 16)
    assert partial_conv_params(full, 5, bias=False) == 2400


def test_1998_network_has_sixty_thousand_parameters():
    params = lenet5_1998_params()
    assert params == {
        "C1": 156,
        "S2": 12,
        "C3": 1516,
        "S4": 32,
        "C5": 48120,
        "F6": 10164,
    }
    assert sum(params.values()) == 60000


# ------------------------------------------------------------ padding
def test_pad_digits_centres_the_digit():
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    padded = pad_digits(digits)
    assert padded.shape == (5, 32, 32, 1) and padded.dtype == np.float32
    np.testing.assert_allclose(
        padded[:, 2:30, 2:30, 0], digits / 255.0, rtol=1e-6
    )
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert (padded[:, border] == 0).all()
    assert 0.0 <= padded.min() and padded.max() <= 1.0


def test_pad_digits_rejects_bad_shapes():
    with pytest.raises(ValueError, match="do not fit"):
        pad_digits(np.zeros((1, 34, 34), np.uint8))
    with pytest.raises(ValueError, match=r"\(n, h, w\)"):
        pad_digits(np.zeros((28, 28), np.uint8))


# ------------------------------------------------------------ the checks
def _solutions():
    """Reference answers written independently of the solution notebook."""
    import keras
    from keras import layers

    def build_lenet5(num_classes=10):
        return keras.Sequential(
            [
                keras.Input((32, 32, 1)),
                layers.Conv2D(6, 5, activation="relu"),
                layers.MaxPooling2D(2),
                layers.Conv2D(16, 5, activation="relu"),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(120, activation="relu"),
                layers.Dense(84, activation="relu"),
                layers.Dense(num_classes, activation="softmax"),
            ]
        )

    def lenet5_table(input_size=32, num_classes=10):
        return [
            (shape, params)
            for _, shape, params in lenet5_spec(
                (input_size, input_size, 1), num_classes
            )
        ]

    return dict(
        build_lenet5=build_lenet5,
        lenet5_table=lenet5_table,
        c3_table=c3_connection_table,
        partial_conv_params=partial_conv_params,
    )


def _exercise(key):
    return next(e for e in exercises("ch02") if e.key == key)


def test_chapter_has_at_least_three_exercises():
    assert [e.key for e in exercises("ch02")] == ["2.1", "2.2", "2.3", "2.4"]


@pytest.mark.parametrize("key", ["2.1", "2.2", "2.3"])
def test_reference_answers_pass_visible_and_hidden(key):
    result = run_exercise(_exercise(key), _solutions(), hidden=True)
    assert result.passed, result.message


def _blank(*_args, **_kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("key", ["2.1", "2.2", "2.3", "2.4"])
def test_blank_answers_score_zero(key):
    ex = _exercise(key)
    result = run_exercise(ex, {n: _blank for n in ex.names}, hidden=True)
    assert result.points == 0 and "not answered" in result.message


def test_wrong_model_names_the_first_differing_layer():
    import keras
    from keras import layers

    def average_pooling(num_classes=10):
        return keras.Sequential(
            [
                keras.Input((32, 32, 1)),
                layers.Conv2D(6, 5, activation="relu", name="first"),
                layers.AveragePooling2D(2, name="pool_a"),
                layers.Conv2D(16, 5, activation="relu"),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(120, activation="relu"),
                layers.Dense(84, activation="relu"),
                layers.Dense(num_classes, activation="softmax"),
            ]
        )

    def tanh_model(num_classes=10):
        model = _solutions()["build_lenet5"](num_classes)
        model.layers[5].activation = keras.activations.tanh
        return model

    result = run_exercise(_exercise("2.1"), {"build_lenet5": average_pooling})
    assert result.points == 0
    assert "layer 2 ('pool_a')" in result.message
    assert "AveragePooling2D" in result.message
    result = run_exercise(_exercise("2.1"), {"build_lenet5": tanh_model})
    assert result.points == 0 and "layer 6" in result.message
    assert "'tanh'" in result.message and "'relu'" in result.message


def test_wrong_table_row_is_named():
    def off_by_one(input_size=32, num_classes=10):
        rows = _solutions()["lenet5_table"](input_size, num_classes)
        rows[2] = (rows[2][0], rows[2][1] - 16)  # forgot the biases
        return rows

    def fixed_size(input_size=32, num_classes=10):
        return _solutions()["lenet5_table"]()

    result = run_exercise(_exercise("2.2"), {"lenet5_table": off_by_one})
    assert result.points == 0 and "'c3'" in result.message
    result = run_exercise(
        _exercise("2.2"), {"lenet5_table": fixed_size}, hidden=True
    )
    assert result.visible_passed and result.points == 0


def test_c3_mistakes_are_caught():
    answers = _solutions()

    def full_table():
        return np.ones((6, 16), bool)

    def no_bias(connections, f):
        return int(f * f * np.asarray(connections, bool).sum())

    result = run_exercise(
        _exercise("2.3"), {**answers, "c3_table": full_table}
    )
    assert result.points == 0 and "C3 map 0" in result.message
    result = run_exercise(
        _exercise("2.3"), {**answers, "partial_conv_params": no_bias}
    )
    assert result.points == 0 and "1516" in result.message

    def hard_coded(connections, f):
        return 1516 if np.asarray(connections).sum() == 60 else 2416

    result = run_exercise(
        _exercise("2.3"),
        {**answers, "partial_conv_params": hard_coded},
        hidden=True,
    )
    assert result.visible_passed and result.points == 0


@pytest.mark.slow
def test_training_exercise_threshold():
    import keras

    def good(model, x, y):
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
        )
        model.fit(x, y, epochs=8, batch_size=32, verbose=0)

    def weak(model, x, y):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=256, verbose=0)

    result = run_exercise(_exercise("2.4"), {"fit_lenet": good}, hidden=True)
    assert result.passed, result.message
    result = run_exercise(_exercise("2.4"), {"fit_lenet": weak})
    assert result.points == 0 and "should reach 90%" in result.message


def test_fit_check_rejects_an_uncompiled_model():
    with pytest.raises(CheckFailure, match="did not compile"):
        ch02.fit_accuracy(lambda model, x, y: None, seed=0)


# ------------------------------------------------------------ the page
def test_page_numbers_are_the_computed_ones():
    text = PAGE.read_text()
    assert text.startswith("(ch02-lenet)=\n# LeNet-5")
    for name, shape, params in lenet5_spec():
        shape_text = "×".join(map(str, shape))
        row = next(
            (s for s in text.splitlines() if s.startswith(f"| {name} ")), None
        )
        assert row is not None, f"no table row for {name}"
        assert shape_text in row and f"{params:,}" in row, row
    for number in (61706, 60000, 1516, 2416, 48120, 10164):
        assert f"{number:,}" in text, number
    stated = re.search(r"reach (\d+)% on 1,000 test digits", text)
    assert stated and int(stated.group(1)) == round(100 * ch02.FIT_THRESHOLD)


def test_page_states_where_parameters_and_work_sit():
    text = PAGE.read_text()
    table = layer_table(lenet5())
    convs = [r for r in table if r.kind == "Conv2D"]
    dense = next(r for r in table if r.name == "f5")
    for number in (
        sum(r.params for r in convs),
        sum(r.multiplications for r in convs),
        table.total_multiplications,
        dense.multiplications,
    ):
        assert f"{number:,}" in text, number


def _stored_results():
    """Rows of the results table printed by the stored lab run."""
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "ch02-lenet.ipynb", as_version=4)
    text = "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    banner = re.search(r"profile: (\w+)", text).group(1)
    rows = re.findall(
        r"^(modern|classic)\s+(\d+)\s+([\d.]+)\s+([\d,]+)"
        r"\s+([\d.]+%)$",
        text,
        re.M,
    )
    return banner, rows


def test_page_lists_the_exercises_with_their_points():
    text = " ".join(PAGE.read_text().split())
    listed = exercises("ch02")
    assert f"{sum(e.points for e in listed)} points in all" in text
    for e in listed:
        assert re.search(
            rf"\*\*{re.escape(e.key)} .+\*\* \({e.points} "
            r"points?\)",
            text,
        ), e.key


def test_page_figures_exist():
    text = PAGE.read_text()
    images = re.findall(r"```\{figure\} (\S+)", text)
    assert len(images) >= 5
    for image in images:
        assert (PAGE.parent / image).exists(), image


def test_lenet_module_exports():
    assert set(lenet.__all__) <= set(dir(lenet))
