"""Run profiles: how much work a notebook does on this machine.

Introduced in Chapter 1 and used by every training notebook:

* ``smoke``: CI; each notebook finishes in well under a minute on 2 cores.
* ``cpu``: a learner's laptop; real but shorter training, minutes.
* ``full``: the training each chapter promises; a GPU, or for chapters
  2-5 up to half an hour a notebook on two CPU cores.

The profile is ``full`` when a GPU is visible and ``cpu`` otherwise; the
environment variable ``CNNBOOK_PROFILE`` overrides the choice.
"""

from __future__ import annotations

import os
import platform
from types import SimpleNamespace

PROFILES = ("smoke", "cpu", "full")
ENV_VAR = "CNNBOOK_PROFILE"
# the seed of a run; Chapter 7 runs labs under several seeds
SEED_VAR = "CNNBOOK_SEED"


def _gpu_names():
    """Names of the accelerators the active Keras backend can see."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return [
            tf.config.experimental.get_device_details(g).get(
                "device_name", g.name
            )
            for g in gpus
        ]
    if backend == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return [
            torch.cuda.get_device_name(i)
            for i in range(torch.cuda.device_count())
        ]
    return []


def device_description():
    """'GPU (name)' or 'CPU' for the active Keras backend."""
    names = _gpu_names()
    if names:
        return "GPU (" + ", ".join(names) + ")"
    return "CPU"


def current_profile():
    """The profile in force: ``$CNNBOOK_PROFILE`` or detected from the device."""
    chosen = os.environ.get(ENV_VAR, "").strip().lower()
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(
                f"{ENV_VAR}={chosen!r} is not a profile; use one of "
                f"{', '.join(PROFILES)} (or unset it to choose by device)"
            )
        return chosen
    return "full" if _gpu_names() else "cpu"


def setup(settings=None, seed=0):
    """Start a notebook: pick the profile, seed everything, print the banner.

    ``settings`` maps each profile name to a dict of that profile's values
    (epochs, subset sizes...); the selected dict comes back as a namespace
    with ``profile`` added. Every training notebook calls this first, so
    its stored outputs say which device, backend and profile made them.
    """
    import keras

    from cnnbook.machine import tune_allocator

    profile = current_profile()
    seed = int(os.environ.get(SEED_VAR, seed))
    keras.utils.set_random_seed(seed)
    tune_allocator()
    chosen = {}
    if settings:
        missing = [p for p in PROFILES if p not in settings]
        if missing:
            raise ValueError(f"settings lack the profile(s) {missing}")
        chosen = dict(settings[profile])
    backend = keras.backend.backend()
    backend_version = _backend_version(backend)
    print(
        f"cnnbook | profile: {profile} | device: {device_description()} | "
        f"backend: {backend} {backend_version} | keras {keras.__version__} | "
        f"python {platform.python_version()}"
    )
    if chosen:
        print("settings: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    return SimpleNamespace(profile=profile, seed=seed, **chosen)


def _backend_version(backend):
    try:
        return __import__(backend).__version__
    except (ImportError, AttributeError):
        return "?"
