"""The bi-level pieces of Liu et al. (IJCAI 2023), free of any model or data specifics.

    min_alpha  sum_i F_i(alpha, y_i*(alpha))   s.t.   y_i*(alpha) in argmin_y f_i(alpha, y)

F_i: task i's loss on a held-out batch (upper level), f_i: the same task's loss on a training batch
(lower level), alpha: the fusion network, y_i: task module i (visual critic, semantic network).

First-order hypergradient. The implicit-function theorem gives
    dF/dalpha = dF/dalpha|_direct - (d2f/dalpha dy) (d2f/dy2)^-1 dF/dy.
Replacing both second-derivative terms by their Gauss-Newton (outer-product) forms,
d2f/dy2 ~ g g^T and d2f/dalpha dy ~ g_alpha g^T with g = df/dy and g_alpha = df/dalpha, the product
collapses to a scalar projection and needs no second derivatives and no unrolling:
    h_i = dF_i/dalpha - c_i * df_i/dalpha,      c_i = <dF_i/dy, df_i/dy> / <df_i/dy, df_i/dy>.
`scale` multiplies c (the authors fold the lower level's learning rate in there; 1.0 = the formula).
The approximation is exact when y is one-dimensional and, in general, keeps the part of dF/dy that is
parallel to df/dy (see test_hypergradient.py for the bound and a check against an exact solve).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

Tensors = Sequence[torch.Tensor]


def _dot(a: Tensors, b: Tensors) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def norm(a: Tensors) -> torch.Tensor:
    """The Euclidean norm of a list of tensors taken as one vector (detached)."""
    return torch.sqrt(_dot(a, a)).detach()


def projection_coefficient(upper_grad_y: Tensors, lower_grad_y: Tensors, eps: float = 1e-12) -> torch.Tensor:
    """c = <dF/dy, df/dy> / ||df/dy||^2 (a detached scalar)."""
    return (_dot(upper_grad_y, lower_grad_y) / (_dot(lower_grad_y, lower_grad_y) + eps)).detach()


def first_order_hypergradient(
    upper_grad_alpha: Tensors,
    upper_grad_y: Tensors,
    lower_grad_alpha: Tensors,
    lower_grad_y: Tensors,
    scale: float = 1.0,
) -> tuple[list[torch.Tensor], float]:
    """h = dF/dalpha - scale * c * df/dalpha; returns (h per alpha tensor, c)."""
    c = projection_coefficient(upper_grad_y, lower_grad_y)
    h = [gu - scale * c * gl for gu, gl in zip(upper_grad_alpha, lower_grad_alpha)]
    return h, float(c)


def grads_or_zeros(loss: torch.Tensor, params: Tensors, retain_graph: bool = True) -> list[torch.Tensor]:
    """d loss / d params, with zeros for parameters the loss does not reach."""
    grads = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


class TaskWeights:
    """Dynamic weighted aggregation of the per-task hypergradients: h = sum_i w_i h_i.

    mode "random"    : the authors' choice, w = 0.5 * softmax(z), z ~ N(0, 1) drawn every update.
    mode "grad_norm" : w_i proportional to 1/||h_i|| so that no task's hypergradient drowns the other,
                       normalised to sum to 1 (gradient balancing).
    mode "loss_rate" : dynamic weight average (Liu et al., CVPR 2019): w = softmax(r / T) with
                       r_i = F_i(t-1) / F_i(t-2); a task whose held-out loss stalls gets more weight.
    mode "equal"     : w_i = 1/n (the ablation baseline).
    """

    MODES = ("random", "grad_norm", "loss_rate", "equal")

    def __init__(self, mode: str, num_tasks: int, temperature: float = 2.0, generator: torch.Generator | None = None):
        if mode not in self.MODES:
            raise ValueError(f"aggregation mode must be one of {self.MODES}, got {mode!r}")
        self.mode, self.num_tasks, self.temperature = mode, num_tasks, temperature
        self.generator = generator
        self.loss_history: list[list[float]] = []

    def __call__(self, hypergrads: list[list[torch.Tensor]], upper_losses: list[float]) -> torch.Tensor:
        self.loss_history = (self.loss_history + [list(upper_losses)])[-2:]
        n = self.num_tasks
        if self.mode == "random":
            return 0.5 * torch.softmax(torch.randn(n, generator=self.generator), dim=0)
        if self.mode == "grad_norm":
            norms = torch.stack([norm(h) for h in hypergrads]).cpu()
            inv = 1.0 / norms.clamp_min(1e-12)
            return inv / inv.sum()
        if self.mode == "loss_rate" and len(self.loss_history) == 2:
            prev, last = (torch.tensor(x) for x in self.loss_history)
            return torch.softmax((last / prev.clamp_min(1e-12)) / self.temperature, dim=0)
        return torch.full((n,), 1.0 / n)

    def state_dict(self) -> dict:
        return {"loss_history": self.loss_history, "generator": None if self.generator is None else self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.loss_history = state["loss_history"]
        if self.generator is not None and state["generator"] is not None:
            self.generator.set_state(state["generator"])


def aggregate(hypergrads: list[list[torch.Tensor]], weights: torch.Tensor) -> list[torch.Tensor]:
    """sum_i w_i h_i, tensor by tensor."""
    return [sum(float(w) * h[j] for w, h in zip(weights, hypergrads)) for j in range(len(hypergrads[0]))]
