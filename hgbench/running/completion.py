"""Shell completion (`hgbench -sc query=bash`, the line typed so far in COMP_LINE) without
importing torch or pandas.

Hydra completes from the composed configuration: the YAML tree plus the schemas that
hgbench.running.schema stores in its ConfigStore, which come from the components' ``Options``
(declared in modules that import torch). ``snapshot`` records those schemas as plain containers
(their keys and default values; completion needs no types) at commit time, with the shipped
answers (hgbench.running.answers); ``complete`` stores them in the ConfigStore and runs Hydra's
completion on the same config tree as `hgbench run`, so it offers exactly what `hgbench run`'s
own completion offers (tests/test_cli.py compares the two). Where the shipped schemas are not
the installation's (an edited checkout), the caller falls back to `hgbench run`'s completion.
"""

from __future__ import annotations

import copy
import sys

from hgbench.paths import conf_dir


def snapshot() -> dict[str, dict]:
    """The schemas hgbench.running.schema registers, as {"GROUP/NAME": their keys and default
    values} (plain, hence open: completion composes, it does not check)."""
    from omegaconf import OmegaConf

    from hgbench.running.schema import SCHEMAS, structured

    return {f"{group}/{name}": OmegaConf.to_container(structured(schema)) for (group, name), schema in SCHEMAS.items()}


def complete(argv: list[str], schemas: dict[str, dict]) -> int:
    """Hydra's completion of ``argv`` (``hgbench -sc query=...``) with ``schemas`` (``snapshot``'s)
    in the ConfigStore; prints the candidates."""
    import hydra
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    # every schema lives under "schema/": put the typed ones back afterwards (a later `hgbench run`
    # in this process validates with them); Hydra's own entries, registered meanwhile, stay
    typed = copy.deepcopy(store.repo.get("schema", {}))
    try:
        for key, node in schemas.items():
            group, name = key.rsplit("/", 1)
            store.store(group=group, name=name, node=OmegaConf.create(node), provider="hgbench")

        @hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
        def completion(cfg) -> None:  # Hydra answers -sc itself and never calls its task
            raise RuntimeError(f"shell completion ran a task: {sys.argv}")

        sys.argv = argv
        completion()
    finally:
        store.repo["schema"] = typed
    return 0
