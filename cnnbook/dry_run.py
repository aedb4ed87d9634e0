"""The GPU dry run: every lab's ``gpu`` settings, trained for two batches
on the CPU, so that a GPU user does not meet a crash a CPU could catch.

For each lab of :mod:`cnnbook.labs`, ``setup()`` under the ``gpu``
profile with ``$CNNBOOK_DRY_RUN=1`` keeps the networks at the width of the
``gpu`` settings and the ``gpu`` profile's dtype policy (and, under JAX
with several devices, the data-parallel path), but caps the data to two
batches and a one-batch evaluation (:func:`cnnbook.labs.dry_run_settings`).
Every network the lab registers is then built from those settings, put
behind the lab's augmentation and trained through :func:`cnnbook.train.fit`,
which writes a record marked ``"dry_run": true``. A loss that is not finite
(float16 overflow) fails the run.

The backend, the precision and the devices are fixed when Keras is first
imported, so the tests run ``python -m cnnbook.dry_run`` in a subprocess,
for example::

    KERAS_BACKEND=jax CNNBOOK_PRECISION=mixed_bfloat16 \\
    XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
    CNNBOOK_DISTRIBUTE=on python -m cnnbook.dry_run --results /tmp/dry \\
    ch05-resnet18

It never writes into the book's ``results/``: ``--results`` is required.
The tests add ``--xla_backend_optimization_level=0
--xla_llvm_disable_expensive_passes=true`` to ``XLA_FLAGS``: compiling the
networks, not running them, is most of the run's time, and the checks above
do not depend on how fast the compiled code is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback

from cnnbook import labs
from cnnbook.profiles import setup


class DryRunError(RuntimeError):
    """A lab's gpu settings did not survive two training steps."""


def _losses(report):
    values = [v for k, vs in report.history.items() if "loss" in k for v in vs]
    return [*values, report.test_loss]


def _compile_options(model, cfg, num_images):
    """The optimiser, losses and metrics a lab's notebook compiles with,
    for one or several outputs (GoogLeNet's auxiliary heads)."""
    import keras  # delays keras

    from cnnbook.train import cosine_schedule  # delays keras

    schedule = cosine_schedule(getattr(cfg, "lr", 0.1), cfg, num_images)
    if len(model.outputs) == 1:
        return {"optimizer": keras.optimizers.Adam(schedule)}
    names = list(model.output_names)
    main = "main" if "main" in names else names[0]
    return {
        "optimizer": keras.optimizers.Adam(schedule),
        "loss": {n: "sparse_categorical_crossentropy" for n in names},
        "loss_weights": {n: 1.0 if n == main else 0.3 for n in names},
        "metrics": {main: ["accuracy"]},
    }


def run_lab(stem):
    """Dry-run lab ``stem`` in this process; returns one summary dict a
    network (empty for a lab that trains nothing)."""
    import keras  # delays keras

    from cnnbook import data  # delays numpy
    from cnnbook.train import augmented, fit  # delays keras

    entry = labs.lab(stem)
    cfg = setup(stem)
    if not cfg.dry_run or cfg.profile != "gpu":
        raise DryRunError(
            f"{stem}: run with CNNBOOK_PROFILE=gpu and {labs.DRY_RUN_VAR}=1"
        )
    done = []
    if not entry.networks:
        return done
    settings = cfg.settings()
    split = (
        entry.split(settings)
        if entry.split
        else data.split(
            entry.dataset, cfg.train_size, cfg.test_size, prepare=entry.prepare
        )
    )
    for network in entry.networks:
        if not network.dry_run:
            continue
        for name in network.names_for(settings):
            start = time.perf_counter()
            keras.utils.set_random_seed(cfg.seed)
            net = entry.build(name, settings)
            model = augmented(
                net,
                shift=getattr(cfg, "shift", 0.0),
                flip=getattr(cfg, "mirror", False),
            )
            report = fit(
                model,
                split,
                cfg,
                lab=stem,
                name=name,
                bare_seconds=0.01,
                **_compile_options(model, cfg, len(split.x_train)),
            )
            losses = _losses(report)
            if not all(math.isfinite(v) for v in losses):
                raise DryRunError(f"{stem}/{name}: a loss is not finite")
            if keras.backend.backend() == "jax" and not model.jit_compile:
                eager = [
                    layer.name
                    for layer in model._flatten_layers()
                    if not layer.supports_jit
                ]
                raise DryRunError(
                    f"{stem}/{name}: JAX would train this model uncompiled, "
                    f"op by op (layers not marked jit-compilable: {eager})"
                )
            done.append(
                {
                    "lab": stem,
                    "model": name,
                    "parameters": int(net.count_params()),
                    "policy": keras.mixed_precision.dtype_policy().name,
                    "replicas": cfg.replicas,
                    "record": str(report.record_path),
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            del model, net
    return done


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cnnbook.dry_run")
    parser.add_argument("labs", nargs="*", help="lab stems (default all)")
    parser.add_argument(
        "--results",
        required=True,
        help="folder for the dry runs' records (never the book's results/)",
    )
    args = parser.parse_args(argv)

    os.environ["CNNBOOK_PROFILE"] = "gpu"
    os.environ[labs.DRY_RUN_VAR] = "1"
    os.environ["CNNBOOK_RESULTS"] = str(args.results)
    os.environ["CNNBOOK_FIGURES"] = "off"
    failed = []
    for stem in args.labs or list(labs.LABS):
        start = time.perf_counter()
        try:
            rows = run_lab(stem)
        except Exception:  # noqa: BLE001 - reported, and the next lab runs
            failed.append(stem)
            error = traceback.format_exc()
            print("DRYRUN-FAIL " + json.dumps({"lab": stem, "error": error}))
            continue
        seconds = time.perf_counter() - start
        print("DRYRUN " + json.dumps({"lab": stem, "seconds": seconds}))
        for row in rows:
            print("DRYRUN-NET " + json.dumps(row), flush=True)
    if failed:
        print(f"dry run failed for {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
