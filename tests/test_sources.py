"""The data-source registry (superinfo.data.sources) and the data sets it added for pre-training: MNIST and
Fashion-MNIST (idx files in torchvision's layout and flat, as Debian ships them; raw and gzipped), CIFAR-100 and
SVHN, all on files in their exact on-disk formats written here, through the user path (build_dataset,
pretrain_dataset, eval_datasets, load_datasets, the device pipeline's uint8_images, the transfer suite)."""
import gzip
import hashlib
import pickle

import numpy as np
import pytest
import torch

from fixtures_data import IDX_FILES, idx_bytes, write_idx, write_svhn
from fixtures_transfer import write_cifar100
from superinfo import data
from superinfo.data import (CorruptDataError, IntegrityError, MissingDataError, build_dataset, eval_datasets,
                            load_datasets, num_classes, preset_for, pretrain_dataset)
from superinfo.data.device_data import stored_bytes, uint8_images
from superinfo.data.sources import SOURCES, Source, needs_root
from superinfo.trainer import TrainConfig
from superinfo.data.sources import mnist as mnist_source
from superinfo.tools.transfer import TRANSFER_DATASETS, load_transfer_splits


def _cfg(dataset, root, **kw):
    return TrainConfig(dataset=dataset, data_root=None if root is None else str(root), verify=False, **kw)


# --- the registry ---------------------------------------------------------------------------------------------------

def test_every_source_declares_what_the_readers_need():
    for name, source in SOURCES.items():
        assert isinstance(source, Source) and source.name == name and source.splits
        assert isinstance(source.how_to_get, str) and source.how_to_get
        if source.pretrain_split is not None:
            assert source.pretrain_split in source.splits and set(source.eval_splits) <= set(source.splits)
            assert source.preset is not None
        if source.transfer_splits is not None:
            train, test = source.transfer_splits
            assert set(train) | {test} <= set(source.splits)
    assert data.DATASETS == tuple(n for n, s in SOURCES.items() if s.pretrain_split)
    assert data.DATASETS[:6] == ("cifar10", "stl10", "imagenet", "imagefolder", "digits", "synthetic")
    assert {"mnist", "fashionmnist", "cifar100", "svhn"} <= set(data.DATASETS) == set(data.PRESETS)
    assert [n for n in SOURCES if not needs_root(n)] == ["digits", "synthetic"]
    assert needs_root("no-such-set") and needs_root(None)
    assert TRANSFER_DATASETS == ("dtd", "mnist", "fashionmnist", "flowers102", "gtsrb", "cifar10", "cifar100")


def test_new_presets_have_their_image_sizes():
    assert {n: data.PRESETS[n].image_size for n in ("mnist", "fashionmnist", "cifar100", "svhn")} == \
        {"mnist": 28, "fashionmnist": 28, "cifar100": 32, "svhn": 32}
    assert data.PRESETS["mnist"].flip_prob == 0 and data.PRESETS["svhn"].flip_prob == 0     # digits do not mirror
    assert data.SPLITS["mnist"] == data.SPLITS["svhn"] == ("train", "test")
    assert data.eval_splits("fashionmnist") == ("train", "test")


# --- MNIST / Fashion-MNIST: both layouts, raw and gzipped ------------------------------------------------------------

@pytest.mark.parametrize("layout, files", [("torchvision", "raw"), ("torchvision", "gz"), ("torchvision", "both"),
                                           ("flat", "gz"), ("flat", "raw")])
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_idx_files_load_pixel_exact_in_every_layout(tmp_path, name, folder, layout, files):
    written = write_idx(tmp_path, layout, folder, files)
    for split in ("train", "test"):
        ds = build_dataset(name, tmp_path, split, verify=False)
        images, labels = written[split]
        assert len(ds) == len(images) and num_classes(ds) == 10
        assert [ds[i][1] for i in range(len(ds))] == labels
        assert ds[3][0].mode == "L" and np.array_equal(np.asarray(ds[3][0]), images[3])
    assert ds.classes == list(SOURCES[name].tv_class.classes)


def test_grayscale_28px_becomes_three_channels_for_training_and_the_device(tmp_path):
    written = write_idx(tmp_path, "flat", files="gz")
    views = pretrain_dataset("fashionmnist", tmp_path, preset_for("fashionmnist"), verify=False)
    v1, v2, label = views[0]
    assert v1.shape == v2.shape == (3, 28, 28) and label == written["train"][1][0]
    images, labels = uint8_images(views)
    expected = torch.from_numpy(written["train"][0])[:, None].expand(-1, 3, -1, -1)
    assert images.dtype == torch.uint8 and torch.equal(images, expected) and labels.tolist() == written["train"][1]
    assert stored_bytes(views, 28) == images.numel()
    train, test = eval_datasets("fashionmnist", tmp_path, preset_for("fashionmnist", 32), verify=False)
    x, y = test[2]
    assert x.shape == (3, 32, 32) and torch.equal(x[0], x[2]) and y == written["test"][1][2]


def test_load_datasets_reads_the_new_sets(tmp_path):
    write_idx(tmp_path / "m", folder="MNIST", files="raw")
    pre, (train, test) = load_datasets(_cfg("mnist", tmp_path / "m"), eval_too=True)
    assert len(pre) == 12 and len(train) == 12 and len(test) == 8 and pre[0][0].shape == (3, 28, 28)
    with pytest.raises(ValueError, match="data_root is required"):
        load_datasets(_cfg("svhn", None))
    pre, ev = load_datasets(_cfg("synthetic", None, synthetic_size=10), eval_too=True)     # no data root needed
    assert len(pre) == 10 and [len(d) for d in ev] == [2, 2]


def test_flat_layout_is_content_checked_under_verify_and_says_so(tmp_path, monkeypatch):
    write_idx(tmp_path, "flat", files="gz")
    # verify: the official counts are part of the content check (these files hold 12 and 8 images)
    with pytest.raises(CorruptDataError, match=r"12 images, the official train split has 60000.*--no-verify"):
        build_dataset("fashionmnist", tmp_path, "train")
    monkeypatch.setitem(mnist_source.OFFICIAL_COUNTS, "train", 12)
    monkeypatch.setattr(mnist_source, "_WARNED", set())
    with pytest.warns(UserWarning, match="not torchvision's layout.*content checked, not md5"):
        ds = build_dataset("fashionmnist", tmp_path, "train")      # verify=True, no md5 attempted
    assert len(ds) == 12 and "idx magic numbers, 28x28 images" in ds.integrity
    assert SOURCES["fashionmnist"].integrity_note(tmp_path, True).startswith("content checked")
    # the transfer suite reads the same folder (verify=False: structure checks only)
    train, test = load_transfer_splits("fashionmnist", tmp_path, verify=False)
    assert len(train) == 12 and len(test) == 8


def test_torchvision_layout_verifies_the_archives_md5(tmp_path, monkeypatch):
    written = write_idx(tmp_path, "torchvision", "MNIST", files="gz")
    with pytest.raises(IntegrityError, match=r"train-images-idx3-ubyte\.gz does not match the official md5"):
        build_dataset("mnist", tmp_path, "train")
    raw = written["folder"]
    sums = {f"MNIST/raw/{p.name}": hashlib.md5(p.read_bytes()).hexdigest() for p in raw.glob("*.gz")}
    monkeypatch.setattr(SOURCES["mnist"], "md5", sums)
    assert len(build_dataset("mnist", tmp_path, "test")) == 8          # gz only, verified, read from the archive
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(8, np.uint8), 2049))   # raw beside it differs
    with pytest.raises(IntegrityError, match="t10k-labels-idx1-ubyte differs from the decompressed"):
        build_dataset("mnist", tmp_path, "test")
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(MissingDataError, match="t10k-images-idx3-ubyte"):
        build_dataset("mnist", tmp_path, "test")


def _rewrite(path, content: bytes):
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(content)
    else:
        path.write_bytes(content)


@pytest.mark.parametrize("files", ["raw", "gz"])
def test_corrupt_idx_files_are_named(tmp_path, files):
    suffix = ".gz" if files == "gz" else ""
    write_idx(tmp_path, "flat", files=files)
    images = tmp_path / f"{IDX_FILES['test'][0]}{suffix}"
    labels = tmp_path / f"{IDX_FILES['test'][1]}{suffix}"
    good_images, good_labels = images.read_bytes(), labels.read_bytes()

    def load():
        return build_dataset("fashionmnist", tmp_path, "test", verify=False)

    _rewrite(images, idx_bytes(np.zeros((8, 28, 28), np.uint8), 2049 + 2)[:-5])   # cut short
    with pytest.raises(CorruptDataError, match=rf"{images.name}: .*truncated"):
        load()
    _rewrite(images, good_labels if files == "raw" else gzip.decompress(good_labels))   # labels for images
    with pytest.raises(CorruptDataError, match=rf"{images.name}: idx magic number is 2049, expected 2051"):
        load()
    _rewrite(images, idx_bytes(np.zeros((8, 27, 28), np.uint8), 2051))
    with pytest.raises(CorruptDataError, match=r"images are 27x28, expected 28x28"):
        load()
    _rewrite(images, idx_bytes(np.zeros((7, 28, 28), np.uint8), 2051))
    with pytest.raises(CorruptDataError, match=rf"{labels.name}: 8 labels for 7 images"):
        load()
    images.write_bytes(good_images)
    _rewrite(labels, idx_bytes(np.full(8, 10, np.uint8), 2049))
    with pytest.raises(CorruptDataError, match=rf"{labels.name}: labels must be 0..9, found 10"):
        load()
    _rewrite(labels, b"\x00\x00\x08")
    with pytest.raises(CorruptDataError, match="too short for an idx label header"):
        load()
    if files == "gz":
        labels.write_bytes(good_labels[: len(good_labels) // 2])         # a cut download
        with pytest.raises(CorruptDataError, match=rf"{labels.name}: not a readable gzip file"):
            load()
        labels.write_bytes(b"plain bytes, not gzip")
        with pytest.raises(CorruptDataError, match="not a readable gzip file"):
            load()
    labels.unlink()
    with pytest.raises(MissingDataError, match=rf"fashionmnist data not found: missing .*{labels.name}"):
        load()


def test_missing_idx_folder_says_both_layouts(tmp_path):
    with pytest.raises(MissingDataError) as info:
        build_dataset("mnist", tmp_path / "nowhere", "train", verify=False)
    message = str(info.value)
    assert "MNIST/raw/train-images-idx3-ubyte" in message and "--download" in message
    assert "directly in" in message and "/usr/share/datasets/fashion-mnist" in message


def test_idx_download_goes_through_torchvision(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kw):
        calls.append(filename)
        stem = filename[: -len(".gz")]
        split = "train" if stem.startswith("train") else "test"
        n = 12 if split == "train" else 8
        array = np.zeros((n, 28, 28), np.uint8) if "images" in stem else np.arange(n, dtype=np.uint8) % 10
        content = idx_bytes(array, 2051 if "images" in stem else 2049)
        with gzip.open(f"{download_root}/{filename}", "wb") as f:
            f.write(content)
        (tmp_path / "MNIST" / "raw" / stem).write_bytes(content)        # torchvision extracts next to it
    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", fake_download)
    ds = build_dataset("mnist", tmp_path, "test", download=True, verify=False)
    assert len(ds) == 8 and len(calls) == 4
    build_dataset("mnist", tmp_path, "test", download=True, verify=False)
    assert len(calls) == 4                                               # present: not downloaded again


# --- CIFAR-100 as a pre-training set ----------------------------------------------------------------------------

def test_cifar100_pretrains_evaluates_and_fills_the_device(tmp_path):
    written = write_cifar100(tmp_path)
    ds = build_dataset("cifar100", tmp_path, "train", verify=False)
    images, labels = written["train"]
    assert num_classes(ds) == 100 and [ds[i][1] for i in range(len(ds))] == labels
    assert all(np.array_equal(np.asarray(ds[i][0]), images[i]) for i in range(len(ds)))
    views = pretrain_dataset("cifar100", tmp_path, preset_for("cifar100"), verify=False)
    assert views[0][0].shape == (3, 32, 32)
    stored, stored_labels = uint8_images(views)
    assert torch.equal(stored, torch.from_numpy(images).permute(0, 3, 1, 2)) and stored_labels.tolist() == labels
    train, test = eval_datasets("cifar100", tmp_path, preset_for("cifar100"), verify=False)
    assert len(train) == 12 and len(test) == 8 and num_classes(test) == 100


def test_cifar100_integrity_and_corruption(tmp_path):
    write_cifar100(tmp_path)
    with pytest.raises(IntegrityError, match=r"cifar-100-python/train does not match the official md5.*--no-verify"):
        build_dataset("cifar100", tmp_path, "train")
    path = tmp_path / "cifar-100-python" / "test"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CorruptDataError, match=r"cifar-100-python/test is not a readable CIFAR pickle"):
        build_dataset("cifar100", tmp_path, "test", verify=False)
    entry = pickle.loads((tmp_path / "cifar-100-python" / "train").read_bytes(), encoding="latin1")
    entry["fine_labels"] = entry["fine_labels"][:-1]
    (tmp_path / "cifar-100-python" / "train").write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(CorruptDataError, match="'fine_labels' must hold one label in 0..99 per image"):
        build_dataset("cifar100", tmp_path, "train", verify=False)
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(MissingDataError, match=r"cifar100 data incomplete: .* lacks meta; .*--download"):
        build_dataset("cifar100", tmp_path, "train", verify=False)


# --- SVHN -------------------------------------------------------------------------------------------------------

def test_svhn_loads_pixel_exact_with_ten_as_zero(tmp_path):
    written = write_svhn(tmp_path)
    for split in ("train", "test"):
        ds = build_dataset("svhn", tmp_path, split, verify=False)
        images, labels = written[split]
        assert [ds[i][1] for i in range(len(ds))] == labels and 0 in labels and num_classes(ds) == 10
        assert all(np.array_equal(np.asarray(ds[i][0]), images[i]) for i in range(len(ds)))
    views = pretrain_dataset("svhn", tmp_path, preset_for("svhn"), verify=False)
    stored, stored_labels = uint8_images(views)
    assert torch.equal(stored, torch.from_numpy(written["train"][0]).permute(0, 3, 1, 2))
    assert stored_labels.tolist() == written["train"][1] and stored_bytes(views, 32) == stored.numel()
    train, test = eval_datasets("svhn", tmp_path, preset_for("svhn"), verify=False)
    assert test[0][0].shape == (3, 32, 32) and len(train) == 10


def test_svhn_integrity_and_corruption(tmp_path):
    from scipy.io import savemat

    write_svhn(tmp_path)
    with pytest.raises(IntegrityError, match=r"train_32x32\.mat does not match the official md5"):
        build_dataset("svhn", tmp_path, "train")
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CorruptDataError, match=r"test_32x32\.mat: not a readable MATLAB file"):
        build_dataset("svhn", tmp_path, "test", verify=False)
    x = np.zeros((32, 32, 3, 4), np.uint8)
    savemat(path, {"X": x, "y": np.array([[1], [2], [0], [3]], np.uint8)})
    with pytest.raises(CorruptDataError, match=r"labels must be 1..10 \(10 is the digit 0\), found 0..3"):
        build_dataset("svhn", tmp_path, "test", verify=False)
    savemat(path, {"X": x, "y": np.ones((3, 1), np.uint8)})
    with pytest.raises(CorruptDataError, match=r"'y' must hold one label per image \(4\)"):
        build_dataset("svhn", tmp_path, "test", verify=False)
    savemat(path, {"X": np.zeros((28, 28, 4), np.uint8), "y": np.ones((4, 1), np.uint8)})
    with pytest.raises(CorruptDataError, match=r"'X' must be uint8 \[32, 32, 3, N\]"):
        build_dataset("svhn", tmp_path, "test", verify=False)
    savemat(path, {"images": x})
    with pytest.raises(CorruptDataError, match="has no 'X' or 'y' array"):
        build_dataset("svhn", tmp_path, "test", verify=False)
    path.unlink()
    with pytest.raises(MissingDataError, match=r"svhn data not found: missing .*test_32x32\.mat.*--download"):
        build_dataset("svhn", tmp_path, "test", verify=False)


def test_svhn_download_goes_through_torchvision(tmp_path, monkeypatch):
    calls = []

    def fake_download_url(url, root, filename=None, md5=None, **kw):
        calls.append((url, filename, md5))
        write_svhn(root)
    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download_url)
    assert len(build_dataset("svhn", tmp_path, "test", download=True, verify=False)) == 6
    assert calls == [("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "test_32x32.mat",
                      "eb5a983be6a315427106f1b164d9cef3")]


@pytest.mark.parametrize("name", ["fashionmnist", "svhn"])
def test_a_run_pretrains_on_the_device_pipeline(tmp_path, name):
    from superinfo.trainer import TrainConfig, train

    if name == "svhn":
        write_svhn(tmp_path / "data", n_train=32, n_test=16)
    else:
        write_idx(tmp_path / "data", "flat", files="gz", n_train=32, n_test=16)
    cfg = TrainConfig(dataset=name, data_root=str(tmp_path / "data"), verify=False, out=str(tmp_path / "run"),
                      arch="tiny", width=4, z_dim=8, epochs=1, batch_size=8, num_workers=0, warmup_epochs=0,
                      device="cpu", data_pipeline="device", progress=False, final_eval="knn")
    summary = train(cfg)
    assert summary["epoch"] == 1 and 0 <= summary["eval"]["top1"] <= 1
