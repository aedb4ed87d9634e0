"""File names as printable text, for reports, summaries and terminals.

Introduced with batch grading (Chapter 1). A submission's file name is
chosen by whoever submitted it: it may hold bytes that are not UTF-8,
line breaks, terminal control characters or a backslash. :func:`printable`
turns it into text that every CSV writer, JSON reader and terminal takes
as it is, and two different names never give the same text.
"""

from __future__ import annotations

import os

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def printable(name):
    """``name`` (str, bytes or path) as printable text, one to one.

    The name is decoded as the file system does (``os.fsdecode``, bytes
    that are not UTF-8 kept as surrogates); each such byte becomes
    ``\\xNN``, a character that does not print ``\\uNNNN`` (or
    ``\\n``, ``\\r``, ``\\t``), and a backslash ``\\\\``, so the result
    reads back to a single name.
    """
    text = os.fsdecode(os.fspath(name))
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _SHORT:
            out.append(_SHORT[ch])
        elif not ch.isprintable():
            out.append(
                f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
            )
        else:
            out.append(ch)
    return "".join(out)


def one_line(text):
    """Free text (a reason, a message) on one printable line: characters
    that do not print become ``\\uNNNN`` (``\\n``...), the rest is kept."""
    return "".join(
        ch
        if ch.isprintable() or ch == " "
        else _SHORT.get(ch) or f"\\u{ord(ch):04x}"
        for ch in str(text)
    )
