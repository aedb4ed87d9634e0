"""Chapter 8's page: the numbers it types are those the package computes,
the canonical counts are quoted from results/costs.json rather than
typed, and the sentences chapter 7 adds about the three networks hold for
the stored costs."""

import json
import re

import pytest
from conftest import page_text

from cnnbook import arithmetic, compare, models
from cnnbook.kinds import is_layer

PAGE = "ch08-mobilenet.md"
MOBILE = ("MobileNet", "MobileNetV2", "EfficientNet-B0")


def _says(page, text):
    assert re.search(rf"(?<![\d,.]){re.escape(text)}(?![\d,])", page), (
        f"{PAGE} no longer states {text}"
    )


@pytest.fixture(scope="module")
def costs():
    return json.loads(compare.costs_path().read_text())


def test_the_courses_example():
    """6×6×3 input, five 3×3 filters, 4×4×5 output: 2,160 against
    432 + 240 = 672, a ratio of 0.31 = 1/5 + 1/9."""
    page = page_text(PAGE)
    cost = arithmetic.separable_cost(4, 4, 3, 3, 5)
    for number in (cost.normal, cost.depthwise, cost.pointwise):
        _says(page, f"{number:,}")
    _says(page, f"{cost.separable:,}")
    assert f"{cost.separable} / {cost.normal:,} = {cost.ratio:.2f}" in page
    assert cost.ratio == pytest.approx(arithmetic.separable_ratio(5, 3))
    assert f"$1/5 + 1/9 = {1 / 5 + 1 / 9:.2f}$" in page


def test_the_general_ratio_for_hundreds_of_channels():
    """With 3×3 filters and 512 output channels: 0.113, 8.8 times fewer,
    about a ninth."""
    page = page_text(PAGE)
    ratio = arithmetic.separable_ratio(512, 3)
    assert f"it is {ratio:.3f}, {1 / ratio:.1f} times fewer" in page
    assert 8.5 < 1 / ratio < 9


def test_compound_scaling_constraint():
    page = page_text(PAGE)
    product = 1.2 * 1.1**2 * 1.15**2
    assert f"1.15^2 = {product:.2f}$" in page
    assert abs(product - 2) < 0.1


def test_mobilenet_v1_as_the_page_tells_it():
    """Four stride-2 depthwise layers and a stride-2 first convolution
    take 224 to 7; the 1×1 convolutions do 94.9% of the
    multiply-accumulates and the depthwise ones 3.1%."""
    page = page_text(PAGE)
    net = models.mobilenet_v1()
    depthwise = [
        layer for layer in net.layers if is_layer(layer, "DepthwiseConv2D")
    ]
    assert sum(layer.strides == (2, 2) for layer in depthwise) == 4
    assert len(depthwise) == 13
    assert net.get_layer("conv1").strides == (2, 2)
    assert depthwise[-1].output.shape[1] == 7
    rows = arithmetic.layer_table(net)
    total = sum(row.multiplications for row in rows)
    pointwise = sum(
        row.multiplications
        for row in rows
        if row.kind == "Conv2D"
        and net.get_layer(row.name).kernel_size == (1, 1)
    )
    spatial = sum(
        row.multiplications for row in rows if row.kind == "DepthwiseConv2D"
    )
    assert (
        f"{100 * pointwise / total:.1f}% are done by the pointwise 1×1 "
        f"convolutions and {100 * spatial / total:.1f}% by the depthwise"
    ) in page


def test_mobilenet_v2_as_the_page_tells_it():
    """17 blocks, 10 with a shortcut; the stages' output channels; a
    24-channel input expanded to 144."""
    page = page_text(PAGE)
    table = models.block_table(models.mobilenet_v2())
    blocks = [row for row in table if row.block.startswith("block")]
    shortcuts = sum(row.shortcut for row in blocks)
    assert f"{shortcuts} of the {len(blocks)} blocks have one" in page
    channels = [c for _, c, _, _ in models.MOBILENET_V2_STAGES]
    listed = ", ".join(str(c) for c in channels[:-1])
    assert f"(output channels {listed} and {channels[-1]})" in page
    assert "24-channel input becomes 144 channels" in page
    assert {row.expansion for row in blocks[1:]} == {6}


def test_the_small_mobilenet_v2_thins_its_last_convolution():
    """ch08: "unlike the paper's network, which keeps its last 1×1
    convolution at 1,280 channels for widths below 1, it thins that
    convolution too (640 channels at width 0.5)"."""
    page = " ".join(page_text(PAGE).split())
    assert (
        "unlike the paper's network, which keeps its last 1×1 convolution "
        "at 1,280 channels for widths below 1"
    ) in page
    assert "it thins that convolution too (640 channels at width 0.5)" in page
    for build, channels in (
        (models.mobilenet_v2_small, 640),
        (models.mobilenet_v2, 1280),
    ):
        net = build(width=0.5)
        assert net.get_layer("conv_last").filters == channels, build


def test_the_small_mobilenet_v2_keeps_the_papers_third_stage_at_stride_1():
    """ch08: it removes "the stem's and that of the paper's third stage
    (block 3, 32 channels at full width)" stride-2 steps; "At width 0.5
    that stage and the one before it both have 16 channels, so in the
    figure blocks 1 to 5 form one run of 14×14×16 maps" (and so in the
    Korean summary, "논문 신경망의 세 번째 스테이지(블록 3)")."""
    page = " ".join(page_text(PAGE).split())
    for told in (
        "the stem's and that of the paper's third stage (block 3, 32 "
        "channels at full width)",
        "At width 0.5 that stage and the one before it both have 16 "
        "channels, so in the figure blocks 1 to 5 form one run of 14×14×16 "
        "maps.",
        "스템과 논문 신경망의 세 번째 스테이지(블록 3)의 스트라이드를",
    ):
        assert told in page, told

    def strides(net):
        return {
            name: net.get_layer(name).strides[0]
            for name in ("conv1", "block3_dw")
        }

    def outputs(net):
        return [row.output_shape[1:] for row in models.block_table(net)]

    paper = models.mobilenet_v2((64, 64, 3), 10)
    assert strides(paper) == {"conv1": 2, "block3_dw": 2}
    full = models.mobilenet_v2_small(width=1.0)
    assert strides(full) == {"conv1": 1, "block3_dw": 1}
    # rows: conv1, block0, block1, ...; stage 3 starts at block 3 at full
    # width, with 32 channels after stage 2's 24
    full_rows = outputs(full)
    assert [shape[-1] for shape in full_rows[2:5]] == [24, 24, 32]
    half_rows = outputs(models.mobilenet_v2_small(width=0.5))
    assert half_rows[2:7] == [(14, 14, 16)] * 5
    assert half_rows[1] != half_rows[2] != half_rows[7]


def test_the_canonical_counts_are_quoted_not_typed(costs):
    text = (compare.costs_path().parent.parent / "book" / PAGE).read_text()
    for name in MOBILE:
        for field in ("parameters", "macs"):
            assert f"{{cost}}`{name}:{field}`" in text, (name, field)
            assert f"{costs[name][field]:,}" not in text, (name, field)


def test_the_summarys_comparison_with_the_earlier_networks(costs):
    """ch08's summary: the three need "far fewer parameters than AlexNet,
    VGG-16 and ResNet-50, and fewer than GoogLeNet", "far fewer
    multiply-accumulates than VGG-16 and ResNet-50, fewer than GoogLeNet,
    and from about a quarter to about a half of AlexNet's"."""
    page = " ".join(page_text(PAGE).split())
    assert (
        "need far fewer parameters than AlexNet, VGG-16 and ResNet-50, and "
        "fewer than GoogLeNet. They need far fewer multiply-accumulates "
        "than VGG-16 and ResNet-50, fewer than GoogLeNet, and from about a "
        "quarter to about a half of AlexNet's" in page
    )

    def ratios(field, other):
        return [costs[n][field] / costs[other][field] for n in MOBILE]

    far = 1 / 4
    for other in ("AlexNet", "VGG-16", "ResNet-50"):
        assert max(ratios("parameters", other)) < far, other
    for other in ("VGG-16", "ResNet-50"):
        assert max(ratios("macs", other)) < far, other
    assert max(ratios("parameters", "GoogLeNet")) < 1
    assert max(ratios("macs", "GoogLeNet")) < 1
    alexnet = ratios("macs", "AlexNet")
    assert 0.2 < min(alexnet) < 0.3 and 0.45 < max(alexnet) < 0.55, alexnet


def test_ch07_mobile_networks_as_the_page_tells_them(costs):
    """ch07: each of the three "needs fewer multiply-accumulates than every
    network above it but LeNet-5, and fewer parameters than GoogLeNet";
    the classifier "holds from about a quarter to over a third of their
    parameters"; "counted by the convolutions alone they output more
    values per image than GoogLeNet, and counted at every Keras layer
    MobileNetV2 and EfficientNet-B0 output more than VGG-16, and MobileNet
    about as many (less than one percent more)"."""
    page = " ".join(page_text("ch07-side-by-side.md").split())
    assert "every Keras layer MobileNetV2 and EfficientNet-B0" in page
    assert "and MobileNet about as many (less than one percent more)" in page
    names = [name for name, *_ in compare.CANONICAL]
    above = names[: names.index("MobileNet")]
    assert set(MOBILE) == set(names[len(above) :])
    shares = []
    for name in MOBILE:
        for other in above:
            if other != "LeNet-5":
                assert costs[name]["macs"] < costs[other]["macs"], other
        mobile = costs[name]
        assert mobile["parameters"] < costs["GoogLeNet"]["parameters"]
        shares.append(mobile["dense_parameters"] / mobile["parameters"])
        assert (
            mobile["weighted_activation_bytes"]
            > (costs["GoogLeNet"]["weighted_activation_bytes"])
        ), name
    assert 0.22 < min(shares) < 0.28 and 1 / 3 < max(shares) < 0.4, shares
    for name in ("MobileNetV2", "EfficientNet-B0"):
        assert (
            costs[name]["activation_bytes"]
            > (costs["VGG-16"]["activation_bytes"])
        ), name
    ratio = (
        costs["MobileNet"]["activation_bytes"]
        / costs["VGG-16"]["activation_bytes"]
    )
    assert 1 < ratio < 1.01, ratio
