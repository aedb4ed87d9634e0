"""``check("1.1")`` in the learner's own notebook.

Introduced in Chapter 1. An exercise notebook starts with
``check = checker("ch01")`` (imported from :mod:`cnnbook.grading`) and
calls ``check("1.1")`` after each answer; that runs the exercise's
*visible* checks on the notebook's own functions and prints the points.
The grader (``python -m cnnbook grade``) runs the visible checks and the
*hidden* randomised ones in its own process, so hard-coding the visible
answers earns nothing.
"""

from __future__ import annotations

import inspect

from cnnbook.grading.chapters import resolve
from cnnbook.grading.runner import format_result, run_exercise


class checker:  # noqa: N801 - reads as a function in notebooks
    """``check = checker("ch01")``; then ``check("1.1")`` under an answer."""

    def __init__(self, chapter):
        self.chapter = chapter
        self._by_key = {e.key: e for e in resolve(chapter).exercises}
        self.last = None  # the Result of the latest check, for the curious

    def __call__(self, key):
        if key not in self._by_key:
            raise KeyError(
                f"chapter {self.chapter} has no exercise {key!r}; "
                f"it has {', '.join(self._by_key)}"
            )
        ns = inspect.currentframe().f_back.f_globals
        result = run_exercise(self._by_key[key], ns)
        print(format_result(result))
        self.last = result
