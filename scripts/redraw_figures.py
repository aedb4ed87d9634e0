"""Redraw three figures of the book from what the book stores, without
re-running their labs (issue #24, the independent review): AlexNet's
parameters per layer (Chapter 3, from the model code), the auxiliary-head
ablation run by run (Chapter 6, from the run records, with no mean: the
six runs cannot be shown to share code) and the accuracy of each stored
run against its multiply-accumulates (Chapter 7, from the run records and
the networks' costs). The labs' stored outputs keep the
figures of the runs that made them; the pages show these.

    .venv/bin/python scripts/redraw_figures.py
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from cnnbook import compare, diagrams, models, plots, records  # noqa: E402

ABLATION = ("ch06-googlenet", "ablation_aux", "ablation_plain")


def ablation_runs(root=None):
    """``{seed: (with the heads, without)}`` test accuracies of the stored
    `full` ablation runs of Chapter 6."""
    lab, with_heads, without = ABLATION
    found = {}
    for model in (with_heads, without):
        for record in records.load_all(
            root, lab=lab, model=model, profile="full", device_kind="cpu"
        ):
            found.setdefault(record["seed"], {})[model] = record
    return {
        seed: (
            runs[with_heads]["test_accuracy"],
            runs[without]["test_accuracy"],
        )
        for seed, runs in sorted(found.items())
    }


def ablation_figure(runs):
    """Each seed's two runs, with and without the heads, joined by a line;
    no mean is drawn."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for seed, (with_heads, without) in runs.items():
        ax.plot([0, 1], [100 * with_heads, 100 * without], "o-", ms=7)
        ax.annotate(
            f"seed {seed}",
            (1, 100 * without),
            textcoords="offset points",
            xytext=(8, 0),
            va="center",
            fontsize=8,
        )
    ax.set_xticks([0, 1], ["with auxiliary heads", "without"])
    ax.set_xlim(-0.4, 1.6)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, axis="y")
    return fig


def _save(fig, name):
    path = plots.FIGURES / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(path)


def main():
    table = diagrams.describe(models.alexnet)
    _save(
        diagrams.parameter_distribution(
            table,
            title=f"Where AlexNet's {table.total_params:,} parameters are",
        ),
        "ch03-alexnet-parameters",
    )
    _save(ablation_figure(ablation_runs()), "ch06-aux-ablation")
    points = plots.case_study_points(compare.trained())
    _save(plots.accuracy_vs_macs(points), "ch07-accuracy-vs-macs")


if __name__ == "__main__":
    main()
