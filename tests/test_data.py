"""The dataset loader: sources, checksums, cache repair and clear errors."""

import numpy as np
import pytest

from cnnbook import data


def test_mnist_and_fashion_load_and_verify():
    (x, y), (xt, yt) = data.load_mnist()
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert x.dtype == np.uint8 and set(np.unique(y)) == set(range(10))
    (fx, fy), _ = data.load_fashion_mnist()
    assert fx.shape == (60000, 28, 28)
    assert not np.array_equal(fx[:10], x[:10])
    assert len(data.FASHION_CLASSES) == 10


def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBOOK_DATA", str(tmp_path))
    monkeypatch.setattr(
        data,
        "_sources",
        lambda name, cache: iter([("test copy", lambda: _arrays(name))]),
    )
    (tmp_path / "mnist.npz").write_bytes(b"this is not a zip file")
    (x, _), _ = data.load_mnist()
    assert x.shape == (60000, 28, 28)
    with np.load(tmp_path / "mnist.npz") as f:
        assert f["x_train"].shape == (60000, 28, 28)


def test_tampered_source_is_rejected_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBOOK_DATA", str(tmp_path))

    def tampered():
        arrays = _arrays("mnist")
        arrays["y_train"] = arrays["y_train"].copy()
        arrays["y_train"][0] ^= 1
        return arrays

    monkeypatch.setattr(
        data,
        "_sources",
        lambda name, cache: iter(
            [("tampered copy", tampered), ("nothing", lambda: None)]
        ),
    )
    with pytest.raises(data.DatasetUnavailable) as err:
        data.load_mnist()
    message = str(err.value)
    assert "checksum mismatch for y_train" in message
    assert "nothing: not present" in message
    assert "make data" in message and str(tmp_path) in message
    assert not (tmp_path / "mnist.npz").exists()


def test_missing_everywhere_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBOOK_DATA", str(tmp_path))
    monkeypatch.setattr(data, "DEBIAN_FASHION", tmp_path / "absent")

    def offline(name):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_from_keras", offline)
    with pytest.raises(data.DatasetUnavailable, match="make data"):
        data.load_mnist()


def test_subset_is_stratified_and_seeded():
    (x, y), _ = data.load_mnist()
    xs, ys = data.subset(x, y, 200, seed=1)
    assert xs.shape == (200, 28, 28)
    assert np.bincount(ys).tolist() == [20] * 10
    xs2, ys2 = data.subset(x, y, 200, seed=1)
    assert np.array_equal(xs, xs2) and np.array_equal(ys, ys2)


def test_to_float_scales_and_resizes():
    (x, _), _ = data.load_mnist()
    small = data.to_float(x[:5])
    assert small.shape == (5, 28, 28, 1) and small.dtype == np.float32
    assert 0.0 <= small.min() and small.max() <= 1.0
    big = data.to_float(x[:5], 32)
    assert big.shape == (5, 32, 32, 1)


_REAL = {}


def _arrays(name):
    """The genuine arrays, read from the repository cache once."""
    if name not in _REAL:
        with np.load(data.cache_dir() / f"{name}.npz") as f:
            _REAL[name] = {k: f[k] for k in data.SPLITS}
    return {k: v.copy() for k, v in _REAL[name].items()}


@pytest.fixture(autouse=True)
def _real_arrays_first():
    _arrays("mnist")
