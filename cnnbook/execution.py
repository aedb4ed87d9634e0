"""The one way the package runs notebooks: an nbclient executor.

Used by :func:`cnnbook.notebooks.execute` (a lab in place), the bundle's
runner (:mod:`cnnbook.bundle`) and the grader's kernel session
(:mod:`cnnbook.grading.session`, cell by cell, with a cap on the output
kept). :func:`client` makes the executor; :func:`run` executes a whole
notebook with it.
"""

from __future__ import annotations

import json
import time

from nbclient import NotebookClient


def output_size(msg):
    """Characters of output one kernel message carries: its text, its data
    and its metadata (red team 8 sent displays of tiny data and 25 MiB of
    metadata each)."""
    content = msg.get("content", {})
    if msg["header"]["msg_type"] == "stream":
        return len(content.get("text", ""))
    size = 0
    for part in ("data", "metadata"):
        value = content.get(part, {})
        if isinstance(value, dict):
            size += sum(
                len(v) if isinstance(v, str) else len(json.dumps(v))
                for v in value.values()
            )
    return size


# with an output limit: the errors of one cell kept, and their parts
MAX_ERRORS_KEPT = 3
MAX_ERROR_CHARS = 2000  # of an error's name and of its value
MAX_TRACEBACK_LINES = 60  # the last ones, each cut to MAX_ERROR_CHARS


def bounded_error(content):
    """An error message's content with its name, value and traceback cut
    to a bounded size (what a cell's error is read for stays: the name,
    the start of the value, the last frames)."""

    def cut(text):
        text = str(text)
        return (
            text
            if len(text) <= MAX_ERROR_CHARS
            else text[:MAX_ERROR_CHARS] + " [cut]"
        )

    traceback = content.get("traceback") or []
    if not isinstance(traceback, list):
        traceback = [traceback]
    return {
        **content,
        "ename": cut(content.get("ename", "")),
        "evalue": cut(content.get("evalue", "")),
        "traceback": [cut(line) for line in traceback[-MAX_TRACEBACK_LINES:]],
    }


class Executor(NotebookClient):
    """nbclient's client that keeps at most ``output_limit`` characters of
    output per cell (None: all of it); with a limit, errors are kept, but
    at most :data:`MAX_ERRORS_KEPT` of a cell, each cut to a bounded size,
    and comm messages (widget state) and display updates are dropped.

    The grader reads only errors, so a cell printing megabytes (or
    displaying huge images) costs transfer time; what it keeps is bounded
    (each message by the grader's socket limit while it is read).
    """

    def __init__(self, nb, output_limit=None, **options):
        super().__init__(nb, **options)
        self.output_limit = output_limit
        self.output_used = {}
        self.errors_kept = {}

    def reset_output_budget(self):
        self.output_used = {}
        self.errors_kept = {}

    # With an output limit (the grader), nothing but a cell's outputs is
    # kept: no widget state from comm messages and no display to update,
    # whatever the kernel sends (red team 7: forty 25 MiB comm messages
    # took the grader to 1.4 GB; an update of a display made in an earlier
    # cell, which the grader's one-cell notebook does not hold, crashed it)
    def handle_comm_msg(self, outs, msg, cell_index):
        if self.output_limit is None:
            super().handle_comm_msg(outs, msg, cell_index)

    def _update_display_id(self, display_id, msg):
        if self.output_limit is None:
            super()._update_display_id(display_id, msg)

    def output(self, outs, msg, display_id, cell_index):
        if self.output_limit is not None:
            if msg["header"]["msg_type"] == "error":
                # kept, but bounded: the kernel may send any number of
                # errors of any size (red team 6 sent ten of 100 MB)
                if self.errors_kept.get(cell_index, 0) >= MAX_ERRORS_KEPT:
                    return None
                self.errors_kept[cell_index] = (
                    self.errors_kept.get(cell_index, 0) + 1
                )
                msg = {**msg, "content": bounded_error(msg["content"])}
            else:
                used = self.output_used.get(cell_index, 0) + output_size(msg)
                self.output_used[cell_index] = used
                if used > self.output_limit:
                    return None
        return super().output(outs, msg, display_id, cell_index)


def client(nb, cwd, timeout, kernel_name="python3", **options):
    """An :class:`Executor` for ``nb`` whose kernel starts in ``cwd``;
    ``timeout`` is per cell (seconds), ``options`` go to nbclient."""
    return Executor(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(cwd)}},
        **options,
    )


def run(nb, cwd, timeout, kernel_name="python3"):
    """Execute every cell of ``nb`` (in place, from ``cwd``); return the
    seconds it took. A cell's error is raised (nbclient's
    ``CellExecutionError``) with the outputs up to it stored in ``nb``."""
    start = time.perf_counter()
    client(nb, cwd, timeout, kernel_name).execute()
    return time.perf_counter() - start
