"""Several accelerators: data-parallel training through Keras's own API.

Called by :func:`cnnbook.setup`, so notebooks never deal with it. With the
JAX backend and more than one GPU (or TPU) visible, every model built
afterwards keeps one copy of its weights on each device, and ``fit`` splits
each batch between them
(:class:`keras.distribution.DataParallel`); gradients are averaged across
the devices, so the result is that of one device with the same global batch.

With TensorFlow (or PyTorch) and several GPUs, training stays on the first
GPU and a note says so: Keras's distribution API is implemented for JAX,
and TensorFlow's ``MirroredStrategy`` would need every model built inside
``strategy.scope()``, a second code path in every notebook.

``$CNNBOOK_DISTRIBUTE`` chooses: ``auto`` (default: data-parallel over
accelerators when there are several), ``off`` (never), ``on`` (over every
device of the default JAX backend, CPU devices included: how the tests check
it on two virtual CPU devices made with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``).
"""

from __future__ import annotations

import os

ENV_VAR = "CNNBOOK_DISTRIBUTE"
MODES = ("auto", "on", "off")

_replicas = 1


def replicas():
    """Number of devices each batch is split over (1 without distribution).

    A trainer that wants the same batch size *per device* as on one GPU
    multiplies the batch size by this (:func:`global_batch_size`).
    """
    return _replicas


def global_batch_size(per_device):
    """``per_device`` times :func:`replicas`: the batch ``fit`` should get."""
    return int(per_device) * _replicas


def configure(mode=None, verbose=True):
    """Make training data-parallel when several accelerators are visible.

    Returns the number of replicas (1 when nothing was distributed). Any
    distribution set by an earlier call is cleared first, so calling it
    again (each notebook's ``setup``) is safe.
    """
    global _replicas
    import keras  # delays keras

    mode = (mode or os.environ.get(ENV_VAR, "") or "auto").strip().lower()
    if mode not in MODES:
        raise ValueError(
            f"{ENV_VAR}={mode!r} is not one of {', '.join(MODES)}"
        )
    backend = keras.backend.backend()
    _replicas = 1
    if backend == "jax":
        keras.distribution.set_distribution(None)
        if mode == "off":
            return 1
        devices = _jax_devices(mode)
        if len(devices) > 1:
            keras.distribution.set_distribution(
                keras.distribution.DataParallel(devices=devices)
            )
            _replicas = len(devices)
            if verbose:
                print(
                    f"data-parallel over {_replicas} devices "
                    f"({', '.join(devices)}): each batch is split "
                    "between them"
                )
        return _replicas
    if mode != "off" and verbose:
        count = _gpu_count(backend)
        if count > 1:
            print(
                f"note: {count} GPUs visible, but with the {backend} backend "
                "training uses the first one; KERAS_BACKEND=jax trains on "
                "all of them (data-parallel)"
            )
    return 1


def _jax_devices(mode):
    """Keras device names ('gpu:0', ...) to spread training over."""
    import keras  # delays keras

    devices = keras.distribution.list_devices()
    if mode == "auto":
        devices = [d for d in devices if not d.lower().startswith("cpu")]
    return devices


def _gpu_count(backend):
    try:
        if backend == "tensorflow":
            import tensorflow as tf  # delays tensorflow

            return len(tf.config.list_physical_devices("GPU"))
        if backend == "torch":
            import torch  # delays torch

            return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no GPU runtime: one device
        return 0
    return 0
