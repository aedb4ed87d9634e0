"""The grader and the exercises' checks, one module per job.

Introduced in Chapter 1. Layers, lowest first (a module imports only
from those above it in this list):

- :mod:`~cnnbook.grading.timeout`: the one time limit on a learner's call;
- :mod:`~cnnbook.grading.wire` and :mod:`~cnnbook.grading.reader`: values
  between the grader and the kernel, written and read back bounded;
- :mod:`~cnnbook.grading.server`: the kernel's side, a call run there;
- :mod:`~cnnbook.grading.api`: what the checks are written with;
- :mod:`~cnnbook.grading.runner`: one exercise's checks and its result;
- :mod:`~cnnbook.grading.checks`: the checks, one module per chapter;
- :mod:`~cnnbook.grading.chapters`: a chapter resolved once;
- :mod:`~cnnbook.grading.local`: ``check("1.1")`` in the notebook;
- :mod:`~cnnbook.grading.notebook`: reading a submission, cleaned;
- :mod:`~cnnbook.grading.sandbox` and :mod:`~cnnbook.grading.package`:
  the bubblewrap sandbox and the package copy it sees;
- :mod:`~cnnbook.grading.session`: the kernel in the sandbox;
- :mod:`~cnnbook.grading.remote`: the checks' calls into that kernel;
- :mod:`~cnnbook.grading.report`: the report, its JSON and schema;
- :mod:`~cnnbook.grading.grade`: one grade; :mod:`~cnnbook.grading.batch`:
  a folder of submissions.

Notebooks import one name from here: ``from cnnbook.grading import
checker``.
"""

from cnnbook.grading.local import checker

__all__ = ["checker"]
