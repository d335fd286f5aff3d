"""LIBSVM-format data: the small sets of Ye, Peyré, Cremers, Ablin (AISTATS 2024), shipped inside
the package, or a user's own files.

Format (one example per line): the label, then ``index:value`` pairs with 1-based feature
indices; a feature whose value is 0 is simply omitted. ``read`` keeps only the rows that list
all d features (d = the largest index in the file), as the authors' code does: a row with an
omitted (zero) feature is dropped, not completed with a 0. On the shipped files this keeps

    mpg_scale          297 of 392 rows (95 list 5 or 6 of the 7 features), d = 7
    liver_scale        144 of 145 rows (one lists 4 of the 5 features),    d = 5
    liver_scale_test   200 of 200 rows,                                     d = 5

Shipped files (``SHIPPED``; sha256 checked on every load by hgbench.data.shipped, a mismatch is refused in one line):

- ``mpg``: ``mpg_scale``, the Auto MPG set of the UCI Machine Learning Repository (Quinlan
  1993; 392 cars, 7 attributes, target miles per gallon), scaled to [−1, 1] per feature by the
  LIBSVM data collection (Chang & Lin, https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/).
- ``liver``: ``liver_scale`` (training) and ``liver_scale_test`` (held out), the BUPA Liver
  Disorders set of the UCI repository (McDermott & Forsyth 2016; 345 men, 5 blood tests;
  labels 0/1, returned as −1/+1), in the LIBSVM collection's split. The training part is scaled
  to [−1, 1]; the test part as distributed is not (raw values up to ~300) — Ye et al.'s
  experiments use both as they are, and so does this loader.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hgbench.data.shipped import shipped_path

# data name -> (training file, held-out file or None)
SHIPPED = {"mpg": ("mpg_scale", None), "liver": ("liver_scale", "liver_scale_test")}


def parse(text: str, where: str = "<text>") -> tuple[torch.Tensor, torch.Tensor]:
    """(x, labels) of LIBSVM text, float64, keeping only the rows that list every feature (see the
    module docstring). A malformed line is refused naming ``where`` and the line number."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            label = float(fields[0])
            pairs = {int(i): float(v) for i, v in (f.split(":") for f in fields[1:])}
        except ValueError as err:
            raise ValueError(f"{where}, line {number}: not 'label index:value ...' ({err})") from err
        if any(i < 1 for i in pairs):
            raise ValueError(f"{where}, line {number}: feature indices start at 1")
        rows.append((label, pairs))
    if not rows:
        raise ValueError(f"{where} holds no examples")
    d = max(max(pairs, default=0) for _, pairs in rows)
    full = [(label, pairs) for label, pairs in rows if len(pairs) == d]
    if not full:
        raise ValueError(f"{where}: no row lists all {d} features")
    x = torch.tensor([[pairs[j] for j in range(1, d + 1)] for _, pairs in full], dtype=torch.float64)
    return x, torch.tensor([label for label, _ in full], dtype=torch.float64)


def read(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, labels) of a LIBSVM file (``parse``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LIBSVM file {path} does not exist")
    return parse(path.read_text(), str(path))


def load(data: str, test: str | None = None, binary: bool = False):
    """(x, labels, x_test, labels_test): ``data`` a shipped name (``mpg``, ``liver``: its files,
    checksums verified) or the path of a LIBSVM file, ``test`` the path of a held-out file (a
    shipped name brings its own; None: x_test and labels_test are None). ``binary``: labels
    {0, 1} (or {−1, +1}) are returned as {−1, +1}; any other label is refused."""
    if data in SHIPPED:
        train_file, test_file = SHIPPED[data]
        parts = [read(shipped_path(f"libsvm_files/{train_file}")), read(shipped_path(f"libsvm_files/{test_file}")) if test_file else None]
    else:
        parts = [read(data), read(test) if test else None]
    if parts[1] is not None and parts[1][0].shape[1] != parts[0][0].shape[1]:
        raise ValueError(f"the held-out file has {parts[1][0].shape[1]} features, the training file {parts[0][0].shape[1]}")
    out = []
    for part in parts:
        if part is None:
            out += [None, None]
            continue
        x, y = part
        if binary:
            if not set(y.unique().tolist()) <= {0.0, 1.0, -1.0}:
                raise ValueError(f"binary labels must be 0/1 or −1/+1, got {sorted(set(y.unique().tolist()))[:5]}")
            y = torch.where(y > 0, 1.0, -1.0).to(torch.float64)
        out += [x, y]
    return tuple(out)
