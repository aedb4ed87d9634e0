"""A learner's run leaves the book as it is (issue #21, item 8): its run
record and figures go to the learner's own folder, and the run is still
placed against the book's records; only a canonical run (`python -m cnnbook
execute`) writes into results/ and book/figures/."""

import subprocess

import keras
import matplotlib.pyplot as plt
import pytest

from cnnbook import data, plots, records, setup
from cnnbook.models import lenet5, pad_digits
from cnnbook.train import cosine_schedule, fit

ROOT = records.REPO


def _book_status():
    return subprocess.run(
        ["git", "status", "--porcelain", "--", "book/figures/", "results/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def learner(monkeypatch, tmp_path):
    """A learner's shell: cpu profile, no results folder of their own
    chosen, not a canonical run; the default learner folder in tmp."""
    monkeypatch.setenv("CNNBOOK_PROFILE", "cpu")
    monkeypatch.delenv(records.ENV_VAR, raising=False)
    monkeypatch.delenv(records.CANONICAL_VAR, raising=False)
    monkeypatch.delenv("CNNBOOK_FIGURES", raising=False)
    monkeypatch.setattr(records, "LEARNER_RESULTS", tmp_path / "my-results")
    return tmp_path / "my-results"


def test_a_cpu_run_of_the_lenet_lab_leaves_the_book_alone(learner, capsys):
    before = _book_status()
    cfg = setup(
        "ch02-lenet", train_size=200, test_size=100, epochs=1, batch_size=50
    )
    assert cfg.profile == "cpu"
    split = data.split(
        "mnist", cfg.train_size, cfg.test_size, prepare=pad_digits
    )
    net = lenet5()
    schedule = cosine_schedule(cfg.lr, cfg, len(split.x_train))
    report = fit(
        net,
        split,
        cfg,
        lab="ch02-lenet",
        optimizer=keras.optimizers.AdamW(
            schedule, weight_decay=cfg.weight_decay
        ),
        bare_seconds=0.1,
    )
    fig = plots.plot_history(report.history)
    figure = plots.save_figure(fig, "ch02-curves-modern")
    plt.close(fig)
    out = capsys.readouterr().out
    # the record and the figure are the learner's
    assert report.record_path.is_relative_to(learner)
    assert records.load(report.record_path)["profile"] == "cpu"
    assert figure == learner / "figures" / "ch02-curves-modern.png"
    assert figure.exists()
    # placed against the book's records: none has these settings (200
    # images), so the newest group of lenet5's cpu records stands in
    assert "your run:" in out and "none has your settings and code" in out
    assert "made with other settings" in out
    assert "your run record:" in out and "unchanged" in out
    assert _book_status() == before


def test_only_a_canonical_run_writes_into_the_book(learner, monkeypatch):
    assert records.output_dir() == learner
    assert plots.figures_dir() == learner / "figures"
    monkeypatch.setenv(records.CANONICAL_VAR, "1")
    assert records.output_dir() == records.BOOK_RESULTS
    assert plots.figures_dir() == plots.FIGURES
    # a folder of one's own wins over both
    monkeypatch.setenv(records.ENV_VAR, str(learner.parent / "mine"))
    assert records.output_dir() == learner.parent / "mine"
    assert plots.figures_dir() == learner.parent / "mine" / "figures"


def test_the_execute_command_marks_its_runs_canonical(monkeypatch, tmp_path):
    from cnnbook import notebooks
    from cnnbook.__main__ import main

    seen = {}

    def execute(path, timeout):
        import os

        seen[path] = os.environ.get(records.CANONICAL_VAR)
        return 0.0

    monkeypatch.delenv(records.CANONICAL_VAR, raising=False)
    monkeypatch.setattr(notebooks, "execute", execute)
    assert main(["execute", str(tmp_path / "lab.ipynb")]) == 0
    assert seen == {str(tmp_path / "lab.ipynb"): "1"}


def test_run_labs_defaults_to_the_learner_folder(learner, monkeypatch, capsys):
    """``run-labs`` from a checkout writes where a learner's run goes;
    asked for the book's own results/ without a canonical run, it refuses
    before running anything."""
    from cnnbook import __main__ as cli

    asked = []

    def stop(notebooks, results, profile, labs=None, timeout=3600):
        asked.append(results)
        raise cli.bundle.BundleError("stopped by the test")

    monkeypatch.setattr(cli.bundle, "run_labs", stop)
    before = _book_status()
    assert cli.main(["run-labs", "--labs", "ch02-lenet"]) == 2
    assert asked == [str(learner)]
    code = cli.main(["run-labs", "--results", str(records.BOOK_RESULTS)])
    assert code == 2 and len(asked) == 1  # refused before running
    assert "CNNBOOK_CANONICAL=1" in capsys.readouterr().err
    assert _book_status() == before
