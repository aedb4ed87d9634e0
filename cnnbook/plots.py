"""Figures shared by the chapters: curves, confusion matrices, image grids.

Introduced in Chapter 1. :func:`save_figure` also writes a PNG: into
``book/figures/`` for a canonical run (``python -m cnnbook execute``), so
that the chapter pages show the figures of a real run, and into the
learner's own results folder (``figures/`` beside the run records) for any
other run. It writes nothing under the ``smoke`` profile.
"""

from __future__ import annotations

import os
import pathlib

import matplotlib.pyplot as plt
import numpy as np

from cnnbook import records
from cnnbook.arithmetic import conv_output_size
from cnnbook.profiles import current_profile

FIGURES = pathlib.Path(__file__).resolve().parent.parent / "book" / "figures"


def figures_dir():
    """Where :func:`save_figure` writes: ``book/figures/`` for a canonical
    run without ``$CNNBOOK_RESULTS``, else the ``figures/`` folder of
    :func:`cnnbook.records.output_dir` (the learner's). Chapter 1."""

    if records.canonical() and not os.environ.get(records.ENV_VAR, "").strip():
        return FIGURES
    return records.output_dir() / "figures"


def save_figure(fig, name, profile=None):
    """Save ``fig`` as ``<name>.png`` in :func:`figures_dir` (nothing under
    smoke); returns the path or None. Chapter 1.

    ``CNNBOOK_FIGURES=off`` writes nothing either, for extra canonical runs
    (other seeds) whose figures the pages should not show.
    """

    if (profile or current_profile()) == "smoke" or (
        os.environ.get("CNNBOOK_FIGURES", "").strip().lower() == "off"
    ):
        return None
    folder = figures_dir()
    if folder == FIGURES and not FIGURES.parent.exists():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def label_below(points, decades=0.3, points_apart=0.5):
    """For each ``(macs, accuracy in percent)`` of ``points``, whether
    :func:`accuracy_vs_macs` writes its label below the marker: when a
    point with a higher accuracy lies within ``decades`` of it on the
    log-scaled MACs and ``points_apart`` in accuracy, so that the two labels
    do not overlap (:func:`accuracy_vs_time` asks the same of minutes).
    Chapter 7."""
    below = []
    for macs, accuracy in points:
        below.append(
            any(
                0 < other_accuracy - accuracy <= points_apart
                and abs(np.log10(other_macs / macs)) <= decades
                for other_macs, other_accuracy in points
            )
        )
    return below


def case_study_points(rows):
    """The ``(label, macs, accuracy, parameters)`` of each of chapter 7's
    rows (:func:`cnnbook.compare.trained`) for :func:`accuracy_vs_macs`; a
    network trained at a reduced ``width`` is labelled "(narrow)", as the
    chapter's tables name it. Chapter 7."""
    return [
        (
            case_study_label(row),
            row.cost.macs,
            row.accuracy,
            row.cost.parameters,
        )
        for row in rows
    ]


def case_study_label(row):
    """The label of one of chapter 7's rows in its figures: "(narrow)"
    added where the network was trained at a reduced ``width``, as the
    chapter's tables name it. Chapter 7."""
    label = row.label
    if "width" in row.record["settings"] and "(narrow)" not in label:
        label = f"{label} (narrow)"
    return label


def case_study_times(rows):
    """The ``(label, minutes, accuracy)`` of each of chapter 7's rows for
    :func:`accuracy_vs_time`: the training time of the stored run, as its
    record has it. Chapter 7."""
    return [
        (case_study_label(row), row.record["seconds"] / 60, row.accuracy)
        for row in rows
    ]


def _annotate(ax, label, point, under, left=False, gap=6):
    """``label`` beside ``point``: below it where ``under`` is true, level
    with it where ``under`` is None, else above; to its left where
    ``left`` says; ``gap`` points to the side. Returns the text."""
    rise, align = {
        True: (-8, "top"),
        None: (0, "center"),
        False: (6, "baseline"),
    }[under]
    return ax.annotate(
        label,
        point,
        textcoords="offset points",
        xytext=(-gap if left else gap, rise),
        va=align,
        ha="right" if left else "left",
        fontsize=8,
    )


def _box_hits_circle(box, centre, radius):
    """Whether the display-space ``box`` and the circle of ``radius``
    (pixels) around ``centre`` overlap."""
    nearest = np.clip(centre, (box.x0, box.y0), (box.x1, box.y1))
    return bool(np.hypot(*(nearest - centre)) < radius)


def label_clashes(ax, own, box):
    """What the label ``box`` (display space) of the ``own``-th marker of
    ``ax`` runs into: the indices of the other markers it covers, then
    ``"label"`` for each earlier label it overlaps. Chapter 7."""
    renderer = ax.figure.canvas.get_renderer()
    clashes = []
    for index, markers in enumerate(ax.collections):
        if index == own:
            continue
        centre = ax.transData.transform(markers.get_offsets()[0])
        # a scatter size is the area of the marker in points squared
        radius = np.sqrt(markers.get_sizes()[0]) / 2 * ax.figure.dpi / 72
        if _box_hits_circle(box, centre, radius):
            clashes.append(index)
    for text in ax.texts[:own]:
        if box.overlaps(text.get_window_extent(renderer)):
            clashes.append("label")
    return clashes


def _inside(ax, box, renderer):
    """Whether the display-space ``box`` lies wholly inside ``ax``'s
    frame. Chapter 7."""
    frame = ax.get_window_extent(renderer)
    return (
        frame.x0 <= box.x0
        and box.x1 <= frame.x1
        and frame.y0 <= box.y0
        and box.y1 <= frame.y1
    )


def _place_labels(ax, labels, points, below):
    """Each label beside its marker (drawn already, the axes' limits set),
    clear of the marker's edge: to the right, above or below as ``below``
    says, unless it would run into another marker or an earlier label or
    out of the axes; then level with the marker, then to the left, then
    on the other side vertically, whichever first clashes with nothing."""
    renderer = ax.figure.canvas.get_renderer()
    for own, (label, point, under) in enumerate(
        zip(labels, points, below, strict=True)
    ):
        # a scatter size is the marker's area in points squared
        gap = max(6, np.sqrt(ax.collections[own].get_sizes()[0]) / 2 + 2)
        tries = [
            (vertical, left)
            for vertical in (under, None, not under)
            for left in (False, True)
        ]
        for vertical, left in tries:
            text = _annotate(ax, label, point, vertical, left, gap)
            box = text.get_window_extent(renderer)
            if _inside(ax, box, renderer) and not label_clashes(ax, own, box):
                break
            text.remove()
        else:
            _annotate(ax, label, point, under, gap=gap)


def _room_for_labels(ax, xs, percents, log_x):
    """Axis limits that keep every marker and the label beside it (to its
    right, or below it) inside the axes: the x axis runs a third of its
    span (on a log axis, eight tenths of a decade, room for a label set
    off by a large marker) past the last point, the y axis a tenth of its
    span below the lowest and above the highest, room for a label set
    above or below its marker. Chapter 7."""
    low, high = min(xs), max(xs)
    if log_x:
        ax.set_xlim(low / 10**0.2, high * 10**0.8)
    else:
        ax.set_xlim(min(0, low), high + (high - min(0, low)) / 3)
    margin = max(0.5, (max(percents) - min(percents)) / 10)
    ax.set_ylim(min(percents) - margin, max(percents) + margin)


def accuracy_vs_time(rows):
    """Test accuracy against wall-clock training time in minutes, one
    marker per run; ``rows`` are ``(label, minutes, accuracy as a
    fraction)``, labelled as :func:`accuracy_vs_macs` labels them: each
    label clear of the other markers and labels and inside the axes.
    Chapter 7."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    points = [(minutes, 100 * accuracy) for _, minutes, accuracy in rows]
    # minutes run on a linear axis: only runs within about a tenth of each
    # other's time sit side by side, where labels half a point apart touch
    below = label_below(points, decades=0.05, points_apart=0.6)
    for minutes, percent in points:
        ax.scatter(minutes, percent, s=60)
    _room_for_labels(ax, *zip(*points), log_x=False)
    _place_labels(ax, [row[0] for row in rows], points, below)
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    return fig


def accuracy_vs_macs(rows):
    """Test accuracy against the multiply-accumulates of one forward pass
    (log scale), a marker per network whose area grows with its parameters;
    ``rows`` are ``(label, macs, accuracy as a fraction, parameters)``. A
    label goes below its marker where :func:`label_below` says another
    would overlap it, and to the left of it where on the right it would
    run into another marker or label (:func:`label_clashes`). Chapter 7."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    biggest = max(parameters for *_, parameters in rows)
    points = [(macs, 100 * accuracy) for _, macs, accuracy, _ in rows]
    for (_, macs, _, parameters), (_, percent) in zip(
        rows, points, strict=True
    ):
        ax.scatter(macs, percent, s=40 + 900 * parameters / biggest, alpha=0.6)
    ax.set_xscale("log")
    _room_for_labels(ax, *zip(*points), log_x=True)
    _place_labels(ax, [row[0] for row in rows], points, label_below(points))
    ax.set_xlabel("multiply-accumulates per image")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    return fig


def plot_history(history, title=None):
    """Loss and accuracy, train against test, per epoch. Chapter 2."""
    hist = getattr(history, "history", history)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = np.arange(1, len(hist["loss"]) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        keys = (
            [metric]
            if metric in hist
            else [
                k
                for k in hist
                if k.endswith(metric) and not k.startswith("val_")
            ]
        )
        for key in keys[:1]:
            ax.plot(epochs, hist[key], "o-", label="train")
            if "val_" + key in hist:
                ax.plot(epochs, hist["val_" + key], "s--", label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts: rows are true classes, columns predictions. Chapter 2."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def plot_confusion(matrix, class_names=None):
    """Heat map of a confusion matrix with the counts written in. Chapter 2."""
    n = len(matrix)
    names = class_names or [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(matrix, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                matrix[i, j],
                ha="center",
                va="center",
                fontsize=7,
                color="white" if matrix[i, j] > matrix.max() / 2 else "black",
            )
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


def show_images(images, titles=None, ncols=8, cmap="gray", size=1.3):
    """A grid of greyscale images (n, h, w) or (n, h, w, 1). Chapter 1."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * size, nrows * size), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap=cmap)
            if titles is not None:
                ax.set_title(str(titles[k]), fontsize=8)
    fig.tight_layout()
    return fig


def draw_padding(ax, n, p, f, s, title):
    """An n x n input with ``p`` zeros around it (grey) and the first
    three windows of an f x f filter at stride ``s`` along the top row, on
    ``ax``: each on the cell boundaries, told apart by its colour, its line
    style and its number at its centre; the title gives the output size.
    Chapter 1."""

    total = n + 2 * p
    for i in range(total):
        for j in range(total):
            padded = not (p <= i < p + n and p <= j < p + n)
            ax.add_patch(
                plt.Rectangle(
                    (j, total - 1 - i),
                    1,
                    1,
                    facecolor="0.85" if padded else "white",
                    edgecolor="0.5",
                    lw=0.8,
                )
            )
            if padded:
                ax.text(
                    j + 0.5,
                    total - 0.5 - i,
                    "0",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="0.4",
                )
    windows = (
        ("tab:blue", "solid", 3.2),
        ("tab:orange", (0, (5, 2.5)), 2.4),
        ("tab:green", (0, (1.2, 1.8)), 2.4),
    )
    for k, (colour, style, width) in enumerate(windows):
        left = k * s
        if left + f > total:
            break
        ax.add_patch(
            plt.Rectangle(
                (left, total - f),
                f,
                f,
                fill=False,
                edgecolor=colour,
                linestyle=style,
                lw=width,
                zorder=3 + k,
            )
        )
        ax.text(
            left + f / 2,
            total - f / 2,
            str(k + 1),
            ha="center",
            va="center",
            fontsize=10,
            fontweight="bold",
            color=colour,
            zorder=6,
        )
    out = conv_output_size(n, f, p, s)
    ax.set_title(
        f"{title}\nn={n}, f={f}, p={p}, s={s} -> {out}x{out}", fontsize=9
    )
    ax.set_xlim(-0.2, total + 0.2)
    ax.set_ylim(-0.2, total + 0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
