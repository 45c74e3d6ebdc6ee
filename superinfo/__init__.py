"""The SuperInfo objective (arXiv 2408.10292) and the multi-view world where it is checked against exact truth.

    from superinfo import GaussianPosteriorHead, SuperInfoLoss
    head1, head2 = GaussianPosteriorHead(10, 8), GaussianPosteriorHead(10, 8)
    loss = SuperInfoLoss(z_dim=8, lambda_a=0.1, conditional="kl")      # lambda = 0: plain NT-Xent (SimCLR)
    terms = loss(head1(v1), head2(v2)); terms.total.backward()          # terms.mi_lower, .superfluous_a, ...

    from superinfo.world import run_world, run_sweep                    # the experiment (CLI: superinfo world)
"""
from .objective import (
    CONDITIONAL_BOUNDS,
    GaussianPosterior,
    GaussianPosteriorHead,
    SuperInfoLoss,
    SuperInfoTerms,
    club_conditional_bound,
    cosine_similarity_scores,
    kl_conditional_bound,
    ntxent_loss,
)

__all__ = [
    "CONDITIONAL_BOUNDS", "GaussianPosterior", "GaussianPosteriorHead", "SuperInfoLoss", "SuperInfoTerms",
    "club_conditional_bound", "cosine_similarity_scores", "kl_conditional_bound", "ntxent_loss",
]
