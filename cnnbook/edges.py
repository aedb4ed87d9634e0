"""Hand-made edge filters: the way into convolution.

Introduced in Chapter 1 (CNN layer arithmetic), which opens with what a
3×3 filter does to an image before any filter is learned:

* :func:`edge_filter` builds the vertical and horizontal edge filters of
  the chapter and their Sobel and Scharr variants, each the outer product
  of a smoothing column and the difference ``(1, 0, -1)``;
* :func:`step_image` and :func:`quadrant_image` are the small test images
  of the page (a bright and a dark region side by side);
* :func:`filter_image` filters one greyscale image with
  :func:`cnnbook.reference.conv_forward` (no padding, stride 1), so that
  the numbers on the page come from the same code as the lab's;
* :func:`draw_edge_examples` draws the page's figure, and
  ``python -m cnnbook.edges`` writes it to ``book/figures/ch01-edges.png``.
"""

from __future__ import annotations

import numpy as np

from cnnbook.reference import conv_forward

__all__ = [
    "SMOOTHING",
    "DIFFERENCE",
    "edge_filter",
    "step_image",
    "quadrant_image",
    "filter_image",
    "draw_edge_examples",
    "FIGURE",
]

# The weights across the edge's direction: equal for the plain filter,
# the centre row counted twice by Sobel's, 3-10-3 for Scharr's.
SMOOTHING = {"plain": (1, 1, 1), "sobel": (1, 2, 1), "scharr": (3, 10, 3)}
# The weights along the edge's normal: left minus right (top minus bottom).
DIFFERENCE = (1, 0, -1)
FIGURE = "ch01-edges"


def edge_filter(kind="plain", orientation="vertical"):
    """The 3×3 edge filter ``kind`` ("plain", "sobel" or "scharr").

    Chapter 1. A vertical filter has the rows ``w * (1, 0, -1)`` with ``w``
    taken from :data:`SMOOTHING`: it responds positively where the image
    is brighter on the left than on the right. The horizontal filter is
    its transpose (brighter above than below gives a positive response).
    """
    if kind not in SMOOTHING:
        raise ValueError(
            f"kind must be one of {sorted(SMOOTHING)}, got {kind!r}"
        )
    kernel = np.outer(
        np.asarray(SMOOTHING[kind], float), np.asarray(DIFFERENCE, float)
    )
    if orientation == "vertical":
        return kernel
    if orientation == "horizontal":
        return kernel.T.copy()
    raise ValueError(
        f"orientation must be 'vertical' or 'horizontal', got {orientation!r}"
    )


def step_image(size=6, bright=10.0, dark=0.0, bright_side="left"):
    """A ``size`` × ``size`` image, half ``bright`` and half ``dark``.

    Chapter 1. ``bright_side`` ("left", "right", "top" or "bottom") says
    where the bright half is; the edge between the halves is vertical for
    left and right, horizontal for top and bottom.
    """
    if size < 2 or size % 2:
        raise ValueError(f"size must be an even number >= 2, got {size}")
    half = size // 2
    image = np.full((size, size), float(dark))
    regions = {
        "left": (slice(None), slice(None, half)),
        "right": (slice(None), slice(half, None)),
        "top": (slice(None, half), slice(None)),
        "bottom": (slice(half, None), slice(None)),
    }
    if bright_side not in regions:
        raise ValueError(
            f"bright_side must be one of {sorted(regions)}, "
            f"got {bright_side!r}"
        )
    image[regions[bright_side]] = bright
    return image


def quadrant_image(size=6, bright=10.0, dark=0.0):
    """A ``size`` × ``size`` image whose top-left and bottom-right quarters
    are ``bright`` and the other two ``dark``. Chapter 1: its horizontal
    edge is light-over-dark on the left and dark-over-light on the right.
    """
    if size < 2 or size % 2:
        raise ValueError(f"size must be an even number >= 2, got {size}")
    half = size // 2
    image = np.full((size, size), float(dark))
    image[:half, :half] = bright
    image[half:, half:] = bright
    return image


def filter_image(image, kernel):
    """Filter a greyscale ``image`` (2-D) with a 2-D ``kernel``: no
    padding, stride 1, no bias. Chapter 1.

    The work is done by :func:`cnnbook.reference.conv_forward` on a batch
    of one image with one channel and one filter, so this is the
    convolution (cross-correlation) of the chapter, not a flipped one.
    """

    image = np.asarray(image, float)
    kernel = np.asarray(kernel, float)
    if image.ndim != 2 or kernel.ndim != 2:
        raise ValueError(
            f"image and kernel must be 2-D, got {image.shape} and "
            f"{kernel.shape}"
        )
    output = conv_forward(
        image[None, :, :, None], kernel[:, :, None, None], np.zeros(1)
    )
    return output[0, :, :, 0]


def _draw_grid(ax, values, title, cmap, limit):
    """``values`` as coloured cells, each with its number; ``limit`` is the
    absolute value that gets the strongest colour, set wider than the data
    so that the numbers stay readable in black."""
    if cmap == "gray":  # dark is mid grey, bright is light grey
        low, high = -0.5 * limit, 1.3 * limit
    else:  # diverging: white at 0
        low, high = -1.6 * limit, 1.6 * limit
    ax.imshow(values, cmap=cmap, vmin=low, vmax=high)
    for (i, j), number in np.ndenumerate(values):
        ax.text(j, i, f"{number:g}", ha="center", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_edge_examples():
    """The figure of Chapter 1's edge examples, as a matplotlib figure.

    Three rows, each an image, a filter and the filtered image, with every
    value written in its cell: bright on the left with the vertical filter,
    the same image mirrored (dark on the left), and the quadrant image with
    the horizontal filter. Images are grey (light is high); filters and
    outputs are red where positive and blue where negative.
    """
    import matplotlib.pyplot as plt  # delays matplotlib

    vertical = edge_filter("plain", "vertical")
    horizontal = edge_filter("plain", "horizontal")
    cases = [
        ("bright left, dark right", step_image(bright_side="left"), vertical),
        ("dark left, bright right", step_image(bright_side="right"), vertical),
        ("bright top-left and bottom-right", quadrant_image(), horizontal),
    ]
    outputs = [filter_image(image, kernel) for _, image, kernel in cases]
    largest = max(float(np.abs(out).max()) for out in outputs)
    fig, axes = plt.subplots(
        len(cases),
        3,
        figsize=(7.5, 7.8),
        gridspec_kw={"width_ratios": [6, 3, 4]},
    )
    for row, ((name, image, kernel), output) in enumerate(
        zip(cases, outputs, strict=True)
    ):
        kind = "vertical" if kernel is vertical else "horizontal"
        _draw_grid(axes[row, 0], image, name, "gray", image.max())
        _draw_grid(axes[row, 1], kernel, f"{kind} filter", "RdBu_r", 1.0)
        _draw_grid(
            axes[row, 2],
            output,
            f"output {output.shape[0]}×{output.shape[1]}",
            "RdBu_r",
            largest,
        )
    fig.tight_layout()
    return fig


def main():
    """Write ``book/figures/ch01-edges.png`` (``python -m cnnbook.edges``)."""
    import matplotlib  # delays matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # delays matplotlib

    from cnnbook.plots import FIGURES  # delays matplotlib

    fig = draw_edge_examples()
    path = FIGURES / f"{FIGURE}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(path)


if __name__ == "__main__":
    main()
