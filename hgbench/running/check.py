"""``hgbench check`` and ``hgbench.check``: the user's own hypergradient against the certified
float64 reference of a problem.

    report = hgbench.check(my_hypergradient, "ridge")                   # a built-in problem
    report = hgbench.check(my_hypergradient, inner_loss=ell, outer=E, w0=w0, lam=lam)
    print(report); assert report.ok

What is reported (``Report``):

- the reference ∇f(λ) (hgbench.core.reference: implicit function theorem, dense LU or
  matrix-free Krylov in float64) and its certificate (``certify``);
- an independent cross-check of the reference: the directional derivative of the float64
  f(λ) = E(w*(λ), λ) along ``directions`` seeded random unit vectors u, by central differences
  with Richardson extrapolation, R = (4D(h) − D(2h))/3, D(h) = (f(λ + hu) − f(λ − hu))/(2h),
  h = ε^(1/5)·max(1, ‖λ‖∞) (ε = float64's machine epsilon; the error of R is O(h⁴) from
  truncation plus O(ε/h) from round-off). It must agree with ∇f_ref·u within
  FD_RTOL·‖∇f_ref‖ + FD_FLOOR·ε·S/h, S = |f| + κ·‖∇₁E(w*)‖·‖w*‖ (the size of f and of the
  error a κ-conditioned inner solve leaves in it). It shares w*(λ) with the reference, not the
  adjoint solve, nor the ∂₂Φ product;
- the user's error ‖ĝ − ∇f_ref‖ (absolute, relative, and per block of a structured λ);
- the wall time of the user's callable (median of ``repeat`` calls after the first) and its
  peak memory (one more call: on CUDA the peak of torch.cuda.max_memory_allocated above the
  level before the call; on the CPU the peak of the Python heap traced by tracemalloc and of
  torch's CPU tensor allocations seen by torch.profiler's memory events);
- a verdict: ``ok`` when the error is within the tolerance even allowing for the reference's
  own error bound, ``wrong`` when it exceeds it by more than that bound, ``undecided`` when the
  reference is not certified, the cross-check disagrees, or the bound straddles the tolerance.
  Never ``ok`` against an uncertified reference.

The default tolerance (``default_rtol``) on the relative error is max(√ε, 10·κ·ε), ε the machine
epsilon of the user's dtype (the larger of λ's as passed and the result's) and κ = cond(I − ∂₁Φᵀ)
at the solution (where a matrix-free reference has no κ, (1 + q)/(1 − q) with its q): √ε, half
the digits, is the usual floor of a gradient check; a backward-stable solve of a κ-conditioned
system in precision ε can be off by about κ·ε relatively, so a correct implementation is never
flagged for its conditioning (10: slack for the inner solve and the products around the
adjoint solve). float64: 1.5e-8 for κ ≤ 6.7e6; float32: 3.5e-4 for κ ≤ 290, 10·κ·1.2e-7 above.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import re
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from hgbench.analysis.results import strict_json
from hgbench.core.cost import bytes_text
from hgbench.core.reference import certify, choose, matrix_free_reference, reference
from hgbench.problems.base import Problem
from hgbench.problems.plain import PlainProblem
from hgbench.problems.structured import StructuredProblem
from hgbench.running.errors import UserError, reason_of
from hgbench.running.prepare import build, module_of_file

# The key of certify's bound on ‖∇f_ref − ∇f‖ (absolute, float64): the one place that names it.
REFERENCE_BOUND = "grad_error_bound"
FD_RTOL = 1e-6  # the cross-check's relative tolerance (of ‖∇f_ref‖)
FD_FLOOR = 20.0  # the cross-check's round-off floor, in units of ε·S/h
EXIT = {"ok": 0, "wrong": 1, "undecided": 3}  # `hgbench check`'s exit status per verdict (2: bad input)


def default_rtol(dtype: torch.dtype, kappa: float) -> float:
    """max(√ε, 10·κ·ε), ε = dtype's machine epsilon (module docstring); κ NaN/inf counts as 1."""
    eps = torch.finfo(dtype).eps
    kappa = kappa if math.isfinite(kappa) else 1.0
    return max(math.sqrt(eps), 10.0 * kappa * eps)


def reference_bound(cert: dict) -> float | None:
    """certify's bound on ‖∇f_ref − ∇f‖ (absolute), None where it gives none."""
    value = cert.get(REFERENCE_BOUND)
    return float(value) if value is not None else None


def kappa_of(ref) -> float:
    """κ = cond(I − ∂₁Φᵀ) of the reference; a matrix-free one's (1 + q)/(1 − q), q its q_used."""
    if math.isfinite(ref.kappa):
        return ref.kappa
    q = ref.matrix_free["q_used"] if ref.matrix_free else ref.q
    return (1 + q) / (1 - q) if q < 1 else math.inf


@dataclass
class Report:
    """What ``check`` found; ``str(report)`` is the printed report, ``verdict`` one of ok, wrong,
    undecided, ``exit_code`` that of `hgbench check` (0, 1, 3)."""

    problem: str
    lam_dim: int
    method: str
    certificate: dict
    reference_norm: float
    cross_check: list[dict]
    cross_check_ok: bool
    err_abs: float
    err_rel: float
    blocks: dict[str, dict]
    dtype: str
    rtol: float
    rtol_rule: str
    time_s: float
    first_call_s: float
    peak_bytes: dict[str, int]
    verdict: str
    reason: str
    kappa: float
    q: float
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    @property
    def exit_code(self) -> int:
        return EXIT[self.verdict]

    def __str__(self) -> str:
        cert = self.certificate
        lines = [f"hgbench check: {self.problem} (dim λ = {self.lam_dim}), your hypergradient in {self.dtype}"]
        state = "certified" if cert.get("certified") else cert.get("reason", "not certified")
        bound = reference_bound(cert)
        lines.append(
            f"  reference   {self.method}, float64: ‖∇f‖ = {self.reference_norm:.6g}; q = {self.q:.4g}, κ = {self.kappa:.4g}; {state}"
        )
        lines.append(
            f"              fixed-point residual (rel) {cert.get('fixed_point_rel', math.nan):.2g}, adjoint residual (rel) "
            f"{cert.get('linear_rel', math.nan):.2g}, bound on ‖∇f_ref − ∇f‖: " + (f"{bound:.2g}" if bound is not None else "none given")
        )
        worst = max((c["diff"] / c["allowed"] for c in self.cross_check), default=math.nan)
        lines.append(
            f"  cross-check central differences of f along {len(self.cross_check)} random directions: "
            f"{'agree' if self.cross_check_ok else 'DISAGREE'} (worst |R − ∇f·u| / allowed = {worst:.2g})"
        )
        for c in self.cross_check:
            lines.append(
                f"              ∇f·u = {c['grad_u']: .10e}  R = {c['fd']: .10e}  |diff| = {c['diff']:.2g} (allowed {c['allowed']:.2g})"
            )
        lines.append(
            f"  your error  ‖ĝ − ∇f‖ = {self.err_abs:.3g}, relative {self.err_rel:.3g}; tolerance {self.rtol:.3g} relative ({self.rtol_rule})"
        )
        for name, block in self.blocks.items():
            lines.append(
                f"              block {name}: abs {block['err_abs']:.3g}, rel {block['err_rel']:.3g} (‖∇f_block‖ = {block['norm']:.3g})"
            )
        memory = ", ".join(f"{kind} {bytes_text(size)}" for kind, size in self.peak_bytes.items())
        lines.append(
            f"  cost        {self.time_s * 1e3:.3g} ms per call (median; first call {self.first_call_s * 1e3:.3g} ms); peak memory: {memory}"
        )
        lines.append(f"  verdict     {self.verdict.upper()}: {self.reason}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The report's fields and its exit code (``--json``; non-finite numbers become null there)."""
        return {**vars(self), "exit_code": self.exit_code}


# --- the problem ------------------------------------------------------------------------------
def build_problem(
    problem: Any, seed: int, config_dir: str | Path | None = None, plain: dict | None = None
) -> tuple[Problem, torch.Tensor, str]:
    """(the float64 problem, λ (flat, float64), its label) from what a user has: a built-in
    problem's name or (name, settings) (composed as `hgbench run problem=NAME problem.KEY=V`), a
    Problem subclass or (class, {arguments}), a Problem instance, or the plain form (``plain``:
    the keyword arguments of PlainProblem). λ: the problem's first draw for ``seed`` (as run's
    lam_id 0), or the plain form's own λ."""
    from hgbench.running import api

    if plain:
        if problem is not None:
            raise UserError("give either a problem or the plain form (inner_loss= or phi=, outer=, w0=, lam=), not both")
        try:
            built = PlainProblem(**plain)
        except (TypeError, ValueError) as err:
            raise UserError(f"the plain problem: {err}") from err
        return built, built.lam.clone(), "your problem (" + ("ℓ" if built.has_inner_loss else "Φ") + ", E, w₀, λ)"
    if isinstance(problem, Problem):
        built, label = problem, f"{type(problem).__name__} {problem.name!r}"
    else:
        own = None
        if isinstance(problem, type) or (isinstance(problem, tuple) and problem and isinstance(problem[0], type)):
            own, chosen = api._own_problem(problem)
        else:
            chosen = api._choice("problem", problem)
        overrides = [*chosen, f"seed={int(seed)}"]
        cfg = api._compose(overrides[len(chosen) :] if own is not None else overrides, api._search_path(config_dir), own)
        built = build(cfg.problem, "problem")
        label = " ".join(chosen)
    lam = built.sample_lambdas(1, torch.Generator().manual_seed(int(seed)))[0]
    return built.draw(0), lam, label


def _caller(hypergradient: Callable) -> Callable:
    """The user's callable as f(λ, problem): it takes λ alone, or λ and the problem."""
    try:
        params = [
            p
            for p in inspect.signature(hypergradient).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = [None]
    if len(params) >= 2:
        return hypergradient
    return lambda lam, problem: hypergradient(lam)


def _user_lam(problem: Problem, lam: torch.Tensor):
    """λ as the user's callable takes it: a dict for a structured problem (a tensor for a plain
    problem given one), else the flat vector."""
    if isinstance(problem, PlainProblem):
        return problem.user_lam(lam)
    if isinstance(problem, StructuredProblem):
        return problem.lam_tree(lam)
    return lam


def _flat_result(problem: Problem, value, lam64: torch.Tensor) -> tuple[torch.Tensor, torch.dtype]:
    """The user's result as a flat float64 CPU vector and its dtype; a wrong type or shape is a
    one-line ValueError."""
    if isinstance(value, dict) and isinstance(problem, StructuredProblem):
        try:
            flat = problem.lam_ravel.flat({k: torch.as_tensor(v) for k, v in value.items()})
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"the result's blocks do not match λ's: {err}") from err
    elif isinstance(value, torch.Tensor):
        if value.numel() != lam64.numel():
            raise ValueError(f"the result has shape {tuple(value.shape)}, λ has {lam64.numel()} entries")
        flat = value.reshape(-1)
    else:
        raise ValueError(
            f"the result is a {type(value).__name__}; return a tensor shaped like λ"
            + (" or a dict of its blocks" if isinstance(problem, StructuredProblem) else "")
        )
    if not flat.is_floating_point():
        raise ValueError(f"the result has dtype {flat.dtype}; a hypergradient is floating point")
    return flat.detach().to("cpu", torch.float64), flat.dtype


# --- the cross-check --------------------------------------------------------------------------
def cross_check(problem: Problem, lam: torch.Tensor, ref, method: str, directions: int = 3, seed: int = 0) -> list[dict]:
    """The reference's ∇f·u against central differences of f along ``directions`` random unit
    vectors (module docstring: Richardson-extrapolated, step, tolerance). f(λ) = E(w*(λ), λ) with
    w*(λ) from the problem's own inner solve (dense reference) or the matrix-free Newton–Krylov
    solve (matrix-free reference), in float64; the problem's Newton solve, where it takes a
    ``start``, starts from the reference's w*(λ), h away (it stops at round-off either way)."""

    warm = "start" in inspect.signature(problem.solve_inner).parameters  # Newton from w*(λ): a few steps, not dozens

    def f(x: torch.Tensor) -> float:
        if method != "dense":
            w = matrix_free_reference(problem, x).w_star
        else:
            w = problem.solve_inner(x, start=ref.w_star) if warm else problem.solve_inner(x)
        return problem.outer(w, x).item()

    eps = torch.finfo(torch.float64).eps
    h = eps**0.2 * max(1.0, lam.abs().max().item())
    f0 = f(lam)
    kappa = kappa_of(ref)
    scale = abs(f0) + (kappa if math.isfinite(kappa) else 1.0) * ref.rhs_norm * torch.linalg.vector_norm(ref.w_star).item()
    gnorm = torch.linalg.vector_norm(ref.grad).item()
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(directions):
        u = torch.randn(lam.numel(), generator=gen, dtype=torch.float64)
        u = u / torch.linalg.vector_norm(u)
        d1 = (f(lam + h * u) - f(lam - h * u)) / (2 * h)
        d2 = (f(lam + 2 * h * u) - f(lam - 2 * h * u)) / (4 * h)
        fd = (4 * d1 - d2) / 3
        grad_u = (ref.grad @ u).item()
        allowed = FD_RTOL * gnorm + FD_FLOOR * eps * scale / h
        out.append({"grad_u": grad_u, "fd": fd, "diff": abs(fd - grad_u), "allowed": allowed, "h": h, "fd_error_estimate": abs(fd - d1)})
    return out


# --- the user's callable's cost ---------------------------------------------------------------
def _peak_memory(call: Callable, device: torch.device) -> dict[str, int]:
    """Peak bytes of a call above the level before it. CUDA: the allocator's peak
    (torch.cuda.max_memory_allocated). CPU: the peak of the Python heap (tracemalloc, which does
    not see tensors) and of torch's CPU tensors (torch.profiler's allocation and free events of
    the CPU allocator, summed in time order). The profiler's native start/stop lines
    on stderr are discarded (stderr is closed for its call). Two calls on the CPU: one traced by
    each, as the profiler's own Python objects would count in the heap's peak."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        call()
        torch.cuda.synchronize(device)
        return {"cuda": torch.cuda.max_memory_allocated(device) - base}
    from torch.profiler import ProfilerActivity, profile

    tracemalloc.start()
    try:
        call()
        python = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                call()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    # The raw memory events (bytes, + allocated, − freed); prof.events() parses every operator (seconds).
    memory = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    level = peak = 0
    for _, size in memory:
        level += size
        peak = max(peak, level)
    return {"tensors (torch.profiler)": peak, "python heap (tracemalloc)": python}


def _timed(call: Callable, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


# --- the check --------------------------------------------------------------------------------
def check(
    hypergradient: Callable,
    problem: Any = None,
    *,
    lam: torch.Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype | str | None = None,
    device: str = "cpu",
    rtol: float | None = None,
    directions: int = 3,
    repeat: int = 3,
    reference_method: str = "auto",
    config_dir: str | Path | None = None,
    inner_loss: Callable | None = None,
    phi: Callable | None = None,
    outer: Callable | None = None,
    w0: Any = None,
    step: float | None = None,
    symmetric: bool | None = None,
) -> Report:
    """Check ``hypergradient`` (λ → ∇f(λ), or (λ, problem) → ∇f(λ)) on ``problem`` at one λ.

    problem: a built-in problem's name (``"ridge"``) or ``(name, settings)`` as hgbench.evaluate
    takes it, a Problem subclass or ``(cls, {arguments})``, a Problem instance (float64 data); or
    None with the plain form: ``outer`` = E(w, λ), ``w0``, ``lam`` and ``inner_loss`` = ℓ(w, λ)
    (Φ = w − α∇₁ℓ, α = ``step`` or the rule of hgbench.problems.plain) or ``phi`` = Φ(w, λ)
    (``symmetric``: whether ∂₁Φ is), each tensor, dict of tensors or nn.Module.
    lam: the point (flat, for a built-in problem; default its first draw for ``seed``).
    dtype, device: what λ is passed in (and the problem, to a callable of two arguments: the
    problem cast as the estimators get it); dtype default: the plain form's λ's dtype, else
    torch's default dtype.
    rtol: the tolerance on ‖ĝ − ∇f‖/‖∇f‖ (default ``default_rtol``). directions: of the
    cross-check. repeat: timed calls after the first. reference_method: auto | dense | matrix_free.

    Returns a Report; a bad argument raises UserError (one line) before any work, and so does a
    problem whose reference cannot be computed (no inner loss nor solve_inner, a singular
    system, an ℓ not strictly convex at w*). The user's callable's exceptions propagate."""
    plain = None
    if outer is not None or inner_loss is not None or phi is not None:
        if lam is None or w0 is None or outer is None:
            raise UserError("the plain form needs outer=, w0= and lam= with inner_loss= or phi=")
        plain = {"outer": outer, "w0": w0, "lam": lam, "inner_loss": inner_loss, "phi": phi, "step": step, "symmetric": symmetric}
    elif problem is None:
        raise UserError("give a problem (a name such as 'ridge', a Problem, or the plain form inner_loss=/phi=, outer=, w0=, lam=)")
    if isinstance(dtype, str):
        if dtype not in ("float32", "float64", "float16", "bfloat16"):
            raise UserError(f"dtype={dtype!r} is not one of float32, float64, float16, bfloat16")
        dtype = getattr(torch, dtype)
    if rtol is not None and not (isinstance(rtol, (int, float)) and rtol > 0):
        raise UserError(f"rtol={rtol!r} must be a number > 0")
    if not (isinstance(directions, int) and directions >= 1) or not (isinstance(repeat, int) and repeat >= 1):
        raise UserError(f"directions={directions!r} and repeat={repeat!r} must be integers >= 1")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={device!r} asked for, but this machine has no CUDA device; use device=cpu")
    built, lam64, label = build_problem(problem, seed, config_dir, plain)
    if plain is None and lam is not None:
        lam64 = torch.as_tensor(lam, dtype=torch.float64).reshape(-1)
        if lam64.numel() != built.lam_dim:
            raise UserError(f"lam has {lam64.numel()} entries, the problem's λ has {built.lam_dim}")
    if dtype is None:
        dtype = built.user_dtype if isinstance(built, PlainProblem) else torch.get_default_dtype()
    try:
        method = choose(built, reference_method)
    except ValueError as err:
        raise UserError(str(err)) from err

    try:
        ref = reference(built, lam64, method)
        cert = certify(ref)
        checks = cross_check(built, lam64, ref, method, directions, seed)
    except (ValueError, NotImplementedError, RuntimeError) as err:  # e.g. a singular Hessian; float32 data in ℓ
        hint = (
            "; the reference evaluates your functions in float64: make their data follow w's dtype (X.to(w))"
            if "dtype" in str(err) or "Float" in str(err)
            else ""
        )
        raise UserError(f"the reference cannot be computed on this problem: {type(err).__name__}: {err}{hint}") from err

    user_problem = built.to(dtype, dev)
    lam_user = lam64.to(dtype).to(dev)
    call = _caller(hypergradient)
    run = lambda: call(_user_lam(built, lam_user.clone()), user_problem)
    start = time.perf_counter()
    result = run()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    first = time.perf_counter() - start
    times = [_timed(run, dev) for _ in range(repeat)]
    peak = _peak_memory(run, dev)

    kappa = kappa_of(ref)
    gnorm = torch.linalg.vector_norm(ref.grad).item()
    try:
        flat, result_dtype = _flat_result(built, result, lam64)
    except ValueError as err:
        flat, result_dtype, invalid = None, dtype, str(err)
    else:
        invalid = "" if torch.isfinite(flat).all() else "the result has NaN or inf entries"
    worst = dtype if torch.finfo(dtype).eps >= torch.finfo(result_dtype).eps else result_dtype
    tol = float(rtol) if rtol is not None else default_rtol(worst, kappa)
    rule = "given" if rtol is not None else f"max(√ε, 10·κ·ε), ε of {str(worst).removeprefix('torch.')}"
    err_abs = torch.linalg.vector_norm(flat - ref.grad).item() if flat is not None and not invalid else math.inf
    err_rel = err_abs / gnorm if gnorm > 0 else err_abs
    blocks = {}
    if flat is not None and isinstance(built, StructuredProblem) and len(built.lam_shapes) > 1:
        for name, diff, g in zip(built.lam_shapes, built.lam_tree(flat - ref.grad).values(), built.lam_tree(ref.grad).values()):
            a, n = torch.linalg.vector_norm(diff).item(), torch.linalg.vector_norm(g).item()
            blocks[name] = {"err_abs": a, "err_rel": a / n if n > 0 else a, "norm": n}
    agree = all(c["diff"] <= c["allowed"] for c in checks)
    bound = reference_bound(cert)
    verdict, reason = decide(invalid, cert, agree, err_abs, tol * gnorm, bound)
    return Report(
        problem=label,
        lam_dim=built.lam_dim,
        method=method,
        certificate=cert,
        reference_norm=gnorm,
        cross_check=checks,
        cross_check_ok=agree,
        err_abs=err_abs,
        err_rel=err_rel,
        blocks=blocks,
        dtype=str(worst).removeprefix("torch."),
        rtol=tol,
        rtol_rule=rule,
        time_s=statistics.median(times),
        first_call_s=first,
        peak_bytes=peak,
        verdict=verdict,
        reason=reason,
        kappa=kappa,
        q=ref.q,
        details={"lam": lam64.tolist(), "reference": ref.grad.tolist(), "yours": flat.tolist() if flat is not None else None},
    )


def decide(invalid: str, cert: dict, agree: bool, err_abs: float, tol_abs: float, bound: float | None) -> tuple[str, str]:
    """The verdict and its one-line reason. An invalid result (wrong shape, NaN) is wrong; an
    uncertified reference, or one the cross-check contradicts, decides nothing; with b the
    certificate's bound on the reference's error (0 where none is given), the true error lies in
    [err − b, err + b]: ok when err + b ≤ tol, wrong when err − b > tol, else undecided."""
    if invalid:
        return "wrong", invalid
    if not cert.get("certified"):
        return "undecided", cert.get("reason", "reference not certified")
    if not agree:
        return "undecided", "the central-difference cross-check disagrees with the reference; the reference is in doubt"
    b = bound or 0.0
    if err_abs + b <= tol_abs:
        return "ok", f"error {err_abs:.3g} (+ reference bound {b:.2g}) ≤ tolerance {tol_abs:.3g} (rtol·‖∇f‖)"
    if err_abs - b > tol_abs:
        return "wrong", f"error {err_abs:.3g} (− reference bound {b:.2g}) > tolerance {tol_abs:.3g} (rtol·‖∇f‖)"
    return "undecided", f"error {err_abs:.3g} is within the reference's bound {b:.2g} of the tolerance {tol_abs:.3g}"


# --- the command ------------------------------------------------------------------------------
CALLABLE = re.compile(r"(?P<module>[A-Za-z_][\w.]*|.+\.py):(?P<name>[A-Za-z_]\w*)")


def load_object(spec: str, what: str):
    """The object ``spec`` names: ``pkg.module:name`` (imported, the working directory on
    sys.path) or ``path/to/file.py:name`` (loaded from the file); one UserError line otherwise."""

    found = CALLABLE.fullmatch(spec)
    if not found:
        raise UserError(f"{what} {spec!r} must be module:function or path/to/file.py:function")
    try:
        if found["module"].endswith(".py"):
            module = module_of_file(Path(found["module"]))
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(found["module"])
        return getattr(module, found["name"])
    except Exception as err:  # any failure to load the user's code is one line
        raise UserError(f"{what} {spec!r} cannot be loaded ({reason_of(err)})") from err


def _problem_spec(spec: str, settings: list[str]):
    """What --problem and its KEY=VALUE settings name: a built-in problem (name, "k=v ..."), a
    Problem subclass (cls, {k: v}), or what a function returns (a Problem, or the plain form's
    keyword arguments as a dict, returned as ("plain", dict))."""
    if not CALLABLE.fullmatch(spec):
        return (spec, " ".join(settings)) if settings else spec
    obj = load_object(spec, "--problem")
    values = {}
    for word in settings:
        key, sep, value = word.partition("=")
        if not sep:
            raise UserError(f"problem setting {word!r} must be KEY=VALUE")
        values[key] = yaml.safe_load(value)
    if isinstance(obj, type) and issubclass(obj, Problem):
        return (obj, values)
    if callable(obj) and not isinstance(obj, type):
        made = obj(**values)
        if isinstance(made, Problem):
            return made
        if isinstance(made, dict):
            return ("plain", made)
    raise UserError(
        f"--problem {spec!r} must name a Problem subclass, or a function returning a Problem or a dict "
        "of the plain form (outer, w0, lam and inner_loss or phi)"
    )


def main(args: list[str]) -> int:
    """`hgbench check HYPERGRADIENT [--problem P [KEY=VALUE ...]] [options]`: print the report;
    exit 0 (ok), 1 (wrong), 3 (undecided), 2 (bad input)."""
    parser = argparse.ArgumentParser(
        prog="hgbench check",
        description="Check your hypergradient against hgbench's certified float64 reference; exit status 0 ok, "
        "1 wrong (above the tolerance), 3 undecided (reference not certified or cross-check disagrees), 2 bad input.",
    )
    parser.add_argument("hypergradient", help="your callable λ → ∇f(λ) (or (λ, problem) → ∇f(λ)): module:function or file.py:function")
    parser.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="settings of the problem (e.g. n_features=8 cond=30)")
    parser.add_argument(
        "--problem",
        default="ridge",
        help="a built-in problem (hgbench list), file.py:Class (a Problem "
        "subclass), or file.py:function returning a Problem or the plain form as a dict (default: ridge)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the λ draw (the problem's first for this seed) and the cross-check's directions"
    )
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float64", "float16", "bfloat16"],
        help="λ's dtype as passed to your callable (default: torch's default dtype; the plain form: its λ's)",
    )
    parser.add_argument("--device", default="cpu", help="λ's device as passed to your callable (default: cpu)")
    parser.add_argument("--rtol", type=float, default=None, help="tolerance on the relative error (default: max(√ε, 10·κ·ε))")
    parser.add_argument("--directions", type=int, default=3, help="random directions of the central-difference cross-check (default: 3)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls after the first (default: 3)")
    parser.add_argument("--reference", default="auto", choices=["auto", "dense", "matrix_free"], help="the reference's method")
    parser.add_argument("--config-dir", default=None, help="a folder of your own config files (problem/NAME.yaml)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the report as JSON to PATH")
    ns = parser.parse_intermixed_args(args)
    try:
        hypergradient = load_object(ns.hypergradient, "hypergradient")
        if not callable(hypergradient):
            raise UserError(f"hypergradient {ns.hypergradient!r} is a {type(hypergradient).__name__}, not a callable")
        spec = _problem_spec(ns.problem, ns.settings)
        plain = spec[1] if isinstance(spec, tuple) and spec[0] == "plain" else {}
        if plain and not isinstance(plain, dict):
            raise UserError("the plain form must be a dict")
        report = check(
            hypergradient,
            None if plain else spec,
            seed=ns.seed,
            dtype=ns.dtype,
            device=ns.device,
            rtol=ns.rtol,
            directions=ns.directions,
            repeat=ns.repeat,
            reference_method=ns.reference,
            config_dir=ns.config_dir,
            **plain,
        )
    except UserError as err:
        print(f"hgbench check: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 — the user's callable or problem failed: one line, exit 1
        print(f"hgbench check: error: {type(err).__name__}: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    print(report)
    if ns.json:
        Path(ns.json).write_text(strict_json(report.to_dict(), indent=1) + "\n")
    return report.exit_code
