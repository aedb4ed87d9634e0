"""Data-parallel training on two virtual CPU devices gives one device's run.

The JAX backend runs in a subprocess (the backend and XLA's device count are
fixed when Keras and JAX are first imported), with two host devices.
"""

import json
import os
import subprocess
import sys

import pytest

from cnnbook import distribute

SCRIPT = r"""
import json

import keras
import numpy as np

from cnnbook import distribute, setup


def run(mode):
    cfg = setup(seed=0)
    replicas = distribute.configure(mode, verbose=False)
    rng = np.random.default_rng(0)
    x = rng.random((512, 12, 12, 1), dtype=np.float32)
    y = (x[:, :6].mean(axis=(1, 2, 3)) > x[:, 6:].mean(axis=(1, 2, 3)))
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.2, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        x, y.astype("int32"), batch_size=64, epochs=3, shuffle=False,
        verbose=0,
    )
    kernel = model.layers[0].kernel.value
    return {
        "replicas": replicas,
        "cfg_replicas": cfg.replicas,
        "loss": [float(v) for v in history.history["loss"]],
        "weight_devices": len(kernel.sharding.device_set),
    }


print("RESULT " + json.dumps({m: run(m) for m in ("off", "on")}))
"""


def test_data_parallel_matches_one_device(root):
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        CNNBOOK_PROFILE="smoke",
        CNNBOOK_DISTRIBUTE="on",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    one, two = result["off"], result["on"]
    assert one["replicas"] == 1 and one["weight_devices"] == 1
    # setup() itself turned data parallelism on (CNNBOOK_DISTRIBUTE=on)
    assert two["cfg_replicas"] == 2
    assert two["replicas"] == 2 and two["weight_devices"] == 2
    assert "data-parallel over 2 devices" in done.stdout
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-4, abs=1e-5)
    assert one["loss"][-1] < one["loss"][0]  # it did train


def test_tensorflow_stays_on_one_device(capsys):
    # this process: TensorFlow, no GPU
    assert distribute.configure() == 1 and distribute.replicas() == 1
    assert distribute.global_batch_size(128) == 128
    assert capsys.readouterr().out == ""


def test_bad_mode_is_explained():
    with pytest.raises(ValueError, match="auto, on, off"):
        distribute.configure("sometimes")
