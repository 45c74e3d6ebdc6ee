"""What a method is, in the settings it fixes (the loss itself is ``superinfo.objective.SuperInfoLoss``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """``deterministic``: the contrastive term scores the head's means, not posterior samples.  ``penalised``: it
    takes lambda (the conditional terms' weight); when not, lambda must be 0.  ``symmetric_beta``: lambda_a is a
    total weight beta split evenly over the two KL directions (MIB's symmetrised KL), lambda_b is not given.
    ``ramp``: the default shape of lambda's ramp after the warm-up ("linear" or "exponential")."""

    name: str
    help: str
    deterministic: bool
    penalised: bool
    symmetric_beta: bool = False
    ramp: str = "linear"
    conditionals: tuple = ("kl", "club")
