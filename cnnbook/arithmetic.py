"""Layer arithmetic: output sizes, parameters and multiplications.

Introduced in Chapter 1 (CNN layer arithmetic); every later chapter uses
:func:`layer_table` to check its architecture against these formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnnbook.kinds import is_layer
from cnnbook.tables import Shown, shape_text


def _check_positive(**values):
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"{name} must be a positive integer, got {value!r}"
            )


def conv_output_size(n, f, p=0, s=1):
    """Height (or width) after a convolution: floor((n + 2p - f) / s) + 1.

    Chapter 1. ``n`` is the input size, ``f`` the filter size, ``p`` the
    padding on each side and ``s`` the stride.
    """
    _check_positive(n=n, f=f, s=s)
    if not isinstance(p, int) or p < 0:
        raise ValueError(f"p must be a non-negative integer, got {p!r}")
    if f > n + 2 * p:
        raise ValueError(
            f"a {f}x{f} filter does not fit in an input of size {n} "
            f"with padding {p}: need f <= n + 2p"
        )
    return (n + 2 * p - f) // s + 1


def same_padding(f):
    """Padding that keeps the size at stride 1: (f - 1) / 2 (odd f). Ch. 1."""
    _check_positive(f=f)
    if f % 2 == 0:
        raise ValueError(f"'same' padding needs an odd filter size, got {f}")
    return (f - 1) // 2


def conv_params(f, n_C_prev, n_C, bias=True):
    """Parameters of a convolution: (f*f*n_C_prev + bias) * n_C. Chapter 1."""
    _check_positive(f=f, n_C_prev=n_C_prev, n_C=n_C)
    return (f * f * n_C_prev + int(bool(bias))) * n_C


def conv_multiplications(n_H, n_W, n_C, f, n_C_prev):
    """Multiplications of a convolution: output positions x filter volume.

    Chapter 1. ``n_H x n_W x n_C`` is the *output* volume; each of its
    entries costs one ``f x f x n_C_prev`` dot product. Additions are not
    counted (there is one fewer addition than multiplications per entry,
    plus the bias).
    """
    _check_positive(n_H=n_H, n_W=n_W, n_C=n_C, f=f, n_C_prev=n_C_prev)
    return n_H * n_W * n_C * f * f * n_C_prev


def depthwise_multiplications(n_H, n_W, n_C, f):
    """Multiplications of a depthwise convolution: one ``f x f`` filter per
    channel, so each of the ``n_H x n_W x n_C`` outputs costs ``f * f``
    (the output keeps the input's ``n_C`` channels). Chapter 8."""
    _check_positive(n_H=n_H, n_W=n_W, n_C=n_C, f=f)
    return n_H * n_W * n_C * f * f


@dataclass(frozen=True)
class SeparableCost:
    """Multiplications of a depthwise-separable convolution, against the
    normal convolution with the same input, filter size and output.
    Chapter 8."""

    normal: int
    depthwise: int
    pointwise: int

    @property
    def separable(self):
        return self.depthwise + self.pointwise

    @property
    def ratio(self):
        """Separable over normal: :func:`separable_ratio`."""
        return self.separable / self.normal


def separable_cost(n_H, n_W, n_C_prev, f, n_C):
    """:class:`SeparableCost` for an output of ``n_H x n_W x n_C`` from
    ``n_C_prev`` channels with ``f x f`` filters: the normal convolution
    (:func:`conv_multiplications`), the depthwise step
    (:func:`depthwise_multiplications`, ``n_C_prev`` channels kept) and the
    1x1 pointwise step. Chapter 8."""
    return SeparableCost(
        normal=conv_multiplications(n_H, n_W, n_C, f, n_C_prev),
        depthwise=depthwise_multiplications(n_H, n_W, n_C_prev, f),
        pointwise=conv_multiplications(n_H, n_W, n_C, 1, n_C_prev),
    )


def separable_ratio(n_C, f):
    """Separable over normal multiplications, ``1/n_C + 1/f**2``: the
    pointwise step costs ``1/f²`` of the normal convolution and the
    depthwise step ``1/n_C`` of it, whatever the input size. Chapter 8."""
    _check_positive(n_C=n_C, f=f)
    return 1 / n_C + 1 / f**2


def pool_output_size(n, f, s=None, p=0):
    """Height (or width) after pooling; the stride defaults to f. Chapter 1."""
    return conv_output_size(n, f, p, f if s is None else s)


def pool_params(*_args, **_kwargs):
    """A pooling layer learns nothing: always 0 parameters. Chapter 1."""
    return 0


def dense_params(n_in, n_out, bias=True):
    """Parameters of a fully connected layer. Chapter 1."""
    _check_positive(n_in=n_in, n_out=n_out)
    return (n_in + int(bool(bias))) * n_out


def dense_multiplications(n_in, n_out):
    """Multiplications of a fully connected layer: n_in * n_out. Chapter 1."""
    _check_positive(n_in=n_in, n_out=n_out)
    return n_in * n_out


@dataclass
class LayerRow:
    """One row of :func:`layer_table`."""

    name: str
    kind: str
    output_shape: tuple
    params: int
    multiplications: int


class LayerTable(Shown, list):
    """A list of :class:`LayerRow` that shows itself as a table: HTML in a
    notebook, text in a terminal (:mod:`cnnbook.tables`). Chapter 1."""

    @property
    def total_params(self):
        return sum(r.params for r in self)

    @property
    def total_multiplications(self):
        return sum(r.multiplications for r in self)

    def signature(self):
        """(layer class, output shape, parameters) of every row: what two
        models must share to be the same network, whatever their layer
        names. Chapter 4."""
        return [(r.kind, r.output_shape, r.params) for r in self]

    def columns(self):
        return ("layer", "type", "output", "params", "mults")

    def cells(self):
        rows = [
            (
                r.name,
                r.kind,
                shape_text(r.output_shape),
                r.params,
                r.multiplications,
            )
            for r in self
        ]
        total = (
            "total",
            "",
            "",
            self.total_params,
            self.total_multiplications,
        )
        return [*rows, total]


def _output_shape(layer):
    out = layer.output
    if isinstance(out, (list, tuple)):
        return tuple(tuple(o.shape) for o in out)
    return tuple(out.shape)


def _layer_multiplications(layer, output_shape):
    """Multiplications of the layer types whose cost the book counts."""
    if is_layer(layer, "DepthwiseConv2D"):
        positions = math.prod(output_shape[1:-1])
        return positions * math.prod(layer.kernel.shape)
    if is_layer(layer, "Conv1D", "Conv2D", "Conv3D") and output_shape:
        kernel = layer.kernel.shape  # (*kernel_size, c_in/groups, c_out)
        positions = math.prod(d for d in output_shape[1:-1])
        return positions * math.prod(kernel)
    if is_layer(layer, "Dense"):
        kernel = layer.kernel.shape
        positions = (
            math.prod(output_shape[1:-1]) if len(output_shape) > 2 else 1
        )
        return positions * kernel[0] * kernel[1]
    return 0


def layer_table(model):
    """Per-layer output shape, parameters and multiplications of a Keras model.

    Chapter 1. The parameter total equals ``model.count_params()``; the
    multiplications count convolutions and dense layers (the layers whose
    cost the book analyses) for one example. The table shows itself as
    HTML in a notebook and as text when printed.
    """
    table = LayerTable()
    for layer in model.layers:
        if is_layer(layer, "InputLayer"):
            continue
        shape = _output_shape(layer)
        single = shape if shape and not isinstance(shape[0], tuple) else ()
        table.append(
            LayerRow(
                name=layer.name,
                kind=type(layer).__name__,
                output_shape=shape,
                params=layer.count_params(),
                multiplications=_layer_multiplications(layer, single),
            )
        )
    return table
