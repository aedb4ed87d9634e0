"""Redraw nine figures of the book from what the book stores, without
re-running their labs (issue #24, the independent reviews): AlexNet's
and VGG-16's architecture (Chapters 3 and 4, from the model code as it
is now, whose last layer is named `classifier`; VGG-16's in two rows,
legible at the width of a page) and their parameters per layer (from the
model code, every bar labelled at one precision), the auxiliary-head
ablation run by run (Chapter 6, from the run records, with no mean: the
six runs cannot be shown to share code), the time ratio of the 5×5
branch with and without its bottleneck (Chapter 6, from the ratios the
cost lab printed in its stored run, with room above the highest), and
the accuracy of each stored run against its multiply-accumulates and
against its training time (Chapter 7, from the run records and the
networks' costs, networks of reduced width labelled "(narrow)" as in the
chapter's tables), and the transfer lab's accuracy against labelled
images a class over the stored seeds (Chapter 8, the `full` run's
records, or the `cpu` runs' while no `full` run is stored), and the
ratios of the separable-cost lab (Chapter 8, from the two ratio tables
its stored run printed, the batch under each tick and each map named
once under its batches).
The labs' stored outputs keep the
figures of the runs that made them; the pages show these.

    .venv/bin/python scripts/redraw_figures.py [NAME ...]

redraws the figures named (all of them when none is named).
"""

import argparse
import json
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from cnnbook import (  # noqa: E402
    arithmetic,
    compare,
    diagrams,
    models,
    plots,
    records,
)

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


COST_LAB = records.REPO / "notebooks" / "ch06-inception-cost.ipynb"


def cost_ratios(notebook=COST_LAB):
    """``{batch size: measured time ratio}`` (bottleneck over direct) as
    the stored run of Chapter 6's cost lab printed them."""
    cells = json.loads(notebook.read_text())["cells"]
    text = "".join(
        "".join(output.get("text", ""))
        for cell in cells
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    )
    return {
        int(batch): float(ratio)
        for batch, ratio in re.findall(
            r"batch +(\d+): .*?measured ratio ([\d.]+)", text
        )
    }


def predicted_ratio():
    """The ratio of multiplications of the 5×5 branch with a 16-channel
    bottleneck to the branch without it, counted as the lab counts it."""
    direct = arithmetic.conv_multiplications(28, 28, 32, 5, 192)
    squeeze = arithmetic.conv_multiplications(28, 28, 16, 1, 192)
    expand = arithmetic.conv_multiplications(28, 28, 32, 5, 16)
    return (squeeze + expand) / direct


def cost_ratio_figure(ratios, predicted):
    """The measured ratio at each batch size, and the predicted one as a
    dashed line, as the lab draws them, the y axis running a tenth past
    the highest ratio so that no marker sits on the edge."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    sizes = list(ratios)
    ax.plot(
        range(len(sizes)),
        [ratios[n] for n in sizes],
        "o-",
        label="measured time ratio",
    )
    ax.axhline(
        predicted,
        ls="--",
        color="gray",
        label=f"multiplication ratio {predicted:.3f}",
    )
    ax.set_xticks(range(len(sizes)), [str(n) for n in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("bottleneck / direct")
    ax.set_ylim(0, 1.1 * max(0.5, *ratios.values()))
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


TRANSFER_ARMS = {
    "scratch": "from scratch",
    "frozen": "frozen + new head",
    "finetuned": "fine-tuned",
}


def transfer_runs(profile, root=None):
    """``{arm: {n: [test accuracy of each seed]}}`` from the stored
    records of Chapter 8's transfer lab under ``profile`` (a ``cpu``
    record is one seed's run, a ``full`` run writes a record a seed)."""
    found = {arm: {} for arm in TRANSFER_ARMS}
    for record in records.load_all(
        root, lab="ch08-transfer", profile=profile, device_kind="cpu"
    ):
        arm, _, n = record["model"].removeprefix("transfer_").rpartition("_n")
        if arm in found:
            found[arm].setdefault(int(n), []).append(record["test_accuracy"])
    return {arm: dict(sorted(by_n.items())) for arm, by_n in found.items()}


def transfer_figure(runs):
    """Test accuracy against labelled images a class (a logarithmic axis),
    one line (the mean over the seeds) and one band (lowest to highest
    seed) an arm; the legend sits right of the axes, where it hides no
    band."""
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    for arm, by_n in runs.items():
        counts = list(by_n)
        values = [[100 * v for v in by_n[n]] for n in counts]
        ax.plot(
            counts,
            [sum(v) / len(v) for v in values],
            "o-",
            label=TRANSFER_ARMS[arm],
        )
        ax.fill_between(
            counts,
            [min(v) for v in values],
            [max(v) for v in values],
            alpha=0.25,
        )
    ax.set_xscale("log")
    counts = sorted({n for by_n in runs.values() for n in by_n})
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.minorticks_off()
    ax.set_xlabel("labelled training images a class (logarithmic axis)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return fig


SEPARABLE_LAB = records.REPO / "notebooks" / "ch08-separable-cost.ipynb"
RATIO_HEADER = ("map", "batch", "MACs", "bytes", "fwd time", "train time")


def separable_ratios(notebook=SEPARABLE_LAB):
    """The two ratio tables the stored run of Chapter 8's cost lab
    printed, separable over standard convolution and inverted residual
    over basic block, each a list of ``(map, batch, MACs, bytes, forward
    time, training time)`` rows as printed."""
    cells = json.loads(notebook.read_text())["cells"]
    tables = []
    for cell in cells:
        for output in (
            cell.get("outputs", []) if cell["cell_type"] == "code" else []
        ):
            text = "".join(output.get("data", {}).get("text/plain", ""))
            lines = text.splitlines()
            if not lines or tuple(re.split(r"\s{2,}", lines[0].strip())) != (
                RATIO_HEADER
            ):
                continue
            rows = []
            for line in lines[2:]:
                size, batch, *ratios = line.split()
                rows.append((size, int(batch), *map(float, ratios)))
            tables.append(rows)
    return tables


def separable_cost_figure(tables):
    """The lab's figure of the ratios, drawn from the printed tables with
    the batch under each tick and the map once under its group of
    batches."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9), sharey=True)
    titles = (
        "separable / standard convolution",
        "inverted residual / basic block",
    )
    for ax, rows, title in zip(axes, tables, titles, strict=True):
        where = list(range(len(rows)))
        columns = list(zip(*rows, strict=True))
        ax.plot(where, columns[2], "k_", ms=14, label="MACs")
        ax.plot(where, columns[3], "^", color="gray", label="bytes moved")
        ax.plot(where, columns[4], "o", label="forward time")
        ax.plot(where, columns[5], "s", mfc="none", label="training time")
        ax.axhline(1, color="gray", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(where, [f"b{batch}" for batch in columns[1]], fontsize=7)
        groups = {}
        for i, size in enumerate(columns[0]):
            groups.setdefault(size, []).append(i)
        for size, places in groups.items():
            ax.annotate(
                size,
                ((places[0] + places[-1]) / 2, 0),
                xycoords=("data", "axes fraction"),
                xytext=(0, -22),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=8,
            )
            if places[0]:
                ax.axvline(places[0] - 0.5, color="gray", lw=0.5, alpha=0.5)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both", axis="y")
    axes[0].set_ylabel("candidate / baseline")
    axes[1].legend(fontsize=8)
    return fig


def _save(fig, name):
    path = plots.FIGURES / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(path)


def architecture(builder, title, rows=1):
    """The architecture diagram of ``builder``'s network, as the lab
    draws it, over ``rows`` rows."""
    return lambda: diagrams.architecture_diagram(
        diagrams.describe(builder), title=title, rows=rows
    )


def parameters(builder, network):
    """The parameters per layer of ``builder``'s network."""

    def draw():
        table = diagrams.describe(builder)
        return diagrams.parameter_distribution(
            table,
            title=f"Where {network}'s {table.total_params:,} parameters are",
        )

    return draw


def transfer():
    full = transfer_runs("full")
    return transfer_figure(full if full["frozen"] else transfer_runs("cpu"))


FIGURES = {
    "ch03-alexnet-architecture": architecture(
        models.alexnet, "AlexNet (227×227×3 input)"
    ),
    "ch03-alexnet-parameters": parameters(models.alexnet, "AlexNet"),
    "ch04-vgg16-architecture": architecture(
        models.vgg16, "VGG-16 (224×224×3 input)", rows=2
    ),
    "ch04-vgg16-parameters": parameters(models.vgg16, "VGG-16"),
    "ch06-aux-ablation": lambda: ablation_figure(ablation_runs()),
    "ch06-cost-ratio": lambda: cost_ratio_figure(
        cost_ratios(), predicted_ratio()
    ),
    "ch08-transfer": transfer,
    "ch08-separable-cost": lambda: separable_cost_figure(separable_ratios()),
    "ch07-accuracy-vs-macs": lambda: plots.accuracy_vs_macs(
        plots.case_study_points(compare.trained())
    ),
    "ch07-accuracy-vs-time": lambda: plots.accuracy_vs_time(
        plots.case_study_times(compare.trained())
    ),
}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Redraw the figures named (all when none is named) "
        "into book/figures/."
    )
    parser.add_argument("names", nargs="*", help=", ".join(FIGURES))
    names = parser.parse_args(argv).names
    unknown = sorted(set(names) - set(FIGURES))
    if unknown:
        parser.error(f"no figure {', '.join(unknown)}")
    for name in names or FIGURES:
        _save(FIGURES[name](), name)


if __name__ == "__main__":
    main()
