"""Offline evaluation of a trained encoder on frozen backbone features: a linear classifier (multinomial logistic
regression, Adam with a cosine schedule, on standardised features), kNN (k=200, cosine similarity, votes
weighted by exp(similarity / temperature), as in Wu et al. 2018 / SimCLR repos) and ``logreg``, the protocol of
SimCLR's appendix (L-BFGS to convergence, L2 chosen on a validation split; ``superinfo.trainer.logreg``).  Each
result has ``top1_ci95``, the 95 % bootstrap interval over test images.  All write RUN_DIR/eval.json:

    {"protocol": "knn", "top1": 0.83, "settings": {...}, "n_train": ..., "n_test": ..., "results": {"knn": ...,
     "linear": ...}}

``top1`` is a fraction in [0, 1]; ``results`` keeps the latest result of each protocol run on this folder.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mi_toolkit.atomic import write_json_atomically

from mi_toolkit.errors import ArgumentError
from .. import data
from .config import TrainConfig, resolve_device
from .logreg import L2_GRID, VAL_FRACTION, bootstrap_ci, logreg_top1
from .run import CHECKPOINT, load_checkpoint

__all__ = ["EVAL_PROTOCOLS", "LINEAR_LR", "PROTOCOLS", "check_evaluable", "evaluate_model", "evaluate_run",
           "extract_features", "knn_correct", "knn_top1", "linear_top1",
           "load_run", "model_from_checkpoint", "write_eval"]

PROTOCOLS = ("linear", "knn")     # what a sweep and the demo run by default
# every protocol ``evaluate_model`` / ``superinfo eval`` take: also ``logreg``, the L-BFGS logistic regression of
# SimCLR's appendix with its L2 chosen on a validation split (superinfo.trainer.logreg)
EVAL_PROTOCOLS = PROTOCOLS + ("logreg",)
EVAL_FILE = "eval.json"
# Adam at 1e-3 for 100 epochs underfit: on digits' raw pixels it reached 90.5 % (train 94.5 %) where scikit-learn's
# converged logistic regression reaches 95.5 %; at 1e-2 it reaches 95.0 % (tests/test_evaluate.py checks this)
LINEAR_LR = 1e-2


@torch.no_grad()
def extract_features(model: nn.Module, dataset, *, batch_size: int = 256, device="cpu", num_workers: int = 0,
                     channels_last: bool = False):
    """``(features [N, D] float32 on CPU, labels [N] int64)`` from ``model.encode`` (or ``model``) in eval mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    encode = getattr(model, "encode", model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    feats, labels = [], []
    amp = device.type == "cuda"
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            f = encode(x)
        feats.append(f.float().cpu())
        labels.append(torch.as_tensor(y).long().cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def knn_top1(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor, **kw) -> float:
    """Weighted kNN accuracy (``knn_correct``'s mean)."""
    return float(knn_correct(train_f, train_y, test_f, test_y, **kw).double().mean())


def knn_correct(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor, *,
                k: int = 200, temperature: float = 0.1, num_classes: int | None = None, chunk: int = 1024,
                device="cpu") -> torch.Tensor:
    """Whether each test image is classified right by the weighted kNN: the k nearest training features by cosine
    similarity vote for their class with weight exp(sim / temperature); k is capped at the training set size."""
    if k < 1 or temperature <= 0:
        raise ArgumentError(f"need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    device = torch.device(device)
    c = int(num_classes if num_classes is not None else max(int(train_y.max()), int(test_y.max())) + 1)
    k = min(k, train_f.shape[0])
    tr = F.normalize(train_f.float(), dim=1).to(device)
    ty = train_y.to(device)
    correct = []
    for start in range(0, test_f.shape[0], chunk):
        q = F.normalize(test_f[start:start + chunk].float(), dim=1).to(device)
        sim, idx = (q @ tr.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], c, device=device).scatter_add_(1, ty[idx], weights)
        correct.append(votes.argmax(1).cpu() == test_y[start:start + chunk])
    return torch.cat(correct)


def linear_top1(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor, *,
                epochs: int = 100, lr: float = LINEAR_LR, weight_decay: float = 0.0, batch_size: int = 256,
                num_classes: int | None = None, seed: int = 0, device="cpu") -> dict:
    """Logistic regression on standardised frozen features (mean/std of the training set); Adam, cosine lr over
    ``epochs``.  Returns ``{"top1": test accuracy, "train_top1": ...}``."""
    device = torch.device(device)
    c = int(num_classes if num_classes is not None else max(int(train_y.max()), int(test_y.max())) + 1)
    mean, std = train_f.mean(0, keepdim=True), train_f.std(0, keepdim=True).clamp_min(1e-6)
    xtr, xte = ((train_f - mean) / std).to(device), ((test_f - mean) / std).to(device)
    ytr = train_y.to(device)
    g = torch.Generator().manual_seed(seed)
    clf = nn.Linear(xtr.shape[1], c).to(device)
    with torch.no_grad():   # seeded init, independent of the global RNG
        bound = 1 / math.sqrt(xtr.shape[1])
        clf.weight.copy_(torch.empty(clf.weight.shape).uniform_(-bound, bound, generator=g))
        clf.bias.zero_()
    opt = torch.optim.Adam(clf.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(xtr.shape[0] / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    for _ in range(epochs):
        perm = torch.randperm(xtr.shape[0], generator=g).to(device)
        for start in range(0, xtr.shape[0], batch_size):
            idx = perm[start:start + batch_size]
            loss = F.cross_entropy(clf(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        train_acc = float((clf(xtr).argmax(1).cpu() == train_y).float().mean())
        correct = clf(xte).argmax(1).cpu() == test_y
    return {"top1": float(correct.float().mean()), "top1_ci95": bootstrap_ci(correct, seed=seed),
            "train_top1": train_acc}


def evaluate_model(model: nn.Module, train_ds, test_ds, protocol: str, *, device="cpu", k: int = 200,
                   temperature: float = 0.1, linear_epochs: int = 100, linear_lr: float = LINEAR_LR,
                   linear_weight_decay: float = 0.0, batch_size: int = 256, num_workers: int = 0, seed: int = 0,
                   channels_last: bool = False) -> dict:
    """Run ``protocol`` (``linear`` or ``knn``) on frozen ``model.encode`` features; returns the eval.json dict."""
    if protocol not in EVAL_PROTOCOLS:
        raise ArgumentError(f"unknown protocol {protocol!r}; valid: {', '.join(EVAL_PROTOCOLS)}")
    kw = dict(batch_size=batch_size, device=device, num_workers=num_workers, channels_last=channels_last)
    train_f, train_y = extract_features(model, train_ds, **kw)
    test_f, test_y = extract_features(model, test_ds, **kw)
    if int(train_y.min()) < 0:
        raise ArgumentError("the evaluation training set has unlabelled images (label < 0)")
    notes = check_evaluable(train_y, test_y)
    c = max(int(train_y.max()), int(test_y.max())) + 1
    if protocol == "knn":
        settings = {"k": k, "temperature": temperature, "similarity": "cosine", "weighting": "exp(sim/T)"}
        correct = knn_correct(train_f, train_y, test_f, test_y, k=k, temperature=temperature, num_classes=c,
                              device=device)
        result = {"top1": float(correct.double().mean()), "top1_ci95": bootstrap_ci(correct, seed=seed)}
    elif protocol == "logreg":
        settings = {"solver": "L-BFGS, full batch, to convergence", "features": "backbone, standardised",
                    "l2": "chosen on a class-stratified validation split of the training split "
                          f"({VAL_FRACTION:.0%}), then refitted on all of it", "l2_grid": list(L2_GRID),
                    "protocol": "SimCLR appendix B.5 (Kornblith et al. 2019)"}
        result = logreg_top1(train_f, train_y, test_f, test_y, num_classes=c, seed=seed)
    else:
        settings = {"epochs": linear_epochs, "lr": linear_lr, "weight_decay": linear_weight_decay,
                    "batch_size": batch_size, "optimizer": "adam", "schedule": "cosine",
                    "features": "backbone, standardised", "seed": seed}
        result = linear_top1(train_f, train_y, test_f, test_y, epochs=linear_epochs, lr=linear_lr,
                             weight_decay=linear_weight_decay, batch_size=batch_size, num_classes=c, seed=seed,
                             device=device)
    return {"protocol": protocol, **result, "settings": settings, "n_train": int(train_f.shape[0]),
            "n_test": int(test_f.shape[0]), "feature_dim": int(train_f.shape[1]), "num_classes": c,
            **({"warnings": notes} if notes else {})}


def check_evaluable(train_y: torch.Tensor, test_y: torch.Tensor) -> list[str]:
    """Refuses an evaluation whose top-1 means nothing (one class: 100 % by construction) and warns where it means
    less than it seems (a class on one side of the split only); returns the warnings for eval.json."""
    train_classes, test_classes = set(train_y.unique().tolist()), set(test_y.unique().tolist())
    if len(train_classes | test_classes) < 2:
        raise ArgumentError(f"the evaluation data hold one class ({sorted(train_classes | test_classes)}): top-1 "
                            "would be 100 % by construction; evaluate on a data set with at least two classes")
    notes = []
    if test_classes - train_classes:
        notes.append(f"classes {sorted(test_classes - train_classes)} have test images but no training image: "
                     "those images can never be classified right")
    if train_classes - test_classes:
        notes.append(f"classes {sorted(train_classes - test_classes)} have no test image (a class of one image "
                     "stays on the training side of a holdout): the top-1 does not measure them")
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return notes


def write_eval(run_dir, result: dict) -> Path:
    """Write ``result`` as RUN_DIR/eval.json (atomically), keeping earlier results of other protocols under
    ``results``."""
    path = Path(run_dir) / EVAL_FILE
    results = {}
    if path.exists():
        try:
            results = json.loads(path.read_text()).get("results", {})
        except (ValueError, AttributeError):
            results = {}
    results[result["protocol"]] = {k: v for k, v in result.items() if k != "results"}
    return write_json_atomically(path, dict(result, results=results), sort_keys=True)


def model_from_checkpoint(state: dict):
    """``(TrainConfig, model)``: the run's model (on the CPU) with the checkpoint's weights."""
    cfg = TrainConfig.from_dict(state["config"])
    model = cfg.build_model()
    model.load_state_dict(state["model"])
    return cfg, model


def load_run(run_dir, device="cpu"):
    """``(TrainConfig, model, checkpoint_epoch)`` from RUN_DIR/checkpoint.pt."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise ArgumentError(f"{run_dir} has no {CHECKPOINT}")
    state = load_checkpoint(path, map_location="cpu")
    cfg, model = model_from_checkpoint(state)
    return cfg, model.to(device), int(state["epoch"])


def evaluate_run(run_dir, protocol: str, *, dataset: str | None = None, data_root: str | None = None,
                 eval_data=None, device: str = "auto", **kwargs) -> dict:
    """Load RUN_DIR's checkpoint, evaluate with ``protocol`` on ``dataset``/``data_root`` (default: the run's own),
    write and return eval.json.  ``eval_data=(train_ds, test_ds)`` bypasses ``superinfo.data``."""
    dev = resolve_device(device)
    cfg, model, epoch = load_run(run_dir, dev)
    if dataset is not None:
        cfg = dataclasses.replace(cfg, dataset=dataset)
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data_root=data_root)
    if eval_data is None:
        _, eval_data = data.load_datasets(cfg, eval_too=True, pretrain=False)
    if kwargs.pop("strict_k", False) and protocol == "knn" and kwargs.get("k", 0) > len(eval_data[0]):
        raise ArgumentError(f"--k {kwargs['k']} is larger than the {len(eval_data[0])} training images of "
                            f"{cfg.dataset}; pick k <= {len(eval_data[0])}")
    if dev.type == "cuda":      # channels-last where it pays (the run's own choice was for its training device)
        model = model.to(memory_format=torch.channels_last)
    kwargs.setdefault("num_workers", 0 if dev.type == "cpu" else cfg.num_workers)
    result = evaluate_model(model, *eval_data, protocol, device=dev, seed=cfg.seed,
                            channels_last=dev.type == "cuda", **kwargs)
    result.update(checkpoint_epoch=epoch, dataset=cfg.dataset, run_dir=str(run_dir))
    write_eval(run_dir, result)
    return result
