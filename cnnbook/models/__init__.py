"""Model builders, one module per chapter.

``basics`` (Chapter 1), ``lenet`` (2), ``alexnet`` (3), ``vgg`` (4),
``resnet`` (5) and ``inception`` (6). Every public name of those modules
(its ``__all__``) is imported here too, so that ``cnnbook.models.lenet5``
and ``from cnnbook.models import vgg16`` work; a test keeps this list and
the modules' lists equal.

``alexnet`` is both a module and its builder: here the name means the
builder (``cnnbook.models.alexnet(...)``); the module is
``cnnbook.models.alexnet`` only in ``import`` statements, e.g.
``from cnnbook.models.alexnet import CONV_SPEC``.
"""

from cnnbook.models.alexnet import (
    LocalResponseNormalization,
    alexnet,
    alexnet_fashion,
    alexnet_spec,
    local_response_normalization,
)
from cnnbook.models.basics import lenet_like, simple_convnet
from cnnbook.models.inception import (
    GOOGLENET_MODULES,
    auxiliary_head,
    googlenet,
    googlenet_small,
    inception_module,
    module_model,
    module_table,
    naive_inception_module,
)
from cnnbook.models.lenet import (
    c3_connection_table,
    lenet5,
    lenet5_1998_params,
    lenet5_classic,
    lenet5_spec,
    pad_digits,
    partial_conv_params,
)
from cnnbook.models.resnet import (
    BN_EPSILON,
    RESNET_STAGES,
    StageRow,
    basic_block,
    cifar_style_net,
    convolutional_block,
    identity_block,
    resnet18,
    resnet50,
    stage_table,
)
from cnnbook.models.vgg import (
    VGG16_BLOCKS,
    VGG19_BLOCKS,
    vgg16,
    vgg19,
    vgg_block,
    vgg_fashion,
    vgg_network,
)

__all__ = [
    # alexnet
    "alexnet",
    "alexnet_fashion",
    "alexnet_spec",
    "LocalResponseNormalization",
    "local_response_normalization",
    # basics
    "simple_convnet",
    "lenet_like",
    # inception
    "GOOGLENET_MODULES",
    "naive_inception_module",
    "inception_module",
    "auxiliary_head",
    "googlenet",
    "googlenet_small",
    "module_table",
    "module_model",
    # lenet
    "lenet5",
    "lenet5_classic",
    "pad_digits",
    "c3_connection_table",
    "partial_conv_params",
    "lenet5_1998_params",
    "lenet5_spec",
    # resnet
    "identity_block",
    "convolutional_block",
    "basic_block",
    "resnet50",
    "resnet18",
    "cifar_style_net",
    "stage_table",
    "StageRow",
    "RESNET_STAGES",
    "BN_EPSILON",
    # vgg
    "vgg_block",
    "vgg_network",
    "vgg16",
    "vgg19",
    "vgg_fashion",
    "VGG16_BLOCKS",
    "VGG19_BLOCKS",
]
