"""The folder of submissions ``grade-batch`` grades, read without trusting
it: the chapter its configuration names, its notebooks scanned without
following a link, their bytes read and hashed once (and copied into a
folder of the grader's own), and the files with the same bytes. Split
from :mod:`cnnbook.grading.batch`, which grades what :func:`scan` found.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import pathlib
import stat

from cnnbook.grading import chapters, notebook
from cnnbook.grading.names import printable

try:
    import tomllib  # Python 3.11 and later
except ImportError:  # Python 3.10: cnnbook-grading.json only
    tomllib = None

CONFIG_FILES = ("cnnbook-grading.toml", "cnnbook-grading.json")
MAX_NAME_BYTES = 200  # NAME.json must be a valid file name
MAX_FOLDER_DEPTH = 32  # folders below the batch's folder that are searched


class BatchError(Exception):
    """The batch cannot start (no chapter, a broken configuration...)."""


@dataclasses.dataclass
class Entry:
    """One ``*.ipynb`` found under the folder (or a link to a folder).

    ``problem`` says why it is not graded (None: it is graded);
    ``sha256`` hashes the bytes read when the folder was scanned;
    ``copy`` is where :func:`scan` wrote those bytes (with ``keep``).
    """

    name: str
    path: pathlib.Path
    sha256: str | None = None
    problem: str | None = None
    copy: pathlib.Path | None = None


def folder_chapter(folder):
    """The chapter the folder's configuration file names, or None.

    ``cnnbook-grading.toml`` holds ``chapter = "ch01"``;
    ``cnnbook-grading.json`` holds ``{"chapter": "ch01"}``. Only the
    folder's top level counts (a sub-folder's file is ignored), and a
    file that is a link, unreadable, of another form or naming a chapter
    without checks raises :class:`BatchError`.
    """
    folder = pathlib.Path(folder)
    found = {}
    for name in CONFIG_FILES:
        path = folder / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode):
            raise BatchError(f"{printable(path)} is not a regular file")
        if name.endswith(".toml") and tomllib is None:
            raise BatchError(
                f"{printable(path)}: reading TOML needs Python 3.11 or "
                "later; write cnnbook-grading.json instead"
            )
        try:
            text = path.read_text()
            data = (
                tomllib.loads(text)
                if name.endswith(".toml")
                else json.loads(text)
            )
        except (OSError, ValueError) as exc:
            raise BatchError(f"cannot read {printable(path)}: {exc}") from None
        if not isinstance(data, dict) or set(data) != {"chapter"}:
            raise BatchError(
                f"{printable(path)} must name one thing, the chapter "
                '(chapter = "ch01")'
            )
        chapter = data["chapter"]
        if chapter not in chapters.known():
            raise BatchError(
                f"{printable(path)} names chapter {chapter!r}; there are "
                f"checks for {', '.join(chapters.known())}"
            )
        found[name] = chapter
    if len(set(found.values())) > 1:
        raise BatchError(
            f"{' and '.join(found)} in {printable(folder)} name different "
            "chapters; keep one"
        )
    return next(iter(found.values()), None)


def _short(name, taken):
    """``name``, shortened to fit a file name and made unique, and not
    a hidden file's (``.x`` becomes ``_.x``)."""
    if name.startswith("."):
        name = "_" + name
    if len(name.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = name.encode()[:150].decode(errors="ignore") + "~" + digest
    if name in taken:  # only possible with odd folder layouts
        # a number, not ever more "_" (64 colliding links made a name too
        # long for a file and stopped the batch: red team 8)
        stem = name.encode()[:180].decode(errors="ignore")
        number = 2
        while f"{stem}_{number}" in taken:
            number += 1
        name = f"{stem}_{number}"
    taken.add(name)
    return name


def _read(name, dir_fd):
    """The bytes of the regular file ``name`` in ``dir_fd``,
    opened without following a link; raises OSError or ValueError."""
    fd = os.open(
        name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd
    )
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > notebook.MAX_NOTEBOOK_BYTES:
            raise ValueError(notebook.too_large("it"))
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = notebook.read_bounded(fh)  # it may have grown since
        if len(raw) > notebook.MAX_NOTEBOOK_BYTES:
            raise ValueError(notebook.too_large("it"))
        return raw
    finally:
        os.close(fd)


def scan(folder, keep=None):
    """Every ``*.ipynb`` under ``folder`` (``.ipynb_checkpoints`` left
    out), and every link to a folder, as :class:`Entry` objects in path
    order. Nothing is followed: a link is an entry with a problem. The
    name is the path below the folder, ``__`` for each ``/``, printable.
    With ``keep`` (a folder of the caller's own), the bytes read of each
    regular file are written to ``keep/<n>/<file name>``, its ``copy``.
    """
    folder = pathlib.Path(folder)
    found, seen = [], {}
    for rel, dirnames, filenames, dir_fd in _walk(folder):
        here = folder.joinpath(*rel)
        for d in list(dirnames):
            if d == ".ipynb_checkpoints":
                dirnames.remove(d)
            elif _is_link(d, dir_fd):
                dirnames.remove(d)
                found.append((rel + (d,), here / d, _link(d, dir_fd)))
            elif len(rel) + 1 > MAX_FOLDER_DEPTH:
                dirnames.remove(d)
                found.append(
                    (
                        rel + (d,),
                        here / d,
                        {
                            "problem": f"a folder nested more than "
                            f"{MAX_FOLDER_DEPTH} deep: not searched"
                        },
                    )
                )
            elif d.endswith(".ipynb"):  # listed, and its files still scanned
                found.append(
                    (
                        rel + (d[: -len(".ipynb")] + "-folder",),
                        here / d,
                        {"problem": "a folder, not a notebook: not graded"},
                    )
                )
        for f in filenames:
            if not f.endswith(".ipynb"):
                continue
            parts = rel + (f[: -len(".ipynb")],)
            try:
                if _is_link(f, dir_fd):
                    found.append((parts, here / f, _link(f, dir_fd)))
                    continue
                node = os.stat(f, dir_fd=dir_fd, follow_symlinks=False)
                node = (node.st_dev, node.st_ino)
                if node in seen:  # a hard link to a file read already:
                    found.append((parts, here / f, dict(seen[node])))
                    continue  # one read, one copy (red team 10)
                raw = _read(f, dir_fd)
            except (OSError, ValueError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                info = {"problem": f"cannot be read: {why}"}
            else:
                info = {"sha256": hashlib.sha256(raw).hexdigest()}
                if keep is not None:
                    info["copy"] = _keep(raw, f, keep, len(found))
                seen[node] = info
            found.append((parts, here / f, info))
    taken = set()
    return [
        Entry(_short("__".join(map(printable, parts)), taken), path, **info)
        for parts, path, info in sorted(found, key=lambda x: x[0])
    ]


def _walk(folder):
    """Like ``os.fwalk(folder, follow_symlinks=False)``, top-down, but
    without recursion (``os.fwalk`` ran out of Python's stack on a folder
    1,000 levels deep, and the whole batch stopped: red team 10): yields
    (parts below the folder, folder names, file names, open folder fd);
    the caller may remove names from the folder names to skip them."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    stack = [((), os.open(folder, flags))]
    try:
        while stack:
            rel, fd = stack.pop()
            try:
                dirnames, filenames = [], []
                with os.scandir(fd) as entries:
                    for entry in entries:
                        # as os.fwalk: a link to a folder is listed with
                        # the folders (the caller reports it), never entered
                        try:
                            is_dir = entry.is_dir()
                        except OSError:
                            is_dir = False
                        (dirnames if is_dir else filenames).append(entry.name)
                dirnames.sort()
                filenames.sort()
                yield rel, dirnames, filenames, fd
                for d in reversed(dirnames):
                    try:
                        child = os.open(d, flags, dir_fd=fd)
                    except OSError:
                        continue  # gone, or made a link since
                    stack.append((rel + (d,), child))
            finally:
                os.close(fd)
    finally:
        for _, fd in stack:
            os.close(fd)


def _keep(raw, name, keep, number):
    """Write ``raw`` to ``keep/<number>/<name>`` (a new file, a new
    folder) and return its path."""
    folder = pathlib.Path(keep) / str(number)
    folder.mkdir(mode=0o700)
    copy = folder / name
    with open(copy, "xb") as fh:
        fh.write(raw)
    return copy


def _is_link(name, dir_fd):
    mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    return stat.S_ISLNK(mode)


def _link(name, dir_fd):
    try:
        target = printable(os.readlink(name, dir_fd=dir_fd))
    except OSError:
        target = "?"
    return {
        "problem": f"a symbolic link (to {target}), not a submission: "
        "links are not graded (submit the file itself)"
    }


def submissions(folder):
    """(name, path) of every notebook under ``folder`` that is graded."""
    return [(e.name, e.path) for e in scan(folder) if e.problem is None]


def same_bytes(entries):
    """name -> the other names of the entries with the same bytes."""
    groups = collections.defaultdict(list)
    for e in entries:
        if e.sha256 is not None:
            groups[e.sha256].append(e.name)
    return {
        name: [other for other in group if other != name]
        for group in groups.values()
        if len(group) > 1
        for name in group
    }
