"""The run folder: ``config.json`` (the settings), ``checkpoint.pt`` (everything with state, written atomically at
the end of each epoch) and ``log.csv`` (every logged interval).

A checkpoint holds model, loss-module (critic) and probe weights, every optimiser, the schedule, the grad scaler,
epoch/step counters and the RNG states of torch (CPU and CUDA), numpy, ``random``, the DataLoader's generator and
the posterior noise, one set per rank: resuming continues bit-exactly.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import pickle
import random
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mi_toolkit.atomic import write_atomically, write_json_atomically

from ..data.integrity import DataError
from ..objective import SuperInfoTerms
from .config import TrainConfig
from .distributed import all_agree

__all__ = ["CHECKPOINT", "CheckpointError", "CONFIG", "LOG", "LOG_COLUMNS", "LOSS_TERMS", "RunLog", "checkpoint_epoch", "load_checkpoint",
           "read_config", "restore_checkpoint", "save_checkpoint", "write_config"]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
LOG = "log.csv"
# the loss terms a step reports: one per SuperInfoTerms field (``total`` named ``loss``), in its order
LOSS_TERMS = tuple("loss" if f.name == "total" else f.name for f in dataclasses.fields(SuperInfoTerms))
LOG_COLUMNS = ["epoch", "step", "lr", *LOSS_TERMS, "probe_loss", "probe_acc", "knn_val_top1", "images_per_s",
               "elapsed_s"]


def _numpy_state() -> dict:
    """numpy's legacy RNG state as plain types and a tensor (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_state(s) -> None:
    if isinstance(s, dict):
        s = (s["kind"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached_gaussian"])
    np.random.set_state(s)


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [int(version), [int(v) for v in internal], gauss]


def _set_python_state(s) -> None:
    version, internal, gauss = s
    random.setstate((version, tuple(internal), gauss))


def _rng_state(t) -> dict:
    """Every RNG state as tensors and plain types: a checkpoint loads with ``weights_only=True``."""
    return {"torch": torch.get_rng_state(),
            "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else None,
            "numpy": _numpy_state(), "python": _python_state(), "loader": t.generator.get_state(),
            "noise": t.noise.get_state(),
            "augment": None if getattr(t, "augment_generator", None) is None else t.augment_generator.get_state()}


def _set_rng_state(t, s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    _set_numpy_state(s["numpy"])
    _set_python_state(s["python"])
    t.generator.set_state(s["loader"])
    if "noise" in s:
        t.noise.set_state(s["noise"])
    if getattr(t, "augment_generator", None) is not None and s.get("augment") is not None:
        t.augment_generator.set_state(s["augment"])


def save_checkpoint(t, path) -> Path:
    """Atomic: write ``path.tmp`` then ``os.replace`` (a kill mid-write leaves the previous checkpoint intact).

    In a process group every rank must call it: the RNG states of all ranks are gathered (so a resume restores each
    rank's own) and rank 0 alone writes the file."""
    path = Path(path)
    rng = [_rng_state(t)]
    if t.ctx.active:
        rng = [None] * t.ctx.world_size
        dist.all_gather_object(rng, _rng_state(t))
    error = None
    if t.ctx.is_main:
        try:
            state = _checkpoint_state(t, rng)
            write_atomically(path, lambda f: torch.save(state, f), fsync=True)
        except OSError as err:
            error = err
    # also the barrier: no rank goes on (and may read the file) before it is complete
    if not all_agree(error is None, t.device):
        raise error or RuntimeError(f"rank 0 could not write {path} (see its error); this rank stops too")
    return path


def _checkpoint_state(t, rng: list) -> dict:
    return {
        "config": t.cfg.to_dict(), "epoch": t.epoch, "step": t.step,
        "model": t.model.state_dict(), "loss_fn": t.loss_fn.state_dict(),
        "probe": t.probe.state_dict() if t.probe is not None else None,
        "optimizer": t.optimizer.state_dict(),
        "probe_optimizer": t.probe_optimizer.state_dict() if t.probe_optimizer is not None else None,
        "scheduler": t.scheduler.state_dict(), "scaler": t.scaler.state_dict(), "rng": rng,
        "auto_lambda": t.auto_lambda.state_dict() if t.auto_lambda is not None else None,
        "world_size": t.ctx.world_size, "torch_version": str(torch.__version__),
    }


class CheckpointError(DataError):
    """A checkpoint that cannot be used: missing, truncated, corrupt, or holding objects other than tensors and plain
    types (a pickle that would run code is refused, never executed)."""


def _torch_load(path, map_location="cpu", mmap: bool = False):
    """``torch.load(weights_only=True)``: tensors, numbers, strings, lists, tuples and dicts only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):     # torch.save writes a zip archive; a cut-off or overwritten file is not one
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt: not a torch.save archive); "
                              "resume from a complete copy or retrain")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain types, so it was not loaded (loading it could run "
            f"code; superinfo checkpoints never need that). Use a checkpoint written by this version of superinfo "
            f"from a source you trust. Detail: {str(err).splitlines()[-1] if str(err) else type(err).__name__}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, AttributeError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt: {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); resume from a complete copy or "
                              "retrain") from None


def load_checkpoint(path, map_location="cpu") -> dict:
    """A run's checkpoint, loaded with ``weights_only=True`` (a crafted file cannot run code); ``CheckpointError``
    when it is missing, truncated, corrupt or not a superinfo checkpoint."""
    state = _torch_load(path, map_location)
    if not isinstance(state, dict) or not {"model", "config", "epoch"} <= set(state):
        raise CheckpointError(f"{path} is not a superinfo checkpoint (it needs 'model', 'config' and 'epoch' entries)")
    return state


def checkpoint_epoch(path) -> int:
    """The completed epochs a checkpoint holds, without reading its weights (memory-mapped load)."""
    state = _torch_load(path, "cpu", mmap=True)
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(f"{path} is not a superinfo checkpoint (it has no 'epoch' entry)")
    try:
        return int(state["epoch"])
    except (TypeError, ValueError):
        raise CheckpointError(f"{path} is not a superinfo checkpoint (its epoch is {state['epoch']!r})") from None


def restore_checkpoint(t, state: dict) -> None:
    t.model.load_state_dict(state["model"])
    t.loss_fn.load_state_dict(state["loss_fn"])
    if t.probe is not None and state["probe"] is not None:
        t.probe.load_state_dict(state["probe"])
        t.probe_optimizer.load_state_dict(state["probe_optimizer"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.scaler.load_state_dict(state["scaler"])
    if t.auto_lambda is not None:
        t.auto_lambda.load_state_dict(state["auto_lambda"])
    t.epoch, t.step = int(state["epoch"]), int(state["step"])
    rng = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]   # one entry per rank
    if len(rng) != t.ctx.world_size:
        warnings.warn(f"the checkpoint was written by {len(rng)} process(es), this run has {t.ctx.world_size}: "
                      "weights, optimiser and schedule continue, but the data order and random streams differ from "
                      "an uninterrupted run", stacklevel=2)
    _set_rng_state(t, rng[t.ctx.rank % len(rng)])




def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    # stop_after_epochs and progress belong to one invocation, not to the run
    write_json_atomically(run_dir / CONFIG, dict(cfg.to_dict(), stop_after_epochs=None, progress=True),
                          sort_keys=True)



def read_config(run_dir) -> TrainConfig:
    values = json.loads((Path(run_dir) / CONFIG).read_text())
    values.setdefault("data_pipeline", "loader")    # a run from before the device pipeline keeps its DataLoader
    return TrainConfig.from_dict(values)


class RunLog:
    """CSV (always) and TensorBoard (when installed) scalars.  On resume, rows past the checkpoint's step (written
    by the killed run after its last checkpoint) are dropped, so the log matches an uninterrupted run."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        self.path = run_dir / LOG
        rows = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.file = open(self.path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_COLUMNS)
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tb"))
        except ImportError:  # tensorboard not installed
            self.tb = None

    def write(self, row: dict) -> None:
        self.writer.writerow({k: row.get(k, "") for k in LOG_COLUMNS})
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step") and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


