"""The data layer: format-exact fixtures load through the user path (build_dataset / pretrain_dataset /
eval_datasets), integrity stays on unless explicitly skipped, and missing or corrupt data gives clear errors."""
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T

from superinfo import data as D
from superinfo.data import (
    DATASETS, PRESETS, CorruptDataError, DataPreset, IntegrityError, MissingDataError, TwoViews, build_dataset,
    eval_datasets, eval_transform, num_classes, preset_for, pretrain_dataset, two_view_transform,
)
from fixtures_data import CIFAR10_CLASSES, STL10_CLASSES, write_cifar10, write_imagefolder, write_stl10


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return root, write_cifar10(root)


@pytest.fixture(scope="module")
def stl(tmp_path_factory):
    root = tmp_path_factory.mktemp("stl")
    return root, write_stl10(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    return root, write_imagefolder(root)


def _pixels(dataset, i):
    return np.asarray(dataset[i][0])


# --- every dataset through the user path --------------------------------------------------------------------------

def test_cifar10_fixture_loads_pixel_exact(cifar):
    root, written = cifar
    for split in ("train", "test"):
        ds = build_dataset("cifar10", root, split, verify=False)
        images, labels = written[split]
        assert len(ds) == len(images) and num_classes(ds) == 10 and ds.classes == CIFAR10_CLASSES
        for i in range(len(ds)):
            image, label = ds[i]
            assert image.mode == "RGB" and image.size == (32, 32) and isinstance(label, int)
            np.testing.assert_array_equal(np.asarray(image), images[i])
            assert label == labels[i]


def test_stl10_fixture_loads_every_split(stl):
    root, written = stl
    n_train, n_unlab = len(written["train"][1]), len(written["unlabeled"][1])
    expected = {"train": written["train"], "test": written["test"], "unlabeled": written["unlabeled"]}
    for split, (images, labels) in expected.items():
        ds = build_dataset("stl10", root, split, verify=False)
        assert len(ds) == len(images) and num_classes(ds) == 10 and ds.classes == STL10_CLASSES
        assert [ds[i][1] for i in range(len(ds))] == labels
        assert ds[0][0].mode == "RGB" and ds[0][0].size == (96, 96)
        for i in range(len(ds)):
            np.testing.assert_array_equal(_pixels(ds, i), images[i])   # column-major layout undone
    both = build_dataset("stl10", root, "train+unlabeled", verify=False)
    assert len(both) == n_train + n_unlab
    assert [both[i][1] for i in range(len(both))] == written["train"][1] + [-1] * n_unlab


def test_stl10_pretrains_on_unlabeled_by_default(stl):
    root, written = stl
    views = pretrain_dataset("stl10", root, PRESETS["stl10"], verify=False)
    assert len(views) == len(written["unlabeled"][1])
    v1, v2, label = views[0]
    assert v1.shape == v2.shape == (3, 96, 96) and label == -1
    assert len(pretrain_dataset("stl10", root, PRESETS["stl10"], split="train+unlabeled", verify=False)) == \
        len(written["unlabeled"][1]) + len(written["train"][1])


def test_stl10_class_names_file_is_optional(tmp_path):
    write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "class_names.txt").unlink()
    assert num_classes(build_dataset("stl10", tmp_path, "test", verify=False)) == 10


def test_eval_datasets_give_tensors_and_labels(cifar, stl):
    for name, (root, written), size in (("cifar10", cifar, 32), ("stl10", stl, 96)):
        train, test = eval_datasets(name, root, PRESETS[name], verify=False)
        assert len(train) == len(written["train"][1]) and len(test) == len(written["test"][1])
        x, y = test[1]
        assert x.dtype == torch.float32 and x.shape == (3, size, size) and y == written["test"][1][1]
        assert num_classes(train) == 10


def test_imagefolder_converts_grayscale_and_rgba_any_size(folder):
    root, written = folder
    ds = build_dataset("imagefolder", root, "train")
    assert ds.classes == ["cat", "dog", "frog"] and num_classes(ds) == 3
    assert [ds[i][1] for i in range(len(ds))] == [label for _, label in written["train"]]
    modes = set()
    for path, _ in written["train"]:
        with Image.open(path) as image:
            modes.add(image.mode)
    assert {"L", "RGBA", "RGB"} <= modes                    # the fixture really holds all three
    assert all(ds[i][0].mode == "RGB" for i in range(len(ds)))
    preset = preset_for("imagefolder", image_size=24)
    train, test = eval_datasets("imagefolder", root, preset)
    assert all(train[i][0].shape == (3, 24, 24) for i in range(len(train)))
    views = pretrain_dataset("imagefolder", root, preset)
    v1, v2, _ = views[0]                                    # the grayscale image
    assert v1.shape == v2.shape == (3, 24, 24)


def test_imagefolder_without_splits_is_a_fixed_stratified_holdout(tmp_path):
    written = write_imagefolder(tmp_path, classes=[f"c{i}" for i in range(4)], per_class=5, splits=())
    train = build_dataset("imagefolder", tmp_path, "train")
    test = build_dataset("imagefolder", tmp_path, "test")
    assert len(build_dataset("imagefolder", tmp_path, "all")) == len(written["all"]) == 20
    assert set(train.indices).isdisjoint(test.indices) and len(train) + len(test) == 20
    assert sorted(test.targets) == [0, 1, 2, 3]             # one of five per class
    assert build_dataset("imagefolder", tmp_path, "test").indices == test.indices
    assert num_classes(test) == 4


def test_imagefolder_val_stands_in_for_test(tmp_path):
    write_imagefolder(tmp_path, splits=("train", "val"))
    train, test = eval_datasets("imagefolder", tmp_path, preset_for("imagefolder", 16))
    assert len(test) == 9 and num_classes(test) == 3


def test_imagefolder_never_serves_one_split_for_another(tmp_path):
    # a tree with train/ and test/ but no val/: asking for val must not silently hand out the test images
    write_imagefolder(tmp_path, splits=("train", "test"))
    with pytest.raises(MissingDataError, match="split 'val' not found"):
        build_dataset("imagefolder", tmp_path, "val")
    assert len(build_dataset("imagefolder", tmp_path, "test")) == 9
    with pytest.warns(UserWarning, match="no test/ folder"):            # and eval's fallback to val/ says so
        write_imagefolder(tmp_path / "v", splits=("train", "val"))
        eval_datasets("imagefolder", tmp_path / "v", preset_for("imagefolder", 16))


def test_imagenet_layout(tmp_path):
    write_imagefolder(tmp_path, classes=("n01440764", "n01443537"), per_class=2, splits=("train", "val"))
    train, val = eval_datasets("imagenet", tmp_path, preset_for("imagenet", 64))
    assert len(train) == len(val) == 4 and num_classes(train) == 2 and train[0][0].shape == (3, 64, 64)
    assert len(pretrain_dataset("imagenet", tmp_path, preset_for("imagenet", 64))) == 4


def test_digits_work_offline():
    images, labels = D.digits_arrays()
    assert images.shape == (1797, 8, 8) and images.max() == 16 and np.bincount(labels).min() >= 170
    train, test = build_dataset("digits", None, "train"), build_dataset("digits", None, "test")
    assert len(train) + len(test) == 1797 and abs(len(test) - 0.2 * 1797) < 10
    assert num_classes(train) == num_classes(test) == 10 and set(test.targets) == set(range(10))
    image, label = train[0]
    assert image.mode == "RGB" and image.size == (32, 32) and 0 <= label < 10
    assert build_dataset("digits", None, "test", image_size=48)[0][0].size == (48, 48)
    assert build_dataset("digits", None, "test").targets == test.targets      # the split is fixed
    x, y = eval_datasets("digits", None, PRESETS["digits"])[1][0]
    assert x.shape == (3, 32, 32) and y == test.targets[0]


def test_dataloader_batches_and_workers_can_pickle(folder):
    root, _ = folder
    views = pretrain_dataset("imagefolder", root, preset_for("imagefolder", 16), seed=0)
    pickle.loads(pickle.dumps(views))                       # DataLoader workers receive a pickled copy
    v1, v2, labels = next(iter(DataLoader(views, batch_size=4)))
    assert v1.shape == v2.shape == (4, 3, 16, 16) and labels.dtype == torch.int64


def test_download_passes_through_to_torchvision(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kw):
        calls.append(url)
        write_cifar10(download_root)
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", fake_download)
    ds = build_dataset("cifar10", tmp_path, "test", download=True, verify=False)
    assert len(calls) == 1 and "cifar-10-python" in calls[0] and len(ds) == 6
    build_dataset("cifar10", tmp_path, "test", download=True, verify=False)
    assert len(calls) == 1                                  # present: not downloaded again


def test_folders_cannot_be_downloaded(tmp_path):
    for name in ("imagenet", "imagefolder"):
        with pytest.raises(ValueError, match="cannot be downloaded"):
            build_dataset(name, tmp_path, "train", download=True)


# --- integrity: on by default, with an explicit opt-out -----------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar10", "stl10"])
def test_verify_rejects_non_official_files_and_names_the_opt_out(name, cifar, stl):
    root = {"cifar10": cifar, "stl10": stl}[name][0]
    with pytest.raises(IntegrityError, match="md5") as info:
        build_dataset(name, root, "train")                 # verify=True is the default
    assert "--no-verify" in str(info.value) and "verify=False" in str(info.value)
    with pytest.raises(IntegrityError):
        pretrain_dataset(name, root, PRESETS[name])


# --- missing and corrupt data ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar10", "stl10", "imagenet", "imagefolder"])
def test_missing_folder_names_the_path_and_how_to_get_it(name, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(MissingDataError) as info:
        build_dataset(name, missing, "train", verify=False)
    message = str(info.value)
    assert str(missing) in message
    assert ("--download" in message) == (name in ("cifar10", "stl10"))
    assert "expected" in message or "put the official" in message


def test_missing_root_argument():
    with pytest.raises(ValueError, match="--data-root"):
        build_dataset("cifar10", None, "train")


def test_missing_single_file_is_named(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(MissingDataError, match="data_batch_3"):
        build_dataset("cifar10", tmp_path, "train", verify=False)


def test_truncated_cifar_pickle_is_named(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CorruptDataError, match="data_batch_2"):
        build_dataset("cifar10", tmp_path, "train", verify=False)
    with pytest.raises(IntegrityError):                      # and with verify on, the md5 catches it first
        build_dataset("cifar10", tmp_path, "train")


def test_cifar_labels_must_match_images(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    entry = pickle.loads(path.read_bytes(), encoding="latin1")
    entry["labels"] = entry["labels"][:-1]
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(CorruptDataError, match="test_batch"):
        build_dataset("cifar10", tmp_path, "test", verify=False)


def test_wrong_size_stl_file_is_named(tmp_path):
    write_stl10(tmp_path)
    path = tmp_path / "stl10_binary" / "unlabeled_X.bin"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(CorruptDataError, match="unlabeled_X.bin"):
        build_dataset("stl10", tmp_path, "unlabeled", verify=False)


def test_stl_label_count_and_range(tmp_path):
    write_stl10(tmp_path)
    labels = tmp_path / "stl10_binary" / "test_y.bin"
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(CorruptDataError, match="test_y.bin"):
        build_dataset("stl10", tmp_path, "test", verify=False)
    labels.write_bytes(bytes([0] * 4))                       # 0 is not a 1-based label
    with pytest.raises(CorruptDataError, match="1-based"):
        build_dataset("stl10", tmp_path, "test", verify=False)


def test_empty_imagefolder(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(CorruptDataError, match="no usable images"):
        build_dataset("imagefolder", tmp_path, "train")
    (tmp_path / "train" / "cat").mkdir()                     # a class folder with no images
    with pytest.raises(CorruptDataError, match="no usable images"):
        build_dataset("imagefolder", tmp_path, "train")


def test_corrupt_image_is_named_before_training(tmp_path):
    written = write_imagefolder(tmp_path, per_class=1, splits=())
    bad = written["all"][0][0]
    bad.write_bytes(b"not a png")
    with pytest.raises(CorruptDataError, match=bad.name):       # every header is read when the set is built
        build_dataset("imagefolder", tmp_path, "all")


def test_truncated_image_is_named_when_loaded(tmp_path):
    written = write_imagefolder(tmp_path, per_class=1, splits=())
    bad = written["all"][0][0]
    bad.write_bytes(bad.read_bytes()[:-30])       # the header survives, the pixels do not
    ds = build_dataset("imagefolder", tmp_path, "all")
    index = next(i for i, (path, _) in enumerate(ds.samples) if path == str(bad))
    with pytest.raises(CorruptDataError, match=bad.name):
        ds[index]


def test_missing_split_folder(tmp_path):
    write_imagefolder(tmp_path, splits=("train",))
    with pytest.raises(MissingDataError, match="test"):
        build_dataset("imagefolder", tmp_path, "test")
    write_imagefolder(tmp_path / "inet", splits=("train",))
    with pytest.raises(MissingDataError, match="val"):
        build_dataset("imagenet", tmp_path / "inet", "val")


def test_train_and_test_classes_must_agree(tmp_path):
    write_imagefolder(tmp_path / "a", classes=("x", "y"), splits=("train",))
    write_imagefolder(tmp_path / "a", classes=("x", "z"), splits=("test",))
    with pytest.raises(CorruptDataError, match="different classes"):
        eval_datasets("imagefolder", tmp_path / "a", preset_for("imagefolder", 16))


def test_argument_errors():
    with pytest.raises(ValueError, match="dataset must be one of"):
        build_dataset("kmnist", ".", "train")
    with pytest.raises(ValueError, match="split for stl10"):
        build_dataset("stl10", ".", "val")
    with pytest.raises(TypeError, match="preset"):
        pretrain_dataset("digits", None, "cifar10")
    with pytest.raises(TypeError, match="root"):
        build_dataset("cifar10", 3, "train")
    with pytest.raises(ValueError, match="crop_scale"):
        DataPreset(32, (0.5,) * 3, (0.5,) * 3, crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="std"):
        DataPreset(32, (0.5,) * 3, (0.5, 0.0, 0.5))
    with pytest.raises(TypeError, match="build_dataset"):
        num_classes([1, 2, 3])
    assert set(DATASETS) == set(PRESETS)


# --- augmentation -----------------------------------------------------------------------------------------------------

def _blurs(preset):
    def walk(t):
        if isinstance(t, (T.Compose, T.RandomApply)):
            return any(walk(s) for s in t.transforms)
        return isinstance(t, T.GaussianBlur)
    return walk(two_view_transform(preset).augment)


def test_blur_only_where_the_preset_asks():
    assert {name: _blurs(p) for name, p in PRESETS.items()} == {name: p.blur for name, p in PRESETS.items()}
    assert not PRESETS["cifar10"].blur and PRESETS["stl10"].blur and PRESETS["imagenet"].blur
    assert not preset_for("imagefolder", 32).blur and preset_for("imagefolder", 96).blur
    assert preset_for("imagenet", 112).eval_resize == 128 and preset_for("imagefolder", 32).eval_resize is None


def test_views_shapes_normalisation_and_difference():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50), dtype=np.uint8))   # grayscale
    for name in ("cifar10", "stl10"):
        preset = preset_for(name)
        torch.manual_seed(0)
        v1, v2 = two_view_transform(preset)(image)
        size = preset.image_size
        assert v1.shape == v2.shape == (3, size, size) and v1.dtype == v2.dtype == torch.float32
        assert not torch.equal(v1, v2)
        low = (0 - torch.tensor(preset.mean)) / torch.tensor(preset.std)
        high = (1 - torch.tensor(preset.mean)) / torch.tensor(preset.std)
        assert (v1 >= low[:, None, None] - 1e-5).all() and (v1 <= high[:, None, None] + 1e-5).all()


def test_eval_transform_is_deterministic_normalisation():
    preset = PRESETS["cifar10"]
    image = Image.new("RGB", (32, 32), (51, 102, 204))
    x = eval_transform(preset)(image)
    expected = (torch.tensor([51, 102, 204]) / 255 - torch.tensor(preset.mean)) / torch.tensor(preset.std)
    torch.testing.assert_close(x, expected[:, None, None].expand(3, 32, 32))
    assert eval_transform(preset)(Image.new("L", (64, 48), 7)).shape == (3, 32, 32)


def test_seeded_views_repeat_and_change_with_epoch():
    base = build_dataset("digits", None, "test")
    a = TwoViews(base, two_view_transform(PRESETS["digits"]), seed=3)
    b = TwoViews(base, two_view_transform(PRESETS["digits"]), seed=3)
    torch.manual_seed(123)                                   # the global RNG must not matter
    first = a[5]
    torch.manual_seed(999)
    b[4]                                                     # nor the order items are drawn in
    again = b[5]
    assert all(torch.equal(x, y) for x, y in zip(first[:2], again[:2])) and first[2] == again[2]
    a.set_epoch(1)
    assert not torch.equal(a[5][0], first[0])
    state = torch.get_rng_state()
    a[0]
    assert torch.equal(state, torch.get_rng_state())        # seeded items leave the global RNG alone


def test_unseeded_views_follow_the_global_seed():
    views = pretrain_dataset("digits", None, PRESETS["digits"])
    torch.manual_seed(7)
    first = views[0][0]
    torch.manual_seed(7)
    assert torch.equal(views[0][0], first)


def test_verify_accepts_files_with_the_listed_md5s(tmp_path, monkeypatch):
    from torchvision import datasets as tv
    from torchvision.datasets.utils import calculate_md5
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    md5 = {p.name: calculate_md5(str(p)) for p in folder.iterdir()}
    monkeypatch.setattr(tv.CIFAR10, "train_list", [[f"data_batch_{b}", md5[f"data_batch_{b}"]] for b in range(1, 6)])
    monkeypatch.setattr(tv.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(tv.CIFAR10, "meta", {**tv.CIFAR10.meta, "md5": md5["batches.meta"]})
    assert len(build_dataset("cifar10", tmp_path, "train")) == 20          # verify=True, md5s match
    path = folder / "data_batch_4"
    stamp = path.stat().st_mtime_ns
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")                     # changed after it was verified
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))                      # coarse clocks: make the change visible
    with pytest.raises(IntegrityError, match="data_batch_4"):
        build_dataset("cifar10", tmp_path, "train")


def test_train_subset_is_stratified_fixed_and_flows_from_its_one_field(tmp_path):
    """``train_subset``, declared once in TrainConfig: the flag, its range and the subset all follow from it."""
    import dataclasses
    from collections import Counter

    from superinfo.cli import build_parser, train_config_from_args
    from superinfo.data import load_datasets
    from superinfo.data.sources.base import stratified_indices

    labels = [0] * 60 + [1] * 30 + [2] * 10
    picked = stratified_indices(labels, 20)
    assert Counter(labels[i] for i in picked) == {0: 12, 1: 6, 2: 2} and picked == stratified_indices(labels, 20)
    args = build_parser().parse_args(["train", "--preset", "digits", "--out", str(tmp_path), "--train-subset", "300"])
    cfg = train_config_from_args(args)
    pre, _ = load_datasets(cfg)
    full, _ = load_datasets(dataclasses.replace(cfg, train_subset=None))
    assert len(pre) == 300 and len(full) > 300
    counts, all_counts = Counter(pre.base.targets), Counter(full.base.targets)
    assert all(abs(counts[c] / 300 - all_counts[c] / len(full)) < 0.01 for c in all_counts)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--train-subset", "0"])
    with pytest.raises(ValueError, match="more than the"):
        load_datasets(dataclasses.replace(cfg, train_subset=10**6))


def test_train_subset_on_a_data_set_whose_labels_are_not_called_targets(tmp_path):
    """torchvision's STL10 names them ``labels`` (the review found --train-subset crashed there)."""
    import dataclasses

    from fixtures_data import write_stl10
    from superinfo.data import load_datasets
    from superinfo.trainer import TrainConfig
    write_stl10(tmp_path)
    cfg = TrainConfig(dataset="stl10", data_root=str(tmp_path), verify=False)
    full, _ = load_datasets(cfg)
    pre, _ = load_datasets(dataclasses.replace(cfg, train_subset=len(full) // 2))
    assert len(pre) == len(full) // 2
