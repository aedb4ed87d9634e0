"""Chapter 1, exercises 1.3 and 1.4: zero padding and one convolution step."""

from __future__ import annotations

import numpy as np

from cnnbook import reference
from cnnbook.grading import tripwire
from cnnbook.grading.api import (
    CheckFailure,
    exercise,
    expect_array,
    match_mistake,
    mistake,
)

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch01', the folder's name


# ------------------------------------------------------------ 1.3 zero padding
def _check_zero_pad(func, X, pad):
    original = X.copy()
    expected = np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    got = func(X, pad)
    what = f"zero_pad(X of shape {X.shape}, pad={pad})"
    if (
        got is not None
        and np.shape(got) == np.pad(X, [(pad, pad)] * 4).shape
        and np.shape(got) != expected.shape
    ):
        raise CheckFailure(
            f"{what} has shape {np.shape(got)}, expected "
            f"{expected.shape}: pad only the height and width "
            "(axes 1 and 2), not the examples or the channels"
        )
    shape = np.shape(got) if got is not None else None
    m, n_H, n_W, n_C = X.shape
    if shape != expected.shape and pad > 0:
        hint = {
            (m, n_H + pad, n_W + pad, n_C): (
                "it pads one side only: pad zeros go on each of the four "
                "sides (top, bottom, left and right)"
            ),
            (m, n_H + 2 * pad, n_W, n_C): (
                "it pads the height only: the width (axis 2) gets pad zeros "
                "on each side too"
            ),
            (m, n_H, n_W + 2 * pad, n_C): (
                "it pads the width only: the height (axis 1) gets pad zeros "
                "on each side too"
            ),
        }.get(shape)
        if hint:
            raise mistake(
                f"{what} has shape {shape}, expected {expected.shape}", hint
            )
    if shape == expected.shape and pad > 0:
        border = np.asarray(got, dtype=float).copy()
        border[:, pad:-pad, pad:-pad, :] = 0
        if np.any(border != 0):
            raise mistake(
                f"{what} has non-zero values in the border",
                "the padding must be zeros (np.pad's constant_values=0, "
                "not 'edge' or 'reflect' padding)",
            )
    expect_array(got, expected, what, rtol=0, atol=0)
    if not np.array_equal(X, original):
        raise CheckFailure(f"{what} changed its input X; return a new array")


@exercise(
    CHAPTER,
    "1.3",
    "zero padding",
    points=1,
    names=["zero_pad"],
    asks="zero padding",
    forbidden=tripwire.PAD,
)
def zero_pad_visible(ns):
    rng = np.random.default_rng(1)
    _check_zero_pad(ns["zero_pad"], rng.standard_normal((4, 3, 3, 2)), 2)
    _check_zero_pad(ns["zero_pad"], rng.standard_normal((1, 2, 5, 1)), 1)


@zero_pad_visible.hidden_check
def zero_pad_hidden(ns, rng):
    for _ in range(6):
        shape = tuple(int(d) for d in rng.integers(1, 6, size=4))
        pad = int(rng.integers(0, 4))
        _check_zero_pad(ns["zero_pad"], rng.standard_normal(shape), pad)


# ---------------------------------------------- 1.4 one convolution step
def _check_single_step(func, a_slice, W, b):
    expected = reference.conv_single_step(a_slice, W, b)
    what = (
        f"conv_single_step(a_slice_prev and W of shape {a_slice.shape}, "
        f"b={b:.4g})"
    )
    got = func(a_slice.copy(), W.copy(), b)
    if got is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    if np.ndim(got) != 0:
        raise CheckFailure(
            f"{what} should return one number, got an array of "
            f"shape {np.shape(got)}: sum over all entries"
        )
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise CheckFailure(
            f"{what} should return a number, got {got!r}"
        ) from None
    if np.isclose(
        value, expected - b, rtol=1e-6, atol=1e-9
    ) and not np.isclose(b, 0):
        raise CheckFailure(
            f"{what} returned {value:.6g}, expected "
            f"{expected:.6g}: add the bias b"
        )
    products = np.sum(a_slice * W)
    hint = match_mistake(
        value,
        [
            (
                "the bias is added to every product: add b once, to the sum",
                float(products + b * a_slice.size)
                if a_slice.size > 1
                else None,
            ),
            (
                "it takes the mean of the products; a convolution step "
                "sums them",
                float(np.mean(a_slice * W) + b) if a_slice.size > 1 else None,
            ),
            (
                "the bias is subtracted: add it",
                float(products - b) if not np.isclose(b, 0) else None,
            ),
        ],
    )
    if hint and not np.isclose(value, expected, rtol=1e-6, atol=1e-9):
        raise mistake(
            f"{what} returned {value:.6g}, expected {expected:.6g}", hint
        )
    if not np.isclose(value, expected, rtol=1e-6, atol=1e-9):
        raise CheckFailure(
            f"{what} returned {value:.6g}, expected "
            f"{expected:.6g} (the sum of a_slice_prev * W, plus b)"
        )


@exercise(
    CHAPTER,
    "1.4",
    "one convolution step",
    points=1,
    names=["conv_single_step"],
)
def single_step_visible(ns):
    rng = np.random.default_rng(2)
    _check_single_step(
        ns["conv_single_step"],
        rng.standard_normal((3, 3, 4)),
        rng.standard_normal((3, 3, 4)),
        float(rng.standard_normal()),
    )


@single_step_visible.hidden_check
def single_step_hidden(ns, rng):
    for _ in range(5):
        f, c = int(rng.integers(1, 6)), int(rng.integers(1, 5))
        _check_single_step(
            ns["conv_single_step"],
            rng.standard_normal((f, f, c)),
            rng.standard_normal((f, f, c)),
            float(rng.standard_normal()),
        )
