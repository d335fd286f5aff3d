"""Analysis of result rows, never recomputing them: the tidy table (results), figures (plot),
predicted rates (theory), error vs inner error (inner_error), the papers' claims (claims) and the
reproduction driver (reproduce)."""
