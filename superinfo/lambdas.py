"""How lambda moves during training: a schedule (hold at 0, then ramp to the target) and automatic lambda.

Why a schedule: near zero signal the true I(z1;z2) of a head grows like c^4 in its gain c while the superfluous
term grows like c^2, so the collapsed head (z independent of v) is a strict local minimum of the loss for every
lambda > 0, and an untrained head starts inside its basin.  Holding lambda at 0 first lets the contrastive term
build the signal; the ramp then brings the penalty in gradually (as the Multi-View Information Bottleneck code
does with its beta schedule).

Automatic lambda (``lambda_a="auto"``) is a constrained problem: make the superfluous term U as small as possible
subject to the contrastive estimate I staying within a unit-free slack of the level I_ref it reached before the
penalty started,

    minimise U   subject to   I >= (1 - slack) * I_ref,

solved by dual ascent on log lambda after the warm-up (I_ref, U_ref: averages over the warm-up's last steps):

    log lambda  +=  rate / T * min(slack, (I_avg - (1 - slack) * I_ref) / |I_ref|)   (clamped to lambda_0 * [1e-3, 1e6])

over the T steps after the warm-up, starting from lambda_0 = start_fraction * |I_ref| / U_ref: the rate is per
run, not per step, so one setting serves 300 steps and 300,000.  The surplus is capped at the slack: where the
estimate still climbs after the warm-up (a short run, digits) the reference is stale, and an uncapped surplus
raised lambda by ~0.5 a step into a collapse / recovery cycle; capped, lambda can grow at most e^(rate * slack)
= e^5 times over the run, and only while the estimate holds.  Everything that sets lambda's scale is a ratio of the
run's own terms, so multiplying U by c gives lambda / c and the same training (tested).  Collapse guard: while
I_avg < (1 - 3 * slack) * I_ref, lambda shrinks at least 10% a step.  The state (lambda, references, running means,
how many warm-up steps were averaged) is a module's buffers: it is checkpointed, and a resumed run is
bit-identical.  Every update is a tensor operation on the device: no host read per step.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mi_toolkit.errors import ArgumentError
from mi_toolkit.validation import check_int, check_number

__all__ = ["AUTO", "RAMP_SHAPES", "AutoLambda", "LambdaSchedule", "lambda_weights"]

AUTO = "auto"
DEFAULT_SLACK = 0.05        # keep 95% of the contrastive estimate: a cost the linear probe barely registers
DEFAULT_RATE = 100.0        # per run: a surplus of 5% held throughout multiplies lambda by e^5
DEFAULT_START_FRACTION = 0.01   # the penalty starts at 1% of the contrastive estimate
REFERENCE_DECAY = 0.05      # running means: about the last 20 steps


RAMP_SHAPES = ("linear", "exponential")
EXPONENTIAL_START = 1e-3    # an exponential ramp starts at this fraction of the target (MIB's code: 1e-3 -> 1)


class LambdaSchedule:
    """lambda(step) = 0 for ``warmup_steps`` steps, then a ramp over ``ramp_steps`` to ``target``: ``linear``, or
    ``exponential`` (from ``EXPONENTIAL_START * target``, a constant factor per step: the MIB code's beta)."""

    def __init__(self, target: float, warmup_steps: int, ramp_steps: int, shape: str = "linear"):
        self.target = check_number(target, "lambda", nonnegative=False)
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", 0)
        self.ramp_steps = check_int(ramp_steps, "ramp_steps", 0)
        if shape not in RAMP_SHAPES:
            raise ArgumentError(f"unknown ramp shape {shape!r}; valid: {', '.join(RAMP_SHAPES)}")
        self.shape = shape

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps or self.target == 0.0:
            return 0.0
        if self.ramp_steps == 0:
            return self.target
        progress = min(1.0, (step - self.warmup_steps + 1) / self.ramp_steps)
        if self.shape == "exponential":
            return self.target * EXPONENTIAL_START ** (1.0 - progress)
        return self.target * progress

    def __repr__(self) -> str:
        return (f"LambdaSchedule(target={self.target:g}, warmup_steps={self.warmup_steps}, ramp_steps={self.ramp_steps}"
                f", shape={self.shape!r})")


class AutoLambda(nn.Module):
    """Automatic lambda by dual ascent (module docstring).  ``value(step)`` is 0.0 during the warm-up and a 0-dim
    tensor afterwards; ``update(step, mi, superfluous)`` takes the step's contrastive estimate and superfluous term
    (0-dim tensors, detached inside) and moves the multiplier."""

    def __init__(self, warmup_steps: int, total_steps: int, slack: float = DEFAULT_SLACK, rate: float | None = None,
                 start_fraction: float = DEFAULT_START_FRACTION, device=None):
        super().__init__()
        self.warmup_steps = check_int(warmup_steps, "lambda warm-up steps", 1)
        self.total_steps = check_int(total_steps, "total steps", self.warmup_steps + 1)
        rate = DEFAULT_RATE if rate is None else rate
        self.slack = check_number(slack, "lambda_slack", positive=True)
        if self.slack >= 1:
            raise ArgumentError(f"lambda_slack must be in (0, 1) (a fraction of the contrastive estimate), got {slack}")
        self.rate = check_number(rate, "rate", positive=True)
        self.start_fraction = check_number(start_fraction, "start_fraction", positive=True)
        for name in ("log_lambda", "log_lambda_0", "mi_ref", "sup_ref", "mi_avg", "sup_avg", "averaged"):
            self.register_buffer(name, torch.zeros((), dtype=torch.float64, device=device))

    def value(self, step: int):
        return 0.0 if step < self.warmup_steps else self.log_lambda.exp().float()

    @torch.no_grad()
    def update(self, step: int, mi: torch.Tensor, superfluous: torch.Tensor) -> None:
        mi, sup = mi.detach().double(), superfluous.detach().double()
        first = self.averaged == 0
        rate = REFERENCE_DECAY
        self.mi_avg.copy_(torch.where(first, mi, self.mi_avg + rate * (mi - self.mi_avg)))
        self.sup_avg.copy_(torch.where(first, sup, self.sup_avg + rate * (sup - self.sup_avg)))
        self.averaged += 1
        if step + 1 < self.warmup_steps:
            return
        if step + 1 == self.warmup_steps:       # the last warm-up step: the references, and lambda_0
            self.mi_ref.copy_(self.mi_avg)
            self.sup_ref.copy_(self.sup_avg)
            scale = self.mi_ref.abs().clamp_min(1e-12) / self.sup_ref.abs().clamp_min(1e-12)
            self.log_lambda.copy_((self.start_fraction * scale).log())
            self.log_lambda_0.copy_(self.log_lambda)
            return
        reference = self.mi_ref.abs().clamp_min(1e-12)
        surplus = ((self.mi_avg - (1 - self.slack) * self.mi_ref) / reference).clamp_max(self.slack)
        step_size = self.rate / (self.total_steps - self.warmup_steps) * surplus
        collapsing = self.mi_avg < (1 - 3 * self.slack) * self.mi_ref
        step_size = torch.where(collapsing, step_size.clamp_max(math.log(0.9)), step_size)
        self.log_lambda.copy_(torch.minimum(torch.maximum(self.log_lambda + step_size,
                                                          self.log_lambda_0 - math.log(1e3)),
                                            self.log_lambda_0 + math.log(1e6)))

    def extra_repr(self) -> str:
        return (f"warmup_steps={self.warmup_steps}, total_steps={self.total_steps}, slack={self.slack:g}, "
                f"rate={self.rate:g}")


def lambda_weights(lambda_a: float, lambda_b: float, auto: bool, warmup_steps: int, ramp_steps: int,
                   total_steps: int, slack: float = DEFAULT_SLACK, device=None, shape: str = "linear"):
    """How lambda moves over a run of ``total_steps``: ``(schedules, controller)``.  ``schedules`` is the pair
    (lambda_a(step), lambda_b(step)), or None when both lambdas are 0 (plain NT-Xent: nothing scheduled);
    ``controller`` is the ``AutoLambda`` behind both when ``auto`` (its ``update`` moves them), else None."""
    if auto:
        warmup_steps = max(1, warmup_steps)     # a run too short for a warm-up still gets one step of it
        controller = AutoLambda(warmup_steps, max(total_steps, warmup_steps + 1), slack=slack, device=device)
        return (controller.value, controller.value), controller
    if lambda_a == 0.0 and lambda_b == 0.0:
        return None, None
    schedules = tuple(LambdaSchedule(target, warmup_steps, ramp_steps, shape) for target in (lambda_a, lambda_b))
    return schedules, None
