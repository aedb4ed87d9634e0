"""What the machine is and how to keep it busy while training.

Introduced in Chapter 2 (used by :func:`cnnbook.setup` and
:mod:`cnnbook.train`).

On a CPU, training a convolutional network allocates and frees the same
large buffers (activations, gradients) at every step. glibc's allocator
hands blocks above its mmap threshold straight back to the kernel when
they are freed and asks for them again at the next step, so every step pays
for fresh, zero-filled pages; with few cores the threads then wait on the
kernel instead of computing. :func:`tune_allocator` keeps freed memory in
the process (the same effect as the environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``, applied with
``mallopt`` so it also works inside an already running Jupyter kernel).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import resource
import time

# mallopt parameters from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
# the largest mmap threshold glibc accepts on 64-bit systems (32 MiB)
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
TUNE_ENV = "CNNBOOK_TUNE"

_tuned = None


def cpu_count():
    """Cores this process may run on (the affinity mask, not the host)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def tune_allocator():
    """Keep freed buffers in the process instead of returning them. Ch. 2.

    Returns a short description of what was done (also when nothing was:
    not glibc, or ``CNNBOOK_TUNE=0``). Called once by :func:`cnnbook.setup`.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    if os.environ.get(TUNE_ENV, "1").strip() == "0":
        _tuned = f"allocator: untouched ({TUNE_ENV}=0)"
        return _tuned
    if platform.system() != "Linux":
        _tuned = "allocator: untouched (not Linux)"
        return _tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        _tuned = "allocator: untouched (no glibc mallopt)"
        return _tuned
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = all(
        mallopt(param, value)
        for param, value in (
            (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX),
            (_M_TRIM_THRESHOLD, 2**31 - 1),
            (_M_TOP_PAD, 64 * 1024 * 1024),
        )
    )
    _tuned = (
        "allocator: freed memory kept in the process"
        if ok
        else "allocator: mallopt refused a setting"
    )
    return _tuned


EAGER_ENV = "CNNBOOK_SMOKE_EAGER"


def smoke_eagerly():
    """Under the ``smoke`` profile, run Keras's training and test steps op
    by op instead of tracing them into graphs (TensorFlow only; returns
    whether it did). ``$CNNBOOK_SMOKE_EAGER=0`` keeps the graphs.

    A lab's smoke run checks that its notebook runs, in at most 15 steps:
    tracing and optimising the step's graph is most of its time (on two
    cores, GoogLeNet's smoke fit took 33 s of CPU traced and 7.7 s
    eagerly). The compiled steps are checked elsewhere: the GPU dry run
    trains every lab's networks compiled (``cnnbook.dry_run``). Called by
    :func:`cnnbook.setup` for a lab under ``smoke`` only: an exercise's
    training cell makes hundreds of small steps, which eagerly took four
    times longer (the chapter 2 grade: 23 s traced, 90 s eager); the
    ``cpu``, ``full`` and ``gpu`` profiles are never eager.
    """
    if os.environ.get(EAGER_ENV, "1").strip() == "0":
        return False
    import keras  # delays keras

    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf  # delays tensorflow; the backend's own switch

    tf.config.run_functions_eagerly(True)
    return True


class CpuMeter:
    """CPU time of this process over a span of wall time. Chapter 2.

    ``busy`` is the share of the available cores the process kept busy:
    1.0 means every core computed all the time.
    """

    def __enter__(self):
        self._wall = time.perf_counter()
        self._cpu = _process_cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = _process_cpu_seconds() - self._cpu
        cores = cpu_count()
        self.busy = self.cpu_seconds / max(self.seconds * cores, 1e-9)
        return False


def _process_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (
        usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
    )
