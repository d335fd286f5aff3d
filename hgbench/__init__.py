"""hgbench: accuracy and cost of hypergradient estimators in bilevel optimization.

The bilevel problem is  min_λ f(λ) = E(w(λ), λ)  with  w(λ) = Φ(w(λ), λ)
(Grazzi, Franceschi, Pontil, Salzo, "On the Iteration Complexity of Hypergradient
Computation", ICML 2020).
"""

__version__ = "0.1.0"
