"""A chapter's grading, resolved once: its checks, exercises and answers.

Introduced with the grader (Chapter 1). :func:`resolve` imports the
chapter's checks (``cnnbook/grading/checks/<id>.py``, or the package
``<id>/``) and returns
one frozen :class:`Chapter` that the grader passes along; nothing else
builds a module name. :func:`from_file_name` is the one rule that reads a
chapter from a notebook's file name; :func:`decide` the one rule that
picks the chapter a submission is graded as (the instructor's, else its
metadata and file name when they agree).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pathlib
import pkgutil

from cnnbook.grading import api, checks

CHECKS_PACKAGE = checks.__name__


@dataclasses.dataclass(frozen=True)
class Chapter:
    """Everything the grader needs to know about one chapter.

    ``answers`` maps a module of :mod:`cnnbook` to (exercise keys, names
    or None for all of it), the parts the sandbox leaves out;
    ``keras_applications`` maps a module of ``keras.src.applications`` to
    exercise keys; ``needs_keras`` says whether the checks use Keras.
    """

    id: str
    checks_module: str
    exercises: tuple
    answers: dict
    keras_applications: dict
    needs_keras: bool

    @property
    def max_points(self):
        return sum(ex.points for ex in self.exercises)

    @property
    def names(self):
        """Every name an exercise of the chapter asks for, in order."""
        return [n for ex in self.exercises for n in ex.names]


def known():
    """Chapter ids that have checks modules."""
    return sorted(
        m.name
        for m in pkgutil.iter_modules(checks.__path__)
        if not m.name.startswith("_")
    )


@functools.cache
def resolve(chapter_id):
    """The :class:`Chapter` ``chapter_id``; ``KeyError`` when it has no
    checks."""
    if chapter_id not in known():
        raise KeyError(f"no checks for chapter {chapter_id!r}")
    name = f"{CHECKS_PACKAGE}.{chapter_id}"
    module = importlib.import_module(name)
    return Chapter(
        id=chapter_id,
        checks_module=name,
        exercises=tuple(api.registered(chapter_id)),
        answers=dict(getattr(module, "ANSWERS", {})),
        keras_applications=dict(getattr(module, "KERAS_APPLICATIONS", {})),
        needs_keras=bool(getattr(module, "NEEDS_KERAS", True)),
    )


def exercises(chapter_id):
    """The exercises of a chapter, in order."""
    return list(resolve(chapter_id).exercises)


def from_file_name(path):
    """The chapter id a notebook's file name starts with, or None.

    ``ch01-layer-arithmetic.ipynb``, ``ch01.ipynb`` and ``CH01-mine.ipynb``
    all name ``ch01``: the part before the first ``-`` and the first
    ``.``, lowercased, when it is a chapter with checks.
    """
    stem = pathlib.Path(path).name.split("-")[0].split(".")[0].lower()
    return stem if stem in known() else None


def decide(given, metadata, path):
    """The chapter to grade a notebook as, and a note for its report.

    ``given`` is the instructor's choice (``--chapter``, or the batch
    folder's configuration): it always wins, and the note says so when
    the notebook names another chapter. Without one, the notebook's
    ``metadata`` chapter and its file name (``path``) decide; when both
    name a chapter and they differ, the submission cannot say which it
    is: the chapter is None and the note asks for ``--chapter``. Returns
    (chapter id or None, note or None).
    """
    metadata = metadata if metadata in known() else None
    named = from_file_name(path)
    if given:
        others = sorted({c for c in (metadata, named) if c and c != given})
        if not others:
            return given, None
        return given, (
            f"graded as {given}, the chapter the instructor named; the "
            f"notebook's file name or metadata names {', '.join(others)}"
        )
    if metadata and named and metadata != named:
        return None, (
            f"the file name says chapter {named} but the notebook's "
            f"metadata says {metadata}: the grader cannot tell which "
            "chapter this is and grades neither (pass --chapter "
            f"{named} or --chapter {metadata})"
        )
    return metadata or named, None
