"""Checkpoint comparison shared by the single-process and the multi-process resume tests."""
from __future__ import annotations

import torch


def tensors_by_path(obj, prefix=""):
    """Every tensor in a nested state (dicts/lists), by path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from tensors_by_path(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from tensors_by_path(v, f"{prefix}/{i}")


def assert_same_state(a, b):
    """Two checkpoints hold bit-identical weights, optimiser states, schedule, counters and per-rank RNG states."""
    for key in ("model", "loss_fn", "probe", "optimizer", "probe_optimizer"):
        ta, tb = dict(tensors_by_path(a[key])), dict(tensors_by_path(b[key]))
        assert ta.keys() == tb.keys(), key
        assert ta or key == "loss_fn", key     # NT-Xent has no parameters; a registry critic does
        for name in ta:
            assert torch.equal(ta[name], tb[name]), f"{key}{name} differs"
    assert a["scheduler"] == b["scheduler"]
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
    assert len(a["rng"]) == len(b["rng"]) == a["world_size"]     # one RNG state per rank
    for ra, rb in zip(a["rng"], b["rng"]):
        for key in ("torch", "loader", "noise"):
            assert torch.equal(ra[key], rb[key]), key
