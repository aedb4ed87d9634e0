"""Every typical mistake the checks recognise is named in the message.

Each case defines a wrong answer as a learner would write it, runs the
exercise's checks on it (visible, then hidden) in this process, and
requires 0 points and the sentence that names the mistake. The honest
case at the end shows that the same helpers still give full points.
"""

import textwrap

import nbformat
import pytest
from conftest import ROOT

from cnnbook.grading import chapters, grade, runner

PRELUDE = """
import numpy as np
import keras
from keras import layers
"""

# ch01 helpers the wrong answers build on (honest versions)
OUT = """
def conv_output_size(n, f, p, s):
    return (n + 2 * p - f) // s + 1
"""

CONV = """
def conv_forward(A_prev, W, b, stride, pad):
    m, n_h, n_w, _ = A_prev.shape
    f, _, _, n_c = W.shape
    H = (n_h + 2 * pad - f) // stride + 1 {h_extra}
    V = (n_w + 2 * pad - f) // stride + 1 {h_extra}
    A = np.pad(A_prev, ((0, 0), {pad_h}, {pad_h}, (0, 0)))
    Z = np.zeros((m, H, V, n_c))
    for h in range(H):
        for w in range(V):
            t, l = h * {step}, w * {step}
            win = A[:, t:t + f, l:l + f, :]
            Z[:, h, w, :] = np.tensordot(win, W, axes=([1, 2, 3], [0, 1, 2]))
    return Z + {bias}
"""


def conv(step="stride", bias="b", pad_h="(pad, pad)", h_extra=""):
    return CONV.format(step=step, bias=bias, pad_h=pad_h, h_extra=h_extra)


POOL = """
def pool_forward(A_prev, f, stride, mode="max"):
    m, n_h, n_w, n_c = A_prev.shape
    H = (n_h - f) // {size_stride} + 1 {extra}
    V = (n_w - f) // {size_stride} + 1 {extra}
    out = np.zeros((m, H, V, n_c))
    for h in range(H):
        for w in range(V):
            t, l = h * {step}, w * {step}
            win = A_prev[:, t:t + f, l:l + f]
            red = win.max if mode == "max" else win.mean
            out[:, h, w, :] = red(axis={axes})
    return out
"""


def pool(step="stride", size_stride="stride", extra="", axes="(1, 2)"):
    return POOL.format(
        step=step, size_stride=size_stride, extra=extra, axes=axes
    )


IDENTITY = """
def identity_block(x, filters, kernel_size=3, name="block"):
    f1, f2, f3 = filters
    shortcut = x
    x = layers.Conv2D(f1, 1)(x)
    x = layers.BatchNormalization(epsilon=1.001e-5)(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f2, kernel_size, padding="{padding}")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5)(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f3, 1)(x)
    x = layers.BatchNormalization(epsilon=1.001e-5)(x)
    {end}
    return x
"""
END_RIGHT = """x = layers.Add()([shortcut, x])
    x = layers.Activation("relu")(x)"""
END_RELU_FIRST = """x = layers.Activation("relu")(x)
    x = layers.Add()([shortcut, x])"""

CONV_BLOCK = """
def convolutional_block(x, filters, kernel_size=3, strides=2, name="block"):
    f1, f2, f3 = filters
    shortcut = layers.Conv2D(f3, 1, strides=strides)(x)
    {shortcut_bn}
    x = layers.Conv2D(f1, 1, strides={s1})(x)
    x = layers.BatchNormalization(epsilon=1.001e-5)(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f2, kernel_size, strides={s2}, padding="same")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5)(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f3, 1)(x)
    x = layers.BatchNormalization(epsilon=1.001e-5)(x)
    x = layers.Add()([shortcut, x])
    return layers.Activation("relu")(x)
"""
BN = "shortcut = layers.BatchNormalization(epsilon=1.001e-5)(shortcut)"

MODULE = """
def inception_module(x, f1, f3_reduce, f3, f5_reduce, f5, pool_proj):
    def conv(tensor, filters, size):
        return layers.Conv2D(filters, size, padding="same",
                             activation="relu")(tensor)
    branch1 = conv(x, f1, 1)
    branch3 = conv(conv(x, f3_reduce, 1), f3, 3)
    branch5 = conv(conv(x, f5_reduce, 1), f5, 5)
    pooled = layers.MaxPooling2D(3, strides=1, padding="same")(x)
    branch_pool = {pool_branch}
    return layers.Concatenate()([branch1, branch3, branch5, branch_pool])
"""

LENET = """
def build_lenet5(num_classes=10):
    return keras.Sequential([
        keras.Input((32, 32, 1)),
        layers.Conv2D(6, 5, activation="relu", padding="{padding}"),
        layers.{pool}(2),
        layers.Conv2D(16, 5, activation="relu"),
        layers.{pool}(2),
        layers.Flatten(),
        layers.Dense(120, activation="relu"),
        layers.Dense(84, activation="relu"),
        layers.Dense({classes}, activation="softmax"),
    ])
"""

VGG_BLOCK = """
def vgg_block(num_convs, filters):
    block = [keras.layers.Conv2D(filters, {f}, padding="{padding}",
                                 activation="relu")
             for _ in range(num_convs)]
    {pool}
    return block
"""
VGG_POOL = "block.append(keras.layers.MaxPooling2D(2, strides=2))"

# (chapter, key, code, words the message must contain)
CASES = {
    # ----------------------------------------------------------- 1.1
    "1.1-plus-one": (
        "ch01",
        "1.1",
        "def conv_output_size(n, f, p, s):\n    return (n + 2 * p - f) // s",
        ["+ 1 is missing"],
    ),
    "1.1-padding-once": (
        "ch01",
        "1.1",
        "def conv_output_size(n, f, p, s):\n    return (n + p - f) // s + 1",
        ["one side only"],
    ),
    "1.1-no-stride": (
        "ch01",
        "1.1",
        "def conv_output_size(n, f, p, s):\n    return n + 2 * p - f + 1",
        ["stride is left out"],
    ),
    "1.1-no-padding": (
        "ch01",
        "1.1",
        "def conv_output_size(n, f, p, s):\n    return (n - f) // s + 1",
        ["padding is left out"],
    ),
    "1.1-rounded-up": (
        "ch01",
        "1.1",
        "import math\ndef conv_output_size(n, f, p, s):\n"
        "    return math.ceil((n + 2 * p - f) / s) + 1",
        ["rounded down, not up"],
    ),
    # ----------------------------------------------------------- 1.2
    "1.2-one-bias": (
        "ch01",
        "1.2",
        "def conv_layer_params(f, n_c_prev, n_c):\n"
        "    return f * f * n_c_prev * n_c + 1",
        ["one bias for the whole layer"],
    ),
    "1.2-no-bias": (
        "ch01",
        "1.2",
        "def conv_layer_params(f, n_c_prev, n_c):\n"
        "    return f * f * n_c_prev * n_c",
        ["also has one bias"],
    ),
    "1.2-f-not-squared": (
        "ch01",
        "1.2",
        "def conv_layer_params(f, n_c_prev, n_c):\n"
        "    return (f * n_c_prev + 1) * n_c",
        ["f * f weights"],
    ),
    "1.2-wrong-depth": (
        "ch01",
        "1.2",
        "def conv_layer_params(f, n_c_prev, n_c):\n"
        "    return (f * f * n_c + 1) * n_c",
        ["depth of the input"],
    ),
    # ----------------------------------------------------------- 1.3
    "1.3-one-side": (
        "ch01",
        "1.3",
        "def zero_pad(X, pad):\n"
        "    return np.pad(X, ((0, 0), (0, pad), (0, pad), (0, 0)))",
        ["pads one side only"],
    ),
    "1.3-all-axes": (
        "ch01",
        "1.3",
        "def zero_pad(X, pad):\n    return np.pad(X, pad)",
        ["not the examples or the channels"],
    ),
    "1.3-height-only": (
        "ch01",
        "1.3",
        "def zero_pad(X, pad):\n"
        "    return np.pad(X, ((0, 0), (pad, pad), (0, 0), (0, 0)))",
        ["pads the height only"],
    ),
    "1.3-edge-mode": (
        "ch01",
        "1.3",
        "def zero_pad(X, pad):\n"
        "    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)),"
        " mode='edge')",
        ["must be zeros"],
    ),
    "1.3-in-place": (
        "ch01",
        "1.3",
        "def zero_pad(X, pad):\n    out = np.pad(X, ((0, 0), (pad, pad),"
        " (pad, pad), (0, 0)))\n    X[...] = 0\n    return out",
        ["changed its input"],
    ),
    # ----------------------------------------------------------- 1.4
    "1.4-bias-per-product": (
        "ch01",
        "1.4",
        "def conv_single_step(a, W, b):\n    return float(np.sum(a * W + b))",
        ["added to every product"],
    ),
    "1.4-mean": (
        "ch01",
        "1.4",
        "def conv_single_step(a, W, b):\n    return float(np.mean(a * W) + b)",
        ["mean of the products"],
    ),
    "1.4-no-bias": (
        "ch01",
        "1.4",
        "def conv_single_step(a, W, b):\n    return float(np.sum(a * W))",
        ["add the bias"],
    ),
    "1.4-array": (
        "ch01",
        "1.4",
        "def conv_single_step(a, W, b):\n    return a * W + b",
        ["sum over all entries"],
    ),
    # ----------------------------------------------------------- 1.5
    "1.5-one-bias": (
        "ch01",
        "1.5",
        conv(bias="b[0]"),
        ["bias of the first one"],
    ),
    "1.5-no-bias": ("ch01", "1.5", conv(bias="0"), ["lack the bias"]),
    "1.5-window-ignores-stride": (
        "ch01",
        "1.5",
        conv(step="1"),
        ["one pixel at a time"],
    ),
    "1.5-padding-one-side": (
        "ch01",
        "1.5",
        conv(pad_h="(0, pad)").replace("2 * pad", "pad"),
        ["pads one side only"],
    ),
    "1.5-plus-one": (
        "ch01",
        "1.5",
        conv(h_extra="- 1"),
        ["one pixel short"],
    ),
    "1.5-flipped": (
        "ch01",
        "1.5",
        conv().replace("win, W,", "win, W[::-1, ::-1],"),
        ["flipped"],
    ),
    # ----------------------------------------------------------- 1.6
    "1.6-window-ignores-stride": (
        "ch01",
        "1.6",
        pool(step="1"),
        ["ignores the stride"],
    ),
    "1.6-size-with-f": (
        "ch01",
        "1.6",
        pool(size_stride="f", step="f"),
        ["uses f as the stride"],
    ),
    "1.6-plus-one": ("ch01", "1.6", pool(extra="- 1"), ["one pixel short"]),
    "1.6-across-channels": (
        "ch01",
        "1.6",
        pool(axes="(1, 2, 3)")
        .replace("out[:, h, w, :] = red", "out[:, h, w, :] = red")
        .replace("red(axis=(1, 2, 3))", "red(axis=(1, 2, 3))[:, None]"),
        ["pooled together"],
    ),
    "1.6-modes-swapped": (
        "ch01",
        "1.6",
        pool().replace('mode == "max"', 'mode != "max"'),
        ["computed the other mode"],
    ),
    # ----------------------------------------------------------- 2.x
    "2.1-average-pooling": (
        "ch02",
        "2.1",
        LENET.format(
            padding="valid", pool="AveragePooling2D", classes="num_classes"
        ),
        ["max pooling, not average"],
    ),
    "2.1-same-padding": (
        "ch02",
        "2.1",
        LENET.format(
            padding="same", pool="MaxPooling2D", classes="num_classes"
        ),
        ["no padding"],
    ),
    "2.1-ten-classes": (
        "ch02",
        "2.1",
        LENET.format(padding="valid", pool="MaxPooling2D", classes="10"),
        ["num_classes"],
    ),
    "2.2-no-biases": (
        "ch02",
        "2.2",
        "def lenet5_table(input_size=32, num_classes=10):\n"
        "    c1 = input_size - 4; s2 = c1 // 2; c3 = s2 - 4; s4 = c3 // 2\n"
        "    flat = s4 * s4 * 16\n"
        "    return [((c1, c1, 6), 150), ((s2, s2, 6), 0),\n"
        "            ((c3, c3, 16), 2400), ((s4, s4, 16), 0), ((flat,), 0),\n"
        "            ((120,), flat * 120), ((84,), 120 * 84),\n"
        "            ((num_classes,), 84 * num_classes)]",
        ["biases are left out"],
    ),
    "2.2-plus-one": (
        "ch02",
        "2.2",
        "def lenet5_table(input_size=32, num_classes=10):\n"
        "    c1 = input_size - 5\n"
        "    return [((c1, c1, 6), 156)] * 8",
        ["one short"],
    ),
    "2.2-pool-parameters": (
        "ch02",
        "2.2",
        "def lenet5_table(input_size=32, num_classes=10):\n"
        "    c1 = input_size - 4; s2 = c1 // 2; c3 = s2 - 4; s4 = c3 // 2\n"
        "    flat = s4 * s4 * 16\n"
        "    return [((c1, c1, 6), 156), ((s2, s2, 6), 12),\n"
        "            ((c3, c3, 16), 2416), ((s4, s4, 16), 0), ((flat,), 0),\n"
        "            ((120,), flat * 120 + 120), ((84,), 120 * 84 + 84),\n"
        "            ((num_classes,), 84 * num_classes + num_classes)]",
        ["pooling and flattening layers have no parameters"],
    ),
}


def _c3(body):
    table = (
        "def c3_table():\n"
        "    t = np.zeros((6, 16), dtype=bool)\n"
        "    for j in range(6):\n"
        "        t[[j, (j + 1) % 6, (j + 2) % 6], j] = True\n"
        "        t[[j, (j+1) % 6, (j+2) % 6, (j+3) % 6], 6 + j] = True\n"
        "    for j in range(3):\n"
        "        t[[j, j + 1, (j + 3) % 6, (j + 4) % 6], 12 + j] = True\n"
        "    t[:, 15] = True\n"
        "    return t\n"
    )
    return table + "def partial_conv_params(c, f):\n" + body


CASES.update(
    {
        "2.3-one-bias": (
            "ch02",
            "2.3",
            _c3(
                "    c = np.asarray(c, bool)\n    return int(f*f*c.sum() + 1)"
            ),
            ["one bias for the whole layer"],
        ),
        "2.3-no-bias": (
            "ch02",
            "2.3",
            _c3(
                "    c = np.asarray(c, bool)\n    return int(f * f * c.sum())"
            ),
            ["biases are left out"],
        ),
        "2.3-rows-as-maps": (
            "ch02",
            "2.3",
            _c3(
                "    c = np.asarray(c, bool)\n"
                "    return int(f * f * c.sum() + c.shape[0])"
            ),
            ["wrong way round"],
        ),
        "2.3-table-ignored": (
            "ch02",
            "2.3",
            _c3(
                "    c = np.asarray(c, bool)\n"
                "    return int((f * f * c.shape[0] + 1) * c.shape[1])"
            ),
            ["connections are ignored"],
        ),
        # ------------------------------------------------------- 3.x
        "3.1-pool-2x2": (
            "ch03",
            "3.1",
            "def alexnet_shapes(n):\n"
            "    out, size = [], n\n"
            "    for c, f, s, p, pool in [(96, 11, 4, 0, 1),"
            " (256, 5, 1, 2, 1), (384, 3, 1, 1, 0), (384, 3, 1, 1, 0),"
            " (256, 3, 1, 1, 1)]:\n"
            "        size = (size + 2 * p - f) // s + 1\n"
            "        out.append((size, size, c))\n"
            "        if pool:\n"
            "            size = (size - 2) // 2 + 1\n"
            "            out.append((size, size, c))\n"
            "    return out",
            ["overlapping"],
        ),
        "3.1-conv1-same": (
            "ch03",
            "3.1",
            "def alexnet_shapes(n):\n"
            "    out, size = [], n\n"
            "    for c, f, s, p, pool in [(96, 11, 4, 5, 1),"
            " (256, 5, 1, 2, 1), (384, 3, 1, 1, 0), (384, 3, 1, 1, 0),"
            " (256, 3, 1, 1, 1)]:\n"
            "        size = (size + 2 * p - f) // s + 1\n"
            "        out.append((size, size, c))\n"
            "        if pool:\n"
            "            size = (size - 3) // 2 + 1\n"
            "            out.append((size, size, c))\n"
            "    return out",
            ["conv1 has no padding"],
        ),
        "3.2-no-biases": (
            "ch03",
            "3.2",
            "def alexnet_parameters(num_classes=1000, input_size=227):\n"
            "    d = {'conv1': 11*11*3*96, 'conv2': 5*5*96*256,\n"
            "         'conv3': 9*256*384, 'conv4': 9*384*384,\n"
            "         'conv5': 9*384*256, 'fc6': 9216*4096,\n"
            "         'fc7': 4096*4096, 'fc8': 4096*num_classes}\n"
            "    return d",
            ["biases are left out"],
        ),
        "3.2-fixed-fc6": (
            "ch03",
            "3.2",
            "def alexnet_parameters(num_classes=1000, input_size=227):\n"
            "    return {'conv1': 34944, 'conv2': 614656, 'conv3': 885120,\n"
            "            'conv4': 1327488, 'conv5': 884992,\n"
            "            'fc6': 9216 * 4096 + 4096, 'fc7': 16781312,\n"
            "            'fc8': 4096 * num_classes + num_classes}",
            ["depend on the input size"],
        ),
        "3.3-alpha-over-n": (
            "ch03",
            "3.3",
            "def lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):\n"
            "    a = np.asarray(a, float); h = n // 2; C = a.shape[-1]\n"
            "    w = np.zeros_like(a)\n"
            "    for c in range(C):\n"
            "        w[..., c] = (a[..., max(0, c-h):c+h+1] ** 2).sum(-1)\n"
            "    return a / (k + alpha / n * w) ** beta",
            ["alpha is divided by n"],
        ),
        "3.3-not-squared": (
            "ch03",
            "3.3",
            "def lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):\n"
            "    a = np.asarray(a, float); h = n // 2; C = a.shape[-1]\n"
            "    w = np.zeros_like(a)\n"
            "    for c in range(C):\n"
            "        w[..., c] = np.abs(a[..., max(0, c-h):c+h+1]).sum(-1)\n"
            "    return a / (k + alpha * w) ** beta",
            ["not their squares"],
        ),
        "3.3-wraps-around": (
            "ch03",
            "3.3",
            "def lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):\n"
            "    a = np.asarray(a, float); h = n // 2; C = a.shape[-1]\n"
            "    w = np.zeros_like(a)\n"
            "    for c in range(C):\n"
            "        idx = [(c + j) % C for j in range(-h, h + 1)]\n"
            "        w[..., c] = (a[..., idx] ** 2).sum(-1)\n"
            "    return a / (k + alpha * w) ** beta",
            ["wraps around"],
        ),
        # ------------------------------------------------------- 4.x
        "4.1-no-pool": (
            "ch04",
            "4.1",
            VGG_BLOCK.format(f=3, padding="same", pool=""),
            ["ends with a 2x2 max pool"],
        ),
        "4.1-valid-padding": (
            "ch04",
            "4.1",
            VGG_BLOCK.format(f=3, padding="valid", pool=VGG_POOL),
            ["padding='same'"],
        ),
        "4.1-5x5": (
            "ch04",
            "4.1",
            VGG_BLOCK.format(f=5, padding="same", pool=VGG_POOL),
            ["3x3"],
        ),
        "4.3-receptive-field-off-by-one": (
            "ch04",
            "4.3",
            "def stacked_params(n, c):\n    return n * (9 * c * c + c)\n"
            "def single_conv_params(f, c):\n    return (f * f * c + 1) * c\n"
            "def receptive_field(n, f=3):\n    return n * (f - 1)",
            ["starts at 1 pixel"],
        ),
        "4.3-stacked-no-bias": (
            "ch04",
            "4.3",
            "def stacked_params(n, c):\n    return n * 9 * c * c\n"
            "def single_conv_params(f, c):\n    return (f * f * c + 1) * c\n"
            "def receptive_field(n, f=3):\n    return 1 + n * (f - 1)",
            ["bias per filter"],
        ),
        "4.3-receptive-field-f": (
            "ch04",
            "4.3",
            "def stacked_params(n, c):\n    return n * (9 * c * c + c)\n"
            "def single_conv_params(f, c):\n    return (f * f * c + 1) * c\n"
            "def receptive_field(n, f=3):\n    return 1 + n * f",
            ["f - 1 pixels, not f"],
        ),
        # ------------------------------------------------------- 5.x
        "5.1-relu-before-add": (
            "ch05",
            "5.1",
            IDENTITY.format(padding="same", end=END_RELU_FIRST),
            ["ReLU comes after the addition"],
        ),
        "5.1-valid-padding": (
            "ch05",
            "5.1",
            IDENTITY.format(padding="valid", end=END_RIGHT),
            ["same shape where they are added"],
        ),
        "5.1-no-final-relu": (
            "ch05",
            "5.1",
            IDENTITY.format(
                padding="same", end="x = layers.Add()([shortcut, x])"
            ),
            ["ReLU is missing"],
        ),
        "5.2-shortcut-without-bn": (
            "ch05",
            "5.2",
            CONV_BLOCK.format(shortcut_bn="", s1="strides", s2=1),
            ["projection shortcut needs batch normalisation"],
        ),
        "5.2-stride-on-3x3": (
            "ch05",
            "5.2",
            CONV_BLOCK.format(shortcut_bn=BN, s1=1, s2="strides"),
            ["stride goes on the first 1x1"],
        ),
        "5.2-no-projection": (
            "ch05",
            "5.2",
            CONV_BLOCK.format(shortcut_bn=BN, s1="strides", s2=1)
            .replace(
                "shortcut = layers.Conv2D(f3, 1, strides=strides)(x)",
                "shortcut = x",
            )
            .replace(BN, ""),
            ["same shape where they are added"],
        ),
        "5.4-no-final-relu": (
            "ch05",
            "5.4",
            "def residual_forward(a, W1, b1, W2, b2):\n"
            "    return np.maximum(a @ W1 + b1, 0) @ W2 + b2 + a",
            ["last ReLU is missing"],
        ),
        "5.4-shortcut-after-relu": (
            "ch05",
            "5.4",
            "def residual_forward(a, W1, b1, W2, b2):\n"
            "    h = np.maximum(a @ W1 + b1, 0)\n"
            "    return np.maximum(h @ W2 + b2, 0) + a",
            ["added after the last ReLU"],
        ),
        "5.4-no-shortcut": (
            "ch05",
            "5.4",
            "def residual_forward(a, W1, b1, W2, b2):\n"
            "    h = np.maximum(a @ W1 + b1, 0)\n"
            "    return np.maximum(h @ W2 + b2, 0)",
            ["not added"],
        ),
        "5.5-sign": (
            "ch05",
            "5.5",
            "def degradation_gaps(curves):\n"
            "    out = {}\n"
            "    for kind in {k for k, _ in curves}:\n"
            "        d = sorted(x for k, x in curves if k == kind)\n"
            "        out[kind] = (curves[kind, d[0]][-1]"
            " - curves[kind, d[-1]][-1])\n"
            "    return out",
            ["sign is reversed"],
        ),
        "5.5-first-epoch": (
            "ch05",
            "5.5",
            "def degradation_gaps(curves):\n"
            "    out = {}\n"
            "    for kind in {k for k, _ in curves}:\n"
            "        d = sorted(x for k, x in curves if k == kind)\n"
            "        out[kind] = (curves[kind, d[-1]][0]"
            " - curves[kind, d[0]][0])\n"
            "    return out",
            ["first epochs"],
        ),
        "5.5-mean": (
            "ch05",
            "5.5",
            "def degradation_gaps(curves):\n"
            "    out = {}\n"
            "    for kind in {k for k, _ in curves}:\n"
            "        d = sorted(x for k, x in curves if k == kind)\n"
            "        out[kind] = np.mean(curves[kind, d[-1]])"
            " - np.mean(curves[kind, d[0]])\n"
            "    return out",
            ["mean errors"],
        ),
        "5.5-percent": (
            "ch05",
            "5.5",
            "def degradation_gaps(curves):\n"
            "    out = {}\n"
            "    for kind in {k for k, _ in curves}:\n"
            "        d = sorted(x for k, x in curves if k == kind)\n"
            "        out[kind] = 100 * (curves[kind, d[-1]][-1]"
            " - curves[kind, d[0]][-1])\n"
            "    return out",
            ["fractions, not %"],
        ),
        # ------------------------------------------------------- 6.x
        "6.1-reduction-forgotten": (
            "ch06",
            "6.1",
            "def branch_multiplications(n_h, n_w, n_c_prev, f, n_c,"
            " bottleneck=None):\n"
            "    depth = n_c_prev if bottleneck is None else bottleneck\n"
            "    return n_h * n_w * n_c * f * f * depth",
            ["reduction costs multiplications too"],
        ),
        "6.1-depth-not-reduced": (
            "ch06",
            "6.1",
            "def branch_multiplications(n_h, n_w, n_c_prev, f, n_c,"
            " bottleneck=None):\n"
            "    main = n_h * n_w * n_c * f * f * n_c_prev\n"
            "    if bottleneck is None:\n        return main\n"
            "    return n_h * n_w * bottleneck * n_c_prev + main",
            ["sees only `bottleneck` channels"],
        ),
        "6.1-f-not-squared": (
            "ch06",
            "6.1",
            "def branch_multiplications(n_h, n_w, n_c_prev, f, n_c,"
            " bottleneck=None):\n"
            "    if bottleneck is None:\n"
            "        return n_h * n_w * n_c * f * n_c_prev\n"
            "    return n_h * n_w * (bottleneck * n_c_prev"
            " + n_c * f * bottleneck)",
            ["f * f weights per input channel"],
        ),
        "6.2-no-pool-projection": (
            "ch06",
            "6.2",
            MODULE.format(pool_branch="pooled"),
            ["1x1 projection"],
        ),
        "6.2-strided-pool": (
            "ch06",
            "6.2",
            MODULE.format(pool_branch="conv(pooled, pool_proj, 1)").replace(
                "strides=1", "strides=2"
            ),
            ["padding='same'"],
        ),
        "6.2-no-relu": (
            "ch06",
            "6.2",
            MODULE.format(pool_branch="layers.Conv2D(pool_proj, 1)(pooled)"),
            ["has a ReLU"],
        ),
    }
)

SEPARABLE = """
def separable_cost(n_H, n_W, n_C_prev, f, n_C):
    normal = n_H * n_W * n_C * f * f * n_C_prev
    depthwise = {depthwise}
    pointwise = {pointwise}
    return {{"normal": normal, "depthwise": depthwise,
            "pointwise": pointwise, "ratio": {ratio}}}
"""
SEPARABLE_RIGHT = {
    "depthwise": "n_H * n_W * n_C_prev * f * f",
    "pointwise": "n_H * n_W * n_C * n_C_prev",
    "ratio": "(depthwise + pointwise) / normal",
}


def _separable(**wrong):
    return SEPARABLE.format(**{**SEPARABLE_RIGHT, **wrong})


INVERTED = """
def inverted_residual_block(x, filters, expansion, stride):
    channels = x.shape[-1]
    inputs = x
    if {expand_if}:
        x = layers.Conv2D({expanded}, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU({top})(x)
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same",
                               use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU({top})(x)
    x = layers.Conv2D(filters, 1, use_bias={bias})(x)
    x = layers.BatchNormalization()(x)
    {projection_relu}
    if {shortcut_if}:
        x = layers.Add()([inputs, x])
    return x
"""
INVERTED_RIGHT = {
    "expand_if": "expansion != 1",
    "expanded": "channels * expansion",
    "top": "6.0",
    "bias": "False",
    "projection_relu": "",
    "shortcut_if": "stride == 1 and channels == filters",
}


def _inverted(**wrong):
    return INVERTED.format(**{**INVERTED_RIGHT, **wrong})


FROZEN = """
def frozen_with_head(base, num_classes):
    {freeze}
    inputs = keras.Input(base.inputs[0].shape[1:])
    x = layers.{pool}()(base(inputs))
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    {after}
    return model
"""
FROZEN_RIGHT = {
    "freeze": "base.trainable = False",
    "pool": "GlobalAveragePooling2D",
    "after": "",
}


def _frozen(**wrong):
    return FROZEN.format(**{**FROZEN_RIGHT, **wrong})


UNFREEZE = """
def unfreeze_for_fine_tuning(model):
    for layer in model.layers:
        layer.trainable = {trainable}
        for inner in getattr(layer, "layers", []):
            if isinstance(inner, layers.BatchNormalization):
                inner.trainable = {bn_trainable}
    {after}
    return model
"""
UNFREEZE_RIGHT = {"trainable": "True", "bn_trainable": "False", "after": ""}


def _unfreeze(**wrong):
    return UNFREEZE.format(**{**UNFREEZE_RIGHT, **wrong})


CASES.update(
    {
        # ------------------------------------------------------- 8.x
        "8.1-pointwise-with-f2": (
            "ch08",
            "8.1",
            _separable(pointwise="n_H * n_W * n_C * f * f * n_C_prev"),
            ["pointwise step is a 1x1 convolution"],
        ),
        "8.1-depthwise-output-channels": (
            "ch08",
            "8.1",
            _separable(depthwise="n_H * n_W * n_C * f * f"),
            ["keeps the input's channels", "n_C_prev of them, not n_C"],
        ),
        "8.1-depthwise-full-depth": (
            "ch08",
            "8.1",
            _separable(depthwise="n_H * n_W * n_C_prev * f * f * n_C_prev"),
            ["sees one channel only"],
        ),
        "8.1-ratio-inverted": (
            "ch08",
            "8.1",
            _separable(ratio="normal / (depthwise + pointwise)"),
            ["separable over normal"],
        ),
        "8.1-ratio-pointwise-only": (
            "ch08",
            "8.1",
            _separable(ratio="pointwise / normal"),
            ["the depthwise AND the pointwise step"],
        ),
        "8.2-relu-after-projection": (
            "ch08",
            "8.2",
            _inverted(projection_relu="x = layers.ReLU(6.0)(x)"),
            ["the projection is linear"],
        ),
        "8.2-shortcut-at-stride-2": (
            "ch08",
            "8.2",
            _inverted(shortcut_if="channels == filters"),
            ["added back only where the block keeps the shape"],
        ),
        "8.2-shortcut-where-channels-change": (
            "ch08",
            "8.2",
            _inverted(shortcut_if="stride == 1"),
            ["added back only where the block keeps the shape"],
        ),
        "8.2-no-shortcut": (
            "ch08",
            "8.2",
            _inverted(shortcut_if="False"),
            ["the block adds its input"],
        ),
        "8.2-expansion-of-the-output": (
            "ch08",
            "8.2",
            _inverted(expanded="filters * expansion"),
            ["multiplies the block's INPUT channels"],
        ),
        "8.2-expansion-1-expanded": (
            "ch08",
            "8.2",
            _inverted(expand_if="True"),
            ["nothing to widen"],
        ),
        "8.2-bias": (
            "ch08",
            "8.2",
            _inverted(bias="True"),
            ["needs no bias"],
        ),
        "8.2-plain-relu": (
            "ch08",
            "8.2",
            _inverted(top="None"),
            ["activation is ReLU6"],
        ),
        "8.3-base-not-frozen": (
            "ch08",
            "8.3",
            _frozen(freeze="pass"),
            ["the base is not frozen"],
        ),
        "8.3-head-frozen": (
            "ch08",
            "8.3",
            _frozen(
                after="for layer in model.layers:\n"
                "        layer.trainable = False"
            ),
            ["has 0 trainable weights", "the head is frozen too"],
        ),
        "8.3-batch-norm-left-trainable": (
            "ch08",
            "8.3",
            _frozen(
                freeze="for layer in base.layers:\n"
                "        if not isinstance(layer, layers.BatchNormalization):"
                "\n            layer.trainable = False"
            ),
            ["batch normalisation layers are left trainable", "moving mean"],
        ),
        "8.3-flatten-head": (
            "ch08",
            "8.3",
            _frozen(pool="Flatten"),
            ["GlobalAveragePooling2D"],
        ),
        "8.4-batch-norm-unfrozen": (
            "ch08",
            "8.4",
            _unfreeze(bn_trainable="True"),
            ["training mode", "training=True, which overrides it"],
        ),
        "8.4-base-still-frozen": (
            "ch08",
            "8.4",
            _unfreeze(trainable="layer.trainable"),
            ["the base is still frozen"],
        ),
        "8.4-head-frozen": (
            "ch08",
            "8.4",
            _unfreeze(after="model.layers[-1].trainable = False"),
            ["the head must keep training"],
        ),
    }
)


def _namespace(code):
    ns = {}
    exec(compile(PRELUDE + textwrap.dedent(code), "<answer>", "exec"), ns)
    return ns


def _run(chapter, key, code, hidden=True):
    ex = next(e for e in chapters.exercises(chapter) if e.key == key)
    return runner.run_exercise(
        ex, _namespace(code), hidden=hidden, seed=5, timeout=300
    )


@pytest.mark.parametrize("case", list(CASES))
def test_a_typical_mistake_is_named(case):
    chapter, key, code, words = CASES[case]
    result = _run(chapter, key, code)
    assert result.points == 0, result
    for word in words:
        assert word in result.message, (word, result.message)


def test_a_failed_answer_that_another_uses_is_named():
    """6.3 calls the learner's 6.2 module; when 6.2 fails, so does 6.3,
    and the grader's report says which answer to fix first."""
    good = runner.Result("6.2", "", 3, 3, "correct")
    bad63 = runner.Result("6.3", "", 0, 2, "it differs")
    bad62 = runner.Result("6.2", "", 0, 3, "the module differs")
    exercises = [
        e for e in chapters.exercises("ch06") if e.key in ("6.2", "6.3")
    ]
    # the learner's notebook as the grader reads it, markdown included
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("## 6.2 `inception_module(x)`"),
            nbformat.v4.new_code_cell(
                "def inception_module(x, *f):\n    return x\n"
            ),
            nbformat.v4.new_markdown_cell("## 6.3"),
            nbformat.v4.new_code_cell(
                "reduced_inception_module = inception_module\n\n"
                "def build_reduced_model(input_shape=(28, 28, 192)):\n"
                "    return reduced_inception_module(input_shape)\n"
            ),
        ]
    )
    results = {"6.2": bad62, "6.3": bad63}
    grade.name_failed_dependencies(exercises, results, nb)
    assert "inception_module (your answer to 6.2)" in bad63.message
    assert "fix that exercise first" in bad63.message
    assert bad62.message == "the module differs"
    bad63.message = "it differs"
    results = {"6.2": good, "6.3": bad63}
    grade.name_failed_dependencies(exercises, results, nb)
    assert bad63.message == "it differs"  # 6.2 passed: nothing to blame
    # the book's own notebook calls 6.2's answer through an alias
    book = nbformat.read(ROOT / "solutions" / "ch06-inception.ipynb", 4)
    results = {"6.2": bad62, "6.3": bad63}
    grade.name_failed_dependencies(exercises, results, book)
    assert "inception_module (your answer to 6.2)" in bad63.message
