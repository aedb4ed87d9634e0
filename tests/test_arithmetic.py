"""The arithmetic module against its formulas and against Keras itself."""

import keras
import pytest

from cnnbook import arithmetic as A


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


def test_format_table_aligns_columns():
    text = A.format_table(
        ("name", "shape", "count"),
        [("a", A.format_shape((None, 7, 7)), "1,024"), ("total", "", 5)],
        "llr",
    )
    assert text.splitlines() == [
        "name   shape         count",
        "-----  ------------  -----",
        "a      (None, 7, 7)  1,024",
        "total                    5",
    ]
    with pytest.raises(ValueError, match="align"):
        A.format_table(("a", "b"), [], "l")
    with pytest.raises(ValueError, match="align"):
        A.format_table(("a",), [], "c")
