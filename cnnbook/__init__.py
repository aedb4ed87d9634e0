"""Helper package of *CNN Case Studies*.

Every notebook imports what it needs from here in one line, for example
``from cnnbook import arithmetic, data, setup``. Each helper's docstring names
the chapter that introduces it.
"""

__version__ = "0.1.0"

from cnnbook.profiles import setup  # noqa: F401
