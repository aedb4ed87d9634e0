"""Run records: one JSON file per training run, the source of every number
a page quotes. Introduced in Chapter 2; Chapter 7 reads them all.

A record says what was trained (chapter, lab, model, settings), where and
how (profile, seed, device, backend and versions, commit), and what came
of it (per-epoch curves, final train and test accuracy, wall time,
end-to-end and bare images/s). The book's records live in
``results/runs/<lab>/`` in the repository; the file name is
``<model>.<profile>.<device>.seed<seed>.json``, so a re-run of the same lab,
profile, device and seed replaces its record and another seed adds one.

A record carries a ``fingerprint``: a hash of its settings (the seed left
out) and one of the code that decides what the run learns (the model
builders, ``train``, ``data``, ``labs``, ``profiles``, ``distribute`` and
the lab notebook's code cells, docstrings and comments left out; see
:data:`CODE_FILES`), so that a page edit changes neither and a builder
edit changes the code's. A range over seeds (:func:`expected_range`, the
pages' aggregates, chapter 7's seed columns) spans the records of one
fingerprint only (:func:`groups`, :func:`newest_group`); a record whose
code is unknown (``code`` is null: made before :func:`fingerprint` existed
with uncommitted changes, or written before records named the commit the
notebook imported, :data:`COMMIT_AT_START_SINCE`) is a group of its own.

A learner's run leaves the book's records alone: :func:`write` stores it
in :func:`output_dir`, the learner's own folder (``<repo>/my-results/``, or
``$CNNBOOK_RESULTS``), and the run is still compared with the book's
records (:func:`results_dir`). Only a canonical run, one that
``python -m cnnbook execute`` (``make execute``) starts with
``$CNNBOOK_CANONICAL=1``, writes into ``results/``. Under the ``smoke``
profile nothing is written unless ``$CNNBOOK_RESULTS`` is set (the tests
and the offline bundle set it). The record's format is a JSON Schema
(:data:`JSON_SCHEMA`), checked with ``jsonschema``.
"""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import json
import os
import pathlib
import platform
import subprocess
from dataclasses import dataclass

import jsonschema

SCHEMA = "cnnbook.run/1"
ENV_VAR = "CNNBOOK_RESULTS"
# set by `python -m cnnbook execute`: this run replaces the book's own
CANONICAL_VAR = "CNNBOOK_CANONICAL"
REPO = pathlib.Path(__file__).resolve().parent.parent
BOOK_RESULTS = REPO / "results"
# where a learner's runs go when $CNNBOOK_RESULTS names no other folder
LEARNER_RESULTS = REPO / "my-results"
REQUIRED = (
    "schema",
    "lab",
    "chapter",
    "model",
    "profile",
    "seed",
    "device",
    "backend",
    "versions",
    "settings",
    "history",
    "epochs",
    "train_accuracy",
    "test_accuracy",
    "seconds",
    "images_per_second",
    "step_images_per_second",
    "commit",
)


def _number(minimum=None, maximum=None, positive=False, message=""):
    rule = {"type": "number", "description": message}
    if minimum is not None:
        rule["minimum"] = minimum
    if maximum is not None:
        rule["maximum"] = maximum
    if positive:
        rule["exclusiveMinimum"] = 0
    return rule


HASH_LENGTH = 16  # hex digits of a SHA-256 kept in a fingerprint
_HASH = f"^[0-9a-f]{{{HASH_LENGTH}}}$"

# The run record as a JSON Schema; each rule's description is the end of
# the message :func:`validate` gives when a record breaks it.
JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "cnnbook run record",
    "type": "object",
    "required": list(REQUIRED),
    "properties": {
        "schema": {"const": SCHEMA},
        "lab": {"type": "string"},
        "chapter": {"type": "string"},
        "model": {"type": "string"},
        "profile": {"type": "string"},
        "seed": {"type": "integer", "description": "must be an integer"},
        "settings": {"type": "object"},
        "history": {"type": "object"},
        "test_accuracy": _number(0, 1, message="must lie in [0, 1]"),
        "train_accuracy": _number(0, 1, message="must lie in [0, 1]"),
        "seconds": _number(positive=True, message="must be positive"),
        "images_per_second": _number(
            positive=True, message="must be positive"
        ),
        "fingerprint": {
            "type": "object",
            "description": "must be {settings: hash, code: hash or null, "
            "note: text}",
            "required": ["settings", "code"],
            "additionalProperties": False,
            "properties": {
                "settings": {"type": "string", "pattern": _HASH},
                "code": {"type": ["string", "null"], "pattern": _HASH},
                "note": {"type": "string"},
            },
        },
        "dry_run": {
            "type": "boolean",
            "description": "must be true or false (true: a capped GPU dry "
            "run, never the book's)",
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(JSON_SCHEMA)


class RecordError(ValueError):
    """A record file that is not a valid run record."""


def _truthy(name):
    value = os.environ.get(name, "").strip().lower()
    return value not in ("", "0", "off", "false", "no")


def canonical():
    """True when this run replaces the book's records and figures
    (``$CNNBOOK_CANONICAL``, set by ``python -m cnnbook execute``)."""
    return _truthy(CANONICAL_VAR)


def results_dir():
    """Where the book's records are read from: ``$CNNBOOK_RESULTS`` or
    ``<repo>/results``."""
    chosen = os.environ.get(ENV_VAR, "").strip()
    return pathlib.Path(chosen) if chosen else BOOK_RESULTS


def output_dir():
    """Where a run writes its record: ``$CNNBOOK_RESULTS`` when set, else
    ``<repo>/results`` for a canonical run (:func:`canonical`) and the
    learner's ``<repo>/my-results`` for any other."""
    chosen = os.environ.get(ENV_VAR, "").strip()
    if chosen:
        return pathlib.Path(chosen)
    return BOOK_RESULTS if canonical() else LEARNER_RESULTS


def should_write(profile):
    """Smoke runs leave the stored records alone unless told where to go."""
    return profile != "smoke" or bool(os.environ.get(ENV_VAR, "").strip())


_COMMIT_AT_START = None


def commit_at_start():
    """The commit of the code this process runs: :func:`commit` the first
    time it is asked, the same answer afterwards. :func:`cnnbook.setup`
    asks when a notebook starts, so a record names the code that was
    imported, not the commit of the moment the run ended."""
    global _COMMIT_AT_START
    if _COMMIT_AT_START is None:
        _COMMIT_AT_START = commit()
    return _COMMIT_AT_START


def commit():
    """The repository's commit (with ``+dirty`` for uncommitted changes to
    the code; the records and figures that runs write do not count)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "status",
                "--porcelain",
                "-uno",
                "--",
                ".",
                ":!results",
                ":!book/figures",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


# --------------------------------------------------------------- fingerprints
# What decides what a run learns, apart from its seed: the lab's settings
# and this code. ``cnnbook/models/`` holds the builders; ``labs.py`` builds
# each network from the settings; ``train.py`` compiles, augments and
# trains; ``data.py`` chooses and prepares the images; ``profiles.py``
# seeds everything and sets the precision; ``distribute.py`` splits a batch
# between devices; the lab's notebook (its code cells) picks the optimiser
# and the schedule. Pages, figures, records, the grader, the bench and this
# module are left out: editing them changes no run.
CODE_FILES = (
    "cnnbook/data.py",
    "cnnbook/distribute.py",
    "cnnbook/labs.py",
    "cnnbook/profiles.py",
    "cnnbook/train.py",
)
CODE_FOLDERS = ("cnnbook/models",)


def _sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def settings_fingerprint(settings):
    """The SHA-256 (first :data:`HASH_LENGTH` hex digits) of ``settings``
    as canonical JSON: keys sorted, no spaces, tuples as lists, any
    ``seed`` left out (seeds are what a range spans)."""
    chosen = {k: v for k, v in dict(settings).items() if k != "seed"}
    text = json.dumps(
        chosen, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return _sha(text)


def _without_docstrings(tree):
    documented = (
        ast.Module,
        ast.ClassDef,
        ast.FunctionDef,
        ast.AsyncFunctionDef,
    )
    for node in ast.walk(tree):
        if not isinstance(node, documented) or not node.body:
            continue
        first = node.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            node.body = node.body[1:] or [ast.Pass()]
    return tree


def python_as_run(source):
    """Python source as the interpreter runs it: parsed, without its
    docstrings, written back by :func:`ast.unparse` (comments, blank lines
    and layout gone). Source that does not parse (a notebook cell with a
    ``%magic``) is kept as it is, trailing spaces aside."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "\n".join(line.rstrip() for line in source.splitlines())
    return ast.unparse(_without_docstrings(tree))


def _code_cells(notebook_text):
    cells = json.loads(notebook_text).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            yield "".join(source) if isinstance(source, list) else source


def code_text(path, text):
    """What of the file ``path`` (its ``text``) the code fingerprint
    hashes: a notebook's code cells, each as :func:`python_as_run` gives
    it (markdown and outputs left out); a Python file likewise."""
    if path.endswith(".ipynb"):
        return "\n# -- cell\n".join(
            python_as_run(cell) for cell in _code_cells(text)
        )
    return python_as_run(text)


def code_paths(lab, folder_files):
    """The files of the code fingerprint of ``lab``, sorted:
    :data:`CODE_FILES`, the ``.py`` files of :data:`CODE_FOLDERS` (named by
    ``folder_files(folder)``) and ``notebooks/<lab>.ipynb``."""
    paths = set(CODE_FILES) | {f"notebooks/{lab}.ipynb"}
    for folder in CODE_FOLDERS:
        paths |= {
            f"{folder}/{name}"
            for name in folder_files(folder)
            if name.endswith(".py")
        }
    return sorted(paths)


def _code_fingerprint(lab, read, folder_files):
    lines = []
    for path in code_paths(lab, folder_files):
        text = read(path)
        digest = "absent" if text is None else _sha(code_text(path, text))
        lines.append(f"{path} {digest}")
    return _sha("\n".join(lines))


def code_fingerprint(lab, repo=None):
    """The code fingerprint of ``lab`` from the files as they are in
    ``repo`` (default: this checkout), committed or not."""
    repo = pathlib.Path(repo) if repo else REPO

    def read(path):
        try:
            return (repo / path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def folder_files(folder):
        return [p.name for p in (repo / folder).glob("*.py")]

    return _code_fingerprint(lab, read, folder_files)


def _git(*args, repo=None):
    return subprocess.run(
        ["git", "-C", str(repo or REPO), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def code_fingerprint_at(lab, commit_id, repo=None):
    """The code fingerprint of ``lab`` from the files of commit
    ``commit_id`` (``git show``); None if the commit is not in the
    repository."""
    if _git("cat-file", "-e", f"{commit_id}^{{commit}}", repo=repo).returncode:
        return None

    def read(path):
        shown = _git("show", f"{commit_id}:{path}", repo=repo)
        return shown.stdout if shown.returncode == 0 else None

    def folder_files(folder):
        listed = _git(
            "ls-tree", "--name-only", f"{commit_id}:{folder}", repo=repo
        )
        return listed.stdout.split() if listed.returncode == 0 else []

    return _code_fingerprint(lab, read, folder_files)


_CODE_AT_START = {}


def code_fingerprint_at_start(lab):
    """:func:`code_fingerprint` of ``lab`` the first time this process asks
    (the code that was imported), the same answer afterwards."""
    if lab not in _CODE_AT_START:
        _CODE_AT_START[lab] = code_fingerprint(lab)
    return _CODE_AT_START[lab]


def fingerprint(lab, settings):
    """The fingerprint a new run of ``lab`` under ``settings`` records
    (:func:`cnnbook.train.fit` calls it): its settings' and its code's."""
    return {
        "settings": settings_fingerprint(settings),
        "code": code_fingerprint_at_start(lab),
    }


# Until commit c134082 (2026-12-01 04:30:58 UTC, "Records name the commit
# of the code a notebook imported") a record named the commit of the moment
# it was written, which need not be the code its notebook had imported.
COMMIT_AT_START_SINCE = _dt.datetime(2026, 12, 1, 4, 30, 58, tzinfo=_dt.UTC)


def _when(text):
    """An ISO 8601 time as an aware datetime; None if there is none."""
    try:
        return _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None


def _commit_time(commit_id, repo=None):
    """When ``commit_id`` was committed; None if it is not in the
    repository."""
    shown = _git("show", "-s", "--format=%cI", commit_id, repo=repo)
    return None if shown.returncode else _when(shown.stdout.strip())


def _began(record):
    """When the record's training began (written, less its seconds)."""
    written = _when(record.get("created"))
    if written is None or not record.get("seconds"):
        return written
    return written - _dt.timedelta(seconds=float(record["seconds"]))


def _read_at_write_time(record, commit_id, began, repo=None):
    """Why ``record``'s commit may not be the code that trained it (the
    commit was read when the record was written), or None. ``began``: the
    earliest start of the execution that wrote it (default: its own)."""
    written = _when(record.get("created"))
    if written is None:
        return "the record has no time, so when its commit was read is unknown"
    if written < COMMIT_AT_START_SINCE:
        return (
            "written before commit c134082 (2026-12-01 04:30:58 UTC), so its "
            "commit was read when the record was written, not when the code "
            "was imported"
        )
    made = _commit_time(commit_id, repo=repo)
    began = began or _began(record)
    if made is not None and began is not None and made > began:
        return (
            f"committed at {made.isoformat()}, after the run began "
            f"({began.isoformat(timespec='seconds')}), so its commit was read "
            "when the record was written, not when the code was imported"
        )
    return None


def fingerprint_from_commit(record, repo=None, began=None):
    """The fingerprint of a record written before records carried one,
    from what it stores: its ``settings``, and the code of its ``commit``
    read back with ``git show``. A ``+dirty`` commit (uncommitted changes
    whose content is lost), an ``unknown`` one, one not in the
    repository, or one read when the record was written rather than when
    the code was imported (a record written before
    :data:`COMMIT_AT_START_SINCE`, or whose commit was made after its run
    began: ``began``, default its ``created`` less its ``seconds``) gives
    ``code: null`` and a ``note`` that says why; such a record is grouped
    with no other."""
    stated = str(record.get("commit", "unknown"))
    found = {"settings": settings_fingerprint(record.get("settings", {}))}
    if stated.endswith("+dirty"):
        found["code"] = None
        found["note"] = (
            f"commit {stated}: trained with uncommitted changes, whose "
            "code is not known"
        )
        return found
    found["code"] = None
    if stated == "unknown" or _commit_time(stated, repo=repo) is None:
        found["note"] = f"commit {stated}: not in the repository"
        return found
    late = _read_at_write_time(record, stated, began, repo=repo)
    if late:
        found["note"] = f"commit {stated}: {late}"
        return found
    found["code"] = code_fingerprint_at(record["lab"], stated, repo=repo)
    found["note"] = f"code read from commit {stated}"
    return found


def add_fingerprints(root=None, repo=None):
    """Give every record under ``root`` that has no fingerprint, or a
    back-filled one (with a ``note``; :func:`fingerprint` writes none), the
    one of :func:`fingerprint_from_commit`, leaving its other fields as
    they are; returns the paths rewritten, so that a second run rewrites
    none. The records of one lab, profile and commit are read as one
    execution, which began when the earliest of them did.
    ``scripts/fingerprint_records.py`` runs it on the book's records."""
    root = pathlib.Path(root) if root else results_dir()
    found = {
        path: json.loads(path.read_text())
        for path in sorted((root / "runs").glob("*/*.json"))
    }
    began = {}
    for record in found.values():
        key = (record.get("lab"), record.get("profile"), record.get("commit"))
        start = _began(record)
        if start is not None and (key not in began or start < began[key]):
            began[key] = start
    changed = []
    for path, record in found.items():
        stored = record.get("fingerprint")
        if stored and "note" not in stored:
            continue
        key = (record.get("lab"), record.get("profile"), record.get("commit"))
        fresh = fingerprint_from_commit(
            record, repo=repo, began=began.get(key)
        )
        if fresh == stored:
            continue
        record["fingerprint"] = fresh
        validate(record, str(path))
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        changed.append(path)
    return changed


def group_key(record):
    """What a record shares with the records it may be ranged with: its
    settings' and code's fingerprints; None when its code is unknown (no
    fingerprint, or ``code: null``), so that it is grouped alone."""
    found = record.get("fingerprint") or {}
    if not found.get("code") or not found.get("settings"):
        return None
    return (found["settings"], found["code"])


def groups(found):
    """``found`` split into groups of one fingerprint, the newest group
    first (the one with the latest ``created`` record); a record whose
    code is unknown is a group of its own."""
    keyed, alone = {}, []
    for record in found:
        key = group_key(record)
        if key is None:
            alone.append([record])
        else:
            keyed.setdefault(key, []).append(record)
    every = [*keyed.values(), *alone]

    def newest(group):
        return max(str(r.get("created", "")) for r in group)

    return sorted(every, key=newest, reverse=True)


def newest_group(found):
    """The records of the newest fingerprint among ``found``
    (:func:`groups`): what a range over seeds spans, since records of
    other settings or other code are not what seeds alone produce."""
    every = groups(found)
    return every[0] if every else []


def device_kind(device):
    """``"gpu"`` or ``"cpu"`` from a device description."""
    return "gpu" if str(device).upper().startswith("GPU") else "cpu"


def path_for(record, root=None):
    """Where ``record`` is stored."""
    root = pathlib.Path(root) if root else results_dir()
    name = (
        f"{record['model']}.{record['profile']}."
        f"{device_kind(record['device'])}.seed{record['seed']}.json"
    )
    return root / "runs" / record["lab"] / name


def write(record, root=None):
    """Validate ``record``, stamp it and write it under ``root`` (default
    :func:`output_dir`); returns the path. A dry run's record never goes
    into the book's ``results/``."""
    record = dict(record)
    record.setdefault("schema", SCHEMA)
    record.setdefault(
        "created",
        _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    validate(record)
    root = pathlib.Path(root) if root else output_dir()
    if record.get("dry_run") and root.resolve() == BOOK_RESULTS.resolve():
        raise RecordError(
            f"a dry run's record is not the book's: not written to {root}"
        )
    path = path_for(record, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    partial.replace(path)
    return path


def validate(record, where="record"):
    """Raise :class:`RecordError` unless ``record`` follows
    :data:`JSON_SCHEMA`; the message names every field at fault."""
    if not isinstance(record, dict):
        raise RecordError(f"{where}: not a JSON object")
    if record.get("schema") != SCHEMA:
        raise RecordError(
            f"{where}: schema {record.get('schema')!r}, expected {SCHEMA!r}"
        )
    problems = []
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    for error in sorted(_VALIDATOR.iter_errors(record), key=str):
        if error.validator == "required" and not error.path:
            continue  # named above, in the order of REQUIRED
        key = error.path[0] if error.path else None
        # a nested field's fault is told by its top-level field's rule
        rule = JSON_SCHEMA["properties"].get(key, {}) if key else {}
        told = rule.get("description")
        text = f"{key} {told}" if told else error.message
        if text not in problems:
            problems.append(text)
    if problems:
        raise RecordError(f"{where}: {'; '.join(problems)}")
    return record


def read_json(path, error=None):
    """The JSON value in the file ``path``; an unreadable file or bad JSON
    raises ``error`` (default :class:`RecordError`) naming the file."""
    path = pathlib.Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise (error or RecordError)(f"{path}: cannot read ({exc})") from exc


def load(path):
    """One record from a file, validated."""
    return validate(read_json(path), str(path))


def load_all(root=None, **match):
    """Every record under ``root`` whose fields equal ``match``, sorted."""
    root = pathlib.Path(root) if root else results_dir()
    found = []
    for path in sorted((root / "runs").glob("*/*.json")):
        record = load(path)
        if all(_field(record, k) == v for k, v in match.items()):
            found.append(record)
    return found


def _field(record, key):
    if key == "device_kind":
        return device_kind(record["device"])
    return record.get(key)


def find(lab, model=None, profile=None, device="cpu", seed=0, root=None):
    """The one record of ``lab`` (and ``model``) for these settings."""
    match = {"lab": lab, "device_kind": device, "seed": seed}
    if model:
        match["model"] = model
    if profile:
        match["profile"] = profile
    found = load_all(root, **match)
    if len(found) != 1:
        raise LookupError(
            f"{len(found)} records match {match} under "
            f"{pathlib.Path(root) if root else results_dir()}"
        )
    return found[0]


@dataclass
class Range:
    """The spread of the recorded test accuracies of one configuration,
    over the records of one fingerprint. ``matched`` is True when they
    have the fingerprint of the run being placed, False when none had it
    and the newest group stands in (:func:`expected_range`); ``others``
    counts the records of other fingerprints left out, and ``differs``
    says what the group differs in ("settings", "code", "settings and
    code", or "" when it matches)."""

    runs: int
    low: float
    high: float
    mean: float
    matched: bool = True
    others: int = 0
    differs: str = ""

    def verdict(self, accuracy):
        """Plain words: is ``accuracy`` what the recorded runs lead one to
        expect? The range is that of ``runs`` records of one set of
        settings and code (:func:`expected_range`), and the verdict says
        which and how many. Chapter 2."""
        spread = self.high - self.low
        # runs that differ in their seed alone move by about their spread;
        # with one recorded run (no spread), allow half a point either way
        margin = max(spread, 0.005)
        if spread >= 0.005:
            allowed, within = "their spread", "within the spread"
        else:
            allowed, within = "half a point", "within half a point"
        runs = (
            "the one recorded run"
            if self.runs == 1
            else f"the {self.runs} recorded runs"
        )
        if self.matched:
            grouped = f"{runs} with the same settings and code"
        else:
            grouped = f"{runs} of the newest group (other {self.differs})"
        if accuracy < self.low - margin:
            told = (
                f"lower than expected: below {grouped} by more than "
                f"{allowed}; check the settings, the data and the code "
                "before trusting it"
            )
        elif accuracy > self.high + margin:
            told = (
                f"higher than {grouped} by more than {allowed}: a lucky "
                "seed or a real improvement; if it is by several points, "
                "check that no test image leaked into training"
            )
        elif self.matched:
            told = f"normal: {within} of {grouped}"
        else:
            told = (
                f"{within} of {grouped}: a guide, not what seeds alone produce"
            )
        return told


def _differs(record, fingerprint):
    """What ``record``'s fingerprint differs in from ``fingerprint``."""
    mine = record.get("fingerprint") or {}
    parts = [
        part
        for part in ("settings", "code")
        if not mine.get(part) or mine.get(part) != fingerprint.get(part)
    ]
    return " and ".join(parts)


def expected_range(
    lab, model, profile, device, root=None, exclude=None, fingerprint=None
):
    """Range of the recorded test accuracies of ``lab``/``model`` under
    ``profile`` on ``device`` ("cpu" or "gpu"); ``None`` if none recorded.
    ``exclude`` (a path) leaves one record out, e.g. the run just made.

    Only records of one fingerprint are ranged together: those with
    ``fingerprint`` (the run's own, :func:`fingerprint`) when there are
    any, else the newest group (:func:`newest_group`), marked
    ``matched=False``; without a ``fingerprint``, the newest group."""
    runs = [
        r
        for r in load_all(
            root, lab=lab, model=model, profile=profile, device_kind=device
        )
        if exclude is None or path_for(r, root) != pathlib.Path(exclude)
    ]
    if not runs:
        return None
    chosen = []
    if fingerprint and group_key({"fingerprint": fingerprint}):
        key = group_key({"fingerprint": fingerprint})
        chosen = [r for r in runs if group_key(r) == key]
    matched, differs = True, ""
    if not chosen:
        chosen = newest_group(runs)
        if fingerprint:
            matched = False
            differs = _differs(chosen[0], fingerprint)
    values = [r["test_accuracy"] for r in chosen]
    return Range(
        len(values),
        min(values),
        max(values),
        sum(values) / len(values),
        matched=matched,
        others=len(runs) - len(chosen),
        differs=differs,
    )


def versions():
    """Versions of Python, Keras, the backend and NumPy."""

    import keras  # delays keras
    import numpy  # delays numpy

    backend = keras.backend.backend()
    try:
        backend_version = __import__(backend).__version__
    except (ImportError, AttributeError):
        backend_version = "?"
    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        backend: backend_version,
        "numpy": numpy.__version__,
    }


# Fields a page can quote (see cnnbook.sphinxext). Besides the record's own
# numbers: ``minutes``, the final ``train_error`` and ``test_error`` (from
# the last epoch of the curves) and ``epoch_seconds_min``/``_max``.
_PERCENT = {
    "test_accuracy",
    "train_accuracy",
    "train_error",
    "test_error",
    "cpu_busy",
    "end_to_end_share",
}


def value(record, field):
    """The number (or text) ``field`` of ``record``."""
    history = record.get("history", {})
    derived = {
        "minutes": lambda: record["seconds"] / 60,
        "train_error": lambda: 1 - _last(history, "accuracy"),
        "test_error": lambda: 1 - _last(history, "val_accuracy"),
        "epoch_seconds_min": lambda: min(record["epoch_seconds"]),
        "epoch_seconds_max": lambda: max(record["epoch_seconds"]),
        "train_images": lambda: record["data"]["train_images"],
        "test_images": lambda: record["data"]["test_images"],
        "end_to_end_share": lambda: (
            record["images_per_second"] / record["step_images_per_second"]
        ),
    }
    if field in derived:
        try:
            return derived[field]()
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise RecordError(f"cannot derive {field} ({exc})") from exc
    if field.startswith("settings."):
        settings = record.get("settings", {})
        key = field.removeprefix("settings.")
        if key in settings:
            return settings[key]
    if field in record and not isinstance(record[field], dict):
        return record[field]
    raise RecordError(f"no field {field!r} in the record")


def _last(history, key):
    # a multi-output model's first output: "classifier" (records written
    # before the model convention named it "main")
    heads = ("classifier", "main")
    names = [key, *(f"{h}_{key}" for h in heads)]
    names += [key.replace("val_", f"val_{h}_") for h in heads]
    for name in names:
        if history.get(name):
            return history[name][-1]
    raise KeyError(key)


def formatted(record, field):
    """``field`` of ``record`` as a page shows it: a setting as it is
    written (a learning rate of "0.001", not "0.00"), and the fields a
    record stores rounded at that precision (:func:`_format_stored`)."""
    number = value(record, field)
    if field.startswith("settings.") and isinstance(number, float):
        return f"{number:g}"
    return _format_stored(field, number)


# Fields that cnnbook.train rounds before it writes them: the busy share of
# the cores to three decimals, the rates to one decimal of an image per
# second. A page shows them at that precision, three significant figures
# at most ("26.4%", "76.5", "296"), not with a trailing zero ("26.40%").
_ONE_DECIMAL = ("images_per_second", "step_images_per_second")


def _format_stored(field, number):
    if field == "cpu_busy" and isinstance(number, float):
        return f"{100 * number:.1f}%"
    if field in _ONE_DECIMAL and isinstance(number, float) and number < 100:
        return f"{number:.1f}"
    return _format(field, number)


def _format(field, number):
    if isinstance(number, str):
        return number
    if field in _PERCENT:
        return f"{100 * number:.2f}%"
    if field in ("minutes", "seconds"):  # wall times in whole units
        return f"{number:,.0f}"
    if isinstance(number, float):
        return f"{number:,.0f}" if abs(number) >= 100 else f"{number:.2f}"
    if isinstance(number, (list, tuple)):
        return " × ".join(str(n) for n in number)
    return f"{number:,}"


def aggregate_value(found, field, how):
    """``mean``, ``min``, ``max``, ``spread`` (max - min) or ``count`` of
    ``field`` over several records, as a number."""
    values = [value(r, field) for r in found]
    functions = {
        "count": len,
        "mean": lambda v: sum(v) / len(v),
        "min": min,
        "max": max,
        "spread": lambda v: max(v) - min(v),
    }
    if how not in functions:
        raise RecordError(f"unknown aggregate {how!r}")
    return functions[how](values)


def aggregate(found, field, how):
    """:func:`aggregate_value`, formatted as the pages show it."""
    result = aggregate_value(found, field, how)
    if how == "count":
        return str(result)
    if how == "spread" and field in _PERCENT:
        return f"{100 * result:.2f}"
    return _format_stored(field, result)


def gap(first, second):
    """``first - second`` of two fractions, in points with a sign."""
    return f"{100 * (first - second):+.2f}"


def gap_size(first, second):
    """The size of ``first - second`` of two fractions, in points, without
    a sign: for a sentence that says the direction in words."""
    return f"{100 * abs(first - second):.2f}"
