"""Checks of Chapter 6 (1x1 convolutions, Inception, GoogLeNet).

6.1 ``branch_multiplications``: multiplications of a 'same' convolution
    branch, with and without a 1x1 bottleneck.
6.2 ``inception_module``: the module with dimension reduction; output shape
    and parameters.
6.3 ``build_reduced_model``: the broken snippet of the chapter, repaired.
6.4 ``add_auxiliary_output``: GoogLeNet's auxiliary classifier attached to
    a model as a second output.

Expected values come from reference code: :mod:`cnnbook.arithmetic` and the
builders of :mod:`cnnbook.models.inception`. Functional models may create
their branches in any order, so layers are compared as a multiset of
(type, output shape, parameters), which pins down every branch.
"""

from __future__ import annotations

# each registers its exercises (cnnbook.grading.api.exercise)
from cnnbook.grading.checks.ch06 import auxiliary, modules  # noqa: F401

# What answers an exercise of this chapter; left out of the sandbox.
ANSWERS = {
    "cnnbook.models.inception": (
        ["6.2", "6.3", "6.4"],
        [
            "inception_module",
            "auxiliary_head",
            "googlenet",
            "googlenet_small",
            "_output_classifier",
        ],
    )
}
