"""Chapter 8's cost lab (``cnnbook.costlab``): the counts of the timed
models, the bytes they move, the timing loop and the verdict, which is
tried on made-up timings for each of its outcomes."""

import math

import keras
import pytest

from cnnbook import arithmetic, costlab, labs
from cnnbook.compare import cost

LAB = labs.LABS["ch08-separable-cost"]
SHAPES = [(8, 16), (4, 32), (5, 24)]


# ------------------------------------------------------------- the counts
@pytest.mark.parametrize("size, channels", SHAPES)
def test_conv_pair_macs_are_layer_tables_count(size, channels):
    standard, separable = costlab.separable_pair(size, channels)
    counted = tuple(
        arithmetic.layer_table(m).total_multiplications
        for m in (standard, separable)
    )
    assert costlab.pair_macs("conv", size, channels) == counted
    assert counted == (cost(standard).macs, cost(separable).macs)
    ratio = counted[1] / counted[0]
    assert ratio == pytest.approx(arithmetic.separable_ratio(channels, 3))
    for model in (standard, separable):
        assert model.outputs[0].shape[1:] == (size, size, channels)
        assert not any(layer.weights[1:] for layer in model.layers), (
            "bare convolutions: a kernel and nothing else"
        )


@pytest.mark.parametrize("size, channels", SHAPES)
def test_block_pair_macs_are_layer_tables_count(size, channels):
    basic, inverted = costlab.block_pair(size, channels)
    counted = tuple(
        arithmetic.layer_table(m).total_multiplications
        for m in (basic, inverted)
    )
    assert costlab.pair_macs("block", size, channels) == counted
    assert [layer.name for layer in inverted.layers][-1] == "inverted_add"
    expanded = inverted.get_layer("inverted_dw").output.shape[-1]
    assert expanded == 6 * channels
    for model in (basic, inverted):
        assert model.outputs[0].shape[1:] == (size, size, channels)


def test_pair_macs_refuses_an_unknown_pair():
    with pytest.raises(ValueError, match="'conv' or 'block', not 'vgg'"):
        costlab.pair_macs("vgg", 8, 16)


def test_inverted_block_saves_less_than_the_bare_separable_pair():
    """The lab's markdown: the inverted block saves fewer MACs than the
    bare separable convolution, at every map of every profile."""
    for profile in labs.PROFILES:
        for size, channels in LAB.settings(profile)["shapes"]:
            basic, inverted = costlab.pair_macs("block", size, channels)
            standard, separable = costlab.pair_macs("conv", size, channels)
            assert inverted / basic > separable / standard


# -------------------------------------------------------------- the bytes
def test_layer_traffic_counts_inputs_outputs_and_weights():
    size, channels, batch = 8, 16, 3
    _, separable = costlab.separable_pair(size, channels)
    depthwise, pointwise = costlab.layer_traffic(separable, batch)
    values = size * size * channels
    assert depthwise.macs == batch * values * 9
    assert depthwise.bytes == 4 * (2 * batch * values + 9 * channels)
    assert pointwise.macs == batch * values * channels
    assert pointwise.bytes == 4 * (2 * batch * values + channels**2)
    assert costlab.traffic_bytes(separable, batch) == (
        depthwise.bytes + pointwise.bytes
    )


def test_depthwise_intensity_is_about_one_mac_per_byte():
    """The lab's markdown: 9 MACs for two values of 4 bytes, whatever the
    map, once the batch makes the weights negligible."""
    for size, channels in LAB.settings("full")["shapes"]:
        _, separable = costlab.separable_pair(size, channels)
        [depthwise, _] = costlab.layer_traffic(separable, 32)
        assert depthwise.intensity == pytest.approx(9 / 8, rel=0.01)


def test_byte_ratios_the_markdown_states():
    """Twice the bytes at the large map; at the small deep map with one
    image the standard convolution's weights outweigh its activations; the
    inverted block moves more bytes than the basic block where activations
    dominate."""
    standard, separable = costlab.separable_pair(56, 64)
    ratio = costlab.traffic_bytes(separable, 32) / costlab.traffic_bytes(
        standard, 32
    )
    assert 1.8 < ratio < 2.05
    standard, _ = costlab.separable_pair(7, 512)
    [conv] = costlab.layer_traffic(standard, 1)
    weights = 4 * 9 * 512 * 512
    assert weights > conv.bytes - weights
    basic, inverted = costlab.block_pair(56, 64)
    assert costlab.traffic_bytes(inverted, 32) > costlab.traffic_bytes(
        basic, 32
    )


# ------------------------------------------------------------- the timing
def test_median_seconds_interleaves_and_leaves_out_the_warm_up(monkeypatch):
    clock = [0.0]
    order = []

    def call(name, durations):
        def run():
            order.append(name)
            clock[0] += durations.pop(0)

        return run

    monkeypatch.setattr(costlab.time, "perf_counter", lambda: clock[0])
    slow = call("a", [100.0, 100.0, 1.0, 3.0, 2.0])
    fast = call("b", [50.0, 50.0, 0.5, 0.1, 0.3])
    seconds = costlab.median_seconds([slow, fast], repeats=3, warmup=2)
    assert seconds == pytest.approx([2.0, 0.3])
    assert order == ["a", "b"] * 5


def test_measure_times_both_models_of_a_tiny_pair():
    [timing] = costlab.measure("conv", [(4, 8)], [2], repeats=1)
    standard, separable = costlab.separable_pair(4, 8)
    assert timing.macs == costlab.pair_macs("conv", 4, 8)
    assert timing.bytes == (
        costlab.traffic_bytes(standard, 2),
        costlab.traffic_bytes(separable, 2),
    )
    assert all(t > 0 for t in (*timing.forward, *timing.train))
    assert timing.intensity(0) == timing.macs[0] * 2 / timing.bytes[0]


def test_headline_batch_is_timed_in_every_profile():
    for profile in labs.PROFILES:
        settings = LAB.settings(profile)
        assert settings["headline_batch"] in settings["batch_sizes"]


# ------------------------------------------------------------ the verdict
def _timing(size, channels, batch, mac_ratio, byte_ratio, time_ratio):
    """A made-up setting: baseline of 1,000 MACs, 100 bytes and 10 ms."""
    return costlab.Timing(
        "conv",
        size,
        channels,
        batch,
        (1000, round(1000 * mac_ratio)),
        (100, round(100 * byte_ratio)),
        (0.01, 0.01 * time_ratio),
        (0.03, 0.03 * time_ratio),
    )


def test_verdict_when_every_time_ratio_follows_the_macs():
    timings = [
        _timing(56, 64, 1, 0.125, 2.0, 0.15),
        _timing(56, 64, 8, 0.125, 2.0, 0.1),
        _timing(7, 512, 8, 0.125, 2.0, 0.125 * 1.49),
    ]
    found = costlab.verdict(timings, "train", ("standard", "separable"))
    assert found.followed == tuple(timings)
    assert not found.missed and not found.slower
    assert found.text == (
        "Training step, separable against standard: the time ratio "
        "followed the MAC ratio (within a factor of 1.5) at 3 of 3 "
        "settings (56×56×64 at batches 1 and 8; 7×7×512 at batch 8)."
    )


def test_verdict_when_no_time_ratio_follows_the_macs():
    timings = [
        _timing(56, 64, 1, 0.125, 2.0, 1.6),  # nearer the bytes, slower
        _timing(28, 128, 1, 0.125, 2.0, 0.25),  # twice the MACs: nearer them
        _timing(7, 512, 32, 0.125, 0.5, 0.5),  # on the bytes
    ]
    found = costlab.verdict(timings, "forward", ("standard", "separable"))
    assert not found.followed
    assert found.missed == tuple(timings)
    assert found.excess == pytest.approx((12.8, 2.0, 4.0), rel=1e-3)
    assert found.nearer_bytes == 2
    assert found.slower == (timings[0],)
    assert "at 0 of 3 settings." in found.text
    assert "it was 2.0 to 12.8 times the MAC ratio" in found.text
    assert "and 2 of them lay nearer the ratio of bytes moved" in found.text
    assert found.text.endswith(
        "The separable took longer than the standard at 56×56×64 at batch 1."
    )


def test_verdict_tolerance_is_a_factor_either_way():
    below = _timing(14, 256, 8, 0.2, 2.0, 0.2 / 1.6)
    inside = _timing(14, 256, 32, 0.2, 2.0, 0.2 / 1.4)
    found = costlab.verdict([below, inside], "forward")
    assert found.followed == (inside,)
    assert found.missed == (below,)
    assert found.excess == pytest.approx((1 / 1.6,), rel=1e-3)
    wider = costlab.verdict([below, inside], "forward", tolerance=2)
    assert wider.followed == (below, inside)
    assert "within a factor of 2)" in wider.text


def test_verdict_needs_timings():
    with pytest.raises(ValueError, match="no timings"):
        costlab.verdict([], "forward")


def test_timing_ratios():
    timing = _timing(28, 128, 8, 0.125, 2.0, 0.5)
    assert timing.mac_ratio == 0.125
    assert timing.byte_ratio == 2.0
    assert math.isclose(timing.time_ratio("forward"), 0.5)
    assert math.isclose(timing.time_ratio("train"), 0.5)
    assert timing.setting == "28×28×128 at batch 8"


def test_mixed_precision_counts_two_bytes_an_activation():
    """Under the gpu profile's mixed precision the activations are 16-bit
    and the weights stay 32-bit; a training step still runs."""
    before = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        _, separable = costlab.separable_pair(4, 8)
        [depthwise, _] = costlab.layer_traffic(separable, 2)
        assert depthwise.bytes == 2 * 2 * 2 * 4 * 4 * 8 + 4 * 9 * 8
        [timing] = costlab.measure("block", [(4, 8)], [2], repeats=1)
        assert all(t > 0 for t in timing.train)
    finally:
        keras.mixed_precision.set_dtype_policy(before)
