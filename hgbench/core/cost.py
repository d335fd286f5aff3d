"""Cost accounting: wall time, operation counts and memory, counted by the objects that perform
the operations, into a ``Tally`` they were given (no module-level state).

- Φ evaluations: the counted Φ of a ``hgbench.core.bound.BoundProblem`` (one per call).
- VJPs and JVPs through Φ: the products of a ``hgbench.core.linearization.Linearization`` (one
  per call; a batch of m tangents pushed at once counts m, read off the batch's shape), and, on a
  tape built by ``taped``, a hook on every taped Φ output (it fires once per backward step).
- Bytes saved for backward, one scope for every estimator: the bytes autograd saves for the
  backward passes THROUGH Φ, i.e. while Φ is evaluated on a tape (ITD's and truncated ITD's
  taped steps, a Linearization's graph of one Φ evaluation), counted by
  ``torch.autograd.graph.saved_tensors_hooks`` inside ``taped`` (each storage once per tape).
  Not counted: E's graph (E and its gradient are computed once per estimate by every
  estimator, like the counts below), and forward-mode products, which save nothing. Derivatives
  built by torch.func (``hgbench.core.linearization.jacobian``/``vjp``, e.g. the reparameterized
  estimators' Hessians; batched λ draws) save tensors that no hook can observe: such an estimate
  reports None (an empty cell), never a 0 it did not measure. On CUDA, ``Meter`` also records
  the peak allocated memory.
- E and its gradient (once per estimate for every estimator) are not counted.
- Which path produced the time: ``dense`` when a linearization's products ran on its dense J
  (hgbench.core.linearization), whose counts are still the matrix-free products'.

A ``Meter`` adds to its ``Cost`` the time spent inside its ``with`` blocks and the tally's growth
over them; estimators time each grid point as the sum of the meters a from-scratch computation
of that point would run (see AID, ITD).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Optional

import torch

COUNTS = ("n_phi", "n_vjp", "n_jvp", "saved_bytes")


@dataclass
class Cost:
    """What one estimate cost. saved_bytes: None when not observable (see the module docstring);
    peak_bytes: CUDA only (None elsewhere); dense: time_s measures products by a dense J."""

    time_s: float = 0.0
    n_phi: int = 0
    n_vjp: int = 0
    n_jvp: int = 0
    saved_bytes: Optional[int] = 0
    peak_bytes: Optional[int] = None
    dense: bool = False

    def __add__(self, other: "Cost") -> "Cost":
        peaks = [p for p in (self.peak_bytes, other.peak_bytes) if p is not None]
        summed = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name not in ("saved_bytes", "peak_bytes", "dense")
        }
        saved = None if None in (self.saved_bytes, other.saved_bytes) else self.saved_bytes + other.saved_bytes
        return Cost(**summed, saved_bytes=saved, peak_bytes=max(peaks) if peaks else None, dense=self.dense or other.dense)


@dataclass
class Tally:
    """Running operation counts of one estimate; whoever performs an operation adds to it.
    ``opaque``: set by whoever builds a graph whose saved bytes cannot be observed (torch.func);
    from then on every Meter block on this tally reports saved_bytes None. ``dense``: set by a
    linearization that built its dense J; from then on every Meter block reports dense."""

    n_phi: int = 0
    n_vjp: int = 0
    n_jvp: int = 0
    saved_bytes: int = 0
    opaque: bool = False
    dense: bool = False

    def counts(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in COUNTS)


class Meter:
    """Sums wall time (CUDA synchronized at both ends) and the growth of ``tally`` over its
    ``with`` blocks; on CUDA also the peak allocated memory above the level at its FIRST entry
    (so a tape that grows across blocks is measured whole)."""

    def __init__(self, tally: Tally, device: torch.device | str = "cpu"):
        self.cost = Cost()
        self.tally = tally
        self._cuda = torch.device(device).type == "cuda"
        self._base = None

    def __enter__(self):
        if self._cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            if self._base is None:
                self._base = torch.cuda.memory_allocated()
        self._counts = self.tally.counts()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self._cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - self._base
            self.cost.peak_bytes = max(peak, self.cost.peak_bytes or 0)
        self.cost.time_s += time.perf_counter() - self._start
        for name, before, after in zip(COUNTS, self._counts, self.tally.counts()):
            if getattr(self.cost, name) is not None:
                setattr(self.cost, name, getattr(self.cost, name) + after - before)
        if self.tally.opaque:  # a torch.func graph was built (in this estimate): not observable
            self.cost.saved_bytes = None
        self.cost.dense = self.cost.dense or self.tally.dense


@contextmanager
def taped(tally: Tally):
    """Build an autograd tape inside this block: counts the bytes it saves for backward (each
    storage once) into ``tally`` and yields ``mark(out)``, to call on every Φ output so that
    each backward step through Φ counts one VJP."""
    seen: set[int] = set()

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            tally.saved_bytes += storage.nbytes()
        # Not a tensor on the tape itself: when an op saves its own output (tanh, exp, ...), that
        # output would hold its grad_fn holding the output, a cycle through C++ objects that
        # Python's garbage collector cannot free, and every tape would leak (5 GB per draw at
        # t = 3000). A tensor off the tape (data, constants: no grad_fn) closes no cycle and is
        # kept as it is, sparing a detach per saved tensor.
        return tensor.detach() if tensor.requires_grad else tensor

    def count_vjp(grad):
        tally.n_vjp += 1

    def mark(out: torch.Tensor) -> torch.Tensor:
        if out.requires_grad:
            out.register_hook(count_vjp)
        return out

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield mark


def bytes_text(n: float) -> str:
    """A byte count in words: 1.5e6 → '1.5 MB' (powers of 1000, three significant digits)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return ""
