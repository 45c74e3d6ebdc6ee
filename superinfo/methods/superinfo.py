"""SuperInfo (arXiv 2408.10292): NT-Xent on posterior samples z = mean + sigma * eps, plus lambda_a, lambda_b times
the upper bounds on the superfluous informations I(v1;z1|v2), I(v2;z2|v1).  At lambda = 0 it is noisy SimCLR: what
the noise alone does, measured against ``simclr``."""
from .base import Method

METHOD = Method("superinfo", "NT-Xent on noisy z plus lambda times the superfluous terms (lambda = 0: noisy SimCLR)",
                deterministic=False, penalised=True)
