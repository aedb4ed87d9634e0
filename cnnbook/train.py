"""Training with honest bookkeeping: epochs, wall time, images/s, accuracy.

Introduced in Chapter 2 and used by every chapter that trains a model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class TrainReport:
    history: dict
    epochs: int
    seconds: float
    images_per_second: float
    test_accuracy: float
    test_loss: float

    def __str__(self):
        return (
            f"trained {self.epochs} epoch(s) in {self.seconds:.1f} s "
            f"({self.images_per_second:,.0f} images/s); test accuracy "
            f"{self.test_accuracy:.2%}"
        )


def train(
    model, x_train, y_train, x_test, y_test, epochs, batch_size, callbacks=None
):
    """Fit a compiled model, then evaluate it on the test set. Chapter 2.

    The test set doubles as validation data so that the curves of
    :func:`cnnbook.plots.plot_history` show train and test side by side.
    Progress is printed one line per epoch (``verbose=2``).
    """
    start = time.perf_counter()
    fit = model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=(x_test, y_test),
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.perf_counter() - start
    results = model.evaluate(
        x_test,
        y_test,
        batch_size=max(batch_size, 256),
        verbose=0,
        return_dict=True,
    )
    epochs_run = len(fit.history.get("loss", [])) or epochs
    accuracy = next(
        (v for k, v in results.items() if k.endswith("accuracy")), float("nan")
    )
    report = TrainReport(
        history={
            k: [float(v) for v in vals] for k, vals in fit.history.items()
        },
        epochs=epochs_run,
        seconds=seconds,
        images_per_second=len(x_train) * epochs_run / seconds,
        test_accuracy=float(accuracy),
        test_loss=float(results.get("loss", np.nan)),
    )
    print(report)
    return report


def predict_classes(model, x, batch_size=512):
    """Arg-max class predictions as a numpy array. Chapter 2."""
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    if isinstance(probs, (list, tuple)):
        probs = probs[0]
    return np.asarray(probs).argmax(axis=-1)


def augmented(net, shift=0.1, flip=True):
    """``net`` behind random shifts and mirror images. Chapters 4 and 5.

    The random layers are active only in training (``fit``); ``evaluate``
    and ``predict`` see the images unchanged. The returned model shares its
    weights with ``net``, so ``net`` is the trained network afterwards.
    Fashion-MNIST's clothes stay clothes when mirrored left to right.
    """
    import keras

    stages = [keras.Input(net.input_shape[1:])]
    if shift:
        stages.append(
            keras.layers.RandomTranslation(shift, shift, fill_mode="constant")
        )
    if flip:
        stages.append(keras.layers.RandomFlip("horizontal"))
    return keras.Sequential([*stages, net], name=f"augmented_{net.name}")
