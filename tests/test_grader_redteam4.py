"""The holes a fourth red team found in the grader (issue #22), each
closed at its root and kept closed, with in-process tests only: a NaN or
an infinity never earns points; the grader reads no Keras object beyond
layers and models, creates no class per name it reads, and refuses a
submission above its size limit before reading it."""

import math
import os

import numpy as np
import pytest
from conftest import ROOT

from cnnbook import arithmetic, reference
from cnnbook.grading import api, folder, notebook, reader, wire
from cnnbook.grading.chapters import exercises
from cnnbook.grading.grade import grade
from cnnbook.grading.runner import run_exercise
from cnnbook.grading.session import Limits

NON_FINITE = [math.nan, math.inf, -math.inf]


# ------------------------------------------- non-finite numbers (attack 4)
@pytest.mark.parametrize("bad", NON_FINITE)
def test_the_comparison_helpers_refuse_non_finite_numbers(bad):
    with pytest.raises(api.CheckFailure, match="not a finite number"):
        api.expect_close(bad, 2.0, "ratio")
    with pytest.raises(api.CheckFailure):
        api.expect_equal(bad, 3, "size")
    with pytest.raises(api.CheckFailure):
        api.exact_int(bad, "size")
    array = np.ones((2, 3))
    array[1, 2] = bad
    with pytest.raises(api.CheckFailure, match=r"index \(1, 2\)"):
        api.expect_array(array, np.ones((2, 3)), "the output")
    assert api.expect_close(2.0 + 1e-12, 2.0, "ratio") == 2.0 + 1e-12


def _separable_cost_with_ratio(ratio):
    def separable_cost(n_H, n_W, n_C_prev, f, n_C):
        cost = arithmetic.separable_cost(n_H, n_W, n_C_prev, f, n_C)
        return {
            "normal": cost.normal,
            "depthwise": cost.depthwise,
            "pointwise": cost.pointwise,
            "ratio": ratio,
        }

    return separable_cost


def _constant(value):
    return lambda *args, **kwargs: value


def _filled(func, value):
    """``func``'s right answer (an array) with one entry set to ``value``."""

    def answer(*args):
        out = np.array(func(*args), dtype=float)
        out.flat[out.size // 2] = value
        return out

    return answer


def _gaps(value):
    return lambda curves: {kind: value for kind, _ in curves}


# one exercise per family of comparison: a float compared with a tolerance
# (8.1, expect_close; 1.4, np.isclose; 5.5, math.isclose), an integer
# (1.1, exact_int), an array (1.5, expect_array), a count (7.1)
FAMILIES = {
    "8.1": ("separable_cost", _separable_cost_with_ratio),
    "1.4": ("conv_single_step", _constant),
    "5.5": ("degradation_gaps", _gaps),
    "1.1": ("conv_output_size", _constant),
    "1.5": (
        "conv_forward",
        lambda bad: _filled(reference.conv_forward, bad),
    ),
    "7.1": ("macs", _constant),
}


@pytest.mark.parametrize("bad", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", list(FAMILIES))
def test_a_non_finite_answer_earns_nothing(key, bad):
    chapter = "ch0" + key.split(".")[0]
    (ex,) = [e for e in exercises(chapter) if e.key == key]
    name, make = FAMILIES[key]
    result = run_exercise(ex, {name: make(bad)}, hidden=True)
    assert result.points == 0 and not result.passed, result.message


# ---------------------------------------------- a huge file (attack 3)
def _huge_notebook(path, size):
    """A file of ``size`` bytes that starts as a notebook: its tail is a
    hole of the file system, so it costs no disk."""
    path.write_bytes(b'{"cells": [], "metadata": {"x": [')
    os.truncate(path, size)
    return path


def test_the_largest_notebook_of_the_book_is_far_below_the_limit():
    largest = max(
        path.stat().st_size
        for folder in ("notebooks", "solutions", "exercises")
        for path in (ROOT / folder).glob("*.ipynb")
    )
    assert 0 < largest * 10 < notebook.MAX_NOTEBOOK_BYTES


def test_a_notebook_over_the_limit_is_refused_before_it_is_parsed(tmp_path):
    huge = _huge_notebook(tmp_path / "ch01-huge.ipynb", 2**40)  # 1 TiB
    report = grade(huge, limits=Limits(sandbox=False))
    assert report.points == 0 and report.sha256 is None
    assert any("larger than 20 MiB" in p for p in report.problems)
    with pytest.raises(notebook.NotebookProblem, match="larger than"):
        notebook.read_notebook(b" " * (notebook.MAX_NOTEBOOK_BYTES + 1), "x")


def test_grade_batch_refuses_a_file_over_the_limit_without_reading_it(
    tmp_path, monkeypatch
):
    _huge_notebook(tmp_path / "ch01-huge.ipynb", 2**40)
    read = []
    monkeypatch.setattr(notebook, "read_bounded", read.append)
    (entry,) = folder.scan(tmp_path)
    assert entry.sha256 is None and not read
    assert "larger than 20 MiB" in entry.problem


# ------------------------------ Keras objects beyond layers (attack 1)
def _object(module, class_name, config, registered_name=None):
    return {
        "module": module,
        "class_name": class_name,
        "config": config,
        "registered_name": registered_name,
    }


def _dense_with_initializer(initializer):
    return _object(
        "keras.layers",
        "Dense",
        {"units": 2, "kernel_initializer": initializer},
    )


AUC = {"num_thresholds": 10**9}  # 8 GB of thresholds, were it built
NOT_LAYERS = {
    "a metric": _object("keras.metrics", "AUC", AUC),
    "a metric named from the keras module": _object(
        "keras", "metrics.AUC", AUC
    ),
    "a metric as an initializer": _dense_with_initializer(
        _object("keras", "metrics.AUC", AUC)
    ),
    "a metric by registered name": _object(
        "keras.layers", "Dense", {"units": 2}, registered_name="AUC"
    ),
    "another metric": _object(
        "keras.metrics",
        "SensitivityAtSpecificity",
        {"specificity": 0.5, "num_thresholds": 10**9},
    ),
    "a loss": _object("keras.losses", "CategoricalCrossentropy", {}),
    "an optimizer": _object("keras.optimizers", "Adam", {}),
    "a schedule": _object(
        "keras.optimizers.schedules",
        "ExponentialDecay",
        {
            "initial_learning_rate": 0.1,
            "decay_steps": 10,
            "decay_rate": 0.9,
        },
    ),
    "an object without a module": {"class_name": "AUC", "config": AUC},
}


@pytest.mark.parametrize("case", list(NOT_LAYERS))
def test_only_layers_and_models_are_rebuilt(case, monkeypatch):
    """Red team 4, attack 1: a 150-byte answer, the configuration of
    ``keras.metrics.AUC`` with a huge ``num_thresholds``, made the grader
    allocate a list of that many floats; the grader now refuses any
    configuration that names more than layers, models and their parts,
    before Keras builds anything of it."""
    import keras

    built = []
    for metric in (keras.metrics.AUC, keras.metrics.SensitivityAtSpecificity):
        monkeypatch.setattr(
            metric, "__init__", lambda self, *a, **k: built.append(a)
        )
    with pytest.raises(wire.WireError, match="only Keras's own layers"):
        reader.decode({"t": "layer", "config": NOT_LAYERS[case]}, {})
    assert built == []


def test_a_layers_parts_are_still_rebuilt():
    layer = reader.decode(
        {
            "t": "layer",
            "config": _dense_with_initializer(
                _object("keras.initializers", "HeNormal", {"seed": 1})
            ),
        },
        {},
    )
    assert type(layer).__name__ == "Dense"
    with pytest.raises(wire.WireError, match="not a Keras layer"):
        reader.decode(
            {
                "t": "layer",
                "config": _object("keras.initializers", "Ones", {}),
            },
            {},
        )


# ------------------------------------ one stand-in class (attack 5 of 4)
def _opaque_answer(count):
    return {
        "t": "list",
        "v": [
            {"t": "opaque", "type": f"T{i}", "repr": f"<T{i}>"}
            for i in range(count)
        ],
    }


def test_values_that_cannot_travel_make_no_class_each():
    """Red team 4, attack 2 (a05_opaque_classes): 560,000 distinct type
    names an answer made as many classes, cached for the whole grade
    (6 GB after four calls); now every stand-in is one class's instance,
    its type name held as data and counted in the answer's budget."""
    values = reader.decode(_opaque_answer(1000), {})
    assert {type(v) for v in values} == {wire.Opaque}
    assert wire.Opaque.__subclasses__() == []
    assert [v.type_name for v in values[:2]] == ["T0", "T1"]
    assert repr(values[1]) == "<T1>"
    total = sum(
        reader.OPAQUE_BYTES + len(f"T{i}") + len(f"<T{i}>")
        for i in range(1000)
    )
    budget = reader.Budget(limit=total)
    reader.decode(_opaque_answer(1000), {}, budget=budget)
    assert budget.used == total
    with pytest.raises(wire.WireError, match="whole answer"):
        reader.decode(
            _opaque_answer(1000), {}, budget=reader.Budget(limit=total - 1)
        )


def test_the_learners_type_name_still_reaches_the_message():
    (ex,) = [e for e in exercises("ch01") if e.key == "1.1"]
    answer = wire.Opaque("<generator object at 0x1>", "generator")
    result = run_exercise(ex, {"conv_output_size": _constant(answer)})
    assert result.points == 0 and "got generator" in result.message
