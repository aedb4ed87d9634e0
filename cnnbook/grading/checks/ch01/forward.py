"""Chapter 1, exercises 1.5 and 1.6: the forward passes of a convolution
and of pooling."""

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


def _dims(x):
    return "x".join(str(d) for d in np.shape(x))


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
