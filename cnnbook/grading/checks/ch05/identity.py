"""Chapter 5, exercise 5.4: a residual block with zero weights is the
identity (numpy)."""

from __future__ import annotations

import numpy as np

from cnnbook.grading.api import (
    exercise,
    expect_array,
    match_mistake,
    mistake,
)

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch05', the folder's name


# ------------------------------------------ 5.4 zero weights: the identity
def residual_forward_reference(a, W1, b1, W2, b2):
    """relu(relu(a W1 + b1) W2 + b2 + a), one example per row."""
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    return relu(relu(a @ W1 + b1) @ W2 + b2 + a)


def _forward_mistakes(a, W1, b1, W2, b2):
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    hidden = relu(a @ W1 + b1)
    return [
        (
            "the last ReLU is missing: relu(relu(a W1 + b1) W2 + b2 + a)",
            hidden @ W2 + b2 + a,
        ),
        (
            "the shortcut is added after the last ReLU; it goes inside: "
            "relu(z + a)",
            relu(hidden @ W2 + b2) + a,
        ),
        (
            "the shortcut a is not added",
            relu(hidden @ W2 + b2),
        ),
        (
            "the first layer has no ReLU: the hidden layer is relu(a W1 + b1)",
            relu((a @ W1 + b1) @ W2 + b2 + a),
        ),
    ]


def _check_forward(func, a, W1, b1, W2, b2, what, exact=False):
    got = func(a.copy(), W1.copy(), b1.copy(), W2.copy(), b2.copy())
    expected = residual_forward_reference(a, W1, b1, W2, b2)
    tol = dict(rtol=0, atol=0) if exact else {}
    try:
        arr = np.asarray(got, dtype=float)
    except Exception:  # noqa: BLE001 - expect_array says what it is
        arr = None
    if arr is not None and arr.shape == expected.shape:
        if not np.allclose(arr, expected, **(tol or {"rtol": 1e-4})):
            variants = [
                (h, v)
                for h, v in _forward_mistakes(a, W1, b1, W2, b2)
                if not np.allclose(v, expected)
            ]
            hint = match_mistake(arr, variants, rtol=1e-5, atol=1e-8)
            if hint:
                raise mistake(what, hint)
    expect_array(got, expected, what, **tol)


@exercise(
    CHAPTER,
    "5.4",
    "a residual block with zero weights",
    points=2,
    names=["residual_forward"],
)
def zero_visible(ns):
    func = ns["residual_forward"]
    rng = np.random.default_rng(54)
    m, n, k = 4, 6, 5
    a = rng.normal(size=(m, n))
    W1, b1 = rng.normal(size=(n, k)), rng.normal(size=k)
    W2, b2 = rng.normal(size=(k, n)), rng.normal(size=n)
    _check_forward(
        func, a, W1, b1, W2, b2, "residual_forward with random weights"
    )
    zeros = (np.zeros((n, k)), np.zeros(k), np.zeros((k, n)), np.zeros(n))
    non_negative = np.abs(a)
    _check_forward(
        func,
        non_negative,
        *zeros,
        "residual_forward with zero weights on a non-negative "
        "input (should return the input itself)",
        exact=True,
    )
    _check_forward(
        func,
        a,
        *zeros,
        "residual_forward with zero weights on an input with "
        "negative entries (should return relu(a))",
        exact=True,
    )


@zero_visible.hidden_check
def zero_hidden(ns, rng):
    func = ns["residual_forward"]
    for _ in range(10):
        m, n, k = (int(v) for v in rng.integers(1, 12, 3))
        a = rng.normal(size=(m, n))
        params = (
            rng.normal(size=(n, k)),
            rng.normal(size=k),
            rng.normal(size=(k, n)),
            rng.normal(size=n),
        )
        _check_forward(func, a, *params, f"residual_forward ({m}x{n} input)")
        _check_forward(
            func,
            np.abs(a),
            *(np.zeros_like(p) for p in params),
            "residual_forward with zero weights",
            exact=True,
        )
