"""Training in one place: compile, fit, time, evaluate, record. Chapter 2.

Every lab that trains calls :func:`fit`. It measures the bare step rate of
the compiled model first (:func:`bare_step_rate`), then trains with the
test split as validation data (so the curves show train and test side by
side), times the training and the validation of every epoch separately,
evaluates, prints one summary line, places the test accuracy within the
recorded range of this lab (:func:`cnnbook.records.expected_range`: the
book's records with the same settings and code, its fingerprint) and
writes a run record (:mod:`cnnbook.records`) that carries that
fingerprint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import keras
import numpy as np

from cnnbook import machine, profiles, records

# training steps compiled into one call under the gpu profile
GPU_STEPS_PER_CALL = 16


@dataclass
class TrainReport:
    """What one call of :func:`fit` measured. Chapter 2."""

    history: dict
    epochs: int
    seconds: float
    images_per_second: float
    step_images_per_second: float
    test_accuracy: float
    test_loss: float
    train_accuracy: float
    cpu_busy: float
    epoch_seconds: list = field(default_factory=list)
    validation_seconds: list = field(default_factory=list)
    record_path: object = None
    expected: object = None

    def __str__(self):
        return (
            f"trained {self.epochs} epoch(s) in {self.seconds:.1f} s "
            f"({self.images_per_second:,.0f} images/s end to end, "
            f"{self.step_images_per_second:,.0f} bare); "
            f"test accuracy {self.test_accuracy:.2%}"
        )


def steps_per_epoch(num_images, batch_size):
    """Optimiser steps in one pass over ``num_images``. Chapter 2."""
    return math.ceil(num_images / batch_size)


def total_steps(cfg, num_images):
    """Optimiser steps of a whole run under ``cfg`` (epochs, batch size)."""
    return cfg.epochs * steps_per_epoch(num_images, cfg.batch_size)


def cosine_schedule(peak, cfg, num_images, warmup_epochs=0, epochs=None):
    """Learning rate rising linearly to ``peak`` over ``warmup_epochs``, then
    a cosine down to zero at the end of the run (``cfg.epochs`` long unless
    ``epochs`` is given). Chapter 2.

    The schedule remembers its length in epochs (``schedule.epochs``), and
    :func:`fit` trains for that many, so a run's length is said once."""
    epochs = epochs or cfg.epochs
    per_epoch = steps_per_epoch(num_images, cfg.batch_size)
    total = epochs * per_epoch
    warmup = warmup_epochs * per_epoch
    if not warmup:
        schedule = keras.optimizers.schedules.CosineDecay(peak, total)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, total - warmup, warmup_target=peak, warmup_steps=warmup
        )
    schedule.epochs = epochs
    return schedule


class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then ``peak`` divided by 10 at each of
    the ``boundaries`` (fractions of the run). Chapter 5."""

    def __init__(self, peak, total, warmup=0, boundaries=(0.5, 0.75)):
        self.peak, self.total, self.warmup = peak, total, warmup
        self.boundaries = tuple(boundaries)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        rate = self.peak * ops.ones_like(step)
        for fraction in self.boundaries:
            rate = ops.where(step >= fraction * self.total, rate / 10, rate)
        if self.warmup:
            ramp = self.peak * ops.minimum(1.0, (step + 1) / self.warmup)
            rate = ops.where(step < self.warmup, ramp, rate)
        return rate

    def get_config(self):
        return {
            "peak": self.peak,
            "total": self.total,
            "warmup": self.warmup,
            "boundaries": self.boundaries,
        }


def step_schedule(
    peak, cfg, num_images, warmup_epochs=0, boundaries=(0.5, 0.75)
):
    """:class:`StepSchedule` over the run of ``cfg``: the schedule of He et
    al.'s CIFAR-10 experiments; like :func:`cosine_schedule`, it remembers
    its length in epochs for :func:`fit`. Chapter 5."""
    per_epoch = steps_per_epoch(num_images, cfg.batch_size)
    schedule = StepSchedule(
        peak,
        cfg.epochs * per_epoch,
        warmup=warmup_epochs * per_epoch,
        boundaries=boundaries,
    )
    schedule.epochs = cfg.epochs
    return schedule


def _schedule_epochs(optimizer):
    """The epochs the optimiser's learning-rate schedule was made for, if
    :func:`cosine_schedule` or :func:`step_schedule` made it."""
    schedule = getattr(optimizer, "_learning_rate", None)
    return getattr(schedule, "epochs", None)


def run_epochs(cfg, optimizer=None, epochs=None):
    """How many epochs :func:`fit` trains: the length of the optimiser's
    schedule when it has one, else ``epochs``, else ``cfg.epochs``; an
    ``epochs`` that contradicts the schedule is refused. Chapter 2."""
    planned = _schedule_epochs(optimizer)
    if planned and epochs and int(epochs) != int(planned):
        raise ValueError(
            f"fit(epochs={epochs}) but the learning-rate schedule was made "
            f"for {planned} epochs; give the epochs to the schedule only"
        )
    return int(planned or epochs or cfg.epochs)


def _targets(model, y):
    """``y`` as the model wants it: one array, or one per named output."""
    names = list(getattr(model, "output_names", None) or [])
    if len(model.outputs) > 1:
        return {name: y for name in names}
    return y


def bare_step_rate(model, x, y, batch_size, seconds=3.0, warmup=3):
    """Training images/s of the compiled ``model`` with nothing else of a
    run going on: Keras's own training loop over images already in memory,
    without validation, callbacks or shuffling, after a warm-up that
    compiles the step. Other work on the machine still takes its share of
    the cores, so the rate is that of the machine as it was at the time.
    It runs for about ``seconds`` (at least 5 steps). Chapter 2.

    The weights, the optimiser's state and the metrics are put back as they
    were, so measuring does not change the training that follows.
    """
    batch_size = min(batch_size, len(x))
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    saved_weights = model.get_weights()
    saved_state = [keras.ops.convert_to_numpy(v) for v in optimizer.variables]

    def run(steps):
        n = min(steps, len(x) // batch_size) * batch_size
        start = time.perf_counter()
        model.fit(
            x[:n],
            _targets(model, y[:n]),
            batch_size=batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
        )
        return n, time.perf_counter() - start

    run(warmup)  # compiles the training step
    n, spent = run(warmup)
    steps = int(seconds / (spent / (n // batch_size)))
    n, spent = run(max(5, steps))
    model.set_weights(saved_weights)
    for variable, value in zip(optimizer.variables, saved_state):
        variable.assign(value)
    model.reset_metrics()
    return n / spent


class EpochClock(keras.callbacks.Callback):
    """Seconds of training and of validation in every epoch. Chapter 2."""

    def __init__(self):
        super().__init__()
        self.train, self.validation = [], []
        self._start = self._mark = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._mark = time.perf_counter()

    def on_test_begin(self, logs=None):
        if self._start is not None:
            self._mark = time.perf_counter()
            self.train.append(self._mark - self._start)
            self._start = None

    def on_test_end(self, logs=None):
        self.validation.append(time.perf_counter() - self._mark)

    def on_epoch_end(self, epoch, logs=None):
        if self._start is not None:  # no validation in this epoch
            self.train.append(time.perf_counter() - self._start)
            self.validation.append(0.0)
            self._start = None


def fit(
    model,
    split,
    cfg,
    *,
    lab,
    optimizer=None,
    loss="sparse_categorical_crossentropy",
    metrics=("accuracy",),
    loss_weights=None,
    name=None,
    epochs=None,
    batch_size=None,
    callbacks=None,
    bare_seconds=None,
    seed=None,
    validation_freq=1,
):
    """Compile (when ``optimizer`` is given), train on ``split`` under
    ``cfg``, evaluate on its test images and write the run record of
    ``lab`` (the notebook's name, e.g. ``"ch05-resnet18"``). Chapter 2.

    ``split`` comes from :func:`cnnbook.data.split`; ``cfg`` from
    :func:`cnnbook.setup` (``epochs``, ``batch_size`` unless given here).
    Models with several outputs get the labels once per output. ``name``
    is the model's name in the record (default: the model's own, without
    the ``augmented_`` of :func:`augmented`). ``seed`` is the seed the
    model was built and trained with, when not ``cfg.seed``;
    ``validation_freq=k`` scores the test images every k-th epoch only.
    The number of epochs comes from the optimiser's schedule when
    :func:`cosine_schedule` or :func:`step_schedule` made it
    (:func:`run_epochs`), so it is written once.

    The record goes to the learner's results folder, or to the book's
    ``results/`` for a canonical run (:func:`cnnbook.records.output_dir`);
    either way the run is placed against the book's records.
    """
    epochs = run_epochs(
        cfg,
        optimizer
        if optimizer is not None
        else getattr(model, "optimizer", None),
        epochs,
    )
    batch_size = batch_size or cfg.batch_size
    if optimizer is not None:
        model.compile(
            optimizer=optimizer,
            loss=loss,
            loss_weights=loss_weights,
            metrics=metrics if isinstance(metrics, dict) else list(metrics),
            # on a GPU, several steps per call keep Python out of the way
            steps_per_execution=(
                GPU_STEPS_PER_CALL if cfg.profile == "gpu" else 1
            ),
        )
    y_train = _targets(model, split.y_train)
    y_test = _targets(model, split.y_test)
    dry_run = bool(getattr(cfg, "dry_run", False))
    if bare_seconds is None:
        bare_seconds = 0.5 if cfg.profile == "smoke" or dry_run else 5.0
    bare = bare_step_rate(
        model,
        split.x_train,
        split.y_train,
        batch_size,
        bare_seconds,
        warmup=1 if dry_run else 3,
    )
    clock = EpochClock()
    with machine.CpuMeter() as meter:
        fitted = model.fit(
            split.x_train,
            y_train,
            epochs=epochs,
            batch_size=batch_size,
            validation_data=(split.x_test, y_test),
            callbacks=[clock, *(callbacks or [])],
            validation_freq=validation_freq,
            verbose=2,
        )
    report = _report(
        model,
        fitted,
        split.x_test,
        y_test,
        batch_size,
        epochs,
        len(split.x_train),
        meter.seconds,
        step_images_per_second=bare,
        cpu_busy=meter.busy,
        epoch_seconds=clock.train,
        validation_seconds=clock.validation,
    )
    print(report)
    record = _record(model, split, cfg, lab, name, batch_size, report)
    if seed is not None:
        record["seed"] = int(seed)
    kind = records.device_kind(record["device"])
    report.expected = records.expected_range(
        lab,
        record["model"],
        cfg.profile,
        kind,
        fingerprint=record["fingerprint"],
    )
    print(_placement(report, cfg.profile, kind))
    if records.should_write(cfg.profile):
        report.record_path = records.write(record)
        print(_where_written(report.record_path))
    return report


def _where_written(path):
    """One line: where the record went, and whether it is the book's."""
    shown = _shown(path)
    try:
        path.relative_to(records.BOOK_RESULTS)
    except ValueError:
        return (
            f"your run record: {shown} (the book's records in results/ are "
            "unchanged; only `make execute` replaces them)"
        )
    return f"run record: {shown} (the book's)"


def _report(
    model,
    fitted,
    x_test,
    y_test,
    batch_size,
    epochs,
    images,
    seconds,
    **measured,
):
    """Evaluate on the test images and gather the :class:`TrainReport`."""
    results = model.evaluate(
        x_test,
        y_test,
        batch_size=max(batch_size, 256),
        verbose=0,
        return_dict=True,
    )
    history = {
        k: [float(v) for v in vals] for k, vals in fitted.history.items()
    }
    epochs_run = len(history.get("loss", [])) or epochs
    return TrainReport(
        history=history,
        epochs=epochs_run,
        seconds=seconds,
        images_per_second=images * epochs_run / seconds,
        test_accuracy=_accuracy(results),
        test_loss=float(results.get("loss", np.nan)),
        train_accuracy=_accuracy(
            {k: v[-1] for k, v in history.items() if not k.startswith("val_")}
        ),
        **measured,
    )


def _accuracy(results):
    """The accuracy among Keras's metrics (the main output's, if several)."""
    keys = [k for k in results if k.endswith("accuracy")]
    # the classifier's (named "main" in GoogLeNet before the one name)
    main = ("classifier", "main")
    keys.sort(key=lambda k: (k != "accuracy", not k.startswith(main), k))
    return float(results[keys[0]]) if keys else float("nan")


def _record(model, split, cfg, lab, name, batch_size, report):
    """The run record of one :func:`fit` (see :mod:`cnnbook.records`)."""

    if hasattr(cfg, "settings"):  # a configuration from setup()
        chosen = {**cfg.settings(), "replicas": cfg.replicas}
    else:
        chosen = {
            k: v for k, v in vars(cfg).items() if k not in ("profile", "seed")
        }
    settings = {
        k: list(v) if isinstance(v, tuple) else v for k, v in chosen.items()
    }
    model_name = name or model.name.removeprefix("augmented_")
    extra = {"dry_run": True} if getattr(cfg, "dry_run", False) else {}
    return {
        **extra,
        "schema": records.SCHEMA,
        "lab": lab,
        "chapter": lab.split("-")[0],
        "model": model_name,
        "parameters": int(model.count_params()),
        "profile": cfg.profile,
        "seed": int(cfg.seed),
        "device": profiles.device_description(),
        "cores": machine.cpu_count(),
        "backend": keras.backend.backend(),
        "versions": records.versions(),
        "settings": settings,
        "data": {
            "dataset": split.dataset,
            "train_images": len(split.x_train),
            "test_images": len(split.x_test),
            "image_shape": list(split.x_train.shape[1:]),
        },
        "batch_size": batch_size,
        "epochs": report.epochs,
        "history": report.history,
        "train_accuracy": report.train_accuracy,
        "test_accuracy": report.test_accuracy,
        "test_loss": report.test_loss,
        "seconds": round(report.seconds, 2),
        "epoch_seconds": [round(s, 2) for s in report.epoch_seconds],
        "validation_seconds": [round(s, 2) for s in report.validation_seconds],
        "images_per_second": round(report.images_per_second, 1),
        "step_images_per_second": round(report.step_images_per_second, 1),
        "cpu_busy": round(report.cpu_busy, 3),
        "allocator": machine.tune_allocator(),
        "commit": records.commit_at_start(),
        "fingerprint": records.fingerprint(lab, settings),
    }


def _placement(report, profile, device):
    """One paragraph: this run against the recorded ones of the same
    settings and code (its fingerprint), or, when there are none, against
    the newest group of records, saying so. Chapter 2."""
    here = f"{profile} profile on {device.upper()}"
    expected = report.expected
    if expected is None:
        return f"no recorded run of this lab under the {here} to compare with"
    if expected.matched:
        kind = "with your settings and code"
    else:
        kind = (
            "none has your settings and code; compared with the newest "
            f"group, made with other {expected.differs}"
        )
    if expected.runs == 1:
        where = f"the recorded run ({kind}): {expected.low:.2%}"
    else:
        where = (
            f"{expected.runs} recorded runs ({kind}): {expected.low:.2%} "
            f"to {expected.high:.2%}, mean {expected.mean:.2%}"
        )
    if expected.others:
        where += (
            f"; {expected.others} record(s) of other settings or code left out"
        )
    return (
        f"your run: {report.test_accuracy:.2%}; {here}, {where}. "
        f"Verdict: {expected.verdict(report.test_accuracy)}."
    )


def _shown(path):
    try:
        return path.relative_to(records.REPO)
    except ValueError:
        return path


def predict_classes(model, x, batch_size=512):
    """Arg-max class predictions as a numpy array. Chapter 2."""
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    if isinstance(probs, (list, tuple)):
        probs = probs[0]
    return np.asarray(probs).argmax(axis=-1)


def augmented(net, shift=0.1, flip=True):
    """``net`` behind random shifts and mirror images. Chapters 3 to 6.

    The random layers are active only in training (``fit``); ``evaluate``
    and ``predict`` see the images unchanged. The returned model shares its
    weights with ``net``, so ``net`` is the trained network afterwards, and
    keeps the names of ``net``'s outputs (GoogLeNet's ``main``, ``aux1``,
    ``aux2``). Fashion-MNIST's clothes stay clothes when mirrored left to
    right. With neither ``shift`` nor ``flip``, ``net`` itself is returned.
    """
    if not shift and not flip:
        return net
    inputs = keras.Input(net.input_shape[1:], name="image")
    x = inputs
    if shift:
        shifter = keras.layers.RandomTranslation(
            shift, shift, fill_mode="constant", name="random_shift"
        )
        # Keras marks this layer "not jit-compilable" for TensorFlow's XLA,
        # which lacks its transform; on JAX that flag made the whole
        # training step run uncompiled, op by op (found by the GPU dry
        # run). JAX compiles the layer, and its random state still moves
        # on every step.
        if keras.backend.backend() == "jax":
            shifter.supports_jit = True
        x = shifter(x)
    if flip:
        x = keras.layers.RandomFlip("horizontal", name="random_mirror")(x)
    outputs = net(x)
    if isinstance(outputs, (list, tuple)):
        outputs = [
            keras.layers.Identity(name=name)(output)
            for name, output in zip(net.output_names, outputs)
        ]
    return keras.Model(inputs, outputs, name=f"augmented_{net.name}")
