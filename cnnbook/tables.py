"""How the package's tables show themselves: HTML in JupyterLab and in the
built book, plain text in a terminal, both drawn by ``tabulate``.

A table of the package (:class:`cnnbook.arithmetic.LayerTable`, the stage
table of :mod:`cnnbook.models.resnet`, the module table of
:mod:`cnnbook.models.inception`) stays a list of typed rows for code to
read; :class:`Shown` adds the display. A subclass says what a reader sees
in :meth:`Shown.columns` (short headers) and :meth:`Shown.cells` (one tuple
a row, numbers as ``int``); this module formats the numbers with thousands
separators and aligns them to the right. Few columns and short headers keep
a table within the width of a page.
"""

from __future__ import annotations

import re

from tabulate import tabulate

__all__ = ["Shown", "Table", "shape_text", "render"]


def shape_text(shape):
    """``28×28×6``: an output shape without its batch axis, as the tables
    show it (a layer with several outputs shows them side by side)."""
    if shape and isinstance(shape[0], tuple):
        return ", ".join(shape_text(s) for s in shape)
    dims = shape[1:] if shape and shape[0] is None else shape
    return "\u00d7".join(str(d) for d in dims)


# A number the caller formatted: "92.15%", "0.63", "84.64%–85.36%", "-".
_NUMBER = re.compile(r"^(-|[-+]?[\d,.]+ ?%?(\u2013[-+]?[\d,.]+ ?%?)?)$")


def _number_like(cell):
    return isinstance(cell, (int, float)) or (
        isinstance(cell, str) and (cell == "" or bool(_NUMBER.match(cell)))
    )


def render(columns, cells, tablefmt):
    """``cells`` under ``columns`` in a ``tabulate`` format. Integers get
    thousands separators; a column of numbers (integers, or numbers the
    caller formatted as text, such as ``"92.15%"``) is right-aligned.
    Other text is left as it is (a shape ``1960`` stays ``1960``)."""
    cells = [tuple(row) for row in cells]
    numeric = [
        all(_number_like(row[i]) for row in cells) for i in range(len(columns))
    ]
    shown = [
        [f"{cell:,}" if isinstance(cell, int) else cell for cell in row]
        for row in cells
    ]
    return tabulate(
        shown,
        headers=columns,
        tablefmt=tablefmt,
        colalign=["right" if n else "left" for n in numeric],
        disable_numparse=True,
    )


class Shown:
    """The display of a table; subclasses define :meth:`columns` and
    :meth:`cells`."""

    def columns(self):
        raise NotImplementedError

    def cells(self):
        raise NotImplementedError

    def __str__(self):
        return render(self.columns(), self.cells(), "simple")

    def _repr_html_(self):
        return render(self.columns(), self.cells(), "html")

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


class Table(Shown):
    """A small table of a notebook: ``Table(columns, rows)`` shows ``rows``
    (tuples; integers get thousands separators, other numbers come as the
    text the caller formats) under ``columns``."""

    def __init__(self, columns, rows):
        self._columns = tuple(columns)
        self.rows = [tuple(row) for row in rows]
        for row in self.rows:
            if len(row) != len(self._columns):
                raise ValueError(
                    f"a row of {len(row)} cells under "
                    f"{len(self._columns)} columns: {row!r}"
                )

    def columns(self):
        return self._columns

    def cells(self):
        return self.rows
