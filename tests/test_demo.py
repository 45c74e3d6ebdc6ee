"""The embedded default: SimCLR and SuperInfo side by side on digits, shrunk to seconds."""
import json

import pytest
import torch

from superinfo.cli import main
from superinfo.tools.demo import format_summary, run_demo
from superinfo.trainer import preset_config

# a bracket small enough for a test (the demo measures 4 views of up to 2000 images per split)
SMALL_BRACKET = dict(images=64, steps=40, batch_size=32, heldout_fraction=0.5)
TINY_DEMO = dict(seeds=(0,), lambda_superinfo="auto", epochs=2, image_size=8, width=4, max_steps_per_epoch=3,
                 batch_size=32, bracket_options=SMALL_BRACKET)


@pytest.mark.slow
def test_demo_writes_untrained_simclr_and_superinfo_side_by_side(tmp_path):
    result = run_demo(tmp_path, **TINY_DEMO)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["summary"].keys() == {"untrained", "simclr", "superinfo"}
    assert saved["summary"]["simclr"]["lambda"] == 0.0 and saved["summary"]["superinfo"]["lambda"] == "auto"
    for run in saved["runs"]:
        # a few steps keep the digits' classes readable far above chance (0.1)
        assert run["linear_top1"] > 0.3 and run["knn_top1"] > 0.3, run
        assert saved["summary"][run["method"]]["linear_top1"] == run["linear_top1"]      # one seed: the mean is it
        assert run["superfluous_lower_stderr"] >= 0 and run["superfluous_upper_nats_head"] > 0
        run_dir = tmp_path / f"{run['method']}-seed{run['seed']}"
        assert (run_dir / "probe.json").exists()
        if run["method"] != "untrained":
            config = json.loads((run_dir / "config.json").read_text())
            assert config["lambda_a"] == run["lambda"] and config["dataset"] == "digits"
            assert config["method"] == run["method"]
    untrained, simclr = (next(r for r in saved["runs"] if r["method"] == m) for m in ("untrained", "simclr"))
    gain = saved["summary"]["simclr"]["linear_gain_over_untrained_min"]
    assert gain == pytest.approx(simclr["linear_top1"] - untrained["linear_top1"])
    raw = saved["reference"]["raw_pixels"]
    assert 0.9 < raw["linear_top1"] <= 1 and 0.85 < raw["knn_top1"] <= 1     # 95.5 % / 93.6 % measured
    text = format_summary(result)
    assert "raw pixels" in text and "untrained" in text and "gain over the untrained" in text
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    again = run_demo(tmp_path, **TINY_DEMO)
    assert again["runs"] == result["runs"]        # a rerun reads every finished piece back
    from superinfo.trainer.evaluate import load_run
    cfg, model, _ = load_run(tmp_path / "superinfo-seed0")   # the preset's head is rebuilt as trained
    assert cfg.mean_on_sphere and model.head.mean_on_sphere and model.head.fixed_sigma == cfg.sigma == 0.07


def test_untrained_row_is_the_init_the_methods_start_from(tmp_path):
    from superinfo import data
    from superinfo.tools.demo import untrained_model
    from superinfo.trainer import build_training

    cfg = preset_config("digits", out=str(tmp_path / "run"), image_size=8, width=4, progress=False)
    started = build_training(cfg, data.load_datasets(cfg)[0], 10).model.state_dict()
    for name, value in untrained_model(cfg).state_dict().items():
        assert torch.equal(value, started[name]), name


def test_digits_preset_needs_no_data_root():
    cfg = preset_config("digits")
    assert cfg.dataset == "digits" and cfg.data_root is None and cfg.final_eval == "none"


def test_demo_cli_rejects_bad_seeds(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--seeds", "a,b"]) == 2
