"""Optimisers and schedules for the SuperInfo trainer: LARS (bias/norm exclusion) and a per-step warm-up + cosine
learning-rate schedule whose state saves and restores exactly."""
from __future__ import annotations

import math

import torch
from mi_toolkit.errors import ArgumentError

__all__ = ["LARS", "WarmupCosine", "build_optimizer", "param_groups"]


def param_groups(modules, weight_decay: float, exclude_bias_and_norm: bool = True) -> list[dict]:
    """Two groups: weights (decayed, LARS-adapted) and biases/norm parameters (every tensor with ndim <= 1:
    no weight decay, ``lars_exclude=True``).  Duplicated parameters are kept once."""
    seen, decay, no_decay = set(), [], []
    for module in modules:
        for p in module.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if exclude_bias_and_norm and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lars_exclude": False}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True})
    return groups


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as in SimCLR: SGD with momentum where each weight tensor's update is scaled by the
    trust ratio ``eta * ||w|| / ||g + wd * w||``.  Groups with ``lars_exclude=True`` (biases, BatchNorm) get
    neither weight decay nor adaptation."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3,
                 nesterov: bool = False):
        if lr < 0:
            raise ArgumentError(f"lr must be >= 0, got {lr}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, nesterov=nesterov,
                        lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, mom, eta, exclude = group["weight_decay"], group["momentum"], group["eta"], group["lars_exclude"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not exclude:
                    if wd != 0:
                        g = g.add(p, alpha=wd)
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm, torch.ones_like(w_norm))
                    g = g * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    buf = state["momentum_buffer"] = g.clone().detach()
                else:
                    buf = state["momentum_buffer"]
                    buf.mul_(mom).add_(g)
                update = g.add(buf, alpha=mom) if group["nesterov"] else buf
                p.add_(update, alpha=-group["lr"])
        return loss


def build_optimizer(name: str, modules, lr: float, weight_decay: float, momentum: float = 0.9):
    """``adam`` (decay on weights only), ``adamw``, ``sgd`` or ``lars`` over the parameters of ``modules``."""
    groups = param_groups(modules, weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    raise ArgumentError(f"unknown optimizer {name!r}; valid: adam, adamw, sgd, lars")


class WarmupCosine:
    """Per-step schedule: linear warm-up from 0 to each group's base lr over ``warmup_steps``, then cosine decay to
    ``final_factor * base``.  Call ``step()`` after each optimiser step; ``state_dict``/``load_state_dict`` restore
    it exactly.  The current factor is applied on construction (step 0)."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                 final_factor: float = 0.0):
        if total_steps < 1:
            raise ArgumentError(f"total_steps must be >= 1, got {total_steps}")
        self.optimizer = optimizer
        self.total_steps, self.warmup_steps, self.final_factor = int(total_steps), int(warmup_steps), final_factor
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for g, base in zip(optimizer.param_groups, self.base_lrs):
            g["initial_lr"] = base
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.final_factor + (1 - self.final_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    def _apply(self):
        f = self.factor(self.last_step)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f

    def step(self, advance: bool = True):
        """Advance one step (``advance=False``: re-apply the current factor, e.g. after changing total_steps)."""
        self.last_step += int(advance)
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "final_factor": self.final_factor, "base_lrs": list(self.base_lrs), "last_step": self.last_step}

    def load_state_dict(self, state: dict):
        self.total_steps, self.warmup_steps = state["total_steps"], state["warmup_steps"]
        self.final_factor, self.base_lrs, self.last_step = state["final_factor"], list(state["base_lrs"]), state["last_step"]
        self._apply()
