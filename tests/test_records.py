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
            yield page.name, kind, ref


def test_every_page_reference_resolves():
    references = list(_page_references())
    assert references, "no page quotes a run record"
    for page, kind, ref in references:
        resolver = (
            sphinxext.resolve if kind == "run" else sphinxext.resolve_gap
        )
        assert resolver(ref), (page, ref)


def test_pages_do_not_type_the_numbers_of_stored_runs():
    """A record's accuracy or throughput typed into a page goes stale at
    the next run; pages must quote it with {run}."""
    typed = {}
    for path in STORED:
        record = records.load(path)
        for field in ("test_accuracy", "images_per_second"):
            shown = records.formatted(record, field)
            if len(shown.strip("%").replace(",", "")) >= 4:
                typed[shown] = f"{path.parent.name}/{path.name}:{field}"
    assert typed
    for page in sorted((ROOT / "book").glob("*.md")):
        text = re.sub(r"\{(run|rungap)\}`[^`]+`", "", page.read_text())
        for shown, source in typed.items():
            assert not re.search(rf"(?<![\d.]){re.escape(shown)}", text), (
                f"{page.name} types {shown} ({source}); use {{run}}"
            )


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


LABS = sorted((ROOT / "notebooks").glob("*.ipynb"))


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
