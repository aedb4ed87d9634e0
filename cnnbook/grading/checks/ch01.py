"""Checks of the Chapter 1 exercises (CNN layer arithmetic).

Visible checks use the examples of the exercise notebook; hidden checks
draw random shapes, strides and paddings and compare with
:mod:`cnnbook.arithmetic`, :mod:`cnnbook.reference` and ``numpy.pad``
(the reference code agrees with Keras's ``Conv2D``, ``MaxPooling2D`` and
``AveragePooling2D``: tests/test_ch01.py), so an answer that hard-codes
the visible examples earns nothing.
"""

from __future__ import annotations

import numpy as np

from cnnbook import arithmetic, reference
from cnnbook.grading import tripwire
from cnnbook.grading.api import (
    CheckFailure,
    exercise,
    expect_array,
    expect_equal,
    match_mistake,
    mistake,
)

CHAPTER = "ch01"
# The checks judge with numpy only (the reference code is tested against
# Keras's layers in tests/test_ch01.py): the grader need not load Keras.
NEEDS_KERAS = False

# What answers an exercise of this chapter; left out of the sandbox.
ANSWERS = {
    "cnnbook.reference": (["1.3", "1.4", "1.5", "1.6"], None),
    "cnnbook.arithmetic": (
        ["1.1", "1.2"],
        ["conv_output_size", "pool_output_size", "conv_params"],
    ),
}


def _dims(x):
    return "x".join(str(d) for d in np.shape(x))


def _expect_number(got, what):
    if got is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    if isinstance(got, bool) or not isinstance(got, (int, float, np.number)):
        raise CheckFailure(
            f"{what} should return a number, got {type(got).__name__} {got!r}"[
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


# ----------------------------------------------- 1.5 convolution forward
def _conv_case(rng, m, n_H, n_W, n_C_prev, f, n_C):
    A = rng.standard_normal((m, n_H, n_W, n_C_prev)).astype(np.float32)
    W = rng.standard_normal((f, f, n_C_prev, n_C)).astype(np.float32)
    b = rng.standard_normal(n_C).astype(np.float32)
    return A, W, b


def _check_conv(func, A, W, b, stride, pad, expected, against):
    what = (
        f"conv_forward(A_prev {_dims(A)}, W {_dims(W)}, stride={stride}, "
        f"pad={pad})"
    )
    got = func(A.copy(), W.copy(), b.copy(), stride, pad)
    hint = _conv_mistake(got, A, W, b, stride, pad, np.asarray(expected))
    if hint:
        raise mistake(what, hint)
    if got is not None and np.shape(got) == np.shape(expected):
        bias_free = np.asarray(expected) - b
        if np.allclose(got, bias_free, rtol=1e-4, atol=1e-4):
            raise CheckFailure(
                f"{what}: the values lack the bias b[c] of each filter c"
            )
        flipped = reference.conv_forward(A, W[::-1, ::-1], b, stride, pad)
        if np.allclose(got, flipped, rtol=1e-4, atol=1e-4) and not np.allclose(
            flipped, expected, rtol=1e-4, atol=1e-4
        ):
            raise CheckFailure(
                f"{what}: your filter is flipped; a CNN layer "
                "multiplies each window by W as it is, without "
                "turning W around"
            )
    expect_array(
        got,
        expected,
        f"{what} (compared with {against})",
        rtol=1e-4,
        atol=1e-4,
    )


def _conv_windows(A, W, b, pad, n_H, n_W, step):
    """Windows placed ``step`` pixels apart, ``n_H x n_W`` of them."""
    A = np.pad(np.asarray(A, float), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    f = W.shape[0]
    Z = np.zeros((A.shape[0], n_H, n_W, W.shape[-1]))
    for h in range(n_H):
        for w in range(n_W):
            window = A[:, h * step : h * step + f, w * step : w * step + f]
            if window.shape[1:3] != (f, f):
                return None
            Z[:, h, w] = np.tensordot(window, W, axes=([1, 2, 3], [0, 1, 2]))
    return Z + b


def _quietly(func, *args):
    """``func(*args)``, or None where the mistaken variant cannot apply."""
    try:
        return func(*args)
    except (ValueError, IndexError):
        return None


def _recognise(got, expected, variants, tol):
    """The hint of the variant ``got`` equals (never one that is right)."""
    variants = [
        (hint, None if v is None else np.asarray(v, dtype=float))
        for hint, v in variants
    ]
    variants = [
        (hint, v)
        for hint, v in variants
        if v is not None
        and not (v.shape == expected.shape and np.allclose(v, expected, **tol))
    ]
    return match_mistake(got, variants, **tol)


def _conv_mistake(got, A, W, b, stride, pad, expected):
    """The typical mistake ``got`` shows, if one is recognised."""
    if got is None:
        return None
    try:
        got = np.asarray(got, dtype=float)
    except Exception:  # noqa: BLE001 - not array-like: the usual message
        return None
    m, n_H, n_W, n_C = expected.shape
    conv = reference.conv_forward
    variants = [
        (
            "the output is one pixel short in each direction: the size is "
            "floor((n + 2 pad - f) / stride) + 1, with the + 1",
            expected[:, :-1, :-1] if n_H > 1 and n_W > 1 else None,
        ),
        (
            "every filter gets the bias of the first one: filter c adds "
            "its own b[c]",
            expected - b + b[0],
        ),
        (
            "the windows move one pixel at a time: output position h "
            "starts at row h * stride of the padded input",
            _conv_windows(A, W, b, pad, n_H, n_W, 1) if stride > 1 else None,
        ),
    ]
    if pad:
        for sides in (((0, pad), (0, pad)), ((pad, 0), (pad, 0))):
            padded = np.pad(A, ((0, 0), *sides, (0, 0)))
            variants.append(
                (
                    "it pads one side only: pad zeros go on each side of "
                    "the height and width",
                    _quietly(conv, padded, W, b, stride, 0),
                )
            )
        variants.append(
            (
                "the padding is left out: zero-pad A_prev by pad first",
                _quietly(conv, A, W, b, stride, 0),
            )
        )
    return _recognise(got, expected, variants, dict(rtol=1e-4, atol=1e-4))


@exercise(
    CHAPTER,
    "1.5",
    "convolution forward",
    points=3,
    names=["conv_forward"],
    asks="the convolution",
    forbidden=tripwire.CONV,
)
def conv_visible(ns):
    rng = np.random.default_rng(3)
    A, W, b = _conv_case(rng, 2, 5, 7, 3, 3, 4)
    for stride, pad in [(1, 0), (2, 1)]:
        expected = reference.conv_forward(A, W, b, stride, pad)
        _check_conv(
            ns["conv_forward"],
            A,
            W,
            b,
            stride,
            pad,
            expected,
            "the reference convolution",
        )


@conv_visible.hidden_check
def conv_hidden(ns, rng):
    for _ in range(5):
        f = int(rng.choice([1, 2, 3, 5]))
        pad = int(rng.integers(0, 3))
        stride = int(rng.integers(1, 4))
        n_H = int(rng.integers(max(1, f - 2 * pad), 9))
        n_W = int(rng.integers(max(1, f - 2 * pad), 9))
        A, W, b = _conv_case(
            rng,
            int(rng.integers(1, 3)),
            n_H,
            n_W,
            int(rng.integers(1, 4)),
            f,
            int(rng.integers(1, 5)),
        )
        _check_conv(
            ns["conv_forward"],
            A,
            W,
            b,
            stride,
            pad,
            reference.conv_forward(A, W, b, stride, pad),
            "the reference convolution",
        )


# --------------------------------------------------- 1.6 pooling forward
def _check_pool(func, A, f, stride, mode, expected, against):
    what = (
        f"pool_forward(A_prev {_dims(A)}, f={f}, stride={stride}, "
        f"mode={mode!r})"
    )
    got = func(A.copy(), f, stride, mode)
    hint = _pool_mistake(got, A, f, stride, mode, np.asarray(expected))
    if hint:
        raise mistake(what, hint)
    if got is not None and np.shape(got) == np.shape(expected):
        other = reference.pool_forward(
            A, f, stride, "average" if mode == "max" else "max"
        )
        if not np.allclose(expected, other) and np.allclose(got, other):
            raise CheckFailure(
                f"{what} computed the other mode: "
                f"mode={mode!r} should take the "
                f"{'maximum' if mode == 'max' else 'mean'}"
            )
    expect_array(
        got,
        expected,
        f"{what} (compared with {against})",
        rtol=1e-5,
        atol=1e-5,
    )


def _pool_windows(A, f, step, mode, n_H, n_W, axes=(1, 2)):
    reduce = np.max if mode == "max" else np.mean
    out = np.zeros((A.shape[0], n_H, n_W, A.shape[3]))
    for h in range(n_H):
        for w in range(n_W):
            window = A[:, h * step : h * step + f, w * step : w * step + f]
            if window.shape[1:3] != (f, f):
                return None
            value = reduce(window, axis=axes)
            out[:, h, w, :] = (
                value if axes == (1, 2) else np.asarray(value)[:, None]
            )
    return out


def _pool_mistake(got, A, f, stride, mode, expected):
    if got is None:
        return None
    try:
        got = np.asarray(got, dtype=float)
    except Exception:  # noqa: BLE001
        return None
    m, n_H, n_W, n_C = expected.shape
    across = _pool_windows(A, f, stride, mode, n_H, n_W, (1, 2, 3))
    together = (
        "the channels are pooled together: take the "
        f"{'maximum' if mode == 'max' else 'mean'} over each window's "
        "height and width only (axis=(1, 2)), channel by channel"
    )
    variants = [
        (
            "the window ignores the stride: output position h starts at "
            "row h * stride of the input",
            _pool_windows(A, f, 1, mode, n_H, n_W) if stride > 1 else None,
        ),
        (
            "the output size uses f as the stride: the windows move "
            "stride pixels at a time",
            _quietly(reference.pool_forward, A, f, f, mode)
            if stride != f
            else None,
        ),
        (
            "the output is one pixel short in each direction: the size is "
            "floor((n - f) / stride) + 1, with the + 1",
            expected[:, :-1, :-1] if n_H > 1 and n_W > 1 else None,
        ),
        (together, across if n_C > 1 else None),
        (together, across[..., :1] if n_C > 1 else None),
    ]
    return _recognise(got, expected, variants, dict(rtol=1e-5, atol=1e-5))


@exercise(
    CHAPTER,
    "1.6",
    "pooling forward (max and average)",
    points=2,
    names=["pool_forward"],
    asks="the pooling",
    forbidden=tripwire.POOL,
)
def pool_visible(ns):
    rng = np.random.default_rng(4)
    A = rng.standard_normal((2, 5, 5, 3))
    # (2, 2) first: there a missing + 1 cannot pass for a stride of f
    for f, stride in [(2, 2), (3, 2)]:
        for mode in ("max", "average"):
            _check_pool(
                ns["pool_forward"],
                A,
                f,
                stride,
                mode,
                reference.pool_forward(A, f, stride, mode),
                "the reference pooling",
            )


@pool_visible.hidden_check
def pool_hidden(ns, rng):
    for k in range(6):
        f = int(rng.integers(1, 4))
        stride = int(rng.integers(1, 4))
        A = rng.standard_normal(
            (
                int(rng.integers(1, 3)),
                int(rng.integers(f, 9)),
                int(rng.integers(f, 9)),
                int(rng.integers(1, 4)),
            )
        ).astype(np.float32)
        mode = ("max", "average")[k % 2]
        _check_pool(
            ns["pool_forward"],
            A,
            f,
            stride,
            mode,
            reference.pool_forward(A, f, stride, mode),
            f"the reference {mode} pooling",
        )
