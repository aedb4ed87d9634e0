"""Checks of the Chapter 1 exercises (CNN layer arithmetic).

Visible checks use the examples of the exercise notebook; hidden checks
draw random shapes, strides and paddings and compare with
:mod:`cnnbook.arithmetic`, :mod:`cnnbook.reference` and ``numpy.pad``
(the reference code agrees with Keras's ``Conv2D``, ``MaxPooling2D`` and
``AveragePooling2D``: tests/test_ch01.py), so an answer that hard-codes
the visible examples earns nothing.
"""

from __future__ import annotations

# each registers its exercises (cnnbook.grading.api.exercise)
from cnnbook.grading.checks.ch01 import (  # noqa: F401
    forward,
    padding_step,
    sizes,
)

# The checks judge with numpy only (the reference code is tested against
# Keras's layers in tests/test_ch01.py): the grader need not load Keras.
NEEDS_KERAS = False

# What answers an exercise of this chapter; left out of the sandbox.
ANSWERS = {
    "cnnbook.reference": (["1.3", "1.4", "1.5", "1.6"], None),
    "cnnbook.arithmetic": (
        ["1.1", "1.2"],
        ["conv_output_size", "pool_output_size", "conv_params"],
    ),
}
