"""The architecture diagrams of chapters 2, 5, 6 and 8 (cnnbook.diagrams):
what they draw is the model the code builds, the boxes do not collide,
and the PNGs the pages show are those the code draws today."""

import pathlib
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cnnbook import diagrams, models  # noqa: E402
from cnnbook.kinds import is_layer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"


def _producers(model):
    """Layer name -> names of the layers whose outputs it reads, found with
    the public ``layer.input`` / ``layer.output`` of Keras alone."""
    by_output = {id(layer.output): layer.name for layer in model.layers}
    found = {}
    for layer in model.layers:
        if is_layer(layer, "InputLayer"):
            found[layer.name] = []
            continue
        inputs = layer.input
        inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        found[layer.name] = [by_output[id(t)] for t in inputs]
    return found


@pytest.fixture(scope="module")
def block_models():
    return {
        "identity": diagrams.residual_block_model("identity"),
        "projection": diagrams.residual_block_model("projection"),
        "bottleneck": diagrams.residual_block_model("bottleneck"),
        "naive": diagrams.inception_module_model(naive=True),
        "inception": diagrams.inception_module_model(),
        "shortcut": diagrams.inverted_residual_model("shortcut"),
        "strided": diagrams.inverted_residual_model("strided"),
    }


@pytest.fixture(scope="module")
def googlenet():
    return models.googlenet()


def _check_graph_is_model(graph, model):
    """Every layer in exactly one box, the box's shape that of its last
    layer, and the arrows exactly the model's connections between boxes."""
    owner = {}
    for node in graph.nodes:
        for name in node.layers:
            assert name not in owner, f"{name} drawn twice"
            owner[name] = node.name
    assert set(owner) == {layer.name for layer in model.layers}
    layers = {layer.name: layer for layer in model.layers}
    for node in graph.nodes:
        assert node.shape == tuple(layers[node.layers[-1]].output.shape[1:])
        for name in node.layers[1:]:
            # only shape-keeping layers (or a group's own layers) join a box
            assert node.kind == "group" or is_layer(
                layers[name], *diagrams.ATTACHED
            )
    connections = {
        (owner[p], owner[c])
        for c, ps in _producers(model).items()
        for p in ps
        if owner[p] != owner[c]
    }
    assert set(graph.edges) == connections
    assert len(graph.edges) == len(connections)
    # arrows go down: a box sits below everything it reads
    for a, b in graph.edges:
        assert graph[a].rank < graph[b].rank
    # no two boxes in one place
    places = [(n.lane, n.rank) for n in graph.nodes]
    assert len(set(places)) == len(places)


@pytest.fixture(scope="module")
def small_mobilenet():
    """The lab's MobileNet v2 as chapter 8's figure draws it."""
    from cnnbook import labs

    width = labs.lab("ch08-mobilenet").settings("full")["width"]
    return models.mobilenet_v2_small((28, 28, 1), 10, width=width)


@pytest.mark.parametrize(
    "kind",
    [
        "identity",
        "projection",
        "bottleneck",
        "naive",
        "inception",
        "shortcut",
        "strided",
    ],
)
def test_block_graph_is_the_model(block_models, kind):
    model = block_models[kind]
    graph = diagrams.layer_graph(model)
    _check_graph_is_model(graph, model)
    (last,) = model.output_names
    assert graph.outputs == [n.name for n in graph.nodes if last in n.layers]


def test_residual_shortcuts(block_models):
    """The identity shortcut is an arrow from the block's input straight
    into the addition, drawn round the layers it skips; the projection is
    a strided 1x1 convolution whose output has the main path's shape."""
    for kind in ("identity", "bottleneck"):
        graph = diagrams.layer_graph(block_models[kind])
        (add,) = [n for n in graph.nodes if n.kind == "Add"]
        source = graph.nodes[0]
        assert source.kind == "InputLayer"
        assert source.name in graph.parents(add.name)
        assert diagrams._routes_round(graph, source, add)
        assert source.shape == add.shape
    graph = diagrams.layer_graph(block_models["projection"])
    (add,) = [n for n in graph.nodes if n.kind == "Add"]
    source = graph.nodes[0].name
    ends = [graph[p] for p in graph.parents(add.name)]
    (shortcut,) = [n for n in ends if graph.parents(n.name) == [source]]
    (main,) = [n for n in ends if n is not shortcut]
    model = block_models["projection"]
    layer = model.get_layer(shortcut.layers[0])
    assert is_layer(layer, "Conv2D")
    assert layer.kernel_size == (1, 1) and layer.strides == (2, 2)
    assert shortcut.shape == main.shape == add.shape
    assert not diagrams._routes_round(graph, shortcut, add)


def test_inverted_residual_blocks(block_models):
    """Expansion, depthwise, linear projection: the input is added back
    round the three layers where stride and channels allow it, and not
    where the depthwise convolution has stride 2 and the channels grow."""
    graph = diagrams.layer_graph(block_models["shortcut"])
    kinds = [n.kind for n in graph.nodes]
    assert kinds == [
        "InputLayer",
        "Conv2D",
        "DepthwiseConv2D",
        "Conv2D",
        "Add",
    ]
    source, expand, _, project, add = graph.nodes
    assert source.name in graph.parents(add.name)
    assert diagrams._routes_round(graph, source, add)
    assert source.shape == project.shape == add.shape
    assert expand.shape[-1] == 6 * source.shape[-1]
    # the projection is linear: batch normalisation, no activation
    assert project.extras == ["BN"]
    assert "ReLU6" in expand.extras

    graph = diagrams.layer_graph(block_models["strided"])
    assert "Add" not in [n.kind for n in graph.nodes]
    (depthwise,) = [n for n in graph.nodes if n.kind == "DepthwiseConv2D"]
    assert depthwise.title == "3\u00d73 depthwise, /2"
    assert graph.nodes[-1].shape == (28, 28, 32)
    assert graph.nodes[-1].extras == ["BN"]


def test_mobilenet_graph(small_mobilenet):
    """One box per block, in order; a box says "shortcut" exactly where
    the block has an addition, and the expansion of its depthwise layer."""
    model = small_mobilenet
    graph = diagrams.mobilenet_v2_graph(model)
    _check_graph_is_model(graph, model)
    blocks = [n for n in graph.nodes if n.kind == "group"]
    names = {layer.name for layer in model.layers}
    assert [n.name for n in blocks] == [f"block{i}" for i in range(17)]
    for node in blocks:
        added = f"{node.name}_add" in names
        assert ("shortcut" in node.extras) == added, node.name
        (depthwise,) = [
            model.get_layer(name)
            for name in node.layers
            if is_layer(model.get_layer(name), "DepthwiseConv2D")
        ]
        first = model.get_layer(node.layers[0])
        expansion = depthwise.input.shape[-1] / first.input.shape[-1]
        assert node.extras[0] == f"expansion {expansion:g}"
    assert {n.lane for n in graph.nodes} == {0}
    assert graph.outputs == ["classifier"]


@pytest.mark.parametrize("naive", [True, False])
def test_inception_branches_in_concatenation_order(block_models, naive):
    """Branches stand left to right in the order the concatenation stacks
    their channels, and the output depth is their sum."""
    model = block_models["naive" if naive else "inception"]
    graph = diagrams.layer_graph(model)
    (concat,) = [n for n in graph.nodes if n.kind == "Concatenate"]
    ends = [graph[p] for p in graph.parents(concat.name)]
    concat_layer = model.get_layer(concat.layers[0])
    assert [n.layers[-1] for n in ends] == [
        _producers(model)[concat_layer.name][i] for i in range(len(ends))
    ]
    assert [n.lane for n in ends] == sorted(n.lane for n in ends)
    assert concat.shape[-1] == sum(n.shape[-1] for n in ends)


def test_googlenet_graph(googlenet):
    graph = diagrams.layer_graph(googlenet, diagrams.googlenet_module)
    _check_graph_is_model(graph, googlenet)
    modules = [n.name for n in graph.nodes if n.kind == "group"]
    assert modules == [f"inception_{k}" for k in models.GOOGLENET_MODULES]
    assert graph.outputs == list(googlenet.output_names)
    assert graph.outputs == ["classifier", "aux1", "aux2"]
    trunk = graph["classifier"].lane
    for aux, module in (("aux1", "inception_4a"), ("aux2", "inception_4d")):
        head = [n for n in graph.nodes if n.name.startswith(f"{aux}_")]
        assert head and all(n.lane != trunk for n in head)
        (first,) = [n for n in head if graph.parents(n.name) == [module]]
        assert is_layer(googlenet.get_layer(first.name), "AveragePooling2D")
    # every node of the trunk, from the input to the classifier, in one lane
    on_trunk = [n for n in graph.nodes if not n.name.startswith("aux")]
    assert {n.lane for n in on_trunk} == {trunk}


def test_lenet5_volumes_are_the_model():
    model = models.lenet5()
    rows = diagrams.volume_rows(model)
    assert rows[0][2] == tuple(model.inputs[0].shape[1:])
    drawn = [
        (layer.name, tuple(layer.output.shape[1:]))
        for layer in model.layers
        if is_layer(layer, *diagrams.SHAPE_LAYERS)
    ]
    assert [(name, shape) for name, _, shape, _ in rows[1:]] == drawn


def test_sequential_model_is_a_chain():
    """A Sequential model (no layer.input of its own input layer) gives
    one box per layer after an input box, each reading the one before."""
    model = models.lenet5()
    graph = diagrams.layer_graph(model)
    names = [layer.name for layer in model.layers]
    assert [n.name for n in graph.nodes] == ["input", *names]
    assert graph.edges == list(zip(["input", *names], names))
    assert [n.shape for n in graph.nodes[1:]] == [
        tuple(layer.output.shape[1:]) for layer in model.layers
    ]
    assert {n.lane for n in graph.nodes} == {0}


def _boxes_and_texts(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes, texts = [], []
    for ax in fig.axes:
        boxes += [
            p.get_window_extent(renderer)
            for p in ax.patches
            if isinstance(p, plt.Rectangle)
        ]
        texts += [t for t in ax.texts if "\n" in t.get_text()]
    return boxes, texts, renderer


@pytest.mark.parametrize(
    "draw,kinds",
    [
        (diagrams.residual_blocks_diagram, ["identity", "projection"]),
        (diagrams.bottleneck_diagram, ["bottleneck"]),
        (diagrams.inception_naive_diagram, ["naive"]),
        (diagrams.inception_module_diagram, ["inception"]),
        (diagrams.inverted_residual_diagram, ["shortcut", "strided"]),
    ],
)
def test_block_figures_draw_every_box_legibly(block_models, draw, kinds):
    fig = draw(*(block_models[k] for k in kinds))
    try:
        _check_figure(
            fig, [diagrams.layer_graph(block_models[k]) for k in kinds]
        )
    finally:
        plt.close(fig)


def test_googlenet_figure_draws_every_box_legibly(googlenet):
    graph = diagrams.layer_graph(googlenet, diagrams.googlenet_module)
    fig = diagrams.googlenet_diagram(googlenet)
    try:
        _check_figure(fig, [graph])
        names = {t.get_text() for t in fig.axes[0].texts}
        assert {"classifier", "aux1", "aux2"} <= names
    finally:
        plt.close(fig)


def test_mobilenet_figure_draws_every_box_legibly(small_mobilenet):
    fig = diagrams.mobilenet_v2_small_diagram(small_mobilenet)
    try:
        _check_figure(fig, [diagrams.mobilenet_v2_graph(small_mobilenet)])
    finally:
        plt.close(fig)


def _check_figure(fig, graphs):
    """One box per node with the node's text, no two boxes overlapping,
    each text inside its box."""
    boxes, texts, renderer = _boxes_and_texts(fig)
    expected = [
        "\n".join(diagrams._box_lines(n)) for g in graphs for n in g.nodes
    ]
    assert sorted(t.get_text() for t in texts) == sorted(expected)
    assert len(boxes) == len(expected)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    for text in texts:
        extent = text.get_window_extent(renderer)
        (home,) = [
            b for b in boxes if b.contains(*extent.get_points().mean(axis=0))
        ]
        assert home.x0 < extent.x0 and extent.x1 < home.x1, text.get_text()
        assert home.y0 < extent.y0 and extent.y1 < home.y1, text.get_text()
    # the title and every label inside the figure
    width, height = fig.canvas.get_width_height()
    for ax in fig.axes:
        for text in [*ax.texts, ax.title]:
            extent = text.get_window_extent(renderer)
            assert extent.x0 >= 0 and extent.x1 <= width, text.get_text()
            assert extent.y0 >= 0 and extent.y1 <= height, text.get_text()


def test_stored_pngs_are_what_the_code_draws(tmp_path):
    """``python -m cnnbook.diagrams`` regenerates book/figures/ exactly."""
    written = diagrams.write_diagrams(tmp_path)
    assert [p.name for p in written] == [f"{n}.png" for n in diagrams.DIAGRAMS]
    for path in written:
        stored = BOOK / "figures" / path.name
        assert stored.exists(), "run: .venv/bin/python -m cnnbook.diagrams"
        new, old = mpimg.imread(path), mpimg.imread(stored)
        assert new.shape == old.shape and np.array_equal(new, old), (
            f"{stored.name} is out of date: "
            "run .venv/bin/python -m cnnbook.diagrams"
        )


@pytest.mark.parametrize("name", list(diagrams.DIAGRAMS))
def test_pages_show_and_cite_each_diagram(name):
    (page,) = BOOK.glob(f"{name[:4]}-*.md")
    text = page.read_text()
    directive = re.search(
        r"```\{figure\} figures/" + re.escape(name) + r"\.png\n(.*?)```",
        text,
        re.S,
    )
    assert directive, f"{page.name} has no figure for {name}"
    body = directive.group(1)
    assert f":name: fig-{name}\n" in body
    caption = body.split("\n\n", 1)[1].strip()
    assert len(caption.split()) >= 8
    assert f"{{numref}}`fig-{name}`" in text
