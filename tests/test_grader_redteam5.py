"""The holes a fifth red team found in the grader (issue #22), each
closed at its root and kept closed, in-process: a returned model cannot
make the grader allocate through a layer without weights, an error's
message cannot grow a report, and a hidden check of a training exercise
does not use data the notebook knows in advance."""

import keras
import numpy as np
import pytest

from cnnbook.grading import reader, rebuild, remote, wire
from cnnbook.grading.runner import MAX_MESSAGE_CHARS, Result, explain


def _model_tree(model):
    return {"t": "model", "config": keras.saving.serialize_keras_object(model)}


# ---------------------- a layer that allocates from its configuration (1)
def test_a_normalization_with_a_fixed_mean_is_refused_before_it_is_built(
    monkeypatch,
):
    """Attack 1 (normbomb): a Normalization layer given its mean and
    variance has no weights (nothing for the budget to count) but
    broadcasts both to its input's shape when Keras builds it: 2 x 1.6 GB
    from Input((20000, 20000)). Refused from the configuration, before
    Keras builds anything; an adapted Normalization (weights the budget
    counts, EfficientNet's stem) is still rebuilt."""
    built = []
    monkeypatch.setattr(
        keras.layers.Normalization, "build", lambda self, s: built.append(s)
    )
    fixed = keras.layers.Normalization(mean=0.0, variance=1.0)
    tree = {"t": "layer", "config": keras.saving.serialize_keras_object(fixed)}
    with pytest.raises(wire.WireError, match="mean and variance fixed"):
        reader.decode(tree, {})
    assert built == []
    monkeypatch.undo()
    inputs = keras.Input((8, 8, 3))
    adapted = keras.Model(inputs, keras.layers.Normalization()(inputs))
    model = reader.decode(_model_tree(adapted), {})
    assert [w.shape for w in model.get_weights()] == [(3,), (3,), ()]


@pytest.mark.parametrize(
    "layer",
    [
        keras.layers.Discretization(bin_boundaries=[0.0, 1.0]),
        keras.layers.StringLookup(vocabulary=["a"]),
        keras.layers.LSTM(4),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_layers_no_check_needs_are_refused(layer):
    tree = {"t": "layer", "config": keras.saving.serialize_keras_object(layer)}
    with pytest.raises(wire.WireError, match="can be checked"):
        reader.decode(tree, {})


def _wide(layer, shape=(4, 4, 1)):
    inputs = keras.Input(shape)
    return keras.Model(inputs, layer(inputs))


@pytest.mark.parametrize(
    "model, why",
    [
        (
            lambda: _wide(keras.layers.Resizing(20000, 20000)),
            "more than 256 MiB",
        ),
        (
            lambda: _wide(keras.layers.UpSampling2D(size=5000)),
            "more than 256 MiB",
        ),
        (
            lambda: _wide(keras.layers.UpSampling2D(4), (None, None, 1)),
            "unfixed size",
        ),
    ],
    ids=["resizing", "upsampling", "unfixed"],
)
def test_a_model_that_would_be_huge_when_run_is_refused(model, why):
    """A model without weights whose outputs for one image would take
    gigabytes when a check runs it (Resizing, UpSampling2D, or a size
    left open) is refused when it is read back."""
    with pytest.raises(wire.WireError, match=why):
        reader.decode(_model_tree(model()), {})


def test_the_largest_networks_of_the_book_fit_the_activation_bound():
    """ResNet-50 at 224x224 (the most activations of any network the
    checks build) is read back; its outputs for one image are more than
    half the bound, so the bound is not far above what honest work needs.
    A Sequential VGG-16 counts each layer once, not once per graph its
    ``add`` calls made."""
    from cnnbook.models import resnet50

    total = rebuild.check_activations(resnet50(input_shape=(224, 224, 3)))
    assert wire.MAX_ACTIVATION_BYTES / 2 < total < wire.MAX_ACTIVATION_BYTES
    functional = keras.applications.VGG16(weights=None)
    sequential = keras.Sequential([keras.Input((224, 224, 3))])
    for layer in functional.layers[1:]:
        sequential.add(layer.__class__.from_config(layer.get_config()))
    assert rebuild.check_activations(sequential) == rebuild.check_activations(
        functional
    )
    inner = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)]
    )
    outer = keras.Sequential([keras.Input((8, 8, 3)), inner])
    assert rebuild.check_activations(outer) > rebuild.check_activations(inner)


# ------------------------------------------------- the report bomb (2)
def test_an_error_message_from_the_kernel_is_cut_by_the_grader():
    """Attack 2 (bomb): the notebook replaced the kernel's side of the
    calls so that each error carried a 30 MiB message (a 189 MB report
    for chapter 1). The grader keeps 500 characters of it, whatever the
    kernel sent, and a result's message is bounded."""
    huge = {"type": "ValueError", "message": "x" * 30 * 2**20, "line": "7"}
    exc = remote._learner_error(huge)
    assert len(str(exc)) <= remote.MAX_ERROR_CHARS + 10
    assert exc.line is None  # not an integer: no line
    assert remote._learner_error({"message": "m", "line": 12}).line == 12
    message = explain(exc)
    assert len(message) < 700
    result = Result("1.1", "t", 0, 1, "y" * 10**7)
    assert len(result.message) <= MAX_MESSAGE_CHARS + 10


def test_a_learner_cannot_pass_for_the_grader():
    """The kernel is the learner's: an error it calls the grader's own is
    reported as what the kernel said, not as the grader's failure."""
    exc = remote._learner_error({"type": "GraderError", "message": "oops"})
    message = explain(exc)
    assert "not yours" not in message and "the kernel" in message


# ------------------------------------------- 2.4's hidden test digits (5)
def test_the_hidden_training_check_draws_digits_the_notebook_cannot_know(
    monkeypatch,
):
    """Finding 5: exercise 2.4's hidden check used a fixed seed, so a
    notebook could know the 1,000 test digits it is judged on (the MNIST
    test set is readable in the sandbox) and train on them. Both seeds
    now come from the grade's secret, and the one that picks the test
    digits is never passed to the learner's code."""
    from cnnbook.grading.checks import ch02

    calls = []
    monkeypatch.setattr(
        ch02, "_check_fit", lambda func, *seeds: calls.append(seeds)
    )
    for grade_seed in (1, 2):
        ch02.fit_lenet_hidden(
            {"fit_lenet": None}, np.random.default_rng(grade_seed)
        )
    (seed1, test1, relabel1), (seed2, test2, relabel2) = calls
    assert seed1 != seed2 and test1 != test2
    assert test1 != seed1 and test2 != seed2
    # red team 8: the classes are renamed too, so weights trained
    # elsewhere score about one in ten
    for relabel in (relabel1, relabel2):
        assert sorted(relabel) == list(range(10))
        assert (np.asarray(relabel) == np.arange(10)).sum() <= 2
    train, test = ch02.fit_data(0, 1)
    same_train, other_test = ch02.fit_data(0, 2)
    assert np.array_equal(train[1], same_train[1])
    assert not np.array_equal(test[1], other_test[1])
