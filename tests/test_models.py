"""The conventions every model builder follows (CONTRIBUTING.md, "Model
builders"; the docstring of cnnbook/models/_layers.py): signature, one
classifier layer named the same everywhere, functional blocks with
keyword-only options, batch-norm momentum, the package's public names."""

import inspect

import keras
import numpy as np
import pytest

from cnnbook import models
from cnnbook.models import _layers

# Builders too big to build in a test at their defaults: the options that
# make them small (every other builder is built as it is).
SMALL = {
    "alexnet_fashion": {"resize_to": 67},
    "vgg_fashion": {"resize_to": 32, "width": 4},
    "resnet18": {"width": 4},
    "googlenet_small": {"width": 0.125},
}
# The paper-width networks: their full size is tested in their chapter's
# tests against the papers' counts, not rebuilt here.
PAPER_WIDTH = {
    "alexnet",
    "vgg16",
    "vgg19",
    "resnet50",
    "googlenet",
    "mobilenet_v1",
    "mobilenet_v2",
    "efficientnet_b0",
}


def _module_functions():
    """Every public function of the chapter modules, by name."""
    found = {}
    for stem in models.MODULES:
        module = getattr(models, stem, None)
        if not inspect.ismodule(module):  # alexnet: the builder shadows it
            module = __import__(f"cnnbook.models.{stem}", fromlist=["_"])
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isfunction(value):
                found[name] = value
    return found


def _takes_shape(func):
    return {"input_shape", "num_classes"} <= set(
        inspect.signature(func).parameters
    )


# builders (and their formula versions, *_spec): every public function
# that takes an input shape and a number of classes
BUILDERS = {n: f for n, f in _module_functions().items() if _takes_shape(f)}
# what a builder takes before input_shape: its architecture's definition
LEADING = {
    name: [
        p
        for p in inspect.signature(func).parameters
        if p not in ("input_shape", "num_classes")
    ][: list(inspect.signature(func).parameters).index("input_shape")]
    for name, func in BUILDERS.items()
}
# the builders that make a Keras model small enough to build here
BUILT = sorted(
    name
    for name in BUILDERS
    if not name.endswith("_spec") and not LEADING[name]
    if name not in PAPER_WIDTH
)


def test_package_names_are_the_modules_names():
    """``cnnbook.models`` exports each module's ``__all__``, once."""
    names = []
    for stem in models.MODULES:
        module = __import__(f"cnnbook.models.{stem}", fromlist=["_"])
        names += module.__all__
    assert models.__all__ == names
    assert len(set(names)) == len(names)
    # the builder, not the module, under a name both have
    assert callable(models.alexnet) and not inspect.ismodule(models.alexnet)
    from cnnbook.models import lenet5

    assert lenet5 is models.lenet.lenet5


def test_builders_found():
    """The search above finds the builders of every chapter (it cannot pass
    by finding none)."""
    for name in ("simple_convnet", "lenet5", "alexnet_fashion", "vgg16"):
        assert name in BUILDERS
    assert LEADING["vgg_network"] == ["blocks"]
    assert LEADING["cifar_style_net"] == ["depth"]
    assert set(SMALL) <= set(BUILT)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_signature(name):
    params = list(inspect.signature(BUILDERS[name]).parameters.values())
    leading = LEADING[name]
    names = [p.name for p in params]
    assert names[: len(leading) + 2] == [
        *leading,
        "input_shape",
        "num_classes",
    ]
    for p in params[len(leading) + 2 :]:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, (
            f"{name}: {p.name} should be keyword-only"
        )


BLOCKS = {
    "vgg_block": ((8, 8, 3), (2, 4)),
    "identity_block": ((8, 8, 16), ((4, 4, 16),)),
    "convolutional_block": ((8, 8, 16), ((4, 4, 16),)),
    "basic_block": ((8, 8, 4), (4,)),
    "naive_inception_module": ((8, 8, 4), (2, 2, 2)),
    "inception_module": ((8, 8, 4), (2, 2, 2, 2, 2, 2)),
    "auxiliary_head": ((9, 9, 4), (3,)),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_blocks_are_functional_with_keyword_options(name):
    """A block takes a tensor and returns one; ``name`` and the other
    options (``bn_momentum``...) are keyword-only."""
    block = getattr(models, name)
    params = inspect.signature(block).parameters
    assert list(params)[0] == "x"
    assert params["name"].kind is inspect.Parameter.KEYWORD_ONLY
    if "bn_momentum" in params:
        assert params["bn_momentum"].kind is inspect.Parameter.KEYWORD_ONLY
    shape, args = BLOCKS[name]
    x = keras.Input(shape)
    y = block(x, *args, name="b")
    assert isinstance(y, keras.KerasTensor)
    assert keras.Model(x, y).count_params() > 0


@pytest.mark.parametrize("name", BUILT)
def test_one_classifier_name_and_momentum(name):
    builder = BUILDERS[name]
    options = dict(SMALL.get(name, {}))
    takes_momentum = "bn_momentum" in inspect.signature(builder).parameters
    if takes_momentum:
        options["bn_momentum"] = 0.8
    model = builder(**options)
    softmax = [
        layer.name
        for layer in model.layers
        if getattr(layer, "activation", None) is keras.activations.softmax
    ]
    assert softmax[0] == _layers.CLASSIFIER == "classifier"
    # GoogLeNet's auxiliary heads are the only other softmax layers
    assert set(softmax[1:]) <= {"aux1", "aux2"}
    first_output = model.outputs[0]
    assert first_output is model.get_layer(_layers.CLASSIFIER).output
    norms = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if takes_momentum:
        assert norms and {n.momentum for n in norms} == {0.8}
    else:
        assert not norms


@pytest.mark.parametrize(
    "name,shape",
    [
        ("alexnet", (67, 67, 3)),
        ("vgg16", (32, 32, 3)),
        ("vgg19", (32, 32, 3)),
        ("resnet50", (32, 32, 3)),
        ("googlenet", (96, 96, 3)),
    ],
)
def test_paper_networks_use_the_same_classifier(name, shape):
    """The paper-width networks, on a small input so they build quickly:
    their first output is the layer named ``classifier``."""
    model = BUILDERS[name](shape, 3)
    assert model.outputs[0] is model.get_layer(_layers.CLASSIFIER).output
    keras.backend.clear_session()


def test_vgg_builders_are_built_on_vgg_block():
    """The first block of vgg_fashion has the layers, names and shapes of
    vgg_block with the same options."""
    model = models.vgg_fashion(resize_to=32, width=4, bn_momentum=0.9)
    x = keras.Input((32, 32, 1))
    y = models.vgg_block(
        x, 2, 4, name="block1", batch_norm=True, bn_momentum=0.9
    )
    reference = keras.Model(x, y)

    def block1(m):
        return [
            (type(layer).__name__, layer.name, layer.output.shape)
            for layer in m.layers
            if layer.name.startswith("block1_")
        ]

    assert block1(model) == block1(reference) and len(block1(model)) == 7


def test_default_momentum_is_keras_default():
    assert _layers.BN_MOMENTUM == keras.layers.BatchNormalization().momentum


def test_classifier_head_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        _layers.classifier_head(10, pooling="max")


def test_ch05_page_counts_resnet18_both_ways():
    """ch05 gives the lab's ResNet-18 and the full-width one as trainable
    weights and as Keras's count_params() (running statistics included)."""
    from conftest import page_text

    text = page_text("ch05-resnet.md")
    for width in (16, 64):
        net = models.resnet18(width=width)
        trainable = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
        assert trainable < net.count_params()
        assert f"{trainable:,}" in text, (width, trainable)
        assert f"{net.count_params():,}" in text, (width, net.count_params())
