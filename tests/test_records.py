"""Run records, the trainer that writes them and the pages that quote them."""

import copy
import json
import pathlib
import re
import textwrap
import types

import pytest

from cnnbook import records, sphinxext

ROOT = pathlib.Path(__file__).resolve().parent.parent
STORED = sorted((ROOT / "results" / "runs").glob("*/*.json"))
LABS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _record(**changes):
    record = {
        "schema": records.SCHEMA,
        "lab": "ch99-demo",
        "chapter": "ch99",
        "model": "demo_net",
        "profile": "cpu",
        "seed": 0,
        "device": "CPU",
        "backend": "tensorflow",
        "versions": {"keras": "3"},
        "settings": {"epochs": 2, "depths": [8, 14]},
        "history": {
            "accuracy": [0.5, 0.8],
            "val_accuracy": [0.55, 0.75],
            "loss": [1.0, 0.5],
        },
        "epochs": 2,
        "train_accuracy": 0.8,
        "test_accuracy": 0.7512,
        "seconds": 120.0,
        "images_per_second": 950.0,
        "step_images_per_second": 1000.0,
        "epoch_seconds": [50.0, 60.0],
        "data": {"train_images": 1000, "test_images": 500},
        "commit": "abc",
        # one fingerprint for all: ranges span records of one fingerprint
        "fingerprint": {"settings": "0" * 16, "code": "1" * 16},
    }
    record.update(changes)
    return record


def test_write_then_load_round_trip(tmp_path):
    path = records.write(_record(), tmp_path)
    assert path == tmp_path / "runs/ch99-demo/demo_net.cpu.cpu.seed0.json"
    loaded = records.load(path)
    assert loaded["test_accuracy"] == 0.7512
    assert loaded["created"]  # stamped on writing


@pytest.mark.parametrize(
    "change, message",
    [
        ({"schema": "other/9"}, "schema"),
        ({"test_accuracy": 1.5}, "test_accuracy"),
        ({"seconds": 0}, "seconds"),
    ],
)
def test_invalid_records_are_refused(tmp_path, change, message):
    with pytest.raises(records.RecordError, match=message):
        records.write(_record(**change), tmp_path)


def test_missing_fields_are_named(tmp_path):
    record = _record()
    del record["seed"], record["device"]
    with pytest.raises(records.RecordError, match="seed, device"):
        records.validate(record)


def test_the_schema_is_a_json_schema_and_marks_dry_runs(tmp_path):
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(records.JSON_SCHEMA)
    with pytest.raises(records.RecordError, match="dry_run must be true"):
        records.validate(_record(dry_run="yes"))
    with pytest.raises(records.RecordError, match="seed must be an integer"):
        records.validate(_record(seed="0"))
    # several faults are named together
    with pytest.raises(records.RecordError, match="seconds.*test_accuracy"):
        records.validate(_record(test_accuracy=2, seconds=-1))
    dry = _record(dry_run=True, profile="gpu")
    assert records.write(dry, tmp_path).exists()
    with pytest.raises(records.RecordError, match="not the book's"):
        records.write(dry, records.BOOK_RESULTS)


def test_unreadable_record_says_which_file(tmp_path):
    bad = tmp_path / "runs" / "x" / "y.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(records.RecordError, match="y.json"):
        records.load_all(tmp_path)


def test_smoke_runs_leave_stored_records_alone(monkeypatch):
    monkeypatch.delenv(records.ENV_VAR, raising=False)
    assert not records.should_write("smoke")
    assert records.should_write("full")
    monkeypatch.setenv(records.ENV_VAR, "/tmp/x")
    assert records.should_write("smoke")


def test_expected_range_and_verdicts(tmp_path):
    for seed, accuracy in enumerate((0.90, 0.91, 0.92)):
        records.write(_record(seed=seed, test_accuracy=accuracy), tmp_path)
    expected = records.expected_range(
        "ch99-demo", "demo_net", "cpu", "cpu", root=tmp_path
    )
    assert (expected.runs, expected.low, expected.high) == (3, 0.90, 0.92)
    assert expected.mean == pytest.approx(0.91)
    assert expected.verdict(0.905).startswith("normal")
    assert expected.verdict(0.85).startswith("lower")
    assert expected.verdict(0.97).startswith("higher")
    assert (
        records.expected_range(
            "ch99-demo", "demo_net", "cpu", "gpu", root=tmp_path
        )
        is None
    )


def test_references_resolve_with_formats(tmp_path):
    for seed, accuracy in enumerate((0.90, 0.91, 0.95)):
        records.write(_record(seed=seed, test_accuracy=accuracy), tmp_path)
    records.write(
        _record(model="other", history={"accuracy": [0.6, 0.7]}), tmp_path
    )
    ref = "ch99-demo/demo_net/cpu"
    assert sphinxext.resolve(f"{ref}:test_accuracy", tmp_path) == "90.00%"
    assert sphinxext.resolve(f"{ref}/cpu/2:test_accuracy", tmp_path) == (
        "95.00%"
    )
    assert sphinxext.resolve(f"{ref}:test_accuracy.mean", tmp_path) == (
        "92.00%"
    )
    assert sphinxext.resolve(f"{ref}:test_accuracy.spread", tmp_path) == (
        "5.00"
    )
    assert sphinxext.resolve(f"{ref}:test_accuracy.count", tmp_path) == "3"
    assert sphinxext.resolve(f"{ref}:seconds", tmp_path) == "120"
    assert sphinxext.resolve(f"{ref}:minutes", tmp_path) == "2"
    # a wall time under 100 s is shown in whole seconds too, not as 87.63
    records.write(_record(model="short", seconds=87.63), tmp_path)
    short = "ch99-demo/short/cpu:seconds"
    assert sphinxext.resolve(short, tmp_path) == "88"
    assert sphinxext.resolve(f"{ref}:images_per_second", tmp_path) == "950"
    assert sphinxext.resolve(f"{ref}:train_error", tmp_path) == "20.00%"
    assert sphinxext.resolve(f"{ref}:settings.epochs", tmp_path) == "2"
    assert sphinxext.resolve(f"{ref}:end_to_end_share", tmp_path) == ("95.00%")
    gap = sphinxext.resolve_gap(
        f"ch99-demo/other/cpu:train_error|{ref}", tmp_path
    )
    assert gap == "+10.00"
    # a gap between means over the seeds: 92.00% - 75.12%
    mean_gap = sphinxext.resolve_gap(
        f"{ref}:test_accuracy.mean|ch99-demo/other/cpu", tmp_path
    )
    assert mean_gap == "+16.88"


def test_stored_precision_and_settings_as_written(tmp_path):
    """The busy share and the rates that a record stores rounded show at
    that precision, without a trailing zero ("26.4%", "76.5"; a rate of
    100 or more whole), over seeds too; a setting shows as written ("a
    learning rate of 0.001", not "0.00")."""
    for seed, (busy, rate) in enumerate(((0.264, 76.5), (0.702, 296.0))):
        records.write(
            _record(
                seed=seed,
                cpu_busy=busy,
                step_images_per_second=rate,
                images_per_second=rate,
                settings={"epochs": 2, "lr": 0.001, "weight_decay": 0.05},
            ),
            tmp_path,
        )
    ref = "ch99-demo/demo_net/cpu"
    shown = {
        f"{ref}:cpu_busy": "26.4%",
        f"{ref}/cpu/1:cpu_busy": "70.2%",
        f"{ref}:step_images_per_second": "76.5",
        f"{ref}/cpu/1:step_images_per_second": "296",
        f"{ref}:images_per_second.min": "76.5",
        f"{ref}:cpu_busy.mean": "48.3%",
        f"{ref}:settings.lr": "0.001",
        f"{ref}:settings.weight_decay": "0.05",
        f"{ref}:settings.epochs": "2",
    }
    for reference, text in shown.items():
        assert sphinxext.resolve(reference, tmp_path) == text, reference
    # the accuracies keep the pages' two decimals
    assert sphinxext.resolve(f"{ref}:test_accuracy", tmp_path) == "75.12%"


def test_a_gap_with_abs_gives_its_size_without_a_sign(tmp_path):
    """``.abs`` after the field: the size of A - B, for a sentence that
    says "below" or "above" itself; without it the sign stays."""
    for seed, accuracy in enumerate((0.90, 0.91, 0.95)):
        records.write(_record(seed=seed, test_accuracy=accuracy), tmp_path)
    records.write(
        _record(model="other", history={"accuracy": [0.6, 0.7]}), tmp_path
    )
    ref, other = "ch99-demo/demo_net/cpu", "ch99-demo/other/cpu"
    signed = sphinxext.resolve_gap(f"{ref}:train_error|{other}", tmp_path)
    assert signed == "-10.00"
    for text in (
        f"{ref}:train_error.abs|{other}",
        f"{other}:train_error.abs|{ref}",
        f"{ref}|{other}:train_error.abs",
    ):
        assert sphinxext.resolve_gap(text, tmp_path) == "10.00", text
    # an aggregate over the seeds keeps working: 75.12% - 92.00%
    mean_size = sphinxext.resolve_gap(
        f"{other}|{ref}:test_accuracy.mean.abs", tmp_path
    )
    assert mean_size == "16.88"
    # each side keeps the aggregate it names: 95.00% - 90.00%, not max-max
    spread = sphinxext.resolve_gap(
        f"{ref}:test_accuracy.max|{ref}:test_accuracy.min", tmp_path
    )
    assert spread == "+5.00"


@pytest.mark.parametrize(
    "reference",
    [
        "ch99-demo/demo_net/full:test_accuracy",  # no such profile
        "ch99-demo/demo_net/cpu:no_such_field",
        "ch99-demo/demo_net:test_accuracy",  # no profile at all
    ],
)
def test_bad_references_fail(tmp_path, reference):
    records.write(_record(), tmp_path)
    with pytest.raises((LookupError, ValueError, records.RecordError)):
        sphinxext.resolve(reference, tmp_path)


def _build(project, results):
    from sphinx.cmd.build import build_main

    out = project / "_build"
    status = build_main(
        [
            "-q",
            "-W",
            "-E",
            "-b",
            "html",
            "-D",
            f"cnnbook_results={results}",
            str(project),
            str(out),
        ]
    )
    return status, out


def test_a_changed_record_changes_the_built_page(tmp_path):
    """The mechanism every page uses, end to end through Sphinx."""
    project = tmp_path / "book"
    project.mkdir()
    (project / "conf.py").write_text(
        "extensions = ['myst_parser', 'cnnbook.sphinxext']\n"
    )
    (project / "index.md").write_text(
        textwrap.dedent(
            """\
            # Demo

            The run reached {run}`ch99-demo/demo_net/cpu:test_accuracy`.
            """
        )
    )
    results = tmp_path / "results"
    path = records.write(_record(), results)
    status, out = _build(project, results)
    assert status == 0
    assert "75.12%" in (out / "index.html").read_text()
    changed = json.loads(path.read_text())
    changed["test_accuracy"] = 0.8888
    path.write_text(json.dumps(changed))
    status, out = _build(project, results)
    assert status == 0
    html = (out / "index.html").read_text()
    assert "88.88%" in html and "75.12%" not in html
    path.unlink()
    status, _ = _build(project, results)
    assert status != 0  # a missing record fails a -W build


def test_stored_records_are_valid_and_say_where_they_ran():
    assert STORED, "no run records are stored under results/runs"
    for path in STORED:
        record = records.load(path)
        assert record["profile"] in ("cpu", "full", "gpu"), path
        assert record["device"] and record["backend"], path
        assert record["commit"] != "unknown", path
        assert path == records.path_for(record, ROOT / "results"), path


def _page_references():
    for page in sorted((ROOT / "book").glob("*.md")):
        text = page.read_text()
        for kind, ref in re.findall(r"\{(run|rungap)\}`([^`]+)`", text):
            # in a table cell a {rungap}'s pipe is written \| (GFM), and
            # the role gets it without the backslash
            yield page.name, kind, ref.replace("\\|", "|")


def test_every_page_reference_resolves():
    references = list(_page_references())
    assert references, "no page quotes a run record"
    for page, kind, ref in references:
        resolver = (
            sphinxext.resolve if kind == "run" else sphinxext.resolve_gap
        )
        assert resolver(ref), (page, ref)


def test_no_table_cell_splits_a_rungap():
    """A {rungap}'s pipe in a table row must be written \\|: a bare one
    ends the cell, and the page shows the role's raw text, silently."""
    role = re.compile(r"\{rungap\}`[^`]*(?<!\\)\|[^`]*`")
    split = [
        f"{page.name}:{number}"
        for page in sorted((ROOT / "book").glob("*.md"))
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if line.lstrip().startswith("|") and role.search(line)
    ]
    assert not split, split


def test_every_page_cost_resolves():
    """Each {cost} reference names a network and a field of the costs
    that chapter 7 stores (the build would fail on it; this names it)."""
    from cnnbook import compare

    quoted = [
        (page.name, ref)
        for page in sorted((ROOT / "book").glob("*.md"))
        for ref in re.findall(r"\{cost\}`([^`]+)`", page.read_text())
    ]
    assert quoted, "no page quotes a stored cost"
    for page, ref in quoted:
        assert compare.quoted_cost(ref), (page, ref)


# How a page or a lab's markdown would type a stored run's result: an
# accuracy as the pages show it, a rate before "images/s" (or "img/s",
# "images per second"), a duration before "min"/"minutes" or "s"/"seconds".
_RATE_UNIT = r"\s*(?:images|img)(?:/s|\s+(?:per|a)\s+second)"
_MINUTES_UNIT = r"(?:\s|-)?(?:mins?|minutes?)\b"
_SECONDS_UNIT = r"(?:\s|-)?(?:s|sec|seconds?)\b"
_ROLE = re.compile(r"\{(run|rungap|cost)\}`[^`]+`")


def _whole_number(number):
    """A rounded number as a page may type it: 2647 or 2,647."""
    forms = sorted({f"{number:d}", f"{number:,d}"})
    return "(?:" + "|".join(re.escape(form) for form in forms) + ")"


def _typed_forms(paths):
    """``[(pattern, source)]``: each way a page could type a result of the
    records at ``paths`` by hand. Accuracies at the pages' two decimals
    (four digits or more, so that a round "90.00%" of another kind is
    not taken for one); rates and durations only next to their unit."""
    forms = []
    for path in paths:
        record = records.load(path)
        source = f"{path.parent.name}/{path.name}"
        for field in ("test_accuracy", "train_accuracy"):
            shown = records.formatted(record, field)
            if len(shown.strip("%").replace(",", "")) >= 4:
                pattern = rf"(?<![\d.,]){re.escape(shown)}"
                forms.append((pattern, f"{source}:{field}"))
        for field in ("images_per_second", "step_images_per_second"):
            rate = _whole_number(round(record[field]))
            pattern = rf"(?<![\d.,]){rate}{_RATE_UNIT}"
            forms.append((pattern, f"{source}:{field}"))
        # a training of a few seconds (chapter 8's transfer arms) has a
        # duration that pages type for other reasons ("a 10 s limit"), and
        # no page quotes so short a run's time: durations from a minute on
        if record["seconds"] < 60:
            continue
        minutes = _whole_number(round(record["seconds"] / 60))
        forms.append(
            (rf"(?<![\d.,]){minutes}{_MINUTES_UNIT}", f"{source}:minutes")
        )
        seconds = _whole_number(round(record["seconds"]))
        forms.append(
            (rf"(?<![\d.,]){seconds}{_SECONDS_UNIT}", f"{source}:seconds")
        )
    return [(re.compile(pattern), source) for pattern, source in forms]


def _typed_results(text, forms):
    """``[(typed text, source)]`` for each result of a record that
    ``text`` types instead of quoting it with a role."""
    text = _ROLE.sub("", text)
    return [
        (found.group(0), source)
        for pattern, source in forms
        for found in pattern.finditer(text)
    ]


def _lab_markdown(path):
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    return "\n\n".join(
        cell.source for cell in notebook.cells if cell.cell_type == "markdown"
    )


def test_typed_results_are_found_and_roles_are_not(tmp_path):
    """The scanner of the next test catches a typed accuracy, rate and
    duration of a record, and passes the same sentence written with
    roles, or with numbers that are no record's."""
    path = records.write(
        _record(
            test_accuracy=0.9215,
            train_accuracy=0.95,
            seconds=2647.0,
            images_per_second=272.4,
            step_images_per_second=1321.0,
        ),
        tmp_path,
    )
    forms = _typed_forms([path])
    typed = (
        "It reached 92.15% (95.00% on its training images) in 44 min, "
        "2,647 s in all, at 272 images/s end to end and 1,321 images per "
        "second for the bare step; a 44-minute run."
    )
    found = _typed_results(typed, forms)
    assert sorted(text for text, _ in found) == sorted(
        [
            "92.15%",
            "95.00%",
            "44 min",
            "2,647 s",
            "272 images/s",
            "1,321 images per second",
            "44-minute",
        ]
    )
    assert {source.rpartition(":")[2] for _, source in found} == {
        "test_accuracy",
        "train_accuracy",
        "minutes",
        "seconds",
        "images_per_second",
        "step_images_per_second",
    }
    ref = "ch99-demo/demo_net/cpu"
    quoted = (
        f"It reached {{run}}`{ref}:test_accuracy` in "
        f"{{run}}`{ref}:minutes` min at {{run}}`{ref}:images_per_second` "
        "images/s; the limit is 45 min, 120 s a cell, 2720 images."
    )
    assert _typed_results(quoted, forms) == []


def test_pages_do_not_type_the_numbers_of_stored_runs():
    """A record's accuracy, rate or duration typed into a page or into a
    lab's markdown goes stale at the next run; they must quote it with
    {run}."""
    forms = _typed_forms(STORED)
    assert forms
    texts = {
        page.name: page.read_text()
        for page in sorted((ROOT / "book").glob("*.md"))
    }
    texts.update({path.name: _lab_markdown(path) for path in LABS})
    assert len(texts) > 10
    typed = [
        f"{name} types {text!r} ({source}); quote it with {{run}}"
        for name, text in texts.items()
        for text, source in _typed_results(text, forms)
    ]
    assert not typed, "\n".join(typed)


def test_fit_writes_a_complete_record(tmp_path, monkeypatch):
    import keras
    import numpy as np

    from cnnbook import data, train

    monkeypatch.setenv(records.ENV_VAR, str(tmp_path))
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    split = data.Split(
        "fashion_mnist",
        rng.random((256, 8, 8, 1), dtype=np.float32),
        rng.integers(0, 10, 256),
        rng.random((64, 8, 8, 1), dtype=np.float32),
        rng.integers(0, 10, 64),
    )
    net = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="tiny",
    )
    cfg = types.SimpleNamespace(
        profile="smoke", seed=0, epochs=2, batch_size=32
    )
    report = train.fit(
        net, split, cfg, lab="ch99-demo", optimizer="sgd", bare_seconds=0.1
    )
    record = records.load(report.record_path)
    assert record["model"] == "tiny" and record["epochs"] == 2
    assert record["data"]["train_images"] == 256
    assert len(record["history"]["val_accuracy"]) == 2
    assert len(record["epoch_seconds"]) == 2
    assert record["step_images_per_second"] > 0
    assert 0 <= record["cpu_busy"] <= 1.5
    # a second run is placed against the first
    again = train.fit(
        net, split, cfg, lab="ch99-demo", optimizer="sgd", bare_seconds=0.1
    )
    assert again.expected is not None and again.expected.runs == 1
    assert copy.deepcopy(again.history)


def _stored_text(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def test_every_stored_training_has_its_record():
    """The result each lab printed is the one its record holds: the
    notebook, the record and so the pages show one and the same run."""
    checked = 0
    for path in LABS:
        text = _stored_text(path)
        banner = re.search(r"profile: (\w+) \| device: (.+?) \|", text)
        results = re.findall(
            r"^trained (\d+) epoch\(s\) in ([\d.]+) s .*test accuracy "
            r"([\d.]+)%$",
            text,
            re.M,
        )
        if not results:
            continue
        profile = banner.group(1)
        device = records.device_kind(banner.group(2))
        stored = records.load_all(
            lab=path.stem, profile=profile, device_kind=device
        )
        assert stored, f"{path.name}: no record of its {profile} run"
        for epochs, seconds, accuracy in results:
            assert any(
                r["epochs"] == int(epochs)
                and abs(r["seconds"] - float(seconds)) < 0.1
                and f"{100 * r['test_accuracy']:.2f}" == accuracy
                for r in stored
            ), (path.name, epochs, seconds, accuracy)
            checked += 1
    assert checked >= 5


def test_commit_is_dirty_for_code_not_for_run_outputs(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(
            ["git", "-C", str(tmp_path), *args],
            check=True,
            capture_output=True,
        )

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "run.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.setattr(records, "REPO", tmp_path)
    clean = records.commit()
    assert clean != "unknown" and not clean.endswith("+dirty")
    (tmp_path / "results" / "run.json").write_text('{"a": 1}')
    assert records.commit() == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert records.commit() == clean + "+dirty"


def test_commit_at_start_keeps_the_first_answer(monkeypatch):
    answers = iter(["aaa", "bbb"])
    monkeypatch.setattr(records, "_COMMIT_AT_START", None)
    monkeypatch.setattr(records, "commit", lambda: next(answers))
    assert records.commit_at_start() == "aaa"
    assert records.commit_at_start() == "aaa"
