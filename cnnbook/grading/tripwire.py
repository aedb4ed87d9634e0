"""The tripwire: a framework's function doing an exercise's work.

Introduced with the grader (Chapter 1). Some exercises ask the learner to
implement an operation a library already has (zero padding, convolution,
pooling, local response normalisation). In the grading sandbox,
:func:`install` runs once in the learner's kernel, before any of the
learner's cells, and watches every call the grader makes to such an
exercise's function (:func:`cnnbook.grading.server.serve` announces each
call with the audit events ``cnnbook.watch``).

While a call is watched:

- a profile function (:func:`sys.setprofile`) notes every Python function
  that starts; a forbidden function is recognised by its *code* (the file
  it was compiled from and its name), so an alias, a reference taken
  before grading, ``getattr``, a copy made with ``types.FunctionType`` or
  ``marshal`` are all the same function to it;
- an audit hook (:func:`sys.addaudithook`, which no Python code can
  remove) notes what could switch the watch off or hide work from it:
  setting another profile or trace function, asking :mod:`gc` for
  objects, :mod:`ctypes` memory access, rebuilding code objects or
  replacing a function's code, looking at stack frames, and starting
  processes or threads;
- ``sys.getprofile`` is gone from the kernel, so the profile function
  cannot be fetched and changed.

The verdict goes back with the answer: a forbidden function that ran, or
anything that could have hidden one, earns the exercise 0 with a message
that names it. The state lives in closures that only the audit-hooked
routes (gc, ctypes, frames) could reach. What this does not cover (code
copied out of a library's source, a notebook that rewrites the grader's
own serving code in its kernel) is written in the grading reference.
"""

from __future__ import annotations

import _thread
import importlib
import os
import sys

# (path fragment of the file that defines it, function name, what to call
# it in the message). A fragment ending in "/" matches any file under it;
# the name "*" matches every function defined in such a file.
# Chapter 1 grades without these libraries (cnnbook.grading.package's
# ABSENT_LIBRARIES): any of their functions that runs during a watched
# call, private helpers and 1-D variants included, is one too many.
WHOLE_LIBRARIES = (
    ("/scipy/", "*", "SciPy"),
    ("/tensorflow/", "*", "TensorFlow"),
    ("/keras/", "*", "Keras"),
    ("/jax/", "*", "JAX"),
    ("/jaxlib/", "*", "JAX"),
    ("/torch/", "*", "PyTorch"),
    ("/cv2/", "*", "OpenCV"),
    ("/PIL/", "*", "Pillow"),
    ("/skimage/", "*", "scikit-image"),
)
# A fragment "c:MODULE" names a function written in C (no Python frame of
# it ever runs): the watch compares every C call with it by identity.
PAD = (
    ("numpy/lib/_arraypad_impl.py", "pad", "numpy.pad"),
    ("keras/src/ops/numpy.py", "pad", "keras.ops.pad"),
    ("keras/src/backend/", "pad", "Keras's pad"),
    ("tensorflow/python/ops/array_ops.py", "pad", "tf.pad"),
    ("tensorflow/python/ops/array_ops.py", "pad_v2", "tf.pad"),
    ("jax/_src/numpy/", "pad", "jax.numpy.pad"),
    ("jax/_src/lax/lax.py", "pad", "jax.lax.pad"),
    *WHOLE_LIBRARIES,
)
CONV = (
    ("keras/src/ops/nn.py", "conv", "keras.ops.conv"),
    ("keras/src/ops/nn.py", "depthwise_conv", "keras.ops.depthwise_conv"),
    ("keras/src/backend/", "conv", "Keras's conv"),
    ("tensorflow/python/ops/nn_ops.py", "conv2d", "tf.nn.conv2d"),
    ("tensorflow/python/ops/nn_ops.py", "conv2d_v2", "tf.nn.conv2d"),
    ("tensorflow/python/ops/nn_ops.py", "convolution", "tf.nn.convolution"),
    ("tensorflow/python/ops/nn_ops.py", "convolution_v2", "tf.nn.convolution"),
    ("tensorflow/python/ops/gen_nn_ops.py", "conv2d", "tf.raw_ops.Conv2D"),
    ("scipy/signal/_signaltools.py", "correlate", "scipy.signal.correlate"),
    ("scipy/signal/_signaltools.py", "convolve", "scipy.signal.convolve"),
    (
        "scipy/signal/_signaltools.py",
        "correlate2d",
        "scipy.signal.correlate2d",
    ),
    ("scipy/signal/_signaltools.py", "convolve2d", "scipy.signal.convolve2d"),
    (
        "scipy/signal/_signaltools.py",
        "fftconvolve",
        "scipy.signal.fftconvolve",
    ),
    ("scipy/signal/_signaltools.py", "oaconvolve", "scipy.signal.oaconvolve"),
    ("scipy/ndimage/_filters.py", "correlate", "scipy.ndimage.correlate"),
    ("scipy/ndimage/_filters.py", "convolve", "scipy.ndimage.convolve"),
    ("numpy/_core/numeric.py", "convolve", "numpy.convolve"),
    ("numpy/_core/numeric.py", "correlate", "numpy.correlate"),
    ("c:numpy._core.multiarray", "correlate", "NumPy's C correlate"),
    ("c:numpy._core.multiarray", "correlate2", "NumPy's C correlate"),
    ("jax/_src/lax/convolution.py", "conv_general_dilated", "jax.lax.conv"),
    *WHOLE_LIBRARIES,
)
POOL = (
    ("keras/src/ops/nn.py", "max_pool", "keras.ops.max_pool"),
    ("keras/src/ops/nn.py", "average_pool", "keras.ops.average_pool"),
    ("keras/src/backend/", "max_pool", "Keras's max_pool"),
    ("keras/src/backend/", "average_pool", "Keras's average_pool"),
    ("tensorflow/python/ops/nn_ops.py", "max_pool", "tf.nn.max_pool"),
    ("tensorflow/python/ops/nn_ops.py", "max_pool_v2", "tf.nn.max_pool"),
    ("tensorflow/python/ops/nn_ops.py", "max_pool2d", "tf.nn.max_pool2d"),
    ("tensorflow/python/ops/nn_ops.py", "avg_pool", "tf.nn.avg_pool"),
    ("tensorflow/python/ops/nn_ops.py", "avg_pool_v2", "tf.nn.avg_pool"),
    ("tensorflow/python/ops/nn_ops.py", "avg_pool2d", "tf.nn.avg_pool2d"),
    ("tensorflow/python/ops/nn_ops.py", "pool", "tf.nn.pool"),
    ("tensorflow/python/ops/nn_ops.py", "pool_v2", "tf.nn.pool"),
    ("tensorflow/python/ops/gen_nn_ops.py", "max_pool", "tf.raw_ops.MaxPool"),
    ("tensorflow/python/ops/gen_nn_ops.py", "avg_pool", "tf.raw_ops.AvgPool"),
    (
        "scipy/ndimage/_filters.py",
        "maximum_filter",
        "scipy.ndimage.maximum_filter",
    ),
    (
        "scipy/ndimage/_filters.py",
        "uniform_filter",
        "scipy.ndimage.uniform_filter",
    ),
    (
        "jax/_src/lax/windowed_reductions.py",
        "reduce_window",
        "jax.lax.reduce_window",
    ),
    *WHOLE_LIBRARIES,
)
LRN = (
    (
        "tensorflow/python/ops/gen_nn_ops.py",
        "lrn",
        "tf.nn.local_response_normalization",
    ),
)

# Library code that runs other code in a thread it keeps: a pool started
# before the checks could do the work out of the profile function's sight.
POOLS = (
    "concurrent/futures/",
    "multiprocessing/pool.py",
    "multiprocessing/dummy",
)

# Audit events that could switch the watch off or do the work out of its
# sight, with what they mean in a message.
_TAMPER = {
    "sys.setprofile": "it set a profile function (sys.setprofile)",
    "sys.settrace": "it set a trace function (sys.settrace)",
    "gc.get_objects": "it searched the interpreter's objects (gc)",
    "gc.get_referrers": "it searched the interpreter's objects (gc)",
    "gc.get_referents": "it searched the interpreter's objects (gc)",
    "code.__new__": "it built a code object",
    "sys._getframe": "it looked at the grader's stack frames",
    "sys._current_frames": "it looked at the grader's stack frames",
    "os.fork": "it started a process",
    "os.forkpty": "it started a process",
    "os.system": "it started a process",
    "os.posix_spawn": "it started a process",
    "os.spawn": "it started a process",
    "os.exec": "it started a process",
    "subprocess.Popen": "it started a process",
}
_FRAME_ATTRIBUTES = {"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"}
# ctypes reaches the interpreter's memory; loading a library is harmless
_CTYPES_HARMLESS = {"ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle"}


def install(forbidden):
    """Arm the tripwire in this process (the sandboxed kernel).

    ``forbidden`` maps a learner's function name to (exercise key, what
    the exercise asks, [(path fragment, function name, label), ...]).
    """

    specs = {}
    for name, (key, asks, functions) in forbidden.items():
        by_code, in_c = {}, []
        for fragment, func, label in functions:
            if fragment.startswith("c:"):
                module = sys.modules.get(fragment[2:])
                if module is None:
                    try:
                        module = importlib.import_module(fragment[2:])
                    except ImportError:  # not installed: nothing to call
                        continue
                if hasattr(module, func):
                    in_c.append((getattr(module, func), label))
                continue
            by_code.setdefault(func, []).append((fragment, label))
        specs[name] = (key, asks, by_code, tuple(in_c))
    setprofile = sys.setprofile
    get_ident = _thread.get_ident
    # the sandbox's cnnbook (this file is cnnbook/grading/tripwire.py)
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    start_thread = _thread.start_new_thread
    start_new = getattr(_thread, "start_new", start_thread)
    current_frames = sys._current_frames
    listdir, getpid = os.listdir, os.getpid
    state = {"watch": None, "own": 0}

    def children():
        """Live processes of this kernel (its threads' children)."""
        pid = getpid()
        found = set()
        try:
            for tid in listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    found |= set(fh.read().split())
        except OSError:
            pass
        return found

    def threads():
        return set(current_frames())

    software = tuple(
        os.path.join(p, "")
        for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, package_dir}
        if p
    )

    def workers():
        """Whether a thread started since the kernel's start (not this
        one) runs the notebook's code or a pool that could run it: its
        stack holds a frame of a cell, or of a thread or process pool."""
        me = get_ident()
        for tid, frame in current_frames().items():
            if tid == me or tid in baseline:
                continue
            while frame is not None:
                name = frame.f_code.co_filename
                if not name.startswith(software) or any(
                    pool in name for pool in POOLS
                ):
                    return True
                frame = frame.f_back
        return False

    def note(watch, what):
        if what not in watch["problems"]:
            watch["problems"].append(what)

    def watcher(watch):
        """The profile function of one watched call (its state bound in
        its closure, so each event costs as little as it can)."""
        lookup = watch["by_code"].get
        anywhere = watch["by_code"].get("*", ())
        in_c = watch["in_c"]

        def profile(frame, event, arg):
            if event == "call":
                code = frame.f_code
                hits = lookup(code.co_name)
                if hits is not None:
                    for fragment, label in hits:
                        if fragment in code.co_filename:
                            note(watch, f"{label} did the work")
                for fragment, label in anywhere:
                    if fragment in code.co_filename:
                        note(watch, f"{label} did the work")
            elif event == "c_call":
                # compared by identity: hashing a bound method may run code
                if arg is start_thread or arg is start_new:
                    note(watch, "it started a thread the grader cannot watch")
                for func, label in in_c:
                    if arg is func:
                        note(watch, f"{label} did the work")

        return profile

    def own(call, *args):
        state["own"] += 1
        try:
            return call(*args)
        finally:
            state["own"] -= 1

    def start(name, box):
        if state["watch"] is not None:
            note(state["watch"], "the grader's watch was started twice")
            return
        if name not in specs:
            return
        key, asks, by_code, in_c = specs[name]
        token = object()
        watch = {
            "token": token,
            "name": name,
            "key": key,
            "asks": asks,
            "by_code": by_code,
            "in_c": in_c,
            "problems": [],
            "threads": own(threads),
        }
        if own(children):
            note(watch, "processes of the notebook's own were running")
        if own(workers):
            note(watch, "threads of the notebook's own were running")
        state["watch"] = watch
        box.append(token)
        own(setprofile, watcher(watch))

    def stop(box):
        watch = state["watch"]
        if watch is None or not box or box[0] is not watch["token"]:
            if watch is not None:
                note(watch, "the grader's watch was stopped by other code")
            return
        own(setprofile, None)
        state["watch"] = None
        if own(threads) - watch["threads"]:
            note(watch, "it started threads the grader cannot watch")
        if own(children):
            note(watch, "processes of the notebook's own were running")
        box.append(
            {
                "key": watch["key"],
                "asks": watch["asks"],
                "problems": list(watch["problems"]),
            }
        )

    def hook(event, args):
        if event == "cnnbook.watch":
            if state["own"]:
                return
            if args and args[0] == "start" and len(args) == 3:
                start(args[1], args[2])
            elif args and args[0] == "stop" and len(args) == 2:
                stop(args[1])
            return
        watch = state["watch"]
        if watch is None or state["own"]:
            return
        what = _TAMPER.get(event)
        if what is None:
            if event.startswith("os.exec") or event.startswith("os.spawn"):
                what = "it started a process"
            elif event.startswith("ctypes.") and event not in _CTYPES_HARMLESS:
                what = "it reached into the interpreter's memory (ctypes)"
            elif event in ("object.__getattr__", "object.__setattr__"):
                attr = args[1] if len(args) > 1 else None
                if event == "object.__getattr__" and attr in _FRAME_ATTRIBUTES:
                    what = "it looked at the grader's stack frames"
                elif event == "object.__setattr__" and attr == "__code__":
                    what = "it replaced a function's code"
        if what is not None:
            note(watch, what)

    baseline = threads()  # the kernel's own threads, before any cell
    sys.addaudithook(hook)
    # the profile function must not be fetched (and changed) by the notebook
    del sys.getprofile
