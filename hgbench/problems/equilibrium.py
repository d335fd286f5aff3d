"""An equilibrium model (deep equilibrium network) on MNIST, trained by hypergradients
(Grazzi et al. 2020, §5, "equilibrium models"; Bai et al. 2019).

Per training image xᵢ (row vector, 784 pixels in [0, 1]) a state wᵢ ∈ ℝᵈ (row vector) solves

    wᵢ = Φᵢ(wᵢ, λ) = tanh(wᵢ A + xᵢ B + c),          A (d×d), B (784×d), c (d)

and the outer objective is the mean cross-entropy of the linear readout wᵢ W + b (W d×10, b 10):

    E(w, λ) = (1/n) Σᵢ CE(wᵢ W + b, yᵢ),             λ = (A, B, c, W, b) flattened.

(W, b) is a direct outer variable: it enters E only (∂₂Φ is zero on it). The state w stacks
the n states, shape (n·d,). ∂₁Φ is block diagonal, one d×d block per image:

    Jᵢ = diag(sᵢ) Aᵀ,   sᵢ = 1 − Φᵢ(wᵢ)²   (the derivative of tanh),

so ‖Jᵢ‖₂ ≤ ‖A‖₂: the map is a contraction when ‖A‖₂ < 1 (tanh is 1-Lipschitz). J is not
symmetric, so AID-CG does not apply; the reference solves each block exactly in float64
(``adjoint_system``). ``radius`` ρ: training projects A onto {‖A‖₂ ≤ ρ} after every step
(``project``, singular values clipped at ρ); null disables it, and ρ ≥ 1 or ``init_a_norm`` > 1
give a map that need not be a contraction.

Initialization as in the reference notebook: A, B, c, W ~ init_scale·N(0, 1), b = 0, initial
state 0. ``checkpoint``: a checkpoints.pt written by an outer run (hgbench.running.outer_loop); the λ
draws are then its saved parameters, in order (the hypergradient error at checkpoints of training).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

from dataclasses import dataclass
from typing import Optional

import torch

from hgbench.data.mnist import load_mnist
from hgbench.options import SIZE, Number, Path as PathCheck, ProblemOptions, option
from hgbench.problems.base import Problem

N_PIXELS = 784
N_CLASSES = 10
CHUNK = 256  # images per batched d×d factorization in the exact solves (memory: CHUNK·d²·8 bytes)


@contextmanager
def _one_thread():
    """Batched small factorizations (LU, eigvalsh) on one CPU thread. With torch's parallel loop
    over the batch, MKL (torch 2.13 CPU build) was seen to print "Parameter 6 was incorrect on
    entry to DLASWP" and to run over 10× slower on a machine whose cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class EquilibriumOptions(ProblemOptions):
    state_dim: int = option(SIZE, "d: one state of size d per image")
    n_train: int = option(SIZE, "training images (seeded shuffle of the data)")
    n_val: int = option(SIZE, "validation images")
    n_test: int = option(SIZE, "test images")
    radius: Optional[float] = option(Number(0, low_open=True, null="no projection"), "training projects A onto ‖A‖₂ <= radius")
    init_scale: float = option(Number(0, low_open=True), "A, B, c, W ~ init_scale·N(0, 1)")
    init_a_norm: Optional[float] = option(Number(0, low_open=True, null="A as drawn"), "rescale the initial A to this spectral norm")
    data_root: Optional[str] = option(PathCheck("the 5k MNIST subset"), "folder of the MNIST IDX files")
    checkpoint: Optional[str] = option(PathCheck("λ drawn at initialization"), "a checkpoints.pt of a training run: its λ become the draws")


class EquilibriumMNIST(Problem):
    """w = tanh(w A + x B + c) per image, linear readout, cross-entropy; λ = (A, B, c, W, b)."""

    Options = EquilibriumOptions

    trainable = True

    def __init__(
        self,
        name,
        seed,
        state_dim=200,
        n_train=2500,
        n_val=1000,
        n_test=1500,
        radius=0.99,
        init_scale=0.01,
        init_a_norm=None,
        data_root=None,
        checkpoint=None,
    ):
        super().__init__(name, seed, 0.0, 0.0)
        self.d = state_dim
        self.radius = None if radius is None else float(radius)
        self.init_scale = float(init_scale)
        self.init_a_norm = None if init_a_norm is None else float(init_a_norm)
        splits = load_mnist(n_train, n_val, n_test, seed, data_root)
        self.x, self.y = splits["train"].images, splits["train"].labels
        self.x_val, self.y_val = splits["val"].images, splits["val"].labels
        self.x_test, self.y_test = splits["test"].images, splits["test"].labels
        self.checkpoint_lams = None
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise ValueError(
                    f"problem.checkpoint={str(path)!r} is not a file; give a checkpoints.pt written by `hgbench run mode=outer`"
                )
            lams = torch.load(path, weights_only=True)["lams"]
            if lams.ndim != 2 or lams.shape[1] != self.lam_dim:
                raise ValueError(
                    f"problem.checkpoint={str(path)!r} holds λ of shape {tuple(lams.shape)}, this problem needs (m, {self.lam_dim}) (state_dim={self.d})"
                )
            self.checkpoint_lams = lams.to(torch.float64)

    # --- layout of λ ----------------------------------------------------------------------------
    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        d = self.d
        return {"A": (d, d), "B": (N_PIXELS, d), "c": (d,), "W": (d, N_CLASSES), "b": (N_CLASSES,)}

    @property
    def lam_dim(self) -> int:
        return sum(torch.Size(s).numel() for s in self.shapes.values())

    @property
    def w_dim(self) -> int:
        return self.x.shape[0] * self.d

    def parts(self, lam: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of the flat λ as A, B, c, W, b."""
        sizes = [torch.Size(s).numel() for s in self.shapes.values()]
        pieces = torch.split(lam, sizes)
        return {key: piece.reshape(shape) for (key, shape), piece in zip(self.shapes.items(), pieces)}

    # --- the math -------------------------------------------------------------------------------
    def drive(self, lam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x B + c, (n, d): the part of Φ's argument that does not change across inner steps."""
        p = self.parts(lam)
        return x @ p["B"] + p["c"]

    def step(self, w: torch.Tensor, a: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """Φ on states of shape (n, d) with the drive precomputed."""
        return torch.tanh(w @ a + drive)

    def phi(self, w, lam, consts):
        return self.step(w.reshape(-1, self.d), self.parts(lam)["A"], self.drive(lam, self.x)).reshape(-1)

    def logits(self, w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        p = self.parts(lam)
        return w.reshape(-1, self.d) @ p["W"] + p["b"]

    def outer(self, w, lam):
        return torch.nn.functional.cross_entropy(self.logits(w, lam), self.y)

    def phi_function(self, lam, consts):
        """Φ with the drive x B + c computed once per λ tensor: consecutive inner steps at the
        same λ (same tensor object, unmodified) reuse it, so it is computed once per trajectory,
        and autograd differentiates through the one copy."""
        memo: dict = {}

        def phi(w, l):
            if memo.get("lam") is not l or memo.get("version") != l._version:
                memo.update(lam=l, version=l._version, drive=self.drive(l, self.x))
            return self.step(w.reshape(-1, self.d), self.parts(l)["A"], memo["drive"]).reshape(-1)

        return phi

    def sample_lambdas(self, n, generator):
        """init_scale·N(0, 1) for A, B, c, W and b = 0 (A then rescaled to ‖A‖₂ = init_a_norm when
        given, and projected onto the ρ-ball); or the first n checkpoints of ``checkpoint``."""
        if self.checkpoint_lams is not None:
            if n > self.checkpoint_lams.shape[0]:
                raise ValueError(
                    f"n_lambdas={n} exceeds the {self.checkpoint_lams.shape[0]} λ saved in problem.checkpoint; use n_lambdas <= {self.checkpoint_lams.shape[0]}"
                )
            return self.checkpoint_lams[:n].clone()
        lams = self.init_scale * torch.randn(n, self.lam_dim, generator=generator, dtype=torch.float64)
        for lam in lams:
            p = self.parts(lam)
            p["b"].zero_()
            if self.init_a_norm is not None:
                p["A"].mul_(self.init_a_norm / torch.linalg.matrix_norm(p["A"], ord=2))
        if not torch.isfinite(torch.linalg.vector_norm(lams, dim=1)).all():  # the projection's SVD would fail
            raise ValueError(
                f"problem.init_scale={self.init_scale} with problem.init_a_norm={self.init_a_norm} gives λ draws "
                "whose norm is not finite; use smaller finite values"
            )
        return torch.stack([self.project(lam) for lam in lams])

    def project(self, lam: torch.Tensor) -> torch.Tensor:
        """λ with A replaced by its projection onto {‖A‖₂ ≤ ρ}, kept in λ's dtype: the singular
        values clipped at ρ (the Frobenius-nearest such matrix); then, while the product U·S·Vᵀ
        as stored in the dtype has ``a_norm`` > ρ' = ρ(1 − d·eps₆₄) (float32: by ~1e-6 after the
        clip), A scaled by (ρ'/‖A‖₂)(1 − (√d + 2)·eps). Why these factors: rounding c·A to the
        dtype changes each entry by at most u = eps/2 of itself (and c by u), a perturbation E
        with ‖E‖₂ ≤ ‖E‖_F ≤ u·‖c·A‖_F ≤ u·√d·‖c·A‖₂, so the stored matrix has
        ‖A‖₂ ≤ ρ'(1 − (√d + 2)·eps)(1 + u)(1 + √d·u) < ρ'; and ``a_norm``, a float64 SVD, is
        the exact σ_max of a matrix within p(d)·eps₆₄·‖A‖₂ of A (LAPACK's bound, p(d) a modest
        function of d, taken as d), so a_norm ≤ ρ' gives ‖A‖₂ ≤ ρ. Promise: the stored A has
        ‖A‖₂ ≤ ρ, and ``a_norm`` (mode=outer's ``q_bound``) ≤ ρ. λ itself when radius is null."""
        if self.radius is None:
            return lam
        a = self.parts(lam)["A"]
        u, s, vh = torch.linalg.svd(a)
        out = lam.clone()
        part = self.parts(out)["A"]
        part.copy_((u * s.clamp(max=self.radius)) @ vh)
        target = self.radius * (1 - self.d * torch.finfo(torch.float64).eps)
        margin = (self.d**0.5 + 2) * torch.finfo(lam.dtype).eps
        for _ in range(8):  # each pass shrinks ‖A‖₂ by about the margin: one or two suffice
            norm = self.a_norm(out)
            if norm <= target:
                return out
            part.mul_(target / norm * (1 - margin))
        raise FloatingPointError(f"the projection of A onto ‖A‖₂ <= {self.radius} did not reach it (‖A‖₂ = {norm})")

    def a_norm(self, lam: torch.Tensor) -> float:
        """‖A‖₂ of the stored A, computed in float64 (exact to ~d·1e-16 relative for a float32 A,
        whose own float32 SVD would be off by ~d·6e-8): an upper bound on the contraction
        constant of every block."""
        return torch.linalg.matrix_norm(self.parts(lam)["A"].to(torch.float64), ord=2).item()

    # --- exact solves (float64 reference) -------------------------------------------------------
    def solve_inner(self, lam, max_fp: int = 3000, tol: float = 1e-13):
        """w*(λ): fixed-point iteration from 0 until max|Φ(w) − w| < tol (at most ``max_fp`` steps;
        cheap when Φ contracts), then, if that was not reached, Newton's method per image,
        wᵢ ← wᵢ − (I − Jᵢ)⁻¹(wᵢ − Φᵢ(wᵢ)) (blocks solved by LU), while the residual decreases.
        When Φ is not a contraction this is a best effort; the reference records the residual
        ‖Φ(w*) − w*‖."""
        a, drive = self.parts(lam)["A"], self.drive(lam, self.x)
        w = torch.zeros_like(drive)
        for _ in range(max_fp):
            new = self.step(w, a, drive)
            residual = (new - w).abs().max()
            w = new
            if residual < tol:
                return w.reshape(-1)
        eye = torch.eye(self.d, dtype=w.dtype, device=w.device)
        best = (w - self.step(w, a, drive)).abs().max()
        for _ in range(30):
            out = self.step(w, a, drive)
            slope = 1 - out.square()
            candidate = w - self._blockwise(lambda rows: eye - slope[rows, :, None] * a.T, w - out)  # I − Jᵢ
            residual = (candidate - self.step(candidate, a, drive)).abs().max()
            if not residual < best:
                break
            w, best = candidate, residual
        return w.reshape(-1)

    def _blockwise(self, matrices, rhs: torch.Tensor) -> torch.Tensor:
        """Solve matrices(rows)[i] xᵢ = rhsᵢ for every image i, CHUNK images at a time."""
        out = torch.empty_like(rhs)
        with _one_thread():
            for start in range(0, rhs.shape[0], CHUNK):
                rows = slice(start, start + CHUNK)
                out[rows] = torch.linalg.solve(matrices(rows), rhs[rows])
        return out

    def reference_bytes(self) -> int:
        """Roughly: the block solves (a CHUNK of d × d matrices, their LU and Gram copies) and a
        few state-sized and λ-sized float64 vectors."""
        return 4 * CHUNK * self.d**2 * 8 + 8 * (self.w_dim + self.lam_dim) * 8

    def adjoint_system(self, lam: torch.Tensor, w_star: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """Exact (I − Jᵀ)v = b, block by block: (I − A diag(sᵢ)) vᵢ = bᵢ, by LU in the dtype of
        the inputs (float64 for the reference). Returns (v, q, κ): q = maxᵢ ‖A diag(sᵢ)‖₂ = ‖J‖₂
        (J is block diagonal), from the largest eigenvalue of each Gram matrix (batched SVD is far
        slower on CPU); κ = cond(I − Jᵀ) is NaN (not computed: it would cost a second batched
        eigendecomposition per image and the theory needs only q)."""
        a = self.parts(lam)["A"]
        states = w_star.reshape(-1, self.d)
        slope = 1 - self.step(states, a, self.drive(lam, self.x)).square()
        eye = torch.eye(self.d, dtype=a.dtype, device=a.device)
        v = self._blockwise(lambda rows: eye - a * slope[rows, None, :], b.reshape(-1, self.d))
        q2 = 0.0
        with _one_thread():
            for start in range(0, states.shape[0], CHUNK):
                jt = a * slope[start : start + CHUNK, None, :]
                q2 = max(q2, torch.linalg.eigvalsh(jt.mT @ jt)[:, -1].max().item())
        return v.reshape(-1), q2**0.5, float("nan")

    def inverse_norm(self, lam: torch.Tensor, w_star: torch.Tensor) -> float:
        """‖(I − J)⁻¹‖₂ = maxᵢ 1/σ_min(I − A diag(sᵢ)) exactly, J being block diagonal (one d × d
        block per image, the transposes of those ``adjoint_system`` solves with: same singular
        values), σ_min² the smallest eigenvalue of each block's Gram matrix, batched like q. Defined
        without a contraction (‖A‖₂ ≥ 1, the unprojected model) wherever I − J is invertible; inf
        where it is not."""
        a = self.parts(lam)["A"]
        states = w_star.reshape(-1, self.d)
        slope = 1 - self.step(states, a, self.drive(lam, self.x)).square()
        eye = torch.eye(self.d, dtype=a.dtype, device=a.device)
        low = math.inf
        with _one_thread():
            for start in range(0, states.shape[0], CHUNK):
                block = eye - a * slope[start : start + CHUNK, None, :]
                low = min(low, torch.linalg.eigvalsh(block.mT @ block)[:, 0].min().item())
        return low**-0.5 if low > 0 else math.inf

    # --- the outer loop's support (hgbench.running.outer_loop) -------------------------------------------
    def contraction_bound(self, lam: torch.Tensor) -> float:
        """‖A‖₂ (``a_norm``)."""
        return self.a_norm(lam)

    def evaluate(self, lam: torch.Tensor, t: int) -> dict[str, float]:
        """Loss and accuracy of the model whose states are t steps of Φ from 0 (``outer.test_t``;
        the deq_* presets set it to the training T), on the train, validation and test images."""
        a = self.parts(lam)["A"]
        out = {}
        for split, x, y in (("train", self.x, self.y), ("val", self.x_val, self.y_val), ("test", self.x_test, self.y_test)):
            drive = self.drive(lam, x)
            w = torch.zeros_like(drive)
            for _ in range(t):
                w = self.step(w, a, drive)
            logits = self.logits(w, lam)
            out[f"{split}_loss"] = torch.nn.functional.cross_entropy(logits, y).item()
            out[f"{split}_acc"] = (logits.argmax(1) == y).double().mean().item()
        return out
