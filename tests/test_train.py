"""The SuperInfo trainer on tiny models and 8x8 images (CPU): end-to-end epoch through the CLI, bit-exact resume,
the non-finite-loss guard, and every preset building."""
import dataclasses
import hashlib
import json

import pytest
from torch.utils.data import Dataset

from fixtures_state import TwoViews, assert_same_state, log_rows, tiny_config, tiny_train_argv
import superinfo.data as train_mod  # load_datasets: what the trainer and eval read
from superinfo.cli import build_parser, main, train_config_from_args
from superinfo.trainer import (RUN_PRESETS, NonFiniteLossError, TrainConfig, build_training, load_checkpoint,
                             preset_config, resume, train)


class Labelled(Dataset):
    """Stand-in for ``superinfo.data.eval_datasets``: (image, label)."""

    def __init__(self, pairs):
        self.x, self.y = pairs.x, pairs.y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_cli_one_epoch_end_to_end_then_eval(tmp_path, monkeypatch, capsys):
    pairs = TwoViews()
    monkeypatch.setattr(train_mod, "load_datasets", lambda cfg, eval_too=False, pretrain=True: (
        pairs if pretrain else None, (Labelled(pairs), Labelled(pairs)) if eval_too else None))
    run = tmp_path / "run"
    rc = main(tiny_train_argv(run, preset=None, dataset="imagefolder", data_root=tmp_path, image_size=8,
                              max_steps_per_epoch=None, lambda_a=0.1, lambda_b=0.2, num_workers=0, final_eval="knn"))
    assert rc == 0
    for name in ("config.json", "checkpoint.pt", "log.csv", "eval.json"):
        assert (run / name).exists(), name
    assert not list(run.glob("*.tmp"))
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["lambda_a"], cfg["lambda_b"], cfg["image_size"], cfg["optimizer"]) == (0.1, 0.2, 8, "adam")
    rows = log_rows(run)
    assert rows and rows[-1]["step"] == "3" and rows[-1]["epoch"] == "1"
    for col in ("loss", "contrastive", "mi_lower", "superfluous_a", "superfluous_b", "lr", "probe_acc"):
        assert rows[-1][col] != "", col
    ev = json.loads((run / "eval.json").read_text())
    assert ev["protocol"] == "knn" and 0 <= ev["top1"] <= 1 and ev["settings"]["k"] == 200
    assert main(["eval", "--run", str(run), "--protocol", "linear", "--epochs", "5", "--threads", "1"]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["protocol"] == "linear" and 0 <= ev["top1"] <= 1 and ev["settings"]["epochs"] == 5
    assert set(ev["results"]) == {"knn", "linear"}
    assert "linear top-1" in capsys.readouterr().out


def test_resume_is_bit_identical(tmp_path):
    straight = train(tiny_config(tmp_path / "a"), pretrain_data=TwoViews())
    assert straight["epoch"] == 2
    first = train(tiny_config(tmp_path / "b", stop_after_epochs=1), pretrain_data=TwoViews())
    assert first["epoch"] == 1 and not first["finished"]
    resumed = resume(tmp_path / "b", pretrain_data=TwoViews(), progress=False)
    assert resumed["finished"]
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert_same_state(a, b)
    assert log_rows(tmp_path / "a") == log_rows(tmp_path / "b")


def test_kill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    # a run killed half-way through epoch 2 (48 images/epoch, crash at the 90th image: 3rd batch) resumes from epoch 1
    train(tiny_config(tmp_path / "a"), pretrain_data=TwoViews())
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path / "b"), pretrain_data=TwoViews(crash_at=90))
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    assert int(log_rows(tmp_path / "b")[-1]["step"]) > 3                 # rows past the checkpoint...
    resume(tmp_path / "b", pretrain_data=TwoViews(), progress=False)
    assert_same_state(load_checkpoint(tmp_path / "a" / "checkpoint.pt"),
                      load_checkpoint(tmp_path / "b" / "checkpoint.pt"))
    assert log_rows(tmp_path / "a") == log_rows(tmp_path / "b")       # ...are dropped, not duplicated


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 2.*last good checkpoint.*epoch 1"):
        train(tiny_config(run), pretrain_data=TwoViews(poison_from=60))
    ckpt = run / "checkpoint.pt"
    assert load_checkpoint(ckpt)["epoch"] == 1
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    # through the CLI: exit status 1 and the message, checkpoint untouched
    pairs = TwoViews(poison_from=1)
    monkeypatch.setattr(train_mod, "load_datasets", lambda cfg, eval_too=False, pretrain=True: (pairs, None))
    assert main(["train", "--resume", str(run), "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "last good checkpoint" in err
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == digest


def test_resume_refuses_changed_objective(tmp_path):
    train(tiny_config(tmp_path / "r", epochs=1), pretrain_data=TwoViews())
    with pytest.raises(ValueError, match="cannot change lambda_a"):
        resume(tmp_path / "r", pretrain_data=TwoViews(), lambda_a=1.0)
    with pytest.raises(ValueError, match="already holds a run"):
        train(tiny_config(tmp_path / "r", epochs=1), pretrain_data=TwoViews())


def test_registry_lower_bound_and_club_train(tmp_path):
    s = train(tiny_config(tmp_path / "c", epochs=1, lower_bound="nwj", conditional="club", temperature=None,
                          optimizer="lars", lr=0.1), pretrain_data=TwoViews())
    assert s["finished"]
    ckpt = load_checkpoint(tmp_path / "c" / "checkpoint.pt")
    assert ckpt["loss_fn"]  # the critic's weights are part of the run


@pytest.mark.parametrize("name", sorted(RUN_PRESETS))
def test_every_preset_builds(name):
    single_process = {"sync_bn": False} if RUN_PRESETS[name].get("sync_bn") else {}   # needs torchrun otherwise
    # a generic two-view data set stands in for the real one, so the loader path (digits' preset holds its uint8
    # images on the device)
    cfg = preset_config(name, out="unused", data_root="unused", num_workers=0, device="cpu", data_pipeline="auto",
                        **single_process)
    assert cfg.dataset == name
    data = TwoViews(n=cfg.batch_size, size=8)
    t = build_training(cfg, data, num_classes=3)
    expected = {"cifar10": ("resnet18", "adam", 512), "stl10": ("resnet18", "adam", 512),
                "imagenet": ("resnet50", "lars", 2048), "digits": ("resnet18", "adam", 64)}[name]
    assert (cfg.arch, cfg.optimizer, t.model.feature_dim) == expected
    assert t.model.head.z_dim == 128
    assert t.steps_per_epoch == 1 and t.scheduler.total_steps == cfg.epochs
    if name in ("cifar10", "stl10"):  # the paper protocol; digits is the small embedded default
        assert (cfg.epochs, cfg.batch_size) == (200, 256)
        assert t.model.backbone.conv1.kernel_size == (3, 3)


def test_cli_overrides_and_presets():
    parser = build_parser()
    args = parser.parse_args(["train", "--preset", "cifar10", "--data-root", "d", "--out", "o", "--epochs", "3",
                              "--lr", "0.01", "--conditional", "club", "--contrastive", "pairwise", "--sigma",
                              "learned", "--no-probe"])
    cfg = train_config_from_args(args)
    assert (cfg.epochs, cfg.lr, cfg.conditional, cfg.sigma, cfg.probe, cfg.batch_size) == (3, 0.01, "club",
                                                                                           "learned", False, 256)
    args = parser.parse_args(["train", "--preset", "imagenet", "--data-root", "d", "--out", "o",
                              "--optimizer", "adam", "--cifar-stem", "true"])
    cfg = train_config_from_args(args)
    assert (cfg.arch, cfg.optimizer, cfg.cifar_stem) == ("resnet50", "adam", True)
    with pytest.raises(SystemExit):         # refused while parsing (argparse names --arch) ...
        parser.parse_args(["train", "--dataset", "cifar10", "--arch", "vgg"])
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):     # ... and by the config itself (the API)
        preset_config("cifar10", arch="vgg")
    assert main(["train", "--preset", "cifar10"]) == 2   # no --out / --data-root: exit 2 with a message


def test_config_roundtrip():
    cfg = tiny_config("x")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert dataclasses.replace(cfg, epochs=3).epochs == 3


def test_every_temperature_default_comes_from_the_one_table():
    from superinfo.objective import TEMPERATURES, SuperInfoLoss
    from superinfo.world import DEFAULTS

    assert SuperInfoLoss(8).temperature == TEMPERATURES["loss"] and DEFAULTS["temperature"] == TEMPERATURES["world"]
    assert TrainConfig().temperature == TEMPERATURES["small_images"]
    for name in RUN_PRESETS:
        expected = TEMPERATURES[name if name in ("imagenet", "digits") else "small_images"]
        assert preset_config(name, sync_bn=False).temperature == expected, name
