"""Chapter 7: costs from the definitions, and the exercises' feedback."""

import math
import re

import numpy as np
import pytest
from conftest import ROOT

from cnnbook import arithmetic, compare, models, records
from cnnbook.grading.api import CheckFailure
from cnnbook.grading.chapters import exercises
from cnnbook.grading.checks import ch07
from cnnbook.grading.runner import run_exercise
from cnnbook.kinds import is_layer


def test_cost_of_lenet5_agrees_with_the_layer_table():
    net = models.lenet5()
    cost = compare.cost(net)
    assert cost.parameters == 61_706 == net.count_params()
    assert cost.macs == arithmetic.layer_table(net).total_multiplications
    assert cost.macs == 416_520
    outputs = sum(math.prod(layer.output.shape[1:]) for layer in net.layers)
    assert cost.activations == outputs
    assert cost.activation_megabytes == pytest.approx(4 * outputs / 1e6)
    # the second count: convolutions and fully connected layers only
    weighted = [
        layer for layer in net.layers if is_layer(layer, "Conv2D", "Dense")
    ]
    assert cost.weighted_activations == sum(
        math.prod(layer.output.shape[1:]) for layer in weighted
    )
    assert 0 < cost.weighted_activations < cost.activations
    dense = [layer for layer in net.layers if is_layer(layer, "Dense")]
    assert cost.dense_parameters == sum(d.count_params() for d in dense)
    assert cost.dense_macs == sum(
        d.kernel.shape[0] * d.kernel.shape[1] for d in dense
    )


def test_weighted_activations_leave_out_what_a_builder_adds():
    """Batch normalisation, ReLU and Add layers count in the first
    activation total and not in the second: two networks with the same
    convolutions have the same second count."""
    import keras

    def net(extras):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
        if extras:
            x = keras.layers.BatchNormalization(name="bn")(x)
            x = keras.layers.ReLU(name="relu")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = keras.layers.Dense(2, name="classifier")(x)
        return keras.Model(inputs, outputs)

    bare, extended = compare.cost(net(False)), compare.cost(net(True))
    assert bare.weighted_activations == extended.weighted_activations
    assert bare.weighted_activations == 8 * 8 * 4 + 2
    assert extended.activations == bare.activations + 2 * 8 * 8 * 4
    assert extended.macs == bare.macs == 8 * 8 * 4 * 3 * 3 * 3 + 4 * 2
    assert bare.dense_parameters == 4 * 2 + 2


def test_cost_looks_inside_a_nested_model():
    from cnnbook.train import augmented

    net = models.lenet5()
    wrapped = augmented(net, shift=0.1, flip=True)
    inner = compare.cost(net)
    outer = compare.cost(wrapped)
    assert outer.parameters == inner.parameters
    assert outer.macs == inner.macs
    assert outer.weighted_activations == inner.weighted_activations
    assert outer.dense_parameters == inner.dense_parameters
    # the two augmentation layers add their own outputs
    assert outer.activations == inner.activations + 2 * 32 * 32


def test_every_case_study_has_a_builder():
    from cnnbook import labs

    assert [lab for lab, _, _ in compare.CASE_STUDIES] == [
        stem for stem, entry in labs.LABS.items() if entry.case_study
    ]
    for lab, model, _label in compare.CASE_STUDIES:
        owner, _network = labs.find_network(model)
        assert owner.stem == lab
    # built from the record's settings: the width is the record's
    net = compare.builder_for("resnet18_cifar_w16")({"width": 4})
    assert net.name == "resnet18_cifar_w4"
    # GoogLeNet is costed as deployed: one output, no auxiliary heads
    deployed = compare.builder_for("googlenet_small_aux")({"width": 0.125})
    assert len(deployed.outputs) == 1
    with pytest.raises(KeyError, match="no lab trains"):
        compare.builder_for("mystery_net")


def test_quoted_costs_come_from_the_stored_table(tmp_path):
    papers = [
        ("VGG-16", compare.Cost(138_357_544, 15_470_264_320, 100)),
        ("LeNet-5", compare.Cost(61_706, 416_520, 8_494, 6_518)),
    ]
    compare.write_costs(papers, [], tmp_path)
    assert compare.quoted_cost("VGG-16:parameters", tmp_path) == (
        "138,357,544"
    )
    assert compare.quoted_cost("VGG-16:macs_billions", tmp_path) == "15.47"
    # small networks in a unit that reads: thousands and millions
    assert compare.quoted_cost("LeNet-5:macs_millions", tmp_path) == "0.42"
    quoted = compare.quoted_cost(
        "LeNet-5:activation_bytes_thousands", tmp_path
    )
    assert quoted == f"{4 * 8_494 / 1e3:.2f}"
    quoted = compare.quoted_cost(
        "LeNet-5:weighted_activation_bytes_thousands", tmp_path
    )
    assert quoted == f"{4 * 6_518 / 1e3:.2f}"
    with pytest.raises(LookupError):
        compare.quoted_cost("VGG-19:parameters", tmp_path)


@pytest.mark.slow
def test_stored_costs_match_the_definitions():
    """results/costs.json (written by the chapter 7 lab) is not stale."""
    path = compare.costs_path()
    assert path.exists(), "run the chapter 7 lab to store the costs"
    import json

    stored = json.loads(path.read_text())
    for name, cost in compare.canonical():
        assert stored[name]["parameters"] == cost.parameters, name
        assert stored[name]["macs"] == cost.macs, name
        assert stored[name]["activation_bytes"] == 4 * cost.activations
        assert stored[name]["weighted_activation_bytes"] == (
            4 * cost.weighted_activations
        ), name
        assert stored[name]["dense_parameters"] == cost.dense_parameters
        assert stored[name]["dense_macs"] == cost.dense_macs, name


def test_place_run_agrees_with_the_trainer_verdict():
    rng = np.random.default_rng(3)
    for _ in range(50):
        recorded = list(rng.uniform(0.88, 0.95, int(rng.integers(1, 5))))
        accuracy = float(rng.uniform(0.85, 0.97))
        expected = records.Range(
            len(recorded), min(recorded), max(recorded), 0.0
        ).verdict(accuracy)
        assert expected.startswith(ch07._expected_place(accuracy, recorded))


def _grade(key, **answers):
    (ex,) = [e for e in exercises("ch07") if e.key == key]
    return run_exercise(ex, answers, hidden=True, seed=1)


def _weights_once(model):
    return sum(
        math.prod(layer.kernel.shape)
        for layer in model.layers
        if type(layer).__name__ in ("Conv2D", "Dense")
    )


def _with_biases(model):
    return ch07._expected_macs(model) + sum(
        math.prod(layer.output.shape[1:])
        for layer in model.layers
        if type(layer).__name__ in ("Conv2D", "Dense") and layer.use_bias
    )


@pytest.mark.parametrize(
    "answer, fragment",
    [
        (_weights_once, "each weight once"),
        (_with_biases, "biases"),
        (lambda m: m.count_params(), "number of parameters"),
    ],
)
def test_macs_mistakes_are_named(answer, fragment):
    result = _grade("7.1", macs=answer)
    assert result.points == 0 and fragment in result.message


def test_macs_right_answer_passes_hidden_checks():
    result = _grade("7.1", macs=ch07._expected_macs)
    assert result.points == 3, result.message


def test_activation_mistakes_are_named():
    def with_input(model):
        return ch07._expected_activations(model) + math.prod(
            model.inputs[0].shape[1:]
        )

    def convs_only(model):
        return sum(
            math.prod(layer.output.shape[1:])
            for layer in model.layers
            if type(layer).__name__ in ("Conv2D", "Dense")
        )

    assert "input image" in _grade("7.2", activation_values=with_input).message
    assert "every layer" in _grade("7.2", activation_values=convs_only).message
    right = _grade("7.2", activation_values=ch07._expected_activations)
    assert right.points == 2, right.message


def test_front_mistake_of_extremes_is_named():
    def extremes(results):
        best = max(results, key=lambda r: r["accuracy"])["name"]
        cheapest = min(results, key=lambda r: r["macs"])["name"]
        return sorted({best, cheapest})

    result = _grade("7.3", pareto_front=extremes)
    assert result.points == 0 and "not only the extremes" in result.message
    right = _grade("7.3", pareto_front=ch07._expected_front)
    assert right.points == 3, right.message


def test_place_mistake_without_margin_is_named():
    def strict(accuracy, recorded):
        if accuracy < min(recorded):
            return "lower"
        if accuracy > max(recorded):
            return "higher"
        return "normal"

    result = _grade("7.4", place_run=strict)
    assert result.points == 0 and "within one spread" in result.message
    right = _grade("7.4", place_run=ch07._expected_place)
    assert right.points == 2, right.message


def test_a_wrong_but_unrecognised_answer_gets_got_expected():
    with pytest.raises(CheckFailure, match="expected"):
        ch07._check_front(
            lambda results: ["A"], ch07.FRONT_EXAMPLE, "pareto_front"
        )


def test_page_lists_the_exercises_with_their_points():
    import pathlib
    import re

    page = (
        pathlib.Path(__file__).resolve().parent.parent
        / "book"
        / "ch07-side-by-side.md"
    ).read_text()
    text = " ".join(page.split())
    listed = exercises("ch07")
    assert f"{sum(e.points for e in listed)} points in all" in text
    for e in listed:
        assert re.search(
            rf"\*\*{re.escape(e.key)} .+?\*\* \({e.points} points?\)", text
        ), e.key


def test_the_verdict_says_what_its_range_groups_and_how_many():
    one = records.Range(1, 0.90, 0.90, 0.90)
    assert one.verdict(0.903) == (
        "normal: within half a point of the one recorded run with the same "
        "settings and code"
    )
    assert "below the one recorded run" in one.verdict(0.89)
    three = records.Range(3, 0.90, 0.92, 0.91)
    assert three.verdict(0.89) == (
        "normal: within the spread of the 3 recorded runs with the same "
        "settings and code"
    )
    assert "by more than their spread" in three.verdict(0.95)
    other = records.Range(2, 0.80, 0.84, 0.82, matched=False, differs="code")
    told = other.verdict(0.82)
    assert "the 2 recorded runs of the newest group (other code)" in told
    assert "not what seeds alone produce" in told
    assert "same settings" not in other.verdict(0.70)


def _lab_cells():
    import nbformat

    path = records.REPO / "notebooks" / "ch07-side-by-side.ipynb"
    nb = nbformat.read(path, as_version=4)
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _html_rows(output):
    """The cells of an HTML table output, row by row (header first)."""
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.rows[-1].append(self.cell.strip())
                self.cell = None

    parser = Rows()
    parser.feed(output["data"]["text/html"])
    return parser.rows


def test_the_lab_stores_its_tables_as_html_from_the_costs():
    """The lab's stored run shows its tables as HTML (no fixed-width text
    tables), no error output, and the papers' table with the columns the
    page describes, in units in which LeNet-5 reads: its numbers are those
    of results/costs.json, which the same run wrote."""
    import json

    cells = _lab_cells()
    outputs = [o for cell in cells for o in cell.outputs]
    assert not [o for o in outputs if o.get("name") == "stderr"]
    assert not [o for o in outputs if o.output_type == "error"]
    tables = [
        o
        for o in outputs
        if o.output_type in ("execute_result", "display_data")
        and "text/html" in o.get("data", {})
    ]
    assert len(tables) >= 5
    for table in tables:
        assert table["data"]["text/html"].lstrip().startswith("<table")
    [papers] = [cell for cell in cells if "compare.canonical()" in cell.source]
    # two tables: parameters and MACs, then activations; one row a network
    (header, *counts), (more, *activations) = [
        _html_rows(output) for output in papers.outputs
    ]
    assert [row[0] for row in counts] == [row[0] for row in activations]
    header += more[1:]
    rows = [a + b[1:] for a, b in zip(counts, activations, strict=True)]
    costs = json.loads(compare.costs_path().read_text())
    assert [row[0] for row in rows] == [name for name, *_ in compare.CANONICAL]
    for name, *shown in rows:
        cost = costs[name]
        expected = [
            f"{cost['parameters']:,}",
            f"{cost['dense_parameters']:,}",
            f"{cost['macs'] / 1e6:,.2f}",
            f"{cost['dense_macs'] / 1e6:,.2f}",
            f"{round(cost['weighted_activation_bytes'] / 1e3):,}",
            f"{round(cost['activation_bytes'] / 1e3):,}",
        ]
        assert shown == expected, (name, header, shown, expected)
        # no column reads as zero, LeNet-5's included
        assert all(cell.strip("0.,") for cell in shown), (name, shown)


# ------------------------------------------------------ what to pick when
def test_the_advice_for_few_labels_agrees_with_the_transfer_lab():
    """ch07: with few labels, start from a trained network; in chapter 8's
    lab "the fine-tuned network had the highest mean test accuracy at
    every number of labels, ahead of the network trained from scratch by
    less than the scratch seeds spread, and the frozen one the lowest"
    (a fresh review found the page advising training from scratch)."""
    page = " ".join(
        (ROOT / "book" / "ch07-side-by-side.md").read_text().split()
    )
    assert (
        "the fine-tuned network had the highest mean test accuracy at every "
        "number of labels, ahead of the network trained from scratch by "
        "less than the scratch seeds spread, and the frozen one the lowest"
    ) in page
    assert "few parameters to overfit with" not in page

    def accuracies(arm, n):
        return [
            r["test_accuracy"]
            for r in records.newest_group(
                records.load_all(
                    lab="ch08-transfer",
                    model=f"transfer_{arm}_n{n}",
                    profile="full",
                    device_kind="cpu",
                )
            )
        ]

    for n in (10, 50, 250, 1000):
        tuned, scratch, frozen = (
            accuracies(arm, n) for arm in ("finetuned", "scratch", "frozen")
        )
        assert len(tuned) == len(scratch) == len(frozen) == 3, n
        means = [float(np.mean(v)) for v in (tuned, scratch, frozen)]
        assert means[0] > means[1] > means[2], n
        assert means[0] - means[1] < max(scratch) - min(scratch), n


# ------------------------------------------- the accuracy-against-MACs figure
def test_close_labels_of_the_figure_go_one_above_one_below():
    """Two markers close on both axes: the lower one's label goes below
    it; markers far apart keep theirs above (review finding 14)."""
    from cnnbook import plots

    close = [(2.0e7, 93.2), (2.4e7, 93.1), (8.0e7, 92.2), (4.0e5, 99.2)]
    assert plots.label_below(close) == [False, True, False, False]
    apart = [(2.0e7, 93.2), (2.4e7, 91.0)]
    assert plots.label_below(apart) == [False, False]


def test_the_figure_names_narrow_networks_as_the_tables_do():
    """Every stored case study trained at a reduced width is labelled
    "(narrow)" in both figures, as in the page's tables; no label
    repeats."""
    from cnnbook import plots

    rows = compare.trained()
    points = plots.case_study_points(rows)
    labels = [label for label, *_ in points]
    assert len(set(labels)) == len(labels)
    for row, label in zip(rows, labels, strict=True):
        narrow = "width" in row.record["settings"]
        assert label.endswith("(narrow)") == narrow, label
    assert "ResNet-18 (narrow)" in labels
    # the page's table of the stored runs, which the figures illustrate,
    # names its rows with the same labels, in the same order (a third
    # review found "LeNet-5 (MNIST)" and "AlexNet" in the table against
    # "LeNet-5 (modern)" and "AlexNet (67×67)" in the figure)
    page = (ROOT / "book" / "ch07-side-by-side.md").read_text()
    full_rows = re.findall(
        r"^\| ([^|]+?) \| \{run\}`[^`]+/full:test_accuracy`", page, re.M
    )
    assert full_rows == labels
    fig = plots.accuracy_vs_macs(points)
    texts = [text.get_text() for text in fig.axes[0].texts]
    assert texts == labels
    _assert_labels_clear(fig)
    # the accuracy-against-time figure names them alike (second review,
    # finding 8), each at its record's training time
    times = plots.case_study_times(rows)
    assert [label for label, *_ in times] == labels
    for row, (_, minutes, accuracy) in zip(rows, times, strict=True):
        assert minutes == row.record["seconds"] / 60
        assert accuracy == row.accuracy
    fig = plots.accuracy_vs_time(times)
    [ax] = fig.axes
    assert [text.get_text() for text in ax.texts] == labels
    assert ax.get_xlabel() == "training time (minutes)"
    # a fresh review found AlexNet's label cut off by the bottom of the
    # axes and the narrow VGG's running into the narrow GoogLeNet's
    _assert_labels_clear(fig)


def _assert_labels_clear(fig):
    """No label of a figure of the stored runs covers another marker or
    label, and each lies inside the axes, left to right and top to bottom
    (a third review found the narrow MobileNet v2's label under AlexNet's
    marker, a fresh one LeNet-5's touching the top)."""
    from cnnbook import plots

    [ax] = fig.axes
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    for own, text in enumerate(ax.texts):
        box = text.get_window_extent(renderer)
        assert plots.label_clashes(ax, own, box) == [], text.get_text()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, text.get_text()
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1, text.get_text()


def test_a_label_moves_off_a_large_marker_beside_it():
    """A small network's label that would run, below and to the right,
    into the marker of a large network moves elsewhere; the check above
    sees the clash where it stays."""
    from cnnbook import plots

    rows = [
        ("far", 4.2e5, 0.992, 6e4),  # stretches the axes as LeNet-5 does
        ("the upper network", 2.3e7, 0.931, 4e5),
        ("the small network (narrow)", 1.8e7, 0.9265, 6e5),
        ("the large one", 8.0e7, 0.9215, 2.2e7),
    ]
    fig = plots.accuracy_vs_macs(rows)
    [ax] = fig.axes
    small = ax.texts[2]
    assert (small.get_ha(), small.get_va()) != ("left", "top")
    _assert_labels_clear(fig)
    renderer = fig.canvas.get_renderer()
    small.set_ha("left")
    small.set_va("top")
    small.xyann = (6, -8)
    assert 3 in plots.label_clashes(ax, 2, small.get_window_extent(renderer))


def test_the_time_figure_labels_two_runs_at_the_same_minutes_apart():
    """Two runs at about the same minutes, half a point apart (MobileNet
    v2's and AlexNet's): the lower one's label goes below its marker, so
    that it does not sit beside the higher one; runs ten minutes apart
    keep theirs above, as the time axis is linear."""
    import matplotlib.pyplot as plt

    from cnnbook import plots

    rows = [
        ("first", 2.4, 0.992),
        ("earlier", 33.0, 0.9309),
        ("upper", 43.9, 0.9266),
        ("lower", 44.2, 0.9215),
    ]
    fig = plots.accuracy_vs_time(rows)
    placed = [text.get_verticalalignment() for text in fig.axes[0].texts]
    plt.close(fig)
    assert placed == ["baseline", "baseline", "baseline", "top"], placed
