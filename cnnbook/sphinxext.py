"""Sphinx extension: pages quote run records instead of typing numbers.

Introduced in Chapter 2; every page that states a result of a training run
uses it. In MyST::

    {run}`ch05-resnet18/resnet18_cifar_w16/full:test_accuracy`

inserts the test accuracy of that record (``lab/model/profile``, then
optionally ``/device/seed``, device ``cpu`` and seed 0 by default) as
"94.21%". A field with ``.mean``, ``.min``, ``.max``, ``.spread`` or
``.count`` is taken over the seeds of the configuration, and only over
records of one fingerprint (settings and code, see
:func:`cnnbook.records.fingerprint`): when the configuration's records
have several, the newest group (:func:`cnnbook.records.newest_group`, the
one with the latest record; a record whose code is unknown is a group of
its own). The page states how many records a range spans with the
``.count`` of the same configuration.
``{rungap}`A:field|B``` inserts the difference A - B in points ("+18.09";
B takes A's field unless it names its own). Where the sentence says the
direction in words ("13.11 points below"), ``.abs`` after A's field
inserts the size of the difference without its sign
(``{rungap}`A:train_error.abs|B```); tables keep the signed form. The
fields are those of :func:`cnnbook.records.value`.
``{cost}`VGG-16:macs``` quotes the costs that Chapter 7 stores in
``results/costs.json`` (``macs_billions`` and ``macs_millions`` scale
them).
``{bench}`cpu.tensorflow/mobilenet_v2:images_per_second``` quotes the
stored interleaved bench run of Chapter 7 (``results/bench/``, see
:func:`resolve_bench`).

A missing record or field is a build error that names the reference, so a
page can never show a stale or invented number: re-running a lab and
rebuilding the book updates the page.
"""

from __future__ import annotations

import pathlib

from docutils import nodes

from cnnbook import bench, records
from cnnbook.compare import quoted_cost


def _parse(text):
    """``lab/model/profile[/device[/seed]]:field`` into its parts."""
    selector, sep, field = text.rpartition(":")
    parts = selector.split("/")
    if not sep or len(parts) < 3 or not field:
        raise ValueError("expected lab/model/profile[/device[/seed]]:field")
    device = parts[3] if len(parts) > 3 else "cpu"
    seed = int(parts[4]) if len(parts) > 4 else 0
    return (*parts[:3], device, seed, field)


def seed_group(lab, model, profile, device="cpu", root=None):
    """The records an aggregate over seeds spans: those of
    ``lab/model/profile`` on ``device`` with the newest fingerprint, never
    a mix of fingerprints."""
    found = records.load_all(
        root, lab=lab, model=model, profile=profile, device_kind=device
    )
    if not found:
        raise LookupError("no record matches")
    return records.newest_group(found)


def resolve(text, root=None):
    """The text a ``{run}`` reference stands for."""
    lab, model, profile, device, seed, field = _parse(text)
    base, _, how = field.partition(".")
    if how and base != "settings":
        found = seed_group(lab, model, profile, device, root)
        return records.aggregate(found, base, how)
    record = records.find(lab, model, profile, device, seed, root=root)
    return records.formatted(record, field)


def resolve_gap(text, root=None):
    """The text of ``{rungap}`A|B:field```: A - B in points. The field may
    be an aggregate over the seeds (``test_accuracy.mean``); a field that
    ends in ``.abs`` gives the size of the difference, without a sign."""
    first, _, second = text.partition("|")
    field = _parse(first if ":" in first else second)[-1]
    field, magnitude = _without_suffix(field, ".abs")
    first, second = (
        _without_suffix(selector, ".abs")[0] for selector in (first, second)
    )
    numbers = []
    for selector in (first, second):
        # each side takes its own field where it names one (A.min - B.max)
        lab, model, profile, device, seed, own = _parse(
            selector if ":" in selector else f"{selector}:{field}"
        )
        base, _, how = own.partition(".")
        if how:
            found = seed_group(lab, model, profile, device, root)
            numbers.append(records.aggregate_value(found, base, how))
        else:
            record = records.find(lab, model, profile, device, seed, root=root)
            numbers.append(records.value(record, own))
    if magnitude:
        return records.gap_size(*numbers)
    return records.gap(*numbers)


def _without_suffix(text, suffix):
    """``text`` without ``suffix``, and whether it had it."""
    if text.endswith(suffix):
        return text.removesuffix(suffix), True
    return text, False


def _quoted_cost(text, root=None):
    return quoted_cost(text, root)


def resolve_bench(text, root=None):
    """The text of ``{bench}`key/network:field``` (``key`` is the stored
    bench record's ``<device kind>.<backend>``, e.g. ``cpu.tensorflow``):
    a field of the network in ``results/bench/<key>.json``, the median
    over the rounds for the measured ``images_per_second`` and
    ``cores_busy`` (``.min``/``.max``: the lowest and highest round);
    ``key:field`` without a network quotes the run's own ``rounds``,
    ``seconds``, ``cores``, ``device``, ``backend`` or ``date``."""
    selector, sep, field = text.rpartition(":")
    key, _, network = selector.partition("/")
    if not sep or not key or not field:
        raise ValueError("expected key[/network]:field")
    record = bench.find(key, root)
    return bench.formatted(record, network or None, field)


def _role(resolver):
    def role(name, rawtext, text, lineno, inliner, options=None, content=()):
        env = inliner.document.settings.env
        root = env.config.cnnbook_results or None
        try:
            shown = resolver(text, root)
        except (LookupError, ValueError, KeyError, records.RecordError) as exc:
            message = inliner.reporter.error(
                f"run record reference {text!r}: {exc}", line=lineno
            )
            return [inliner.problematic(rawtext, rawtext, message)], [message]
        # rebuild the page when any record changes
        folder = pathlib.Path(root or records.results_dir())
        for pattern in ("runs/*/*.json", f"{bench.FOLDER}/*.json"):
            for path in folder.glob(pattern):
                env.note_dependency(str(path))
        return [nodes.inline(rawtext, shown, classes=["run-value"])], []

    return role


def setup(app):
    app.add_config_value("cnnbook_results", "", "env")
    app.add_role("run", _role(resolve))
    app.add_role("rungap", _role(resolve_gap))
    app.add_role("cost", _role(_quoted_cost))
    app.add_role("bench", _role(resolve_bench))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
