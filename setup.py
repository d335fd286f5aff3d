"""Packaging metadata lives in pyproject.toml; this file only lists the packages, so that every
subpackage of hgbench is discovered (a new one cannot be forgotten) and conf/ — the top-level
Hydra config tree, mapped by pyproject's package-dir — ships as hgbench.conf."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["hgbench", "hgbench.*"]) + ["hgbench.conf"])
