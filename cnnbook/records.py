"""Run records: one JSON file per training run, the source of every number
a page quotes. Introduced in Chapter 2; Chapter 7 reads them all.

A record says what was trained (chapter, lab, model, settings), where and
how (profile, seed, device, backend and versions, commit), and what came
of it (per-epoch curves, final train and test accuracy, wall time,
end-to-end and bare images/s). Records live in ``results/runs/<lab>/`` in
the repository (``$CNNBOOK_RESULTS`` moves them); the file name is
``<model>.<profile>.<device>.seed<seed>.json``, so a re-run of the same lab,
profile, device and seed replaces its record and another seed adds one.

Under the ``smoke`` profile nothing is written unless ``$CNNBOOK_RESULTS``
is set (the tests and the offline bundle set it), so CI never replaces the
stored runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import subprocess
from dataclasses import dataclass

SCHEMA = "cnnbook.run/1"
ENV_VAR = "CNNBOOK_RESULTS"
REPO = pathlib.Path(__file__).resolve().parent.parent
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


class RecordError(ValueError):
    """A record file that is not a valid run record."""


def results_dir():
    """The results folder: ``$CNNBOOK_RESULTS`` or ``<repo>/results``."""
    chosen = os.environ.get(ENV_VAR, "").strip()
    return pathlib.Path(chosen) if chosen else REPO / "results"


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
    """Validate ``record``, stamp it and write it; returns the path."""
    record = dict(record)
    record.setdefault("schema", SCHEMA)
    record.setdefault(
        "created",
        _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    validate(record)
    path = path_for(record, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    partial.replace(path)
    return path


def validate(record, where="record"):
    """Raise :class:`RecordError` unless ``record`` follows the schema."""
    if not isinstance(record, dict):
        raise RecordError(f"{where}: not a JSON object")
    if record.get("schema") != SCHEMA:
        raise RecordError(
            f"{where}: schema {record.get('schema')!r}, expected {SCHEMA!r}"
        )
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise RecordError(f"{where}: missing {', '.join(missing)}")
    for key in ("test_accuracy", "train_accuracy"):
        value = record[key]
        if not (isinstance(value, (int, float)) and 0 <= value <= 1):
            raise RecordError(f"{where}: {key} must lie in [0, 1]")
    for key in ("seconds", "images_per_second"):
        if not (isinstance(record[key], (int, float)) and record[key] > 0):
            raise RecordError(f"{where}: {key} must be positive")
    return record


def load(path):
    """One record from a file, validated."""
    path = pathlib.Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: cannot read ({exc})") from exc
    return validate(record, str(path))


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
    """The spread of the recorded test accuracies of one configuration."""

    runs: int
    low: float
    high: float
    mean: float

    def verdict(self, accuracy):
        """Plain words: is ``accuracy`` what the recorded runs lead one to
        expect? Chapter 2."""
        spread = self.high - self.low
        # seeds alone move a run by about the recorded spread; with one
        # recorded run, allow half a point either way
        margin = max(spread, 0.005)
        if accuracy < self.low - margin:
            return (
                "lower than expected: below every recorded run by more "
                "than the seed-to-seed spread; check the settings, the "
                "data and the code before trusting it"
            )
        if accuracy > self.high + margin:
            return (
                "higher than every recorded run by more than the "
                "seed-to-seed spread: a lucky seed or a real improvement; "
                "if it is by several points, check that no test image "
                "leaked into training"
            )
        return "normal: within the spread that seeds alone produce"


def expected_range(lab, model, profile, device, root=None, exclude=None):
    """Range of the recorded test accuracies of ``lab``/``model`` under
    ``profile`` on ``device`` ("cpu" or "gpu"); ``None`` if none recorded.
    ``exclude`` (a path) leaves one record out, e.g. the run just made."""
    runs = [
        r
        for r in load_all(
            root, lab=lab, model=model, profile=profile, device_kind=device
        )
        if exclude is None or path_for(r, root) != pathlib.Path(exclude)
    ]
    if not runs:
        return None
    values = [r["test_accuracy"] for r in runs]
    return Range(
        len(values), min(values), max(values), sum(values) / len(values)
    )


def versions():
    """Versions of Python, Keras, the backend and NumPy."""
    import platform

    import keras
    import numpy

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
    """``field`` of ``record`` as a page shows it."""
    return _format(field, value(record, field))


def _format(field, number):
    if isinstance(number, str):
        return number
    if field in _PERCENT:
        return f"{100 * number:.2f}%"
    if field == "minutes":
        return f"{number:.0f}"
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
    return _format(field, result)


def gap(first, second):
    """``first - second`` of two fractions, in points with a sign."""
    return f"{100 * (first - second):+.2f}"
