"""Running: preparing a run (prepare, plan), its modes (modes: the error mode's runner, outer),
what the modes share (identity, storage, progress, errors), the Hydra application (app), the
command line (cli) and grids."""
