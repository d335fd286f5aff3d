"""mode=stochastic: bias and variance of a stochastic hypergradient estimator against the
certified float64 reference (issue 27; docs/stochastic.md).

Per λ draw: the full-batch float64 reference ∇f(λ) and its certificate
(hgbench.core.reference: reference + certify, as mode=error), then, per inner batch size b of
``stochastic.batches`` and outer batch size b' (``stochastic.outer_batch``, default b), R =
``stochastic.repeats`` repetitions r of the estimator over the grid, repetition r with its own
generator (seed hgbench.core.stochastic.stream_seed(seed, λ draw, b, b', r): every row can be
rerun alone). One row per (λ draw, t, k, b) with, over the R estimates ĝ_r and m = (1/R) Σ ĝ_r:

    mse      = (1/R) Σ_r ‖ĝ_r − ∇f‖²
    bias2    = ‖m − ∇f‖²
    variance = (1/R) Σ_r ‖ĝ_r − m‖²          (so mse = bias2 + variance, exactly in exact arithmetic)

(plug-in estimates: E[bias2] = ‖Eĝ − ∇f‖² + σ²/R where σ² = E‖ĝ − Eĝ‖², and E[variance] = (1 − 1/R)σ²;
so ``bias2_debiased`` = bias2 − variance/(R − 1) is unbiased for ‖Eĝ − ∇f‖², and may be negative),
their values relative to ‖∇f‖², the oracle calls of one repetition in the field's units
(hgbench.core.stochastic.Oracles: sample gradients, Hessian–vector, cross Jacobian–vector
products and outer gradients; the same in every repetition) and the mean seconds of one
repetition. A row whose repetitions give NaN or inf is ``diverged`` (its statistics NaN); a λ draw
whose reference fails its certificate, or whose computation raises, gives ``error`` rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from hgbench.analysis.stochastic import COLUMNS, CSV, KEY, summary_text
from hgbench.core.reference import certify, reference
from hgbench.core.stochastic import Sampled, Sampling, stream_seed
from hgbench.problems.base import Problem
from hgbench.problems.finite_sum import is_finite_sum
from hgbench.running.errors import UserError, reason_of
from hgbench.running.mode import Mode, Workload
from hgbench.running.plan import Plan
from hgbench.running.progress import progress_bar
from hgbench.running.storage import save


def bias_variance(grads: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """MSE, bias², variance and debiased bias² (module docstring) of R ≥ 2 estimates ``grads``
    (R × p, float64) against ``truth`` (p,)."""
    mean = grads.mean(0)
    bias2, variance = (mean - truth).square().sum().item(), (grads - mean).square().sum(1).mean().item()
    return {
        "mse": (grads - truth).square().sum(1).mean().item(),
        "bias2": bias2,
        "variance": variance,
        "bias2_debiased": bias2 - variance / (len(grads) - 1),
    }


class StochasticMode(Mode):
    """mode=stochastic: see the module docstring."""

    name, csv, columns, key = "stochastic", CSV, COLUMNS, KEY
    options = "stochastic"
    figures = ("stochastic",)

    def check(self, cfg: DictConfig) -> None:
        super().check(cfg)
        batches = cfg.stochastic.batches
        batches = list(batches) if OmegaConf.is_list(batches) else [batches]
        if 0 in batches:
            raise UserError(f"stochastic.batches={batches} must hold batch sizes >= 1")
        if cfg.resume:
            raise UserError(
                "resume=true applies to mode=error and mode=outer; mode=stochastic writes its rows once, at its end: use resume=false"
            )
        if cfg.grid.get("kind") == "levels":
            raise UserError("mode=stochastic runs a grid of (t, k); grid=levels applies to mode=error")

    def check_problem(self, cfg: DictConfig, problem: Problem) -> None:
        if not is_finite_sum(problem):
            raise UserError(
                f"mode=stochastic needs a finite-sum problem (hgbench/problems/finite_sum.py); problem {problem.name!r} is not one"
            )
        try:
            n, m = problem.n_inner, problem.n_outer
        except ValueError as err:
            raise UserError(str(err)) from err
        for batch, outer in self.sizes(cfg):
            if batch > n or outer > m:
                raise UserError(
                    f"stochastic.batches={self.batches(cfg)} (outer_batch={cfg.stochastic.outer_batch}) asks for minibatches of "
                    f"{batch} and {outer}; problem {problem.name!r} has {n} training and {m} outer samples"
                )

    @staticmethod
    def batches(cfg: DictConfig) -> list[int]:
        given = cfg.stochastic.batches
        return sorted(set(given)) if OmegaConf.is_list(given) else [given]

    def sizes(self, cfg: DictConfig) -> list[tuple[int, int]]:
        """(b, b') per batch size of the axis."""
        outer = cfg.stochastic.outer_batch
        return [(b, b if outer is None else outer) for b in self.batches(cfg)]

    def check_estimator(self, estimator) -> None:
        if not estimator.minibatch:
            raise UserError(
                f"mode=stochastic runs a stochastic estimator (those `hgbench list` marks mode=stochastic); {estimator.name!r} is not one"
            )

    def run(self, plan: Plan, out_dir: Path, progress: bool = True) -> pd.DataFrame:
        options = plan.config["stochastic"]
        cfg = OmegaConf.create({"stochastic": options})
        sizes, repeats, replace = self.sizes(cfg), options["repeats"], bool(options["replace"])
        work = plan.problem.to(plan.dtype, plan.device)
        keys = plan.pairs if plan.estimator.has_k else [(t, None) for t in sorted({t for t, _ in plan.pairs})]
        rows, facts = [], []
        for lam_id in progress_bar(plan, list(range(len(plan.lams))), len(plan.lams), "λ", progress):
            lam = plan.lams[lam_id]
            fact = {"lam_id": lam_id, "lam": lam.tolist()}
            try:
                ref = reference(plan.problem.draw(lam_id), lam, plan.reference)
                fact.update(ref.summary(), certificate=certify(ref))
                if not fact["certificate"]["certified"]:
                    raise ArithmeticError(f"the reference is not certified: {fact['certificate']['reason']}")
                for batch, outer in sizes:
                    rows += self._rows(plan, work.draw(lam_id), lam_id, ref.grad, Sampling(batch, outer, replace), repeats)
            except Exception as err:  # noqa: BLE001 — a failing draw is data (status error), not the end of the run
                fact["error"] = reason_of(err)
                rows = [row for row in rows if row["lam_id"] != lam_id]
                rows += [
                    {**self._key(plan, lam_id, t, k, batch, outer, replace, repeats), "status": "error", "reason": fact["error"]}
                    for batch, outer in sizes
                    for t, k in keys
                ]
            facts.append(fact)
        return save(plan, rows, self.columns, self.csv, facts, out_dir)

    @staticmethod
    def _key(plan: Plan, lam_id, t, k, batch, outer, replace, repeats) -> dict:
        return {
            **plan.identity,
            "problem": plan.problem.name,
            "estimator": plan.estimator.name,
            "role": plan.estimator.role,
            "seed": plan.seed,
            "lam_id": lam_id,
            "t": t,
            "k": k,
            "batch": batch,
            "outer_batch": outer,
            "replace": replace,
            "repeats": repeats,
            "dtype": str(plan.dtype).removeprefix("torch."),
        }

    def _rows(self, plan: Plan, work: Problem, lam_id: int, truth: torch.Tensor, sampling: Sampling, repeats: int) -> list[dict]:
        """The rows of one λ draw and batch size: R repetitions, then the statistics per grid point."""
        lam = plan.lams[lam_id].to(plan.dtype).to(plan.device)
        grads, seconds, oracles = {}, {}, {}
        for r in range(repeats):
            generator = torch.Generator(plan.device).manual_seed(stream_seed(plan.seed, lam_id, sampling.batch, sampling.outer_batch, r))
            for est in plan.estimator.stochastic(Sampled(work, lam, sampling, generator), plan.pairs):
                key = (est.t, est.k)
                grads.setdefault(key, []).append(est.grad.detach().to("cpu", torch.float64))
                seconds.setdefault(key, []).append(est.time_s)
                oracles[key] = est.oracles
        norm2 = truth.square().sum().item()
        rows = []
        for (t, k), found in grads.items():
            stacked = torch.stack(found)
            finite = bool(torch.isfinite(stacked).all())
            stats = bias_variance(stacked, truth) if finite else dict.fromkeys(("mse", "bias2", "variance", "bias2_debiased"), math.nan)
            if finite and not all(math.isfinite(v) for v in stats.values()):
                finite, stats = False, dict.fromkeys(stats, math.nan)
            calls = oracles[(t, k)]
            rows.append(
                {
                    **self._key(plan, lam_id, t, k, sampling.batch, sampling.outer_batch, sampling.replace, repeats),
                    **stats,
                    **{f"{name}_rel": value / norm2 if norm2 > 0 else math.nan for name, value in stats.items()},
                    "grad_norm": math.sqrt(norm2),
                    "n_grad": calls.n_grad,
                    "n_hvp": calls.n_hvp,
                    "n_jvp": calls.n_jvp,
                    "n_outer": calls.n_outer,
                    "oracle_calls": calls.total,
                    "time_s": sum(seconds[(t, k)]) / len(seconds[(t, k)]),
                    "status": "ok" if finite else "diverged",
                    "reason": ""
                    if finite
                    else f"{sum(not bool(torch.isfinite(g).all()) for g in found)} of {repeats} repetitions NaN or inf, or overflowing",
                }
            )
        return rows

    def workload(self, cfg: DictConfig, pairs: list[tuple[int, int]] = ()) -> Workload:
        """R repetitions per λ draw and batch size, each over the grid."""
        batches = cfg.stochastic.batches
        count = len(set(batches)) if OmegaConf.is_list(batches) else 1
        return Workload(cfg.n_lambdas, cfg.n_lambdas * count * cfg.stochastic.repeats, list(pairs), "repetitions", False)

    def summarize(self, df: pd.DataFrame) -> str:
        """Medians over λ draws per (estimator, batch, t, k): MSE, bias², variance (relative to ‖∇f‖²), oracle calls, seconds."""
        return summary_text(df)
