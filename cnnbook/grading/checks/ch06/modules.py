"""Chapter 6, exercises 6.1 to 6.3: the Inception module (its cost, the
module, a repaired one)."""

from __future__ import annotations

from collections import Counter

from cnnbook.arithmetic import conv_multiplications
from cnnbook.grading.api import (
    CheckFailure,
    add_hint,
    block_model,
    call_learner,
    exercise,
    expect_equal,
    expect_equal_or_mistake,
    mistake,
    type_name,
)
from cnnbook.grading.structure import (
    expect_same_settings,
    expect_same_wiring,
    layer_signature,
)
from cnnbook.kinds import is_layer

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch06', the folder's name


CHAPTER_INPUT = (28, 28, 192)
MODULE_3A = (64, 96, 128, 16, 32, 32)
MODULE_4A = (192, 96, 208, 16, 48, 64)
MODULE_4B = (160, 112, 224, 24, 64, 64)


def tensor_shape(tensor):
    return tuple(tensor.shape)


def layer_differences(mine, reference):
    """Describe how two lists of layer signatures differ, or return None."""
    a, b = Counter(mine), Counter(reference)
    if a == b:
        return None
    extra = list((a - b).elements())
    missing = list((b - a).elements())
    parts = []
    if missing:
        kind, shape, params = missing[0]
        parts.append(
            f"a {kind} with output shape {shape} and {params:,} "
            "parameters is missing"
        )
    if extra:
        kind, shape, params = extra[0]
        parts.append(
            f"there is an unexpected {kind} with output shape "
            f"{shape} and {params:,} parameters"
        )
    return "; ".join(parts)


def _expect_same_branches(model, reference, what):
    if model is None or not hasattr(model, "layers"):
        raise CheckFailure(
            f"{what} should give a keras Model, got {type_name(model)}"
        )
    if len(model.outputs) != 1:
        raise CheckFailure(
            f"{what} should have one output, it has {len(model.outputs)}"
        )
    try:
        expect_equal(
            tensor_shape(model.output),
            tensor_shape(reference.output),
            f"{what}: output shape",
        )
    except CheckFailure as exc:
        raise add_hint(exc, _module_mistake(model)) from None
    problem = layer_differences(
        layer_signature(model), layer_signature(reference)
    )
    if problem:
        raise add_hint(
            CheckFailure(f"{what}: {problem}."), _module_mistake(model)
        )
    if all(_relu(x) for x in reference.layers if _is_conv(x)):
        for layer in model.layers:
            if _is_conv(layer) and not _relu(layer):
                raise mistake(
                    f"{what}: the convolution '{layer.name}' has no ReLU",
                    "every convolution of the module has a ReLU",
                )
    expect_equal(
        model.count_params(),
        reference.count_params(),
        f"{what}: number of parameters",
    )
    expect_same_settings(model.layers, reference.layers, what)
    try:
        expect_same_wiring(model, reference, what)
    except CheckFailure as exc:
        raise add_hint(
            exc,
            "the branches are concatenated in the order the exercise "
            "lists them, each on the module's input",
        ) from None


def _is_conv(layer):
    return is_layer(layer, "Conv2D")


def _relu(layer):
    return layer.get_config().get("activation") == "relu"


def _module_mistake(model):
    """The typical mistake of an inception module that differs."""
    layers = [x for x in model.layers if not is_layer(x, "InputLayer")]
    kinds = [type(x).__name__ for x in layers]
    size = tuple(model.inputs[0].shape[1:3])
    pools = [x for x in layers if is_layer(x, "MaxPooling2D")]
    if kinds.count("Conv2D") == 5 and pools:
        return (
            "the pool branch needs its 1x1 projection (pool_proj filters) "
            "after the max pool"
        )
    if any(tuple(x.output.shape[1:3]) != size for x in pools):
        return "the 3x3 max pool keeps the size: strides=1, padding='same'"
    if any(
        x.get_config().get("activation") != "relu"
        for x in layers
        if is_layer(x, "Conv2D")
    ):
        return "every convolution of the module has a ReLU"
    return None


# ------------------------------------------------------------------ 6.1
def reference_branch_multiplications(
    n_H, n_W, n_C_prev, f, n_C, bottleneck=None
):

    if bottleneck is None:
        return conv_multiplications(n_H, n_W, n_C, f, n_C_prev)
    return conv_multiplications(
        n_H, n_W, bottleneck, 1, n_C_prev
    ) + conv_multiplications(n_H, n_W, n_C, f, bottleneck)


def _check_multiplications(func, case):
    args, bottleneck = case[:5], case[5]
    what = (
        f"branch_multiplications({', '.join(map(str, args))}, "
        f"bottleneck={bottleneck})"
    )
    got = call_learner(func, *args, bottleneck=bottleneck, what=what)
    expected = reference_branch_multiplications(*args, bottleneck)
    variants = []
    if got != expected:
        n_H, n_W, n_C_prev, f, n_C = args
        area = n_H * n_W
        depth = n_C_prev if bottleneck is None else bottleneck
        reduce = area * bottleneck * n_C_prev if bottleneck else 0
        variants = [
            (
                "an f x f filter has f * f weights per input channel, not f",
                reduce + area * n_C * f * depth if f != 1 else None,
            )
        ]
        if bottleneck is not None:
            variants += [
                (
                    "the 1x1 reduction costs multiplications too: add "
                    "n_H * n_W * bottleneck * n_C_prev",
                    area * n_C * f * f * bottleneck,
                ),
                (
                    "after the bottleneck the f x f convolution sees only "
                    "`bottleneck` channels, not n_C_prev",
                    area * bottleneck * n_C_prev
                    + area * n_C * f * f * n_C_prev,
                ),
                (
                    "the reduction is a 1x1 convolution: it has 1 x 1 "
                    "weights per channel, not f x f",
                    area * bottleneck * n_C_prev * f * f
                    + area * n_C * f * f * bottleneck,
                ),
            ]
    expect_equal_or_mistake(got, expected, what, variants)


@exercise(
    CHAPTER,
    "6.1",
    "multiplications with and without a bottleneck",
    points=2,
    names=["branch_multiplications"],
)
def multiplications_visible(ns):
    func = ns["branch_multiplications"]
    for case in [
        (28, 28, 192, 5, 32, None),
        (28, 28, 192, 5, 32, 16),
        (28, 28, 192, 3, 128, None),
        (28, 28, 192, 3, 128, 96),
    ]:
        _check_multiplications(func, case)


@multiplications_visible.hidden_check
def multiplications_hidden(ns, rng):
    func = ns["branch_multiplications"]
    for _ in range(12):
        n_H, n_W = (int(v) for v in rng.integers(1, 60, size=2))
        n_C_prev = int(rng.integers(1, 600))
        f = int(rng.choice([1, 3, 5, 7]))
        n_C = int(rng.integers(1, 400))
        bottleneck = None if rng.random() < 0.4 else int(rng.integers(1, 64))
        _check_multiplications(func, (n_H, n_W, n_C_prev, f, n_C, bottleneck))


# ------------------------------------------------------------------ 6.2
def _module_models(func, input_shape, filters):
    from cnnbook.models import inception_module, module_model  # delays keras

    what = f"inception_module(x, {', '.join(map(str, filters))})"
    try:
        mine = block_model(func, [input_shape], *filters, what=what)
    except CheckFailure as exc:
        text = str(exc).lower()
        hint = None
        if " raised " in text and "concatenate" in text:
            hint = (
                "the four branches must keep the height and width "
                "(padding='same', stride 1) to be concatenated"
            )
        raise add_hint(exc, hint) from None
    reference = module_model(inception_module, input_shape, *filters)
    return mine, reference, f"{what} on a {input_shape} input"


@exercise(
    CHAPTER,
    "6.2",
    "inception module with dimension reduction",
    points=3,
    names=["inception_module"],
)
def module_visible(ns):
    _expect_same_branches(
        *_module_models(ns["inception_module"], CHAPTER_INPUT, MODULE_3A)
    )


@module_visible.hidden_check
def module_hidden(ns, rng):
    for _ in range(3):
        size = int(rng.integers(5, 20))
        shape = (size, size, int(rng.integers(3, 80)))
        filters = tuple(int(v) for v in rng.integers(1, 48, size=6))
        _expect_same_branches(
            *_module_models(ns["inception_module"], shape, filters)
        )


# ------------------------------------------------------------------ 6.3
def _reduced_reference(input_shape):
    from cnnbook.models import inception_module, module_model  # delays keras

    return module_model(inception_module, input_shape, *MODULE_3A)


def expect_outputs(model, count, what, hint):
    """Fail unless ``model`` is a Keras model with ``count`` outputs."""
    if model is None or not hasattr(model, "outputs"):
        raise CheckFailure(
            f"{what} should return a keras Model, got {type_name(model)}"
        )
    if len(model.outputs) != count:
        raise CheckFailure(
            f"{what} has {len(model.outputs)} output(s); {hint}"
        )


def _check_repaired(build, input_shape):
    what = f"build_reduced_model({input_shape})"
    try:
        model = call_learner(build, input_shape, what=what)
    except CheckFailure as exc:
        hint = None
        if "unexpected keyword" in str(exc) and "input" in str(exc):
            hint = "keras.Model takes inputs= and outputs= (plural)"
        elif "not defined" in str(exc) or "NameError" in str(exc):
            hint = (
                "every name the snippet uses must be defined: the "
                "module's output is the tensor the module returns"
            )
        raise add_hint(exc, hint) from None
    expect_outputs(
        model, 1, what, "the snippet builds one module with one output"
    )
    naive = {"MaxPooling2D", "Concatenate"}
    kinds = Counter(type(layer).__name__ for layer in model.layers)
    if kinds["Conv2D"] == 3 and naive <= set(kinds):
        raise CheckFailure(
            f"{what} still calls the naive block: the "
            "dimension-reduction example needs the module "
            "with 1x1 reductions and a pool projection"
        )
    reference = _reduced_reference(input_shape)
    if (
        hasattr(model, "outputs")
        and len(model.outputs) == 1
        and tensor_shape(model.output)[-1]
        != tensor_shape(reference.output)[-1]
    ):
        raise mistake(
            what,
            "the module must have module 3a's filter numbers "
            f"{MODULE_3A}, which give "
            f"{tensor_shape(reference.output)[-1]} output channels, not "
            f"{tensor_shape(model.output)[-1]}",
        )
    _expect_same_branches(model, reference, what)


@exercise(
    CHAPTER,
    "6.3",
    "repair the broken inception snippet",
    points=2,
    names=["build_reduced_model"],
)
def repaired_visible(ns):
    _check_repaired(ns["build_reduced_model"], CHAPTER_INPUT)


@repaired_visible.hidden_check
def repaired_hidden(ns, rng):
    for _ in range(2):
        size = int(rng.integers(6, 32))
        _check_repaired(
            ns["build_reduced_model"], (size, size, int(rng.integers(3, 256)))
        )
