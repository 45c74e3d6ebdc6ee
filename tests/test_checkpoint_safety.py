"""Opening someone else's run folder must never run their code: every reader of checkpoints loads with
``torch.load(weights_only=True)``, and a checkpoint whose pickle would run code, a truncated one and a corrupt one
are each refused with a clear error (exit 2 from the CLI), before anything else happens."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from superinfo.cli import main
from superinfo.trainer import load_checkpoint
from superinfo.trainer.run import CheckpointError, checkpoint_epoch, read_config

MARKER = "pwned.txt"


class _RunsCode:
    """Unpickling this calls Path.touch(marker): code chosen by whoever wrote the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture
def good_run(tiny_digits_run):
    return tiny_digits_run          # the shared finished run (conftest.py): only read here, changed in copies


def test_checkpoints_hold_only_tensors_and_plain_types(good_run):
    state = torch.load(good_run / "checkpoint.pt", weights_only=True)       # would raise on any other object
    assert state["epoch"] == 1 and isinstance(state["rng"][0]["numpy"]["keys"], torch.Tensor)
    assert checkpoint_epoch(good_run / "checkpoint.pt") == 1


def _variant(good_run, tmp_path, kind) -> Path:
    run = tmp_path / kind
    shutil.copytree(good_run, run)
    ckpt = run / "checkpoint.pt"
    if kind == "malicious":
        state = torch.load(ckpt, weights_only=True)
        state["extra"] = _RunsCode(tmp_path / MARKER)
        torch.save(state, ckpt)
    elif kind == "truncated":
        data = ckpt.read_bytes()
        ckpt.write_bytes(data[: len(data) // 2])
    else:
        ckpt.write_bytes(b"garbage\n")
    return run


READERS = {
    "train --resume": lambda run, tmp: ["train", "--resume", str(run), "--threads", "1"],
    "eval": lambda run, tmp: ["eval", "--run", str(run), "--protocol", "knn", "--threads", "1"],
    "export": lambda run, tmp: ["export", "--run", str(run), "--out", str(tmp / "exported.pt")],
    "export (file)": lambda run, tmp: ["export", "--run", str(run / "checkpoint.pt"), "--out", str(tmp / "e2.pt")],
    "transfer": lambda run, tmp: ["transfer", "--run", str(run), "--datasets", "mnist", "--data-root", str(tmp),
                                  "--threads", "1"],
}


@pytest.mark.parametrize("kind", ["malicious", "truncated", "corrupt"])
def test_every_command_that_reads_checkpoints_refuses_a_bad_one(good_run, tmp_path, kind, capsys):
    run = _variant(good_run, tmp_path, kind)
    expected = "could run code" if kind == "malicious" else "truncated or corrupt"
    for name, argv in READERS.items():
        assert main(argv(run, tmp_path)) == 2, name
        err = capsys.readouterr().err
        assert "error:" in err and expected in err and "Traceback" not in err, (name, err)
        assert not (tmp_path / MARKER).exists(), f"{name} ran the checkpoint's code"
    # the library paths: load_checkpoint, checkpoint_epoch and the sweep's skip/resume check
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=expected):
        checkpoint_epoch(run / "checkpoint.pt")
    from superinfo.tools.sweep import run_point
    cfg = dataclasses.replace(read_config(run), out=str(run), progress=False)
    with pytest.raises(CheckpointError, match=expected):
        run_point(cfg, ("knn",))
    assert not (tmp_path / MARKER).exists()
    assert not (tmp_path / "exported.pt").exists()


def test_the_malicious_file_would_run_code_without_weights_only(good_run, tmp_path):
    """The control: the crafted file really does run code when unpickled the unsafe way."""
    run = _variant(good_run, tmp_path, "malicious")
    torch.load(run / "checkpoint.pt", weights_only=False)
    assert (tmp_path / MARKER).exists()


def test_a_crafted_cifar_file_is_refused_without_running_code(tmp_path, capsys):
    """--no-verify skips the md5 check, so the data files are whatever someone put there: they are unpickled with
    only arrays, lists, strings and numbers allowed, before torchvision reads them."""
    import pickle

    from fixtures_data import write_cifar10
    write_cifar10(tmp_path / "data")
    batch = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1"
    entry = pickle.loads(batch.read_bytes(), encoding="latin1")
    entry["extra"] = _RunsCode(tmp_path / MARKER)
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    assert main(["train", "--preset", "cifar10", "--data-root", str(tmp_path / "data"), "--no-verify", "--epochs",
                 "1", "--out", str(tmp_path / "run"), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "refused to load" in err and "Traceback" not in err
    assert not (tmp_path / MARKER).exists() and not (tmp_path / "run").exists()
