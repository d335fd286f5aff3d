"""Outer-loop mode (``hgbench run mode=outer``, hgbench.running.modes): bilevel optimization

    min_λ f(λ) = E(w(λ), λ),   w(λ) = Φ(w(λ), λ)

with the chosen estimator's hypergradient ĝ(t, k) fed to a torch.optim optimizer, on any
problem. Does hypergradient accuracy pay off in the outer loop? (Grazzi et al., ICML 2020,
compare the estimators' accuracy; Ji, Yang, Liang, ICML 2021, and Arbel & Mairal, ICLR 2022,
analyse bilevel algorithms whose inner and adjoint solvers are warm-started across outer steps.)

Each outer step s = 0, 1, …, ``steps`` − 1, from λ_0 = the run's first λ draw:

    ĝ_s = the estimator's estimate at λ_s with t inner steps and k solver steps, from
          w₀ = w_t of step s − 1 (``warm_start`` inner or inner+solver; else the problem's w₀)
          and v₀ = v_k of step s − 1 (inner+solver, AID estimators; else 0)
    λ_{s+1} = the optimizer's step on ĝ_s (``optimizer``: sgd, heavy-ball momentum
              m ← μ m + ĝ, λ ← λ − lr·m; or adam), then the problem's ``project`` (``project``,
              e.g. A onto the spectral ball on equilibrium_mnist), then the clamp onto the
              problem's box (``clamp``)

A warm inner start makes w₀ a constant of λ, so ITD differentiates through the t steps of the
current outer step only (as in practice; Ji et al. 2021's ITD-BiO). Estimators without a linear
solver (itd, itd_forward, itd_trunc, exact, jfb, reparam, precond with solve=direct) have no v₀:
``warm_start=inner+solver`` runs them as ``inner``, with a one-line note.

Logged to outer.csv, one row per λ_s, s = 0, …, steps (the last row: λ_steps, no estimate):
``outer_value`` E(w_t, λ_s) of the step's estimate; ``q_bound`` the problem's cheap upper bound
on q at λ_s (``contraction_bound``: ‖A‖₂ on equilibrium_mnist, NaN where none is known), every
step; every ``eval_every`` steps and at the last ``f`` = f(λ_s) = E(w*(λ_s), λ_s) and the error
of ĝ_s against the float64 reference ∇f(λ_s) (hgbench.core.reference) with q, and, for problems
that supply metrics (``trainable``: ``evaluate``), the loss and accuracy on their train,
validation and test splits of the model whose states are ``test_t`` steps of Φ from 0;
``time_s``: the cumulative wall time of the algorithm's work that produced λ_s (the estimates
and optimizer steps of steps 0, …, s − 1), ``ref_time_s`` the same for the evaluation
(reference and metrics), timed apart; ``n_phi``, ``n_vjp``, ``n_jvp``: the cumulative counts of
those estimates (hgbench.core.cost), and ``vjp_eq`` = n_vjp + n_jvp + n_phi, the
VJP-equivalents: each Φ evaluation, VJP and JVP through Φ counted as one (a VJP or JVP costs a
small constant times a Φ evaluation; E and its gradient, once per estimate for every estimator,
are not counted). ``problem_id`` (a hash of the problem's configuration, seed included) marks
the runs that minimize the same f. At the evaluated steps also ‖∇f(λ_s)‖ and the stationarity
π(λ_s) = ‖Π(λ_s − ∇f(λ_s)) − λ_s‖ (Π the projection and clamp). Every row carries the certified
optimum of its outer problem (``f_star`` and its facts; hgbench.core.optimum, computed before the
first step from the same λ₀ in float64, once per process and outer problem), against which the
summary (hgbench.analysis.outer_loop) measures suboptimality; without one (``outer.optimum_evals``
exhausted, a reference not certified) it makes no ε-claim.

Every reference is certified (hgbench.core.reference.certify); a step whose reference is not
gets an ``error`` row with the certificate's reason and no f, stationarity or error (as in error
mode), and the run goes on: the algorithm does not use the reference.

A non-finite hypergradient, outer value or λ, or a λ at which Φ or the reference cannot be
computed, ends the run with a ``diverged`` row (a flagged row, not a crash).

Checkpoints and resume. outer.csv and run.json are rewritten atomically at every evaluation. At
step 0, every ``checkpoint_every``-th step and the last, λ_s is appended to checkpoints.pt
(``{"steps": [...], "lams": (m, p) float64}``; ``problem.checkpoint=`` on equilibrium_mnist then
evaluates estimators at these λ in error mode), and the state at the start of that step (λ, the
optimizer's state, the warm starts w and v, rows, reference facts, saved λ, clocks and counts)
goes atomically to outer_state.pt. ``resume=true`` continues from it when run.json holds the
same configuration (RESUME_FREE keys aside; another one is refused in one line) and ends with
exactly the rows of an uninterrupted run (the measured times aside); a finished run is not
recomputed. With ``checkpoint_every=0`` the only states are those of step 0 and of the last, so
a resumed unfinished run starts over.

The equilibrium-model training of Grazzi et al. (ICML 2020, §5) is this loop on
equilibrium_mnist: heavy-ball SGD, A projected onto the spectral ball, warm_start=none, metrics
of the model with test_t = t (presets deq_*).
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from hgbench.analysis.outer_loop import COLUMNS, METRICS, OUTER_CSV
from hgbench.analysis.results import atomic
from hgbench.core.bound import estimate
from hgbench.core.cost import Meter, Tally
from hgbench.core.optimum import MAX_EVALS, TOL_REL, certified_optimum, stationarity
from hgbench.core.reference import certify, reference
from hgbench.problems.base import Problem
from hgbench.running.interrupt import interruptible
from hgbench.running.errors import UserError, reason_of
from hgbench.running.identity import run_id
from hgbench.running.plan import Plan
from hgbench.running.progress import progress_bar
from hgbench.running.storage import previous_info, relative, save, unreadable

STATE = "outer_state.pt"
CHECKPOINTS = "checkpoints.pt"
WARM_STARTS = ("none", "inner", "inner+solver")
OPTIMIZERS = ("sgd", "adam")
COUNTS = ("n_phi", "n_vjp", "n_jvp")


def check_problem(cfg: DictConfig, problem: Problem) -> None:
    """``outer.clamp=true`` needs a problem with a box."""
    if cfg.outer.clamp and problem.box() is None:
        raise UserError(f"outer.clamp=true: problem {problem.name!r} has no box for λ to be clamped to; use outer.clamp=false")


def finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(x).all()) for x in tensors)


def save_torch(obj, path: Path) -> None:
    """torch.save through an atomic rename (hgbench.analysis.results.atomic)."""
    with atomic(path) as tmp:
        torch.save(obj, tmp)


def resumed_state(plan: Plan, out_dir: Path) -> dict | None:
    """For resume=true: the state that out_dir holds for this configuration (its outer.csv and
    run.json: hgbench.running.storage.previous_info), else None."""
    if previous_info(plan, out_dir, OUTER_CSV) is None or not (out_dir / STATE).is_file():
        return None
    try:
        return torch.load(out_dir / STATE, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        raise unreadable(out_dir, err) from err


def feasible_map(problem: Problem, opts: dict, dtype: torch.dtype, device: torch.device):
    """Π: λ ↦ the problem's ``project`` (``outer.project``), then the clamp onto its box
    (``outer.clamp``), on tensors of ``dtype`` on ``device``: the feasible set of the run."""
    box = problem.box() if opts["clamp"] else None
    box = None if box is None else tuple(b.to(dtype).to(device) for b in box)

    def feasible(lam: torch.Tensor) -> torch.Tensor:
        lam = problem.project(lam) if opts["project"] else lam
        return lam if box is None else torch.clamp(lam, *box)

    return feasible


# The certified optima computed in this process, by outer problem: the jobs of a sweep (Hydra's
# default launcher runs them in one process) that minimize the same f from the same λ₀ share one solve.
_OPTIMA: dict[tuple, dict] = {}


def optimum(plan: Plan, problem_id: str, lam0: torch.Tensor, project) -> dict:
    """hgbench.core.optimum.certified_optimum of the run's outer problem (configuration and
    seed: ``problem_id``; the reference method; the feasible set) from λ₀ (float64), computed
    once per process and printed in one line."""
    opts = plan.config["outer"]
    tol, evals = opts.get("optimum_tol", TOL_REL), opts.get("optimum_evals", MAX_EVALS)
    key = (problem_id, plan.reference, opts["project"], opts["clamp"], tol, evals, tuple(lam0.tolist()))
    if key not in _OPTIMA:
        clock = time.perf_counter()
        found = certified_optimum(plan.problem, lam0, project, plan.reference, tol, evals)
        _OPTIMA[key] = {**found, "time_s": time.perf_counter() - clock}
        found = _OPTIMA[key]
        if found["certified"]:
            print(
                f"hgbench: certified optimum of {plan.problem.name}: f* = {found['f_star']:.10g}, stationarity "
                f"{found['stationarity']:.3g} ≤ {found['tol']:.3g} ({tol:g} × λ₀'s), {found['evals']} references, {found['time_s']:.1f} s"
            )
        else:
            print(f"hgbench: {plan.problem.name}: {found['reason']}; no ε-claim against f*")
    return _OPTIMA[key]


def _optimizer(opts: dict, lam: torch.Tensor) -> torch.optim.Optimizer:
    if opts["optimizer"] == "sgd":
        return torch.optim.SGD([lam], lr=opts["lr"], momentum=opts["momentum"])
    return torch.optim.Adam([lam], lr=opts["lr"])


def run(plan: Plan, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """One outer-loop run (or the rest of one, see the module docstring); writes outer.csv,
    run.json, checkpoints.pt and outer_state.pt into out_dir and returns the rows. Ctrl-C or
    SIGTERM raises hgbench.running.interrupt.Interrupted with the number of steps logged (the
    files are rewritten only whole, with both signals held meanwhile)."""
    logged: list = []
    with interruptible(lambda: len(logged[0]) if logged else 0, plan.config["outer"]["steps"] + 1, out_dir, "outer step") as critical:
        return _run(plan, out_dir, progress, critical, logged)


def _run(plan: Plan, out_dir: Path, progress: bool, critical, logged: list) -> pd.DataFrame:
    """``run``'s work; ``critical`` holds the signals during each rewrite, ``logged`` is made the list of rows."""
    opts = plan.config["outer"]
    t, k, steps, every = opts["t"], opts["k"], opts["steps"], opts["checkpoint_every"]
    warm_inner = opts["warm_start"] != "none"
    warm_solver = opts["warm_start"] == "inner+solver" and plan.estimator.solver_start
    if opts["warm_start"] == "inner+solver" and not warm_solver:
        print(f"hgbench: note: {plan.estimator.name} has no linear solver to warm-start; outer.warm_start=inner+solver runs as inner")
    work = plan.problem.to(plan.dtype, plan.device)
    feasible = feasible_map(work, opts, plan.dtype, plan.device)
    feasible64 = feasible_map(plan.problem, opts, torch.float64, torch.device("cpu"))  # the reference's Π
    state = resumed_state(plan, out_dir)
    resumed_at = None if state is None else state["step"]
    if state is None:
        state = {
            "step": 0,
            "lam": feasible(plan.lams[0].to(plan.dtype).to(plan.device)),
            "optimizer": None,
            "w": None,
            "v": None,
            "rows": [],
            "facts": [],
            "saved_steps": [],
            "saved_lams": [],
            "time_s": 0.0,
            "ref_time_s": 0.0,
            "counts": [0, 0, 0],
            "done": False,
        }
    lam = state["lam"].to(plan.device).clone()
    optimizer = _optimizer(opts, lam)
    if state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    w_prev, v_prev, rows, facts, counts = state["w"], state["v"], state["rows"], state["facts"], list(state["counts"])
    logged[:] = [rows]  # run's count of the steps logged
    saved_steps, saved = state.get("saved_steps", []), state.get("saved_lams", [])  # absent from states written before checkpoints.pt
    clock, evaluation = Meter(Tally(), plan.device), Meter(Tally(), plan.device)

    def checkpoint(step: int, done: bool) -> None:
        with critical():
            _checkpoint(step, done)

    def _checkpoint(step: int, done: bool) -> None:
        save_torch({"steps": saved_steps, "lams": torch.stack(saved)}, out_dir / CHECKPOINTS)
        save_torch(
            {
                "step": step,
                "lam": lam,
                "optimizer": optimizer.state_dict(),
                "w": w_prev,
                "v": v_prev,
                "rows": rows,
                "facts": facts,
                "saved_steps": saved_steps,
                "saved_lams": saved,
                "time_s": state["time_s"] + clock.cost.time_s,
                "ref_time_s": state["ref_time_s"] + evaluation.cost.time_s,
                "counts": counts,
                "done": done,
                "optimum": best,
            },
            out_dir / STATE,
        )
        save(plan, rows, COLUMNS, OUTER_CSV, facts, out_dir)

    if state["done"]:
        return save(plan, rows, COLUMNS, OUTER_CSV, facts, out_dir)
    problem_id = run_id({"problem": plan.config["problem"]})
    if state.get("optimum") is None:  # absent from states written before the certified optimum
        state["optimum"] = optimum(plan, problem_id, plan.lams[0].to(torch.float64), feasible64)
    best = state["optimum"]
    base = {
        "problem": plan.problem.name,
        "estimator": plan.estimator.name,
        "role": plan.estimator.role,
        "seed": plan.seed,
        "warm_start": opts["warm_start"],
        "optimizer": opts["optimizer"],
        "lr": opts["lr"],
        "momentum": opts["momentum"],
        "t": t,
        "k": k,
        "dtype": str(plan.dtype).removeprefix("torch."),
        "device": str(plan.device),
        "f_star": best["f_star"],
        "f_star_stationarity": best["stationarity"],
        "f_star_tol": best["tol"],
        "f_star_evals": best["evals"],
        "f_star_reason": best["reason"],
        "problem_id": problem_id,
        **plan.identity,
    }
    # One untimed estimate: one-time framework setup must not land in the first step's time.
    list(estimate(plan.estimator, work, lam, [(1, 1)]))
    for step in progress_bar(plan, range(state["step"], steps + 1), steps + 1, "step", progress, "outer "):
        if (step == 0 or step == steps or (every and step % every == 0)) and step != resumed_at:
            saved_steps.append(step)
            saved.append(lam.detach().to("cpu", torch.float64))
            checkpoint(step, done=False)
        row = {
            **base,
            "step": step,
            "lam_norm": torch.linalg.vector_norm(lam).item(),
            "status": "ok",
            "reason": "",
            "time_s": state["time_s"] + clock.cost.time_s,
            "ref_time_s": state["ref_time_s"] + evaluation.cost.time_s,
            **dict(zip(COUNTS, counts)),
            "vjp_eq": sum(counts),
        }
        evaluate = step % opts["eval_every"] == 0 or step == steps
        certified = False
        try:
            row["q_bound"] = work.contraction_bound(lam)
            if evaluate:
                with evaluation:
                    lam64 = lam.detach().to("cpu", torch.float64)
                    ref = reference(plan.problem, lam64, plan.reference)
                    certificate = certify(ref)
                    certified = certificate["certified"] and finite(ref.grad, ref.w_star)
                    if certified:  # else f, ∇f and the errors are not known: a flagged row, as in error mode
                        row.update(
                            f=plan.problem.outer(ref.w_star, lam64).item(),
                            q=ref.q,
                            grad_norm=torch.linalg.vector_norm(ref.grad).item(),
                            stationarity=stationarity(lam64, ref.grad, feasible64),
                        )
                    else:
                        row.update(
                            status="error",
                            q=ref.q,
                            reason=certificate.get("reason", "reference not certified: the float64 reference is NaN or inf"),
                        )
                    if plan.problem.trainable:
                        scores = work.evaluate(lam, opts["test_t"])
                        row.update({key: scores[key] for key in METRICS})
                facts.append({"step": step, **ref.summary(), "certificate": certificate})
            if step == steps:
                rows.append(row)
                break
            with clock:
                (est,) = estimate(
                    plan.estimator, work, lam, [(t, k)], w0=w_prev if warm_inner else None, v0=v_prev if warm_solver else None
                )
            value = work.outer(est.w, lam)  # E(w_t, λ_s): logged, not part of the algorithm's time
            ok = finite(est.grad, value)
            if ok:
                with clock, torch.no_grad():
                    lam.grad = est.grad.detach()
                    optimizer.step()
                    ok = finite(lam)  # an overflowing step is divergence too (and the projection's SVD rejects inf)
                    if ok:
                        lam.copy_(feasible(lam))
        except (RuntimeError, ValueError) as err:  # e.g. λ so far out that Φ's step size or w* cannot be computed,
            row.update(status="diverged", reason=reason_of(err))  # or a step that overflows the dtype
            rows.append(row)
            print(f"hgbench: {plan.estimator.name} diverged at outer step {step} ({row['reason']})")
            break
        counts = [c + getattr(est.cost, name) for c, name in zip(counts, COUNTS)]
        row["outer_value"] = value.item()
        if certified:
            grad = est.grad.detach().to("cpu", torch.float64)
            err = torch.linalg.vector_norm(grad - ref.grad).item()
            row.update(err_abs=err, err_rel=relative(err, torch.linalg.vector_norm(ref.grad).item()))
        rows.append(row)
        if not ok:
            row.update(status="diverged", reason="non-finite hypergradient, outer value or λ")
            print(f"hgbench: {plan.estimator.name} diverged at outer step {step} (non-finite hypergradient, outer value or λ)")
            break
        w_prev = est.w.detach()
        v_prev = None if est.v is None else est.v.detach()
        if evaluate:
            with critical():
                save(plan, rows, COLUMNS, OUTER_CSV, facts, out_dir)
    checkpoint(step, done=True)
    return pd.DataFrame(rows, columns=COLUMNS)
