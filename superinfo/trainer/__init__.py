"""The image trainer: settings and presets (``config``), the run folder (``run``: config.json, checkpoint.pt,
log.csv), models, optimisers, torch.distributed pieces, evaluation, and the loop (``loop``: one step read top to
bottom, then ``train`` and ``resume``).

    from superinfo.trainer import preset_config, train, resume
    cfg = preset_config("cifar10", data_root="data", out="runs/c10", lambda_a=0.1)
    train(cfg)                       # RUN_DIR/config.json, checkpoint.pt (each epoch), log.csv, eval.json
    resume("runs/c10")               # continues bit-exactly from the last completed epoch
"""
from .config import RESUME_OVERRIDABLE, RUN_PRESETS, RunPlan, TrainConfig, preset_config
from .evaluate import evaluate_model, evaluate_run, knn_top1, linear_top1
from .loop import NonFiniteLossError, Training, build_training, forward_backward, resume, train
from .run import LOG_COLUMNS, checkpoint_epoch, load_checkpoint, save_checkpoint

__all__ = [
    "LOG_COLUMNS", "RESUME_OVERRIDABLE", "RUN_PRESETS", "RunPlan", "NonFiniteLossError", "TrainConfig", "Training",
    "build_training", "checkpoint_epoch", "evaluate_model", "evaluate_run", "forward_backward", "knn_top1",
    "linear_top1", "load_checkpoint", "preset_config", "resume", "save_checkpoint", "train",
]
