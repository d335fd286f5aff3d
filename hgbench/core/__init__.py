"""The numerics every estimator shares: cost accounting (cost), the linearization of Φ at a point
(linearization), batched λ draws (batch) and the float64 reference hypergradient (reference)."""
