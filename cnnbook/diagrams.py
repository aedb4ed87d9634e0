"""Architecture pictures drawn from a Keras model definition.

Introduced in Chapter 3 and reused by the later chapters:

* :func:`describe` builds a model, keeps its per-layer table and frees the
  weights, so that a 138-million-parameter network can be summarised
  without keeping it in memory;
* :func:`architecture_diagram` draws the volumes a network produces as
  boxes whose height follows the spatial size and whose thickness follows
  the number of channels: the picture of a CNN shrinking and deepening;
* :func:`parameter_distribution` draws where the parameters live, layer by
  layer;
* :func:`block_diagram` draws a network with branches (Chapters 5, 6 and
  8: residual blocks, inception modules, GoogLeNet and its auxiliary
  classifiers, inverted residual blocks, MobileNet v2) as boxes and
  arrows, from the boxes :func:`layer_graph` reads off the model's
  connections.

The architecture figures of chapters 2, 5, 6 and 8 (:data:`DIAGRAMS`) are
drawn from the model code and written to ``book/figures/`` by
``python -m cnnbook.diagrams``; ``tests/test_diagrams.py`` fails when a
stored PNG is no longer what the code draws.
"""

from __future__ import annotations

import argparse
import gc
import io
import math
import pathlib

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.patches import Polygon

from cnnbook.arithmetic import LayerTable, layer_table
from cnnbook.kinds import is_layer
from cnnbook.plots import FIGURES

__all__ = [
    "describe",
    "architecture_diagram",
    "parameter_distribution",
    "volume_rows",
    "Node",
    "LayerGraph",
    "layer_graph",
    "block_diagram",
    "diagram_limits",
    "residual_block_model",
    "inception_module_model",
    "googlenet_module",
    "lenet5_diagram",
    "residual_blocks_diagram",
    "bottleneck_diagram",
    "inception_naive_diagram",
    "inception_module_diagram",
    "googlenet_diagram",
    "inverted_residual_model",
    "mobilenet_block",
    "mobilenet_v2_graph",
    "inverted_residual_diagram",
    "mobilenet_v2_small_diagram",
    "DIAGRAMS",
    "render",
    "write_diagrams",
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
    import keras  # delays keras

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


def architecture_diagram(model_or_table, title=None, figsize=None, rows=1):
    """Draw a CNN as the volumes it produces, left to right. Chapter 3.

    Each convolution or pooling output ``h x w x c`` is a box whose height
    grows with ``h`` and whose thickness grows with ``c`` (both on a square-
    root scale, so that 3 and 4096 fit in one picture); dense layers are
    thin bars whose height grows with the number of units. The shape is
    written under each box and the kernel/stride above it. Accepts a Keras
    model or a table from :func:`describe`. ``rows`` spreads the layers
    over that many rows, read top to bottom, all on one scale, so that a
    long network (VGG-16's 23 volumes) stays legible at the width of a
    page.
    """
    drawn = volume_rows(model_or_table)
    table = _as_table(model_or_table)
    per_row = math.ceil(len(drawn) / rows)
    chunks = [drawn[i : i + per_row] for i in range(0, len(drawn), per_row)]
    fig, axes = plt.subplots(
        len(chunks),
        1,
        figsize=figsize or (max(8, 1.05 * per_row), 3.8 * len(chunks)),
        squeeze=False,
    )
    axes = list(axes[:, 0])
    max_side = max(s[0] for _, _, s, _ in drawn if len(s) == 3)
    max_units = max([s[0] for _, _, s, _ in drawn if len(s) == 1] + [1])
    ends = [
        _draw_volumes(ax, chunk, max_side, max_units)
        for ax, chunk in zip(axes, chunks)
    ]
    for ax in axes:
        ax.set_xlim(-0.3, max(ends))
        ax.set_ylim(-3.2, 3.6)
        ax.set_aspect("equal")
        ax.axis("off")
    kinds = {kind for _, kind, _, _ in drawn}
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=COLOURS[k], label=k)
        for k in COLOURS
        if k in kinds and k != "Resizing"
    ]
    axes[-1].legend(
        handles=handles,
        loc="lower right",
        fontsize=7,
        frameon=False,
        ncol=len(handles),
    )
    axes[0].set_title(
        title
        or f"{getattr(table, 'model_name', 'model')}: "
        f"{table.total_params:,} parameters",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _draw_volumes(ax, drawn, max_side, max_units):
    """The boxes of :func:`architecture_diagram` for the rows ``drawn`` of
    :func:`volume_rows`, left to right on ``ax``; returns where the last
    one ends."""
    x, gap = 0.0, 0.55
    for name, kind, shape, detail in drawn:
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
    return x


def share_label(share):
    """A bar's share of the total as :func:`parameter_distribution` writes
    it: one decimal of a percent for every bar ("0.1%", "1.0%", "58.6%"),
    and "<0.1%" for a share that would round to nothing. Chapter 3."""
    return "<0.1%" if share < 0.0005 else f"{share:.1%}"


def parameter_distribution(model_or_table, title=None, log=False):
    """Bar chart of the parameters of each layer that has any. Chapter 3.

    Each bar is labelled with its share of the total, every bar at one
    precision (a tenth of a percent), which makes plain where a network
    keeps its weights (in AlexNet and VGG: the first dense layer).
    """
    table = _as_table(model_or_table)
    rows = [r for r in table if r.params > 0]
    total = sum(r.params for r in table)
    fig, ax = plt.subplots(figsize=(max(6, 0.42 * len(rows) + 2), 3.6))
    colours = [COLOURS.get(r.kind, "#8172b3") for r in rows]
    positions = range(len(rows))
    ax.bar(positions, [r.params for r in rows], color=colours)
    for i, r in enumerate(rows):
        ax.text(
            i,
            r.params,
            share_label(r.params / total),
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


# ------------------------------------------------------------ block graphs
# Layers that keep the shape of their single input: a block diagram writes
# them into the box of the layer before them ("3×3 conv, 64 / BN, ReLU").
ATTACHED = ("BatchNormalization", "Activation", "ReLU", "Dropout")
GRAPH_COLOURS = {
    **COLOURS,
    "InputLayer": "#bbbbbb",
    "DepthwiseConv2D": "#64b5cd",
    "Add": "#c44e52",
    "Concatenate": "#da8bc3",
    "group": "#8172b3",
}
# Sizes of a block diagram, in inches: the distance between two lanes
# (side by side) and two ranks (one above the other), and a box.
LANE, RANK = 1.75, 0.78
BOX_W, BOX_H = 1.5, 0.54
# How far right of its box a shortcut goes round the layers it skips.
SIDE = 0.22


class Node:
    """One box of a block diagram (Chapter 5): the model layers it stands
    for (a layer, the shape-keeping layers written into it, or a whole
    group such as an inception module), its text and its place (rank: the
    row, lane: the column)."""

    def __init__(self, name, kind, layers):
        self.name, self.kind, self.layers = name, kind, list(layers)
        self.title, self.extras, self.shape = "", [], ()
        self.rank, self.lane = 0, 0.0

    def __repr__(self):
        return (
            f"Node({self.name!r}, {self.kind}, "
            f"rank={self.rank}, lane={self.lane:g})"
        )


class LayerGraph:
    """The boxes (:class:`Node`, in a topological order) and arrows
    (``(from name, to name)``) of :func:`block_diagram`, and the names of
    the nodes whose output is an output of the model. Chapter 5."""

    def __init__(self, nodes, edges, outputs):
        self.nodes = nodes
        self.by_name = {n.name: n for n in nodes}
        self.edges = edges
        self.outputs = outputs

    def parents(self, name):
        return [a for a, b in self.edges if b == name]

    def children(self, name):
        return [b for a, b in self.edges if a == name]

    def __getitem__(self, name):
        return self.by_name[name]


def _keras_parents(model):
    """Layer name -> names of the layers whose outputs it reads, from the
    model's own (serialised) configuration; a Sequential model is a
    chain."""
    import keras  # delays keras

    if isinstance(model, keras.Sequential):
        names = ["input"] + [layer.name for layer in model.layers]
        return {b: [a] for a, b in zip(names, names[1:])} | {"input": []}

    def history(value, found):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                found.append(value["config"]["keras_history"][0])
            else:
                for item in value.values():
                    history(item, found)
        elif isinstance(value, (list, tuple)):
            for item in value:
                history(item, found)
        return found

    parents = {}
    for entry in model.get_config()["layers"]:
        found = history(entry["inbound_nodes"], [])
        parents[entry["name"]] = list(dict.fromkeys(found))
    return parents


def _op_text(layer):
    """The operation of a layer in a few words: '3×3 conv, 64, /2'."""
    config = layer.get_config()
    if is_layer(layer, "Conv2D"):
        k, s = config["kernel_size"], config["strides"]
        text = f"{k[0]}\u00d7{k[1]} conv, {config['filters']}"
        return text + (f", /{s[0]}" if s[0] != 1 else "")
    if is_layer(layer, "DepthwiseConv2D"):
        k, s = config["kernel_size"], config["strides"]
        text = f"{k[0]}\u00d7{k[1]} depthwise"
        return text + (f", /{s[0]}" if s[0] != 1 else "")
    if is_layer(layer, *WINDOW_POOLS):
        k, s = config["pool_size"], config["strides"]
        kind = "max" if is_layer(layer, "MaxPooling2D") else "avg"
        text = f"{k[0]}\u00d7{k[1]} {kind} pool"
        return text + (f", /{s[0]}" if s[0] != 1 else ", /1")
    if is_layer(layer, "GlobalAveragePooling2D"):
        return "global avg pool"
    if is_layer(layer, "Flatten"):
        return "flatten"
    if is_layer(layer, "Dense"):
        return f"dense, {config['units']}"
    if is_layer(layer, "Add"):
        return "add"
    if is_layer(layer, "Concatenate"):
        return "concatenate"
    if is_layer(layer, "InputLayer"):
        return "input"
    return type(layer).__name__


_ACTIVATION_TEXT = {
    "relu": "ReLU",
    "relu6": "ReLU6",
    "softmax": "softmax",
    "tanh": "tanh",
}


def _activation_text(config):
    name = config.get("activation")
    if isinstance(name, str) and name != "linear":
        return _ACTIVATION_TEXT.get(name, name)
    return None


def _extra_text(layer):
    """How a shape-keeping layer is written in the box before it."""
    if is_layer(layer, "BatchNormalization"):
        return "BN"
    if is_layer(layer, "Dropout"):
        return f"dropout {layer.get_config()['rate']:g}"
    if is_layer(layer, "ReLU"):
        return "ReLU"
    return _activation_text(layer.get_config()) or type(layer).__name__


def _shape_of(layer):
    return tuple(layer.output.shape[1:])


def layer_graph(model, group=None):
    """The boxes and arrows :func:`block_diagram` draws for ``model``.

    Chapter 5. Every layer of the model is in exactly one box: a layer that
    keeps the shape of its single input (batch normalisation, activation,
    dropout) joins the box of the layer before it when it is that layer's
    only reader; ``group(layer_name)`` may return a name under which
    several layers make one box (GoogLeNet's inception modules). Arrows
    follow the model's connections between boxes. Each box has a rank (the
    longest path to it from the input) and a lane: a branch that rejoins
    the others is spread beside them, a branch that leads only to another
    output of the model (an auxiliary classifier) goes to a lane of its
    own.
    """
    parents = _keras_parents(model)
    layers = {layer.name: layer for layer in model.layers}
    order = [n for n in parents if n in layers or n == "input"]
    readers = {name: [] for name in order}
    for name in order:
        for p in parents[name]:
            readers[p].append(name)

    node_of, nodes = {}, {}
    for name in order:
        layer = layers.get(name)
        grouped = group(name) if group else None
        ps = parents[name]
        if grouped:
            key = grouped
            if key not in nodes:
                nodes[key] = Node(key, "group", [])
                nodes[key].title = key.replace("_", " ")
        elif (
            layer is not None
            and is_layer(layer, *ATTACHED)
            and len(ps) == 1
            and readers[ps[0]] == [name]
            and nodes[node_of[ps[0]]].kind != "group"
        ):
            key = node_of[ps[0]]
            nodes[key].extras.append(_extra_text(layer))
        else:
            key = name
            if layer is None:  # the input of a Sequential model
                node = Node(name, "InputLayer", [])
                node.title = "input"
                node.shape = tuple(model.inputs[0].shape[1:])
            else:
                node = Node(name, type(layer).__name__, [])
                node.title = _op_text(layer)
                if not is_layer(layer, *ATTACHED):
                    act = _activation_text(layer.get_config())
                    if act:
                        node.extras.append(act)
            nodes[key] = node
        node_of[name] = key
        if layer is not None:
            nodes[key].layers.append(name)
            nodes[key].shape = _shape_of(layer)

    edges = []
    for name in order:
        for p in parents[name]:
            edge = (node_of[p], node_of[name])
            if edge[0] != edge[1] and edge not in edges:
                edges.append(edge)
    output_layers = [t._keras_history.operation.name for t in model.outputs]
    outputs = list(dict.fromkeys(node_of[n] for n in output_layers))
    graph = LayerGraph(
        _topological(list(nodes.values()), edges), edges, outputs
    )
    _place(graph)
    return graph


def _topological(nodes, edges):
    """Kahn's order, ties kept in the order the model lists its layers."""
    waiting = {n.name: sum(1 for _, b in edges if b == n.name) for n in nodes}
    done, result = set(), []
    while len(result) < len(nodes):
        ready = next(
            n for n in nodes if n.name not in done and waiting[n.name] == 0
        )
        done.add(ready.name)
        result.append(ready)
        for a, b in edges:
            if a == ready.name:
                waiting[b] -= 1
    return result


def _place(graph):
    """Ranks (longest path from an input) and lanes of the nodes."""
    for node in graph.nodes:
        ps = graph.parents(node.name)
        node.rank = 1 + max((graph[p].rank for p in ps), default=-1)

    reach = {}  # name -> the nodes reachable from it, itself included
    for node in reversed(graph.nodes):
        reach[node.name] = {node.name}.union(
            *(reach[c] for c in graph.children(node.name))
        )

    def order(child):
        """Branches in the order a concatenation stacks them (its channel
        order); otherwise the longest first (a block's main path)."""
        below = reach[child]
        for node in graph.nodes:
            if node.kind == "Concatenate" and node.name in below:
                ps = graph.parents(node.name)
                index = min(i for i, p in enumerate(ps) if p in below)
                return (index, 0)
        return (0, -max(graph[n].rank for n in below))

    main = graph.outputs[0]
    taken = set()  # (lane, rank) of the side branches placed so far
    for node in graph.nodes:
        ps = graph.parents(node.name)
        if len(ps) > 1:
            node.lane = sum(graph[p].lane for p in ps) / len(ps)
        children = [
            c for c in graph.children(node.name) if len(graph.parents(c)) == 1
        ]
        leads_on = main in reach[node.name]
        regular = [c for c in children if main in reach[c] or not leads_on]
        for i, c in enumerate(sorted(regular, key=order)):
            graph[c].lane = node.lane + i - (len(regular) - 1) / 2
        for c in children:
            if c in regular:
                continue
            # a side branch: the nearest lane, right first, that it has
            # to itself over its ranks
            ranks = {graph[n].rank for n in reach[c]}
            for step in range(1, 2 * len(graph.nodes) + 2):
                lane = node.lane + (step + 1) // 2 * (1 if step % 2 else -1)
                if not any((lane, r) in taken for r in ranks):
                    break
            graph[c].lane = lane
            taken.update((lane, r) for r in ranks)
    low = min(n.lane for n in graph.nodes)
    for node in graph.nodes:
        node.lane -= low


def _blocked(graph, a, b):
    """Nodes in the way of a straight arrow from ``a`` down to ``b``."""
    return [
        n
        for n in graph.nodes
        if a.rank < n.rank < b.rank and abs(n.lane - a.lane) < 0.5
    ]


def _box_lines(node):
    lines = [node.title]
    if node.extras:
        lines.append(", ".join(node.extras))
    lines.append(_shape_text(node.shape))
    return lines


def _routes_round(graph, a, b):
    """Whether the arrow from ``a`` to ``b`` goes round on the right."""
    return abs(a.lane - b.lane) < 1e-9 and bool(_blocked(graph, a, b))


def diagram_limits(graph):
    """The x and y ranges, in inches, that :func:`block_diagram` draws on:
    the boxes, the shortcuts round them, the names of the outputs."""
    ranks = max(n.rank for n in graph.nodes)
    right = LANE * max(n.lane for n in graph.nodes) + BOX_W / 2
    for a, b in graph.edges:
        if _routes_round(graph, graph[a], graph[b]):
            side = LANE * graph[a].lane + BOX_W / 2 + SIDE
            right = max(right, side + 0.25)
    below = 0.5 if len(graph.outputs) > 1 else 0.0
    return (
        (-BOX_W / 2 - 0.05, right + 0.05),
        (-RANK * ranks - BOX_H / 2 - below - 0.05, BOX_H / 2 + 0.05),
    )


def block_diagram(model_or_graph, title=None, ax=None, group=None):
    """Draw a network with branches as boxes and arrows, top to bottom.

    Chapter 5. Each box is a layer of the model (with the batch
    normalisation, activation or dropout that follows it written in) or a
    group of layers (see :func:`layer_graph`), and gives the operation and
    the output shape; arrows are the model's connections, a shortcut that
    skips layers goes round them on the right and is labelled
    ``identity``. Outputs of a model with several are named under their
    box. Draws into ``ax`` when given; returns the figure.
    """
    graph = (
        model_or_graph
        if isinstance(model_or_graph, LayerGraph)
        else layer_graph(model_or_graph, group)
    )
    (x0, x1), (y0, y1) = limits = diagram_limits(graph)
    if ax is None:
        fig, ax = plt.subplots(figsize=(x1 - x0 + 0.3, y1 - y0 + 0.5))
    else:
        fig = ax.figure
    for node in graph.nodes:
        x, y = LANE * node.lane, -RANK * node.rank
        colour = GRAPH_COLOURS.get(node.kind, GRAPH_COLOURS["group"])
        ax.add_patch(
            plt.Rectangle(
                (x - BOX_W / 2, y - BOX_H / 2),
                BOX_W,
                BOX_H,
                facecolor=colour,
                alpha=0.35,
                edgecolor="black",
                linewidth=0.7,
            )
        )
        ax.text(
            x,
            y,
            "\n".join(_box_lines(node)),
            ha="center",
            va="center",
            fontsize=7.5,
            linespacing=1.25,
        )
    arrow = {"arrowstyle": "-|>", "lw": 0.8, "color": "black"}
    for a_name, b_name in graph.edges:
        a, b = graph[a_name], graph[b_name]
        ax_, ay = LANE * a.lane, -RANK * a.rank - BOX_H / 2
        bx, by = LANE * b.lane, -RANK * b.rank + BOX_H / 2
        turn = by + (RANK - BOX_H) / 2
        if _routes_round(graph, a, b):
            side = ax_ + BOX_W / 2 + SIDE
            points = [
                (ax_ + BOX_W / 2, ay + BOX_H / 2),
                (side, ay + BOX_H / 2),
                (side, by - BOX_H / 2),
                (bx + BOX_W / 2, by - BOX_H / 2),
            ]
            if b.kind == "Add":
                ax.text(
                    side + 0.06,
                    (ay + by) / 2,
                    "identity",
                    rotation=90,
                    ha="left",
                    va="center",
                    fontsize=7.5,
                    style="italic",
                )
        else:
            points = [(ax_, ay), (ax_, turn), (bx, turn), (bx, by)]
        xs, ys = zip(*points)
        ax.plot(xs[:-1], ys[:-1], color="black", lw=0.8)
        ax.annotate("", xy=points[-1], xytext=points[-2], arrowprops=arrow)
    if len(graph.outputs) > 1:
        for name in graph.outputs:
            node = graph[name]
            x, y = LANE * node.lane, -RANK * node.rank - BOX_H / 2
            ax.annotate("", xy=(x, y - 0.22), xytext=(x, y), arrowprops=arrow)
            ax.text(
                x,
                y - 0.25,
                name,
                ha="center",
                va="top",
                fontsize=8,
                weight="bold",
            )
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9.5)
    return fig


# ------------------------------------------------- the book's diagrams
# Each figure of the pages that shows an architecture, by file name (in
# book/figures/), and the function that draws it from the model code.
DPI = 130


def residual_block_model(kind):
    """One residual block of Chapter 5 as a Keras model.

    ``"identity"``: the basic block of ResNet-18's conv2 stage (56×56×64
    in, 64 filters: the shapes agree, the shortcut is the identity);
    ``"projection"``: the first block of its conv3 stage (128 filters,
    stride 2: a 1×1 projection on the shortcut); ``"bottleneck"``: the
    bottleneck block with an identity shortcut on 56×56×256, filters
    (64, 64, 256).
    """
    import keras  # delays keras

    from cnnbook import models  # delays keras

    if kind == "identity":
        inputs = keras.Input((56, 56, 64), name="input")
        out = models.basic_block(inputs, 64, name="conv2_block2")
    elif kind == "projection":
        inputs = keras.Input((56, 56, 64), name="input")
        out = models.basic_block(inputs, 128, strides=2, name="conv3_block1")
    elif kind == "bottleneck":
        inputs = keras.Input((56, 56, 256), name="input")
        out = models.identity_block(inputs, (64, 64, 256), name="conv2_block2")
    else:
        raise ValueError(
            f"kind is 'identity', 'projection' or 'bottleneck', not {kind!r}"
        )
    return keras.Model(inputs, out, name=f"{kind}_block")


def inception_module_model(naive=False):
    """Module 3a of GoogLeNet on its 28×28×192 input, as a Keras model:
    with 1×1 reductions (64, 96, 128, 16, 32, 32) or, with ``naive``, the
    naive module with 64, 128 and 32 filters. Chapter 6."""
    import keras  # delays keras

    from cnnbook import models  # delays keras

    inputs = keras.Input((28, 28, 192), name="input")
    if naive:
        out = models.naive_inception_module(inputs, 64, 128, 32, name="naive")
    else:
        out = models.inception_module(
            inputs, *models.GOOGLENET_MODULES["3a"], name="inception_3a"
        )
    return keras.Model(inputs, out, name="naive" if naive else "inception")


def googlenet_module(name):
    """The box of a GoogLeNet layer in :func:`googlenet_diagram`: its
    inception module (``inception_4a`` for ``inception_4a_3x3_reduce``),
    or None for the layers drawn on their own. Chapter 6."""
    parts = name.split("_")
    if parts[0] == "inception" and len(parts) > 2:
        return "_".join(parts[:2])
    return None


def lenet5_diagram(model=None):
    """LeNet-5 (:func:`cnnbook.models.lenet5`) as volumes. Chapter 2."""
    from cnnbook import models  # delays keras

    model = model if model is not None else models.lenet5()
    return architecture_diagram(
        model,
        title=f"LeNet-5: {model.count_params():,} parameters",
        figsize=(8.5, 3.6),
    )


def residual_blocks_diagram(identity=None, projection=None):
    """The basic residual block with an identity and with a projection
    shortcut, side by side (:func:`residual_block_model`). Chapter 5."""
    identity = identity or residual_block_model("identity")
    projection = projection or residual_block_model("projection")
    graphs = [layer_graph(identity), layer_graph(projection)]
    limits = [diagram_limits(g) for g in graphs]
    widths = [x1 - x0 for (x0, x1), _ in limits]
    height = max(y1 - y0 for _, (y0, y1) in limits)
    fig, axes = plt.subplots(
        1,
        2,
        figsize=(sum(widths) + 0.8, height + 0.5),
        width_ratios=widths,
    )
    block_diagram(graphs[0], title="identity shortcut", ax=axes[0])
    block_diagram(graphs[1], title="projection shortcut", ax=axes[1])
    fig.tight_layout()
    return fig


def bottleneck_diagram(model=None):
    """The bottleneck block (1×1, 3×3, 1×1) with its identity shortcut.
    Chapter 5."""
    model = model or residual_block_model("bottleneck")
    fig = block_diagram(model, title="bottleneck block")
    fig.tight_layout()
    return fig


def inception_naive_diagram(model=None):
    """The naive inception module on 28×28×192. Chapter 6."""
    model = model or inception_module_model(naive=True)
    fig = block_diagram(model, title="naive inception module")
    fig.tight_layout()
    return fig


def inception_module_diagram(model=None):
    """The inception module with 1×1 reductions (GoogLeNet's 3a).
    Chapter 6."""
    model = model or inception_module_model()
    fig = block_diagram(
        model, title="inception module with 1\u00d71 reductions (3a)"
    )
    fig.tight_layout()
    return fig


def googlenet_diagram(model=None):
    """GoogLeNet (:func:`cnnbook.models.googlenet`) with its auxiliary
    classifiers, one box per inception module. Chapter 6."""
    from cnnbook import models  # delays keras

    model = model or models.googlenet()
    fig = block_diagram(
        model,
        title=f"GoogLeNet: {model.count_params():,} parameters",
        group=googlenet_module,
    )
    fig.tight_layout()
    return fig


def inverted_residual_model(kind):
    """One inverted residual block of MobileNet v2 at 224×224
    (:func:`cnnbook.models.inverted_residual`, expansion 6) as a Keras
    model. Chapter 8.

    ``"shortcut"``: the network's block 2, 24 channels in and out at
    56×56, stride 1, so the input is added back; ``"strided"``: its block
    3, which takes the 56×56×24 volume to 28×28×32 with a stride-2
    depthwise convolution, so no shortcut.
    """
    import keras  # delays keras

    from cnnbook import models  # delays keras

    inputs = keras.Input((56, 56, 24), name="input")
    if kind == "shortcut":
        out = models.inverted_residual(inputs, 24, name="block2")
    elif kind == "strided":
        out = models.inverted_residual(inputs, 32, strides=2, name="block3")
    else:
        raise ValueError(f"kind is 'shortcut' or 'strided', not {kind!r}")
    return keras.Model(inputs, out, name=f"{kind}_inverted_residual")


def mobilenet_block(name):
    """The box of a MobileNet v2 layer in
    :func:`mobilenet_v2_small_diagram`: its block (``block3`` for
    ``block3_dw_bn``), or None for the stem and the head. Chapter 8."""
    prefix = name.split("_")[0]
    if prefix.startswith("block") and prefix[len("block") :].isdigit():
        return prefix
    return None


def mobilenet_v2_graph(model):
    """:func:`layer_graph` of a MobileNet v2 with one box per block
    (:func:`mobilenet_block`), each box saying its expansion and whether
    it adds its input back, as :func:`cnnbook.models.block_table` reads
    them off the model. Chapter 8."""
    from cnnbook import models  # delays keras

    rows = {row.block: row for row in models.block_table(model)}
    graph = layer_graph(model, mobilenet_block)
    for node in graph.nodes:
        if node.kind == "group":
            row = rows[node.name]
            node.extras = [f"expansion {row.expansion:g}"]
            if row.shortcut:
                node.extras.append("shortcut")
    return graph


def inverted_residual_diagram(shortcut=None, strided=None):
    """MobileNet v2's inverted residual block with and without its
    shortcut, side by side (:func:`inverted_residual_model`). Chapter 8."""
    shortcut = shortcut or inverted_residual_model("shortcut")
    strided = strided or inverted_residual_model("strided")
    graphs = [layer_graph(shortcut), layer_graph(strided)]
    limits = [diagram_limits(g) for g in graphs]
    widths = [x1 - x0 for (x0, x1), _ in limits]
    height = max(y1 - y0 for _, (y0, y1) in limits)
    fig, axes = plt.subplots(
        1,
        2,
        figsize=(sum(widths) + 1.2, height + 0.5),
        width_ratios=widths,
    )
    block_diagram(graphs[0], title="stride 1, 24 \u2192 24", ax=axes[0])
    block_diagram(graphs[1], title="stride 2, 24 \u2192 32", ax=axes[1])
    fig.tight_layout()
    return fig


def mobilenet_v2_small_diagram(model=None):
    """The MobileNet v2 of the chapter 8 lab
    (:func:`cnnbook.models.mobilenet_v2_small` at the width of the lab's
    ``full`` profile), one box per inverted residual block. Chapter 8."""
    from cnnbook import labs, models  # delays keras

    if model is None:
        width = labs.lab("ch08-mobilenet").settings("full")["width"]
        model = models.mobilenet_v2_small((28, 28, 1), 10, width=width)
    fig = block_diagram(
        mobilenet_v2_graph(model),
        title=f"MobileNet v2 for 28\u00d728\n{model.count_params():,} "
        "parameters",
    )
    fig.tight_layout()
    return fig


DIAGRAMS = {
    "ch02-lenet5-architecture": lenet5_diagram,
    "ch05-residual-blocks": residual_blocks_diagram,
    "ch05-bottleneck-block": bottleneck_diagram,
    "ch06-inception-naive": inception_naive_diagram,
    "ch06-inception-module": inception_module_diagram,
    "ch06-googlenet-architecture": googlenet_diagram,
    "ch08-inverted-residual": inverted_residual_diagram,
    "ch08-mobilenet-architecture": mobilenet_v2_small_diagram,
}


def render(name):
    """The PNG of the diagram ``name`` of :data:`DIAGRAMS`, as bytes."""

    import keras  # delays keras

    fig = DIAGRAMS[name]()
    buffer = io.BytesIO()
    try:
        fig.savefig(
            buffer,
            format="png",
            dpi=DPI,
            bbox_inches="tight",
            metadata={"Software": None},
        )
    finally:
        plt.close(fig)
        keras.backend.clear_session()
        gc.collect()
    return buffer.getvalue()


def write_diagrams(folder=None, names=None):
    """Write the diagrams ``names`` (all of :data:`DIAGRAMS` by default) as
    ``<name>.png`` into ``folder`` (``book/figures/``); returns the paths.
    ``python -m cnnbook.diagrams`` runs it."""

    folder = pathlib.Path(folder) if folder else FIGURES
    paths = []
    for name in names or DIAGRAMS:
        if name not in DIAGRAMS:
            raise ValueError(
                f"no diagram {name!r}; there are {list(DIAGRAMS)}"
            )
        path = folder / f"{name}.png"
        path.write_bytes(render(name))
        paths.append(path)
    return paths


def main(argv=None):
    """``python -m cnnbook.diagrams [NAME ...] [--out DIR]``: regenerate the
    architecture diagrams of the pages."""

    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(
        prog="python -m cnnbook.diagrams", description=main.__doc__
    )
    parser.add_argument("names", nargs="*", help=", ".join(DIAGRAMS))
    parser.add_argument("--out", help="folder (default: book/figures)")
    args = parser.parse_args(argv)
    for path in write_diagrams(args.out, args.names or None):
        print(path)


if __name__ == "__main__":
    main()
