"""The labs, each declared once. Introduced in Chapter 1.

Every lab notebook in ``notebooks/`` has one :class:`Lab` entry in
:data:`LABS`: its title, its four profiles' settings (what
``cfg = setup("ch05-resnet18")`` returns), the networks it trains and how
to build them from its settings (the names its run records use), its
``gpu`` target and estimate, its entry in ``python -m cnnbook bench`` and
its row in chapter 7's comparison. :mod:`cnnbook.profiles`,
:mod:`cnnbook.bench`, :mod:`cnnbook.compare`, :mod:`cnnbook.gpu_targets`,
:mod:`cnnbook.bundle` and the tests read it; adding a lab is one entry
here plus its notebook.

Settings have the same names in every lab (:data:`COMMON`); a setting only
one lab needs is declared in that lab's ``extras`` with its type, so a
mistyped name is refused wherever it is written.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Real

from tabulate import tabulate

PROFILES = ("smoke", "cpu", "full", "gpu")

# The settings every lab names the same way, with their types.
COMMON = {
    "train_size": int,
    "test_size": int,
    "epochs": int,
    "batch_size": int,
    "lr": Real,
    "warmup_epochs": int,
    "width": Real,
    "input_size": int,
    "mirror": bool,
    "shift": Real,
}

# ``CNNBOOK_DRY_RUN=1``: every lab's settings capped to two batches of
# DRY_RUN_BATCH images a device, one epoch and a one-batch evaluation
# (the GPU dry run of the tests, :mod:`cnnbook.dry_run`).
DRY_RUN_VAR = "CNNBOOK_DRY_RUN"
DRY_RUN_BATCH = 4


class SettingsError(ValueError):
    """A setting that no lab declares, or a value of the wrong type."""


@dataclass(frozen=True)
class Network:
    """A network a lab trains, as its run records name it.

    ``pattern`` is the record's model name (``*`` stands for what the
    settings decide, e.g. ResNet-18's width); ``build(settings, name)``
    makes it from the lab's settings (a mapping); ``names(settings)`` gives
    the concrete record names under those settings (default: the pattern
    itself). ``deployed`` builds it as chapter 7 costs it (GoogLeNet without
    its auxiliary heads); ``dry_run`` is False for a network that another
    entry of the lab already trains in the GPU dry run.
    """

    pattern: str
    build: Callable
    names: Callable | None = None
    deployed: Callable | None = None
    dry_run: bool = True

    def names_for(self, settings):
        return list(self.names(settings)) if self.names else [self.pattern]

    def matches(self, model_name):
        return fnmatch.fnmatchcase(model_name, self.pattern)


@dataclass(frozen=True)
class GpuTarget:
    """What the ``gpu`` profile promises for a lab (issue #12): what it
    trains, the test accuracy it must reach (None: nothing to score) and
    the seconds it is estimated to take on one H100, not yet measured."""

    trains: str | None
    target_accuracy: float | None
    seconds: int
    note: str = ""


@dataclass(frozen=True)
class Bench:
    """A network of ``python -m cnnbook bench``: ``network``, a record
    name of the lab under its ``full`` settings, on ``input_shape``
    images at the ``full`` batch size."""

    name: str
    network: str
    input_shape: tuple


@dataclass(frozen=True)
class CaseStudy:
    """A row of chapter 7's table: the record model name (a pattern) and
    the label the table and the pages use."""

    model: str
    label: str


@dataclass(frozen=True)
class Lab:
    """One lab notebook, ``notebooks/<stem>.ipynb``."""

    stem: str
    title: str
    dataset: str | None
    gpu: GpuTarget
    profiles: Mapping = field(default_factory=dict)
    extras: Mapping = field(default_factory=dict)
    networks: tuple = ()
    bench: tuple = ()
    case_study: CaseStudy | None = None
    dry_run: Mapping = field(default_factory=dict)
    # how the lab turns its dataset's uint8 images into model inputs, as
    # data.split's prepare (None: floats in [0, 1] at their own size)
    prepare: Callable | None = None
    # settings -> the lab's data.Split where it is not data.split of its
    # dataset (ch08-transfer trains on some of its classes only)
    split: Callable | None = None

    @property
    def chapter(self):
        return self.stem.split("-")[0]

    @property
    def fields(self):
        """Setting name -> type, for the settings this lab uses."""
        names = next(iter(self.profiles.values()), {})
        return {k: self.extras.get(k) or COMMON[k] for k in names}

    def settings(self, profile):
        """The settings of ``profile`` (a dict)."""
        if profile not in PROFILES:
            raise ValueError(
                f"{profile!r} is not a profile; use one of "
                f"{', '.join(PROFILES)}"
            )
        return dict(self.profiles.get(profile, {}))

    def network(self, model_name):
        """The :class:`Network` whose pattern matches ``model_name``."""
        for net in self.networks:
            if net.matches(model_name):
                return net
        raise KeyError(f"{self.stem} trains no network {model_name!r}")

    def build(self, model_name, settings):
        """The network ``model_name`` of this lab under ``settings``."""
        return self.network(model_name).build(dict(settings), model_name)


def _models():
    from cnnbook import models  # delays keras

    return models


def _googlenet(aux):
    def build(s, _name):
        return _models().googlenet_small(
            aux_classifiers=aux, width=s["width"], bn_momentum=0.9
        )

    return build


def _depth_net(residual):
    prefix = "residual" if residual else "plain"

    def build(_s, name):
        depth = int(name.removeprefix(prefix))
        return _models().cifar_style_net(depth, residual=residual)

    return Network(
        f"{prefix}*",
        build,
        names=lambda s: [f"{prefix}{d}" for d in s["depths"]],
    )


def _transfer():
    from cnnbook import transfer  # delays keras

    return transfer


def _transfer_net(task, arm=None):
    """A network of ch08-transfer: MobileNet v2 for ``task``'s classes
    (``"source_classes"`` or ``"target_classes"``); with ``arm``, its
    features under a new head, frozen (``"frozen"``), trainable with its
    batch normalisation frozen (``"finetuned"``) or trainable throughout
    (``"bn_training"``). The registry builds it with random weights; the
    notebook gives the base its pretrained ones."""

    def build(s, _name):
        net = _models().mobilenet_v2_small(
            (28, 28, 1), len(s[task]), width=s["width"], depth=s["depth"]
        )
        if arm is None:
            return net
        transfer = _transfer()
        base = transfer.feature_extractor(net)
        if arm == "frozen":
            transfer.freeze(base)
        else:
            transfer.unfreeze(base, keep_batch_norm=arm == "finetuned")
        return transfer.with_new_head(base, len(s[task]))

    return build


def _per_label_count(prefix, build, dry_run=True):
    return Network(
        f"{prefix}_n*",
        build,
        names=lambda s: [f"{prefix}_n{n}" for n in s["labels_per_class"]],
        dry_run=dry_run,
    )


def _transfer_split(s):
    """The dry run's data of ch08-transfer: the source task."""
    return _transfer().task_split(
        "fashion_mnist", s["source_classes"], s["train_size"], s["test_size"]
    )


def _transfer_settings(**changes):
    """ch08-transfer's settings: the source task is Fashion-MNIST's five
    tops and trousers, the target its five shoes, shirts and bags."""
    return dict(
        source_classes=(0, 1, 2, 3, 4),
        target_classes=(5, 6, 7, 8, 9),
        mirror=True,
        shift=0.1,
        **changes,
    )


LABS = {
    lab.stem: lab
    for lab in (
        Lab(
            "ch01-layer-arithmetic",
            "Layer arithmetic",
            "mnist",
            GpuTarget(None, None, 15, "no training: layer arithmetic"),
            profiles={
                "smoke": {"trials": 5, "digit_index": 0},
                "cpu": {"trials": 30, "digit_index": 0},
                "full": {"trials": 100, "digit_index": 0},
                "gpu": {"trials": 100, "digit_index": 0},
            },
            extras={"trials": int, "digit_index": int},
        ),
        Lab(
            "ch02-lenet",
            "LeNet-5",
            "mnist",
            GpuTarget("LeNet-5", 0.993, 55),
            profiles={
                "smoke": dict(
                    train_size=1000,
                    test_size=500,
                    epochs=1,
                    batch_size=64,
                    lr=1e-3,
                    weight_decay=0.05,
                ),
                "cpu": dict(
                    train_size=60000,
                    test_size=10000,
                    epochs=8,
                    batch_size=64,
                    lr=1e-3,
                    weight_decay=0.05,
                ),
                "full": dict(
                    train_size=60000,
                    test_size=10000,
                    epochs=20,
                    batch_size=64,
                    lr=1e-3,
                    weight_decay=0.05,
                ),
                "gpu": dict(
                    train_size=60000,
                    test_size=10000,
                    epochs=30,
                    batch_size=128,
                    lr=1e-3,
                    weight_decay=0.05,
                ),
            },
            extras={"weight_decay": Real},
            networks=(
                Network("lenet5", lambda s, n: _models().lenet5()),
                Network(
                    "lenet5_classic", lambda s, n: _models().lenet5_classic()
                ),
            ),
            bench=(Bench("lenet5", "lenet5", (32, 32, 1)),),
            case_study=CaseStudy("lenet5", "LeNet-5 (modern)"),
            prepare=lambda images: _models().pad_digits(images),
        ),
        Lab(
            "ch03-alexnet",
            "AlexNet",
            "fashion_mnist",
            GpuTarget(
                "AlexNet (11x11/stride-4 stem kept meaningful)", 0.93, 55
            ),
            profiles={
                "smoke": dict(
                    input_size=67,
                    train_size=512,
                    test_size=256,
                    epochs=1,
                    batch_size=64,
                    lr=1e-3,
                    mirror=False,
                    shift=0.0,
                ),
                "cpu": dict(
                    input_size=67,
                    train_size=12000,
                    test_size=10000,
                    epochs=4,
                    batch_size=64,
                    lr=1e-3,
                    mirror=False,
                    shift=0.0,
                ),
                "full": dict(
                    input_size=67,
                    train_size=60000,
                    test_size=10000,
                    epochs=12,
                    batch_size=128,
                    lr=1e-3,
                    mirror=True,
                    shift=0.0,
                ),
                "gpu": dict(
                    input_size=112,
                    train_size=60000,
                    test_size=10000,
                    epochs=15,
                    batch_size=256,
                    lr=1e-3,
                    mirror=True,
                    shift=0.0,
                ),
            },
            networks=(
                Network(
                    "alexnet_fashion",
                    lambda s, n: _models().alexnet_fashion(
                        resize_to=s["input_size"], bn_momentum=0.9
                    ),
                ),
            ),
            bench=(Bench("alexnet_fashion", "alexnet_fashion", (28, 28, 1)),),
            case_study=CaseStudy("alexnet_fashion", "AlexNet (67×67)"),
        ),
        Lab(
            "ch04-vgg",
            "VGG",
            "fashion_mnist",
            GpuTarget("VGG-11/16 style at the paper's width", 0.94, 65),
            profiles={
                "smoke": dict(
                    input_size=32,
                    width=4,
                    train_size=512,
                    test_size=256,
                    epochs=1,
                    batch_size=64,
                    lr=1e-3,
                    mirror=False,
                    shift=0.0,
                ),
                "cpu": dict(
                    input_size=32,
                    width=16,
                    train_size=36000,
                    test_size=10000,
                    epochs=4,
                    batch_size=128,
                    lr=1e-3,
                    mirror=False,
                    shift=0.0,
                ),
                "full": dict(
                    input_size=32,
                    width=16,
                    train_size=60000,
                    test_size=10000,
                    epochs=20,
                    batch_size=128,
                    lr=1e-3,
                    mirror=True,
                    shift=0.1,
                ),
                "gpu": dict(
                    input_size=32,
                    width=64,
                    train_size=60000,
                    test_size=10000,
                    epochs=12,
                    batch_size=256,
                    lr=1e-3,
                    mirror=True,
                    shift=0.1,
                ),
            },
            networks=(
                Network(
                    "vgg_fashion",
                    lambda s, n: _models().vgg_fashion(
                        resize_to=s["input_size"], width=s["width"]
                    ),
                ),
            ),
            bench=(Bench("vgg_fashion", "vgg_fashion", (32, 32, 1)),),
            case_study=CaseStudy("vgg_fashion", "VGG (narrow)"),
        ),
        Lab(
            "ch05-resnet-depth",
            "Depth: plain and residual networks",
            "fashion_mnist",
            GpuTarget(
                "plain and residual nets, 20 and 56 layers",
                None,
                80,
                "20/56 layers on the whole training set",
            ),
            profiles={
                "smoke": dict(
                    depths=(8, 14),
                    train_size=512,
                    test_size=256,
                    epochs=2,
                    batch_size=128,
                    warmup_epochs=1,
                ),
                "cpu": dict(
                    depths=(8, 32),
                    train_size=8000,
                    test_size=2000,
                    epochs=5,
                    batch_size=128,
                    warmup_epochs=1,
                ),
                "full": dict(
                    depths=(20, 56),
                    train_size=10_000,
                    test_size=5_000,
                    epochs=8,
                    batch_size=128,
                    warmup_epochs=1,
                ),
                "gpu": dict(
                    depths=(20, 56),
                    train_size=60_000,
                    test_size=10_000,
                    epochs=6,
                    batch_size=256,
                    warmup_epochs=1,
                ),
            },
            extras={"depths": tuple},
            networks=(_depth_net(False), _depth_net(True)),
            bench=(Bench("resnet56", "residual56", (28, 28, 1)),),
        ),
        Lab(
            "ch05-resnet18",
            "ResNet-18",
            "fashion_mnist",
            GpuTarget("ResNet-18, 64 filters", 0.945, 80),
            profiles={
                "smoke": dict(
                    width=4,
                    train_size=512,
                    test_size=256,
                    epochs=1,
                    batch_size=128,
                    warmup_epochs=0,
                    lr=0.1,
                    mirror=True,
                    shift=0.1,
                ),
                "cpu": dict(
                    width=16,
                    train_size=20_000,
                    test_size=10_000,
                    epochs=5,
                    batch_size=128,
                    warmup_epochs=1,
                    lr=0.1,
                    mirror=True,
                    shift=0.1,
                ),
                "full": dict(
                    width=16,
                    train_size=60_000,
                    test_size=10_000,
                    epochs=25,
                    batch_size=128,
                    warmup_epochs=2,
                    lr=0.1,
                    mirror=True,
                    shift=0.1,
                ),
                "gpu": dict(
                    width=64,
                    train_size=60_000,
                    test_size=10_000,
                    epochs=10,
                    batch_size=256,
                    warmup_epochs=1,
                    lr=0.1,
                    mirror=True,
                    shift=0.1,
                ),
            },
            networks=(
                Network(
                    "resnet18_cifar_w*",
                    lambda s, n: _models().resnet18(
                        (28, 28, 1), 10, width=s["width"], stem="cifar"
                    ),
                    names=lambda s: [f"resnet18_cifar_w{s['width']}"],
                ),
            ),
            bench=(Bench("resnet18", "resnet18_cifar_w16", (28, 28, 1)),),
            case_study=CaseStudy("resnet18_cifar_w*", "ResNet-18"),
        ),
        Lab(
            "ch06-googlenet",
            "GoogLeNet",
            "fashion_mnist",
            GpuTarget(
                "GoogLeNet at full width, with and without auxiliary heads",
                0.94,
                85,
            ),
            profiles={
                "smoke": dict(
                    width=0.125,
                    train_size=256,
                    test_size=256,
                    epochs=1,
                    batch_size=128,
                    lr=1e-3,
                    mirror=False,
                    shift=0.0,
                    ablation_seeds=(0,),
                    ablation_train_size=128,
                    ablation_epochs=1,
                ),
                "cpu": dict(
                    width=0.25,
                    train_size=8000,
                    test_size=10000,
                    epochs=4,
                    batch_size=128,
                    lr=1e-3,
                    mirror=False,
                    shift=0.0,
                    ablation_seeds=(0, 1, 2),
                    ablation_train_size=3000,
                    ablation_epochs=3,
                ),
                "full": dict(
                    width=0.25,
                    train_size=60000,
                    test_size=10000,
                    epochs=12,
                    batch_size=128,
                    lr=1e-3,
                    mirror=True,
                    shift=0.0,
                    ablation_seeds=(0, 1, 2),
                    ablation_train_size=5000,
                    ablation_epochs=4,
                ),
                "gpu": dict(
                    width=1.0,
                    train_size=60000,
                    test_size=10000,
                    epochs=6,
                    batch_size=256,
                    lr=2e-3,
                    mirror=True,
                    shift=0.0,
                    ablation_seeds=(0, 1, 2),
                    ablation_train_size=10000,
                    ablation_epochs=3,
                ),
            },
            extras={
                "ablation_seeds": tuple,
                "ablation_train_size": int,
                "ablation_epochs": int,
            },
            networks=(
                # trained with its auxiliary heads, costed as deployed
                Network(
                    "googlenet_small_aux",
                    _googlenet(aux=True),
                    deployed=_googlenet(aux=False),
                ),
                Network("ablation_aux", _googlenet(aux=True), dry_run=False),
                Network("ablation_plain", _googlenet(aux=False)),
            ),
            bench=(Bench("googlenet_small", "ablation_plain", (28, 28, 1)),),
            case_study=CaseStudy("googlenet_small_aux", "GoogLeNet (narrow)"),
            dry_run={"ablation_seeds": (0,)},
        ),
        Lab(
            "ch06-inception-cost",
            "What the 1×1 bottleneck saves",
            None,
            GpuTarget(None, None, 20, "timing only"),
            profiles={
                "smoke": {"repeats": 2, "batch_sizes": (1, 16)},
                "cpu": {"repeats": 25, "batch_sizes": (1, 4, 16, 64)},
                "full": {"repeats": 25, "batch_sizes": (1, 4, 16, 64)},
                "gpu": {"repeats": 25, "batch_sizes": (1, 4, 16, 64, 256)},
            },
            extras={"repeats": int, "batch_sizes": tuple},
            dry_run={"repeats": 1, "batch_sizes": (1, 16)},
        ),
        Lab(
            "ch08-mobilenet",
            "MobileNet v2",
            "fashion_mnist",
            GpuTarget("MobileNet v2 at full width (α = 1)", 0.94, 90),
            profiles={
                "smoke": dict(
                    width=0.25,
                    train_size=256,
                    test_size=256,
                    epochs=1,
                    batch_size=128,
                    warmup_epochs=0,
                    lr=0.2,
                    mirror=True,
                    shift=0.1,
                ),
                "cpu": dict(
                    width=0.5,
                    train_size=10_000,
                    test_size=10_000,
                    epochs=3,
                    batch_size=256,
                    warmup_epochs=1,
                    lr=0.2,
                    mirror=True,
                    shift=0.1,
                ),
                "full": dict(
                    width=0.5,
                    train_size=60_000,
                    test_size=10_000,
                    epochs=10,
                    batch_size=256,
                    warmup_epochs=1,
                    lr=0.2,
                    mirror=True,
                    shift=0.1,
                ),
                "gpu": dict(
                    width=1.0,
                    train_size=60_000,
                    test_size=10_000,
                    epochs=15,
                    batch_size=512,
                    warmup_epochs=1,
                    lr=0.4,
                    mirror=True,
                    shift=0.1,
                ),
            },
            networks=(
                Network(
                    "mobilenet_v2_small_w*",
                    lambda s, n: _models().mobilenet_v2_small(
                        (28, 28, 1), 10, width=s["width"]
                    ),
                    names=lambda s: [f"mobilenet_v2_small_w{s['width']:g}"],
                ),
            ),
            bench=(
                Bench("mobilenet_v2", "mobilenet_v2_small_w0.5", (28, 28, 1)),
            ),
            case_study=CaseStudy("mobilenet_v2_small_w*", "MobileNet v2"),
        ),
        Lab(
            "ch08-transfer",
            "Transfer learning, offline",
            "fashion_mnist",
            GpuTarget(
                "MobileNet v2 (α = 1) pretrained on five classes, then "
                "from scratch, frozen and fine-tuned on the other five",
                None,
                90,
                "a comparison, not a score: one seed of each arm at three "
                "label counts (11 trainings; 3 seeds are the CPU runs')",
            ),
            profiles={
                "smoke": _transfer_settings(
                    width=0.25,
                    depth=0.25,
                    train_size=256,
                    test_size=250,
                    epochs=1,
                    batch_size=64,
                    lr=2e-3,
                    labels_per_class=(10,),
                    arm_seeds=1,
                    arm_steps=2,
                    finetune_steps=2,
                    finetune_lr=2e-4,
                ),
                "cpu": _transfer_settings(
                    width=0.35,
                    depth=0.5,
                    train_size=10_000,
                    test_size=5_000,
                    epochs=2,
                    batch_size=128,
                    lr=2e-3,
                    labels_per_class=(10, 100),
                    arm_seeds=1,
                    arm_steps=48,
                    finetune_steps=24,
                    finetune_lr=2e-4,
                ),
                "full": _transfer_settings(
                    width=0.35,
                    depth=0.5,
                    train_size=30_000,
                    test_size=5_000,
                    epochs=4,
                    batch_size=128,
                    lr=2e-3,
                    labels_per_class=(10, 50, 250, 1000),
                    arm_seeds=3,
                    arm_steps=64,
                    finetune_steps=32,
                    finetune_lr=2e-4,
                ),
                "gpu": _transfer_settings(
                    width=1.0,
                    depth=1.0,
                    train_size=30_000,
                    test_size=5_000,
                    epochs=10,
                    batch_size=256,
                    lr=2e-3,
                    labels_per_class=(10, 100, 1000),
                    arm_seeds=1,
                    arm_steps=200,
                    finetune_steps=100,
                    finetune_lr=2e-4,
                ),
            },
            extras={
                "depth": Real,
                "source_classes": tuple,
                "target_classes": tuple,
                "labels_per_class": tuple,
                "arm_seeds": int,
                "arm_steps": int,
                "finetune_steps": int,
                "finetune_lr": Real,
            },
            networks=(
                Network("transfer_source", _transfer_net("source_classes")),
                _per_label_count(
                    "transfer_scratch",
                    _transfer_net("target_classes"),
                    dry_run=False,  # the source network's architecture
                ),
                _per_label_count(
                    "transfer_frozen",
                    _transfer_net("target_classes", "frozen"),
                    dry_run=False,  # the fine-tuned one's, less trainables
                ),
                _per_label_count(
                    "transfer_finetuned",
                    _transfer_net("target_classes", "finetuned"),
                ),
                _per_label_count(
                    "transfer_bn_training",
                    _transfer_net("target_classes", "bn_training"),
                    dry_run=False,  # the fine-tuned one's, less one flag
                ),
            ),
            dry_run={"labels_per_class": (10,)},
            split=_transfer_split,
        ),
        Lab(
            "ch08-separable-cost",
            "What a depthwise-separable convolution saves",
            None,
            GpuTarget(None, None, 45, "timing only"),
            profiles={
                "smoke": {
                    "repeats": 1,
                    "batch_sizes": (2,),
                    "shapes": ((8, 16), (4, 32)),
                    "headline_batch": 2,
                },
                "cpu": {
                    "repeats": 11,
                    "batch_sizes": (1, 4, 16),
                    "shapes": ((56, 64), (28, 128), (14, 256), (7, 512)),
                    "headline_batch": 16,
                },
                "full": {
                    "repeats": 11,
                    "batch_sizes": (1, 4, 16),
                    "shapes": ((56, 64), (28, 128), (14, 256), (7, 512)),
                    "headline_batch": 16,
                },
                "gpu": {
                    "repeats": 15,
                    "batch_sizes": (8, 64, 256),
                    "shapes": (
                        (112, 32),
                        (56, 64),
                        (28, 128),
                        (14, 256),
                        (7, 512),
                    ),
                    "headline_batch": 256,
                },
            },
            extras={
                "repeats": int,
                "batch_sizes": tuple,
                "shapes": tuple,
                "headline_batch": int,
            },
            dry_run={
                "repeats": 1,
                "batch_sizes": (2,),
                "shapes": ((8, 16),),
                "headline_batch": 2,
            },
        ),
        Lab(
            "ch07-side-by-side",
            "The case studies side by side",
            None,
            GpuTarget(None, None, 10, "no training: costs and records"),
        ),
    )
}


def lab(stem):
    """The :class:`Lab` of a notebook stem, with a clear error if none."""
    try:
        return LABS[stem]
    except KeyError:
        raise KeyError(
            f"no lab {stem!r} in cnnbook.labs.LABS; the labs are "
            f"{', '.join(LABS)}"
        ) from None


def training_labs():
    """The labs that train a network."""
    return [x for x in LABS.values() if x.networks]


def find_network(model_name):
    """``(lab, network)`` of the recorded model name ``model_name``."""
    for entry in LABS.values():
        for net in entry.networks:
            if net.matches(model_name):
                return entry, net
    raise KeyError(f"no lab trains a network named {model_name!r}")


def case_studies():
    """Chapter 7's rows: ``(lab stem, model pattern, label)``."""
    return tuple(
        (x.stem, x.case_study.model, x.case_study.label)
        for x in LABS.values()
        if x.case_study
    )


# ---------------------------------------------------------------------------
# The typed configuration that ``setup()`` returns


@dataclass(frozen=True, kw_only=True)
class Config:
    """What ``setup()`` returns: the profile, the seed, the number of
    devices a batch is split over and, for a lab, its settings as typed,
    read-only attributes (``cfg.epochs``). ``cfg.replace(epochs=2)`` gives a
    copy with other values (checked like the registry's)."""

    lab: str | None = None
    profile: str
    seed: int = 0
    replicas: int = 1
    dry_run: bool = False

    def settings(self):
        """The lab's settings as a dict (what a run record stores)."""
        base = {f.name for f in dataclasses.fields(Config)}
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in base
        }

    def replace(self, **changes):
        """A copy with ``changes``; unknown names or wrong types refused."""
        declared = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - declared)
        if unknown:
            raise SettingsError(_unknown_message(self.lab, unknown, declared))
        if self.lab:
            fields = lab(self.lab).fields
            for name, value in changes.items():
                if name in fields:
                    changes[name] = _checked(self.lab, name, value, fields)
        return dataclasses.replace(self, **changes)

    def table(self):
        """The settings as a short Markdown table (tabulate)."""

        rows = [("profile", self.profile), ("seed", self.seed)]
        if self.replicas != 1:
            rows.append(("devices", self.replicas))
        rows += [(k, _shown(v)) for k, v in self.settings().items()]
        return tabulate(rows, headers=("setting", "value"), tablefmt="pipe")


def _shown(value):
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _unknown_message(stem, unknown, valid):
    where = f"lab {stem!r}" if stem else "setup() without a lab"
    base = {f.name for f in dataclasses.fields(Config)}
    names = sorted(set(valid) - base) or ["(none)"]
    return (
        f"{where}: unknown setting(s) {', '.join(unknown)}; the valid "
        f"settings are {', '.join(names)}"
    )


def _checked(stem, name, value, fields):
    """``value`` for setting ``name`` of lab ``stem``, or SettingsError."""
    kind = fields[name]
    if kind is tuple and isinstance(value, list):
        value = tuple(value)
    wrong = not isinstance(value, kind) or (
        kind is not bool and isinstance(value, bool)
    )
    if wrong:
        expected = getattr(kind, "__name__", str(kind))
        if kind is Real:
            expected = "number"
        raise SettingsError(
            f"lab {stem!r}: setting {name}={value!r} should be a {expected}"
        )
    return value


_CLASSES = {}


def config_class(stem):
    """The frozen dataclass of lab ``stem``'s configuration."""
    if stem not in _CLASSES:
        entry = lab(stem)
        name = "".join(p.title() for p in stem.replace("-", "_").split("_"))
        _CLASSES[stem] = dataclasses.make_dataclass(
            f"{name}Config",
            [(k, v) for k, v in entry.fields.items()],
            bases=(Config,),
            frozen=True,
            kw_only=True,
        )
    return _CLASSES[stem]


def dry_run_requested():
    """True when ``$CNNBOOK_DRY_RUN`` asks for the capped GPU dry run."""
    value = os.environ.get(DRY_RUN_VAR, "").strip().lower()
    return value not in ("", "0", "off", "false", "no")


def dry_run_settings(entry, settings, replicas=1):
    """``settings`` of lab ``entry`` capped for a dry run: two batches of
    :data:`DRY_RUN_BATCH` images a device, one epoch, no warm-up, a
    one-batch evaluation, and the lab's own ``dry_run`` changes."""
    capped = dict(settings)
    batch = DRY_RUN_BATCH * max(1, replicas)
    if "batch_size" in capped:
        capped["batch_size"] = min(capped["batch_size"], batch)
        batch = capped["batch_size"]
    for name in capped:
        if name.endswith("train_size"):
            capped[name] = 2 * batch
        elif name.endswith("test_size"):
            capped[name] = batch
        elif name == "warmup_epochs":
            capped[name] = 0
        elif name.endswith("epochs"):
            capped[name] = 1
    capped.update(entry.dry_run)
    return capped


def configure(stem, profile, *, seed=0, replicas=1, dry_run=False, **changes):
    """The frozen configuration of lab ``stem`` under ``profile``, with
    ``changes`` (keyword overrides) applied; a name the lab does not
    declare, or a value of the wrong type, raises :class:`SettingsError`
    naming the valid settings."""
    entry = lab(stem)
    settings = entry.settings(profile)
    fields = entry.fields
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise SettingsError(_unknown_message(stem, unknown, fields))
    settings.update(changes)
    if dry_run:
        settings = dry_run_settings(entry, settings, replicas)
    settings = {k: _checked(stem, k, v, fields) for k, v in settings.items()}
    return config_class(stem)(
        lab=stem,
        profile=profile,
        seed=seed,
        replicas=replicas,
        dry_run=dry_run,
        **settings,
    )


def validate_registry():
    """Raise SettingsError if an entry is malformed: a profile missing,
    profiles that differ in their setting names, a setting neither common
    nor declared, or a value of the wrong type."""
    for stem, entry in LABS.items():
        if stem != entry.stem:
            raise SettingsError(f"{stem}: entry is named {entry.stem!r}")
        clash = sorted(set(entry.extras) & set(COMMON))
        if clash:
            raise SettingsError(f"{stem}: extras redeclare {clash}")
        if not entry.profiles:
            continue
        missing = [p for p in PROFILES if p not in entry.profiles]
        if missing:
            raise SettingsError(
                f"{stem}: no settings for profile(s) {missing}"
            )
        names = set(entry.profiles[PROFILES[0]])
        for profile, values in entry.profiles.items():
            if set(values) != names:
                raise SettingsError(
                    f"{stem}: profile {profile!r} names "
                    f"{sorted(set(values) ^ names)} unlike the others"
                )
            undeclared = sorted(set(values) - set(COMMON) - set(entry.extras))
            if undeclared:
                raise SettingsError(
                    f"{stem}: setting(s) {', '.join(undeclared)} are not "
                    f"common ({', '.join(COMMON)}); declare them in extras"
                )
            fields = entry.fields
            for name, value in values.items():
                _checked(stem, name, value, fields)


validate_registry()
