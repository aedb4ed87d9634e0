"""Redraw two figures of the book from what the book stores, without
re-running their labs (issue #24, the independent review): AlexNet's
parameters per layer (Chapter 3, from the model code) and the accuracy of
each stored run against its multiply-accumulates (Chapter 7, from the run
records and the networks' costs). The labs' stored outputs keep the
figures of the runs that made them; the pages show these.

    .venv/bin/python scripts/redraw_figures.py
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from cnnbook import compare, diagrams, models, plots  # noqa: E402


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
    points = plots.case_study_points(compare.trained())
    _save(plots.accuracy_vs_macs(points), "ch07-accuracy-vs-macs")


if __name__ == "__main__":
    main()
