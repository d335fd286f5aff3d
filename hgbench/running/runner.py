"""The error mode (hgbench.running.modes): per λ draw of a prepared plan (hgbench.running.prepare),
compute the float64 reference, run the estimator over the grid, and write metrics.csv and
run.json.

Reliability contract: a λ draw whose estimate is NaN/inf gives rows with status ``diverged`` and
one whose reference is not certified (hgbench.core.reference.certify) or whose reference or
estimator raises gives rows with status ``error`` (the reason in ``reason``), and the run goes
on; each λ draw is appended to metrics.csv and the journal as it finishes
(hgbench.running.journal), so a run killed at any moment leaves only complete draws, and
``resume=true`` computes only the draws that are missing (or ended in ``error``) and never
deletes finished ones.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from hgbench.analysis.results import COLUMNS, METRICS, frame
from hgbench.core.bound import estimate
from hgbench.core.reference import certify, reference
from hgbench.problems.base import Problem
from hgbench.running.batch import estimate_batched
from hgbench.running.errors import UserError, reason_of
from hgbench.running.interrupt import interruptible
from hgbench.running.journal import Journal, read_previous
from hgbench.running.levels import brackets, estimates as level_estimates
from hgbench.running.plan import Plan
from hgbench.running.progress import progress_bar
from hgbench.running.storage import previous_info, relative, run_info, unreadable


class UncertifiedReference(ArithmeticError):
    """A draw's reference fails its certificate (hgbench.core.reference.certify): its rows are ``error``."""


def _norm(x: torch.Tensor) -> float:
    return torch.linalg.vector_norm(x).item()


def _run_facts(plan: Plan) -> dict:
    """The run's facts every error-mode row repeats: its identity, the estimator's ``role`` and
    the problem's ``min_min`` (claims select rows by them), and ``time_kind`` (``_time_kind``)
    of a row whose products ran matrix-free."""
    return {"role": plan.estimator.role, "min_min": plan.problem.min_min, "time_kind": _time_kind(plan, False), **plan.identity}


def _time_kind(plan: Plan, dense: bool) -> str:
    """What a row's time_s measures: ``per_point`` (one grid point computed alone) or
    ``batch_mean`` (batch_lambdas: the batch's time divided by the number of draws), with
    ``_dense`` when the products through Φ ran on a dense J built once per linearization
    (hgbench.core.linearization; the counts are still the matrix-free products', so the time of
    a matrix-free user is the plain kind's)."""
    return ("batch_mean" if plan.batched else "per_point") + ("_dense" if dense else "")


def _key(plan: Plan, lam_id: int, t: int | None, k: int | None, level: float | None = None) -> dict:
    """What identifies an error-mode row, with the run's facts (``level``: grid=levels only)."""
    return {
        "problem": plan.problem.name,
        "estimator": plan.estimator.name,
        "grid": plan.grid,
        "seed": plan.seed,
        "lam_id": lam_id,
        "t": t,
        "k": k,
        "level": level,
        "dtype": str(plan.dtype).removeprefix("torch."),
        "device": str(plan.device),
        **_run_facts(plan),
    }


def _estimate_row(plan: Plan, lam_id: int, est, ref, level: float | None = None) -> dict:
    """One grid point's row; NaN/inf (or an error norm that overflows) makes it ``diverged``.
    ``level`` (grid=levels): the absolute inner error the estimate is interpolated to; the row's
    inner_err is then level/‖w*‖."""
    grad = est.grad.detach().to("cpu", torch.float64)
    w = est.w.detach().to("cpu", torch.float64)
    err = _norm(grad - ref.grad)
    if not torch.isfinite(grad).all():
        reason = "the estimate is NaN or inf"
    elif not torch.isfinite(w).all():
        reason = "the inner iterate w_t is NaN or inf"
    elif not math.isfinite(err):
        reason = "the error norm overflows"
    else:
        reason = ""
    inner = _norm(w - ref.w_star) if level is None else level
    cost = asdict(est.cost)
    kind = _time_kind(plan, cost.pop("dense"))
    return {
        **_key(plan, lam_id, est.t, est.k, level),
        "err_abs": err,
        "err_rel": relative(err, _norm(ref.grad)),
        "inner_err": relative(inner, _norm(ref.w_star)),
        **cost,
        "time_kind": kind,
        "q": ref.q,
        "kappa": ref.kappa,
        "status": "diverged" if reason else "ok",
        "reason": reason,
    }


def _previous(plan: Plan, out_dir: Path) -> tuple[dict[int, list[dict]], dict[int, dict]]:
    """For resume=true: the rows and reference facts of the λ draws that out_dir already holds
    complete and valid (same configuration, same λ value, no ``error`` row; hgbench.running.journal
    reads what a killed run left). Draws beyond this run's n_lambdas are kept too (a smaller
    n_lambdas never deletes finished draws). Kept rows take this run's facts (its overrides may
    differ in RESUME_FREE keys; an older file may lack columns), except their own time_kind,
    which says which path measured their time_s."""
    info = previous_info(plan, out_dir, METRICS)
    if info is None:
        return {}, {}
    try:
        old, found = read_previous(out_dir, METRICS, info)
    except (ValueError, OSError) as err:
        raise unreadable(out_dir, err) from err
    lams = plan.lams
    if found and max(found) >= len(lams):  # the same stream, drawn further: its prefix is plan.lams
        lams = plan.problem.sample_lambdas(max(found) + 1, torch.Generator().manual_seed(plan.seed))
    rows, facts = {}, {}
    for i, fact in found.items():
        part = old[old["lam_id"] == i]
        valid = 0 <= i < len(lams) and "error" not in fact and fact["lam"] == lams[i].tolist()
        if valid and len(part) and (part["status"] != "error").all():
            rows[i], facts[i] = [_kept(row, plan) for row in part.to_dict("records")], fact
    return rows, facts


def _kept(row: dict, plan: Plan) -> dict:
    """A row kept by resume, with this run's facts and its own time_kind where it has one."""
    kind = row.get("time_kind")
    return {**row, **_run_facts(plan), **({"time_kind": kind} if isinstance(kind, str) and kind else {})}


def execute(plan: Plan, out_dir: Path, progress: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """Run the plan; append each λ draw's rows to out_dir/metrics.csv and its reference facts to
    the journal as it finishes, merged into run.json at the end (hgbench.running.journal: constant
    cost per draw; a killed run leaves only complete draws). With ``plan.resume``, draws already
    in out_dir are kept and only the others computed. A draw whose reference is not certified
    (hgbench.core.reference.certify) or whose reference or estimator raises gets ``error`` rows
    for the grid points it did not reach; the run goes on. Ctrl-C or SIGTERM raises
    hgbench.running.interrupt.Interrupted with the number of complete draws. Returns the rows
    and the per-draw reference facts."""
    rows, facts = _previous(plan, out_dir)
    todo = [i for i in range(len(plan.lams)) if i not in facts]
    work = plan.problem.to(plan.dtype, plan.device)
    lams = plan.lams.to(plan.dtype).to(plan.device)
    journal = Journal(out_dir, METRICS, COLUMNS, functools.partial(run_info, plan))
    with interruptible(lambda: sum(i in facts for i in range(len(plan.lams))), len(plan.lams), out_dir) as critical:
        has_k = _warm_up(plan, work, lams) if todo else True  # before anything is written
        try:
            with critical():
                journal.start([row for i in sorted(rows) for row in rows[i]], [facts[i] for i in sorted(facts)])
        except OSError as err:
            raise UserError(f"cannot write the results in {out_dir} ({reason_of(err)})") from err
        _compute(plan, work, lams, todo, has_k, progress, lambda draw, fact: _append(journal, critical, rows, facts, draw, fact))
        ordered = [facts[i] for i in sorted(facts)]
        with critical():
            journal.finish(ordered)
    return frame([row for i in sorted(rows) for row in rows[i]], COLUMNS), ordered


def _append(journal: Journal, critical, rows: dict, facts: dict, draw: list[dict], fact: dict) -> None:
    """One finished draw: to the journal and to ``rows``/``facts``, with signals held meanwhile."""
    with critical():
        journal.append(draw, fact)
        rows[fact["lam_id"]], facts[fact["lam_id"]] = draw, fact


def _warm_up(plan: Plan, work: Problem, lams: torch.Tensor) -> bool:
    """One untimed estimate first: one-time framework setup (lazy imports, forward-AD
    decompositions, ~1 s for jvp) must not land in the first row's time. An estimator that fails
    there is refused in one line. Returns whether the estimator has a k (ITD yields k = None
    once per t), for ``error`` rows."""
    try:
        if plan.batched:
            warm = estimate_batched(plan.estimator, work, lams[:1], [(1, 1)], plan.dense)[0]
        else:
            warm = list(estimate(plan.estimator, work, lams[0], [(1, 1)], dense=plan.dense))
    except Exception as err:  # nothing can run: refuse in one line, before the draws
        raise UserError(
            f"estimator {plan.estimator.name!r} fails on problem {plan.problem.name!r} at the first λ draw "
            f"with t = k = 1 ({reason_of(err)}); check the problem's settings"
        ) from err
    return warm[0].k is not None


def _compute(plan: Plan, work: Problem, lams: torch.Tensor, todo: list[int], has_k: bool, progress: bool, done) -> None:
    """execute's work: the draws ``todo``, each passed to ``done(rows, fact)`` when finished."""
    if not todo:
        return
    keys = plan.pairs if has_k else [(t, None) for t in sorted({t for t, _ in plan.pairs})]
    keys = [(t, k, None) for t, k in keys]
    if plan.levels is not None:
        keys = [(None, plan.levels.k if has_k else None, float(level)) for level in plan.levels.values()]
    batch = {}
    if plan.batched:
        try:
            batch = dict(zip(todo, estimate_batched(plan.estimator, work, lams[todo], plan.pairs, plan.dense)))
        except Exception as err:  # noqa: BLE001 — becomes every draw's error rows
            batch = dict.fromkeys(todo, err)
    warned = False
    bar = progress_bar(plan, todo, len(plan.lams), "λ", progress)
    for lam_id in bar:
        lam, draw, q, kappa = plan.lams[lam_id], [], None, None
        fact = {"lam_id": lam_id, "lam": lam.tolist()}
        try:
            problem, own = plan.problem.draw(lam_id), work.draw(lam_id)  # the draw's own terms, if any
            ref = reference(problem, lam, plan.reference)
            q, kappa = ref.q, ref.kappa
            fact.update(ref.summary(), certificate=certify(ref))
            if not (torch.isfinite(ref.grad).all() and torch.isfinite(ref.w_star).all()):
                raise FloatingPointError("the float64 reference is NaN or inf")
            if q >= 1 and not warned:
                warned = True
                tqdm.write(  # above the progress bar, not through it
                    f"hgbench: warning: Φ of {plan.problem.name} is not a contraction at λ draw {lam_id}: "
                    f"q = ‖∂₁Φ(w*, λ)‖₂ = {q:.6g} >= 1; iterations may diverge (a row whose estimate is NaN or inf gets "
                    "status diverged; the others stay ok)",
                    file=sys.stderr,
                )
            if not fact["certificate"]["certified"]:
                raise UncertifiedReference(fact["certificate"]["reason"])
            if plan.levels is not None:
                found = brackets(own, lams[lam_id], ref.w_star, plan.levels)
                for bracket, est in level_estimates(plan.estimator, own, lams[lam_id], found, plan.levels):
                    if est is None:
                        draw.append(
                            {
                                **_key(plan, lam_id, None, keys[0][1], bracket.level),
                                "q": q,
                                "kappa": kappa,
                                "status": "error",
                                "reason": bracket.reason,
                            }
                        )
                    else:
                        draw.append(_estimate_row(plan, lam_id, est, ref, bracket.level))
            else:
                estimates = batch.get(lam_id) if plan.batched else estimate(plan.estimator, own, lams[lam_id], plan.pairs, dense=plan.dense)
                if isinstance(estimates, Exception):
                    raise estimates
                for est in estimates:
                    draw.append(_estimate_row(plan, lam_id, est, ref))
        except Exception as err:  # noqa: BLE001 — a failing draw is data (status error), not the end of the run
            reached = {(row["t"], row["k"], row["level"]) for row in draw}
            if plan.levels is not None:
                reached = {(None, k, level) for _, k, level in reached}
            reason = str(err) if isinstance(err, UncertifiedReference) else reason_of(err)
            draw += [
                {**_key(plan, lam_id, t, k, level), "q": q, "kappa": kappa, "status": "error", "reason": reason}
                for t, k, level in keys
                if (t, k, level) not in reached
            ]
            fact["error"] = reason
        done(draw, fact)
