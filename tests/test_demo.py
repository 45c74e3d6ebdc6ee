"""The embedded default: SimCLR and SuperInfo side by side on digits, shrunk to seconds."""
import json

import pytest

from superinfo.cli import main
from superinfo.tools.demo import format_summary, run_demo
from superinfo.trainer import preset_config


def test_demo_writes_both_methods_side_by_side(tmp_path):
    result = run_demo(tmp_path, seeds=(0,), lambda_superinfo=0.05, epochs=1, image_size=8, width=4,
                      max_steps_per_epoch=2, batch_size=32)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["summary"].keys() == {"simclr", "superinfo"}
    assert saved["summary"]["simclr"]["lambda"] == 0.0 and saved["summary"]["superinfo"]["lambda"] == 0.05
    for run in saved["runs"]:
        # two steps of training keep the digits' classes readable far above chance (0.1): 0.43-0.50 measured
        assert run["linear_top1"] > 0.3 and run["knn_top1"] > 0.3, run
        assert saved["summary"][run["method"]]["linear_top1"] == run["linear_top1"]      # one seed: the mean is it
        run_dir = tmp_path / f"{run['method']}-seed{run['seed']}"
        assert (run_dir / "checkpoint.pt").exists()
        config = json.loads((run_dir / "config.json").read_text())
        assert config["lambda_a"] == run["lambda"] and config["dataset"] == "digits"
    assert "superinfo" in format_summary(result)


def test_digits_preset_needs_no_data_root():
    cfg = preset_config("digits")
    assert cfg.dataset == "digits" and cfg.data_root is None and cfg.final_eval == "none"


def test_demo_cli_rejects_bad_seeds(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--seeds", "a,b"]) == 2
