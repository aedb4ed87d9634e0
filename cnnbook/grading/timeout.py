"""The one time limit on a learner's code: ``SIGALRM`` around a call.

Used on both sides of the sandbox: by :func:`cnnbook.grading.runner`
when a check runs in the learner's own kernel (``check("1.1")``), and by
:func:`cnnbook.grading.server.serve` for each call the grader sends into the
sandboxed kernel. This module imports nothing of :mod:`cnnbook`, so the
sandbox's copy of the package can carry it.
"""

from __future__ import annotations

import signal


class Timeout(BaseException):  # learner code catching Exception misses it
    """The learner's code ran past its time limit."""


def _alarm(_signum, _frame):
    raise Timeout()


def call_with_timeout(func, seconds, *args, **kwargs):
    """``func(*args, **kwargs)``; raise :class:`Timeout` after ``seconds``.

    ``seconds`` of 0 or None means no limit. The limit needs the main
    thread and a platform with ``setitimer``; elsewhere the call runs
    without one.
    """
    use_alarm = bool(seconds) and hasattr(signal, "setitimer")
    previous = None
    if use_alarm:
        try:
            previous = signal.signal(signal.SIGALRM, _alarm)
        except ValueError:  # not in the main thread: run without a limit
            use_alarm = False
    if use_alarm:
        signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        return func(*args, **kwargs)
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
