"""What the ``gpu`` profile promises, lab by lab (issue #12).

Each lab, run under ``gpu`` on one H100-class GPU, finishes within
:data:`LAB_SECONDS` and all of them together within :data:`TOTAL_SECONDS`;
the training labs reach their test accuracy target, above the stored
``full`` runs made on two CPU cores. ``python -m cnnbook run-labs`` prints
each lab's figures next to its target.

The targets and estimates are declared with each lab in
:mod:`cnnbook.labs` (``Lab.gpu``); this module is a read-only view of them.
Nothing has been measured on a GPU yet. An estimate: training FLOPs per
image = 6 x the forward multiply-adds, at 25 TFLOP/s sustained (ResNet-50
at 224x224 trains at about 2,500-3,000 images/s on one H100 in mixed
precision, 30-37 TFLOP/s; 28x28 inputs use the GPU less well), at least
1 ms a step, plus about 10 s a model for compiling and evaluating. The
first GPU run replaces them by measured ones.
"""

from __future__ import annotations

from types import MappingProxyType

from cnnbook.labs import LABS

LAB_SECONDS = 90
# two device commands of at most 6 minutes each, within the 15 minutes of
# device time a session is lent (chapter 8 took the total past 8 minutes)
TOTAL_SECONDS = 12 * 60

# lab notebook stem -> what it trains and the test accuracy it must reach
# (None: the lab trains nothing, or its result is a comparison, not a score)
TARGETS = MappingProxyType(
    {
        stem: {
            "trains": lab.gpu.trains,
            "dataset": lab.dataset,
            "target_accuracy": lab.gpu.target_accuracy,
            "note": lab.gpu.note,
        }
        for stem, lab in LABS.items()
    }
)

# Seconds each lab's ``gpu`` settings are estimated to take on one H100 in
# bfloat16 (not measured).
ESTIMATED_SECONDS = MappingProxyType(
    {stem: lab.gpu.seconds for stem, lab in LABS.items()}
)


def target(lab):
    """The target accuracy of ``lab`` (a notebook stem), or None."""
    entry = LABS.get(lab)
    return entry.gpu.target_accuracy if entry else None
