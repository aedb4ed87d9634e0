"""What the grader accepts back from the sandbox is bounded before it is
built (issue #22, item 3): compressed arrays that inflate, a zip of many
members, JSON of many values, a small Keras configuration of a huge model.

Each attack is an answer file as the sandboxed kernel could write it; the
grader reads it with :func:`cnnbook.grading.reader.read` in a child process
whose address space is limited, so an attack that still worked would end
in a MemoryError (or a kill) instead of the clean refusal asserted here.
"""

import json
import math
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from cnnbook.grading import reader, wire

MiB = 2**20

# Reads an answer and prints "refused: ..." or "read: N arrays"; the
# address space is capped at 2.5 GiB (TensorFlow, when imported, fits).
READER = """
import resource, sys
from cnnbook.grading import reader, wire
cap = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
try:
    tree, arrays = reader.read(sys.argv[1])
    if isinstance(tree, dict) and "value" in tree:
        value = reader.decode(tree["value"], arrays)
    print("read:", len(arrays), "arrays")
except wire.WireError as exc:
    print("refused:", exc)
"""


def read_in_child(base, cap=int(2.5 * 2**30)):
    done = subprocess.run(
        [sys.executable, "-c", READER, str(base), str(cap)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return done.stdout.strip() + done.stderr[-2000:]


def write_answer(base, tree):
    (base.parent / (base.name + ".json")).write_text(json.dumps(tree))


def deflated_zeros_npz(path, name, shape, dtype="<f8"):
    """An .npz whose member ``name`` is a real array of zeros of ``shape``,
    deflated (a few MB for GiB), written in chunks."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    with zipfile.ZipFile(
        path, "w", zipfile.ZIP_DEFLATED, compresslevel=1
    ) as zf:
        with zf.open(name + ".npy", "w", force_zip64=True) as member:
            header = {
                "descr": dtype.str,
                "fortran_order": False,
                "shape": tuple(shape),
            }
            np.lib.format.write_array_header_2_0(member, header)
            chunk = bytes(16 * MiB)
            left = nbytes
            while left:
                member.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))


def test_an_honest_answer_still_reads(tmp_path):
    arrays = {}
    tree = wire.encode({"x": np.arange(12.0).reshape(3, 4), "n": 3}, arrays)
    wire.write(str(tmp_path / "a"), tree, arrays)
    back, got = reader.read(str(tmp_path / "a"))
    value = reader.decode(back, got)
    assert value["n"] == 3
    np.testing.assert_array_equal(value["x"], np.arange(12.0).reshape(3, 4))


@pytest.mark.slow
def test_compressed_arrays_that_inflate_are_refused(tmp_path):
    """3 GiB of zeros deflated into a few MB (the issue's attack): the
    file is far below MAX_NPZ_BYTES, the array far above what it may
    decode to."""
    base = tmp_path / "r1.out"
    deflated_zeros_npz(str(base) + ".npz", "a0", (3 * 2**30 // 8,))
    assert os.path.getsize(str(base) + ".npz") < 20 * MiB
    write_answer(base, {"ok": True, "value": {"t": "array", "k": "a0"}})
    out = read_in_child(base)
    assert out.startswith("refused:") and "too large" in out, out


def test_an_array_header_that_lies_about_its_size_is_refused(tmp_path):
    """A header whose shape does not match the member's size (the data
    short of it, so that the shape alone would allocate) is refused."""
    base = tmp_path / "r1.out"
    with zipfile.ZipFile(str(base) + ".npz", "w") as zf:
        with zf.open("a0.npy", "w") as member:
            np.lib.format.write_array_header_1_0(
                member,
                {"descr": "<f8", "fortran_order": False, "shape": (1000,)},
            )
            member.write(bytes(80))
    write_answer(base, {"ok": True, "value": {"t": "array", "k": "a0"}})
    with pytest.raises(wire.WireError, match="does not match"):
        reader.read(str(base))


def test_a_zip_of_many_members_is_refused(tmp_path):
    base = tmp_path / "r1.out"
    arrays = {f"a{i}": np.zeros(0) for i in range(wire.MAX_ARRAYS + 1)}
    np.savez(str(base) + ".npz", **arrays)
    write_answer(base, {"ok": True, "value": None})
    with pytest.raises(wire.WireError, match="too many arrays"):
        reader.read(str(base))


def test_json_of_many_values_is_refused(tmp_path):
    """A few MB of ``[[],[],...]`` would become GiB of Python lists."""
    base = tmp_path / "r1.out"
    count = wire.MAX_JSON_ITEMS + 1
    (tmp_path / "r1.out.json").write_text("[" + "[]," * count + "[]]")
    np.savez(str(base) + ".npz")
    with pytest.raises(wire.WireError, match="too many values"):
        reader.read(str(base))


def _dense_model_config(width, units=None):
    """The configuration of Input(width) -> Dense(units, by default
    width), made from a small model's by changing its two numbers (no big
    model is built)."""
    import keras

    inp = keras.Input((8,))
    small = keras.Model(inp, keras.layers.Dense(8)(inp))
    text = json.dumps(keras.saving.serialize_keras_object(small))
    assert text.count('"units": 8') == 1
    text = text.replace('"units": 8', f'"units": {units or width}')
    text = text.replace("[null, 8]", f"[null, {width}]")
    return json.loads(text)


@pytest.mark.slow
def test_a_small_configuration_of_a_huge_model_is_refused(tmp_path):
    """Dense(8192) (the most units a layer may name) on a 65536-wide
    input: 2 GiB of weights from a short configuration; refused from the
    shapes alone, nothing allocated."""
    config = _dense_model_config(65536, 8192)
    assert len(json.dumps(config)) < 2000
    base = tmp_path / "r1.out"
    write_answer(
        base,
        {"ok": True, "value": {"t": "model", "config": config}},
    )
    np.savez(str(base) + ".npz")
    out = read_in_child(base)
    assert out.startswith("refused:") and "GiB" in out, out


def test_a_model_within_the_bound_is_rebuilt_with_its_weights():
    config = _dense_model_config(16)
    model = reader.decode({"t": "model", "config": config}, {})
    assert model.count_params() == 16 * 16 + 16
    assert float(np.abs(model.get_weights()[0]).sum()) == 0.0  # zeroed


@pytest.mark.slow
def test_the_model_bound_comes_from_the_largest_reference():
    """LARGEST_REFERENCE_PARAMS is the parameter count of the biggest
    model a check builds as its reference (VGG-16 of exercise 4.2 at its
    visible 224x224x3, 1000 classes; ResNet-50 of 5.3 is smaller),
    counted here without allocating a weight."""
    import keras

    from cnnbook.models.vgg import vgg16

    with keras.StatelessScope(initialize_variables=False):
        counts = {
            "vgg16": vgg16((224, 224, 3), 1000).count_params(),
            "resnet50": keras.applications.ResNet50(
                weights=None
            ).count_params(),
        }
    from keras.src.backend.common import global_state

    global_state.set_global_attribute("uninitialized_variables", [])
    assert wire.LARGEST_REFERENCE_PARAMS == max(counts.values()), counts
    assert wire.MAX_MODEL_BYTES == 2 * max(counts.values()) * 4


def test_what_savez_writes_passes_the_zip_checks(tmp_path):
    """np.savez output (what serve writes) passes the zip checks."""
    arrays = {f"a{i}": np.ones((i, 2), dtype=np.float32) for i in range(5)}
    base = tmp_path / "x"
    wire.write(str(base), {"t": "list", "v": []}, arrays)
    _, got = reader.read(str(base))
    assert sorted(got) == sorted(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[key], value)
        assert got[key].dtype == value.dtype


def test_reading_never_unpickles(tmp_path):
    base = tmp_path / "r1.out"
    np.savez(str(base) + ".npz", a0=np.array([object()], dtype=object))
    write_answer(base, {"ok": True, "value": None})
    with pytest.raises(wire.WireError, match="numbers"):
        reader.read(str(base))


def test_a_compiled_model_comes_back_marked_compiled_without_optimizer():
    """Red team 3, attack 2 (a02_huge_compiled): a compiled model is
    rebuilt with a mark that it was compiled (what the checks ask of it,
    :func:`cnnbook.grading.api.compiled`), never with an optimizer built
    from the learner's configuration (Adam's slots are twice the
    weights)."""
    import keras

    from cnnbook.grading.api import compiled

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3)(inp))
    model.compile(optimizer="adam", loss="mse")
    arrays = {}
    tree = wire.encode(model, arrays, weights=True)
    assert "compile_config" in tree["config"]
    back = reader.decode(tree, arrays)
    assert compiled(back) and back._cnnbook_compiled
    assert getattr(back, "optimizer", None) is None and not back.compiled
    for mine, theirs in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def _small_model(width=4):
    import keras

    inp = keras.Input((width,))
    return keras.Model(inp, keras.layers.Dense(width)(inp))


def test_models_inside_a_list_are_refused():
    """Red team 3, attack 3 (a03_list_of_models): ``[m] * 3`` made the
    grader rebuild the model three times; a model is accepted only as the
    whole answer."""
    model = _small_model()
    for value in ([model] * 3, (model,), {"m": model}):
        arrays = {}
        tree = wire.encode(value, arrays)
        with pytest.raises(wire.WireError, match="on its own"):
            reader.decode(tree, arrays)
    arrays = {}
    assert reader.decode(wire.encode(model, arrays), arrays).count_params()


def test_one_budget_covers_every_keras_object_of_an_answer():
    """Layers may come in a list (4.1's answer is one): each comes back
    unbuilt, whatever its build configuration (red team 6: built, their
    initializers drew twice what the budget counted), so they take no
    weight from the answer's budget, which its arrays still fill; the
    Keras objects they name count together."""
    from keras.src.backend.common import global_state

    model = _small_model(16)  # 16 * 16 + 16 float32: 1088 bytes each
    layers = [layer for layer in model.layers[1:]] * 3
    assert all(layer.built for layer in layers)
    arrays = {"a0": np.zeros(100, np.float32)}  # 400 bytes
    tree = wire.encode(layers, {})
    budget = reader.Budget(arrays, limit=400 + 1088)
    back = reader.decode(tree, arrays, budget=budget)
    assert budget.used == 400 and not any(x.built for x in back)
    assert [x.units for x in back] == [16] * 3
    assert global_state.get_global_attribute("uninitialized_variables") == []
    with pytest.raises(wire.WireError, match="too large"):
        reader.Budget(arrays, limit=399)
    with pytest.raises(wire.WireError, match="Keras objects together"):
        reader.decode(
            wire.encode(layers * 700, {}), {}, budget=reader.Budget()
        )


def test_a_model_without_the_weights_asked_for_is_refused():
    """Red team 3, attacks 2 and 3: the kernel patched its
    ``_encode_model`` never to send weights (keeping the answer small) so
    that the grader built the model itself; asked for weights, the grader
    refuses a model without them instead of building it empty."""
    model = _small_model()
    arrays = {}
    tree = wire.encode(model, arrays, weights=False)
    with pytest.raises(wire.WireError, match="without its weights"):
        reader.decode(tree, arrays, budget=reader.Budget(weights=True))


def test_changed_arguments_are_checked_before_they_are_decoded():
    """Each argument the answer says it changed is one the grader passed,
    named once, as the kind of value it was (a list of the same model
    changed three times would be three rebuilds)."""
    from cnnbook.grading.remote import _changed

    model = _small_model()
    arrays = {}
    tree = wire.encode(model, arrays, weights=True)
    array = np.zeros(3)
    a_tree = wire.encode(array, {})
    assert _changed([[0, tree], [1, a_tree]], (model, array)) == [
        (0, tree),
        (1, a_tree),
    ]
    bad = {
        "twice": [[0, tree], [0, tree]],
        "more changed arguments": [[0, tree]] * 3,
        "did not get": [[5, tree]],
        "into a array": [[0, a_tree]],
        "cannot change": [[1, tree]],
    }
    for words, changed in bad.items():
        with pytest.raises(wire.WireError, match=words):
            _changed(changed, (model, 7))
    empty = wire.encode(model, {}, weights=False)
    with pytest.raises(wire.WireError, match="without its weights"):
        _changed([[0, empty]], (model,))
