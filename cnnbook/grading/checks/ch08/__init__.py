"""Checks of Chapter 8 (MobileNet, EfficientNet, transfer learning).

8.1 ``separable_cost``: multiplications of a normal convolution against
    a depthwise-separable one, and their ratio.
8.2 ``inverted_residual_block``: MobileNet v2's block (1x1 expansion,
    3x3 depthwise, linear 1x1 projection, the shortcut where it fits).
8.3 ``frozen_with_head``: a base network frozen, a new pooling and
    softmax head on it.
8.4 ``unfreeze_for_fine_tuning``: the base trainable again, its batch
    normalisation kept in inference mode.

Expected values come from reference code: :mod:`cnnbook.arithmetic` and
the blocks of :mod:`cnnbook.models.mobilenet`; 8.3 and 8.4 are judged by
what a training step does to the weights of the model the learner
returns.
"""

from __future__ import annotations

# each registers its exercises (cnnbook.grading.api.exercise)
from cnnbook.grading.checks.ch08 import blocks, cost, transfer  # noqa: F401

# What answers an exercise of this chapter; left out of the sandbox.
ANSWERS = {
    "cnnbook.arithmetic": (
        ["8.1"],
        [
            "separable_cost",
            "SeparableCost",
            "depthwise_multiplications",
            "separable_ratio",
        ],
    ),
    "cnnbook.models.mobilenet": (["8.2"], None),
    # the transfer lab's helpers: freeze, unfreeze, with_new_head
    "cnnbook.transfer": (["8.3", "8.4"], None),
}

# keras.applications' modules with a block that builds an inverted
# residual block (a depthwise convolution and an add shortcut in one
# function; tests/test_ch08.py finds them all in the installed Keras):
# EfficientNetV2's MBConvBlock with se_ratio 0 and relu6 is MobileNet v2's
KERAS_APPLICATIONS = {
    "mobilenet_v2": ["8.2"],
    "mobilenet_v3": ["8.2"],
    "efficientnet": ["8.2"],
    "efficientnet_v2": ["8.2"],
}
