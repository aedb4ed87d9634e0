"""What a checks module is written with: exercises, failures, helpers.

Introduced in Chapter 1. Exercises are declared in
``cnnbook/grading/checks/<chapter>.py`` (or a package ``<chapter>/``, a
module per group of exercises) with :func:`exercise`. A check function
receives the learner's namespace (a mapping) and, for hidden
checks, a seeded ``numpy.random.Generator``; it raises
:class:`CheckFailure` with a message that says what is wrong, and names
the typical mistake when it recognises one.

The same check runs on either side of the sandbox. In the learner's own
kernel (``check("1.1")``) the namespace holds the learner's functions. In
the grader the namespace is a :class:`SandboxedNamespace` whose functions
are :class:`SandboxedFunction` objects (:mod:`cnnbook.grading.remote`):
they run in the sandboxed kernel and only their results come back. So a
check calls the learner's functions only through the namespace and
builds Keras blocks with :func:`block_model`; the helpers below tell the
two sides apart by those classes, never by attributes. Each checks
module lists in ``ANSWERS`` the parts of :mod:`cnnbook` that answer one
of its exercises; the sandbox leaves them out
(:mod:`cnnbook.grading.package`).
"""

from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np

from cnnbook.arithmetic import layer_table
from cnnbook.grading.timeout import Timeout
from cnnbook.grading.wire import KerasInput, Opaque
from cnnbook.kinds import is_layer

_REGISTRY: dict[str, dict[str, Exercise]] = {}


class CheckFailure(AssertionError):
    """An answer is wrong; the message tells the learner what and where."""


class LearnerError(Exception):
    """An exception the learner's code raised in the sandboxed kernel.

    The grader raises a subclass named after the learner's exception
    (``ValueError``...), so messages read as they would locally.
    """

    def __init__(self, message, line=None):
        super().__init__(message)
        self.line = line


@dataclasses.dataclass
class Exercise:
    chapter: str
    key: str
    title: str
    points: int
    names: tuple
    visible: object
    hidden: object = None
    # an exercise that asks for an operation a library has: what it asks
    # ("zero padding") and the library functions that must not do the
    # work ((path fragment, function name, label) triples, as in
    # cnnbook.grading.tripwire); the sandbox's tripwire watches its calls
    asks: str = ""
    forbidden: tuple = ()

    def hidden_check(self, func):
        """Decorator: register ``func(ns, rng)`` as the hidden check."""
        self.hidden = func
        return func


class SandboxedNamespace:
    """The learner's namespace seen from the grader (the base class of
    :class:`cnnbook.grading.remote.Remote`): the kernel limits each call,
    and :meth:`start_phase` sets the time a phase of checks may take."""

    def start_phase(self, seconds):
        raise NotImplementedError


class SandboxedFunction:
    """A learner's function that runs in the sandboxed kernel (the base
    class of :class:`cnnbook.grading.remote.RemoteFunction`)."""

    def with_options(self, weights=None, seed=None):
        raise NotImplementedError

    def block(self, inputs, *args, **kwargs):
        raise NotImplementedError


class KernelStopped(BaseException):
    """The learner's code stopped its kernel while being checked."""


def _order(ex):
    return tuple(int(p) if p.isdigit() else p for p in ex.key.split("."))


def registered(chapter):
    """The exercises registered so far for ``chapter``, in the order of
    their keys (1.2 before 1.10), whichever module registered them."""
    return sorted(_REGISTRY.get(chapter, {}).values(), key=_order)


def registered_keys(keys):
    """The exercises registered so far (any chapter) whose keys are in
    ``keys``."""
    return [
        ex
        for exercises in _REGISTRY.values()
        for ex in exercises.values()
        if ex.key in keys
    ]


def exercise(chapter, key, title, points, names, asks="", forbidden=()):
    """Decorator that registers ``visible(ns)`` as exercise ``key``'s check.

    ``asks`` and ``forbidden`` (both or neither) declare an exercise that
    asks the learner to implement an operation: in the grading sandbox a
    call of its function in which one of the ``forbidden`` library
    functions runs earns 0 (:mod:`cnnbook.grading.tripwire`).
    """
    if bool(asks) != bool(forbidden):
        raise ValueError(f"exercise {key}: give both asks and forbidden")

    def register(visible):
        ex = Exercise(
            chapter,
            key,
            title,
            points,
            tuple(names),
            visible,
            asks=asks,
            forbidden=tuple(forbidden),
        )
        _REGISTRY.setdefault(chapter, {})[key] = ex
        return ex

    return register


# ----------------------------------------------------------------- helpers
def call_learner(func, *args, what, **kwargs):
    """Call a learner's function; its own error becomes a
    :class:`CheckFailure` that says which call raised what."""
    try:
        return func(*args, **kwargs)
    except (CheckFailure, NotImplementedError):
        raise
    except Exception as exc:  # noqa: BLE001 - report the learner's error
        raise CheckFailure(
            f"{what} raised {type(exc).__name__}: {exc}"
        ) from exc


def type_name(value):
    """The name of ``value``'s type; for a value that came back from the
    sandbox as a stand-in (:class:`~cnnbook.grading.wire.Opaque`), the
    name of the learner's type."""
    if isinstance(value, Opaque):
        return value.type_name
    return type(value).__name__


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return f"{type_name(value)} {value!r}"[:200]


INTEGER_HINT = (
    "use // : the size is an integer (// divides and rounds down, to the "
    "floor)"
)


def exact_int(value, what):
    """``value`` as an int when it is an integer (a Python or numpy
    integer, not a bool); a float, even a whole one such as ``55.0``,
    fails and names the mistake (sizes and counts computed with ``/``)."""
    if isinstance(value, (int, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    ):
        return int(value)
    if isinstance(value, (float, np.floating)):
        raise mistake(
            f"{what} is {value!r}, a {type(value).__name__}", INTEGER_HINT
        )
    raise CheckFailure(f"{what} should be an integer, got {_describe(value)}")


def expect_equal(actual, expected, what):
    """Exact comparison for ints, strings, tuples and the like; where an
    integer is expected only an integer (never a float) passes."""
    if isinstance(expected, (int, np.integer)) and not isinstance(
        expected, bool
    ):
        actual = exact_int(actual, what)
    if actual != expected:
        raise CheckFailure(f"{what}: got {actual!r}, expected {expected!r}")


def expect_close(actual, expected, what, rel_tol=1e-9, abs_tol=0.0):
    """A real number (int or float, not a bool) that is finite and close
    to ``expected``. Written as "accept only when close": NaN compares
    false with everything, so a check of the form ``if abs(got - want) >
    tol: fail`` would let NaN through. Returns the number as a float."""
    if isinstance(actual, (bool, np.bool_)) or not isinstance(
        actual, (int, float, np.integer, np.floating)
    ):
        raise CheckFailure(
            f"{what} should be a number, got {_describe(actual)}"
        )
    number = float(actual)
    if not math.isfinite(number):
        raise CheckFailure(f"{what} is {number!r}, not a finite number")
    if not math.isclose(number, expected, rel_tol=rel_tol, abs_tol=abs_tol):
        raise CheckFailure(f"{what}: got {actual!r}, expected {expected!r}")
    return number


def expect_array(actual, expected, what, rtol=1e-4, atol=1e-5):
    """Compare arrays: type, shape, NaN, values, and say where they differ."""
    expected = np.asarray(expected)
    if actual is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    try:
        arr = np.asarray(actual)
    except Exception:  # noqa: BLE001
        raise CheckFailure(
            f"{what} should be an array, got {_describe(actual)}"
        ) from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise CheckFailure(
            f"{what} should hold numbers, got dtype {arr.dtype}"
        )
    if np.issubdtype(expected.dtype, np.floating) and not np.issubdtype(
        arr.dtype, np.floating
    ):
        raise CheckFailure(
            f"{what} has dtype {arr.dtype}; expected floats "
            "(integer arithmetic would round the results)"
        )
    if arr.shape != expected.shape:
        hint = ""
        if arr.size == expected.size:
            hint = " (same number of entries: check the order of the axes)"
        raise CheckFailure(
            f"{what} has shape {arr.shape}, expected {expected.shape}{hint}"
        )
    if np.isnan(arr).any() and not np.isnan(expected).any():
        idx = tuple(int(i) for i in np.argwhere(np.isnan(arr))[0])
        raise CheckFailure(f"{what} contains NaN (first at index {idx})")
    infinite = np.isinf(arr) & ~np.isinf(expected)
    if infinite.any():
        idx = tuple(int(i) for i in np.argwhere(infinite)[0])
        raise CheckFailure(f"{what} contains inf (first at index {idx})")
    close = np.isclose(arr, expected, rtol=rtol, atol=atol)
    if not close.all():
        idx = tuple(int(i) for i in np.argwhere(~close)[0])
        wrong = int((~close).sum())
        hint = ""
        if np.allclose(
            np.sort(arr, axis=None),
            np.sort(expected, axis=None),
            rtol=rtol,
            atol=atol,
        ):
            hint = (
                " The right values are there but in the wrong places: "
                "check how you index or reshape."
            )
        raise CheckFailure(
            f"{what} differs at {wrong} of {arr.size} entries; first at index "
            f"{idx}: got {arr[idx]:.6g}, expected {expected[idx]:.6g}.{hint}"
        )


def layer_signature(model):
    """(class, output shape, parameters) per layer, inputs left out."""
    return layer_table(model).signature()


def _keras_histories(value):
    """The layer names in the ``keras_history`` of every Keras tensor
    described in ``value`` (part of a model's configuration)."""
    if isinstance(value, dict):
        history = value.get("config", {}).get("keras_history")
        if value.get("class_name") == "__keras_tensor__" and history:
            return [history[0]]
        return [n for item in value.values() for n in _keras_histories(item)]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _keras_histories(item)]
    return []


def parent_layers(model):
    """Layer name -> names of the layers whose outputs it takes, read from
    ``model.get_config()`` (Keras's public description of the graph). A
    ``Sequential`` model's layers each take the previous one's output.
    Chapter 5."""
    layers = model.get_config().get("layers", [])
    parents = {}
    for index, layer in enumerate(layers):
        name = layer.get("name") or layer["config"]["name"]
        nodes = layer.get("inbound_nodes")
        if nodes is None:  # Sequential: a chain
            before = layers[index - 1] if index else None
            parents[name] = (
                [before.get("name") or before["config"]["name"]]
                if before
                else []
            )
            continue
        parents[name] = _keras_histories(nodes)
    return parents


def _shape_of(layer):
    try:
        out = layer.output
    except (AttributeError, ValueError):  # never called, or called twice
        return ()
    if isinstance(out, (list, tuple)):
        return tuple(tuple(o.shape) for o in out)
    return tuple(out.shape)


def layer_wiring(model):
    """(class, output shape, the class and output shape of each layer it
    takes its inputs from) for every layer but the inputs: how the layers
    are connected, whatever their names and order (red team 7: a ResNet
    whose blocks added their main path to itself had the right layers).
    A concatenation's inputs count in their order (red team 8: a module
    that concatenated its branches in reverse), others' in any order."""
    base = getattr(model, "_model", model)  # an ordering wrapper's model
    parents = parent_layers(base)
    by_name = {layer.name: layer for layer in base.layers}
    out = []
    for layer in base.layers:
        if is_layer(layer, "InputLayer"):
            continue
        takes = [
            (type(by_name[p]).__name__, _shape_of(by_name[p]))
            for p in parents.get(layer.name, [])
            if p in by_name
        ]
        if not takes:  # a Sequential model's first layer: its input
            takes = [("InputLayer", tuple(base.inputs[0].shape))]
        if not is_layer(layer, "Concatenate"):  # order matters only there
            takes = sorted(takes)
        out.append((type(layer).__name__, _shape_of(layer), tuple(takes)))
    return out


def expect_same_wiring(model, reference, what="your model"):
    """The same connections as the reference (as a multiset: branches may
    be built in any order)."""
    mine = collections.Counter(layer_wiring(model))
    ref = collections.Counter(layer_wiring(reference))
    extra = list((mine - ref).elements())
    if extra:
        kind, shape, takes = extra[0]
        inputs = ", ".join(f"{k} {s}" for k, s in takes) or "nothing"
        raise CheckFailure(
            f"{what}: its layers are not connected as the specification's: "
            f"its {kind} with output {shape} takes {inputs}"
        )


def expect_same_layers(model, reference, what="your model"):
    """Compare two models layer by layer; name the first layer that differs."""
    if model is None or not hasattr(model, "layers"):
        raise CheckFailure(
            f"{what} should be a keras Model, got {_describe(model)}"
        )
    mine, ref = layer_signature(model), layer_signature(reference)
    fields = ("type", "output shape", "parameter count")
    for i, (a, b) in enumerate(zip(mine, ref)):
        for name, x, y in zip(fields, a, b):
            if x != y:
                layer = [
                    candidate
                    for candidate in model.layers
                    if not is_layer(candidate, "InputLayer")
                ][i]
                raise CheckFailure(
                    f"{what}: layer {i + 1} ('{layer.name}') has {name} {x}, "
                    f"the specification has {y}"
                )
    if len(mine) != len(ref):
        raise CheckFailure(
            f"{what} has {len(mine)} layers, the specification has {len(ref)}"
        )
    total, expected = model.count_params(), reference.count_params()
    if total != expected:
        raise CheckFailure(
            f"{what} has {total:,} parameters, expected {expected:,}"
        )
    mine = [x for x in model.layers if not is_layer(x, "InputLayer")]
    ref = [x for x in reference.layers if not is_layer(x, "InputLayer")]
    mine_settings, ref_settings = layer_settings(mine), layer_settings(ref)
    # in any order: the structure above is compared in order already
    same = collections.Counter(mine_settings) == collections.Counter(
        ref_settings
    )
    for i, (a, b) in enumerate(zip(mine_settings, ref_settings)):
        if a != b and not same:
            differ = ", ".join(
                f"{k}={v!r}" for (k, v) in a[2] if (k, v) not in b[2]
            )
            wanted = ", ".join(
                f"{k}={v!r}" for (k, v) in b[2] if (k, v) not in a[2]
            )
            raise CheckFailure(
                f"{what}: layer {i + 1} ('{mine[i].name}') has "
                f"{differ or 'other settings'}, the specification has "
                f"{wanted or 'other settings'}"
            )
    expect_same_wiring(model, reference, what)


# what a layer computes beyond its class, output shape and parameter count:
# two networks alike in those three can still differ here (a 1x9 kernel
# with dilation where the specification has 3x3, no activation where it
# has ReLU: red team 6)
SETTINGS = (
    "kernel_size",
    "strides",
    "padding",
    "dilation_rate",
    "activation",
    "pool_size",
    "groups",
    "depth_multiplier",
)


def _plain(value):
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("config", value))
    return value


def layer_settings(layers):
    """(class, output shape, settings) of every layer in ``layers``, inputs
    left out; the settings are those of :data:`SETTINGS` the layer has."""
    out = []
    for layer in layers:
        if is_layer(layer, "InputLayer"):
            continue
        config = layer.get_config()
        settings = tuple(
            (key, _plain(config[key])) for key in SETTINGS if key in config
        )
        shape = (
            tuple(tuple(o.shape) for o in layer.output)
            if isinstance(layer.output, (list, tuple))
            else tuple(layer.output.shape)
        )
        out.append((type(layer).__name__, shape, settings))
    return out


def expect_same_settings(layers, reference_layers, what="your model"):
    """The same layers, with the same settings, as the reference, in any
    order (a module's branches may be built in another order); name the
    first difference."""
    mine = collections.Counter(layer_settings(layers))
    ref = collections.Counter(layer_settings(reference_layers))
    missing, extra = (
        list((ref - mine).elements()),
        list((mine - ref).elements()),
    )
    if not (missing or extra):
        return
    parts = []
    if missing:
        kind, shape, settings = missing[0]
        told = ", ".join(f"{k}={v!r}" for k, v in settings) or "no settings"
        parts.append(
            f"the specification has a {kind} with output {shape} and {told}"
        )
    if extra:
        kind, shape, settings = extra[0]
        told = ", ".join(f"{k}={v!r}" for k, v in settings) or "no settings"
        parts.append(f"yours has a {kind} with output {shape} and {told}")
    raise CheckFailure(f"{what}: " + "; ".join(parts))


def with_options(func, weights=None, seed=None):
    """``func`` asked to send models back with their weights, or to run
    after ``keras.utils.set_random_seed(seed)``; a local function is
    returned as it is (it shares the caller's Keras and models)."""
    if isinstance(func, SandboxedFunction):
        return func.with_options(weights=weights, seed=seed)
    if seed is not None:
        import keras  # delays keras

        keras.utils.set_random_seed(int(seed))
    return func


def block_model(func, input_shapes, *args, what="it", **kwargs):
    """``keras.Model(inputs, func(*inputs, *args, **kwargs))``.

    ``input_shapes`` lists the shapes of the Keras inputs the block gets as
    its first arguments. Fails with a CheckFailure that says what went
    wrong (an exception, ``None``, something that is not a Keras tensor).
    """
    try:
        if isinstance(func, SandboxedFunction):
            model = func.block(
                [KerasInput(s) for s in input_shapes], *args, **kwargs
            )
        else:
            import keras  # delays keras

            inputs = [keras.Input(s) for s in input_shapes]
            outputs = func(*inputs, *args, **kwargs)
            if outputs is not None and all(
                keras.backend.is_keras_tensor(o)
                for o in keras.tree.flatten(outputs)
            ):
                model = keras.Model(
                    inputs if len(inputs) > 1 else inputs[0], outputs
                )
            else:
                model = outputs
    except (CheckFailure, NotImplementedError, Timeout):
        raise
    except Exception as exc:  # noqa: BLE001 - report the learner's error
        shape = (None, *input_shapes[0])
        raise CheckFailure(
            f"{what}: calling it on an input of shape {shape} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if model is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    if not hasattr(model, "layers") or isinstance(model, Opaque):
        raise CheckFailure(
            f"{what} should return the Keras tensor that comes out of the "
            f"block, got {type_name(model)}"
        )
    return model


def compiled(model):
    """Whether ``model`` was compiled (here or in the sandbox)."""
    if hasattr(model, "_cnnbook_compiled"):
        return model._cnnbook_compiled
    return getattr(model, "optimizer", None) is not None and bool(
        getattr(model, "compiled", False)
    )


# ------------------------------------------------------ typical mistakes
def mistake(what, hint):
    """The CheckFailure for a recognised mistake: what, then why."""
    return CheckFailure(f"{what}: {hint}")


def expect_equal_or_mistake(got, expected, what, variants):
    """:func:`expect_equal`, naming the mistake when ``got`` is the value of
    one of ``variants`` ((hint, wrong value) pairs, as for
    :func:`match_mistake`) that differs from ``expected``."""
    if got != expected:
        hint = match_mistake(
            got, [(h, v) for h, v in variants if v != expected]
        )
        if hint:
            raise mistake(
                f"{what} returned {got!r}, expected {expected}", hint
            )
    expect_equal(got, expected, what)


def match_mistake(got, variants, rtol=1e-6, atol=1e-9):
    """The hint of the first wrong answer in ``variants`` that ``got`` is.

    ``variants`` are (hint, value) pairs computed from the same inputs by
    the mistaken formula; a value of None (the mistake does not apply to
    these inputs) is skipped. Numbers compare exactly, arrays (of the same
    shape) to the tolerances.
    """
    for hint, value in variants:
        if value is None:
            continue
        try:
            if isinstance(value, np.ndarray):
                arr = np.asarray(got)
                if arr.shape == value.shape and np.allclose(
                    arr, value, rtol=rtol, atol=atol
                ):
                    return hint
            elif isinstance(got, bool) or isinstance(value, bool):
                continue
            elif isinstance(value, float) or isinstance(got, float):
                if math.isclose(float(got), float(value), rel_tol=rtol):
                    return hint
            elif got == value:
                return hint
        except (TypeError, ValueError):
            continue
    return None


def add_hint(exc, hint):
    """``exc`` (a CheckFailure) with the recognised mistake appended."""
    if hint:
        return CheckFailure(f"{exc} Likely cause: {hint}")
    return exc
