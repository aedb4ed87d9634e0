"""``python -m cnnbook bench``: what this machine does with each network.

Introduced in Chapter 7. For every network the labs train, the bare step
rate (training images per second of the compiled step, data in memory,
nothing else of a run going on: no validation, callbacks or shuffling;
other work on the machine still takes its share) on the active Keras
backend, at the size and batch of the labs' ``full`` profile. Compare it
with the end-to-end rate in a run record to see what validation, feeding
and the machine cost.
"""

from __future__ import annotations

import time

import numpy as np

from cnnbook import machine
from cnnbook.labs import LABS


def networks():
    """Name -> (builder, input shape, batch size) of the labs' networks,
    from each lab's ``bench`` entries in :mod:`cnnbook.labs` (built with
    the lab's ``full`` settings, at its ``full`` batch size)."""

    found = {}
    for lab in LABS.values():
        full = lab.settings("full")
        for entry in lab.bench:
            found[entry.name] = (
                lambda lab=lab, entry=entry, full=full: lab.build(
                    entry.network, full
                ),
                tuple(entry.input_shape),
                full["batch_size"],
            )
    return found


def run(names=None, seconds=5.0, batches=256):
    """Bare images/s of each network and the share of the cores it kept
    busy meanwhile; returns ``[(name, params, batch, rate, busy)]``."""
    import keras  # delays keras

    from cnnbook.train import bare_step_rate  # delays keras

    machine.tune_allocator()
    chosen = networks()
    unknown = set(names or ()) - set(chosen)
    if unknown:
        raise ValueError(
            f"unknown network(s) {sorted(unknown)}; choose from "
            f"{', '.join(chosen)}"
        )
    rows = []
    for name in names or chosen:
        build, shape, batch = chosen[name]
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
        rng = np.random.default_rng(0)
        x = rng.random((batch * batches, *shape), dtype=np.float32)
        y = rng.integers(0, 10, batch * batches)
        bare_step_rate(model, x, y, batch, 1.0)  # compiles the step
        with machine.CpuMeter() as meter:
            rate = bare_step_rate(model, x, y, batch, seconds)
        rows.append((name, model.count_params(), batch, rate, meter.busy))
        del model
        keras.backend.clear_session()
    return rows


def forward_seconds(model, batch, repeats):
    """Median wall time of one forward pass of ``model`` over ``batch``,
    after two passes that compile it. Chapter 6."""
    model.predict_on_batch(batch)
    model.predict_on_batch(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
