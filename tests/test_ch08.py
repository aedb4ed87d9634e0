"""Chapter 8 (MobileNet, EfficientNet, transfer learning): the exercises'
checks pass the solution's answers and fail wrong ones."""

import keras
from conftest import assert_reference_answers_pass, solution_namespace

from cnnbook import arithmetic
from cnnbook.grading.chapters import exercises, resolve
from cnnbook.grading.checks.ch08 import transfer
from cnnbook.grading.package import applications_root
from cnnbook.grading.runner import run_exercise
from cnnbook.models import inverted_residual


def test_the_solutions_answers_pass_visible_and_hidden_checks():
    """The solution notebook's own code, as a learner would submit it."""
    ns = solution_namespace("ch08-mobilenet")
    assert_reference_answers_pass("ch08", ns, seed=3, at_least=4)


def test_wrong_answers_fail():
    ns = solution_namespace("ch08-mobilenet")
    by_key = {e.key: e for e in exercises("ch08")}

    def normal_twice(n_H, n_W, n_C_prev, f, n_C):
        normal = arithmetic.conv_multiplications(n_H, n_W, n_C, f, n_C_prev)
        return {
            "normal": normal,
            "depthwise": normal,
            "pointwise": normal,
            "ratio": 2.0,
        }

    def without_batch_norm(x, filters, expansion, stride):
        x = keras.layers.Conv2D(x.shape[-1] * expansion, 1)(x)
        x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same")(x)
        return keras.layers.Conv2D(filters, 1)(x)

    def head_without_base(base, num_classes):
        inputs = keras.Input(base.inputs[0].shape[1:])
        x = keras.layers.GlobalAveragePooling2D()(inputs)
        out = keras.layers.Dense(num_classes, activation="softmax")(x)
        return keras.Model(inputs, out)

    def everything_trainable(model):
        for layer in model.layers:
            layer.trainable = True
        return model

    for key, name, wrong in (
        ("8.1", "separable_cost", normal_twice),
        ("8.2", "inverted_residual_block", without_batch_norm),
        ("8.3", "frozen_with_head", head_without_base),
        ("8.4", "unfreeze_for_fine_tuning", everything_trainable),
    ):
        result = run_exercise(by_key[key], {**ns, name: wrong}, hidden=True)
        assert not result.passed and result.message, key


def test_the_sandbox_hides_what_answers_the_exercises():
    chapter = resolve("ch08")
    assert chapter.answers["cnnbook.models.mobilenet"] == (["8.2"], None)
    assert chapter.answers["cnnbook.transfer"] == (["8.3", "8.4"], None)
    hidden = chapter.answers["cnnbook.arithmetic"][1]
    assert "separable_cost" in hidden and "separable_ratio" in hidden
    for module in chapter.keras_applications:
        assert (applications_root() / f"{module}.py").is_file(), module


def test_the_reference_block_is_the_one_the_check_compares_with():
    """8.2's check builds its expected block with the chapter's builder:
    the shortcut only at stride 1 with as many channels out as in."""
    for filters, stride, shortcut in ((24, 1, True), (24, 2, False)):
        x = keras.Input((14, 14, 24))
        block = keras.Model(
            x, inverted_residual(x, filters, strides=stride, name="b")
        )
        names = [layer.name for layer in block.layers]
        assert ("b_add" in names) == shortcut


def test_training_false_alone_lets_fit_move_the_statistics():
    """What 8.4 and the solution notebook say of the pinned Keras: a base
    called with training=False, once trainable, updates its batch
    normalisation's moving mean under fit; a frozen BatchNormalization
    layer does not. If Keras changes this, rewrite the text of 8.4."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = transfer._base(rng)
    model = transfer.reference_frozen(base, 3)
    for layer in model.layers:
        layer.trainable = True
    statistics = transfer._statistics(model)
    transfer._training_step(model, rng)
    assert transfer._moved_statistics(model, statistics)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    statistics = transfer._statistics(model)
    transfer._training_step(model, rng)
    assert not transfer._moved_statistics(model, statistics)
