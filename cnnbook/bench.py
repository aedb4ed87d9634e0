"""``python -m cnnbook bench``: what this machine does with each network.

Introduced in Chapter 7. For every network the labs train, the bare step
rate (training images per second of the compiled step, data in memory,
nothing else of a run going on: no validation, callbacks or shuffling;
other work on the machine still takes its share) on the active Keras
backend, at the size and batch of the labs' ``full`` profile. Compare it
with the end-to-end rate in a run record to see what validation, feeding
and the machine cost.

The networks are timed in one sitting and interleaved: every chosen
network is built and its step compiled first, then round 1 times each of
them for about ``seconds`` in turn, round 2 again, and so on
(:func:`schedule`), so that a machine whose speed changes during the run
(other work starting or stopping, the clock throttling) slows every
network alike rather than the ones that happened to come last. Each round
also records the share of the cores the process kept busy
(:class:`cnnbook.machine.CpuMeter`).

With ``--out FOLDER`` the run is stored as a bench record,
``FOLDER/<device kind>.<backend>.json`` (:func:`path_for`), whose format is
a JSON Schema (:data:`JSON_SCHEMA`), checked when it is written and when
it is read. The book's own record lives in ``results/bench/`` and is
written only when that folder is named with ``--out``; a plain ``bench``
stores nothing. Chapter 7 quotes the book's record with ``{bench}``
(:mod:`cnnbook.sphinxext`).
"""

from __future__ import annotations

import datetime as _dt
import json
import pathlib
import statistics
import time
from dataclasses import dataclass, field

import jsonschema
import numpy as np

from cnnbook import machine, records
from cnnbook.labs import LABS

SCHEMA = "cnnbook.bench/1"
ROUNDS = 3  # defaults a learner can afford: 3 rounds of 5 s a network
SECONDS = 5.0
FOLDER = "bench"  # under a results folder: results/bench/ for the book


class BenchError(records.RecordError):
    """A bench record that is not valid, or a reference to what it lacks."""


@dataclass(frozen=True)
class Entry:
    """A network of the bench: how to build it, the lab and the record
    model name it comes from, the input shape its lab's entry declares
    and its batch size."""

    name: str
    lab: str
    model: str
    build: object
    input_shape: tuple
    batch_size: int


def networks():
    """Name -> :class:`Entry` of the labs' networks, from each lab's
    ``bench`` entries in :mod:`cnnbook.labs` (built with the lab's ``full``
    settings, at its ``full`` batch size)."""

    found = {}
    for lab in LABS.values():
        full = lab.settings("full")
        for entry in lab.bench:
            found[entry.name] = Entry(
                entry.name,
                lab.stem,
                entry.network,
                lambda lab=lab, entry=entry, full=full: lab.build(
                    entry.network, full
                ),
                tuple(entry.input_shape),
                full["batch_size"],
            )
    return found


def schedule(names, rounds):
    """The order of the timings: ``[(round, name)]``, every network once a
    round, rounds one after the other (round numbers from 1)."""
    return [(r, name) for r in range(1, rounds + 1) for name in names]


@dataclass
class Timed:
    """What the bench measured of one network: its rates (images/s) and
    busy shares of the cores, one a round."""

    entry: Entry
    parameters: int
    macs: int
    input_shape: tuple
    rates: list = field(default_factory=list)
    busy: list = field(default_factory=list)


def _prepare(entry):
    """Build ``entry``'s network and compile it; returns ``(model, macs)``
    (MACs per image, counted by :func:`cnnbook.compare.cost`)."""
    import keras  # delays keras

    from cnnbook.compare import cost  # delays keras

    keras.utils.set_random_seed(0)
    model = entry.build()
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model, cost(model).macs


def _warm_up(model, entry, data):
    """Run the compiled step once, which traces and compiles it."""
    from cnnbook.train import bare_step_rate  # delays keras

    x, y = data
    bare_step_rate(model, x, y, entry.batch_size, 1.0)


def _measure(model, entry, data, seconds):
    """One timing: bare images/s over about ``seconds`` and the share of
    the cores kept busy meanwhile."""
    from cnnbook.train import bare_step_rate  # delays keras

    x, y = data
    with machine.CpuMeter() as meter:
        rate = bare_step_rate(model, x, y, entry.batch_size, seconds)
    return rate, meter.busy


def chosen(names=None):
    """The :class:`Entry` of each of ``names`` (default: every network),
    in that order; :class:`ValueError` names any unknown one."""
    every = networks()
    unknown = [n for n in names or () if n not in every]
    if unknown:
        raise ValueError(
            f"unknown network(s) {', '.join(unknown)}; choose from "
            f"{', '.join(every)}"
        )
    return [every[n] for n in names or every]


def run(
    names=None,
    rounds=ROUNDS,
    seconds=SECONDS,
    batches=256,
    prepare=_prepare,
    warm_up=_warm_up,
    measure=_measure,
):
    """Time ``names`` (default: every network of the labs) interleaved:
    each built, compiled and its step run once first, then ``rounds``
    rounds of about ``seconds`` a network (:func:`schedule`); returns a
    :class:`Timed` a network, in the order given. ``prepare``,
    ``warm_up`` and ``measure`` are the build, the compilation and the
    timing (tests replace them). The images are random, of the shape the
    built network takes (which the lab's ``bench`` entry may not say:
    VGG's resizes its 28×28 images inside)."""
    if rounds < 1 or seconds <= 0:
        raise ValueError("rounds must be at least 1 and seconds positive")
    entries = chosen(names)
    records.commit_at_start()  # the commit of the code being timed
    machine.tune_allocator()
    rng = np.random.default_rng(0)
    data, models, timed = {}, {}, {}

    def images(entry, shape):  # the same images for networks of one shape
        key = (shape, entry.batch_size)
        if key not in data:
            n = entry.batch_size * batches
            data[key] = (
                rng.random((n, *shape), dtype=np.float32),
                rng.integers(0, 10, n),
            )
        return data[key]

    for entry in entries:
        model, macs = prepare(entry)
        shape = tuple(int(d) for d in model.input_shape[1:])
        warm_up(model, entry, images(entry, shape))
        models[entry.name] = model
        timed[entry.name] = Timed(entry, model.count_params(), macs, shape)
    by_name = {entry.name: entry for entry in entries}
    for _round, name in schedule(list(by_name), rounds):
        t = timed[name]
        rate, busy = measure(
            models[name], t.entry, images(t.entry, t.input_shape), seconds
        )
        t.rates.append(float(rate))
        t.busy.append(float(busy))
    return [timed[entry.name] for entry in entries]


def table(found):
    """The rows ``python -m cnnbook bench`` prints:
    ``(columns, cells)`` for :func:`cnnbook.tables.render`."""
    columns = (
        "network",
        "parameters",
        "MACs/image",
        "batch",
        "images/s (median)",
        "lowest–highest",
        "cores busy",
    )
    cells = [
        (
            t.entry.name,
            t.parameters,
            t.macs,
            t.entry.batch_size,
            f"{statistics.median(t.rates):,.0f}",
            f"{min(t.rates):,.0f}–{max(t.rates):,.0f}",
            f"{statistics.median(t.busy):.0%}",
        )
        for t in found
    ]
    return columns, cells


# ------------------------------------------------------------------ records
def _positive_list(message):
    return {
        "type": "array",
        "minItems": 1,
        "items": {"type": "number", "minimum": 0},
        "description": message,
    }


# The bench record as a JSON Schema; each rule's description is the end of
# the message :func:`validate` gives when a record breaks it.
JSON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "cnnbook bench record",
    "type": "object",
    "required": [
        "schema",
        "created",
        "device",
        "cores",
        "backend",
        "versions",
        "allocator",
        "commit",
        "rounds",
        "seconds",
        "networks",
    ],
    "properties": {
        "schema": {"const": SCHEMA},
        "created": {
            "type": "string",
            "description": "must be an ISO 8601 time (UTC)",
        },
        "device": {"type": "string"},
        "cores": {
            "type": "integer",
            "minimum": 1,
            "description": "must be a whole number of cores",
        },
        "backend": {"type": "string"},
        "versions": {
            "type": "object",
            "required": ["python", "keras", "numpy"],
            "additionalProperties": {"type": "string"},
            "description": "must name the versions of python, keras, the "
            "backend and numpy",
        },
        "allocator": {"type": "string"},
        "commit": {"type": "string"},
        "rounds": {
            "type": "integer",
            "minimum": 1,
            "description": "must be a whole number of rounds, at least 1",
        },
        "seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "must be positive",
        },
        "networks": {
            "type": "array",
            "minItems": 1,
            "description": "must be a list of networks, each with name, "
            "lab, model, parameters, macs, batch_size, input_shape and one "
            "images_per_second and cores_busy a round",
            "items": {
                "type": "object",
                "required": [
                    "name",
                    "lab",
                    "model",
                    "parameters",
                    "macs",
                    "batch_size",
                    "input_shape",
                    "images_per_second",
                    "cores_busy",
                ],
                "properties": {
                    "name": {"type": "string"},
                    "lab": {"type": "string"},
                    "model": {"type": "string"},
                    "parameters": {"type": "integer", "minimum": 1},
                    "macs": {"type": "integer", "minimum": 0},
                    "batch_size": {"type": "integer", "minimum": 1},
                    "input_shape": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 1},
                    },
                    "images_per_second": _positive_list("rates"),
                    "cores_busy": _positive_list("busy shares"),
                },
            },
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(JSON_SCHEMA)


def validate(record, where="bench record"):
    """Raise :class:`BenchError` unless ``record`` follows
    :data:`JSON_SCHEMA` and has one rate and one busy share a round for
    every network; the message names every field at fault."""
    if not isinstance(record, dict):
        raise BenchError(f"{where}: not a JSON object")
    if record.get("schema") != SCHEMA:
        raise BenchError(
            f"{where}: schema {record.get('schema')!r}, expected {SCHEMA!r}"
        )
    problems = []
    for error in sorted(_VALIDATOR.iter_errors(record), key=str):
        place = "/".join(str(p) for p in error.path) or "record"
        key = error.path[0] if error.path else None
        told = JSON_SCHEMA["properties"].get(key, {}).get("description")
        text = f"{place}: {error.message}" + (
            f" ({key} {told})" if told else ""
        )
        if text not in problems:
            problems.append(text)
    if not problems:
        try:
            _dt.datetime.fromisoformat(record["created"])
        except ValueError:
            problems.append(f"created: {record['created']!r} is not a time")
        for i, network in enumerate(record["networks"]):
            for key in ("images_per_second", "cores_busy"):
                if len(network[key]) != record["rounds"]:
                    problems.append(
                        f"networks/{i}/{key}: {len(network[key])} values "
                        f"for {record['rounds']} rounds"
                    )
        names = [n["name"] for n in record["networks"]]
        if len(set(names)) != len(names):
            problems.append(f"networks: a name twice in {names}")
    if problems:
        raise BenchError(f"{where}: {'; '.join(problems)}")
    return record


def make_record(found, rounds, seconds, commit=None):
    """The bench record of a :func:`run` (``found``), validated."""
    import keras  # delays keras

    from cnnbook import profiles  # delays keras

    record = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "device": profiles.device_description(),
        "cores": machine.cpu_count(),
        "backend": keras.backend.backend(),
        "versions": records.versions(),
        "allocator": machine.tune_allocator(),
        "commit": commit or records.commit_at_start(),
        "rounds": rounds,
        "seconds": seconds,
        "networks": [
            {
                "name": t.entry.name,
                "lab": t.entry.lab,
                "model": t.entry.model,
                "parameters": t.parameters,
                "macs": t.macs,
                "batch_size": t.entry.batch_size,
                "input_shape": list(t.input_shape),
                "images_per_second": t.rates,
                "cores_busy": t.busy,
            }
            for t in found
        ],
    }
    return validate(record)


def key_of(record):
    """``<device kind>.<backend>``: the name of a record's file, and what
    a ``{bench}`` reference names it by (``cpu.tensorflow``)."""
    return f"{records.device_kind(record['device'])}.{record['backend']}"


def path_for(record, folder):
    """Where ``record`` is stored in ``folder``."""
    return pathlib.Path(folder) / f"{key_of(record)}.json"


def write(record, folder):
    """Validate ``record`` and write it into ``folder``; returns the path."""
    validate(record)
    path = path_for(record, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    partial.replace(path)
    return path


def load(path):
    """One bench record from a file, validated."""
    return validate(records.read_json(path, BenchError), str(path))


def find(key, root=None):
    """The stored record ``key`` (``cpu.tensorflow``) of the results folder
    ``root`` (default :func:`cnnbook.records.results_dir`)."""
    folder = pathlib.Path(root or records.results_dir()) / FOLDER
    path = folder / f"{key}.json"
    if not path.exists():
        raise LookupError(f"no bench record {path}")
    return load(path)


# Fields a page can quote (``{bench}`` in cnnbook.sphinxext): per network,
# the rounds' median (``.min``/``.max`` for the lowest and highest) of the
# two measured lists, and its single numbers (``macs_millions``: the MACs
# in millions); per record, the run's own.
ROUND_FIELDS = ("images_per_second", "cores_busy")
NETWORK_FIELDS = ("parameters", "macs", "batch_size")
RECORD_FIELDS = ("rounds", "seconds", "cores", "device", "backend", "date")


def value(record, network, field):
    """The number (or text) ``field`` of ``network`` in ``record`` (the
    record's own field when ``network`` is None)."""
    base, _, how = field.partition(".")
    if network is None:
        if base not in RECORD_FIELDS or how:
            raise BenchError(
                f"no record field {field!r}; use one of "
                f"{', '.join(RECORD_FIELDS)}"
            )
        if base == "date":
            return record["created"][:10]
        return record[base]
    found = [n for n in record["networks"] if n["name"] == network]
    if not found:
        names = ", ".join(n["name"] for n in record["networks"])
        raise BenchError(f"no network {network!r} in the record ({names})")
    [entry] = found
    if base in ROUND_FIELDS:
        functions = {"": statistics.median, "min": min, "max": max}
        if how not in functions:
            raise BenchError(f"unknown aggregate {how!r}: use .min or .max")
        return functions[how](entry[base])
    if base in NETWORK_FIELDS and not how:
        return entry[base]
    if base == "macs_millions" and not how:
        return entry["macs"] / 1e6
    if base in RECORD_FIELDS and not how:
        return value(record, None, base)
    raise BenchError(
        f"no field {field!r}; use one of "
        f"{', '.join(ROUND_FIELDS + NETWORK_FIELDS + RECORD_FIELDS)}, "
        "macs_millions"
    )


def formatted(record, network, field):
    """:func:`value` as a page shows it, like ``{run}``'s numbers: a rate
    to the whole image (two decimals below 100), a busy share in percent."""
    number = value(record, network, field)
    base = field.partition(".")[0]
    if base == "cores_busy":
        return records._format("cpu_busy", number)
    if base == "seconds":
        return f"{number:g}"
    if base == "macs_millions":  # as {cost}'s scaled counts
        return f"{number:,.2f}"
    return records._format(base, number)


def forward_seconds(model, batch, repeats):
    """Median wall time of one forward pass of ``model`` over ``batch``,
    after two passes that compile it. Chapter 6."""
    model.predict_on_batch(batch)
    model.predict_on_batch(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
