"""The alignment control: deterministic NT-Xent on the means plus the same lambda-weighted conditional term.  With a
fixed sigma and means on the sphere the kl term is (lambda_a + lambda_b)(1 - cos(mu1, mu2)) / sigma^2, an alignment
loss (Wang & Isola 2020); a SuperInfo gain that this control matches at the same lambda comes from re-weighting the
positive pair, not from removing information through the noise."""
from .base import Method

METHOD = Method("align", "deterministic NT-Xent plus the same lambda-weighted term on the means (the control for "
                "superinfo's penalty)", deterministic=True, penalised=True)
