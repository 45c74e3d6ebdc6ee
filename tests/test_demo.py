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
        assert 0.0 <= run["linear_top1"] <= 1.0 and 0.0 <= run["knn_top1"] <= 1.0
        assert (tmp_path / f"{run['method']}-seed{run['seed']}" / "checkpoint.pt").exists()
    assert "superinfo" in format_summary(result)


def test_digits_preset_needs_no_data_root():
    cfg = preset_config("digits")
    assert cfg.dataset == "digits" and cfg.data_root is None and cfg.final_eval == "none"


def test_demo_cli_rejects_bad_seeds(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--out", str(tmp_path), "--seeds", "a,b"])
    assert info.value.code == 2
