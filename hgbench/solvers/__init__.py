"""Stochastic bilevel solvers run end to end in mode=bilevel (hgbench.solvers.base; docs/stochastic.md)."""
