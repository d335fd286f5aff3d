"""The package's version (pyproject.toml's ``version``), apart from the package's facade
(hgbench/__init__.py), so that the modules that record it (run.json, ``hgbench --version``)
do not import the facade, which imports the running layer."""

__version__ = "0.1.0"
