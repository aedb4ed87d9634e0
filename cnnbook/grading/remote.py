"""The checks' calls into the sandboxed kernel.

Introduced with the grader (Chapter 1). The checks run in the grader's
own process against a :class:`Remote`, the learner's namespace seen from
outside: each call of a learner's function (on inputs the checks chose)
is written into the sandbox's scratch folder (:mod:`cnnbook.grading.wire`),
run in the kernel by :func:`cnnbook.grading.server.serve`, and only the
result comes back (read by :mod:`cnnbook.grading.reader`). Expected
values, reference implementations and the judgement never exist in the
learner's process.
"""

from __future__ import annotations

import os
import time

import numpy as np

from cnnbook.grading import reader, wire
from cnnbook.grading.api import (
    CheckFailure,
    KernelStopped,
    LearnerError,
    SandboxedFunction,
    SandboxedNamespace,
)
from cnnbook.grading.timeout import Timeout
from cnnbook.kinds import is_layer

# One call of a learner's function, made by the checks (see _Remote).
_CALL = (
    "__import__('sys').modules['_cnnbook_serve'].serve({path!r}, globals())"
)


class Remote(SandboxedNamespace):
    """The learner's namespace, seen from the grader: calls go to the kernel.

    ``remote["conv_forward"](A, W, b, 1, 0)`` writes the arguments into the
    scratch folder, runs :func:`cnnbook.grading.server.serve` in the kernel and
    returns the decoded result; arrays the call changed in place are
    changed here too, and so are the weights of a model passed in. An
    exception of the learner's code is raised here under its own name.
    """

    def __init__(self, session, names, slack):
        self.session, self.slack = session, slack
        # a fresh folder, used through a descriptor: if the notebook's code
        # swaps it for a link, the grader still writes and reads only here
        self.rpc, self.fd = session.shared_folder("rpc")
        self.count = 0
        self.deadline = None
        self.defined = {}
        self.defined = self._request({"op": "defined", "names": list(names)})

    # -- the Mapping the checks see
    def __contains__(self, name):
        return name in self.defined

    def __getitem__(self, name):
        if name not in self.defined:
            raise KeyError(name)
        return RemoteFunction(self, name)

    def get(self, name, default=None):
        return self[name] if name in self else default

    def start_phase(self, seconds):
        self.deadline = time.monotonic() + seconds

    # -- one call
    def call(self, name, args, kwargs, block=False, weights=False, seed=None):
        left = 3600.0
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0.5:
                raise Timeout()
        arrays = {}
        request = {
            "op": "call",
            "name": name,
            "args": [wire.encode(a, arrays, True) for a in args],
            "kwargs": [
                [k, wire.encode(v, arrays, True)] for k, v in kwargs.items()
            ],
            "block": block,
            "weights": weights,
            "seed": seed,
            "timeout": left,
        }
        answer, out_arrays = self._exchange(request, arrays, left)
        if not answer.get("ok"):
            if answer.get("timeout"):
                raise Timeout()
            error = answer.get("error")
            raise _learner_error(error if isinstance(error, dict) else {})
        try:
            # one budget for all the answer holds: its value and every
            # argument it says it changed (each at most once)
            budget = reader.Budget(out_arrays, weights=weights)
            for index, tree in _changed(answer.get("changed"), args):
                _update_argument(
                    args[index], reader.decode(tree, out_arrays, budget=budget)
                )
            return reader.decode(answer["value"], out_arrays, budget=budget)
        except Exception as exc:  # noqa: BLE001 - whatever the kernel wrote
            raise CheckFailure(
                f"{name} returned something the grader cannot read: "
                f"{type(exc).__name__}: {str(exc)[:200]}"
            ) from None

    def _request(self, request):
        answer, arrays = self._exchange(request, {}, 60)
        value = answer.get("value")
        if not answer.get("ok") or not isinstance(value, dict):
            raise CheckFailure(
                "the notebook's code broke the grader's calls into it"
            )
        return {str(k): bool(v) for k, v in value.items()}

    def _exchange(self, request, arrays, seconds):
        self.count += 1
        name = f"r{self.count}"
        base = os.path.join(self.rpc, name)
        wire.write(name, request, arrays, dir_fd=self.fd)
        error = self.session.run(
            _CALL.format(path=base), timeout=seconds + self.slack
        )
        if error and error.startswith("KernelDied"):
            self.session.restart()
            raise KernelStopped()
        if error and error.startswith("CellTimeout"):
            raise Timeout()
        try:
            answer, arrays = reader.read(name + ".out", dir_fd=self.fd)
            if not isinstance(answer, dict):
                raise ValueError("not an answer")
            return answer, arrays
        except wire.WireError as exc:
            raise CheckFailure(str(exc)) from None
        except (OSError, ValueError, TypeError):
            why = f" ({error})" if error else ""
            raise CheckFailure(
                f"the notebook's code broke the grader's calls into it{why}"
            ) from None
        finally:
            for suffix in (".json", ".npz", ".out.json", ".out.npz"):
                try:
                    os.remove(name + suffix, dir_fd=self.fd)
                except OSError:
                    pass

    def close(self):
        os.close(self.fd)


class RemoteFunction(SandboxedFunction):
    """A learner's function that runs in the sandboxed kernel."""

    def __init__(self, remote, name, **options):
        self.remote, self.__name__, self.options = remote, name, options

    def __call__(self, *args, **kwargs):
        return self.remote.call(self.__name__, args, kwargs, **self.options)

    def with_options(self, weights=None, seed=None):
        """The same function; models come back with their weights
        (``weights=True``), or the kernel seeds Keras first (``seed``)."""
        options = dict(self.options)
        if weights is not None:
            options["weights"] = weights
        if seed is not None:
            options["seed"] = int(seed)
        return RemoteFunction(self.remote, self.__name__, **options)

    def block(self, inputs, *args, **kwargs):
        """Call on ``keras.Input`` tensors made in the kernel.

        ``inputs`` holds :class:`cnnbook.grading.wire.KerasInput` markers,
        passed as the first arguments; a Keras tensor that comes back
        arrives as the model from those inputs to it.
        """
        return self.remote.call(
            self.__name__,
            (*inputs, *args),
            kwargs,
            **dict(self.options, block=True),
        )


# characters of an error's message kept from what the kernel wrote (the
# kernel cuts at this length too, but the learner's code may replace it)
MAX_ERROR_CHARS = 500


def _learner_error(error):
    kind = str(error.get("type") or "Exception")[:80]
    message = str(error.get("message") or "")
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + " [cut]"
    line = error.get("line")
    line = line if type(line) is int and 0 < line < 10**7 else None
    if error.get("not_implemented"):
        return NotImplementedError(message)
    cls = type(kind, (LearnerError,), {})
    return cls(message, line)


def _changed(changed, args):
    """The (index, tree) pairs of ``changed`` (an answer's list of changed
    arguments) that name an argument the grader passed, once each, as the
    kind of value it was: an array as an array, a model as a model."""
    if not changed:
        return []
    if not isinstance(changed, list) or len(changed) > len(args):
        raise wire.WireError("it names more changed arguments than it got")
    out, seen = [], set()
    for item in changed:
        index, tree = (None, None)
        if isinstance(item, list) and len(item) == 2:
            index, tree = item
        if type(index) is not int or not 0 <= index < len(args):
            raise wire.WireError("it names an argument it did not get")
        if index in seen:
            raise wire.WireError("it names one changed argument twice")
        seen.add(index)
        kind = tree.get("t") if isinstance(tree, dict) else None
        original = args[index]
        if isinstance(original, np.ndarray):
            expected = "array"
        elif is_layer(original, "Model"):
            expected = "model"
        else:
            raise wire.WireError("it names an argument that cannot change")
        if kind != expected:
            raise wire.WireError(
                f"it changed an argument into a {str(kind)[:20]}"
            )
        if kind == "model" and not isinstance(tree.get("weights"), list):
            raise wire.WireError("a changed model came without its weights")
        out.append((index, tree))
    return out


def _update_argument(original, changed):
    if isinstance(original, np.ndarray):
        if getattr(changed, "shape", None) == original.shape:
            original[...] = changed
        else:  # reshaped in place: still a change the checks must see
            original[...] = np.nan if original.dtype.kind in "fc" else 0
    elif is_layer(original, "Model") and is_layer(changed, "Model"):
        original.set_weights(changed.get_weights())
        original._cnnbook_compiled = getattr(
            changed, "_cnnbook_compiled", False
        )
