"""The holes a ninth red team found in the grader (issue #22), closed at
their root and kept closed: layers a VGG block returns unbuilt are counted
before the grader builds them, a FIFO in an answer's place does not hang
the grader, and a pool over the wrong axes (``data_format``) differs from
the asked one. In-process, a second or two."""

import os
import signal
import time

import keras
import pytest

from cnnbook.grading import confinement, structure, wire
from cnnbook.grading.api import CheckFailure
from cnnbook.grading.checks import ch04


def test_a_vgg_blocks_unbuilt_layers_are_counted_before_they_are_built():
    """Attack 1: ``vgg_block`` returned ``[Flatten(), Dense(8192)] +
    [Dense(8192)] * N``; unbuilt, they passed the answer's budget, and the
    check built them in the grader's own process (3.74 GB at N = 8). The
    block is now built in a stateless scope first: over the bound, the
    check fails before a weight is allocated."""
    block = [keras.layers.Flatten()] + [
        keras.layers.Dense(8192) for _ in range(6)
    ]
    with pytest.raises(CheckFailure, match="GiB"):
        ch04._block_model(block, (32, 32, 3), "vgg_block(2, 64)")
    # made with their shapes only: not one value was allocated
    assert all(w._value is None for x in block[1:] for w in x.weights)
    # an honest block is built as before, its weights drawn
    honest = [
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2, 2),
    ]
    model = ch04._block_model(honest, (16, 16, 3), "vgg_block(1, 8)")
    assert model.count_params() == 3 * 3 * 3 * 8 + 8
    assert float(keras.ops.max(keras.ops.abs(honest[0].kernel))) > 0


def test_a_fifo_in_place_of_an_answer_does_not_hang_the_grader(tmp_path):
    """Attack 3: the kernel made ``rN.out.json`` a FIFO; opening it for
    reading waited for a writer until the grade's last-resort alarm. It is
    opened without waiting and refused as not a plain file."""
    os.mkfifo(tmp_path / "r1.out.json")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)

    def stuck(*_):
        raise TimeoutError("the grader waited on the FIFO")

    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(5)
    try:
        start = time.monotonic()
        with pytest.raises(wire.WireError, match="not a plain file"):
            wire.open_file("r1.out.json", "rb", fd)
        assert time.monotonic() - start < 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.close(fd)
    # a plain file still reads, and blocks as a file does
    (tmp_path / "r2.out.json").write_bytes(b"{}")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with wire.open_file("r2.out.json", "rb", fd) as fh:
            assert os.get_blocking(fh.fileno())
            assert fh.read() == b"{}"
    finally:
        os.close(fd)


def test_a_pool_over_other_axes_differs_from_the_asked_one():
    """Attack 5: a ``MaxPooling2D(data_format="channels_first")`` with
    pool size 1 x 3 on a square map pools over width and channels, keeps
    the output shape of the asked 3 x 3 pool with stride 1, and passed
    6.2 and 6.3. Layer settings now include ``data_format`` (and ReLU's
    cap, batch normalisation's epsilon and dropout's rate)."""

    def pool(**options):
        inputs = keras.Input((8, 8, 8))
        return keras.Model(
            inputs, keras.layers.MaxPooling2D(**options)(inputs)
        )

    asked = pool(pool_size=3, strides=1, padding="same")
    wrong = pool(
        pool_size=3, strides=1, padding="same", data_format="channels_first"
    )
    assert wrong.output.shape == asked.output.shape
    structure.expect_same_layers(
        pool(pool_size=3, strides=1, padding="same"), asked
    )
    with pytest.raises(CheckFailure):
        structure.expect_same_layers(wrong, asked)
    for layer, other in (
        (keras.layers.ReLU(max_value=6.0), keras.layers.ReLU()),
        (keras.layers.Dropout(0.5), keras.layers.Dropout(0.0)),
        (
            keras.layers.BatchNormalization(epsilon=1.0),
            keras.layers.BatchNormalization(),
        ),
    ):
        inputs = keras.Input((4, 4, 2))
        mine = keras.Model(inputs, layer(inputs))
        inputs = keras.Input((4, 4, 2))
        ref = keras.Model(inputs, other(inputs))
        with pytest.raises(CheckFailure):
            structure.expect_same_layers(mine, ref)


def test_a_table_of_answers_made_beforehand_fails_3_1():
    """Attack 6: 3.1's hidden sizes were 67 to 399, so a table of the
    333 answers made in the Lab passed; they now reach a million."""
    from cnnbook.grading.chapters import exercises
    from cnnbook.grading.checks import ch03
    from cnnbook.grading.runner import run_exercise

    table = {n: ch03.reference_shapes(n) for n in range(67, 400)}
    ex = {e.key: e for e in exercises("ch03")}["3.1"]
    ns = {"alexnet_shapes": lambda n: table[n]}
    assert run_exercise(ex, ns).passed  # the visible 227 is in the table
    for seed in range(5):
        assert not run_exercise(ex, ns, hidden=True, seed=seed).passed


OWN_GROUP = """
import os, sys
from cnnbook.grading import batch

def group():
    line = [x for x in open("/proc/self/cgroup") if ":memory:" in x]
    return line[0].strip().split(":", 2)[2] if line else ""

before = group()
with batch.own_grader_group(256) as g:
    inside, folder = group(), g.dirs["memory"]
    limit = open(os.path.join(folder, "memory.limit_in_bytes")).read()
    print("INSIDE", inside, int(limit), flush=True)
    if sys.argv[1] == "hog":
        b = bytearray(512 * 2**20)
print("AFTER", group() == before, os.path.isdir(folder), flush=True)
"""


def test_grade_alone_puts_its_own_process_in_a_memory_group(tmp_path):
    """Attack 1 (plain ``grade``): the grader's own process had no memory
    bound outside grade-batch. It now moves into a group of its own
    (``--grader-memory``, 6144 MiB by default) for the grade, and back out
    after, removing the group; past the limit it is killed, not the
    machine's memory taken."""
    import subprocess
    import sys

    from cnnbook.grading.cgroups import detect

    if os.geteuid() != 0 or detect(("cgroup-v1",)).mechanism == "none":
        pytest.skip("needs root and cgroup v1 (the CI's machine has both)")
    script = tmp_path / "own_group.py"
    script.write_text(OWN_GROUP)
    done = subprocess.run(
        [sys.executable, str(script), "fine"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    inside = done.stdout.split("INSIDE ")[1].split()
    assert os.path.basename(inside[0]).startswith("cnnbook-grade-")
    assert int(inside[1]) == 256 * 2**20
    assert "AFTER True False" in done.stdout  # back, and the group gone
    hog = subprocess.run(
        [sys.executable, str(script), "hog"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert hog.returncode == -signal.SIGKILL, hog
    assert "INSIDE" in hog.stdout and "AFTER" not in hog.stdout
    # the killed grader's group is what the next grade's clean-up removes
    folder = hog.stdout.split("INSIDE ")[1].split()[0]
    pid = os.path.basename(folder).split("-")[2]
    removed = confinement.clean_leftovers(pid)
    assert any(
        os.path.basename(p) == os.path.basename(folder) for p in removed
    )


def test_a_folder_named_like_a_notebook_and_a_dot_name_are_reported(tmp_path):
    """A folder named ``x.ipynb`` was skipped without a word, and a
    submission named ``.x.ipynb`` got a hidden report file. The folder is
    listed as not graded (its notebooks are still found), and no name
    starts with a dot."""
    from cnnbook.grading import folder

    (tmp_path / "x.ipynb").mkdir()
    (tmp_path / "x.ipynb" / "inner.ipynb").write_text("{}")
    (tmp_path / ".hidden.ipynb").write_text("{}")
    entries = {e.name: e for e in folder.scan(tmp_path)}
    assert set(entries) == {"x-folder", "x.ipynb__inner", "_.hidden"}
    assert "folder, not a notebook" in entries["x-folder"].problem
    assert entries["x.ipynb__inner"].problem is None
    assert entries["_.hidden"].problem is None
    assert not any(name.startswith(".") for name in entries)
