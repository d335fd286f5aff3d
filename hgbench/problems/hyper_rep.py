"""Meta-learning a hyper-representation: a shared linear representation, per-task linear heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hgbench.data import datasets
from hgbench.options import SIZE, Choice, Integer, Number, UniformOptions, option
from hgbench.problems.base import GradientStepProblem, Planned
from hgbench.problems.finite_sum import FiniteSum

HEADS = ("logistic", "ridge")
REPRESENTATIONS = ("linear", "tanh")


@dataclass
class HyperRepOptions(UniformOptions):
    n_tasks: int = option(SIZE, "few-shot tasks from scikit-learn's digits")
    ways: int = option(Integer(2, 11), "classes per task")
    shots: int = option(SIZE, "training images per class (inner loss)")
    val_shots: int = option(SIZE, "validation images per class (E)")
    pool: int = option(Choice((1, 2, 4, 8)), "8×8 digits average-pooled pool×pool")
    rep_dim: int = option(SIZE, "r: λ = P ∈ ℝ^{r×p}")
    representation: str = option(Choice(REPRESENTATIONS), "features x Pᵀ (linear) or tanh(x Pᵀ)")
    head: str = option(Choice(HEADS), "multinomial cross-entropy (logistic) or squared loss on one-hot labels (ridge)")
    beta: float = option(Number(0, low_open=True), "L2 weight ½β‖Hᵢ‖² of the heads")
    lam_low: float = option(Number(0, low_open=True), "P = s·G/√p with the scale s ~ U[lam_low, lam_high]")


class HyperRep(FiniteSum, GradientStepProblem):
    """Hyper-representation: a shared map λ = P, per-task linear heads w, few-shot digit tasks.

    Franceschi et al. 2018; Grazzi et al. 2020, §5.

    T tasks, each a ``ways``-way classification with ``shots`` training and ``val_shots``
    validation images per class: inputs X_i ∈ ℝ^{n×p} (n = ways·shots), one-hot labels
    Y_i ∈ {0,1}^{n×ways}, and X_{v,i}, Y_{v,i} likewise. λ = P ∈ ℝ^{r×p} (flattened), the shared
    representation Z_i = φ(X_i Pᵀ) ∈ ℝ^{n×r}, φ the identity (``linear``) or tanh (``tanh``:
    with the heads, a one-hidden-layer network). w = (H_1, …, H_T), H_i ∈ ℝ^{ways×r}, stacked
    (dim w = T·ways·r). With S_i = Z_i H_iᵀ (the scores),

        ℓ(w, λ) = Σ_i [ (1/n) Σ_rows loss(S_i, Y_i) + (β/2) ‖H_i‖² ]
        ∇_{H_i}ℓ = (1/n) (g(S_i) − Y_i)ᵀ Z_i + β H_i
        Φ(w, λ) = w − α(λ) ∇₁ℓ(w, λ)      (the stacked gradient step)
        E(w, λ) = (1/T) Σ_i (1/n_v) Σ_rows loss(Z_{v,i} H_iᵀ, Y_{v,i})   (mean validation loss)

    ``logistic`` head: loss = logsumexp(s) − sᵀy (multinomial cross-entropy), g = softmax.
    ``ridge`` head: loss = ½‖s − y‖², g = identity.

    Contraction: ∇²_{H_i}ℓ = (1/n) Σ_rows (D_row ⊗ z zᵀ) + βI, D the Hessian of the loss in the
    scores: D = I (ridge); 0 ≼ D ≼ ½I for softmax cross-entropy (Böhning 1992). So the spectrum
    lies in [μ, L] with L = c·max_i λ_max(Z_iᵀZ_i/n) + β (c = ½ logistic, 1 ridge), μ = β
    (logistic) or β + min_i λ_min(Z_iᵀZ_i/n) (ridge; exact); both computed per draw by eigvalsh.
    α = 2/(L + μ) gives q ≤ (L − μ)/(L + μ) < 1 everywhere (exactly that for ridge).
    No closed form for the logistic head: the reference w* comes from Newton's method to round-off.

    Data: scikit-learn's digits (1797 images 8×8), average-pooled ``pool``×``pool`` and
    standardized (hgbench.data.datasets.digits), p = (8/pool)². Each task draws ``ways`` of the 10
    classes and, per class, shots + val_shots distinct images (seeded). λ draws:
    P = s·G/√p, G with i.i.d. N(0, 1) entries, s ~ U[lam_low, lam_high] (a random projection
    whose scale s sets how ill-conditioned the heads' problem is).

    A finite sum (hgbench.problems.finite_sum) over the T·n training rows of all tasks, row
    i = (task t, row r) in task-major order: ℓᵢ = T·loss(S_{t,r}, Y_{t,r}) + (β/2)‖w‖² (T times a
    row's loss, so that the mean over the T·n rows is the sum over tasks of their means), and
    over the T·n_v validation rows Eⱼ = loss(S_{v,t,r}, Y_{v,t,r}).
    """

    Options = HyperRepOptions

    def __init__(
        self,
        name,
        seed,
        n_tasks,
        ways,
        shots,
        val_shots,
        rep_dim,
        pool,
        beta,
        lam_low,
        lam_high,
        head="logistic",
        representation="linear",
    ):
        super().__init__(name, seed, lam_low, lam_high)
        x, labels = datasets.digits(pool)
        per_class = min(int((labels == c).sum()) for c in range(10))
        if shots + val_shots > per_class:
            raise ValueError(f"shots + val_shots = {shots + val_shots} exceeds the {per_class} images of the rarest digit")
        self.head, self.representation = head, representation
        self.rep_dim, self.beta = int(rep_dim), float(beta)
        gen = torch.Generator().manual_seed(self.seed)
        by_class = [torch.nonzero(labels == c)[:, 0] for c in range(10)]
        train, val = [], []
        for _ in range(n_tasks):
            classes = torch.randperm(10, generator=gen)[:ways]
            picks = [by_class[c][torch.randperm(len(by_class[c]), generator=gen)[: shots + val_shots]] for c in classes.tolist()]
            train.append(torch.cat([p[:shots] for p in picks]))
            val.append(torch.cat([p[shots:] for p in picks]))
        eye = torch.eye(ways, dtype=torch.float64)
        self.x_train, self.x_val = x[torch.stack(train)], x[torch.stack(val)]  # (T, n, p), (T, n_v, p)
        self.y_train = eye.repeat_interleave(shots, 0).expand(n_tasks, -1, -1).contiguous()  # (T, n, ways)
        self.y_val = eye.repeat_interleave(val_shots, 0).expand(n_tasks, -1, -1).contiguous()

    @classmethod
    def planned(cls, settings: dict) -> Planned:
        """T tasks of ways·(shots + val_shots) images of p = (8/pool)² features and their one-hot
        labels; a Python loop over the tasks (counted as 1e5 operations per task)."""
        t, ways, r = settings["n_tasks"], settings["ways"], settings["rep_dim"]
        p, n = (8 // settings["pool"]) ** 2, ways * (settings["shots"] + settings["val_shots"])
        return Planned(t * ways * r, r * p, 8.0 * t * n * (p + ways), 1e5 * t)

    @property
    def n_tasks(self) -> int:
        return self.x_train.shape[0]

    @property
    def lam_dim(self) -> int:
        return self.rep_dim * self.x_train.shape[2]

    @property
    def w_dim(self) -> int:
        return self.n_tasks * self.y_train.shape[2] * self.rep_dim

    def sample_lambdas(self, n, generator):
        scale = self.lam_low + (self.lam_high - self.lam_low) * torch.rand(n, 1, generator=generator, dtype=torch.float64)
        g = torch.randn(n, self.lam_dim, generator=generator, dtype=torch.float64)
        return scale * g / self.x_train.shape[2] ** 0.5

    def features(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        z = x @ lam.reshape(self.rep_dim, -1).T
        return torch.tanh(z) if self.representation == "tanh" else z

    def heads(self, w: torch.Tensor) -> torch.Tensor:
        return w.reshape(self.n_tasks, -1, self.rep_dim)  # (T, ways, r)

    def row_loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """loss(s, y) of each row (the last axis holds the classes)."""
        if self.head == "logistic":
            return torch.logsumexp(scores, dim=-1) - (scores * y).sum(-1)
        return 0.5 * (scores - y).square().sum(-1)

    def data_loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ over tasks of the mean over rows of loss(s, y); scores, y of shape (T, n, ways)."""
        return self.row_loss(scores, y).mean(dim=1).sum()

    def rows_loss(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, lam: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The mean of loss(S_{t,r}, Y_{t,r}) over the rows idx of x, y (T, n, ·), row i = (i // n, i % n)."""
        task, row = idx // x.shape[1], idx % x.shape[1]
        z = self.features(x[task, row], lam)  # (b, r)
        scores = (self.heads(w)[task] @ z[:, :, None])[:, :, 0]  # (b, ways): each row by its task's head
        return self.row_loss(scores, y[task, row]).mean()

    @property
    def n_inner(self) -> int:
        """T·n: the training rows of all tasks."""
        return self.x_train.shape[0] * self.x_train.shape[1]

    @property
    def n_held_out(self) -> int:
        """T·n_v: the validation rows of all tasks."""
        return self.x_val.shape[0] * self.x_val.shape[1]

    def inner_loss_on(self, w, lam, idx):
        """(1/|idx|) Σ_{i∈idx} ℓᵢ, ℓᵢ = T·loss of row i + (β/2)‖w‖² (class docstring)."""
        return self.n_tasks * self.rows_loss(self.x_train, self.y_train, w, lam, idx) + 0.5 * self.beta * w.square().sum()

    def validation_loss_on(self, w, lam, idx):
        """(1/|idx|) Σ_{j∈idx} Eⱼ, Eⱼ the loss of validation row j."""
        return self.rows_loss(self.x_val, self.y_val, w, lam, idx)

    def inner_loss(self, w, lam):
        h = self.heads(w)
        scores = self.features(self.x_train, lam) @ h.transpose(1, 2)
        return self.data_loss(scores, self.y_train) + 0.5 * self.beta * h.square().sum()

    def inner_grad(self, w, lam):
        h = self.heads(w)
        z = self.features(self.x_train, lam)
        scores = z @ h.transpose(1, 2)
        link = torch.softmax(scores, dim=-1) if self.head == "logistic" else scores
        grad = (link - self.y_train).transpose(1, 2) @ z / z.shape[1] + self.beta * h
        return grad.reshape(-1)

    def newton_direction(self, w, g, lam):
        """∇₁²ℓ⁻¹g task by task: the Hessian is block-diagonal, one (ways·r)² block per task,
        (1/n) Σ_rows D_row ⊗ z zᵀ + βI with D = diag(p) − ppᵀ, p = softmax(s) (logistic) or
        D = I (ridge); exact, solved by batched LU."""
        z = self.features(self.x_train, lam)
        if self.head == "logistic":
            prob = torch.softmax(z @ self.heads(w).transpose(1, 2), dim=-1)
            curv = torch.diag_embed(prob) - prob[..., :, None] * prob[..., None, :]  # (T, n, ways, ways)
        else:
            ways = self.y_train.shape[2]
            curv = torch.eye(ways, dtype=z.dtype, device=z.device).expand(*z.shape[:2], ways, ways)
        blocks = torch.einsum("tnab,tnc,tne->tacbe", curv, z, z) / z.shape[1]
        size = blocks.shape[1] * blocks.shape[2]
        blocks = blocks.reshape(self.n_tasks, size, size) + self.beta * torch.eye(size, dtype=z.dtype, device=z.device)
        return torch.linalg.solve(blocks, g.reshape(self.n_tasks, size)).reshape(-1)

    def curvature_bounds(self, lam):
        z = self.features(self.x_train, lam)
        eig = torch.linalg.eigvalsh(z.transpose(1, 2) @ z / z.shape[1])  # (T, r)
        if self.head == "logistic":
            return 0.5 * eig.max() + self.beta, torch.full_like(eig.max(), self.beta)
        return eig.max() + self.beta, eig.min() + self.beta

    def outer(self, w, lam):
        scores = self.features(self.x_val, lam) @ self.heads(w).transpose(1, 2)
        return self.data_loss(scores, self.y_val) / self.n_tasks
