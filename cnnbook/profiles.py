"""Run profiles: how much work a notebook does on this machine.

Introduced in Chapter 1 and used by every training notebook:

* ``smoke``: CI; each notebook finishes in well under a minute on 2 cores.
* ``cpu``: a learner's laptop; real but shorter training, minutes.
* ``full``: the book's canonical runs, sized for two CPU cores (the stored
  runs took from 2 to 53 minutes a network; their records say how long).
* ``gpu``: the networks at the papers' widths on an NVIDIA GPU, in mixed
  precision, every lab within 90 s on one H100-class GPU (targets in
  :mod:`cnnbook.labs`); data-parallel over several GPUs with the JAX
  backend (:mod:`cnnbook.distribute`).

The profile is ``gpu`` when a GPU is visible and ``cpu`` otherwise; the
environment variable ``CNNBOOK_PROFILE`` overrides the choice. Each lab's
settings for the four profiles are declared once, in :mod:`cnnbook.labs`.
"""

from __future__ import annotations

import os
import platform
import random
from collections.abc import Mapping

from cnnbook import distribute, labs
from cnnbook.labs import PROFILES
from cnnbook.machine import smoke_eagerly, tune_allocator

ENV_VAR = "CNNBOOK_PROFILE"
# the seed of a run; Chapter 7 runs labs under several seeds
SEED_VAR = "CNNBOOK_SEED"
# The Keras dtype policy of the gpu profile; the others compute in float32.
PRECISION_VAR = "CNNBOOK_PRECISION"
PRECISIONS = ("mixed_bfloat16", "mixed_float16", "float32")


def _gpu_names():
    """Names of the accelerators the active Keras backend can see."""
    import keras  # delays keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # delays tensorflow

        gpus = tf.config.list_physical_devices("GPU")
        return [
            tf.config.experimental.get_device_details(g).get(
                "device_name", g.name
            )
            for g in gpus
        ]
    if backend == "jax":
        import jax  # delays jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch  # delays torch

        return [
            torch.cuda.get_device_name(i)
            for i in range(torch.cuda.device_count())
        ]
    return []


def _compute_capabilities():
    """CUDA compute capability (major, minor) of each visible GPU."""
    import keras  # delays keras

    backend = keras.backend.backend()
    found = []
    try:
        if backend == "tensorflow":
            import tensorflow as tf  # delays tensorflow

            for g in tf.config.list_physical_devices("GPU"):
                details = tf.config.experimental.get_device_details(g)
                found.append(tuple(details.get("compute_capability", (0, 0))))
        elif backend == "jax":
            import jax  # delays jax

            for d in jax.devices():
                if d.platform == "gpu":
                    major, minor = str(d.compute_capability).split(".")[:2]
                    found.append((int(major), int(minor)))
        elif backend == "torch":
            import torch  # delays torch

            for i in range(torch.cuda.device_count()):
                found.append(tuple(torch.cuda.get_device_capability(i)))
    except Exception:  # noqa: BLE001 - unknown: assume an older GPU
        found.append((0, 0))
    return found


def precision(profile):
    """The Keras dtype policy for ``profile``: mixed only under ``gpu``.

    bfloat16 keeps float32's exponent range, so it needs no loss scaling
    and nothing overflows; on Ampere and later GPUs (compute capability 8.0
    and up, A100, H100, H200) its tensor cores are as fast as float16's.
    Older GPUs (V100, T4) have no bfloat16 tensor cores and get
    ``mixed_float16``, for which Keras scales the loss itself.
    ``$CNNBOOK_PRECISION`` overrides the choice under ``gpu``.
    """
    if profile != "gpu":
        return "float32"
    chosen = os.environ.get(PRECISION_VAR, "").strip().lower()
    if chosen:
        if chosen not in PRECISIONS:
            raise ValueError(
                f"{PRECISION_VAR}={chosen!r} is not one of "
                f"{', '.join(PRECISIONS)}"
            )
        return chosen
    capabilities = _compute_capabilities()
    if capabilities and min(capabilities) >= (8, 0):
        return "mixed_bfloat16"
    return "mixed_float16" if capabilities else "mixed_bfloat16"


def device_description():
    """'GPU (name)' or 'CPU' for the active Keras backend."""
    names = _gpu_names()
    if names:
        return "GPU (" + ", ".join(names) + ")"
    return "CPU"


def current_profile():
    """The profile in force: ``$CNNBOOK_PROFILE``, else chosen by device."""
    chosen = os.environ.get(ENV_VAR, "").strip().lower()
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(
                f"{ENV_VAR}={chosen!r} is not a profile; use one of "
                f"{', '.join(PROFILES)} (or unset it to choose by device)"
            )
        return chosen
    return "gpu" if _gpu_names() else "cpu"


def _setup_without_keras(seed, labs):
    """:func:`setup` for a notebook that trains nothing where Keras is
    absent: numpy and ``random`` seeded, the banner says so."""

    import numpy as np  # delays numpy

    seed = int(os.environ.get(SEED_VAR, seed))
    random.seed(seed)
    np.random.seed(seed)
    profile = current_profile()
    print(
        f"cnnbook | profile: {profile} | Keras is not available here | "
        f"python {platform.python_version()}"
    )
    return labs.Config(profile=profile, seed=seed, replicas=1)


def setup(lab=None, /, *, seed=0, **overrides):
    """Start a notebook: pick the profile, seed everything, print the banner.

    ``setup("ch05-resnet18")`` returns the lab's settings for the profile
    in force, declared once in :data:`cnnbook.labs.LABS`, as a frozen,
    typed configuration (``cfg.epochs``, ``cfg.batch_size``...) with
    ``profile``, ``seed`` and ``replicas`` added; keyword arguments override
    settings (``setup("ch05-resnet18", epochs=5)``), and a name the lab does
    not declare is refused with the list of valid ones. ``setup()`` with no
    lab, for notebooks that train nothing, returns only profile, seed and
    replicas. Every training notebook calls this first, so its stored
    outputs say which device, backend and profile made them, and it shows
    the chosen settings as a table.

    Under ``gpu`` it also switches Keras to mixed precision
    (:func:`precision`); with several accelerators it makes training
    data-parallel (:func:`cnnbook.distribute.configure`), and
    ``cfg.replicas`` is the number of devices a batch is split over.
    ``$CNNBOOK_DRY_RUN=1`` caps the settings to two small batches and one
    epoch (:func:`cnnbook.labs.dry_run_settings`): the GPU dry run.
    """

    try:
        import keras  # delays keras
    except ImportError:
        # the grading sandbox of a chapter graded without Keras (Chapter
        # 1): a notebook that trains nothing still starts
        if lab is not None and not isinstance(lab, Mapping):
            raise
        return _setup_without_keras(seed, labs)

    from cnnbook import records  # delays jsonschema

    if isinstance(lab, Mapping):
        # the older form, setup({"smoke": {}, "cpu": {}, "full": {}}), is
        # kept for notebooks that train nothing (the exercises call it)
        if any(lab.values()):
            raise labs.SettingsError(
                "settings are declared once, in cnnbook.labs.LABS: call "
                'setup("<lab notebook stem>") instead of passing a dict'
            )
        lab = None
    if lab is None and overrides:
        raise labs.SettingsError(
            labs._unknown_message(None, sorted(overrides), ())
        )
    if lab is not None:
        labs.lab(lab)  # an unknown lab fails before anything else
    profile = current_profile()
    if profile != "smoke":  # the commit a run record will name
        records.commit_at_start()
    seed = int(os.environ.get(SEED_VAR, seed))
    keras.utils.set_random_seed(seed)
    tune_allocator()
    policy = precision(profile)
    keras.mixed_precision.set_dtype_policy(policy)
    backend = keras.backend.backend()
    backend_version = _backend_version(backend)
    if profile == "smoke" and lab is not None:
        # a lab's smoke run makes a few steps (at most 15): tracing costs
        # more than it saves; an exercise's training cell (setup() without
        # a lab) makes hundreds, where eager steps cost four times more
        smoke_eagerly()
    print(
        f"cnnbook | profile: {profile} | device: {device_description()} | "
        f"backend: {backend} {backend_version} | keras {keras.__version__} | "
        f"python {platform.python_version()}"
    )
    if policy != "float32":
        print(f"precision: {policy}")
    replicas = distribute.configure()
    if lab is None:
        return labs.Config(profile=profile, seed=seed, replicas=replicas)
    dry_run = labs.dry_run_requested()
    cfg = labs.configure(
        lab,
        profile,
        seed=seed,
        replicas=replicas,
        dry_run=dry_run,
        **overrides,
    )
    if dry_run:
        print(
            f"dry run ({labs.DRY_RUN_VAR}): two batches, one epoch; "
            "the record is marked as a dry run"
        )
    _show(cfg)
    return cfg


def _show(cfg):
    """The settings as a table: HTML in a notebook, text elsewhere."""
    table = cfg.table()
    try:
        from IPython import get_ipython  # delays IPython
        from IPython.display import Markdown, display  # delays IPython
    except ImportError:  # plain Python without IPython
        print(table)
        return
    if get_ipython() is None:
        print(table)
    else:
        display(Markdown(table))


def _backend_version(backend):
    try:
        return __import__(backend).__version__
    except (ImportError, AttributeError):
        return "?"
