"""Image-classification data sets in the MNIST IDX layout, where to find them, and batching.

A data set is four IDX files in one directory (gzipped or raw, both names accepted):
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``. Nothing is downloaded; the directory is found, in this order, from

1. the ``data_dir`` argument (``--data-dir``),
2. the ``FASTCONV_DATA`` environment variable (the directory itself or a parent holding ``<name>/``),
3. ``/usr/share/datasets/<name>/`` (Debian's ``dataset-fashion-mnist`` package puts Fashion-MNIST there),
4. the small sample shipped inside this package (Fashion-MNIST only; see sample/PROVENANCE.md).

A place named explicitly (1 or 2) that lacks the files is an error, not a silent fallback.
The ``fake`` data set is generated in memory for smoke tests.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from ..backend import array_module
from .idx import IdxError, read_idx

DATASETS = ("fashion-mnist", "mnist", "fake")
SYSTEM_ROOT = "/usr/share/datasets"
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample")
SAMPLE_DATASETS = ("fashion-mnist",)
ENV_VAR = "FASTCONV_DATA"

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

CLASS_NAMES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "mnist": tuple(str(i) for i in range(10)),
    "fake": tuple(f"class {i}" for i in range(10)),
}


class DataNotFoundError(FileNotFoundError):
    """No directory with the data set's IDX files was found; the message says how to get them."""


@dataclass
class Dataset:
    """A labelled image set: images uint8 (N, 28, 28), labels int64 (N,) for train and test."""
    name: str
    source: str  # the directory read, "the bundled sample" or "a seeded generator"
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1,) + tuple(self.train_images.shape[1:])

    def describe(self) -> str:
        return (f"{self.name} from {self.source}: {len(self.train_labels)} train, "
                f"{len(self.test_labels)} test images of {self.train_images.shape[1]}x{self.train_images.shape[2]}")


# ---------------------------------------------------------------------------------------------
# finding the files

def _file_in(directory: str, stem: str) -> str | None:
    """The path of one IDX file in ``directory``: .gz or raw, '-idx' or '.idx' spelling."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    return None


def _files_in(directory: str) -> dict[str, str] | None:
    found = {key: _file_in(directory, stem) for key, stem in _FILES.items()}
    return found if all(found.values()) else None


def _missing(directory: str) -> list[str]:
    return [stem + "[.gz]" for stem in _FILES.values() if _file_in(directory, stem) is None]


def how_to_get(name: str) -> str:
    if name == "fashion-mnist":
        pkg = ("on Debian/Ubuntu `sudo apt-get install dataset-fashion-mnist` (installs it in "
               "/usr/share/datasets/fashion-mnist/), or ")
        url = "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)"
    else:
        pkg = ""
        url = "the MNIST distribution (e.g. a mirror of yann.lecun.com/exdb/mnist/)"
    return (f"to get {name}: {pkg}download the four IDX files {', '.join(_FILES.values())} (.gz is fine) "
            f"from {url} into a directory and pass --data-dir DIR or set {ENV_VAR}=DIR")


def find_data_dir(name: str, data_dir: str | os.PathLike | None = None) -> tuple[str, dict[str, str]]:
    """The directory that holds data set ``name`` and its four file paths (see the module docstring)."""
    if name not in DATASETS or name == "fake":
        raise ValueError(f"name: got {name!r}, expected one of {', '.join(repr(d) for d in DATASETS if d != 'fake')}")
    if data_dir is not None:
        d = os.fspath(data_dir)
        files = _files_in(d) or _files_in(os.path.join(d, name))
        if files is None:
            raise DataNotFoundError(
                f"data_dir: {d!r} does not hold the {name} IDX files (missing {', '.join(_missing(d))}); "
                f"expected a directory with all four. {how_to_get(name)}")
        return os.path.dirname(files["train_images"]), files
    env = os.environ.get(ENV_VAR)
    if env:
        files = _files_in(os.path.join(env, name)) or _files_in(env)
        if files is None:
            raise DataNotFoundError(
                f"{ENV_VAR}: {env!r} holds neither the {name} IDX files nor a {name}/ directory with them "
                f"(missing {', '.join(_missing(env))}). {how_to_get(name)}")
        return os.path.dirname(files["train_images"]), files
    system = os.path.join(SYSTEM_ROOT, name)
    files = _files_in(system)
    if files is not None:
        return system, files
    if name in SAMPLE_DATASETS:
        files = _files_in(SAMPLE_DIR)
        if files is not None:
            return SAMPLE_DIR, files
    raise DataNotFoundError(
        f"dataset: {name!r} not found (looked at --data-dir, ${ENV_VAR}, {system}"
        f"{', the bundled sample' if name in SAMPLE_DATASETS else ''}). {how_to_get(name)}")


# ---------------------------------------------------------------------------------------------
# loading

def _read_split(files: dict[str, str], split: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(files[f"{split}_images"], ndim=3)
    labels = read_idx(files[f"{split}_labels"], ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise IdxError(f"{split} files {files[f'{split}_images']!r}, {files[f'{split}_labels']!r}: got dtypes "
                       f"{images.dtype}, {labels.dtype}, expected uint8 images and uint8 labels")
    for key, arr in ((f"{split}_images", images), (f"{split}_labels", labels)):
        if arr.shape[0] == 0:
            raise IdxError(f"path {files[key]!r}: got 0 {key.split('_')[1]}, expected at least one")
    if images.shape[0] != labels.shape[0]:
        raise IdxError(f"path {files[f'{split}_labels']!r}: got {labels.shape[0]} labels, expected "
                       f"{images.shape[0]} (one per image in {files[f'{split}_images']!r})")
    if labels.size and labels.max() >= 10:
        raise IdxError(f"path {files[f'{split}_labels']!r}: got label {labels.max()}, expected labels in 0..9")
    return images, labels.astype(np.int64)


def fake_dataset(train: int = 512, test: int = 128, seed: int = 0, size: int = 28) -> Dataset:
    """A learnable stand-in for smoke tests: class c is a bright square at a class-dependent spot plus noise."""
    def make(n, rng):
        labels = rng.integers(0, 10, size=n).astype(np.int64)
        images = rng.integers(0, 60, size=(n, size, size)).astype(np.uint8)
        s = max(size // 5, 1)
        for c in range(10):
            r0, c0 = (c // 5) * (size // 2) + 2, (c % 5) * s
            images[labels == c, r0:r0 + s, c0:c0 + s] = 230
        return images, labels
    rng = np.random.default_rng(seed)
    tr, trl = make(train, rng)
    te, tel = make(test, rng)
    return Dataset("fake", "a seeded generator", tr, trl, te, tel)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load ``name`` ("fashion-mnist", "mnist" or "fake") as uint8 images and int64 labels."""
    if name == "fake":
        return fake_dataset()
    directory, files = find_data_dir(name, data_dir)
    tr, trl = _read_split(files, "train")
    te, tel = _read_split(files, "test")
    if tr.shape[1:] != te.shape[1:]:
        raise IdxError(f"path {files['test_images']!r}: got images of {te.shape[1:]}, expected {tr.shape[1:]} "
                       "like the training images")
    source = "the bundled sample" if directory == SAMPLE_DIR else directory
    return Dataset(name, source, tr, trl, te, tel)


def fingerprint(images: np.ndarray, labels: np.ndarray | None = None) -> str:
    """SHA-256 (hex) of a training set's images and labels, their shapes and dtypes: a resumed run
    compares it with its checkpoint's, so other data of the same size is caught. About 0.1 s for
    Fashion-MNIST's 47 MB."""
    h = hashlib.sha256()
    for a in (images, labels):
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}|{a.shape}|".encode())
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# scaling and batching

def to_float(images: np.ndarray, value_range: str = "01") -> np.ndarray:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [0, 1] ("01", classifiers) or [-1, 1] ("pm1", GANs)."""
    if value_range not in ("01", "pm1"):
        raise ValueError(f"value_range: got {value_range!r}, expected '01' or 'pm1'")
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: got {images.dtype} of shape {images.shape}, expected uint8 (N, H, W)")
    x = images.astype(np.float32)[:, None] / np.float32(255.0)
    if value_range == "pm1":
        x = x * np.float32(2.0) - np.float32(1.0)
    return x


def batch_indices(n: int, batch_size: int, rng: np.random.Generator | None = None,
                  drop_last: bool = False) -> list[np.ndarray]:
    """Index arrays of one pass over n items: shuffled by ``rng`` (None: in order).

    Shuffling draws exactly one permutation from ``rng``, so the generator's state after an
    epoch (saved in checkpoints) fixes the order of every later epoch.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: got {batch_size!r}, expected a positive int")
    if n < 1:
        raise ValueError(f"n: got {n}, expected at least one item to batch")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    if stop == 0:
        raise ValueError(f"batch_size: got {batch_size} with drop_last and only {n} items, expected <= {n}")
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def iterate_batches(x, y, batch_size: int, rng: np.random.Generator | None = None, drop_last: bool = False):
    """Yield (x[idx], y[idx]) batches of one epoch; x, y may be numpy or cupy (indexed on their device)."""
    n = len(x)
    if y is not None and len(y) != n:
        raise ValueError(f"y: got {len(y)} items, expected {n} (the length of x)")
    for idx in batch_indices(n, batch_size, rng, drop_last):
        if not isinstance(x, np.ndarray):  # cupy: move the small index array, gather on the device
            idx = array_module(x).asarray(idx)
        yield x[idx], (None if y is None else y[idx])
