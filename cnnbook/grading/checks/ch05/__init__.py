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

# each registers its exercises (cnnbook.grading.api.exercise)
from cnnbook.grading.checks.ch05 import blocks, curves, identity, resnet50  # noqa: F401

# What answers an exercise of this chapter; left out of the sandbox.
ANSWERS = {"cnnbook.models.resnet": (["5.1", "5.2", "5.3"], None)}
KERAS_APPLICATIONS = {"resnet": ["5.3"]}
