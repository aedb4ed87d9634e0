"""A submitted notebook as the grader reads it.

Introduced with the grader (Chapter 1). :func:`read_notebook` rebuilds a
notebook from its cells' types and sources only, so broken or hostile
metadata, outputs and ids cannot matter; :func:`chapter_of` reads the
chapter it belongs to; :func:`defining_cells` finds where a name is
defined.
"""

from __future__ import annotations

import io
import json
import keyword
import re
import tokenize

import nbformat

from cnnbook.grading import chapters

# The largest notebook the grader reads. The book's largest, a lab with
# its plots stored, is under 0.5 MiB; parsing JSON takes about twenty
# times the file's size in the grader's memory, so a file is refused
# above this before it is parsed (grade) or read whole (grade-batch).
MAX_NOTEBOOK_BYTES = 20 * 2**20


class NotebookProblem(Exception):
    """The file cannot be graded at all (not JSON, not a notebook...)."""


def too_large(path):
    """The message for a file over :data:`MAX_NOTEBOOK_BYTES`."""
    return (
        f"{path} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB, the "
        "limit for a notebook: it is not graded (clear the outputs, "
        "Edit > Clear Outputs of All Cells, and save it again)"
    )


def read_bounded(fh):
    """At most :data:`MAX_NOTEBOOK_BYTES` + 1 bytes of the open file
    ``fh``: one byte more than the limit tells a file that is too large,
    and nothing larger is ever held."""
    return fh.read(MAX_NOTEBOOK_BYTES + 1)


def read_notebook(raw, path):
    """A clean notebook built from the cells' types and sources only.

    Whatever a learner did to the cell metadata, outputs or ids cannot
    matter: the grader keeps nothing else. Bytes over
    :data:`MAX_NOTEBOOK_BYTES` are refused before they are parsed.
    """
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise NotebookProblem(too_large(path))
    if not raw.strip():
        raise NotebookProblem(
            f"{path} is empty: it is not a notebook "
            "(start over from a fresh copy of the exercise)"
        )
    try:
        data = json.loads(raw)
    except RecursionError:  # nested deeper than the parser goes (red team 10)
        raise NotebookProblem(
            f"{path} is JSON nested too deeply to be a notebook; start over "
            "from a fresh copy of the exercise"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotebookProblem(
            f"{path} is not valid JSON ({exc}); open it in JupyterLab and "
            "save it again, or start over from a fresh copy"
        ) from None
    try:
        if not isinstance(data, dict) or not isinstance(
            data.get("cells"), list
        ):
            raise ValueError("it has no list of cells")
        cells = []
        for number, cell in enumerate(data["cells"], 1):
            if not isinstance(cell, dict):
                raise ValueError(f"cell {number} is not an object")
            source = cell.get("source", "")
            if isinstance(source, list) and all(
                isinstance(x, str) for x in source
            ):
                source = "".join(source)
            if not isinstance(source, str):
                raise ValueError(f"the source of cell {number} is not text")
            kind = cell.get("cell_type")
            if kind == "code":
                cells.append(nbformat.v4.new_code_cell(source))
            else:  # markdown, raw or anything else: never executed
                cells.append(nbformat.v4.new_markdown_cell(source))
        meta = data.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        cnnbook_meta = meta.get("cnnbook")
        nb = nbformat.v4.new_notebook(cells=cells)
        if isinstance(cnnbook_meta, dict) and isinstance(
            cnnbook_meta.get("chapter"), str
        ):
            nb.metadata["cnnbook"] = {"chapter": cnnbook_meta["chapter"]}
    except ValueError as exc:
        raise NotebookProblem(
            f"{path} is not a Jupyter notebook: {exc}"
        ) from None
    return nb


def chapter_of(nb, path):
    """The chapter id from the notebook's metadata, else from its file
    name (:func:`cnnbook.grading.chapters.from_file_name`)."""
    meta = nb.get("metadata", {}).get("cnnbook", {})
    chapter = meta.get("chapter") if isinstance(meta, dict) else None
    if chapter in chapters.known():
        return chapter
    chapter = chapters.from_file_name(path)
    if chapter is not None:
        return chapter
    raise NotebookProblem(
        f"cannot tell which chapter {path} belongs to (its metadata lost "
        f"the chapter and its name does not start with one of "
        f"{', '.join(chapters.known())}); pass --chapter"
    )


def defining_cells(nb, name):
    """Indices of the code cells that define ``name`` (``def``, ``class``
    or an assignment at the start of a line)."""
    pattern = re.compile(
        rf"^\s*(def|class)\s+{re.escape(name)}\b|"
        rf"^\s*{re.escape(name)}\s*=",
        re.M,
    )
    return [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and pattern.search(c.source)
    ]


def names_used(code):
    """The names ``code`` uses, called or not (``alias = inception_module``,
    as the book's own 6.3 cell does), not counting those it defines,
    attributes, comments and strings."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return set()
    used = set()
    for before, token in zip([None, *tokens], tokens):
        if token.type != tokenize.NAME or keyword.iskeyword(token.string):
            continue
        if before is not None and before.string in ("def", "class", "."):
            continue
        used.add(token.string)
    return used
