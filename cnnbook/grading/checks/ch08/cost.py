"""Chapter 8, exercise 8.1: the multiplications of a depthwise-separable
convolution against a normal one."""

from __future__ import annotations

from cnnbook.arithmetic import separable_cost
from cnnbook.grading.api import (
    CheckFailure,
    call_learner,
    exercise,
    expect_close,
    expect_equal_or_mistake,
    match_mistake,
    mistake,
)

CHAPTER = __package__.rsplit(".", 1)[-1]  # 'ch08', the folder's name

KEYS = ("normal", "depthwise", "pointwise", "ratio")

# The course's example (a 6x6x3 input, five 3x3 filters, a 4x4x5 output)
# and a layer of MobileNet v1 (14x14, 512 channels in and out).
VISIBLE_CASES = [(4, 4, 3, 3, 5), (14, 14, 512, 3, 512)]


def _variants(n_H, n_W, n_C_prev, f, n_C):
    """(hint, wrong value) per count, for the usual mistakes."""
    area = n_H * n_W
    return {
        "depthwise": [
            (
                "the depthwise step keeps the input's channels: one f x f "
                "filter per input channel, so n_C_prev of them, not n_C",
                area * n_C * f * f,
            ),
            (
                "a depthwise filter sees one channel only: f x f weights, "
                "not f x f x n_C_prev",
                area * n_C_prev * f * f * n_C_prev,
            ),
        ],
        "pointwise": [
            (
                "the pointwise step is a 1x1 convolution: n_C_prev weights "
                "per output value, with no f x f",
                area * n_C * f * f * n_C_prev,
            ),
        ],
        "normal": [
            (
                "an f x f filter has f * f weights per input channel, not f",
                area * n_C * f * n_C_prev,
            ),
        ],
    }


def _check_cost(func, case):
    what = f"separable_cost({', '.join(map(str, case))})"
    got = call_learner(func, *case, what=what)
    if got is None:
        raise CheckFailure(f"{what} returned None: did you forget `return`?")
    if not isinstance(got, dict) or set(got) != set(KEYS):
        raise CheckFailure(
            f"{what} should return a dict with the keys {list(KEYS)}, got "
            f"{got!r}"[:300]
        )
    expected = separable_cost(*case)
    variants = _variants(*case)
    for key in ("normal", "depthwise", "pointwise"):
        expect_equal_or_mistake(
            got[key], getattr(expected, key), f"{what}['{key}']", variants[key]
        )
    ratio = got["ratio"]
    try:
        expect_close(ratio, expected.ratio, f"{what}['ratio']", rel_tol=1e-9)
    except CheckFailure as failure:
        hint = match_mistake(
            ratio,
            [
                (
                    "the ratio is separable over normal (a number below "
                    "1), not normal over separable",
                    1 / expected.ratio,
                ),
                (
                    "the separable convolution costs the depthwise AND the "
                    "pointwise step: divide their sum by the normal count",
                    expected.pointwise / expected.normal,
                ),
            ],
        )
        if hint:
            raise mistake(f"{what}['ratio'] is {ratio:.6g}", hint) from None
        raise failure


@exercise(
    CHAPTER,
    "8.1",
    "the cost of a depthwise-separable convolution",
    points=2,
    names=["separable_cost"],
)
def cost_visible(ns):
    for case in VISIBLE_CASES:
        _check_cost(ns["separable_cost"], case)


@cost_visible.hidden_check
def cost_hidden(ns, rng):
    for _ in range(10):
        n_H, n_W = (int(v) for v in rng.integers(1, 60, size=2))
        n_C_prev, n_C = (int(v) for v in rng.integers(1, 700, size=2))
        f = int(rng.choice([3, 5, 7]))
        _check_cost(ns["separable_cost"], (n_H, n_W, n_C_prev, f, n_C))
