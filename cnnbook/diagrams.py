"""Architecture pictures drawn from a Keras model definition.

Introduced in Chapter 3 and reused by the later chapters:

* :func:`describe` builds a model, keeps its per-layer table and frees the
  weights, so that a 138-million-parameter network can be summarised
  without keeping it in memory;
* :func:`architecture_diagram` draws the volumes a network produces as
  boxes whose height follows the spatial size and whose thickness follows
  the number of channels: the picture of a CNN shrinking and deepening;
* :func:`parameter_distribution` draws where the parameters live, layer by
  layer.
"""

from __future__ import annotations

import gc
import math

import matplotlib.pyplot as plt
from matplotlib.patches import Polygon

from cnnbook.arithmetic import LayerTable, layer_table
from cnnbook.kinds import is_layer

__all__ = [
    "describe",
    "architecture_diagram",
    "parameter_distribution",
    "volume_rows",
]

# Layers that change the shape of the data; the others (activations,
# normalisation, dropout) are left out of the architecture diagram.
SHAPE_LAYERS = (
    "Conv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "Dense",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Resizing",
    "DepthwiseConv2D",
    "SeparableConv2D",
)
# The layers whose kernel and stride _detail describes.
CONVOLUTIONS = (
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "Conv2DTranspose",
)
WINDOW_POOLS = (
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
)
COLOURS = {
    "Input": "#bbbbbb",
    "Resizing": "#bbbbbb",
    "Conv2D": "#4c72b0",
    "DepthwiseConv2D": "#4c72b0",
    "SeparableConv2D": "#4c72b0",
    "MaxPooling2D": "#dd8452",
    "AveragePooling2D": "#dd8452",
    "GlobalAveragePooling2D": "#dd8452",
    "GlobalMaxPooling2D": "#dd8452",
    "Flatten": "#937860",
    "Dense": "#55a868",
}


def _detail(layer):
    """A short description of a layer's hyper-parameters, e.g. '11x11/4'."""
    config = layer.get_config()
    if is_layer(layer, *CONVOLUTIONS):
        k, s = config["kernel_size"], config["strides"]
        text = f"{k[0]}\u00d7{k[1]}"
        return (
            text
            + (f"/{s[0]}" if s[0] != 1 else "")
            + (" same" if config.get("padding") == "same" and k[0] > 1 else "")
        )
    if is_layer(layer, *WINDOW_POOLS):
        k, s = config["pool_size"], config["strides"]
        return f"{k[0]}\u00d7{k[1]}/{s[0]}"
    return ""


def _table(model):
    table = layer_table(model)
    by_name = {layer.name: layer for layer in model.layers}
    table.details = {row.name: _detail(by_name[row.name]) for row in table}
    table.drawn = {
        row.name for row in table if is_layer(by_name[row.name], *SHAPE_LAYERS)
    }
    table.input_shape = tuple(model.inputs[0].shape)
    table.model_name = model.name
    return table


def describe(builder, *args, **kwargs):
    """Build ``builder(*args, **kwargs)``, keep its layer table, free it.

    Chapter 3. Returns the :func:`cnnbook.arithmetic.layer_table` of the
    model (with ``input_shape``, ``model_name`` and per-layer ``details``
    added), then deletes the model and clears the Keras session, so that
    summarising VGG-16 costs its 0.55 GB only for a moment.
    """
    import keras

    model = builder(*args, **kwargs)
    table = _table(model)
    del model
    keras.backend.clear_session()
    gc.collect()
    return table


def _as_table(model_or_table):
    if isinstance(model_or_table, LayerTable):
        if not hasattr(model_or_table, "input_shape"):
            raise ValueError(
                "a layer table needs its input_shape: make it "
                "with cnnbook.diagrams.describe"
            )
        return model_or_table
    return _table(model_or_table)


def volume_rows(model_or_table):
    """(label, kind, output shape, detail) of the layers the diagram draws.

    Chapter 3. The first row is the input; activations, normalisation and
    dropout layers are skipped because they keep the shape.
    """
    table = _as_table(model_or_table)
    details = getattr(table, "details", {})
    rows = [("input", "Input", table.input_shape[1:], "")]
    for row in table:
        if row.name in table.drawn:
            rows.append(
                (
                    row.name,
                    row.kind,
                    tuple(row.output_shape[1:]),
                    details.get(row.name, ""),
                )
            )
    return rows


def _shape_text(shape):
    return "\u00d7".join(str(d) for d in shape)


def _draw_box(ax, x, width, height, depth, colour):
    """A box seen slightly from above and the right: front, top and side."""
    front = [
        (x, -height / 2),
        (x + width, -height / 2),
        (x + width, height / 2),
        (x, height / 2),
    ]
    dx, dy = depth * 0.6, depth * 0.45
    top = [
        (x, height / 2),
        (x + width, height / 2),
        (x + width + dx, height / 2 + dy),
        (x + dx, height / 2 + dy),
    ]
    side = [
        (x + width, -height / 2),
        (x + width + dx, -height / 2 + dy),
        (x + width + dx, height / 2 + dy),
        (x + width, height / 2),
    ]
    for face, alpha in ((front, 0.95), (top, 0.7), (side, 0.55)):
        ax.add_patch(
            Polygon(
                face,
                closed=True,
                facecolor=colour,
                alpha=alpha,
                edgecolor="black",
                linewidth=0.6,
            )
        )
    return dx, dy


def architecture_diagram(model_or_table, title=None, figsize=None):
    """Draw a CNN as the volumes it produces, left to right. Chapter 3.

    Each convolution or pooling output ``h x w x c`` is a box whose height
    grows with ``h`` and whose thickness grows with ``c`` (both on a square-
    root scale, so that 3 and 4096 fit in one picture); dense layers are
    thin bars whose height grows with the number of units. The shape is
    written under each box and the kernel/stride above it. Accepts a Keras
    model or a table from :func:`describe`.
    """
    rows = volume_rows(model_or_table)
    table = _as_table(model_or_table)
    n = len(rows)
    fig, ax = plt.subplots(figsize=figsize or (max(8, 1.05 * n), 3.8))
    max_side = max(s[0] for _, _, s, _ in rows if len(s) == 3)
    max_units = max([s[0] for _, _, s, _ in rows if len(s) == 1] + [1])
    x, gap = 0.0, 0.55
    for name, kind, shape, detail in rows:
        colour = COLOURS.get(kind, "#8172b3")
        if len(shape) == 3:
            height = 2.6 * math.sqrt(shape[0] / max_side)
            width = 0.08 + 0.5 * math.sqrt(shape[2] / 512)
            depth = height * 0.5
        else:
            height = 0.4 + 2.2 * math.sqrt(shape[0] / max_units)
            width, depth = 0.12, 0.0
        dx, dy = _draw_box(ax, x, width, height, depth, colour)
        centre = x + (width + dx) / 2
        ax.text(
            centre,
            -height / 2 - 0.18,
            _shape_text(shape),
            ha="center",
            va="top",
            fontsize=7,
            rotation=90 if len(shape) == 3 else 0,
        )
        label = name if not detail else f"{name}\n{detail}"
        ax.text(
            centre,
            height / 2 + dy + 0.12,
            label,
            ha="center",
            va="bottom",
            fontsize=6.5,
            rotation=90,
        )
        x += width + dx + gap
    ax.set_xlim(-0.3, x)
    ax.set_ylim(-3.2, 3.6)
    ax.set_aspect("equal")
    ax.axis("off")
    kinds = {kind for _, kind, _, _ in rows}
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=COLOURS[k], label=k)
        for k in COLOURS
        if k in kinds and k != "Resizing"
    ]
    ax.legend(
        handles=handles,
        loc="lower right",
        fontsize=7,
        frameon=False,
        ncol=len(handles),
    )
    ax.set_title(
        title
        or f"{getattr(table, 'model_name', 'model')}: "
        f"{table.total_params:,} parameters",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def parameter_distribution(model_or_table, title=None, log=False):
    """Bar chart of the parameters of each layer that has any. Chapter 3.

    Each bar is labelled with its share of the total, which makes plain
    where a network keeps its weights (in AlexNet and VGG: the first dense
    layer).
    """
    table = _as_table(model_or_table)
    rows = [r for r in table if r.params > 0]
    total = sum(r.params for r in table)
    fig, ax = plt.subplots(figsize=(max(6, 0.42 * len(rows) + 2), 3.6))
    colours = [COLOURS.get(r.kind, "#8172b3") for r in rows]
    positions = range(len(rows))
    ax.bar(positions, [r.params for r in rows], color=colours)
    for i, r in enumerate(rows):
        share = r.params / total
        if share >= 0.005:
            ax.text(
                i,
                r.params,
                f"{share:.0%}" if share >= 0.01 else f"{share:.1%}",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(
        list(positions),
        [r.name for r in rows],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    ax.set_ylabel("parameters")
    if log:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(6, 6))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(
        title
        or f"{getattr(table, 'model_name', 'model')}: "
        f"{total:,} parameters by layer",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
