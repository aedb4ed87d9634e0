"""The holes a tenth red team found in the grader (issue #22), closed at
their root and kept closed: connections compared with each layer's depth
and settings (a ResNet whose shortcuts came from the wrong block, an
inception module with two branches swapped), no recursion on what a
notebook or a folder can make deep (layers, nested folders in the scratch
space or the batch, nested JSON), and one copy per hard-linked file. In
process, a few seconds."""

import os

import keras
import pytest
from keras import layers

from cnnbook.grading import confinement, folder, notebook, rebuild, wire
from cnnbook.grading.api import CheckFailure
from cnnbook.grading.checks import ch04
from cnnbook.grading.structure import (
    expect_same_layers,
    expect_same_wiring,
    layer_settings,
)


def _residual_stage(blocks, shortcut_from_first):
    inputs = keras.Input((8, 8, 4))
    x = first = layers.ReLU()(inputs)
    for _ in range(blocks):
        y = layers.Conv2D(4, 3, padding="same")(x)
        y = layers.BatchNormalization()(y)
        x = layers.ReLU()(
            layers.Add()([first if shortcut_from_first else x, y])
        )
    return keras.Model(inputs, x)


def test_shortcuts_from_the_wrong_block_differ():
    """Attack 3: every identity block of a stage took its shortcut from
    the stage's first block, not its own input: same classes, shapes and
    counts, and each parent alike in class and shape, so 5.3 gave 3/3. The
    depth of each parent (the longest chain from the input) now counts."""
    honest = _residual_stage(3, shortcut_from_first=False)
    expect_same_layers(_residual_stage(3, False), honest)
    with pytest.raises(CheckFailure, match="not connected"):
        expect_same_layers(_residual_stage(3, True), honest)


def _module(swap):
    inputs = keras.Input((8, 8, 16))
    five = layers.Conv2D(32, 5, padding="same")(
        layers.Conv2D(4, 1, padding="same")(inputs)
    )
    pool = layers.Conv2D(32, 1, padding="same")(
        layers.MaxPooling2D(3, 1, padding="same")(inputs)
    )
    branches = [pool, five] if swap else [five, pool]
    return keras.Model(inputs, layers.Concatenate()(branches))


def test_two_branches_that_end_alike_swapped_differ():
    """Attack 5: the 5x5 and the pool branch, both ending in a 32-filter
    convolution at the same depth, swapped in the concatenation (6.3 gave
    full marks). Each parent's settings now count too."""
    honest, swapped = _module(False), _module(True)
    expect_same_wiring(_module(False), honest)
    # the same layers (6.3's check puts both in one canonical order) ...
    assert sorted(map(repr, layer_settings(swapped.layers))) == sorted(
        map(repr, layer_settings(honest.layers))
    )
    # ... connected otherwise
    with pytest.raises(CheckFailure, match="not connected"):
        expect_same_wiring(swapped, honest)


def test_a_thousand_layers_are_refused_not_a_crash_of_the_grader():
    """Attack 7: a VGG block of 1000 ReLU layers ran Keras out of Python's
    stack in the grader ("the grader failed": an invitation to a manual
    regrade). A block or a model of more than MAX_LAYERS is refused with a
    message of its own."""
    block = [layers.ReLU() for _ in range(wire.MAX_LAYERS + 1)]
    with pytest.raises(CheckFailure, match="layers"):
        ch04._block_model(block, (8, 8, 3), "vgg_block(1, 8)")
    deep = keras.Sequential(
        [keras.Input((4,))]
        + [layers.ReLU() for _ in range(wire.MAX_LAYERS + 1)]
    )
    tree = {"t": "model", "config": keras.saving.serialize_keras_object(deep)}
    with pytest.raises(wire.WireError, match="more than 600 layers"):
        rebuild.decode_keras(tree, {}, rebuild_budget())
    efficientnet = keras.applications.EfficientNetB0(weights=None)
    config = keras.saving.serialize_keras_object(efficientnet)
    assert rebuild._count_layers(config) == 240 < wire.MAX_LAYERS


def rebuild_budget():
    from cnnbook.grading import reader

    return reader.Budget()


def _nest(top, depth, last=None):
    """``depth`` folders ``d`` one in another under ``top`` (made through
    folder descriptors: their path is longer than a path may be), with a
    file ``last`` in the deepest."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        if last is not None:
            flags = os.O_WRONLY | os.O_CREAT
            with open(os.open(last, flags, dir_fd=fd), "w") as fh:
                fh.write("{}")
    finally:
        os.close(fd)


def test_nested_folders_are_removed_without_recursion(tmp_path):
    """Attack 1: 1,500 nested folders in the scratch space (a plain folder
    where the grader is not root) ran shutil.rmtree out of Python's stack:
    the grade's folder stayed, and clean_leftovers stopped every later
    grade. GNU rm removes it (remove_tree)."""
    top = tmp_path / "cnnbook-grade-999999999-x"
    top.mkdir()
    _nest(top, 1500)
    confinement.remove_tree(top)
    assert not top.exists()
    with confinement.grade_folder(parent=tmp_path) as made:
        os.makedirs(os.path.join(made, *["e"] * 200))
    assert not os.path.exists(made)


def test_a_deep_folder_in_a_batch_is_listed_not_a_crash(tmp_path):
    """Attack 2: a sub-folder 1,000 levels deep made os.fwalk run out of
    Python's stack, and grade-batch stopped before grading anyone. The
    scan walks without recursion, searches 32 levels and lists a deeper
    folder as not searched."""
    (tmp_path / "alice.ipynb").write_text('{"cells": []}')
    _nest(tmp_path, 1000, last="x.ipynb")
    entries = folder.scan(tmp_path)
    assert [e.name for e in entries if e.problem is None] == ["alice"]
    deep = [e for e in entries if e.problem and "not searched" in e.problem]
    assert len(deep) == 1
    assert deep[0].name.count("__") == folder.MAX_FOLDER_DEPTH
    confinement.remove_tree(tmp_path / "d")


def test_hard_links_are_read_and_kept_once(tmp_path):
    """Attack 4: 41 hard links to a 19 MB notebook became 41 copies
    (780 MB) in the grader's folder. A file is read and copied once; its
    links are listed (as the same bytes) with that one copy."""
    subs, keep = tmp_path / "subs", tmp_path / "keep"
    subs.mkdir()
    keep.mkdir()
    (subs / "a.ipynb").write_text('{"cells": []}')
    for i in range(5):
        os.link(subs / "a.ipynb", subs / f"link{i}.ipynb")
    entries = folder.scan(subs, keep)
    assert len(entries) == 6
    assert len({e.copy for e in entries}) == 1
    assert len(list(keep.iterdir())) == 1
    assert len(folder.same_bytes(entries)["a"]) == 5


def test_json_nested_too_deeply_is_a_notebook_problem():
    """Attack 8: a notebook of deeply nested JSON crashed plain grade with
    a traceback and no report; it is now refused with a message."""
    raw = b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(notebook.NotebookProblem, match="nested too deeply"):
        notebook.read_notebook(raw, "deep.ipynb")
