"""Superfluous information measured on real images: a lower bound beside the run's upper bound.

    from superinfo.tools.probe import probe_run
    result = probe_run("runs/c10", features="backbone")      # writes runs/c10/probe.json

**The lower bound.**  Every view records the parameters a of its augmentation (crop box, flip, colour-jitter
factors and order, grayscale, blur; ``superinfo.data.recorded``).  View 1's parameters a1 are drawn independently
of the image and of view 2, and z1 is a function of v1 alone (plus noise of its own).  Then

    I(z1;a1)  <=  I(z1;a1|v2)  <=  I(z1;v1|v2).

First inequality: I(a1;v2) = 0, so I(a1; z1,v2) = I(a1;v2) + I(a1;z1|v2) = I(z1;a1|v2), and I(a1; z1,v2) >=
I(a1;z1).  Second: given v2, a1 -> v1 -> z1 is a Markov chain (z1 sees a1 only through v1), so data processing holds
conditionally.  What it needs: a1 independent of (image, a2) — true of the pipeline; z1 computed from v1 alone — true
at evaluation (BatchNorm in eval mode); and an estimator whose expectation is a lower bound (InfoNCE, the default;
SMILE and the others are estimates).  So an MI lower bound between a representation and its own view's
augmentation parameters, on held-out views, is a lower bound on the superfluous information, for the backbone's
features h (what users evaluate) and for the head's z alike.

**The upper bound.**  The run's ``kl`` term, E KL(p(z1|v1) || p(z2|v2)), on held-out pairs of views: an upper bound
on I(z1;v1|v2) of the head's z.  It bounds nothing about h (h holds at least what z holds
about v1), so for backbone features ``upper_nats`` is ``None`` and ``upper_nats_head`` is given.

``per_parameter``: how well each parameter is decoded from the features of held-out images' views (a ridge
regression's R^2 for the continuous ones, a logistic regression's accuracy beside the majority rate for the
discrete ones), fitted on views of the training split.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from mi_toolkit import MIEstimateWarning, estimate
from mi_toolkit.atomic import write_json_atomically
from mi_toolkit.errors import ArgumentError
from mi_toolkit.validation import check_choice, check_int

from .. import data
from ..data.recorded import BINARY, PARAMETERS, RecordedAugmentation, parameter_vector
from ..objective import kl_conditional_bound
from ..trainer.config import resolve_device
from ..trainer.evaluate import load_run

__all__ = ["BRACKET_COLUMNS", "BRACKET_SETTINGS", "FEATURES", "PROBE_FILE", "augmentation_information",
           "bracket_columns", "parameter_decodability", "probe_model", "read_bracket",
           "probe_run"]

FEATURES = ("backbone", "head")
PROBE_FILE = "probe.json"
# what the demo and ``superinfo sweep --bracket`` measure: InfoNCE between the backbone features and the parameters of
# 4 recorded views of up to 2000 images per split (held out): on the digits demo 2 views of 1000 gave SimCLR
# 0.19 / 0.07 / -0.02 nats (seeds 0-2), 4 of 2000 gave 0.63 / 0.48 / 0.61 (stderr 0.06-0.10), 8 of 2000
# 0.95 / 0.86 / 0.92
BRACKET_SETTINGS = dict(features="backbone", estimator="infonce", images=2000, views=4)
# the table columns a bracket adds (a run's probe.json, or the demo's untrained network)
BRACKET_COLUMNS = ("superfluous_lower_nats", "superfluous_lower_stderr", "superfluous_upper_nats_head")


def bracket_columns(result: dict) -> dict:
    """probe.json's bracket as table columns (``BRACKET_COLUMNS``)."""
    return dict(zip(BRACKET_COLUMNS, (result["lower_nats"], result["lower_stderr"], result["upper_nats_head"])))


def read_bracket(run_dir, epoch: int | None = None) -> dict | None:
    """RUN_DIR/probe.json's bracket columns if it was measured on the backbone at checkpoint ``epoch`` (any epoch
    when None), else None."""
    path = Path(run_dir) / PROBE_FILE
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    if result.get("features") != "backbone" or (epoch is not None and result.get("checkpoint_epoch") != epoch):
        return None
    return bracket_columns(result)
DISCRETE = BINARY + ("jitter_order",)


@torch.no_grad()
def _views(model, images, augment: RecordedAugmentation, views: int, features: str, device, batch_size: int):
    """Features, parameter vectors and head posteriors of ``views`` recorded views of each image (view k of image i
    at row k * n + i)."""
    feats, params, means, logvars = [], [], [], []
    for _ in range(views):
        for start in range(0, len(images), batch_size):
            drawn = [augment(image) for image in images[start:start + batch_size]]
            x = torch.stack([v for v, _ in drawn]).to(device)
            h, post = model(x)
            feats.append((h if features == "backbone" else post.mean).float().cpu())
            means.append(post.mean.float().cpu())
            logvars.append(post.logvar.float().cpu())
            params.append(torch.stack([parameter_vector(p) for _, p in drawn]))
    return torch.cat(feats), torch.cat(params), torch.cat(means), torch.cat(logvars)


def augmentation_information(features: torch.Tensor, params: torch.Tensor, estimator: str = "infonce", *,
                             seed: int = 0, **estimate_kwargs) -> dict:
    """Held-out estimate of I(features; augmentation parameters) with ``mi_toolkit.estimate``: ``{"nats",
    "stderr", "train_nats", "warnings"}``.  For a lower-bound estimator it lower-bounds the superfluous
    information of the features (module docstring)."""
    with warnings.catch_warnings(record=True) as caught:    # in result.warnings (probe.json): not printed twice
        warnings.simplefilter("always", MIEstimateWarning)
        result = estimate(features, params, estimator, seed=seed, **estimate_kwargs)
    for w in caught:
        if not issubclass(w.category, MIEstimateWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return {"nats": result.mi, "stderr": result.stderr, "train_nats": result.train_mi,
            "direction": result.direction, "warnings": list(result.warnings)}


def parameter_decodability(train_x, train_params, test_x, test_params) -> dict:
    """Per parameter: R^2 of a ridge regression (continuous) or accuracy of a logistic regression next to the
    majority rate (discrete), fitted on the training views and scored on the held-out ones."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    xtr, xte = scaler.transform(train_x), scaler.transform(test_x)
    out = {}
    for k, name in enumerate(PARAMETERS):
        ytr, yte = train_params[:, k], test_params[:, k]
        if name == "jitter_order":      # only meaningful where jitter ran
            jitter = PARAMETERS.index("jitter")
            keep_tr, keep_te = train_params[:, jitter] > 0, test_params[:, jitter] > 0
            xtr_k, ytr, xte_k, yte = xtr[keep_tr], ytr[keep_tr], xte[keep_te], yte[keep_te]
        else:
            xtr_k, xte_k = xtr, xte
        if len(np.unique(ytr)) < 2 or len(yte) == 0:
            out[name] = {"constant": True}
            continue
        if name in DISCRETE:
            clf = LogisticRegression(max_iter=300).fit(xtr_k, ytr.astype(int))
            majority = float(np.mean(yte == np.bincount(ytr.astype(int)).argmax()))
            out[name] = {"accuracy": float(clf.score(xte_k, yte.astype(int))), "majority": majority}
        else:
            reg = RidgeCV(alphas=np.logspace(-3, 3, 7)).fit(xtr_k, ytr)
            out[name] = {"r2": float(reg.score(xte_k, yte))}
    return out


def probe_run(run_dir, *, features: str = "backbone", estimator: str = "infonce", images: int = 2000,
              views: int = 4, seed: int = 0, device: str = "auto", feature_batch_size: int = 256, data_root=None,
              write: bool = True, **estimate_kwargs) -> dict:
    """The superfluous-information bracket of a run (module docstring); writes RUN_DIR/probe.json."""
    check_choice(features, FEATURES, "features")
    started = time.perf_counter()
    dev = resolve_device(device)
    cfg, model, epoch = load_run(run_dir, dev)
    result = probe_model(model, cfg, features=features, estimator=estimator, images=images, views=views, seed=seed,
                         device=dev, feature_batch_size=feature_batch_size, data_root=data_root, **estimate_kwargs)
    result = {"run_dir": str(run_dir), "checkpoint_epoch": epoch, **result,
              "seconds": time.perf_counter() - started}
    if write:
        write_json_atomically(Path(run_dir) / PROBE_FILE, result)
    return result


def probe_model(model, cfg, *, features: str = "backbone", estimator: str = "infonce", images: int = 2000,
                views: int = 4, seed: int = 0, device="cpu", feature_batch_size: int = 256, data_root=None,
                **estimate_kwargs) -> dict:
    """The bracket of any ``SuperInfoModel`` (a trained run's, or an untrained one) on ``cfg``'s data set, with the
    augmentation of ``cfg``'s data preset: probe.json's fields, without the run's."""
    check_choice(features, FEATURES, "features")
    images, views = check_int(images, "images", 2), check_int(views, "views", 2)
    started = time.perf_counter()
    dev = torch.device(device)
    was_training = model.training
    model.eval()
    root = cfg.data_root if data_root is None else data_root
    preset = data.preset_for(cfg.dataset, cfg.image_size)
    splits = data.eval_splits(cfg.dataset, root)
    augment = RecordedAugmentation(preset)
    torch.manual_seed(seed)         # the recorded augmentation draws from torch's RNG, as the training pipeline does
    collected = []
    for split in splits:
        base = data.build_dataset(cfg.dataset, root, split, image_size=preset.image_size, verify=cfg.verify)
        rng = np.random.default_rng(seed)
        picked = rng.permutation(len(base))[:images]
        pil = [base[int(i)][0] for i in picked]
        collected.append(_views(model, pil, augment, views, features, dev, feature_batch_size))
    model.train(was_training)
    (train_f, train_p, _, _), (test_f, test_p, test_mu, test_lv) = collected
    lower = augmentation_information(torch.cat([train_f, test_f]), torch.cat([train_p, test_p]), estimator,
                                     seed=seed, **estimate_kwargs)
    n = len(test_mu) // views       # held-out pairs: views 1 and 2 of each held-out image
    upper_head = float(kl_conditional_bound(test_mu[:n], test_lv[:n], test_mu[n:2 * n], test_lv[n:2 * n]))
    result = {
        "dataset": cfg.dataset, "features": features,
        "feature_dim": int(train_f.shape[1]), "estimator": estimator, "direction": lower["direction"],
        "lower_nats": lower["nats"], "lower_stderr": lower["stderr"], "lower_train_nats": lower["train_nats"],
        "upper_nats": upper_head if features == "head" else None, "upper_nats_head": upper_head,
        "per_parameter": parameter_decodability(train_f.numpy(), train_p.numpy(), test_f.numpy(), test_p.numpy()),
        "parameters": list(PARAMETERS), "images_per_split": len(test_mu) // views, "views_per_image": views,
        "splits": list(splits), "warnings": lower["warnings"], "seconds": time.perf_counter() - started,
    }
    if not math.isfinite(result["lower_nats"]):
        result["warnings"].append("the lower bound's fit failed (nan): see the warnings above")
    return result


def format_bracket(result: dict) -> str:
    upper = result["upper_nats"]
    lines = [f"superfluous information of the {result['features']} features ({result['feature_dim']} dims):",
             f"  lower bound I(features; own view's augmentation) = {result['lower_nats']:.3f} ± "
             f"{result['lower_stderr']:.3f} nats ({result['estimator']}, held out)",
             "  upper bound (kl term, held-out pairs)          = "
             + (f"{upper:.3f} nats" if upper is not None else
                f"none for backbone features (the head's z: {result['upper_nats_head']:.3f} nats)")]
    for name, r in result["per_parameter"].items():
        if "r2" in r:
            lines.append(f"    {name:13s} R^2 {r['r2']:+.3f}")
        elif "accuracy" in r:
            lines.append(f"    {name:13s} accuracy {r['accuracy']:.3f} (majority {r['majority']:.3f})")
    lines += [f"  warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)


def _check_run(run_dir) -> Path:
    path = Path(run_dir)
    if not (path / "config.json").exists():
        raise ArgumentError(f"--run {run_dir} is not a run folder (no config.json)")
    return path
