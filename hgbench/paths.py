"""Where the Hydra configuration lives."""

from __future__ import annotations

from pathlib import Path


def conf_dir() -> Path:
    """The absolute path of the config tree: the copy packaged in the wheel (hgbench/conf), else
    the checkout's top-level conf/ (editable installs). Hydra resolves a relative config_path as
    a package when run from a console script, hence the absolute path."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"hgbench's conf/ directory is missing (looked in {package} and {package.parent})")
