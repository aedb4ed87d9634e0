"""The arithmetic module against its formulas and against Keras itself."""

import keras
import pytest

from cnnbook import arithmetic as A
from cnnbook.tables import Table, shape_text


@pytest.mark.parametrize(
    "n,f,p,s,expected",
    [
        (6, 3, 0, 1, 4),
        (6, 3, 1, 1, 6),
        (7, 3, 0, 2, 3),
        (39, 3, 0, 1, 37),
        (37, 5, 0, 2, 17),
        (17, 5, 0, 2, 7),
        (227, 11, 0, 4, 55),
        (28, 5, 2, 1, 28),
    ],
)
def test_conv_output_size(n, f, p, s, expected):
    assert A.conv_output_size(n, f, p, s) == expected


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(n=5, f=7), "does not fit"),
        (dict(n=0, f=1), "positive"),
        (dict(n=5, f=3, s=0), "positive"),
        (dict(n=5, f=3, p=-1), "non-negative"),
        (dict(n=5.0, f=3), "positive integer"),
    ],
)
def test_conv_output_size_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        A.conv_output_size(**kwargs)


def test_same_padding_keeps_size():
    for f in (1, 3, 5, 7, 11):
        assert A.conv_output_size(32, f, A.same_padding(f)) == 32
    with pytest.raises(ValueError, match="odd"):
        A.same_padding(4)


def test_params_and_multiplications():
    assert A.conv_params(3, 3, 10) == 280
    assert A.conv_params(3, 3, 10, bias=False) == 270
    assert A.conv_multiplications(28, 28, 32, 5, 192) == 120_422_400
    assert (
        A.pool_output_size(28, 2) == 14 and A.pool_output_size(27, 3, 2) == 13
    )
    assert A.pool_params(2, 2) == 0
    assert A.dense_params(400, 120) == 48_120
    assert A.dense_multiplications(400, 120) == 48_000


def test_layer_table_matches_keras():
    model = keras.Sequential(
        [
            keras.Input((39, 39, 3)),
            keras.layers.Conv2D(10, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(20, 5, strides=2, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    table = A.layer_table(model)
    assert table.total_params == model.count_params()
    assert [r.output_shape for r in table] == [
        tuple(layer.output.shape) for layer in model.layers
    ]
    conv = table[0]
    assert conv.params == A.conv_params(3, 3, 10)
    assert conv.multiplications == A.conv_multiplications(37, 37, 10, 3, 3)
    assert table[-1].multiplications == A.dense_multiplications(9 * 9 * 20, 10)
    text = str(table)
    assert "total" in text and f"{model.count_params():,}" in text


def test_layer_table_shows_html_and_text():
    """The same table as HTML (notebooks, the book) and as text (a
    terminal): short headers, shapes without the batch axis, numbers with
    thousands separators, right-aligned, and a total row."""
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(64, 3, name="conv"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(10, name="out"),
        ]
    )
    table = A.layer_table(model)
    html = table._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == 5
    assert "<td>30\u00d730\u00d764" in html
    assert f" {model.count_params():,}</td>" in html
    assert "57600" in html  # the flattened size is a shape: no separator
    lines = str(table).splitlines()
    assert lines[0].split() == ["layer", "type", "output", "params", "mults"]
    assert lines[-1].split()[0] == "total"
    assert lines[-1].endswith(f"{table.total_multiplications:,}")
    # numbers are right-aligned: every row ends at the same column
    assert len({len(line) for line in lines}) == 1
    assert max(map(len, lines)) < 80


def test_shape_text():
    assert shape_text((None, 7, 7, 3)) == "7\u00d77\u00d73"
    assert shape_text((None, 1960)) == "1960"
    assert shape_text(((None, 2), (None, 3))) == "2, 3"


def test_small_table_of_a_notebook():
    table = Table(("model", "params", "accuracy"), [("a", 1234567, "99.1%")])
    assert str(table).splitlines()[-1].split() == ["a", "1,234,567", "99.1%"]
    assert "<th" in table._repr_html_()
    with pytest.raises(ValueError, match="2 cells under 3 columns"):
        Table(("a", "b", "c"), [(1, 2)])
