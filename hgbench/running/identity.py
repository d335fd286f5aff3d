"""A run's identity: ``run_id``, the hash of its resolved configuration, which every row and its
run.json carry (docs/architecture.md, "Rows and their identity")."""

from __future__ import annotations

import hashlib
import json

from hgbench.analysis.results import RESUME_FREE


def run_id(config: dict, *leave_out: str) -> str:
    """12 hex characters of the sha256 of the resolved configuration as canonical JSON (sorted
    keys, no spaces), less what does not change a row: ``hydra`` (where outputs go; absent from a
    job's configuration anyway) and RESUME_FREE (hgbench.analysis.results: ``plot`` draws a
    figure; ``resume`` reuses rows already computed; ``n_lambdas`` only extends the prefix of
    one stream of λ draws; ``threads`` changes float sums at ~1e-13 only and is recorded in
    run.json), ``reproduce`` (a preset's note to `hgbench reproduce`: its measured minutes and
    quick variant, which a row does not depend on), and the top-level groups in ``leave_out``:
    the rows' ``setting_id`` leaves out ``estimator``, so that the estimators run on one setting share it and are compared within
    it. ``reference`` counts only when set to a method: ``auto`` (its default) resolves to what
    every run did before the option existed, so their ids stay. ``linearization`` likewise counts
    only when forced (dense | products): ``auto`` changes only time_s (the rows' time_kind says
    which path measured it) and estimates at round-off (hgbench.core.linearization), so the runs
    written before it existed keep their ids. ``estimator.step_halflife`` counts only when set:
    null is the constant steps of every run before it existed. Equal configurations give equal ids on every
    machine and Python version."""
    kept = {key: value for key, value in config.items() if key not in ("hydra", "reproduce", *RESUME_FREE, *leave_out)}
    for option in ("reference", "linearization"):
        if kept.get(option) == "auto":
            del kept[option]
    estimator = kept.get("estimator")
    if isinstance(estimator, dict) and "step_halflife" in estimator and estimator["step_halflife"] is None:
        kept["estimator"] = {key: value for key, value in estimator.items() if key != "step_halflife"}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
