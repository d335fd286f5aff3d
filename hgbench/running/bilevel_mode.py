"""mode=bilevel: a stochastic bilevel solver end to end (issue 27, "End to end"; docs/stochastic.md).

The solver (``solver=NAME``: hgbench/solvers/, conf/solver/) moves z, v and λ together on a
finite-sum problem, every product on a minibatch (hgbench.solvers.base.Moving, counted per
sample as hgbench.core.stochastic.Oracles), from λ₀ = the run's first λ draw, z₀ = w₀(λ₀), v₀ = 0.
Its sampling is seeded by hgbench.core.stochastic.stream_seed(seed, 0, b, b', 0) (the same
stream for every solver of a setting: common random numbers) and recorded (``batch``,
``outer_batch``, ``replace``), so a run reruns to the same rows (the measured times aside).

The run stops after ``iterations`` iterations or at the first iteration whose cumulative oracle
calls reach ``max_calls`` (an equal oracle budget for solvers of unequal cost per iteration).
Every ``eval_every`` iterations, at iteration 0 and at the last, one row with the EXACT f(λ_s)
= E(w*(λ_s), λ_s) and ‖∇f(λ_s)‖² from the certified float64 full-batch reference
(hgbench.core.reference: reference + certify; an uncertified reference gives an ``error`` row
without them and the run goes on), their ratio to iteration 0's (``grad_norm2_rel``; to the first
certified evaluation's where iteration 0's is not), and, on a
problem with metrics (``trainable``), its loss and accuracy per split: with ``test_t`` = 0 on a
problem whose model is w itself (``Problem.metrics``: hyper_cleaning's classifier), of the model
at the reference's w*(λ_s) — the exact model at λ_s, whose validation loss is f(λ_s); otherwise
of the model whose states are ``test_t`` steps of Φ from w₀ (as mode=outer). ``time_s`` is the cumulative wall time of the solver's iterations alone (each
``next`` of its generator); ``ref_time_s`` that of the evaluations, timed apart; ``n_grad``,
``n_hvp``, ``n_jvp``, ``n_outer`` and ``oracle_calls`` (their sum) are cumulative.

A non-finite λ, or an error inside an iteration (an overflow), ends the run with a ``diverged``
row (a flagged row, not a crash).

Why a mode of its own rather than an extension of mode=outer: mode=outer feeds one fixed-λ
estimate per step to a torch optimizer and counts VJPs through Φ; a stochastic solver is a
single algorithm whose state (z, v, SAGA memories, a penalty) crosses iterations and whose
cost is in per-sample oracle calls. Keeping it apart leaves outer_loop.py's numerics, columns
and every results/outer row untouched (their run_id too: ``solver`` and ``bilevel`` are this
mode's groups, left out of the other modes' configurations, hgbench.running.modes.foreign_groups).
The ``estimator`` group does not apply here and is left out of this mode's configuration.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from hgbench.analysis.bilevel import COLUMNS, CSV, KEY, summary_text
from hgbench.analysis.outer_loop import METRICS
from hgbench.core.reference import certify, reference
from hgbench.core.stochastic import Sampling, stream_seed
from hgbench.problems.base import Problem
from hgbench.problems.finite_sum import is_finite_sum
from hgbench.running.errors import UserError, reason_of
from hgbench.running.identity import run_id
from hgbench.running.mode import Mode, Workload
from hgbench.running.plan import Plan
from hgbench.running.progress import progress_bar
from hgbench.running.storage import save
from hgbench.solvers.base import Moving


class BilevelMode(Mode):
    """mode=bilevel: see the module docstring."""

    name, csv, columns, key = "bilevel", CSV, COLUMNS, KEY
    options = "bilevel"
    groups = ("solver",)
    unused = ("estimator",)
    figures = ("bilevel",)

    def check(self, cfg: DictConfig) -> None:
        super().check(cfg)
        if cfg.resume:
            raise UserError("resume=true applies to mode=error and mode=outer; mode=bilevel writes its rows as it goes: use resume=false")

    def check_estimator(self, estimator) -> None:
        """The estimator group does not apply (the solver computes its own directions)."""

    def check_problem(self, cfg: DictConfig, problem: Problem) -> None:
        if not is_finite_sum(problem):
            raise UserError(
                f"mode=bilevel needs a finite-sum problem (hgbench/problems/finite_sum.py); problem {problem.name!r} is not one"
            )
        try:
            n, m = problem.n_inner, problem.n_outer
        except ValueError as err:
            raise UserError(str(err)) from err
        batch, outer = self.sizes(cfg.bilevel)
        if batch > n or outer > m:
            raise UserError(
                f"bilevel.batch={batch} and bilevel.outer_batch={cfg.bilevel.outer_batch} ask for minibatches of {batch} and {outer}; "
                f"problem {problem.name!r} has {n} training and {m} outer samples"
            )

    @staticmethod
    def sizes(options) -> tuple[int, int]:
        """(b, b')."""
        return options["batch"], options["batch"] if options["outer_batch"] is None else options["outer_batch"]

    def run(self, plan: Plan, out_dir: Path, progress: bool = True) -> pd.DataFrame:
        options = plan.config["bilevel"]
        solver = plan.components["solver"]
        batch, outer = self.sizes(options)
        sampling = Sampling(batch, outer, bool(options["replace"]))
        work = plan.problem.to(plan.dtype, plan.device)
        lam = plan.lams[0].to(plan.dtype).to(plan.device)
        generator = torch.Generator(plan.device).manual_seed(stream_seed(plan.seed, 0, batch, outer, 0))
        oracle = Moving(work, lam, sampling, generator)
        base = {
            **plan.identity,
            "setting_id": run_id(plan.config, "solver"),  # the solvers run on one setting share it
            "problem": plan.problem.name,
            "problem_id": run_id({"problem": plan.config["problem"]}),
            "solver": solver.name,
            "seed": plan.seed,
            "batch": batch,
            "outer_batch": outer,
            "replace": sampling.replace,
            "dtype": str(plan.dtype).removeprefix("torch."),
        }
        iterations, every, budget = options["iterations"], options["eval_every"], options["max_calls"]
        rows, facts, first = [], [], {}
        seconds = ref_seconds = 0.0
        # One untimed iteration on a generator of its own: one-time framework setup (torch.func's
        # first calls) must not land in the first iteration's time; the recorded stream is untouched.
        next(solver.run(Moving(work, lam, sampling, torch.Generator(plan.device).manual_seed(0)), lam))
        steps = solver.run(oracle, lam)
        for s in progress_bar(plan, range(iterations + 1), iterations + 1, "iteration", progress, "bilevel ", solver.name):
            row = {**base, "iteration": s, "status": "ok", "reason": ""}
            if s > 0:
                start = time.perf_counter()
                try:
                    lam = next(steps)
                    ok = bool(torch.isfinite(lam).all())
                except (RuntimeError, ValueError, ArithmeticError) as err:  # e.g. an overflow inside an iteration
                    ok, row["reason"] = False, reason_of(err)
                seconds += time.perf_counter() - start
            else:
                ok = True
            calls = oracle.oracles
            row.update(
                n_grad=calls.n_grad,
                n_hvp=calls.n_hvp,
                n_jvp=calls.n_jvp,
                n_outer=calls.n_outer,
                oracle_calls=calls.total,
                time_s=seconds,
                ref_time_s=ref_seconds,
            )
            if not ok:
                row.update(status="diverged", reason=row["reason"] or "non-finite λ")
                rows.append(row)
                print(f"hgbench: {solver.name} diverged at iteration {s} ({row['reason']})")
                break
            row["lam_norm"] = torch.linalg.vector_norm(lam).item()
            last = s == iterations or (budget is not None and calls.total >= budget)
            if s % every == 0 or last:
                start = time.perf_counter()
                row.update(self._evaluate(plan, work, lam, options, first, facts, s))
                ref_seconds += time.perf_counter() - start
                rows.append(row)
                save(plan, rows, self.columns, self.csv, facts, out_dir)
            if last:
                break
        return save(plan, rows, self.columns, self.csv, facts, out_dir)

    @staticmethod
    def _evaluate(plan: Plan, work: Problem, lam: torch.Tensor, options: dict, first: dict, facts: list, s: int) -> dict:
        """f, ‖∇f‖² and its ratio to iteration 0's from the certified reference at λ (float64),
        and the problem's metrics; an ``error`` status where the reference is not certified."""
        lam64 = lam.detach().to("cpu", torch.float64)
        out = {}
        try:
            ref = reference(plan.problem, lam64, plan.reference)
            certificate = certify(ref)
        except (RuntimeError, ValueError, ArithmeticError) as err:
            facts.append({"iteration": s, "error": reason_of(err)})
            return {"status": "error", "reason": f"reference failed: {reason_of(err)}"}
        facts.append({"iteration": s, **ref.summary(), "certificate": certificate})
        if certificate["certified"] and bool(torch.isfinite(ref.grad).all()):
            norm2 = ref.grad.square().sum().item()
            first.setdefault("norm2", norm2)
            out.update(
                f=plan.problem.outer(ref.w_star, lam64).item(),
                grad_norm2=norm2,
                grad_norm2_rel=norm2 / first["norm2"] if first["norm2"] > 0 else math.nan,
            )
        else:
            out.update(status="error", reason=certificate.get("reason", "reference not certified: NaN or inf"))
        if plan.problem.trainable:
            # test_t = 0: the model at the certified w*(λ_s) where the problem's model is w itself
            scores = plan.problem.metrics(ref.w_star, lam64) if options["test_t"] == 0 else None
            scores = work.evaluate(lam, options["test_t"]) if scores is None else scores
            out.update({key: scores[key] for key in METRICS})
        return out

    def workload(self, cfg: DictConfig, pairs: list[tuple[int, int]] = ()) -> Workload:
        """One certified reference per evaluation (the solver's own work is counted in iterations, not here)."""
        evaluations = cfg.bilevel.iterations // cfg.bilevel.eval_every + 2
        return Workload(1, evaluations, [(1, 1)], "evaluations", False)

    def summarize(self, df: pd.DataFrame) -> str:
        return summary_text(df)
