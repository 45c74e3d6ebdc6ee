"""The SuperInfo objective (arXiv 2408.10292) and the multi-view world where it is checked against exact truth.

    from superinfo import GaussianPosteriorHead, SuperInfoLoss
    head1, head2 = GaussianPosteriorHead(10, 8), GaussianPosteriorHead(10, 8)
    loss = SuperInfoLoss(z_dim=8, lambda_a=0.1, conditional="kl")      # lambda = 0: plain NT-Xent (SimCLR)
    terms = loss(head1(v1), head2(v2)); terms.total.backward()          # terms.mi_lower, .superfluous_a, ...

    from superinfo.world import run_world, run_sweep                    # the experiment (CLI: superinfo world)
    from superinfo.train import preset_config, train, resume            # the trainer (CLI: superinfo train)
    # (``train`` is not re-exported here: it would shadow the ``superinfo.train`` module)
    from superinfo.evaluate import evaluate_run                         # linear / kNN (CLI: superinfo eval)
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

# The trainer (models, optimisers, loop, evaluation); importing them is cheap (torchvision blocks only).
from .evaluate import evaluate_model, evaluate_run, knn_top1, linear_top1  # noqa: E402
from .models import SuperInfoModel, build_backbone, build_model  # noqa: E402
from .optim import LARS, WarmupCosine  # noqa: E402
from .train import NonFiniteLossError, TrainConfig, preset_config  # noqa: E402

__all__ += [
    "LARS", "NonFiniteLossError", "SuperInfoModel", "TrainConfig", "WarmupCosine", "build_backbone", "build_model",
    "evaluate_model", "evaluate_run", "knn_top1", "linear_top1", "preset_config",
]
