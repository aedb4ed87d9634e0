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
    transfer._training_step(model, rng, base.inputs[0].shape[1:])
    assert transfer._moved_statistics(model, statistics)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    statistics = transfer._statistics(model)
    transfer._training_step(model, rng, base.inputs[0].shape[1:])
    assert not transfer._moved_statistics(model, statistics)


# ------------------------------------------ holes a red team found (8.2-8.4)
def _inverted_residual_modules(root):
    """The modules of ``keras.src.applications`` (at ``root``) with a
    function that calls a depthwise convolution and an add shortcut: the
    blocks a learner could call for 8.2."""
    import ast

    def called(node):
        names = set()
        for call in ast.walk(node):
            if isinstance(call, ast.Call):
                func = call.func
                if isinstance(func, ast.Attribute):
                    names.add(func.attr)
                elif isinstance(func, ast.Name):
                    names.add(func.id)
        return names

    found = set()
    for path in sorted(root.glob("*.py")):
        if path.stem.endswith("_test"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                names = called(node)
                if "DepthwiseConv2D" in names and names & {"add", "Add"}:
                    found.add(path.stem)
    return found


def test_every_keras_inverted_residual_block_is_left_out_for_8_2(tmp_path):
    """EfficientNetV2's MBConvBlock (se_ratio 0, relu6) answered 8.2 while
    its module was not covered; any module of the installed Keras with a
    depthwise convolution and an add shortcut in one function must be."""
    from cnnbook.grading import package

    covered = resolve("ch08").keras_applications
    found = _inverted_residual_modules(applications_root())
    # the scan finds what it must (it is not vacuous) ...
    assert {"mobilenet_v2", "efficientnet", "efficientnet_v2"} <= found
    # ... and every module it finds is left out while 8.2 is graded
    for module in found:
        assert "8.2" in covered.get(module, []), module
    # the stand-in the sandbox gets for efficientnet_v2 refuses the block
    made = package.keras_overlays({"efficientnet_v2": ["8.2"]}, tmp_path)
    stub = next(c for c, t in made if str(t).endswith("efficientnet_v2.py"))
    ns = {}
    exec(compile(stub.read_text(), str(stub), "exec"), ns)
    import pytest

    with pytest.raises(ImportError, match="8.2"):
        ns["MBConvBlock"](24, 24, 6, 3, 1, 0.0, activation="relu6")


ATTACK_PRELUDE = """
import keras
from keras import layers
"""
# 8.4 that throws the pretrained weights away: a fresh copy of the
# architecture with new random weights
UNFREEZE_CLONED = """
def unfreeze_for_fine_tuning(model):
    model = keras.models.clone_model(model)
    for layer in model.layers:
        layer.trainable = True
        for inner in getattr(layer, "layers", []):
            if isinstance(inner, layers.BatchNormalization):
                inner.trainable = False
    return model
"""
# 8.4 whose batch normalisation runs in training mode: each rebuilt
# without scale and offset (no trainable weights to count) and with
# momentum 1 (its moving statistics never move), the base called with
# training=True
UNFREEZE_BN_TRAINING = """
def unfreeze_for_fine_tuning(model):
    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, layers.BatchNormalization):
            config.update(center=False, scale=False, momentum=1.0)
        config["trainable"] = True
        return layer.__class__.from_config(config)

    base = next(x for x in model.layers if hasattr(x, "layers"))
    new_base = keras.models.clone_model(base, clone_function=clone)
    for new, old in zip(new_base.layers, base.layers):
        weights = old.get_weights()
        if isinstance(old, layers.BatchNormalization):
            weights = weights[2:]
        new.set_weights(weights)
    inputs = keras.Input(model.inputs[0].shape[1:])
    x = new_base(inputs, training=True)
    for layer in model.layers[2:]:
        layer.trainable = True
        x = layer(x)
    return keras.Model(inputs, x)
"""
# 8.3 on a SCALE times larger image, average-pooled down to the base's
# size (no weights added): the grader would run the model on it
FROZEN_LARGER_INPUT = """
def frozen_with_head(base, num_classes):
    base.trainable = False
    h, w, c = base.inputs[0].shape[1:]
    inputs = keras.Input((h * SCALE, w * SCALE, c))
    x = layers.AveragePooling2D(SCALE)(inputs)
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)
"""
# 8.3 with frozen convolutions between the base and the head (no
# trainable weights added, nothing moves in a training step): the
# grader would compute them all
FROZEN_EXTRA_WORK = """
def frozen_with_head(base, num_classes):
    base.trainable = False
    inputs = keras.Input(base.inputs[0].shape[1:])
    x = base(inputs)
    channels = x.shape[-1]
    x = layers.UpSampling2D(UP)(x)
    for _ in range(DEPTH):
        x = layers.Conv2D(WIDTH, 3, padding="same", trainable=False)(x)
    x = layers.Conv2D(channels, 1, trainable=False)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)
"""


def _graded(key, source, **constants):
    """``source`` run as a learner's cell (with ``constants`` defined),
    then exercise ``key`` checked in-process, hidden checks included."""
    ns = dict(constants)
    exec(compile(ATTACK_PRELUDE + source, f"<attack {key}>", "exec"), ns)
    exercise = next(e for e in exercises("ch08") if e.key == key)
    return run_exercise(exercise, ns, hidden=True, seed=5)


def test_8_4_refuses_a_model_without_the_pretrained_weights():
    result = _graded("8.4", UNFREEZE_CLONED)
    assert result.points == 0
    assert "the weights of the base's layer" in result.message
    assert "are not in the model" in result.message


def test_8_4_refuses_batch_normalisation_rebuilt_to_train():
    result = _graded("8.4", UNFREEZE_BN_TRAINING)
    assert result.points == 0
    assert "the batch normalisation layer" in result.message
    assert "center=False, scale=False, momentum=1.0" in result.message
    assert "center=True, scale=True, momentum=0.99" in result.message


def test_8_3_refuses_a_larger_input_before_running_the_model():
    """Refused by its structure; SCALE is 20 here (the red team's 200 made
    the grader's process allocate 3.7 GB): were the check to run the
    model, it would still be refused later, but not by this message."""
    result = _graded("8.3", FROZEN_LARGER_INPUT, SCALE=20)
    assert result.points == 0
    assert "the model's input has shape" in result.message
    assert "the new model takes the base's images" in result.message
    # the same layer with the base's input size: not one of the base's
    same_size = _graded("8.3", FROZEN_LARGER_INPUT, SCALE=1)
    assert same_size.points == 0
    assert "(AveragePooling2D), the base's layer 1 is" in same_size.message


def test_8_3_refuses_layers_outside_the_base_and_the_head():
    """The red team's 40 frozen Conv2D(512) on an 8x upsampled map ran
    past --timeout; a small copy is refused by its structure alone."""
    result = _graded("8.3", FROZEN_EXTRA_WORK, DEPTH=2, WIDTH=8, UP=2)
    assert result.points == 0
    assert "(UpSampling2D) is neither one of the base's layers" in (
        result.message
    )
    assert "nor part of the head" in result.message


def test_8_3_accepts_the_heads_honest_variants():
    """The structure check is no stricter than the exercise: the head may
    have dropout and a separate softmax layer, and the model may be built
    on the base's own input and output rather than by calling it."""
    with_dropout = """
def frozen_with_head(base, num_classes):
    base.trainable = False
    inputs = keras.Input(base.inputs[0].shape[1:])
    x = layers.GlobalAveragePooling2D()(base(inputs, training=False))
    x = layers.Dropout(0.2)(x)
    x = layers.Dense(num_classes)(x)
    return keras.Model(inputs, layers.Softmax()(x))
"""
    on_base_output = """
def frozen_with_head(base, num_classes):
    base.trainable = False
    x = layers.GlobalAveragePooling2D()(base.output)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(base.input, outputs)
"""
    for source in (with_dropout, on_base_output):
        result = _graded("8.3", source)
        assert result.passed, result.message


def test_8_4_and_8_3_compare_what_the_model_computes():
    """The output checks that follow the structure check: a model whose
    weights differ from those passed in, or whose batch normalisation
    runs in training mode, or whose head does not follow the base."""
    import numpy as np
    import pytest

    from cnnbook.grading.api import CheckFailure

    rng = np.random.default_rng(0)
    base = transfer._base(rng)
    model = transfer.reference_frozen(base, 3)
    x = rng.normal(1.0, 2.0, (4, *base.inputs[0].shape[1:])).astype("float32")
    outputs = transfer._predict(model, x)
    transfer._expect_same_computation(model, x, outputs, "it")
    with pytest.raises(CheckFailure, match="differs from that of the model"):
        transfer._expect_same_computation(model, x, outputs + 0.1, "it")
    for layer in base.layers:
        layer.trainable = True
    with pytest.raises(CheckFailure, match="in training mode"):
        transfer._expect_same_computation(model, x, outputs, "it")
    base.trainable = False
    features = transfer._predict(base, x)
    head = model.layers[2:]
    transfer._expect_head_on_base(model, x, features, head, "it")
    with pytest.raises(CheckFailure, match="not its head applied"):
        transfer._expect_head_on_base(model, x, features * 2, head, "it")


def test_the_structure_check_accepts_a_model_sent_back_by_the_sandbox():
    """A sandboxed answer's model is rebuilt in the grader from its
    configuration (initializers zeroed, weights set): the honest 8.3 and
    8.4 models, sent back that way, keep the base's and the given model's
    layout, and the same outputs."""
    import numpy as np

    from cnnbook.grading import reader, wire

    rng = np.random.default_rng(2)
    base = transfer._base(rng)
    base_layout = transfer._layout(base)
    model = transfer.reference_frozen(base, 4)
    layout = transfer._layout(model)
    arrays = {}
    tree = wire.encode(model, arrays, weights=True)
    back = reader.decode(tree, arrays)
    assert back is not model
    layers = transfer._layer_list(back)
    head = transfer._expect_base_layers(layers, base_layout, "it")
    assert list(transfer._expect_head(head, "it")) == ["pool", "dense"]
    assert transfer._expect_base_layers(layers, layout, "it") == []
    x = rng.normal(0, 1, (2, *base.inputs[0].shape[1:])).astype("float32")
    transfer._expect_same_computation(
        back, x, transfer._predict(model, x), "it"
    )


def test_8_2_names_the_shortcut_only_for_an_error_about_shapes():
    """An answer refused by the sandbox (ImportError from a left-out Keras
    block) is not told its shortcut is wrong because the check's own words
    say "on an input of shape" (an error about shapes still gets it:
    tests/test_grading_mistakes.py, 8.2-shortcut-at-stride-2)."""
    refused = """
def inverted_residual_block(x, filters, expansion, stride):
    raise ImportError("this part of keras.applications is not available")
"""
    result = _graded("8.2", refused)
    assert result.points == 0 and "raised ImportError" in result.message
    assert "Likely cause" not in result.message
