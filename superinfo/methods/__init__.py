"""Training methods by name (``--method``), each one small module saying what it is and what it is the control for:

* ``simclr``: NT-Xent on the head's means, deterministic (SimCLR; no posterior noise, no penalty);
* ``superinfo``: NT-Xent on noisy z = mean + sigma * eps plus lambda_a, lambda_b times the superfluous terms (at
  lambda = 0: noisy SimCLR, the control for the noise);
* ``align``: deterministic NT-Xent plus the same lambda-weighted conditional term on the means (the control for
  "removes superfluous information" against "re-weights the positive pair");
* ``mib``: the Multi-View Information Bottleneck (Federici et al. 2020): noisy z, beta = --lambda-a times the
  symmetric KL between the views' posteriors, beta raised exponentially after the warm-up.

Adding a method is one module here and one line of ``METHODS``.
"""
from __future__ import annotations

from .base import Method
from .align import METHOD as ALIGN
from .mib import METHOD as MIB
from .simclr import METHOD as SIMCLR
from .superinfo import METHOD as SUPERINFO

__all__ = ["METHODS", "Method"]

METHODS: dict[str, Method] = {m.name: m for m in (SIMCLR, SUPERINFO, ALIGN, MIB)}
