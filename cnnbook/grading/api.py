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

import dataclasses
import math

import numpy as np

from cnnbook.grading.timeout import Timeout
from cnnbook.grading.wire import KerasInput, Opaque

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
