"""Chapter 5, exercise 5.5: reading the depth curves (the degradation
gaps)."""

from __future__ import annotations

import math

import numpy as np

from cnnbook.grading.api import (
    CheckFailure,
    exercise,
    type_name,
)

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch05', the folder's name


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
            f"{what} should return a dict, got {type_name(got)}"
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
                f"{what}[{kind!r}] should be a number, got {type_name(number)}"
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
