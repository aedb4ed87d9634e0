"""The conventions every model builder follows (CONTRIBUTING.md, "Model
builders"): signature, softmax output, batch-norm momentum."""

import inspect

import keras
import pytest

from cnnbook import models
from cnnbook.models import _layers

# builder -> the architecture's defining arguments before input_shape
# (lenet5_spec, the formula version of lenet5, follows the same signature)
BUILDERS = {
    models.lenet5_spec: (),
    models.alexnet_spec: (),
    models.simple_convnet: (),
    models.lenet_like: (),
    models.lenet5: (),
    models.lenet5_classic: (),
    models.alexnet: (),
    models.alexnet_fashion: (),
    models.vgg16: (),
    models.vgg19: (),
    models.vgg_network: ("blocks",),
    models.vgg_fashion: (),
    models.resnet50: (),
    models.resnet18: (),
    models.cifar_style_net: ("depth",),
    models.googlenet: (),
    models.googlenet_small: (),
}
# small enough to build in a test, with the arguments that make them small
SMALL = {
    models.simple_convnet: {},
    models.lenet5: {},
    models.lenet5_classic: {},
    models.alexnet_fashion: {"resize_to": 67},
    models.vgg_fashion: {"resize_to": 32, "width": 4},
    models.resnet18: {"width": 4},
    models.googlenet_small: {"width": 0.125},
}


def test_every_builder_is_listed():
    """Every public function taking an input shape and a number of classes
    is a builder (or its formula version), held to the convention here."""

    def takes(name):
        found = getattr(models, name)
        if not inspect.isfunction(found):
            return set()
        return set(inspect.signature(found).parameters)

    builders = {
        getattr(models, name)
        for name in models.__all__
        if {"input_shape", "num_classes"} <= takes(name)
    }
    assert builders == set(BUILDERS)


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_signature(builder):
    params = list(inspect.signature(builder).parameters.values())
    leading = BUILDERS[builder]
    names = [p.name for p in params]
    assert names[: len(leading) + 2] == [
        *leading,
        "input_shape",
        "num_classes",
    ]
    for p in params[len(leading) + 2 :]:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, (
            f"{builder.__name__}: {p.name} should be keyword-only"
        )


@pytest.mark.parametrize("builder", SMALL, ids=lambda b: b.__name__)
def test_softmax_output_and_momentum(builder):
    options = dict(SMALL[builder])
    takes_momentum = "bn_momentum" in inspect.signature(builder).parameters
    if takes_momentum:
        options["bn_momentum"] = 0.8
    model = builder(**options)
    for name in getattr(model, "output_names", None) or [
        model.layers[-1].name
    ]:
        layer = model.get_layer(name)
        assert layer.activation is keras.activations.softmax, layer.name
    norms = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if takes_momentum:
        assert norms and {n.momentum for n in norms} == {0.8}
    else:
        assert not norms


def test_default_momentum_is_keras_default():
    assert _layers.BN_MOMENTUM == keras.layers.BatchNormalization().momentum
