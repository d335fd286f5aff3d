"""Per-λ constants of Φ (Problem.draw_consts) are computed once per value of λ and reused only
where they are the same numbers: same λ values, same problem tensors, unchanged."""

import torch

from hgbench.core.bound import estimate
from hgbench.core.reference import reference
from hgbench.estimators.cg import ConjugateGradient
from tests.conftest import draws


def _counting(problem, monkeypatch):
    """A list that grows by one per call of the problem's ``curvature_bounds`` (ridge: eigvalsh of H(λ))."""
    calls, original = [], type(problem).curvature_bounds

    def counted(self, lam):
        calls.append(lam.clone())
        return original(self, lam)

    monkeypatch.setattr(type(problem), "curvature_bounds", counted)
    return calls


def _fresh(problem):
    problem.__dict__.pop("_consts_cache", None)
    return problem


def test_one_eigendecomposition_per_draw_same_numbers(ridge, monkeypatch):
    """A draw's reference (with its error bound) and an estimate bind Φ four times: α(λ) is
    computed once, and the reference and the estimate are those of uncached constants, bit for bit."""
    lam = draws(ridge, 1)[0]
    fresh = lambda: ridge.consts(lam)["alpha"]  # (uncached)
    calls = _counting(_fresh(ridge), monkeypatch)
    ref = reference(ridge, lam)
    (est,) = estimate(ConjugateGradient("cg"), ridge, lam, [(20, 10)])
    assert len(calls) == 1
    assert torch.equal(ridge.draw_consts(lam)["alpha"], fresh())
    monkeypatch.setattr(type(ridge), "draw_consts", lambda self, l: {k: v.detach() for k, v in self.consts(l.detach()).items()})
    assert torch.equal(reference(ridge, lam).grad, ref.grad)
    (uncached,) = estimate(ConjugateGradient("cg"), ridge, lam, [(20, 10)])
    assert torch.equal(uncached.grad, est.grad)


def test_another_lambda_another_copy_or_changed_data_recompute(ridge, monkeypatch):
    lam, other = draws(ridge, 2)
    problem = _fresh(ridge.to(torch.float64, "cpu"))
    calls = _counting(problem, monkeypatch)
    alpha = problem.draw_consts(lam)["alpha"]
    assert torch.equal(problem.draw_consts(lam.clone())["alpha"], alpha) and len(calls) == 1  # equal values: reused
    assert not torch.equal(problem.draw_consts(other)["alpha"], alpha) and len(calls) == 2  # another λ
    assert torch.equal(problem.draw_consts(-(-lam))["alpha"], alpha) and len(calls) == 2
    single = problem.to(torch.float32, "cpu")  # a cast copy: its tensors are not the ones α came from
    assert single.draw_consts(lam.float())["alpha"].dtype == torch.float32 and len(calls) == 3
    assert torch.equal(single.draw_consts(lam)["alpha"], single.consts(lam)["alpha"]) and len(calls) == 5  # float64 λ: another key
    before = problem.draw_consts(lam)["alpha"]
    problem.gram.mul_(2.0)  # data changed in place: the cached α is stale
    try:
        after = problem.draw_consts(lam)["alpha"]
        assert len(calls) == 7 and not torch.equal(after, before)
        assert torch.equal(after, problem.consts(lam)["alpha"])
    finally:
        problem.gram.div_(2.0)


def test_batched_draws_are_not_cached(ridge):
    """Under torch.func.vmap λ has no concrete values: the constants are computed per call, and
    equal the unbatched ones."""
    lams = draws(ridge, 3)
    problem = _fresh(ridge.to(torch.float64, "cpu"))
    batched = torch.func.vmap(lambda lam: problem.draw_consts(lam)["alpha"])(lams)
    assert problem.__dict__.get("_consts_cache", {}) == {}
    assert torch.allclose(batched, torch.stack([problem.consts(lam)["alpha"] for lam in lams]), rtol=1e-14, atol=0)
