"""Numbers the pages state that the package can compute, recomputed.

(Numbers from training runs are not typed on the pages at all: they are
quoted from the run records, see tests/test_records.py.)
"""

import math
import pathlib
import re

import keras
import pytest

from cnnbook import arithmetic, models

BOOK = pathlib.Path(__file__).resolve().parent.parent / "book"


def _page(name):
    return (BOOK / f"{name}.md").read_text()


def _says(page, number):
    assert re.search(
        rf"(?<![\d,]){re.escape(f'{number:,}')}(?![\d,])", page
    ), f"the page no longer states {number:,}"


def test_ch01_sparse_connections_without_sharing():
    # the LeNet-like first layer: 8 filters of 5x5x3 at each of 28x28
    # positions, with no sharing each position has its own filters
    unshared = 28 * 28 * arithmetic.conv_params(5, 3, 8)
    assert unshared == 476_672
    _says(_page("ch01-layer-arithmetic"), unshared)


def test_ch03_input_sizes_that_give_55():
    for n in range(227, 231):
        assert arithmetic.conv_output_size(n, 11, 0, 4) == 55
    assert arithmetic.conv_output_size(231, 11, 0, 4) == 56
    assert arithmetic.conv_output_size(226, 11, 0, 4) == 54
    assert arithmetic.conv_output_size(224, 11, 0, 4) == 54
    for p in (2, 3):
        assert arithmetic.conv_output_size(224, 11, p, 4) == 55


def test_ch03_unpadded_224_reaches_fc6_with_6400_values():
    net = models.alexnet(input_shape=(224, 224, 3))
    flat = [layer for layer in net.layers if "flatten" in layer.name][0]
    assert flat.output.shape[-1] == 6_400
    _says(_page("ch03-alexnet"), 6_400)


def test_ch03_two_tower_alexnet_parameters():
    """conv2, conv4 and conv5 split into two groups, as on two GPUs."""
    net = models.alexnet()
    config = net.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "Conv2D" and layer["config"]["name"] in (
            "conv2",
            "conv4",
            "conv5",
        ):
            layer["config"]["groups"] = 2
    grouped = keras.Sequential.from_config(config)
    assert grouped.count_params() == 60_965_224
    _says(_page("ch03-alexnet"), 60_965_224)
    _says(_page("ch06-inception"), 60_965_224)  # the ImageNet table


@pytest.mark.parametrize("depth", [8, 20, 32, 56])
def test_ch05_projection_shortcuts_add_2944_parameters(depth):
    residual = models.cifar_style_net(depth).count_params()
    plain = models.cifar_style_net(depth, residual=False).count_params()
    assert residual - plain == 2_944
    if depth == 20:
        assert (residual, plain) == (273_754, 270_810)
        page = _page("ch05-resnet")
        for number in (2_944, 273_754, 270_810):
            _says(page, number)


def test_ch05_step_arithmetic():
    steps = 30 * math.ceil(60_000 / 128)
    assert steps == 14_070  # "about 14,000 steps"
    assert round(64_000 / math.ceil(60_000 / 128)) == 136
    page = _page("ch05-resnet")
    assert "about 14,000 steps" in page and "136 epochs" in page


def test_forward_references_say_later():
    """A {ref} to a later chapter sits in a sentence that says so."""
    order = sorted(p.stem for p in BOOK.glob("ch0*.md"))
    labels = {}
    for stem in order:
        for label in re.findall(r"^\(([\w-]+)\)=", _page(stem), re.M):
            labels[label] = order.index(stem)
    problems = []
    for index, stem in enumerate(order):
        text = _page(stem)
        for match in re.finditer(r"\{ref\}`(?:[^`<]*<)?([\w-]+)>?`", text):
            target = labels.get(match.group(1))
            if target is None or target <= index:
                continue
            start = max(text.rfind(".", 0, match.start()), 0)
            end = text.find(".", match.end())
            sentence = text[start : end if end > 0 else len(text)].lower()
            if not re.search(r"later|next|will|ahead|chapter \d", sentence):
                problems.append(f"{stem}: {match.group(0)}")
    assert not problems, problems
