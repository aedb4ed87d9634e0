"""Chapter 1, exercises 1.1 and 1.2: the sizes a convolution layer
computes (its output's side, its parameters)."""

from __future__ import annotations

import numpy as np

from cnnbook import arithmetic
from cnnbook.grading.api import (
    CheckFailure,
    exercise,
    expect_equal,
    match_mistake,
    mistake,
    type_name,
)

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch01', the folder's name


def _expect_number(got, what):
    if got is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    if isinstance(got, bool) or not isinstance(got, (int, float, np.number)):
        raise CheckFailure(
            f"{what} should return a number, got {type_name(got)} {got!r}"[
                :200
            ]
        )


# ------------------------------------------------------------ 1.1 output size
def _check_output_size(func, n, f, p, s):
    expected = arithmetic.conv_output_size(n, f, p, s)
    got = func(n, f, p, s)
    what = f"conv_output_size(n={n}, f={f}, p={p}, s={s})"
    _expect_number(got, what)
    if isinstance(got, (float, np.floating)) and not float(got).is_integer():
        raise CheckFailure(
            f"{what} returned {got!r}, a fraction, expected "
            f"{expected}: round (n + 2p - f) / s down (floor) "
            "before adding 1"
        )
    if got != expected and got == -(-(n + 2 * p - f) // s) + 1:
        raise CheckFailure(
            f"{what} returned {got!r}, expected {expected}: "
            "(n + 2p - f) / s must be rounded down, not up "
            "(use // or math.floor)"
        )
    if got != expected:
        hint = match_mistake(got, _output_size_mistakes(n, f, p, s, expected))
        if hint:
            raise mistake(
                f"{what} returned {got!r}, expected {expected}", hint
            )
    expect_equal(got, expected, what)


def _output_size_mistakes(n, f, p, s, expected):
    def unless_right(value):
        return None if value == expected else value

    # a learner who forgot the + 1 fails on the first visible case (p = 0),
    # where the padding mistakes are ruled out: those come first
    return [
        (
            "the padding is counted on one side only: p zeros go on "
            "each side, so the input grows by 2p",
            unless_right((n + p - f) // s + 1),
        ),
        (
            "the stride is left out: the filter moves s pixels at a "
            "time, so divide (n + 2p - f) by s",
            unless_right(n + 2 * p - f + 1),
        ),
        (
            "the padding is left out: add 2p to n",
            unless_right((n - f) // s + 1),
        ),
        (
            "the + 1 is missing: the first position of the filter counts "
            "too, so the size is floor((n + 2p - f) / s) + 1",
            unless_right((n + 2 * p - f) // s),
        ),
    ]


@exercise(
    CHAPTER,
    "1.1",
    "output size of a convolution",
    points=1,
    names=["conv_output_size"],
)
def output_size_visible(ns):
    func = ns["conv_output_size"]
    # the 39x39x3 example, a 'same' convolution, and a stride that leaves
    # a pixel over (the floor matters)
    for n, f, p, s in [
        (39, 3, 0, 1),
        (37, 5, 0, 2),
        (17, 5, 0, 2),
        (6, 3, 1, 1),
        (8, 3, 0, 2),
        (28, 5, 2, 1),
    ]:
        _check_output_size(func, n, f, p, s)


@output_size_visible.hidden_check
def output_size_hidden(ns, rng):
    func = ns["conv_output_size"]
    for _ in range(40):
        f = int(rng.integers(1, 8))
        p = int(rng.integers(0, 4))
        s = int(rng.integers(1, 5))
        n = int(rng.integers(max(1, f - 2 * p), 64))
        _check_output_size(func, n, f, p, s)


# --------------------------------------------------------- 1.2 parameter count
def _check_params(func, f, n_C_prev, n_C):
    expected = arithmetic.conv_params(f, n_C_prev, n_C)
    got = func(f, n_C_prev, n_C)
    what = f"conv_layer_params(f={f}, n_C_prev={n_C_prev}, n_C={n_C})"
    _expect_number(got, what)
    if got == f * f * n_C_prev * n_C and got != expected:
        raise CheckFailure(
            f"{what} returned {got}, expected {expected}: each "
            "of the n_C filters also has one bias"
        )
    if got == (f * f * n_C + 1) * n_C and got != expected:
        raise CheckFailure(
            f"{what} returned {got}, expected {expected}: a "
            "filter is f x f x n_C_prev (the depth of the input)"
        )
    if got != expected:
        hint = match_mistake(
            got,
            [
                (
                    "one bias for the whole layer: each of the n_C filters "
                    "has its own bias",
                    f * f * n_C_prev * n_C + 1,
                ),
                (
                    "a filter covers f x f positions (f * f weights per "
                    "channel), not f",
                    (f * n_C_prev + 1) * n_C if f != 1 else None,
                ),
                (
                    "the biases are counted n_C_prev times: there is one "
                    "per filter, not one per input channel",
                    (f * f + 1) * n_C_prev * n_C if n_C_prev != 1 else None,
                ),
            ],
        )
        if hint:
            raise mistake(f"{what} returned {got}, expected {expected}", hint)
    expect_equal(got, expected, what)


@exercise(
    CHAPTER,
    "1.2",
    "parameters of a convolution layer",
    points=1,
    names=["conv_layer_params"],
)
def params_visible(ns):
    func = ns["conv_layer_params"]
    for f, n_C_prev, n_C in [
        (3, 3, 10),
        (5, 10, 20),
        (5, 20, 40),
        (1, 192, 32),
    ]:
        _check_params(func, f, n_C_prev, n_C)


@params_visible.hidden_check
def params_hidden(ns, rng):
    # arithmetic.conv_params is the count Keras reports (tests/test_ch01.py)
    func = ns["conv_layer_params"]
    for _ in range(20):
        f = int(rng.integers(1, 8))
        n_C_prev = int(rng.integers(1, 300))
        n_C = int(rng.integers(1, 300))
        _check_params(func, f, n_C_prev, n_C)
