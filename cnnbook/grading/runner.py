"""Running one exercise's checks against a namespace, and its result.

Introduced in Chapter 1. :func:`run_exercise` runs the *visible* checks
and, when asked, the *hidden* randomised ones, and never raises: every
failure becomes a :class:`Result` with a message for the learner. It runs
in the learner's kernel (``check("1.1")``, each check under
:func:`cnnbook.grading.timeout.call_with_timeout`) and in the grader,
where the namespace is a :class:`~cnnbook.grading.api.SandboxedNamespace`
and the sandboxed kernel limits every call instead.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
import zlib

import numpy as np

from cnnbook.grading.api import (
    CheckFailure,
    KernelStopped,
    LearnerError,
    SandboxedNamespace,
)
from cnnbook.grading.timeout import Timeout, call_with_timeout

MAX_MESSAGE_CHARS = 2000  # of a result's message
_CNNBOOK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Result:
    key: str
    title: str
    points: int
    max_points: int
    message: str
    visible_passed: bool = False
    hidden_passed: bool | None = None

    def __post_init__(self):
        # a message may quote what the learner's code said: bounded, so
        # that no report grows with it
        self.cut()

    def cut(self):
        """Bound the message to MAX_MESSAGE_CHARS (again, once the grade
        has added its notes on failing cells)."""
        if len(self.message) > MAX_MESSAGE_CHARS:
            self.message = self.message[:MAX_MESSAGE_CHARS] + " [cut]"

    @property
    def passed(self):
        return self.points == self.max_points


def explain(exc):
    """What an exception raised by a check means, in the learner's words."""
    if isinstance(exc, CheckFailure):
        return str(exc)
    if isinstance(exc, NotImplementedError):
        return (
            "not answered yet: replace `raise NotImplementedError` "
            "with your code"
        )
    if isinstance(exc, Timeout):
        return "your code took too long (is there an endless loop?)"
    if isinstance(exc, KernelStopped):
        return "your code stopped the Python kernel while being checked"
    if isinstance(exc, LearnerError):
        name = type(exc).__name__
        if name == "ForbiddenCall":  # the tripwire's verdict, as it is
            return str(exc)
        if name == "GraderError":  # as the kernel, the learner's, says
            return (
                f"not checked: {exc} (the kernel could not read the "
                "grader's request; unless your code changed the kernel's "
                "grading code, tell your instructor)"
            )
        where = f" (line {exc.line})" if exc.line else ""
        return f"your code raised {name}: {exc}{where}"
    frames = traceback.extract_tb(exc.__traceback__)
    learner = [f for f in frames if not _software(f.filename)]
    if not learner:
        # raised in the grader's own code or a library it called, not in
        # a line of the learner's
        return (
            f"not checked: the grader failed ({type(exc).__name__}: "
            f"{str(exc)[:300]}); this is not a mistake of yours"
        )
    return (
        f"your code raised {type(exc).__name__}: {exc} "
        f"(line {learner[-1].lineno})"
    )


def _software(filename):
    """Whether ``filename`` belongs to the installed software (the
    standard library, site-packages, :mod:`cnnbook`) rather than to the
    learner's notebook."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, _CNNBOOK}
    return (
        "cnnbook" in filename
        or "site-packages" in filename
        or any(filename.startswith(os.path.join(r, "")) for r in roots if r)
    )


def _run_phase(check, ns, timeout, *args):
    """One phase of checks; in the grader the kernel enforces the limit,
    call by call, so the phase only gets its deadline."""
    if isinstance(ns, SandboxedNamespace):
        ns.start_phase(timeout)
        return check(ns, *args)
    return call_with_timeout(check, timeout, ns, *args)


def exercise_rng(seed, key):
    """The hidden checks' random stream of exercise ``key`` in a grade of
    ``seed``: one stream per exercise, so that what one exercise's inputs
    show says nothing of another's (red team 6)."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), zlib.crc32(str(key).encode())])
    )


def run_exercise(ex, ns, hidden=False, seed=0, timeout=60):
    """Grade one exercise against the namespace ``ns``; never raises."""
    missing = [n for n in ex.names if n not in ns]
    if missing:
        return Result(
            ex.key,
            ex.title,
            0,
            ex.points,
            f"{', '.join(missing)} is not defined: run the cell "
            "that defines it (and fix any error it shows)",
        )
    try:
        _run_phase(ex.visible, ns, timeout)
    except BaseException as exc:  # noqa: BLE001 - a learner's code may raise anything
        if isinstance(exc, KeyboardInterrupt):
            raise
        return Result(ex.key, ex.title, 0, ex.points, explain(exc))
    if not hidden or ex.hidden is None:
        return Result(
            ex.key,
            ex.title,
            ex.points,
            ex.points,
            "correct",
            visible_passed=True,
        )
    rng = exercise_rng(seed, ex.key)
    try:
        _run_phase(ex.hidden, ns, timeout, rng)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        return Result(
            ex.key,
            ex.title,
            0,
            ex.points,
            "the visible check passed but the hidden randomised "
            f"checks failed: {explain(exc)}",
            visible_passed=True,
            hidden_passed=False,
        )
    return Result(
        ex.key,
        ex.title,
        ex.points,
        ex.points,
        "correct",
        visible_passed=True,
        hidden_passed=True,
    )


def format_result(r):
    """One line (two when it failed) for ``check("1.1")`` to print."""
    mark = "\u2714" if r.passed else "\u2718"
    line = (
        f"{mark} Exercise {r.key} ({r.title}): "
        f"{r.points}/{r.max_points} points"
    )
    return line if r.passed else f"{line}\n  {r.message}"
