"""Real data sets bundled with scikit-learn (no download): standardized, float64 tensors.

    diabetes       442 × 10, regression target (Efron et al. 2004)
    breast_cancer  569 × 30, binary target, returned as ±1
    digits         1797 × 64 (8×8 images, pixels 0–16), 10 classes

and, from the MNIST subset shipped with hgbench (hgbench.data.mnist, its sha256 checked on every load):

    mnist_binary     up to 5000 × 784 (28×28 images, pixels 0–255), binary target: +1 even digit, −1 odd
    mnist_binary_14  the same images average-pooled 2×2: up to 5000 × 196 (14×14)

``split`` gives a seeded train/validation split of diabetes or breast_cancer, standardized with
the training part's mean and standard deviation (features, and the target of a regression), so
the validation part carries no information into the training statistics. ``digits`` gives the
images (optionally average-pooled) standardized over the whole set, with integer labels; the
meta-learning problems build their tasks from it.
"""

from __future__ import annotations

import torch

SPLIT_SETS = ("diabetes", "breast_cancer")
N_MNIST = 5000  # images in the shipped MNIST subset


def _standardize(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(x − mean)/std with the statistics of ``ref``; constant columns are only centred."""
    std = ref.std(dim=0)
    return (x - ref.mean(dim=0)) / torch.where(std > 0, std, torch.ones_like(std))


def split(name: str, seed: int, val_fraction: float):
    """(x_train, y_train, x_val, y_val), float64; rows permuted by ``seed`` before splitting.

    diabetes: y standardized like the features. breast_cancer: y ∈ {−1, +1} (+1 = benign).
    """
    from sklearn import datasets as sk

    loaders = {"diabetes": sk.load_diabetes, "breast_cancer": sk.load_breast_cancer}
    if name not in loaders:
        raise ValueError(f"data={name!r} is not one of {', '.join(SPLIT_SETS)}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must lie strictly between 0 and 1")
    x, y = loaders[name](return_X_y=True)
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(int(seed)))
    x, y = x[perm], y[perm]
    n_val = round(val_fraction * x.shape[0])
    if not 2 <= n_val <= x.shape[0] - 2:
        raise ValueError(f"val_fraction={val_fraction} leaves fewer than 2 rows on one side of {name}'s {x.shape[0]}")
    x_train, x_val = x[n_val:], x[:n_val]
    y_train, y_val = y[n_val:], y[:n_val]
    if name == "diabetes":
        y_train, y_val = _standardize(y_train[:, None], y_train[:, None])[:, 0], _standardize(y_val[:, None], y_train[:, None])[:, 0]
    else:
        y_train, y_val = 2 * y_train - 1, 2 * y_val - 1
    return _standardize(x_train, x_train), y_train, _standardize(x_val, x_train), y_val


def digits(pool: int = 1):
    """(x, labels): x (1797, (8/pool)²) float64, standardized per pixel over the set; labels (1797,)
    int64 in 0..9. ``pool`` ∈ {1, 2, 4, 8} averages pool×pool pixel blocks (pool=2: 4×4 images)."""
    from sklearn.datasets import load_digits

    if pool not in (1, 2, 4, 8):
        raise ValueError(f"pool={pool!r} must be one of 1, 2, 4, 8 (it must divide the 8×8 image)")
    images, labels = load_digits(return_X_y=True)
    x = torch.as_tensor(images, dtype=torch.float64).reshape(-1, 1, 8, 8)
    x = torch.nn.functional.avg_pool2d(x, pool).flatten(1)
    return _standardize(x, x), torch.as_tensor(labels, dtype=torch.int64)


def mnist_binary(seed: int, n_samples: int, val_fraction: float, pool: int = 1):
    """(x_train, b_train, x_val, b_val, x_test, b_test), float64: ``n_samples`` of the 5,000 shipped
    MNIST images (hgbench.data.mnist.load_mnist: a ``seed``-ed permutation, every split holding
    every digit), round(val_fraction·n) for validation, as many for test, the rest for training;
    x (·, (28/pool)²) the pixels, averaged over pool×pool blocks (pool ∈ {1, 2}: 784 or 196), standardized with the training part's mean and standard deviation
    (pixels constant on the training part, e.g. the border, are only centred: columns of zeros
    there); b = +1 for an even digit, −1 for an odd one (the file holds 500 images per digit: half
    of the 5,000 are odd)."""
    from hgbench.data.mnist import load_mnist

    if not 0 < val_fraction < 0.5:
        raise ValueError(
            f"val_fraction={val_fraction} must lie strictly between 0 and 0.5 for mnist_binary (the same share is held out for test)"
        )
    if not 4 <= n_samples <= N_MNIST:
        raise ValueError(f"n_samples={n_samples} must lie between 4 and the {N_MNIST} images of the shipped MNIST subset")
    n_val = round(val_fraction * n_samples)
    if not 1 <= n_val <= (n_samples - 2) // 2:
        raise ValueError(f"val_fraction={val_fraction} leaves fewer than 2 rows on one side of {n_samples} MNIST images")
    if pool not in (1, 2):
        raise ValueError(f"pool={pool!r} must be 1 or 2")
    parts = load_mnist(n_samples - 2 * n_val, n_val, n_val, int(seed))
    images = {name: torch.nn.functional.avg_pool2d(part.images.reshape(-1, 1, 28, 28), pool).flatten(1) for name, part in parts.items()}
    out = []
    for name in ("train", "val", "test"):
        out += [_standardize(images[name], images["train"]), torch.where(parts[name].labels % 2 == 0, 1.0, -1.0).to(torch.float64)]
    return tuple(out)
