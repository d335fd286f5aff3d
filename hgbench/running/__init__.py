"""Running: configuration checks and the runner (runner), its modes (error curves, training),
the Hydra application (app), the command line (cli) and grids."""
