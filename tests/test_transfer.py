"""Chapter 8's transfer lab: its data split and its freezing, in-process
on a network small enough to train in a second (cnnbook.transfer)."""

import keras
import numpy as np
import pytest
from keras import layers

from cnnbook import data, labs, transfer
from cnnbook.models._layers import apply, bn_layer, classifier_head

SOURCE = (0, 1, 2, 3, 4)
TARGET = (5, 6, 7, 8, 9)


def test_task_split_keeps_its_classes_and_draws_n_of_each():
    split = transfer.task_split("fashion_mnist", TARGET, 7 * 5, 100, seed=3)
    assert split.x_train.shape == (35, 28, 28, 1)
    assert np.bincount(split.y_train, minlength=5).tolist() == [7] * 5
    assert np.bincount(split.y_test, minlength=5).tolist() == [20] * 5
    assert split.x_train.dtype == np.float32 and split.x_train.max() <= 1
    assert set(split.y_test.tolist()) == set(range(5))


def test_task_split_labels_follow_the_order_given():
    (_, _), (x_test, y_test) = data.load_fashion_mnist()
    split = transfer.task_split("fashion_mnist", (9, 5), 10, 4000)
    originals = {tuple(x.ravel()): int(y) for x, y in zip(x_test, y_test)}
    for image, label in zip(split.x_test[:50], split.y_test[:50]):
        original = originals[
            tuple(np.rint(image * 255).astype(np.uint8).ravel())
        ]
        assert (9, 5)[label] == original


def test_source_and_target_classes_of_the_lab_are_disjoint():
    for profile in labs.PROFILES:
        settings = labs.LABS["ch08-transfer"].settings(profile)
        assert not set(settings["source_classes"]) & set(
            settings["target_classes"]
        )


def test_target_test_images_do_not_depend_on_the_seed():
    one = transfer.task_split("fashion_mnist", TARGET, 10, 50, seed=0)
    two = transfer.task_split("fashion_mnist", TARGET, 10, 50, seed=1)
    assert np.array_equal(one.x_test, two.x_test)
    assert not np.array_equal(one.x_train, two.x_train)


def test_repeated_shows_every_labelled_image_equally_often():
    split = transfer.task_split("fashion_mnist", SOURCE, 15, 10)
    longer = transfer.repeated(split, 100)
    assert len(longer.x_train) == len(longer.y_train) == 100
    counts = {}
    for image in longer.x_train:
        key = image.tobytes()
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 15
    assert max(counts.values()) - min(counts.values()) <= 1
    assert np.array_equal(longer.x_test, split.x_test)


def _network(num_classes=3):
    """A network shaped like the lab's: convolution, batch
    normalisation, ReLU, then the book's average-pooling head."""
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, use_bias=False, name="conv1")(inputs)
    x = bn_layer("conv1_bn", momentum=0.5)(x)
    x = layers.ReLU(name="conv1_relu")(x)
    head = classifier_head(num_classes, pooling="average")
    return keras.Model(inputs, apply(head, x))


def _step(model, seed=0):
    """One training step on a batch far from the statistics so far."""
    rng = np.random.default_rng(seed)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
    )
    images = rng.normal(3.0, 2.0, (16, 8, 8, 1)).astype("float32")
    model.train_on_batch(images, rng.integers(0, 2, 16))


@pytest.fixture
def arms():
    keras.utils.set_random_seed(0)
    source = _network()
    base = transfer.pretrained_base(source)
    return source, base, transfer.with_new_head(base, 2)


def test_pretrained_base_is_a_copy_with_the_trained_weights(arms):
    source, base, _ = arms
    assert base.output.shape[1:] == (6, 6, 4)
    conv = base.get_layer("conv1").kernel
    assert np.array_equal(conv, source.get_layer("conv1").kernel)
    assert conv is not source.get_layer("conv1").kernel


def test_frozen_base_trains_only_the_head_and_keeps_its_statistics(arms):
    _, base, model = arms
    transfer.freeze(base)
    assert transfer.trainable_count(model) == (4 + 1) * 2
    weights = [np.array(w) for w in base.weights]
    before = transfer.moving_statistics(base)
    head = np.array(model.get_layer("classifier").kernel)
    _step(model)
    assert (
        transfer.statistics_change(before, transfer.moving_statistics(base))
        == 0
    )
    assert all(np.array_equal(a, b) for a, b in zip(weights, base.weights))
    assert not np.array_equal(head, model.get_layer("classifier").kernel)


def test_fine_tuning_keeps_batch_norm_in_inference_mode(arms):
    _, base, model = arms
    transfer.freeze(base)
    transfer.unfreeze(base)
    bn = base.get_layer("conv1_bn")
    # convolution kernel and head trainable; the scale and offset not
    assert transfer.trainable_count(model) == 3 * 3 * 4 + (4 + 1) * 2
    kernel = np.array(base.get_layer("conv1").kernel)
    gamma = np.array(bn.gamma)
    before = transfer.moving_statistics(base)
    _step(model)
    assert (
        transfer.statistics_change(before, transfer.moving_statistics(base))
        == 0
    )
    assert np.array_equal(gamma, bn.gamma)
    assert not np.array_equal(kernel, base.get_layer("conv1").kernel)


def test_batch_norm_left_trainable_moves_its_statistics(arms):
    """The mistake the lab measures, after a fine-tuning set-up: unfreeze
    with keep_batch_norm=False must reach the layers frozen before."""
    _, base, model = arms
    transfer.freeze(base)
    transfer.unfreeze(base)
    transfer.unfreeze(base, keep_batch_norm=False)
    assert transfer.trainable_count(model) == (3 * 3 * 4 + 2 * 4 + (4 + 1) * 2)
    before = transfer.moving_statistics(base)
    _step(model)
    moved = transfer.statistics_change(
        before, transfer.moving_statistics(base)
    )
    assert moved > 0.1


def test_the_registry_builds_every_arm_with_its_trainable_weights():
    settings = labs.LABS["ch08-transfer"].settings("smoke")
    entry = labs.LABS["ch08-transfer"]
    frozen = entry.build("transfer_frozen_n10", settings)
    finetuned = entry.build("transfer_finetuned_n10", settings)
    training = entry.build("transfer_bn_training_n10", settings)
    channels = frozen.get_layer("base").output.shape[-1]
    assert transfer.trainable_count(frozen) == (channels + 1) * 5
    batch_norm = sum(
        int(np.prod(layer.gamma.shape)) * 2
        for layer in training.get_layer("base").layers
        if isinstance(layer, layers.BatchNormalization)
    )
    assert (
        transfer.trainable_count(training)
        - transfer.trainable_count(finetuned)
        == batch_norm
    )
    assert (
        transfer.trainable_count(training)
        == training.count_params() - batch_norm
    )
