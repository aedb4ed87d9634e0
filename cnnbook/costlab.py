"""Counting against timing: chapter 8's cost lab.

A depthwise-separable convolution needs far fewer multiplications than the
standard convolution it replaces (:func:`cnnbook.arithmetic.separable_cost`),
and MobileNet v2's inverted residual block fewer than ResNet's basic block
at the same input and output. This module builds those pairs, times them
and says, from the timings, where the ratio of times follows the ratio of
multiply-accumulates (MACs) and where it does not.

The explanation it offers is the roofline model: a layer that does few
MACs per byte it reads and writes (its *arithmetic intensity*) waits on
memory, not on arithmetic, so its time follows the bytes it moves rather
than its MACs. :func:`layer_traffic` counts those bytes the simple way:
every layer reads its inputs and its weights from memory and writes its
output there, as a library that does not fuse layers does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from cnnbook import arithmetic
from cnnbook.kinds import is_layer
from cnnbook.models import basic_block, inverted_residual
from cnnbook.tables import Table

__all__ = [
    "TOLERANCE",
    "separable_pair",
    "block_pair",
    "pair_macs",
    "LayerTraffic",
    "layer_traffic",
    "traffic_bytes",
    "median_seconds",
    "time_forward",
    "time_train",
    "measure",
    "timing_table",
    "ratio_table",
    "Timing",
    "LayerSpeed",
    "layer_speeds",
    "speed_table",
    "Verdict",
    "verdict",
    "size_text",
]

# "The time ratio follows the MAC ratio" when it lies within this factor
# of it, either way (fixed before the first timing run).
TOLERANCE = 1.5

_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def _bytes_per_value(dtype):
    name = keras.backend.standardize_dtype(dtype)
    if name not in _ITEMSIZE:
        raise ValueError(f"no size known for dtype {name!r}")
    return _ITEMSIZE[name]


def separable_pair(size, channels, *, kernel=3):
    """``(standard, separable)``: two Keras models from a ``size``×``size``
    map of ``channels`` channels to one of the same shape. ``standard`` is
    one ``kernel``×``kernel`` convolution; ``separable`` a depthwise
    ``kernel``×``kernel`` convolution then a 1×1 pointwise one. Both are
    bare (no bias, batch normalisation or activation), so they compute
    exactly the products :func:`cnnbook.arithmetic.separable_cost` counts.
    Chapter 8."""
    shape = (size, size, channels)
    standard = keras.Sequential(
        [
            keras.Input(shape),
            layers.Conv2D(
                channels, kernel, padding="same", use_bias=False, name="conv"
            ),
        ],
        name="standard",
    )
    separable = keras.Sequential(
        [
            keras.Input(shape),
            layers.DepthwiseConv2D(
                kernel, padding="same", use_bias=False, name="depthwise"
            ),
            layers.Conv2D(channels, 1, use_bias=False, name="pointwise"),
        ],
        name="separable",
    )
    return standard, separable


def block_pair(size, channels, *, expansion=6):
    """``(basic, inverted)``: ResNet's :func:`~cnnbook.models.basic_block`
    and MobileNet v2's :func:`~cnnbook.models.inverted_residual` (1×1
    expansion by ``expansion``, 3×3 depthwise, linear 1×1 projection), each
    from a ``size``×``size``×``channels`` map to one of the same shape, with
    their batch normalisations, activations and identity shortcuts.
    Chapter 8."""
    shape = (size, size, channels)
    x = keras.Input(shape)
    basic = keras.Model(
        x, basic_block(x, channels, name="basic"), name="basic"
    )
    x = keras.Input(shape)
    inverted = keras.Model(
        x,
        inverted_residual(x, channels, expansion=expansion, name="inverted"),
        name="inverted",
    )
    return basic, inverted


def pair_macs(pair, size, channels, *, expansion=6, kernel=3):
    """MACs per image of the two models of ``pair`` (``"conv"``:
    :func:`separable_pair`, ``"block"``: :func:`block_pair`), from the
    formulas of :mod:`cnnbook.arithmetic`. Chapter 8."""
    if pair == "conv":
        cost = arithmetic.separable_cost(
            size, size, channels, kernel, channels
        )
        return cost.normal, cost.separable
    if pair == "block":
        conv = arithmetic.conv_multiplications
        wide = channels * expansion
        basic = 2 * conv(size, size, channels, 3, channels)
        inverted = (
            conv(size, size, wide, 1, channels)
            + arithmetic.depthwise_multiplications(size, size, wide, 3)
            + conv(size, size, channels, 1, wide)
        )
        return basic, inverted
    raise ValueError(f"pair is 'conv' or 'block', not {pair!r}")


@dataclass(frozen=True)
class LayerTraffic:
    """One layer of a forward pass over a batch: its MACs and the bytes it
    reads (inputs and weights) and writes (its output)."""

    name: str
    macs: int
    bytes: int

    @property
    def intensity(self):
        """MACs per byte moved."""
        return self.macs / self.bytes


def _values(tensors):
    tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    return sum(math.prod(t.shape[1:]) for t in tensors)


def layer_traffic(model, batch):
    """:class:`LayerTraffic` of every layer of ``model`` for a batch of
    ``batch`` images: MACs from :func:`cnnbook.arithmetic.layer_table`;
    bytes if the layer reads its inputs and weights from memory and writes
    its output there (activations in the layer's compute dtype, weights in
    their own). Chapter 8."""
    macs = {
        row.name: row.multiplications for row in arithmetic.layer_table(model)
    }
    rows = []
    for layer in model.layers:
        if is_layer(layer, "InputLayer"):
            continue
        activations = _values(layer.input) + _values(layer.output)
        moved = batch * activations * _bytes_per_value(layer.compute_dtype)
        moved += sum(
            math.prod(w.shape) * _bytes_per_value(w.dtype)
            for w in layer.weights
        )
        rows.append(LayerTraffic(layer.name, batch * macs[layer.name], moved))
    return rows


def traffic_bytes(model, batch):
    """Bytes a forward pass of ``model`` over ``batch`` images moves,
    summed over its layers (:func:`layer_traffic`). Chapter 8."""
    return sum(row.bytes for row in layer_traffic(model, batch))


def median_seconds(calls, repeats, warmup=2):
    """The median wall time of each of ``calls`` (functions without
    arguments that return once their work is done), after ``warmup``
    calls of each (which compile them). The calls are timed in turn, one
    of each per round, so that a change in the machine's load meanwhile
    touches them all alike. Chapter 8."""
    for _ in range(warmup):
        for call in calls:
            call()
    times = [[] for _ in calls]
    for _ in range(repeats):
        for call, spent in zip(calls, times):
            start = time.perf_counter()
            call()
            spent.append(time.perf_counter() - start)
    return [float(np.median(spent)) for spent in times]


def _train_call(model, batch):
    """One training step of ``model`` on ``batch`` (plain SGD, the mean
    squared output against zeros as the loss): forward, backward and the
    update, as a function of no arguments. The model is compiled once, on
    the first call for it."""
    if not model.compiled:
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    target = np.zeros(model.compute_output_shape(batch.shape), "float32")
    return lambda: model.train_on_batch(batch, target)


@contextlib.contextmanager
def _retracing_unreported():
    """TensorFlow warns on its logger when the step functions of many
    models are traced in a row, which is what a lab that times a new model
    at each setting does on purpose (the warm-up calls absorb the tracing).
    Only errors are shown meanwhile; other backends log nothing there."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def time_forward(models, batch, repeats):
    """The median seconds of a forward pass of each of ``models`` on
    ``batch``, timed in turn (:func:`median_seconds`). Chapter 8."""
    with _retracing_unreported():
        return tuple(
            median_seconds(
                [lambda m=m: m.predict_on_batch(batch) for m in models],
                repeats,
            )
        )


def time_train(models, batch, repeats):
    """The median seconds of a training step of each of ``models`` on
    ``batch`` (plain SGD on the mean squared output), timed in turn.
    Chapter 8."""
    with _retracing_unreported():
        return tuple(
            median_seconds([_train_call(m, batch) for m in models], repeats)
        )


def measure(pair, shapes, batch_sizes, repeats, *, seed=0):
    """:class:`Timing` of ``pair`` (``"conv"``: :func:`separable_pair`,
    ``"block"``: :func:`block_pair`) at every ``(size, channels)`` of
    ``shapes`` and every batch size, on random inputs drawn with ``seed``:
    the MACs of :func:`pair_macs`, the bytes of :func:`traffic_bytes`, and
    the forward and training times of :func:`time_forward` and
    :func:`time_train`. The models of a shape are built once and timed at
    every batch size. Chapter 8."""
    build = {"conv": separable_pair, "block": block_pair}[pair]
    rng = np.random.default_rng(seed)
    timings = []
    for size, channels in shapes:
        models = build(size, channels)
        for n in batch_sizes:
            x = rng.standard_normal((n, size, size, channels), "float32")
            timings.append(
                Timing(
                    pair,
                    size,
                    channels,
                    n,
                    pair_macs(pair, size, channels),
                    tuple(traffic_bytes(m, n) for m in models),
                    time_forward(models, x, repeats),
                    time_train(models, x, repeats),
                )
            )
    return timings


def timing_table(timings, names=("baseline", "candidate")):
    """The timings as a table: per setting, the median milliseconds of a
    forward pass and of a training step of each model. Chapter 8."""
    base, cand = names
    return Table(
        (
            "map",
            "batch",
            f"{base} fwd ms",
            f"{cand} fwd ms",
            f"{base} train ms",
            f"{cand} train ms",
        ),
        [
            (
                size_text(t.size, t.channels),
                t.batch,
                f"{t.forward[0] * 1e3:.2f}",
                f"{t.forward[1] * 1e3:.2f}",
                f"{t.train[0] * 1e3:.2f}",
                f"{t.train[1] * 1e3:.2f}",
            )
            for t in timings
        ],
    )


def ratio_table(timings):
    """The candidate over the baseline, per setting: MACs and bytes moved
    (predicted) beside the forward and training times (measured).
    Chapter 8."""
    return Table(
        ("map", "batch", "MACs", "bytes", "fwd time", "train time"),
        [
            (
                size_text(t.size, t.channels),
                t.batch,
                f"{t.mac_ratio:.3f}",
                f"{t.byte_ratio:.3f}",
                f"{t.time_ratio('forward'):.3f}",
                f"{t.time_ratio('train'):.3f}",
            )
            for t in timings
        ],
    )


@dataclass(frozen=True)
class LayerSpeed:
    """One layer timed on its own over a batch: its kind (``"standard"``,
    ``"depthwise"``, ``"pointwise"``), the map, the batch, its
    :class:`LayerTraffic` and the median seconds of its forward pass."""

    kind: str
    size: int
    channels: int
    batch: int
    traffic: LayerTraffic
    seconds: float

    @property
    def macs_per_second(self):
        return self.traffic.macs / self.seconds

    @property
    def bytes_per_second(self):
        return self.traffic.bytes / self.seconds


def layer_speeds(shapes, batch, repeats, *, seed=0):
    """:class:`LayerSpeed` of the standard convolution and of the
    depthwise and the pointwise layers of :func:`separable_pair`, each
    timed alone (the separable pair's layers as one-layer models sharing
    its weights), at every ``(size, channels)`` of ``shapes`` on ``batch``
    random maps. Chapter 8."""
    rng = np.random.default_rng(seed)
    speeds = []
    for size, channels in shapes:
        standard, separable = separable_pair(size, channels)
        shape = (size, size, channels)
        alone = [standard] + [
            keras.Sequential([keras.Input(shape), layer], name=layer.name)
            for layer in separable.layers
        ]
        x = rng.standard_normal((batch, *shape), "float32")
        seconds = time_forward(alone, x, repeats)
        for model, spent in zip(alone, seconds):
            [traffic] = layer_traffic(model, batch)
            speeds.append(
                LayerSpeed(
                    model.name,
                    size,
                    channels,
                    batch,
                    traffic,
                    spent,
                )
            )
    return speeds


def speed_table(speeds):
    """:func:`layer_speeds` as a table: MACs per byte moved (predicted),
    milliseconds, billions of MACs per second and GB moved per second
    (measured). Chapter 8."""
    return Table(
        ("map", "layer", "MACs/byte", "ms", "GMAC/s", "GB/s"),
        [
            (
                size_text(s.size, s.channels),
                s.kind,
                f"{s.traffic.intensity:.1f}",
                f"{s.seconds * 1e3:.2f}",
                f"{s.macs_per_second / 1e9:.1f}",
                f"{s.bytes_per_second / 1e9:.1f}",
            )
            for s in speeds
        ],
    )


def size_text(size, channels):
    """``56×56×64``: a map's shape as the lab's tables show it."""
    return f"{size}\u00d7{size}\u00d7{channels}"


@dataclass(frozen=True)
class Timing:
    """One setting of the lab: a pair of models (the baseline first) on
    ``batch`` maps of ``size``×``size``×``channels``; MACs per image and
    bytes moved per batch by each; the median seconds of a forward pass and
    of a training step of each."""

    pair: str
    size: int
    channels: int
    batch: int
    macs: tuple
    bytes: tuple
    forward: tuple
    train: tuple

    @property
    def setting(self):
        return f"{size_text(self.size, self.channels)} at batch {self.batch}"

    @property
    def mac_ratio(self):
        """The candidate's MACs over the baseline's."""
        return self.macs[1] / self.macs[0]

    @property
    def byte_ratio(self):
        """The candidate's bytes moved over the baseline's."""
        return self.bytes[1] / self.bytes[0]

    def time_ratio(self, step):
        """The candidate's time over the baseline's, ``step`` being
        ``"forward"`` or ``"train"``."""
        baseline, candidate = getattr(self, step)
        return candidate / baseline

    def intensity(self, which):
        """MACs per byte of the baseline (0) or the candidate (1)."""
        return self.macs[which] * self.batch / self.bytes[which]


@dataclass(frozen=True)
class Verdict:
    """What the timings say: the settings whose time ratio followed the
    MAC ratio (within :data:`TOLERANCE`), those whose did not, the excess
    (time ratio over MAC ratio) of the latter, how many of them lay nearer
    the ratio of bytes moved, and the settings where the candidate was
    slower than the baseline; :attr:`text` says it in words."""

    step: str
    followed: tuple
    missed: tuple
    excess: tuple
    nearer_bytes: int
    slower: tuple
    text: str


def _settings_text(timings):
    """``56×56×64 at batches 1 and 8, 7×7×512 at batch 32``."""
    grouped = {}
    for t in timings:
        grouped.setdefault(size_text(t.size, t.channels), []).append(t.batch)
    parts = []
    for shape, batches in grouped.items():
        numbers = [str(b) for b in batches]
        if len(numbers) == 1:
            parts.append(f"{shape} at batch {numbers[0]}")
        else:
            listed = ", ".join(numbers[:-1]) + f" and {numbers[-1]}"
            parts.append(f"{shape} at batches {listed}")
    return "; ".join(parts)


def verdict(timings, step, names=("baseline", "candidate"), tolerance=None):
    """:class:`Verdict` of ``timings`` (:class:`Timing` s of one pair) for
    ``step`` (``"forward"`` or ``"train"``). A setting *follows* the count
    when its time ratio lies within a factor ``tolerance`` (default
    :data:`TOLERANCE`) of its MAC ratio; a setting that does not is
    *nearer the bytes* when its time ratio is closer, on a log scale, to
    the ratio of bytes moved than to the MAC ratio. ``names`` name the
    baseline and the candidate in the text. Chapter 8."""
    tolerance = TOLERANCE if tolerance is None else tolerance
    if not timings:
        raise ValueError("no timings to judge")
    followed, missed = [], []
    for t in timings:
        off = abs(math.log(t.time_ratio(step) / t.mac_ratio))
        (followed if off <= math.log(tolerance) else missed).append(t)
    excess = tuple(t.time_ratio(step) / t.mac_ratio for t in missed)
    nearer = sum(
        abs(math.log(t.time_ratio(step) / t.byte_ratio))
        < abs(math.log(t.time_ratio(step) / t.mac_ratio))
        for t in missed
    )
    slower = tuple(t for t in timings if t.time_ratio(step) > 1)
    what = "forward pass" if step == "forward" else "training step"
    base, cand = names
    text = (
        f"{what.capitalize()}, {cand} against {base}: the time ratio "
        f"followed the MAC ratio (within a factor of {tolerance:g}) at "
        f"{len(followed)} of {len(timings)} settings"
    )
    text += f" ({_settings_text(followed)})." if followed else "."
    if missed:
        low, high = min(excess), max(excess)
        span = (
            f"{low:.1f} times"
            if f"{low:.1f}" == f"{high:.1f}"
            else f"{low:.1f} to {high:.1f} times"
        )
        text += (
            f" At the other {len(missed)} ({_settings_text(missed)}) it "
            f"was {span} the MAC ratio, and {nearer} of them lay nearer "
            f"the ratio of bytes moved than that of MACs."
        )
    if slower:
        text += (
            f" The {cand} took longer than the {base} at "
            f"{len(slower)} settings ({_settings_text(slower)})."
            if len(slower) > 1
            else f" The {cand} took longer than the {base} at "
            f"{_settings_text(slower)}."
        )
    return Verdict(
        step,
        tuple(followed),
        tuple(missed),
        excess,
        nearer,
        slower,
        text,
    )
