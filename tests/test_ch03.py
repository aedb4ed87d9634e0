"""Chapter 3 (AlexNet): counts, shapes, LRN, variant, checks, page."""

import re

import numpy as np
import pytest
from conftest import (
    ROOT,
    assert_reference_answers_pass,
    page_text,
)

from cnnbook import arithmetic, diagrams, models
from cnnbook.grading.chapters import exercises
from cnnbook.grading.checks import ch03
from cnnbook.grading.runner import run_exercise
from cnnbook.models.alexnet import local_response_normalization

PAGE = ROOT / "book" / "ch03-alexnet.md"
ALEXNET_PARAMS = 62_378_344  # the figure of the issue and of the page


@pytest.fixture(scope="module")
def table():
    """The canonical AlexNet's layer table; the model is built once, freed."""
    return diagrams.describe(models.alexnet)


# ------------------------------------------------------------ canonical
def test_canonical_count(table):
    assert table.total_params == ALEXNET_PARAMS
    assert sum(ch03.reference_parameters().values()) == ALEXNET_PARAMS


def test_shapes_equal_arithmetic(table):
    built = [
        r.output_shape[1:]
        for r in table
        if r.kind in ("Conv2D", "MaxPooling2D")
    ]
    assert built == ch03.reference_shapes(227)
    assert built[0] == (55, 55, 96) and built[-1] == (6, 6, 256)
    flatten = next(r for r in table if r.kind == "Flatten")
    assert flatten.output_shape == (None, 6 * 6 * 256) == (None, 9216)


def test_per_layer_parameters_equal_arithmetic(table):
    # the paper's fc8 is the layer every builder names "classifier"
    counts = {
        "fc8" if r.name == "classifier" else r.name: r.params
        for r in table
        if r.params
    }
    assert counts == ch03.reference_parameters()
    assert max(counts, key=counts.get) == "fc6"
    dense = sum(v for k, v in counts.items() if k.startswith("fc"))
    assert dense / ALEXNET_PARAMS > 0.9


def test_224_does_not_divide():
    assert (224 - 11) % 4 != 0 and (227 - 11) % 4 == 0


def test_num_classes_and_lrn_change_only_what_they_should():
    small = models.alexnet(num_classes=10, input_shape=(67, 67, 3))
    with_lrn = models.alexnet(
        num_classes=10, input_shape=(67, 67, 3), lrn=True
    )
    assert (
        small.count_params()
        == with_lrn.count_params()
        == sum(ch03.reference_parameters(10, 67).values())
    )
    kinds = [type(layer).__name__ for layer in with_lrn.layers]
    assert kinds.count("LocalResponseNormalization") == 2


# ------------------------------------------------------------ LRN
def _lrn_loop(a, n, k, alpha, beta):
    out = np.empty_like(a, dtype=np.float64)
    c_total = a.shape[-1]
    for c in range(c_total):
        lo, hi = max(0, c - n // 2), min(c_total, c + n // 2 + 1)
        out[..., c] = (
            a[..., c] / (k + alpha * (a[..., lo:hi] ** 2).sum(-1)) ** beta
        )
    return out


@pytest.mark.parametrize("n", [1, 3, 5])
def test_lrn_matches_definition(n):
    a = np.random.default_rng(n).normal(0, 2, (2, 3, 3, 9)).astype(np.float32)
    got = np.asarray(local_response_normalization(a, n // 2, 2.0, 0.3, 0.75))
    np.testing.assert_allclose(got, _lrn_loop(a, n, 2.0, 0.3, 0.75), rtol=1e-5)


# ------------------------------------------------------------ variant
@pytest.mark.parametrize("size", [67, 112, 227])
def test_fashion_variant_shapes(size):
    net = models.alexnet_fashion(resize_to=size)
    assert net.input_shape == (None, 28, 28, 1)
    assert net.output_shape == (None, 10)
    built = [
        tuple(layer.output.shape[1:])
        for layer in net.layers
        if type(layer).__name__ in ("Conv2D", "MaxPooling2D")
    ]
    # the input channels do not change the volumes after the first layer
    assert built == ch03.reference_shapes(size)


def test_fashion_variant_rejects_small_inputs():
    with pytest.raises(ValueError, match="67"):
        models.alexnet_fashion(resize_to=64)


# ------------------------------------------------------------ diagrams
def test_diagram_rows_and_figures(table):
    import matplotlib.pyplot as plt

    rows = diagrams.volume_rows(table)
    assert rows[0][2] == (227, 227, 3)
    assert [r[0] for r in rows][-3:] == ["fc6", "fc7", "classifier"]
    assert all(kind != "Dropout" for _, kind, _, _ in rows)
    for fig in (
        diagrams.architecture_diagram(table),
        diagrams.parameter_distribution(table),
    ):
        assert fig.axes
        plt.close(fig)


# ------------------------------------------------------------ checks
def _solution_namespace():
    def alexnet_shapes(n):
        return ch03.reference_shapes(n)

    def alexnet_parameters(num_classes=1000, input_size=227):
        return ch03.reference_parameters(num_classes, input_size)

    def lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):
        return _lrn_loop(a, n, k, alpha, beta)

    return dict(
        alexnet_shapes=alexnet_shapes,
        alexnet_parameters=alexnet_parameters,
        lrn=lrn,
    )


def test_reference_answers_pass_visible_and_hidden():
    assert_reference_answers_pass("ch03", _solution_namespace(), seed=7)


def test_wrong_answers_fail():
    ns = _solution_namespace()
    wrong = dict(ns)
    # the 224 mistake: the shapes of the paper's text
    wrong["alexnet_shapes"] = lambda n: (
        ch03.reference_shapes(227)
        if n == 227
        else ch03.reference_shapes(n + 3)
    )
    wrong["alexnet_parameters"] = lambda c=1000, s=227: {
        **ch03.reference_parameters(c, s),
        "fc8": 4096 * c,
    }  # no biases
    wrong["lrn"] = lambda a, k=2.0, n=5, alpha=1e-4, beta=0.75: _lrn_loop(
        a, n + 2, k, alpha, beta
    )
    by_key = {ex.key: ex for ex in exercises("ch03")}
    assert not run_exercise(by_key["3.1"], wrong, hidden=True).passed
    assert "hidden" in run_exercise(by_key["3.1"], wrong, hidden=True).message
    assert not run_exercise(by_key["3.2"], wrong).passed
    assert not run_exercise(by_key["3.3"], wrong).passed


def test_hard_coded_parameters_fail_hidden_check():
    fixed = ch03.reference_parameters()
    ns = dict(
        _solution_namespace(),
        alexnet_parameters=lambda c=1000, s=227: dict(
            fixed, fc8=arithmetic.dense_params(4096, c)
        ),
    )
    ex = {e.key: e for e in exercises("ch03")}["3.2"]
    assert run_exercise(ex, ns).passed
    assert not run_exercise(ex, ns, hidden=True, seed=1).passed


# ------------------------------------------------------------ the page
def test_page_numbers_are_computed(table):
    text = PAGE.read_text()
    assert text.startswith("(ch03-alexnet)=")
    counts = {r.name: r.params for r in table if r.params}
    lenet = (
        arithmetic.conv_params(5, 1, 6)
        + arithmetic.conv_params(5, 6, 16)
        + arithmetic.dense_params(400, 120)
        + arithmetic.dense_params(120, 84)
        + arithmetic.dense_params(84, 10)
    )
    for number in (
        ALEXNET_PARAMS,
        *counts.values(),
        9216,
        lenet,
        table.total_multiplications,
    ):
        assert f"{number:,}" in text, number
    # the summaries give fc6's share as the body and the figure do
    # (diagrams.share_label), and the dense layers' at the same precision
    share = diagrams.share_label(counts["fc6"] / ALEXNET_PARAMS)
    dense = counts["fc6"] + counts["fc7"] + counts["classifier"]
    told = (
        f"{share} of them are in fc6 and "
        f"{dense / ALEXNET_PARAMS:.1%} in the dense layers"
    )
    assert told in " ".join(text.split()), told
    assert f"그중 {share}가 첫 완전 연결층(fc6)에 있다" in text
    assert f"{round(ALEXNET_PARAMS / lenet):,}" in text
    for h, w, c in ch03.reference_shapes(227):
        assert re.search(rf"{h}\s*×\s*{w}\s*×\s*{c}", text), (h, w, c)


def test_parameter_shares_one_precision_every_bar_labelled():
    """The parameters figure labels every bar at one precision (review
    finding 13), and the page's shares are the figure's."""
    table = diagrams.describe(models.alexnet)
    fig = diagrams.parameter_distribution(table)
    rows = [row for row in table if row.params > 0]
    labels = [text.get_text() for text in fig.axes[0].texts]
    total = table.total_params
    assert labels == [diagrams.share_label(r.params / total) for r in rows]
    assert all(re.fullmatch(r"(<0\.1|\d+\.\d)%", label) for label in labels)
    fc6 = next(r for r in rows if r.name == "fc6")
    page = PAGE.read_text()
    share = diagrams.share_label(fc6.params / total)
    assert f"{fc6.params:,} parameters or {share} of the network" in page
    assert diagrams.share_label(0.0004) == "<0.1%"


def test_the_pages_augmentation_by_profile_is_the_labs():
    """ch03 says the `full` run mirrors and nothing more and the `cpu`
    profile uses no augmentation: the registry's settings and the stored
    `full` record say the same."""
    from cnnbook import labs
    from cnnbook import records as recs

    entry = labs.LABS["ch03-alexnet"]
    cpu, full = entry.settings("cpu"), entry.settings("full")
    assert (cpu["mirror"], cpu["shift"]) == (False, 0.0)
    assert (full["mirror"], full["shift"]) == (True, 0.0)
    stored = recs.load(
        ROOT / "results/runs/ch03-alexnet/alexnet_fashion.full.cpu.seed0.json"
    )
    assert (stored["settings"]["mirror"], stored["settings"]["shift"]) == (
        True,
        0.0,
    )
    text = " ".join(page_text("ch03-alexnet.md").split())
    assert (
        "its `full` run mirrors the images and nothing more, and its `cpu` "
        "profile uses no augmentation at all"
    ) in text
