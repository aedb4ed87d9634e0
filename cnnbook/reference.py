"""Reference numpy implementations of a convolutional layer and pooling.

Introduced in Chapter 1 (CNN layer arithmetic). The exercise checks compare
a learner's answers against these functions (and against Keras layers); the
lab notebook uses them to show that loops over a grid and a Keras layer
compute the same numbers.

Shapes follow Keras ("channels last"):

* activations ``A_prev``: ``(m, n_H_prev, n_W_prev, n_C_prev)``
* filters ``W``: ``(f, f, n_C_prev, n_C)``, bias ``b``: ``(n_C,)``

These are written for clarity, not speed: one output entry per step.
"""

from __future__ import annotations

import numpy as np

from cnnbook.arithmetic import conv_output_size, pool_output_size

__all__ = [
    "zero_pad",
    "conv_single_step",
    "conv_forward",
    "pool_forward",
    "keras_conv",
    "keras_pool",
]


def zero_pad(X, pad):
    """Pad the height and width of a batch ``X`` (m, n_H, n_W, n_C) with zeros.

    Chapter 1. ``pad`` zeros go on each of the four sides; the batch and
    channel axes are left alone, so the result is
    ``(m, n_H + 2 pad, n_W + 2 pad, n_C)``.
    """
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(
            f"X must have 4 axes (m, n_H, n_W, n_C), got {X.shape}"
        )
    if not isinstance(pad, (int, np.integer)) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    out = np.zeros(
        (X.shape[0], X.shape[1] + 2 * pad, X.shape[2] + 2 * pad, X.shape[3]),
        dtype=X.dtype,
    )
    out[:, pad : pad + X.shape[1], pad : pad + X.shape[2], :] = X
    return out


def conv_single_step(a_slice_prev, W, b):
    """One filter applied at one position: sum(a_slice_prev * W) + b.

    Chapter 1. ``a_slice_prev`` and ``W`` both have shape
    ``(f, f, n_C_prev)``; ``b`` is the filter's bias (a number). Returns a
    Python float.
    """
    a_slice_prev = np.asarray(a_slice_prev, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    if a_slice_prev.shape != W.shape:
        raise ValueError(
            f"slice {a_slice_prev.shape} and filter {W.shape} "
            "must have the same shape"
        )
    return float(np.sum(a_slice_prev * W) + float(np.asarray(b).sum()))


def conv_forward(A_prev, W, b, stride=1, pad=0):
    """Forward pass of a convolution layer (no activation): Z = W * A + b.

    Chapter 1. ``A_prev`` is ``(m, n_H_prev, n_W_prev, n_C_prev)``, ``W``
    is ``(f, f, n_C_prev, n_C)`` and ``b`` is ``(n_C,)`` (any shape with
    ``n_C`` entries is accepted). Zero padding ``pad`` is added on each side
    and the filter moves ``stride`` pixels at a time; the output is
    ``(m, n_H, n_W, n_C)`` with ``n_H = floor((n_H_prev + 2 pad - f) /
    stride) + 1``.
    """
    A_prev = np.asarray(A_prev, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    m, n_H_prev, n_W_prev, n_C_prev = A_prev.shape
    f, f_w, w_c_prev, n_C = W.shape
    if f != f_w or w_c_prev != n_C_prev or b.size != n_C:
        raise ValueError(
            f"shapes do not fit: A_prev {A_prev.shape}, "
            f"W {W.shape}, b {b.shape}"
        )
    n_H = conv_output_size(n_H_prev, f, pad, stride)
    n_W = conv_output_size(n_W_prev, f, pad, stride)
    A_pad = zero_pad(A_prev, pad)
    Z = np.zeros((m, n_H, n_W, n_C))
    for h in range(n_H):
        top = h * stride
        for w in range(n_W):
            left = w * stride
            window = A_pad[:, top : top + f, left : left + f, :]
            # (m, f, f, n_C_prev) with (f, f, n_C_prev, n_C): all filters
            Z[:, h, w, :] = np.tensordot(
                window, W, axes=([1, 2, 3], [0, 1, 2])
            )
    return Z + b


def pool_forward(A_prev, f, stride=None, mode="max"):
    """Forward pass of a pooling layer, channel by channel.

    Chapter 1. Each ``f x f`` window (moved ``stride`` pixels at a time;
    ``stride`` defaults to ``f``) is replaced by its maximum (``mode="max"``)
    or its mean (``mode="average"``). No padding, no parameters; the number
    of channels is unchanged.
    """
    if mode not in ("max", "average"):
        raise ValueError(f"mode must be 'max' or 'average', got {mode!r}")
    stride = f if stride is None else stride
    A_prev = np.asarray(A_prev, dtype=np.float64)
    m, n_H_prev, n_W_prev, n_C = A_prev.shape
    n_H = pool_output_size(n_H_prev, f, stride)
    n_W = pool_output_size(n_W_prev, f, stride)
    reduce = np.max if mode == "max" else np.mean
    A = np.zeros((m, n_H, n_W, n_C))
    for h in range(n_H):
        for w in range(n_W):
            window = A_prev[
                :, h * stride : h * stride + f, w * stride : w * stride + f, :
            ]
            A[:, h, w, :] = reduce(window, axis=(1, 2))
    return A


def keras_conv(A_prev, W, b, stride=1, pad=0):
    """:func:`conv_forward` computed by Keras: a ``Conv2D`` layer holding
    ``(W, b)``, applied to ``A_prev`` zero-padded by ``pad``. Chapter 1."""
    import keras  # delays keras

    padded = zero_pad(np.asarray(A_prev, np.float32), pad)
    layer = keras.layers.Conv2D(
        W.shape[-1], W.shape[0], strides=stride, padding="valid"
    )
    layer.build(padded.shape)
    layer.set_weights([W, b])
    return keras.ops.convert_to_numpy(layer(padded))


def keras_pool(A_prev, f, stride=None, mode="max"):
    """:func:`pool_forward` computed by Keras's ``MaxPooling2D`` or
    ``AveragePooling2D`` ('valid' padding). Chapter 1."""
    import keras  # delays keras

    kind = {
        "max": keras.layers.MaxPooling2D,
        "average": keras.layers.AveragePooling2D,
    }[mode]
    layer = kind(pool_size=f, strides=stride or f, padding="valid")
    return keras.ops.convert_to_numpy(layer(np.asarray(A_prev, np.float32)))
