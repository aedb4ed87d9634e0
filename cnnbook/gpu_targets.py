"""What the ``gpu`` profile promises, lab by lab (issue #12).

Each lab, run under ``gpu`` on one H100-class GPU, finishes within
:data:`LAB_SECONDS` and all of them together within :data:`TOTAL_SECONDS`;
the training labs reach their test accuracy target, above the stored
``full`` runs made on two CPU cores. ``python -m cnnbook run-labs`` prints
each lab's figures next to its target.

Nothing here has been measured on a GPU yet: these are the targets the
``gpu`` settings of each notebook are sized for.
"""

from __future__ import annotations

LAB_SECONDS = 90
TOTAL_SECONDS = 8 * 60

# lab notebook stem -> what it trains and the test accuracy it must reach
# (None: the lab trains nothing, or its result is a comparison, not a score)
TARGETS = {
    "ch01-layer-arithmetic": {
        "trains": None,
        "dataset": "mnist",
        "target_accuracy": None,
        "note": "no training: layer arithmetic and timings",
    },
    "ch02-lenet": {
        "trains": "LeNet-5",
        "dataset": "mnist",
        "target_accuracy": 0.993,
        "note": "",
    },
    "ch03-alexnet": {
        "trains": "AlexNet (11x11/stride-4 stem kept meaningful)",
        "dataset": "fashion_mnist",
        "target_accuracy": 0.93,
        "note": "",
    },
    "ch04-vgg": {
        "trains": "VGG-11/16 style at the paper's width",
        "dataset": "fashion_mnist",
        "target_accuracy": 0.94,
        "note": "",
    },
    "ch05-resnet-depth": {
        "trains": "plain and residual nets, 20 and 56 layers",
        "dataset": "fashion_mnist",
        "target_accuracy": None,
        "note": "20/56 layers on the whole training set",
    },
    "ch05-resnet18": {
        "trains": "ResNet-18, 64 filters",
        "dataset": "fashion_mnist",
        "target_accuracy": 0.945,
        "note": "",
    },
    "ch06-inception-cost": {
        "trains": None,
        "dataset": None,
        "target_accuracy": None,
        "note": "timing only",
    },
    "ch07-side-by-side": {
        "trains": None,
        "dataset": None,
        "target_accuracy": None,
        "note": "no training: costs and records side by side",
    },
    "ch06-googlenet": {
        "trains": "GoogLeNet at full width, with and without auxiliary heads",
        "dataset": "fashion_mnist",
        "target_accuracy": 0.94,
        "note": "",
    },
}


def target(lab):
    """The target accuracy of ``lab`` (a notebook stem), or None."""
    return TARGETS.get(lab, {}).get("target_accuracy")


# Seconds each lab's ``gpu`` settings (the "gpu" entry of the notebook's
# ``setup({...})``, the one place they are written) are estimated to take
# on one H100 in bfloat16; not measured: no GPU was at hand. Estimate:
# training FLOPs per image = 6 x the forward multiply-adds, at 25 TFLOP/s
# sustained (ResNet-50 at 224x224 trains at about 2,500-3,000 images/s on
# one H100 in mixed precision, 30-37 TFLOP/s; 28x28 inputs use the GPU
# less well), at least 1 ms a step, plus about 10 s a model for compiling
# and evaluating. The first GPU run replaces them by measured ones.
ESTIMATED_SECONDS = {
    "ch01-layer-arithmetic": 15,
    "ch02-lenet": 55,
    "ch03-alexnet": 55,
    "ch04-vgg": 65,
    "ch05-resnet-depth": 80,
    "ch05-resnet18": 80,
    "ch06-googlenet": 85,
    "ch06-inception-cost": 20,
    "ch07-side-by-side": 10,
}
