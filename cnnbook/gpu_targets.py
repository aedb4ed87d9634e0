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


# Proposed ``gpu`` settings for each lab's ``setup({...})``, with the
# seconds each is estimated to take on one H100 in bfloat16 (not measured:
# no GPU was at hand). Estimate: training FLOPs per image = 6 x the forward
# multiply-adds, at 25 TFLOP/s sustained (ResNet-50 at 224x224 trains at
# about 2,500-3,000 images/s on one H100 in mixed precision, 30-37 TFLOP/s;
# 28x28 inputs use the GPU less well), at least 1 ms a step, plus about
# 10 s a model for compiling and evaluating. The first GPU run replaces
# these numbers by measured ones.
PROPOSED = {
    "ch01-layer-arithmetic": {
        "settings": {"trials": 100, "digit_index": 0},
        "estimate_seconds": 15,
    },
    "ch02-lenet": {
        # 0.4 M multiply-adds: bound by the step rate; two models trained
        "settings": {
            "train_size": 60000,
            "test_size": 10000,
            "epochs": 30,
            "batch_size": 128,
            "learning_rate": 1e-3,
            "weight_decay": 0.05,
        },
        "estimate_seconds": 55,
    },
    "ch03-alexnet": {
        # 112x112: the stride-4 stem steps one original pixel at a time
        # and its 11x11 window spans about three; 195 M multiply-adds
        "settings": {
            "input_size": 112,
            "train_size": 60000,
            "test_size": 10000,
            "epochs": 15,
            "batch_size": 256,
            "lr": 1e-3,
            "augment": True,
        },
        "estimate_seconds": 55,
    },
    "ch04-vgg": {
        # VGG-16 pattern at the paper's width (64 filters first), 32x32:
        # 313 M multiply-adds
        "settings": {
            "input_size": 32,
            "width": 64,
            "train_size": 60000,
            "test_size": 10000,
            "epochs": 12,
            "batch_size": 256,
            "lr": 1e-3,
            "augment": True,
        },
        "estimate_seconds": 65,
    },
    "ch05-resnet-depth": {
        # four nets (plain/residual x 20/56 layers): 31 M and 96 M
        # multiply-adds, narrow layers, so 10 TFLOP/s assumed
        "settings": {
            "depths": (20, 56),
            "train_size": 60000,
            "test_size": 10000,
            "epochs": 6,
            "batch_size": 256,
        },
        "estimate_seconds": 80,
    },
    "ch05-resnet18": {
        # 64 filters, 28x28: 456 M multiply-adds, about 6.6 s an epoch
        "settings": {
            "width": 64,
            "train_size": 60000,
            "test_size": 10000,
            "epochs": 10,
            "batch_size": 256,
            "warmup_epochs": 1,
        },
        "estimate_seconds": 80,
    },
    "ch06-googlenet": {
        # full width: 379 M multiply-adds; two models (with and without
        # the auxiliary heads), about 5.5 s an epoch each: the tightest lab
        "settings": {
            "train_size": 60000,
            "test_size": 10000,
            "epochs": 6,
            "width": 1.0,
            "augment": True,
            "batch_size": 256,
        },
        "estimate_seconds": 85,
    },
    "ch06-inception-cost": {
        "settings": {"repeats": 25, "batch_sizes": (1, 4, 16, 64, 256)},
        "estimate_seconds": 20,
    },
}
