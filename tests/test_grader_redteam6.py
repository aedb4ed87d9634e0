"""The holes a sixth red team found in the grader (issue #22), each closed
at its root and kept closed: what the kernel sends back is bounded
(messages, errors, Keras inputs, layers and their sizes), each exercise
draws its own hidden stream, two networks alike in shapes and counts but
not in their layers' settings differ, and chapter 1's watch sees Pillow
and NumPy's C correlation. In-process, but for one ch01 grade (a few
seconds)."""

import json

import keras
import nbformat
import numpy as np
import pytest
import zmq
from conftest import ROOT

from cnnbook import execution, notebooks
from cnnbook.grading import (
    api,
    reader,
    rebuild,
    runner,
    session,
    structure,
    wire,
)
from cnnbook.grading.grade import grade
from cnnbook.grading.runner import exercise_rng
from cnnbook.grading.session import Limits


# ------------------------------------------- the error flood (attack 1)
def _error(size):
    return {
        "header": {"msg_type": "error"},
        "msg_type": "error",
        "parent_header": {},
        "metadata": {},
        "content": {
            "ename": "E" * size,
            "evalue": "v" * size,
            "traceback": ["t" * size] * 1000,
        },
    }


def test_errors_a_kernel_sends_are_kept_bounded():
    """Attack 1: ten 100 MB error messages of one cell took the grader to
    1.33 GB (errors were kept whole). A cell keeps at most three, each
    cut; and the grader's sockets refuse any message over 32 MiB before
    it is read."""
    client = execution.Executor(nbformat.v4.new_notebook(), output_limit=100)
    client.clear_before_next_output = False  # as nbclient sets per cell
    outs = []
    for _ in range(10):
        client.output(outs, _error(10**6), None, 0)
    assert len(outs) == execution.MAX_ERRORS_KEPT
    size = len(json.dumps([dict(o) for o in outs]))
    assert size < 3 * 70 * execution.MAX_ERROR_CHARS, size
    assert outs[0]["ename"].endswith("[cut]")
    client.output(outs, _error(10), None, 1)  # another cell: its own three
    assert len(outs) == execution.MAX_ERRORS_KEPT + 1
    manager = session.SandboxedKernelManager(kernel_name="python3")
    kc = manager.client()
    assert kc.context.getsockopt(zmq.MAXMSGSIZE) == session.MAX_MESSAGE_BYTES


# ------------------------------------------- Keras inputs (attack 2)
def test_an_answer_cannot_hold_keras_inputs():
    """Attack 2: 60,000 Keras input markers in one answer, each built
    into a keras.Input by the grader (1.41 GB, 90 s). Only the grader's
    own requests carry them (decoded in the kernel, which collects them);
    an answer that holds one is refused."""
    marker = {"t": "input", "shape": [4], "name": "x"}
    with pytest.raises(wire.WireError, match="Keras inputs"):
        reader.decode({"t": "list", "v": [marker] * 3}, {})
    collected = []
    reader.decode(marker, {}, inputs=collected)
    assert len(collected) == 1


# ------------------------------------ layers built from a config (attack 3)
def _layer_tree(layer):
    return {"t": "layer", "config": keras.saving.serialize_keras_object(layer)}


def test_a_returned_layer_comes_back_unbuilt_and_bounded():
    """Attack 3: layers with a build configuration were built in the
    grader, their initializers drawing every weight (twice what the
    budget charged; 6.35 GB from three answers). A layer comes back
    unbuilt; its sizes are bounded before a check builds it; layers whose
    weights grow with a number no check needs are refused."""
    dense = keras.layers.Dense(8)
    dense.build((None, 4))
    tree = _layer_tree(dense)
    assert "build_config" in tree["config"]
    layer = reader.decode(tree, {})
    assert not layer.built and layer.units == 8
    for huge in (
        keras.layers.Dense(10**6),
        keras.layers.Conv2D(10**5, 3),
        keras.layers.Conv2D(8, 1000),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=10**4),
        keras.layers.Embedding(10**6, 10**3),
    ):
        with pytest.raises(wire.WireError, match="at most|can be checked"):
            reader.decode(_layer_tree(huge), {})
    # the book's largest sizes are well inside the bounds
    for ok in (keras.layers.Dense(4096), keras.layers.Conv2D(2048, 11)):
        assert rebuild.decode_keras(_layer_tree(ok), {}, reader.Budget())


# ----------------------------------- shapes alike, layers not (attack 4)
def _relu_conv(kernel, **options):
    return keras.layers.Conv2D(
        8, kernel, padding="same", activation="relu", **options
    )


def _sequential(*layers):
    return keras.Sequential([keras.Input((16, 16, 3)), *layers])


def test_layers_alike_in_shape_and_count_but_not_in_settings_differ():
    """Attack 4: a 1x9 kernel with dilation 3 where VGG has 3x3, and no
    activation where it has ReLU, have the same output shapes and
    parameter counts; the comparison now also holds each layer's
    settings (kernel, strides, padding, dilation, activation, pool)."""
    ref = _sequential(_relu_conv(3))
    structure.expect_same_layers(_sequential(_relu_conv(3)), ref)
    for wrong in (
        _relu_conv((1, 9), dilation_rate=(1, 3)),
        _relu_conv((9, 1)),
        keras.layers.Conv2D(8, 3, padding="same"),
    ):
        mine = _sequential(wrong)
        assert structure.layer_signature(mine) == structure.layer_signature(
            ref
        )
        with pytest.raises(api.CheckFailure, match="the specification has"):
            structure.expect_same_layers(mine, ref)


# ------------------------------------------ one stream each (finding 7)
def test_each_exercise_draws_its_own_hidden_stream():
    a = exercise_rng(5, "2.2").integers(0, 2**31, 4)
    assert np.array_equal(a, exercise_rng(5, "2.2").integers(0, 2**31, 4))
    assert not np.array_equal(a, exercise_rng(5, "2.4").integers(0, 2**31, 4))
    assert not np.array_equal(a, exercise_rng(6, "2.2").integers(0, 2**31, 4))


# --------------------------------------- chapter 1's watch (attack 5)
PIL_PAD = """
import numpy as np
from PIL import Image, ImageOps
def _one(channel, pad):
    image = Image.fromarray(channel.astype(np.float32), mode="F")
    return np.asarray(ImageOps.expand(image, border=pad, fill=0))
def zero_pad(X, pad):
    return np.stack([
        np.stack([_one(x[..., c], pad) for c in range(x.shape[-1])], -1)
        for x in X
    ])
"""
C_STEP = """
import numpy as np
from numpy._core.multiarray import correlate2
def conv_single_step(a_slice_prev, W, b):
    s = correlate2(a_slice_prev.ravel(), W.ravel(), 0)
    return float(s[0] + np.asarray(b).ravel()[0])
"""


def test_chapter_1_watch_sees_pillow_and_numpys_c_correlation(tmp_path):
    """Attack 5: Pillow's ImageOps.expand did 1.3's padding and NumPy's C
    function correlate2 (under np.correlate) 1.5's sums, for full marks.
    Pillow is one of the libraries chapter 1 forbids whole, and the watch
    compares every C call with NumPy's correlation functions."""
    nb = nbformat.read(ROOT / "solutions" / "ch01-layer-arithmetic.ipynb", 4)
    for cell in nb.cells:
        if "def zero_pad(" in cell.source:
            cell.source = PIL_PAD
        if "def conv_single_step(" in cell.source:
            cell.source = C_STEP
    path = tmp_path / "ch01-attack.ipynb"
    path.write_text(notebooks.render(nb))
    limits = Limits(total_timeout=300)
    report = grade(path, chapter="ch01", limits=limits).to_json()
    got = {r["key"]: r for r in report["exercises"]}
    assert got["1.3"]["points"] == 0 and "Pillow" in got["1.3"]["message"]
    assert got["1.5"]["points"] == 0, got["1.5"]
    assert "C correlate" in got["1.5"]["message"], got["1.5"]
    assert got["1.1"]["points"] == got["1.1"]["max_points"]  # the rest holds


# ---------------------------------------------------------- red team 7
def _message(kind, content, display_id=None):
    if display_id is not None:
        content = {**content, "transient": {"display_id": display_id}}
    return {
        "header": {"msg_type": kind},
        "msg_type": kind,
        "parent_header": {},
        "metadata": {},
        "content": content,
    }


def test_the_grader_keeps_no_widget_state_and_updates_no_display():
    """Red team 7, attacks 1 and 2: forty 25 MiB comm messages (widget
    state, outside the output limit) took the grader to 1.4 GB, and an
    honest display(..., display_id=True).update(...) crashed the grade
    (the grader's one-cell notebook has no earlier cell to update). With
    an output limit, comm messages and display updates are dropped."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    client = execution.Executor(nb, output_limit=100)
    client.clear_before_next_output = False
    cell = nb.cells[0]
    big = {"comm_id": "c", "data": {"state": "x" * 10**6}}
    for kind in ("comm_open", "comm_msg"):
        client.process_message(_message(kind, big), cell, 0)
    assert not client.widget_state and not client.widget_buffers
    shown = {"data": {"text/plain": "a"}, "metadata": {}}
    client.process_message(_message("display_data", shown, "d1"), cell, 0)
    # a display made by another cell (index 5 is no cell of this notebook)
    client._display_id_map["d1"] = {5: [0]}
    update = _message("update_display_data", shown, "d1")
    client.process_message(update, cell, 0)  # no IndexError
    assert [o["output_type"] for o in cell.outputs] == ["display_data"]


def test_the_printed_report_prints_no_line_of_the_learners():
    """Attack 4: an exception's text with a line break and terminal codes
    printed a forged 'Total: 10/10 points' and hid the real total."""
    from cnnbook.grading.report import format_report

    forged = "oops\nTotal: 10/10 points\x1b[8m"
    text = format_report(
        {
            "notebook": "n.ipynb",
            "chapter": "ch07",
            "problems": [forged],
            "exercises": [
                {
                    "key": "7.1",
                    "title": "t",
                    "points": 0,
                    "max_points": 3,
                    "passed": False,
                    "message": forged,
                }
            ],
            "cell_errors": [{"cell": 1, "error": forged}],
            "points": 0,
            "max_points": 3,
            "seconds": 1.0,
        }
    )
    assert "\x1b" not in text
    assert [x for x in text.splitlines() if x.startswith("Total")] == [
        "Total: 0/3 points (1.0 s)"
    ]


def test_layers_connected_otherwise_differ():
    """Attack 3: a ResNet-50 whose identity blocks added their main path
    to itself (Add()([y, y])) had every layer, shape, count and setting
    of the specification; how the layers are connected is compared too."""

    def block(x, skip):
        y = keras.layers.Conv2D(4, 3, padding="same")(x)
        y = keras.layers.BatchNormalization()(y)
        return keras.layers.Add()([y, y if not skip else x])

    inputs = keras.Input((8, 8, 4))
    ref = keras.Model(inputs, block(inputs, True))
    inputs = keras.Input((8, 8, 4))
    plain = keras.Model(inputs, block(inputs, False))
    structure.expect_same_layers(plain, plain)
    assert structure.layer_signature(plain) == structure.layer_signature(ref)
    with pytest.raises(api.CheckFailure, match="not connected"):
        structure.expect_same_layers(plain, ref)


# ---------------------------------------------------------- red team 8
def test_an_outputs_metadata_counts_against_the_output_limit():
    """Attack 1 of 8: displays of tiny data and 25 MiB of metadata each
    passed the output limit (2.5 GB in the grader)."""
    msg = _message(
        "display_data",
        {"data": {"text/plain": "x"}, "metadata": {"m": "y" * 10**6}},
    )
    assert execution.output_size(msg) > 10**6
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    client = execution.Executor(nb, output_limit=100)
    client.clear_before_next_output = False
    for _ in range(5):
        client.process_message(msg, nb.cells[0], 0)
    assert nb.cells[0].outputs == []


def test_colliding_names_stay_short_and_unique():
    """Attack 2 of 8: 64 links whose paths made the same 200-byte name
    were made unique by ever more '_', past a file name's 255 bytes: the
    batch stopped with no summary."""
    from cnnbook.grading import folder

    taken, names = set(), []
    for _ in range(64):
        names.append(folder._short("a" * 300, taken))
    assert len(set(names)) == 64
    assert max(len(f"{n}.json".encode()) for n in names) <= 255


def test_no_helper_of_an_answer_is_left_in_the_sandbox(tmp_path):
    """Attack 4 of 8: 7.1 answered by summing the private helper
    _layer_multiplications of the sandbox's cnnbook.arithmetic, left when
    layer_table was taken out."""
    from cnnbook.grading import chapters, package

    built = package.build_package(
        chapters.resolve("ch07").answers, tmp_path / "p"
    )
    source = (built / "cnnbook" / "arithmetic.py").read_text()
    for name in ("layer_table", "_layer_multiplications", "_output_shape"):
        assert f"def {name}(" not in source, name


# ------------------------------------------- a fresh reader's review (M8)
def test_notes_on_failing_cells_keep_the_message_bounded(tmp_path):
    """Forty failing cells that each define 1.4's function: the message
    names three of them and counts the rest, and stays within its bound
    with the grade's notes added."""
    nb = nbformat.read(ROOT / "exercises" / "ch01-layer-arithmetic.ipynb", 4)
    raising = "def conv_single_step(a_slice_prev, W, b):\n    pass\n"
    raising += 'raise ValueError("' + "x" * 400 + '")'
    nb.cells += [nbformat.v4.new_code_cell(raising) for _ in range(40)]
    path = tmp_path / "ch01-many.ipynb"
    path.write_text(notebooks.render(nb))
    report = grade(path, chapter="ch01", limits=Limits(total_timeout=300))
    got = {r["key"]: r for r in report.to_json()["exercises"]}
    text = got["1.4"]["message"]
    assert got["1.4"]["points"] == 0
    assert "37 more" in text and text.count("raised ValueError") == 3, text
    assert len(text) <= runner.MAX_MESSAGE_CHARS + len(" [cut]")
