"""Checks of Chapter 3 (AlexNet). Expected values come from the arithmetic
module and from :mod:`cnnbook.models.alexnet`, never typed in."""

from __future__ import annotations

import numpy as np

from cnnbook import arithmetic as ar
from cnnbook.grading import CheckFailure, exercise, expect_array, expect_equal
from cnnbook.models.alexnet import (
    CONV_SPEC,
    DENSE_UNITS,
    local_response_normalization,
)

# What answers an exercise of this chapter; left out of the sandbox.
ANSWERS = {"cnnbook.models.alexnet": (["3.1", "3.2", "3.3"], None)}

SHAPE_NAMES = (
    "conv1",
    "pool1",
    "conv2",
    "pool2",
    "conv3",
    "conv4",
    "conv5",
    "pool5",
)
PARAM_NAMES = (
    "conv1",
    "conv2",
    "conv3",
    "conv4",
    "conv5",
    "fc6",
    "fc7",
    "fc8",
)


def reference_shapes(n, channels=3):
    """AlexNet's volumes after each convolution and pool for an n x n input."""
    shapes, size = [], n
    for filters, f, s, padding, pool in CONV_SPEC:
        p = ar.same_padding(f) if padding == "same" else 0
        size = ar.conv_output_size(size, f, p, s)
        shapes.append((size, size, filters))
        if pool:
            size = ar.pool_output_size(size, 3, 2)
            shapes.append((size, size, filters))
    return shapes


def reference_parameters(num_classes=1000, input_size=227, channels=3):
    """Parameters of AlexNet's eight learned layers, by name."""
    counts, depth = {}, channels
    for i, (filters, f, _s, _p, _pool) in enumerate(CONV_SPEC, 1):
        counts[f"conv{i}"] = ar.conv_params(f, depth, filters)
        depth = filters
    h, w, c = reference_shapes(input_size, channels)[-1]
    n_in = h * w * c
    for i, units in enumerate((*DENSE_UNITS, num_classes), 6):
        counts[f"fc{i}"] = ar.dense_params(n_in, units)
        n_in = units
    return counts


def _normalise_shape(value, what):
    try:
        return tuple(int(d) for d in value)
    except (TypeError, ValueError):
        raise CheckFailure(
            f"{what} should be a tuple (height, width, "
            f"channels), got {value!r}"
        ) from None


def _compare_shapes(func, n):
    result = func(n)
    if result is None:
        raise CheckFailure(
            f"alexnet_shapes({n}) returned None: did you forget `return`?"
        )
    expected = reference_shapes(n)
    result = list(result)
    if len(result) != len(expected):
        raise CheckFailure(
            f"alexnet_shapes({n}) should list {len(expected)} volumes "
            f"({', '.join(SHAPE_NAMES)}), got {len(result)}"
        )
    for name, got, want in zip(SHAPE_NAMES, result, expected):
        got = _normalise_shape(got, f"the {name} entry")
        if got != want:
            raise CheckFailure(
                f"alexnet_shapes({n}): after {name} the volume is {want[0]}x"
                f"{want[1]}x{want[2]}, you have {got}"
            )


@exercise(
    "ch03", "3.1", "AlexNet's shape table", points=2, names=["alexnet_shapes"]
)
def shapes_visible(ns):
    _compare_shapes(ns["alexnet_shapes"], 227)


@shapes_visible.hidden_check
def shapes_hidden(ns, rng):
    for n in rng.integers(67, 400, size=6):
        _compare_shapes(ns["alexnet_shapes"], int(n))


def _compare_parameters(func, num_classes, input_size):
    call = f"alexnet_parameters({num_classes}, {input_size})"
    result = func(num_classes, input_size)
    if not isinstance(result, dict):
        raise CheckFailure(
            f"{call} should return a dict from layer name to "
            f"parameters, got {type(result).__name__}"
        )
    expected = reference_parameters(num_classes, input_size)
    missing = [k for k in expected if k not in result]
    if missing:
        raise CheckFailure(f"{call} lacks the layer(s) {', '.join(missing)}")
    extra = [k for k in result if k not in expected]
    if extra:
        raise CheckFailure(
            f"{call} has unexpected keys {extra}; use {', '.join(PARAM_NAMES)}"
        )
    for name in PARAM_NAMES:
        expect_equal(
            result[name],
            expected[name],
            f"{call}['{name}'] (weights and biases)",
        )


@exercise(
    "ch03",
    "3.2",
    "Where AlexNet's parameters are",
    points=2,
    names=["alexnet_parameters"],
)
def parameters_visible(ns):
    _compare_parameters(ns["alexnet_parameters"], 1000, 227)
    _compare_parameters(ns["alexnet_parameters"], 10, 227)


@parameters_visible.hidden_check
def parameters_hidden(ns, rng):
    for _ in range(5):
        _compare_parameters(
            ns["alexnet_parameters"],
            int(rng.integers(2, 5000)),
            int(rng.integers(67, 400)),
        )


def _compare_lrn(func, a, n, k, alpha, beta):
    expected = np.asarray(
        local_response_normalization(
            a, depth_radius=n // 2, bias=k, alpha=alpha, beta=beta
        )
    )
    result = func(a.copy(), k=k, n=n, alpha=alpha, beta=beta)
    expect_array(
        result,
        expected,
        f"lrn(a of shape {a.shape}, k={k}, n={n}, alpha={alpha}, beta={beta})",
        rtol=1e-4,
        atol=1e-6,
    )


@exercise(
    "ch03", "3.3", "Local response normalisation", points=2, names=["lrn"]
)
def lrn_visible(ns):
    rng = np.random.default_rng(3)
    a = rng.normal(0, 2, size=(2, 4, 4, 8)).astype(np.float32)
    _compare_lrn(ns["lrn"], a, 5, 2.0, 0.5, 0.75)
    _compare_lrn(ns["lrn"], np.abs(a), 3, 1.0, 1.0, 0.5)


@lrn_visible.hidden_check
def lrn_hidden(ns, rng):
    for _ in range(5):
        shape = (
            int(rng.integers(1, 3)),
            int(rng.integers(1, 6)),
            int(rng.integers(1, 6)),
            int(rng.integers(1, 12)),
        )
        a = rng.normal(0, 2, size=shape).astype(np.float32)
        _compare_lrn(
            ns["lrn"],
            a,
            int(rng.choice([1, 3, 5, 7])),
            float(rng.uniform(0.5, 3)),
            float(rng.uniform(0.01, 1)),
            float(rng.uniform(0.3, 1)),
        )
