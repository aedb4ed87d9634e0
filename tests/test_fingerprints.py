"""Ranges that mean what they say (issue #24, item 3): a run record
carries a fingerprint of its settings and of the code that trained it, and
a range over seeds (the pages' ``.mean``/``.min``/``.max``/``.spread``/
``.count``, the verdict ``fit`` prints, chapter 7's seed columns) spans
the records of one fingerprint only."""

import datetime
import json
import re
import shutil
import subprocess
import types

import pytest

from cnnbook import records, sphinxext, train

ROOT = records.REPO
STORED = sorted((ROOT / "results" / "runs").glob("*/*.json"))
LAB = "ch02-lenet"
OLD = {"settings": "a" * 16, "code": "b" * 16}
NEW = {"settings": "a" * 16, "code": "c" * 16}


def _record(seed, accuracy, fingerprint, created, **changes):
    record = {
        "schema": records.SCHEMA,
        "lab": "ch99-demo",
        "chapter": "ch99",
        "model": "demo_net",
        "profile": "cpu",
        "seed": seed,
        "device": "CPU",
        "backend": "tensorflow",
        "versions": {"keras": "3"},
        "settings": {"epochs": 2},
        "history": {"accuracy": [0.5, 0.8], "val_accuracy": [0.5, 0.7]},
        "epochs": 2,
        "train_accuracy": 0.8,
        "test_accuracy": accuracy,
        "seconds": 100.0 + seed,
        "images_per_second": 900.0,
        "step_images_per_second": 1000.0,
        "commit": "abc",
        "created": created,
        "fingerprint": fingerprint,
    }
    record.update(changes)
    return record


@pytest.fixture
def two_fingerprints(tmp_path):
    """Three seeds of an older code version (90, 91, 92%), then two seeds
    of the newer one (80, 84%) and a record of unknown code (50%)."""
    for seed, accuracy in enumerate((0.90, 0.91, 0.92)):
        records.write(
            _record(seed, accuracy, OLD, f"2026-01-01T00:0{seed}:00+00:00"),
            tmp_path,
        )
    for seed, accuracy in ((3, 0.80), (4, 0.84)):
        records.write(
            _record(seed, accuracy, NEW, f"2026-02-01T00:0{seed}:00+00:00"),
            tmp_path,
        )
    unknown = {"settings": "a" * 16, "code": None, "note": "dirty"}
    records.write(
        _record(5, 0.50, unknown, "2026-01-15T00:00:00+00:00"), tmp_path
    )
    return tmp_path


def test_a_range_over_two_fingerprints_spans_the_newest_only(
    two_fingerprints,
):
    """The documented choice: the newest group (the one with the latest
    record), never a mix; the page's .count says how many it spans."""
    ref = "ch99-demo/demo_net/cpu"

    def shown(field):
        return sphinxext.resolve(f"{ref}:{field}", two_fingerprints)

    assert shown("test_accuracy.count") == "2"
    assert shown("test_accuracy.min") == "80.00%"
    assert shown("test_accuracy.max") == "84.00%"
    assert shown("test_accuracy.mean") == "82.00%"
    assert shown("test_accuracy.spread") == "4.00"
    assert shown("seconds.min") == "103"
    # a single record is still quoted by its seed, whatever its group
    assert shown("test_accuracy") == "90.00%"
    other = _record(0, 0.70, OLD, "2026-01-01T00:00:00+00:00")
    records.write({**other, "model": "other_net"}, two_fingerprints)
    gap = sphinxext.resolve_gap(
        f"{ref}:test_accuracy.mean|ch99-demo/other_net/cpu", two_fingerprints
    )
    assert gap == "+12.00"  # 82.00% - 70.00%; all six records: +11.17


def test_the_groups_are_the_fingerprints_and_unknown_code_stands_alone(
    two_fingerprints,
):
    found = records.load_all(two_fingerprints)
    groups = records.groups(found)
    seeds = [sorted(r["seed"] for r in group) for group in groups]
    # newest first: the new code (February), the unknown one (January 15),
    # the old code (its newest record on January 1)
    assert seeds == [[3, 4], [5], [0, 1, 2]]
    assert records.newest_group(found) == groups[0]
    # two records of unknown code are never grouped with each other
    twin = dict(found[-1], seed=6)
    assert twin["fingerprint"]["code"] is None
    assert len(records.groups([found[-1], twin])) == 2
    # nor is a record without a fingerprint (written before they existed)
    bare = {k: v for k, v in found[0].items() if k != "fingerprint"}
    assert len(records.groups([bare, dict(bare, seed=9)])) == 2


def test_the_verdict_compares_like_with_like(two_fingerprints):
    def expected(fingerprint):
        return records.expected_range(
            "ch99-demo",
            "demo_net",
            "cpu",
            "cpu",
            root=two_fingerprints,
            fingerprint=fingerprint,
        )

    old = expected(OLD)
    assert (old.runs, old.low, old.high, old.matched) == (3, 0.90, 0.92, True)
    assert old.others == 3
    assert old.verdict(0.91).startswith("normal")
    report = types.SimpleNamespace(test_accuracy=0.91, expected=old)
    told = train._placement(report, "cpu", "cpu")
    assert "3 recorded runs (with your settings and code)" in told
    assert "3 record(s) of other settings or code left out" in told

    other = expected({"settings": "d" * 16, "code": "b" * 16})
    assert (other.runs, other.low, other.high) == (2, 0.80, 0.84)
    assert not other.matched and other.differs == "settings and code"
    report = types.SimpleNamespace(test_accuracy=0.82, expected=other)
    told = train._placement(report, "cpu", "cpu")
    assert "none has your settings and code" in told
    assert "newest group, made with other settings and code" in told
    assert "not what seeds alone produce" in told

    # same settings, code never recorded: the code is what differs
    fresh = expected({"settings": "a" * 16, "code": "e" * 16})
    assert fresh.differs == "code" and fresh.runs == 2


# --------------------------------------------------- what goes into one


def _copy_of_the_code(target):
    """The files a code fingerprint reads, and a page, copied out."""
    for path in records.code_paths(LAB, _folder_files(ROOT)):
        if (ROOT / path).exists():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / path, target / path)
    (target / "book").mkdir()
    shutil.copy(ROOT / "book" / "ch02-lenet.md", target / "book")
    return target


def _folder_files(repo):
    return lambda folder: [p.name for p in (repo / folder).glob("*.py")]


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_the_code_fingerprint_follows_the_builders_not_the_pages(tmp_path):
    repo = _copy_of_the_code(tmp_path)
    first = records.code_fingerprint(LAB, repo)
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert records.code_fingerprint(LAB, ROOT) == first

    # a page, a comment or a docstring: the same code runs
    (repo / "book" / "ch02-lenet.md").write_text("# Another page\n")
    lenet = repo / "cnnbook" / "models" / "lenet.py"
    lenet.write_text("# a comment\n" + lenet.read_text())
    _edit(lenet, '"""', '"""Said differently. ')
    notebook = repo / "notebooks" / f"{LAB}.ipynb"
    content = json.loads(notebook.read_text())
    markdown = next(
        c for c in content["cells"] if c["cell_type"] == "markdown"
    )
    markdown["source"] = ["# Another title\n"]
    notebook.write_text(json.dumps(content))
    assert records.code_fingerprint(LAB, repo) == first

    # a builder's code: another fingerprint
    _edit(lenet, "activation=", "activation=None or ")
    changed = records.code_fingerprint(LAB, repo)
    assert changed != first
    # the lab's notebook's code, or train.py's, too
    code = next(c for c in content["cells"] if c["cell_type"] == "code")
    code["source"] = ["x = 1\n", *code["source"]]
    notebook.write_text(json.dumps(content))
    assert records.code_fingerprint(LAB, repo) not in (first, changed)
    before = records.code_fingerprint(LAB, repo)
    (repo / "cnnbook" / "train.py").write_text("GPU_STEPS_PER_CALL = 8\n")
    assert records.code_fingerprint(LAB, repo) != before


def test_the_settings_fingerprint_follows_the_settings_not_the_seed():
    settings = {"epochs": 8, "lr": 0.001, "depths": (8, 14)}
    first = records.settings_fingerprint(settings)
    assert (
        records.settings_fingerprint(
            {"depths": [8, 14], "lr": 0.001, "epochs": 8, "seed": 3}
        )
        == first
    )
    assert records.settings_fingerprint({**settings, "lr": 0.01}) != first
    assert records.settings_fingerprint({**settings, "mirror": False}) != (
        first
    )


def _git(repo, *args):
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_a_record_of_a_commit_gets_the_code_of_that_commit(tmp_path):
    """The backfill reads the same files at the record's commit (git
    show); a +dirty or unknown commit gives code null, which says why."""
    repo = _copy_of_the_code(tmp_path)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(
        repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"
    )
    head = _git(repo, "rev-parse", "--short=12", "HEAD")
    at_commit = records.code_fingerprint_at(LAB, head, repo)
    assert at_commit == records.code_fingerprint(LAB, repo)
    _edit(
        repo / "cnnbook" / "data.py",
        "def ",
        "def _unused():\n    pass\n\n\ndef ",
    )
    assert records.code_fingerprint(LAB, repo) != at_commit
    assert records.code_fingerprint_at(LAB, head, repo) == at_commit

    made = records._commit_time(head, repo)
    assert made is not None
    record = {
        "lab": LAB,
        "settings": {"epochs": 8},
        "commit": head,
        "created": (made + datetime.timedelta(minutes=5)).isoformat(),
        "seconds": 60.0,
    }
    found = records.fingerprint_from_commit(record, repo)
    assert found["code"] == at_commit
    assert found["settings"] == records.settings_fingerprint({"epochs": 8})
    dirty = records.fingerprint_from_commit(
        {**record, "commit": head + "+dirty"}, repo
    )
    assert dirty["code"] is None and "uncommitted" in dirty["note"]
    missing = records.fingerprint_from_commit(
        {**record, "commit": "0" * 12}, repo
    )
    assert (
        missing["code"] is None
        and "not in the repository" in (missing["note"])
    )


def _fix_time_record(repo, head, created, seconds):
    record = {
        "lab": LAB,
        "settings": {"epochs": 8},
        "commit": head,
        "created": created.isoformat(),
        "seconds": seconds,
    }
    return records.fingerprint_from_commit(record, repo)


def test_a_commit_read_when_the_record_was_written_gives_unknown_code(
    tmp_path,
):
    """Before commit c134082 a record named the commit when it was
    written, not the one its notebook imported: the backfill gives such a
    record, and one whose commit was made after its run began, code
    null with a note that says so; a commit made before the run began, in a
    record written after the fix, keeps its code."""
    repo = _copy_of_the_code(tmp_path)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(
        repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"
    )
    head = _git(repo, "rev-parse", "--short=12", "HEAD")
    made = records._commit_time(head, repo)
    fix = records.COMMIT_AT_START_SINCE
    assert made > fix  # the commit of this test is made today

    hour = datetime.timedelta(hours=1)
    trusted = _fix_time_record(repo, head, made + hour, 60.0)
    assert trusted["code"] == records.code_fingerprint_at(LAB, head, repo)

    before_fix = _fix_time_record(repo, head, fix - hour, 60.0)
    assert before_fix["code"] is None
    assert "written before commit c134082" in before_fix["note"]
    assert "not when the code was imported" in before_fix["note"]

    # written after the commit, but its training began before it existed
    late = _fix_time_record(repo, head, made + hour, 2 * 3600.0)
    assert late["code"] is None
    assert "after the run began" in late["note"]

    # one execution: a later record of it began after the commit, but the
    # execution began before
    chained = records.fingerprint_from_commit(
        {
            "lab": LAB,
            "settings": {"epochs": 8},
            "commit": head,
            "created": (made + hour).isoformat(),
            "seconds": 60.0,
        },
        repo,
        began=made - hour,
    )
    assert chained["code"] is None


def test_the_fix_time_is_that_of_commit_c134082():
    """The cut-off the backfill uses is the commit time of c134082 in this
    repository (read with git, not typed)."""
    assert records._commit_time("c134082") == records.COMMIT_AT_START_SINCE


def test_the_backfill_is_stable_on_the_stored_records(tmp_path):
    """Running scripts/fingerprint_records.py again on the stored records
    changes none of them, so the stored fingerprints are the ones the
    backfill gives."""
    copy = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "runs", copy / "runs")
    assert records.add_fingerprints(copy) == []


def test_the_schema_checks_the_fingerprint():
    good = _record(0, 0.9, OLD, "2026-01-01T00:00:00+00:00")
    records.validate(good)
    for wrong in (
        {"settings": "a" * 16},  # no code
        {"settings": "a" * 16, "code": "xyz"},
        {"settings": "a" * 16, "code": None, "other": 1},
    ):
        with pytest.raises(records.RecordError, match="fingerprint"):
            records.validate({**good, "fingerprint": wrong})


def test_stored_records_all_carry_a_fingerprint_that_their_commit_gives():
    """Every stored record has a fingerprint and validates; its settings
    hash is that of its settings, and a known code hash is that of the
    files at its commit (so no fingerprint was typed by hand)."""
    assert STORED
    at_commit = {}
    for path in STORED:
        record = records.load(path)
        found = record.get("fingerprint")
        assert found, (
            f"{path}: no fingerprint (scripts/fingerprint_records.py)"
        )
        settings = records.settings_fingerprint(record["settings"])
        assert found["settings"] == settings, path
        commit = record["commit"]
        if found["code"] is None:
            assert found.get("note"), path
            continue
        if commit.endswith("+dirty"):
            continue  # written by fit from the files themselves
        key = (record["lab"], commit)
        if key not in at_commit:
            at_commit[key] = records.code_fingerprint_at(*key)
        assert found["code"] == at_commit[key], path


def test_every_range_on_a_page_says_how_many_records_it_spans():
    """A page that quotes a mean, a minimum, a maximum or a spread over
    seeds also quotes the .count of the same configuration."""
    role = re.compile(
        r"\{(?:run|rungap)\}`([^`|:]+):[\w.]+\.(mean|min|max|spread|count)"
    )
    pages = sorted((ROOT / "book").glob("*.md"))
    missing = []
    for page in pages:
        text = page.read_text()
        ranged, counted = set(), set()
        for selector, how in role.findall(text):
            (counted if how == "count" else ranged).add(selector)
        missing += [f"{page.name}: {s}" for s in sorted(ranged - counted)]
    assert not missing, "add a .count role for:\n" + "\n".join(missing)
