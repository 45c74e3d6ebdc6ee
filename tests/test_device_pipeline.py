"""The device data pipeline (uint8 images on the device, batched augmentation there), exercised on CPU tensors:
bit-identical resume, no device read inside a step, the pipeline choice, the synthetic data set through the CLI,
and --compile."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fixtures_state import assert_same_state, log_rows, tiny_train_argv
from fixtures_state import tiny_config as shared_tiny_config
from mi_toolkit.errors import ArgumentError
from superinfo import data
from superinfo.cli import main
from superinfo.data.device_data import DeviceBatch, DeviceBatches, stored_bytes, uint8_images
from superinfo.data.synthetic_images import SyntheticImages
from superinfo.trainer import TrainConfig, build_training, load_checkpoint, resume, train
from superinfo.trainer.loop import MetricInterval, train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from host_syncs import CountHostReads  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


DEVICE_RUN = dict(dataset="synthetic", image_size=8, device="cpu", data_pipeline="device")


def synthetic_views(n=48, size=8, seed=0):
    preset = data.preset_for("synthetic", size)
    return data.TwoViews(SyntheticImages(n, size, seed=seed), data.two_view_transform(preset))


def tiny_config(out, **kw):
    """The shared tiny run on synthetic images, through the device pipeline."""
    return shared_tiny_config(out, **{**DEVICE_RUN, **kw})


def test_resume_with_the_device_pipeline_is_bit_identical(tmp_path):
    straight = train(tiny_config(tmp_path / "a"), pretrain_data=synthetic_views())
    assert straight["epoch"] == 2
    first = train(tiny_config(tmp_path / "b", stop_after_epochs=1), pretrain_data=synthetic_views())
    assert first["epoch"] == 1 and not first["finished"]
    resume(tmp_path / "b", pretrain_data=synthetic_views(), progress=False)
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert_same_state(a, b)
    assert torch.equal(a["rng"][0]["augment"], b["rng"][0]["augment"])
    assert log_rows(tmp_path / "a") == log_rows(tmp_path / "b")
    # the loader pipeline on the same images is another run (other random streams), and trains too
    other = train(tiny_config(tmp_path / "c", data_pipeline="loader"), pretrain_data=synthetic_views())
    assert other["epoch"] == 2 and load_checkpoint(tmp_path / "c" / "checkpoint.pt")["rng"][0]["augment"] is None


@pytest.mark.parametrize("lambda_a", [0.0, 0.1])
def test_a_device_pipeline_step_reads_nothing_back(tmp_path, lambda_a):
    cfg = tiny_config(tmp_path, lambda_a=lambda_a, epochs=1, batch_size=8, lambda_warmup_epochs=0,
                      lambda_ramp_epochs=0)
    t = build_training(cfg, synthetic_views(n=96), num_classes=10)
    assert t.pipeline == "device" and isinstance(t.loader, DeviceBatches)
    interval = MetricInterval()
    with CountHostReads() as steps:
        for batch, _ in zip(t.loader, range(10)):
            assert isinstance(batch, DeviceBatch) and batch.labelled == 8
            interval.add(train_step(t, batch), 8, 1e-3)
    assert {k: v for k, v in steps.counts.items() if not k.startswith("host-side")} == {}
    with CountHostReads() as row:
        values = interval.row(t, elapsed=0.0)
    assert dict(row.counts) == {"tolist": 1} and values["probe_acc"] != ""


def test_the_pipeline_choice(tmp_path):
    views = synthetic_views()
    # auto: the DataLoader on a CPU (device only on CUDA when the images fit)
    assert build_training(tiny_config(tmp_path, data_pipeline="auto"), views, 10).pipeline == "loader"
    assert stored_bytes(views, 8) == 48 * 3 * 8 * 8
    digits = data.load_datasets(TrainConfig(dataset="digits", image_size=16))[0]
    images, labels = uint8_images(digits)
    assert images.shape[1:] == (3, 16, 16) and images.dtype == torch.uint8 and len(labels) == len(digits)
    assert stored_bytes(digits, 16) == images.numel()

    class Floats(torch.utils.data.Dataset):
        def __len__(self):
            return 32

        def __getitem__(self, i):
            return torch.zeros(3, 8, 8), torch.zeros(3, 8, 8), 0

    with pytest.raises(ArgumentError, match="data-pipeline loader"):
        build_training(tiny_config(tmp_path), Floats(), 1)
    with pytest.raises(ArgumentError, match="data_pipeline"):
        tiny_config(tmp_path, data_pipeline="gpu").validate()


def test_unlabelled_rows_are_masked_and_counted_on_the_host(tmp_path):
    class Half(SyntheticImages):
        def __init__(self):
            super().__init__(48, 8)
            self.labels[::2] = -1

    views = data.TwoViews(Half(), data.two_view_transform(data.preset_for("synthetic", 8)))
    t = build_training(tiny_config(tmp_path, epochs=1), views, 10)
    batch = next(iter(t.loader))
    assert batch.labelled == int((batch[2] >= 0).sum())
    metrics = train_step(t, batch)
    assert metrics["probe_n"].item() == batch.labelled     # the labelled rows only


def test_synthetic_data_through_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(tiny_train_argv(run, preset=None, **DEVICE_RUN, synthetic_size=64, max_steps_per_epoch=None,
                              final_eval="none"))
    assert rc == 0 and (run / "checkpoint.pt").exists()
    assert '"data_pipeline": "device"' in (run / "config.json").read_text()
    assert len(log_rows(run)) >= 1


_COMPILE_PROBE = """
import time, torch
torch.set_num_threads(1)
t0 = time.perf_counter()
f = torch.compile(lambda x: (x * 2).sin().sum())
f(torch.randn(8))
print(time.perf_counter() - t0)
"""


def _compile_works_quickly(limit_s=5.0) -> str | None:
    """None when torch.compile compiles a one-line function on this CPU within limit_s, else why not."""
    try:
        out = subprocess.run([sys.executable, "-c", _COMPILE_PROBE], capture_output=True, text=True,
                             timeout=limit_s + 5, env=dict(os.environ, OMP_NUM_THREADS="1"))
    except subprocess.TimeoutExpired:       # the import of torch in the subprocess takes a few seconds of it
        return f"torch.compile did not compile one line within {limit_s + 5:.0f} s on this CPU (import included)"
    if out.returncode != 0:
        return f"torch.compile does not work on this CPU: {out.stderr.strip().splitlines()[-1:]}"
    if float(out.stdout.split()[-1]) > limit_s:
        return f"torch.compile took {float(out.stdout.split()[-1]):.0f} s (> {limit_s:.0f} s) for one line"
    return None


@pytest.mark.slow
def test_compile_builds_and_one_step_runs(tmp_path):
    why = _compile_works_quickly()
    if why:
        pytest.skip(why)
    cfg = tiny_config(tmp_path, compile=True, epochs=1, lambda_a=0.0, sigma=1.0)
    t = build_training(cfg, synthetic_views(), num_classes=10)
    assert t.net is not t.model and t.loss_call is not t.loss_fn
    start = time.perf_counter()
    metrics = train_step(t, next(iter(t.loader)))
    assert all(torch.isfinite(v) for v in metrics.values())
    print(f"one compiled step: {time.perf_counter() - start:.1f} s")


def test_uint8_images_hold_the_official_files_pixels(tmp_path):
    from fixtures_data import write_cifar10, write_imagefolder, write_stl10

    cifar = write_cifar10(tmp_path / "c")
    images, labels = uint8_images(data.pretrain_dataset("cifar10", tmp_path / "c", data.preset_for("cifar10"),
                                                   verify=False))
    assert torch.equal(images, torch.from_numpy(cifar["train"][0]).permute(0, 3, 1, 2))
    assert labels.tolist() == cifar["train"][1]
    stl = write_stl10(tmp_path / "s")
    images, labels = uint8_images(data.pretrain_dataset("stl10", tmp_path / "s", data.preset_for("stl10"), verify=False))
    assert torch.equal(images, torch.from_numpy(stl["unlabeled"][0]).permute(0, 3, 1, 2))
    assert (labels == -1).all()
    write_imagefolder(tmp_path / "f")
    folder = data.pretrain_dataset("imagefolder", tmp_path / "f", data.preset_for("imagefolder", 16))
    images, labels = uint8_images(folder, 16)
    assert images.shape == (len(folder), 3, 16, 16) and stored_bytes(folder, 16) == images.numel()


def test_device_batches_split_an_epoch_over_ranks_like_distributed_sampler():
    from superinfo.data.device_augment import DeviceAugment

    n, batch = 50, 4
    images = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    labels = torch.arange(n)                         # each row's label is its index
    aug = DeviceAugment(data.preset_for("synthetic", 8))

    def epoch(rank, world, e=0):
        b = DeviceBatches(images, labels, batch, aug, order=torch.Generator().manual_seed(rank),
                          augment_generator=torch.Generator().manual_seed(rank), seed=3, rank=rank, world_size=world)
        b.set_epoch(e)
        assert len(b) == n // world // batch
        return [i for views1, views2, y in b for i in y.tolist()]

    one = epoch(0, 1)
    assert len(one) == len(set(one)) == (n // batch) * batch
    r0, r1 = epoch(0, 2), epoch(1, 2)
    assert len(r0) == len(r1) == 24 and not set(r0) & set(r1)
    assert epoch(0, 2, e=1) != r0                    # a new order each epoch, the same on every rank


def test_device_pipeline_holds_the_train_split_only_of_a_folder_without_splits(tmp_path):
    """A folder with no train/test folders is split by a fixed holdout: the device must hold the train side only
    (before, it unwrapped the subset and held every image, the held-out test images among them)."""
    from fixtures_data import write_imagefolder

    write_imagefolder(tmp_path / "f", per_class=10, splits=())
    views = data.pretrain_dataset("imagefolder", tmp_path / "f", data.preset_for("imagefolder", 16))
    _, test = data.eval_datasets("imagefolder", tmp_path / "f", data.preset_for("imagefolder", 16))
    assert len(views) + len(test) == 30 and len(test) > 0
    images, labels = uint8_images(views, 16)
    assert images.shape[0] == len(views) and stored_bytes(views, 16) == images.numel()
    assert labels.tolist() == [views.base[i][1] for i in range(len(views))]
