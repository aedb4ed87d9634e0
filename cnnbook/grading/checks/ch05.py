"""Checks of the Chapter 5 exercises (ResNet).

The block exercises are compared with the reference blocks of
:mod:`cnnbook.models.resnet` twice: layer by layer (type, output shape,
parameters; the first layer that differs is named) and numerically: the
reference block gets random weights, they are copied into the learner's
block layer by layer, and both must give the same output on random inputs.
ResNet-50 is compared with ``keras.applications.ResNet50(weights=None)``.
The numpy block is compared with a reference computed here, and the
depth-curve question with the value computed here from the curves the
check hands over. Hidden checks draw other shapes, weights and curves.
"""

from __future__ import annotations

import math

import numpy as np

from cnnbook.grading.api import (
    CheckFailure,
    add_hint,
    block_model,
    exercise,
    expect_array,
    expect_same_layers,
    match_mistake,
    mistake,
    parent_layers,
)
from cnnbook.kinds import is_layer
from cnnbook.models import resnet

CHAPTER = "ch05"

# What answers an exercise of this chapter; left out of the sandbox.
ANSWERS = {"cnnbook.models.resnet": (["5.1", "5.2", "5.3"], None)}
KERAS_APPLICATIONS = {"resnet": ["5.3"]}


# ------------------------------------------------------------------ helpers
class _InputOrder:
    """A model whose ``layers`` are listed by distance from the input.

    Keras lists the layers of two parallel branches (main path and
    shortcut) in the order they were created, so two correct blocks built
    in a different order would not line up. Ordering by the longest path
    from the input (then type, shape and parameters) gives the same list
    whichever branch was written first.
    """

    def __init__(self, model):
        depth, keys = {}, []
        parents = parent_layers(model)
        for index, layer in enumerate(model.layers):
            depth[layer.name] = 1 + max(
                (depth.get(p, 0) for p in parents.get(layer.name, [])),
                default=-1,
            )
            out = layer.output
            shape = tuple(out.shape) if hasattr(out, "shape") else ()
            keys.append(
                (
                    (
                        depth[layer.name],
                        type(layer).__name__,
                        str(shape),
                        layer.count_params(),
                        index,
                    ),
                    layer,
                )
            )
        self.layers = [layer for _, layer in sorted(keys, key=lambda k: k[0])]
        self._model = model

    def count_params(self):
        return self._model.count_params()


def _block_model(func, input_shape, *args, what="it", **kwargs):
    try:
        return block_model(func, [input_shape], *args, what=what, **kwargs)
    except CheckFailure as exc:
        text = str(exc).lower()
        if " raised " in text and ("incompatible" in text or "shape" in text):
            raise add_hint(
                exc,
                "the two paths must have the same shape where they are "
                "added: the middle convolution keeps the size "
                "(padding='same'), the last one has F3 filters, and a "
                "block that changes the shape needs the projection shortcut",
            ) from None
        raise


def _randomise(model, rng):
    """Random weights, and batch-norm statistics far from their defaults."""
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D" or kind == "Dense":
            weights = layer.get_weights()
            fan_in = int(np.prod(weights[0].shape[:-1]))
            new = [rng.normal(0, 1 / math.sqrt(fan_in), weights[0].shape)]
            new += [rng.normal(0, 0.1, w.shape) for w in weights[1:]]
            layer.set_weights([w.astype("float32") for w in new])
        elif kind == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0, 0.2, beta.shape).astype("float32"),
                    rng.normal(0, 0.2, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, var.shape).astype("float32"),
                ]
            )


def _copy_weights(source, target):
    for a, b in zip(_InputOrder(source).layers, _InputOrder(target).layers):
        try:
            b.set_weights(a.get_weights())
        except ValueError as exc:
            raise CheckFailure(
                f"layer '{b.name}' cannot take the weights of "
                f"the specification's layer: {exc}"
            ) from exc


def _block_mistake(learner, ref):
    """The typical mistake of a bottleneck block that differs from the spec."""

    def count(model, kind):
        return sum(is_layer(x, kind) for x in model.layers)

    projection = count(ref, "Conv2D") == 4
    convs = [x.get_config() for x in learner.layers if is_layer(x, "Conv2D")]
    if projection and count(learner, "Conv2D") == 3:
        return (
            "the shortcut needs a 1x1 convolution (with the block's stride "
            "and F3 filters) so that it has the shape of the main path"
        )
    if count(learner, "BatchNormalization") < count(ref, "BatchNormalization"):
        if projection and count(learner, "Conv2D") == 4:
            bns = count(learner, "BatchNormalization")
            if bns == 3:
                return (
                    "the projection shortcut needs batch normalisation "
                    "after its 1x1 convolution, like every convolution of "
                    "the main path"
                )
        return "every convolution is followed by batch normalisation"
    if any(c.get("activation") not in (None, "linear") for c in convs):
        return (
            "the ReLU comes after batch normalisation (a separate "
            "Activation layer), not inside the convolution"
        )
    if any(
        tuple(c["strides"]) != (1, 1) and tuple(c["kernel_size"]) != (1, 1)
        for c in convs
    ):
        return (
            "the stride goes on the first 1x1 convolution (and the "
            "shortcut), not on the middle one"
        )
    if any(
        c["padding"] != "same" and tuple(c["kernel_size"]) != (1, 1)
        for c in convs
    ):
        return "the middle convolution keeps the size: padding='same'"
    if count(learner, "Activation") < count(ref, "Activation"):
        return (
            "a ReLU is missing: one after each of the first two batch "
            "normalisations and one after the addition"
        )
    if count(learner, "Add") != 1:
        return "the shortcut is added once, with an Add layer"
    order = [type(x).__name__ for x in _InputOrder(learner).layers]
    if (
        "Add" in order
        and order[-1] != "Activation"
        and order[-2:]
        != [
            "Add",
            "Activation",
        ]
    ):
        return (
            "the ReLU comes after the addition, not before it: "
            "relu(main path + shortcut)"
        )
    return None


def _output_mistake(got, ref, x, name):
    """Whether ``got`` is the block with its last ReLU misplaced."""
    import keras

    main = keras.Model(ref.inputs, ref.get_layer(f"{name}_3_bn").output)
    main = keras.ops.convert_to_numpy(main(x, training=False))
    if any(layer.name == f"{name}_0_bn" for layer in ref.layers):
        short = keras.Model(ref.inputs, ref.get_layer(f"{name}_0_bn").output)
        short = keras.ops.convert_to_numpy(short(x, training=False))
    else:
        short = x
    return match_mistake(
        got,
        [
            (
                "the block ends with a ReLU after the addition: "
                "relu(main path + shortcut)",
                main + short,
            ),
            (
                "the ReLU comes after the addition, not before it: "
                "relu(main path + shortcut)",
                np.maximum(main, 0) + short,
            ),
            (
                "the shortcut is not added: the output is relu(main path "
                "+ shortcut)",
                np.maximum(main, 0),
            ),
        ],
        rtol=1e-4,
        atol=1e-4,
    )


def _compare_blocks(learner, ref, what, rng, batch=3):
    """Layer by layer, then numerically with the reference's weights."""
    try:
        expect_same_layers(_InputOrder(learner), _InputOrder(ref), what)
    except CheckFailure as exc:
        raise add_hint(exc, _block_mistake(learner, ref)) from None
    _randomise(ref, rng)
    _copy_weights(ref, learner)
    x = rng.normal(0, 1, (batch, *ref.input_shape[1:])).astype("float32")
    import keras

    expected = keras.ops.convert_to_numpy(ref(x, training=False))
    got = keras.ops.convert_to_numpy(learner(x, training=False))
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
        hint = _output_mistake(got, ref, x, "ref")
        if hint:
            raise mistake(f"the output of {what}", hint)
    expect_array(
        got,
        expected,
        f"the output of {what} (inference mode, "
        "same weights as the reference)",
        rtol=1e-4,
        atol=1e-4,
    )


# ------------------------------------------------------- 5.1 identity block
def _check_identity(func, rng, input_shape, filters, kernel_size):
    what = f"identity_block(x, filters={filters}, kernel_size={kernel_size})"
    learner = _block_model(
        func, input_shape, filters, kernel_size, name="learner", what=what
    )
    ref = _block_model(
        resnet.identity_block, input_shape, filters, kernel_size, name="ref"
    )
    _compare_blocks(learner, ref, what, rng)


@exercise(CHAPTER, "5.1", "identity block", points=3, names=["identity_block"])
def identity_visible(ns):
    rng = np.random.default_rng(51)
    _check_identity(ns["identity_block"], rng, (8, 8, 16), (4, 6, 16), 3)


@identity_visible.hidden_check
def identity_hidden(ns, rng):
    for _ in range(2):
        f3 = int(rng.integers(4, 20))
        filters = (int(rng.integers(2, 9)), int(rng.integers(2, 9)), f3)
        size = int(rng.integers(4, 10))
        kernel = int(rng.choice([1, 3, 5]))
        _check_identity(
            ns["identity_block"], rng, (size, size, f3), filters, kernel
        )


# -------------------------------------------------- 5.2 convolutional block
def _check_conv_block(func, rng, input_shape, filters, kernel_size, strides):
    what = (
        f"convolutional_block(x, filters={filters}, "
        f"kernel_size={kernel_size}, strides={strides})"
    )
    learner = _block_model(
        func,
        input_shape,
        filters,
        kernel_size,
        strides,
        name="learner",
        what=what,
    )
    ref = _block_model(
        resnet.convolutional_block,
        input_shape,
        filters,
        kernel_size,
        strides,
        name="ref",
    )
    _compare_blocks(learner, ref, what, rng)


@exercise(
    CHAPTER,
    "5.2",
    "convolutional block (projection shortcut)",
    points=3,
    names=["convolutional_block"],
)
def conv_visible(ns):
    rng = np.random.default_rng(52)
    func = ns["convolutional_block"]
    _check_conv_block(func, rng, (8, 8, 6), (4, 5, 16), 3, 2)
    _check_conv_block(func, rng, (7, 7, 8), (3, 3, 12), 3, 1)


@conv_visible.hidden_check
def conv_hidden(ns, rng):
    for _ in range(2):
        filters = tuple(int(v) for v in rng.integers(2, 12, 3))
        size = int(rng.integers(5, 12))
        _check_conv_block(
            ns["convolutional_block"],
            rng,
            (size, size, int(rng.integers(1, 10))),
            filters,
            int(rng.choice([1, 3])),
            int(rng.choice([1, 2, 3])),
        )


# ------------------------------------------------------------ 5.3 ResNet-50
def _check_resnet50(func, input_shape=None, num_classes=None):
    import keras

    kwargs = {}
    if input_shape is not None:
        kwargs = dict(input_shape=input_shape, num_classes=num_classes)
    what = "resnet50(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
    try:
        model = func(**kwargs)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CheckFailure(
            f"{what} raised {type(exc).__name__}: {exc}"
        ) from exc
    ref = keras.applications.ResNet50(
        weights=None, input_shape=input_shape, classes=num_classes or 1000
    )
    try:
        expect_same_layers(_InputOrder(model), _InputOrder(ref), what)
    except CheckFailure as exc:
        raise add_hint(exc, _resnet50_mistake(model, num_classes)) from None


def _resnet50_mistake(model, num_classes):
    if not hasattr(model, "layers"):
        return None
    kinds = [type(x).__name__ for x in model.layers]
    dense = [x for x in model.layers if is_layer(x, "Dense")]
    if kinds.count("Add") != 16:
        return (
            f"ResNet-50 has 16 bottleneck blocks (3, 4, 6 and 3 in its four "
            f"stages); this model adds {kinds.count('Add')} shortcuts"
        )
    if kinds.count("ZeroPadding2D") != 2:
        return (
            "the stem pads the image by 3 pixels before its 7x7, stride-2 "
            "convolution and by 1 before its 3x3 max pool (ZeroPadding2D)"
        )
    if "GlobalAveragePooling2D" not in kinds:
        return (
            "the network ends with global average pooling, then one "
            "dense softmax layer"
        )
    if dense and dense[-1].get_config()["units"] != (num_classes or 1000):
        return "the output layer has num_classes units, not a fixed number"
    return None


@exercise(
    CHAPTER,
    "5.3",
    "ResNet-50 to the exact parameter count",
    points=3,
    names=["resnet50"],
)
def resnet50_visible(ns):
    _check_resnet50(ns["resnet50"])


@resnet50_visible.hidden_check
def resnet50_hidden(ns, rng):
    size = int(rng.choice([64, 96, 128]))
    _check_resnet50(ns["resnet50"], (size, size, 3), int(rng.integers(2, 50)))


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


# ------------------------------------------------ 5.5 reading the curves
def degradation_gaps_reference(curves):
    """Final training error, deep minus shallow, for each kind."""
    gaps = {}
    for kind in sorted({kind for kind, _ in curves}):
        depths = sorted(d for k, d in curves if k == kind)
        gaps[kind] = float(curves[kind, depths[-1]][-1]) - float(
            curves[kind, depths[0]][-1]
        )
    return gaps


def _example_curves(rng, depths, epochs):
    """Decreasing training-error curves; deep plain ones may end higher."""
    curves = {}
    for kind in ("plain", "residual"):
        for depth in depths:
            start = rng.uniform(0.25, 0.45)
            floor = rng.uniform(0.02, 0.15)
            if kind == "plain" and depth == max(depths):
                floor += rng.uniform(-0.02, 0.06)
            rate = rng.uniform(0.2, 0.8)
            curve = floor + (start - floor) * np.exp(-rate * np.arange(epochs))
            curves[kind, depth] = [round(float(e), 4) for e in curve]
    return curves


def _gap_mistake(number, curves, kind):
    depths = sorted(d for k, d in curves if k == kind)
    deep = np.asarray(curves[kind, depths[-1]], float)
    shallow = np.asarray(curves[kind, depths[0]], float)
    for hint, value in (
        (
            "it compares the first epochs; the gap is between the final "
            "epochs' errors",
            deep[0] - shallow[0],
        ),
        (
            "it compares the mean errors; the gap is between the final "
            "epochs' errors",
            deep.mean() - shallow.mean(),
        ),
    ):
        final = deep[-1] - shallow[-1]
        if not math.isclose(value, final, rel_tol=1e-9, abs_tol=1e-12):
            if math.isclose(number, value, rel_tol=1e-9, abs_tol=1e-12):
                return hint
    return None


def _check_gaps(func, curves, what):
    given = {key: list(curve) for key, curve in curves.items()}
    got = func(given)
    expected = degradation_gaps_reference(curves)
    if got is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    if not isinstance(got, dict):
        raise CheckFailure(
            f"{what} should return a dict, got {type(got).__name__}"
        )
    if set(got) != set(expected):
        raise CheckFailure(
            f"{what} should have the keys "
            f"{sorted(expected)}, got {sorted(got)}"
        )
    for kind, value in expected.items():
        number = got[kind]
        if isinstance(number, bool) or not isinstance(
            number, (int, float, np.number)
        ):
            raise CheckFailure(
                f"{what}[{kind!r}] should be a number, got "
                f"{type(number).__name__}"
            )
        if not math.isclose(float(number), value, rel_tol=1e-9, abs_tol=1e-12):
            hint = ""
            other = _gap_mistake(float(number), curves, kind)
            if math.isclose(float(number), -value, rel_tol=1e-9):
                hint = " (the sign is reversed: deep minus shallow)"
            elif math.isclose(float(number), 100 * value, rel_tol=1e-9):
                hint = " (keep the units of the curves: fractions, not %)"
            elif other:
                hint = f": {other}"
            raise CheckFailure(
                f"{what}[{kind!r}] is {float(number)!r}, "
                f"expected {value!r}{hint}"
            )


@exercise(
    CHAPTER,
    "5.5",
    "reading the depth-experiment curves",
    points=2,
    names=["degradation_gaps"],
)
def gaps_visible(ns):
    rng = np.random.default_rng(55)
    _check_gaps(
        ns["degradation_gaps"],
        _example_curves(rng, (20, 56), 8),
        "degradation_gaps(curves of 20 and 56 layers)",
    )


@gaps_visible.hidden_check
def gaps_hidden(ns, rng):
    for _ in range(5):
        shallow = int(rng.choice([8, 14, 20]))
        deep = shallow + 6 * int(rng.integers(1, 10))
        curves = _example_curves(
            rng, (deep, shallow), int(rng.integers(2, 30))
        )
        _check_gaps(
            ns["degradation_gaps"],
            curves,
            f"degradation_gaps(curves of {shallow} and {deep} layers)",
        )
