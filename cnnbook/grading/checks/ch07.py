"""Checks of the Chapter 7 exercises (the case studies side by side).

7.1 ``macs``: multiply-accumulates of a Keras model for one image.
7.2 ``activation_values``: values output by all layers for one image.
7.3 ``pareto_front``: the networks no other beats on accuracy and cost.
7.4 ``place_run``: a result against the recorded range of its lab.

The expected values are computed here, from the models' layers (kernel
shapes and output shapes) and from plain Python definitions; the hidden
checks draw random networks and random result tables.
"""

from __future__ import annotations

import math

from cnnbook.grading.api import (
    CheckFailure,
    call_learner,
    exercise,
    expect_equal,
)
from cnnbook.kinds import is_layer

CHAPTER = "ch07"

# What answers an exercise of this chapter; left out of the grading sandbox.
ANSWERS = {
    "cnnbook.compare": (["7.1", "7.2", "7.3"], ["cost", "Cost"]),
    # and the private helpers that compute a row (red team 8: 7.1 answered
    # by summing _layer_multiplications over the layers)
    "cnnbook.arithmetic": (
        ["7.1"],
        [
            "layer_table",
            "LayerTable",
            "_layer_multiplications",
            "_output_shape",
        ],
    ),
    "cnnbook.records": (["7.4"], ["Range", "expected_range"]),
}


def _outputs(layer):
    out = layer.output
    return out if isinstance(out, (list, tuple)) else [out]


def _layer_macs(layer):
    kind = type(layer).__name__
    shape = tuple(_outputs(layer)[0].shape)
    if kind == "Conv2D":
        return math.prod(shape[1:-1]) * math.prod(layer.kernel.shape)
    if kind == "Dense":
        positions = math.prod(shape[1:-1]) if len(shape) > 2 else 1
        return positions * math.prod(layer.kernel.shape)
    return 0


def _expected_macs(model):
    return sum(_layer_macs(layer) for layer in model.layers)


def _expected_activations(model):
    return sum(
        math.prod(o.shape[1:])
        for layer in model.layers
        if not is_layer(layer, "InputLayer")
        for o in _outputs(layer)
    )


def _random_convnet(rng):
    """A small random network: convolutions (some strided or 'valid'),
    pooling, batch normalisation, a flatten and one or two dense layers."""
    import keras  # delays keras
    from keras import layers  # delays keras

    size = int(rng.integers(12, 33))
    x = inputs = keras.Input((size, size, int(rng.integers(1, 4))))
    for _ in range(int(rng.integers(1, 4))):
        f = int(rng.choice([1, 3, 5]))
        fits = x.shape[1] >= f + 2
        x = layers.Conv2D(
            int(rng.integers(2, 9)),
            f,
            strides=int(rng.choice([1, 2])) if fits else 1,
            padding=str(rng.choice(["same", "valid"])) if fits else "same",
            use_bias=bool(rng.integers(0, 2)),
        )(x)
        if rng.random() < 0.5:
            x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if rng.random() < 0.5 and x.shape[1] >= 4:
            x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    if rng.random() < 0.5:
        x = layers.Dense(int(rng.integers(4, 17)), activation="relu")(x)
    outputs = layers.Dense(int(rng.integers(2, 11)))(x)
    return keras.Model(inputs, outputs)


def _lenet():
    from cnnbook.models import lenet5  # delays keras

    return lenet5()


# ------------------------------------------------------------------ 7.1
def _diagnose_macs(model, got):
    """Name the usual mistakes when ``got`` is wrong."""
    convs = [
        layer
        for layer in model.layers
        if type(layer).__name__ in ("Conv2D", "Dense")
    ]
    weights_only = sum(math.prod(layer.kernel.shape) for layer in convs)
    with_bias = _expected_macs(model) + sum(
        math.prod(_outputs(layer)[0].shape[1:])
        for layer in convs
        if layer.use_bias
    )
    if got == weights_only:
        return (
            "you counted each weight once; a convolution uses every weight "
            "at every position of its output, so multiply by the output's "
            "height times width"
        )
    if got == with_bias:
        return (
            "you counted the biases; adding a bias is an addition, not a "
            "multiply-accumulate"
        )
    if got == model.count_params():
        return "that is the number of parameters, not of MACs"
    return None


def _check_macs(func, model, what):
    got = call_learner(func, model, what=what)
    if got is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    expected = _expected_macs(model)
    if got != expected:
        hint = _diagnose_macs(model, got)
        if hint:
            raise CheckFailure(f"{what}: {hint}")
    expect_equal(got, expected, what)


@exercise(CHAPTER, "7.1", "multiply-accumulates", points=3, names=["macs"])
def macs_visible(ns):
    _check_macs(ns["macs"], _lenet(), "macs(lenet5())")


@macs_visible.hidden_check
def macs_hidden(ns, rng):
    for _ in range(3):
        _check_macs(ns["macs"], _random_convnet(rng), "macs(a random network)")


# ------------------------------------------------------------------ 7.2
def _check_activations(func, model, what):
    got = call_learner(func, model, what=what)
    if got is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    expected = _expected_activations(model)
    inputs = math.prod(model.inputs[0].shape[1:])
    if got == expected + inputs:
        raise CheckFailure(
            f"{what}: you counted the input image too; count what the "
            "layers output"
        )
    if isinstance(got, int) and got < expected and got > 0:
        convs_only = sum(
            math.prod(layer.output.shape[1:])
            for layer in model.layers
            if type(layer).__name__ in ("Conv2D", "Dense")
        )
        if got == convs_only:
            raise CheckFailure(
                f"{what}: count the output of every layer (pooling, "
                "normalisation and activation layers store theirs too), "
                "not only of the convolutions and dense layers"
            )
    expect_equal(got, expected, what)


@exercise(
    CHAPTER,
    "7.2",
    "activation memory",
    points=2,
    names=["activation_values"],
)
def activations_visible(ns):
    _check_activations(
        ns["activation_values"], _lenet(), "activation_values(lenet5())"
    )


@activations_visible.hidden_check
def activations_hidden(ns, rng):
    for _ in range(3):
        _check_activations(
            ns["activation_values"],
            _random_convnet(rng),
            "activation_values(a random network)",
        )


# ------------------------------------------------------------------ 7.3
def _expected_front(results):
    front = []
    for a in results:
        dominated = any(
            b["accuracy"] >= a["accuracy"]
            and b["macs"] <= a["macs"]
            and (b["accuracy"] > a["accuracy"] or b["macs"] < a["macs"])
            for b in results
        )
        if not dominated:
            front.append(a["name"])
    return sorted(front)


def _check_front(func, results, what):
    got = call_learner(func, [dict(r) for r in results], what=what)
    if got is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    try:
        got = sorted(got)
    except TypeError:
        raise CheckFailure(
            f"{what} should return a list of names, got {got!r}"[:200]
        ) from None
    expected = _expected_front(results)
    if got != expected:
        best = max(results, key=lambda r: r["accuracy"])["name"]
        cheapest = min(results, key=lambda r: r["macs"])["name"]
        if got == [best] or got == sorted({best, cheapest}):
            raise CheckFailure(
                f"{what}: the front is not only the extremes; a network "
                "belongs to it unless another one is at least as accurate "
                "AND at most as costly (and better on one of the two)"
            )
        raise CheckFailure(f"{what}: got {got}, expected {expected}")


FRONT_EXAMPLE = [
    {"name": "A", "accuracy": 0.90, "macs": 100},
    {"name": "B", "accuracy": 0.93, "macs": 400},
    {"name": "C", "accuracy": 0.92, "macs": 900},
    {"name": "D", "accuracy": 0.94, "macs": 2000},
    {"name": "E", "accuracy": 0.89, "macs": 150},
]


@exercise(
    CHAPTER, "7.3", "accuracy-cost front", points=3, names=["pareto_front"]
)
def front_visible(ns):
    _check_front(ns["pareto_front"], FRONT_EXAMPLE, "pareto_front(example)")


@front_visible.hidden_check
def front_hidden(ns, rng):
    for size in (4, 7, 12):
        results = [
            {
                "name": f"net{i}",
                "accuracy": round(float(rng.uniform(0.8, 0.95)), 3),
                "macs": int(rng.integers(1, 6)) * 100,
            }
            for i in range(size)
        ]
        _check_front(
            ns["pareto_front"], results, f"pareto_front({size} networks)"
        )


# ------------------------------------------------------------------ 7.4
def _expected_place(accuracy, recorded):
    low, high = min(recorded), max(recorded)
    margin = max(high - low, 0.005)
    if accuracy < low - margin:
        return "lower"
    if accuracy > high + margin:
        return "higher"
    return "normal"


PLACE_CASES = [
    (0.930, [0.925, 0.931, 0.934]),  # inside
    (0.918, [0.925, 0.931, 0.934]),  # below, within one spread
    (0.910, [0.925, 0.931, 0.934]),  # far below
    (0.950, [0.925, 0.931, 0.934]),  # far above
    (0.9440, [0.9421]),  # one record: half a point either way
    (0.9360, [0.9421]),
]


def _check_place(func, accuracy, recorded):
    what = f"place_run({accuracy}, {recorded})"
    got = call_learner(func, accuracy, list(recorded), what=what)
    expected = _expected_place(accuracy, recorded)
    if got != expected and got in ("lower", "higher"):
        low, high = min(recorded), max(recorded)
        if low <= accuracy <= high or (
            low - max(high - low, 0.005) <= accuracy < low
        ):
            raise CheckFailure(
                f"{what}: got {got!r}, expected {expected!r}: a result "
                "within one spread of the recorded range is what the seed "
                "alone produces"
            )
    expect_equal(got, expected, what)


@exercise(
    CHAPTER,
    "7.4",
    "your run against the record",
    points=2,
    names=["place_run"],
)
def place_visible(ns):
    for accuracy, recorded in PLACE_CASES:
        _check_place(ns["place_run"], accuracy, recorded)


@place_visible.hidden_check
def place_hidden(ns, rng):
    for _ in range(8):
        runs = int(rng.integers(1, 6))
        recorded = [
            round(float(rng.uniform(0.88, 0.95)), 4) for _ in range(runs)
        ]
        accuracy = round(float(rng.uniform(0.85, 0.97)), 4)
        _check_place(ns["place_run"], accuracy, recorded)
