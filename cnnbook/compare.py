"""The case studies side by side: cost from the model definitions, results
from the run records. Introduced in Chapter 7.

Cost of one network, for one image: its parameters, its multiply-
accumulates (MACs: one multiplication and one addition, the unit in which
the papers count; convolutions and fully connected layers, as
:func:`cnnbook.arithmetic.layer_table` counts them) and its forward
activation memory at 4 bytes a value, counted two ways: every layer's
output (what a Keras training step keeps for the backward pass, batch
normalisation, activation, padding and merge layers included), and the
outputs of the convolutions and fully connected layers alone (the same
count for every network, whatever else its builder adds). Where the
parameters and the MACs sit, the share of the fully connected layers is
kept apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from cnnbook import labs, records
from cnnbook.arithmetic import layer_table
from cnnbook.kinds import is_layer

# The layers that do a network's arithmetic: their outputs are the
# activations that every network has, whatever else its builder adds.
WEIGHTED = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "Dense")
BYTES_PER_VALUE = 4  # float32


@dataclass
class Cost:
    """Parameters, MACs and activations of one network for one image;
    ``weighted_activations`` counts the outputs of the convolutions and
    fully connected layers only, ``dense_parameters`` and ``dense_macs``
    the fully connected layers' share."""

    parameters: int
    macs: int
    activations: int
    weighted_activations: int = 0
    dense_parameters: int = 0
    dense_macs: int = 0

    @property
    def activation_megabytes(self):
        """Forward activation memory in MB (float32), every layer."""
        return BYTES_PER_VALUE * self.activations / 1e6

    @property
    def weighted_activation_megabytes(self):
        """The same for the convolutions and dense layers alone."""
        return BYTES_PER_VALUE * self.weighted_activations / 1e6


def _outputs(layer):
    out = layer.output
    return out if isinstance(out, (list, tuple)) else [out]


def cost(model):
    """:class:`Cost` of ``model`` (nested models are looked into). Ch. 7."""

    rows = {row.name: row for row in layer_table(model)}
    total = Cost(model.count_params(), 0, 0)
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested model
            inner = cost(layer)
            total.macs += inner.macs
            total.activations += inner.activations
            total.weighted_activations += inner.weighted_activations
            total.dense_parameters += inner.dense_parameters
            total.dense_macs += inner.dense_macs
            continue
        if is_layer(layer, "InputLayer"):
            continue
        values = sum(
            math.prod(d for d in o.shape[1:] if d is not None)
            for o in _outputs(layer)
        )
        total.activations += values
        if is_layer(layer, *WEIGHTED):
            total.weighted_activations += values
        total.macs += rows[layer.name].multiplications
        if is_layer(layer, "Dense"):
            total.dense_parameters += rows[layer.name].params
            total.dense_macs += rows[layer.name].multiplications
    return total


# Rows of the chapter's table: (lab, model name in the records, label),
# declared with each lab in cnnbook.labs (``Lab.case_study``); a name may
# end in * (ResNet-18's name carries its width).
CASE_STUDIES = labs.case_studies()

# The networks as the papers define them, for ImageNet-size inputs
# (LeNet-5 for its 32x32 digits); Chapter 8's three at width 1.
CANONICAL = (
    ("LeNet-5", "lenet5", {}),
    ("AlexNet", "alexnet", {}),
    ("VGG-16", "vgg16", {}),
    ("GoogLeNet", "googlenet", {"aux_classifiers": False}),
    ("ResNet-50", "resnet50", {}),
    ("MobileNet", "mobilenet_v1", {}),
    ("MobileNetV2", "mobilenet_v2", {}),
    ("EfficientNet-B0", "efficientnet_b0", {}),
)


def builder_for(model_name):
    """The builder of a lab's network from its record's model name: a
    function of the record's settings that returns the network as chapter
    7 costs it (GoogLeNet without its auxiliary heads), from the lab's
    entry in :mod:`cnnbook.labs`."""
    _lab, network = labs.find_network(model_name)
    build = network.deployed or network.build
    return lambda settings: build(dict(settings), model_name)


@dataclass
class Row:
    """One trained network: its cost and what its runs measured.
    ``seeds`` are the ``cpu``-profile records a range over seeds spans
    (one fingerprint, the newest); ``cpu_runs`` every ``cpu``-profile
    record, whatever its fingerprint, by seed: each seed's own run, to be
    read one at a time, never ranged."""

    label: str
    lab: str
    model: str
    cost: Cost
    record: dict
    seeds: list
    gpu: dict | None
    cpu_runs: list

    @property
    def accuracy(self):
        return self.record["test_accuracy"]


def _matching(root, lab, model, **match):
    return [
        r
        for r in records.load_all(root, lab=lab, **match)
        if fnmatchcase(r["model"], model)
    ]


def trained(root=None, profile="full"):
    """A :class:`Row` for every case study with a stored ``profile`` run on
    the CPU; ``seeds`` are its ``cpu``-profile records of one fingerprint
    (settings and code; the newest, :func:`cnnbook.records.newest_group`,
    the records a ``{run}`` range of the page spans), ``cpu_runs`` all its
    ``cpu``-profile records, ``gpu`` its ``gpu``-profile record if one
    exists. Chapter 7."""
    import keras  # delays keras

    rows = []
    for lab, model, label in CASE_STUDIES:
        stored = _matching(
            root, lab, model, profile=profile, device_kind="cpu", seed=0
        )
        if not stored:
            continue
        record = stored[0]
        net = builder_for(record["model"])(record["settings"])
        network_cost = cost(net)
        del net
        keras.backend.clear_session()
        # one fingerprint only: a range over seeds, not over code versions
        cpu_runs = _matching(
            root, lab, model, profile="cpu", device_kind="cpu"
        )
        seeds = records.newest_group(cpu_runs)
        gpu = _matching(root, lab, model, profile="gpu", device_kind="gpu")
        rows.append(
            Row(
                label,
                lab,
                record["model"],
                network_cost,
                record,
                sorted(seeds, key=lambda r: r["seed"]),
                gpu[0] if gpu else None,
                sorted(cpu_runs, key=lambda r: r["seed"]),
            )
        )
    return rows


def canonical():
    """``[(name, Cost)]`` of the networks at the papers' sizes. Ch. 7."""
    import keras  # delays keras

    from cnnbook import models  # delays keras

    result = []
    for name, builder, options in CANONICAL:
        net = getattr(models, builder)(**options)
        result.append((name, cost(net)))
        del net
        keras.backend.clear_session()
    return result


def costs_path(root=None):
    """Where :func:`write_costs` stores the costs the pages quote."""

    return Path(root or records.results_dir()) / "costs.json"


def write_costs(papers, rows, root=None):
    """Store the costs of the canonical and the trained networks (Ch. 7)
    for the pages' ``{cost}`` references; returns the path: under ``root``,
    else :func:`cnnbook.records.output_dir` (the book's ``results/`` only
    for a canonical run)."""

    table = {
        name: {
            "parameters": c.parameters,
            "macs": c.macs,
            "activation_megabytes": round(c.activation_megabytes, 2),
            "activation_bytes": BYTES_PER_VALUE * c.activations,
            "weighted_activation_bytes": (
                BYTES_PER_VALUE * c.weighted_activations
            ),
            "dense_parameters": c.dense_parameters,
            "dense_macs": c.dense_macs,
        }
        for name, c in [*papers, *((row.label, row.cost) for row in rows)]
    }
    path = costs_path(root or records.output_dir())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return path


_SCALES = {"_billions": 1e9, "_millions": 1e6, "_thousands": 1e3}


def quoted_cost(text, root=None):
    """The text of ``{cost}`network:field```, e.g. ``VGG-16:macs``; a
    field ending in ``_billions``, ``_millions`` or ``_thousands`` is shown
    in that unit with two decimals (``activation_bytes_millions``: MB)."""

    name, _, field = text.rpartition(":")
    scale = 1
    for suffix, unit in _SCALES.items():
        if field.endswith(suffix):
            field, scale = field.removesuffix(suffix), unit
            break
    path = costs_path(root)
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LookupError(f"cannot read {path} ({exc})") from exc
    if name not in table or field not in table[name]:
        raise LookupError(f"no {field!r} of {name!r} in {path}")
    value = table[name][field]
    if scale != 1:
        return f"{value / scale:,.2f}"
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
