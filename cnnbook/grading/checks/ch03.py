"""Checks of Chapter 3 (AlexNet). Expected values come from the arithmetic
module and from :mod:`cnnbook.models.alexnet`, never typed in."""

from __future__ import annotations

import numpy as np

from cnnbook import arithmetic as ar
from cnnbook.grading import tripwire
from cnnbook.grading.api import (
    CheckFailure,
    add_hint,
    exact_int,
    exercise,
    expect_array,
    expect_equal,
    match_mistake,
    mistake,
    type_name,
)
from cnnbook.models.alexnet import (
    CONV_SPEC,
    DENSE_UNITS,
    local_response_normalization,
)

CHAPTER = "ch03"

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


def reference_shapes(n, pool=3, padded=("same",), plus=1):
    """AlexNet's volumes after each convolution and pool for an n x n input.

    The other arguments give the typical wrong answers: another pooling
    window, 'same' padding everywhere or nowhere, the + 1 forgotten.
    """
    shapes, size = [], n
    for filters, f, s, padding, pool_after in CONV_SPEC:
        p = ar.same_padding(f) if padding in padded else 0
        size = max(1, (size + 2 * p - f) // s + plus)
        shapes.append((size, size, filters))
        if pool_after:
            size = max(1, (size - pool) // 2 + plus)
            shapes.append((size, size, filters))
    return shapes


SHAPE_MISTAKES = (
    (
        "AlexNet's pools are overlapping: 3x3 windows with stride 2, not 2x2",
        dict(pool=2),
    ),
    (
        "conv1 has no padding: 'same' padding applies to conv2 to conv5 only",
        dict(padded=("same", "valid")),
    ),
    (
        "conv2 to conv5 keep the size ('same' padding); without it every "
        "layer shrinks the volume",
        dict(padded=()),
    ),
    (
        "the + 1 of the output-size formula is missing: "
        "floor((n + 2p - f) / s) + 1",
        dict(plus=0),
    ),
)


def reference_parameters(num_classes=1000, input_size=227, channels=3):
    """Parameters of AlexNet's eight learned layers, by name."""
    counts, depth = {}, channels
    for i, (filters, f, _s, _p, _pool) in enumerate(CONV_SPEC, 1):
        counts[f"conv{i}"] = ar.conv_params(f, depth, filters)
        depth = filters
    h, w, c = reference_shapes(input_size)[-1]
    n_in = h * w * c
    for i, units in enumerate((*DENSE_UNITS, num_classes), 6):
        counts[f"fc{i}"] = ar.dense_params(n_in, units)
        n_in = units
    return counts


def _normalise_shape(value, what):
    try:
        items = list(value)
    except TypeError:
        items = None
    if items is None or len(items) != 3:
        raise CheckFailure(
            f"{what} should be a tuple (height, width, "
            f"channels), got {value!r}"
        )
    return tuple(exact_int(d, what) for d in items)


def _compare_shapes(func, n):
    result = func(n)
    if result is None:
        raise CheckFailure(
            f"alexnet_shapes({n}) returned None: did you forget `return`?"
        )
    expected = reference_shapes(n)
    result = list(result)
    try:
        normalised = [tuple(exact_int(d, "") for d in v) for v in result]
    except (TypeError, ValueError, CheckFailure):
        normalised = None
    if normalised is not None and normalised != expected:
        for hint, options in SHAPE_MISTAKES:
            wrong = reference_shapes(n, **options)
            if wrong != expected and normalised == wrong:
                raise mistake(f"alexnet_shapes({n})", hint)
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
    CHAPTER, "3.1", "AlexNet's shape table", points=2, names=["alexnet_shapes"]
)
def shapes_visible(ns):
    _compare_shapes(ns["alexnet_shapes"], 227)


@shapes_visible.hidden_check
def shapes_hidden(ns, rng):
    # sizes up to a million, not only a few hundred: a table of answers
    # made in the Lab beforehand cannot cover them (red team 9)
    for n in [*rng.integers(67, 400, size=3), *rng.integers(400, 10**6, 3)]:
        _compare_shapes(ns["alexnet_shapes"], int(n))


def _compare_parameters(func, num_classes, input_size):
    call = f"alexnet_parameters({num_classes}, {input_size})"
    result = func(num_classes, input_size)
    if not isinstance(result, dict):
        raise CheckFailure(
            f"{call} should return a dict from layer name to "
            f"parameters, got {type_name(result)}"
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
        try:
            expect_equal(
                result[name],
                expected[name],
                f"{call}['{name}'] (weights and biases)",
            )
        except CheckFailure as exc:
            raise add_hint(
                exc,
                _parameter_mistake(
                    result[name], name, expected, num_classes, input_size
                ),
            ) from None


def _parameter_mistake(got, name, expected, num_classes, input_size):
    units = dict(zip(PARAM_NAMES, [s[0] for s in CONV_SPEC]))
    units.update(fc6=DENSE_UNITS[0], fc7=DENSE_UNITS[1], fc8=num_classes)
    standard = reference_parameters(1000, 227)
    variants = [
        (
            "the biases are left out: every filter and unit has one",
            expected[name] - units[name],
        ),
        (
            "fc6's inputs depend on the input size: flatten the volume "
            "after pool5 for this input_size",
            standard["fc6"] if name == "fc6" and input_size != 227 else None,
        ),
        (
            "fc8 has num_classes units, not a fixed 1000",
            standard["fc8"] if name == "fc8" and num_classes != 1000 else None,
        ),
        (
            "one bias for the whole layer: every filter and unit has one",
            expected[name] - units[name] + 1,
        ),
    ]
    return match_mistake(got, variants)


@exercise(
    CHAPTER,
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
            int(rng.integers(67, 10**6)),
        )


def lrn_variant(a, k, n, alpha, beta, half=None, wrap=False, power=2):
    """LRN with a typical mistake: another window, wrap-around, |a|."""
    a = np.asarray(a, dtype=np.float64)
    half = n // 2 if half is None else half
    channels = a.shape[-1]
    values = np.abs(a) ** power
    window = np.zeros_like(a)
    for c in range(channels):
        if wrap:
            idx = [(c + j) % channels for j in range(-half, half + 1)]
            window[..., c] = values[..., idx].sum(axis=-1)
        else:
            lo, hi = max(0, c - half), min(channels, c + half + 1)
            window[..., c] = values[..., lo:hi].sum(axis=-1)
    return a / (k + alpha * window) ** beta


def _lrn_mistakes(a, k, n, alpha, beta):
    channels = a.shape[-1]
    return [
        (
            "alpha is divided by n: the formula multiplies the sum by "
            "alpha itself",
            lrn_variant(a, k, n, alpha / n, beta) if n > 1 else None,
        ),
        (
            "the window wraps around from the last channel to the first; "
            "it should stop at the first and last channel",
            lrn_variant(a, k, n, alpha, beta, wrap=True)
            if 2 * (n // 2) + 1 <= channels and n > 1
            else None,
        ),
        (
            "the window reaches n channels on each side; it spans n "
            "channels in all, n // 2 on each side",
            lrn_variant(a, k, n, alpha, beta, half=n) if n > 1 else None,
        ),
        (
            "the window sums the activations, not their squares",
            lrn_variant(a, k, n, alpha, beta, power=1),
        ),
    ]


def _compare_lrn(func, a, n, k, alpha, beta):
    expected = np.asarray(
        local_response_normalization(
            a, depth_radius=n // 2, bias=k, alpha=alpha, beta=beta
        )
    )
    result = func(a.copy(), k=k, n=n, alpha=alpha, beta=beta)
    try:
        arr = np.asarray(result, dtype=float)
    except Exception:  # noqa: BLE001 - the usual message says what it is
        arr = None
    if (
        arr is not None
        and arr.shape == a.shape
        and not np.allclose(arr, expected, rtol=1e-4, atol=1e-6)
    ):
        variants = [
            (hint, v)
            for hint, v in _lrn_mistakes(a, k, n, alpha, beta)
            if v is None or not np.allclose(v, expected, rtol=1e-4, atol=1e-6)
        ]
        hint = match_mistake(result, variants, rtol=1e-4, atol=1e-6)
        if hint:
            raise mistake(
                f"lrn(a of shape {a.shape}, k={k}, n={n}, alpha={alpha}, "
                f"beta={beta})",
                hint,
            )
    expect_array(
        result,
        expected,
        f"lrn(a of shape {a.shape}, k={k}, n={n}, alpha={alpha}, beta={beta})",
        rtol=1e-4,
        atol=1e-6,
    )


@exercise(
    CHAPTER,
    "3.3",
    "Local response normalisation",
    points=2,
    names=["lrn"],
    asks="local response normalisation",
    forbidden=tripwire.LRN,
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
