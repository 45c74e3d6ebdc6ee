"""The SuperInfo objective (arXiv 2408.10292) and the multi-view world where it is checked against exact truth.

    from superinfo import GaussianPosteriorHead, SuperInfoLoss
    head1, head2 = GaussianPosteriorHead(10, 8), GaussianPosteriorHead(10, 8)
    loss = SuperInfoLoss(z_dim=8, lambda_a=0.1, conditional="kl")      # lambda = 0: plain NT-Xent (SimCLR)
    terms = loss(head1(v1), head2(v2)); terms.total.backward()          # terms.mi_lower, .superfluous_a, ...

    from superinfo.world import run_world, run_sweep                    # the experiment (CLI: superinfo world)
    from superinfo.trainer import preset_config, train, resume          # the trainer (CLI: superinfo train)
    from superinfo.trainer import evaluate_run                          # linear / kNN (CLI: superinfo eval)

Layout: ``objective`` and ``world`` (the method and its exact-truth check) at the top; ``trainer/`` (config,
run folder, models, optimisers, distributed, evaluation, the loop); ``data/`` (augmentations, data sets, integrity
checks); ``tools/`` (sweep, demo, analysis, export, transfer: consumers of run folders); ``cli``.
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

# The trainer (models, optimisers, loop, evaluation) is imported on first use: it pulls in torchvision, seconds of
# start-up that the objective and the multi-view world (notebooks, ``superinfo world``) do not need.
_TRAINER = {
    "evaluate_model": "trainer.evaluate", "evaluate_run": "trainer.evaluate", "knn_top1": "trainer.evaluate",
    "linear_top1": "trainer.evaluate", "SuperInfoModel": "trainer.models", "build_backbone": "trainer.models",
    "build_model": "trainer.models", "LARS": "trainer.optim", "WarmupCosine": "trainer.optim",
    "NonFiniteLossError": "trainer.loop", "TrainConfig": "trainer.config", "preset_config": "trainer.config",
}
__all__ += sorted(_TRAINER)


def __getattr__(name: str):
    if name in _TRAINER:
        import importlib

        value = getattr(importlib.import_module(f".{_TRAINER[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'superinfo' has no attribute {name!r}")
