"""Cost accounting: wall time, operation counts and memory, recorded by the code that performs
the operations.

- Φ evaluations are recorded by ``BoundProblem.phi``; VJPs through Φ by the pullback of
  ``vjp`` below (one per call) or, for a tape built by ``taped``, by a hook on every taped Φ
  output (it fires once per backward step through Φ); JVPs by the estimator at the line that
  pushes them (a vmapped push of m tangents records m).
- Bytes saved for backward are seen by ``torch.autograd.graph.saved_tensors_hooks`` while a
  tape or a VJP graph is built (each storage counted once per tape); forward-mode products
  save nothing. On CUDA, ``Meter`` also records the peak allocated memory.
- E and its gradient (once per estimate for every estimator) are not counted.

A ``Meter`` sums what happens inside its ``with`` blocks; estimators time each grid point as
the sum of the meters a from-scratch computation of that point would run (see AID, ITD).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Callable, Optional

import torch

_ACTIVE: list["Meter"] = []
_FUNCTIONAL = [False]


@dataclass
class Cost:
    """What one estimate cost. peak_bytes: CUDA only (None elsewhere)."""

    time_s: float = 0.0
    n_phi: int = 0
    n_vjp: int = 0
    n_jvp: int = 0
    saved_bytes: int = 0
    peak_bytes: Optional[int] = None

    def __add__(self, other: "Cost") -> "Cost":
        peaks = [p for p in (self.peak_bytes, other.peak_bytes) if p is not None]
        summed = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self) if f.name != "peak_bytes"}
        return Cost(**summed, peak_bytes=max(peaks) if peaks else None)


def record(**counts: int) -> None:
    """Add operation counts (n_phi, n_vjp, n_jvp, saved_bytes) to every running meter."""
    for meter in _ACTIVE:
        for key, value in counts.items():
            setattr(meter.cost, key, getattr(meter.cost, key) + value)


class Meter:
    """Sums wall time (CUDA synchronized at both ends) and recorded operations over its ``with``
    blocks; on CUDA also the peak allocated memory above the level at its FIRST entry (so a tape
    that grows across blocks is measured whole)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.cost = Cost()
        self._cuda = torch.device(device).type == "cuda"
        self._base = None

    def __enter__(self):
        if self._cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            if self._base is None:
                self._base = torch.cuda.memory_allocated()
        _ACTIVE.append(self)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self._cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - self._base
            self.cost.peak_bytes = max(peak, self.cost.peak_bytes or 0)
        self.cost.time_s += time.perf_counter() - self._start
        _ACTIVE.remove(self)


@contextmanager
def taped():
    """Build an autograd tape inside this block: counts the bytes it saves for backward (each
    storage once) and yields ``mark(out)``, to call on every Φ output so that each backward
    step through Φ records one VJP."""
    seen: set[int] = set()

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            record(saved_bytes=storage.nbytes())
        # Not the tensor itself: when an op saves its own output (tanh, exp, ...), that output
        # would hold its grad_fn holding the output, a cycle through C++ objects that Python's
        # garbage collector cannot free, and every tape would leak (5 GB per draw at t = 3000).
        return tensor.detach()

    def mark(out: torch.Tensor) -> torch.Tensor:
        if out.requires_grad:
            out.register_hook(lambda grad: record(n_vjp=1))
        return out

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield mark


@contextmanager
def functional():
    """Inside this block ``vjp`` uses torch.func.vjp, so that it composes with torch.func.vmap
    (batched λ draws); the bytes it saves are then not observable and not recorded."""
    _FUNCTIONAL[0] = True
    try:
        yield
    finally:
        _FUNCTIONAL[0] = False


def vjp(f: Callable[..., torch.Tensor], *primals: torch.Tensor):
    """(f(*primals), pullback) with pullback(v, i) = (∂f/∂primal_i)ᵀ v, one VJP per call (only
    the path to primal i is differentiated). Built on the autograd tape, not torch.func, so
    that the bytes it saves are counted — except inside ``functional()``."""
    if _FUNCTIONAL[0]:
        out, pull = torch.func.vjp(f, *primals)

        def pullback(v: torch.Tensor, i: int) -> torch.Tensor:
            record(n_vjp=1)
            return pull(v)[i]

        return out, pullback
    with taped():
        leaves = [p.detach().requires_grad_(True) for p in primals]
        out = f(*leaves)

    def pullback(v: torch.Tensor, i: int) -> torch.Tensor:
        record(n_vjp=1)
        if not out.requires_grad:  # f does not depend on the primals
            return torch.zeros_like(leaves[i])
        (grad,) = torch.autograd.grad(out, leaves[i], v, retain_graph=True, allow_unused=True, materialize_grads=True)
        return grad

    return out.detach(), pullback
