"""The transfer linear-evaluation suite on format-exact fixtures of every dataset (tests/fixtures_transfer.py):
what torchvision reads back, the end-to-end run and transfer.json, integrity checks, and bad-input errors."""
import gzip
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from fixtures_transfer import (write_all, write_cifar100, write_dtd, write_flowers102, write_gtsrb, make_run,
                               write_mnist)
from superinfo.cli import main
from superinfo.data import CorruptDataError, IntegrityError, MissingDataError, TransformedDataset, eval_transform, \
    preset_for
from superinfo.data.sources import SOURCES
from superinfo.tools.transfer import TRANSFER_DATASETS, load_transfer_splits, run_transfer


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer_data")
    return root, write_all(root)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("transfer_run") / "run", width=8, image_size=16)


def _labels(dataset):
    return [int(dataset[i][1]) for i in range(len(dataset))]


# --- what torchvision reads back from the fixtures --------------------------------------------------------------

def test_fixtures_read_back_exactly(data_root):
    root, written = data_root
    for name in ("mnist", "fashionmnist"):
        train, test = load_transfer_splits(name, root, verify=False)
        images, labels = written[name]["test"]
        assert _labels(test) == labels and len(train) == 12
        assert test[3][0].mode == "L" and np.array_equal(np.asarray(test[3][0]), images[3])
    train, test = load_transfer_splits("cifar100", root, verify=False)
    images, labels = written["cifar100"]["train"]
    assert _labels(train) == labels and np.array_equal(np.asarray(train[5][0]), images[5])
    assert len(train.classes) == 100
    train, test = load_transfer_splits("gtsrb", root, verify=False)
    for split, ds in (("train", train), ("test", test)):
        images, labels = written["gtsrb"][split]
        assert _labels(ds) == labels
        assert all(np.array_equal(np.asarray(ds[i][0]), images[i]) for i in range(len(ds)))   # PPM: lossless
    train, test = load_transfer_splits("dtd", root, verify=False)
    assert _labels(train) == written["dtd"]["train"] + written["dtd"]["val"]      # train1 + val1
    assert _labels(test) == written["dtd"]["test"] and train[0][0].mode == "RGB"   # grayscale JPEG -> RGB
    train, test = load_transfer_splits("flowers102", root, verify=False)
    assert _labels(train) == written["flowers102"]["train"] + written["flowers102"]["val"]
    assert _labels(test) == written["flowers102"]["test"] and sorted(set(_labels(test))) == [0, 1, 2]
    train, test = load_transfer_splits("cifar10", root, verify=False)
    assert _labels(test) == written["cifar10"]["test"][1]


def test_grayscale_becomes_three_channels_at_the_run_size(data_root):
    root, _ = data_root
    _, test = load_transfer_splits("mnist", root, verify=False)
    x, _ = TransformedDataset(test, eval_transform(preset_for("digits", 16)))[0]
    assert x.shape == (3, 16, 16) and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


# --- the suite end to end ---------------------------------------------------------------------------------------

def test_transfer_suite_end_to_end_on_every_dataset(run_dir, data_root):
    root, _ = data_root
    result = run_transfer(run_dir, TRANSFER_DATASETS, root, verify=False, linear_epochs=3, progress=False)
    saved = json.loads((run_dir / "transfer.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert set(saved["datasets"]) == set(TRANSFER_DATASETS)
    sizes = {"dtd": (12, 6), "mnist": (12, 8), "fashionmnist": (12, 8), "flowers102": (12, 6), "gtsrb": (9, 6),
             "cifar10": (20, 6), "cifar100": (12, 8)}
    for name, (n_train, n_test) in sizes.items():
        entry = saved["datasets"][name]
        assert (entry["n_train"], entry["n_test"]) == (n_train, n_test), name
        assert 0 <= entry["top1"] <= 1 and entry["feature_dim"] == 64      # width-8 ResNet-18: 8 * 8
        assert entry["settings"]["epochs"] == 3 and entry["integrity"].startswith("not verified")
    assert saved["datasets"]["cifar100"]["num_classes"] == 76    # labels up to 75: classes come from the data
    assert saved["image_size"] == 16 and saved["normalisation"]["from"] == "digits"

    # a later call on one dataset replaces its entry and keeps the others
    run_transfer(run_dir, ["mnist"], root, verify=False, linear_epochs=2, progress=False)
    again = json.loads((run_dir / "transfer.json").read_text())
    assert again["datasets"]["mnist"]["settings"]["epochs"] == 2
    assert again["datasets"]["gtsrb"] == saved["datasets"]["gtsrb"]


def test_labels_stay_with_their_images(run_dir, tmp_path):
    # class = image brightness: any misalignment of images and labels (or of train and test) breaks the 100%
    root = tmp_path / "separable"
    written = write_mnist(root, n_train=30, n_test=15)
    raw = written["raw"]
    for prefix, split in (("train", "train"), ("t10k", "test")):
        images, labels = written[split]
        bright = (np.asarray(labels, dtype=np.uint8)[:, None, None] * 120 + images // 16).astype(np.uint8)
        header = (raw / f"{prefix}-images-idx3-ubyte").read_bytes()[:16]
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + bright.tobytes())
    result = run_transfer(run_dir, ["mnist"], root, verify=False, linear_epochs=60, linear_lr=3e-2, progress=False)
    assert result["datasets"]["mnist"]["top1"] == 1.0


# --- integrity -----------------------------------------------------------------------------------------------------

def test_verify_is_on_by_default_and_names_the_missing_archive(data_root):
    root, _ = data_root
    with pytest.raises(IntegrityError, match=r"dtd-r1\.0\.1\.tar\.gz is missing.*--no-verify"):
        load_transfer_splits("dtd", root)
    with pytest.raises(IntegrityError, match=r"cifar-100-python/train does not match the official md5"):
        load_transfer_splits("cifar100", root)


def test_mnist_archives_verify_and_bind_the_raw_files(tmp_path, monkeypatch):
    root = tmp_path / "m"
    write_mnist(root, archives=True)
    with pytest.raises(IntegrityError, match="does not match the official md5"):
        load_transfer_splits("mnist", root)
    # with the fixture's own sums standing in for the official ones, verification passes ...
    raw = root / "MNIST" / "raw"
    sums = {f"MNIST/raw/{p.name}": hashlib.md5(p.read_bytes()).hexdigest() for p in raw.glob("*.gz")}
    monkeypatch.setattr(SOURCES["mnist"], "md5", sums)       # each source reads its own md5 table
    train, test = load_transfer_splits("mnist", root)
    assert len(train) == 12 and len(test) == 8
    # ... and a raw file that no longer matches its verified archive is caught
    images = raw / "t10k-images-idx3-ubyte"
    content = bytearray(images.read_bytes())
    content[100] ^= 0xFF
    images.write_bytes(bytes(content))
    with pytest.raises(IntegrityError, match="t10k-images-idx3-ubyte differs from the decompressed"):
        load_transfer_splits("mnist", root)
    assert gzip.open(raw / "t10k-images-idx3-ubyte.gz").read() != bytes(content)


# --- bad input -----------------------------------------------------------------------------------------------------

def test_missing_data_names_dataset_and_layout(run_dir, tmp_path):
    (tmp_path / "only_mnist").mkdir()
    write_mnist(tmp_path / "only_mnist")
    saved = run_dir / "transfer.json"
    before = saved.read_text() if saved.exists() else None
    with pytest.raises(MissingDataError, match=r"dtd data not found: .*expected layout: .*dtd/dtd/labels"):
        run_transfer(run_dir, ["mnist", "dtd"], tmp_path / "only_mnist", verify=False, linear_epochs=7,
                     progress=False)
    # checked before any work: mnist (listed first) was not evaluated either
    assert (saved.read_text() if saved.exists() else None) == before
    with pytest.raises(MissingDataError, match=r"gtsrb: data root .* does not exist"):
        load_transfer_splits("gtsrb", tmp_path / "nowhere", verify=False)


def test_unknown_dataset_and_missing_root(run_dir, tmp_path):
    with pytest.raises(ValueError, match=r"datasets must be .*dtd, mnist.*got \['imagenet'\]"):
        run_transfer(run_dir, ["mnist", "imagenet"], tmp_path)
    with pytest.raises(ValueError, match="data_root"):
        run_transfer(run_dir, ["mnist"], None)


def test_wrong_formats_name_the_file(tmp_path):
    root = tmp_path / "bad"
    write_mnist(root)
    labels = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    shutil.copy(labels, images)        # a label file where the images should be
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte: idx magic number is 2049, expected 2051"):
        load_transfer_splits("mnist", root, verify=False)

    write_cifar100(root)
    shutil.copy(root / "cifar-100-python" / "meta", root / "cifar-100-python" / "test")
    with pytest.raises(CorruptDataError, match=r"cifar-100-python/test: 'data' must be uint8"):
        load_transfer_splits("cifar100", root, verify=False)

    write_dtd(root)
    listing = root / "dtd" / "dtd" / "labels" / "test1.txt"
    listing.write_text(listing.read_text() + "banded/banded_9999.jpg\n")
    with pytest.raises(CorruptDataError, match="test1.txt: line 7 lists .*banded_9999.jpg, which does not exist"):
        load_transfer_splits("dtd", root, verify=False)

    write_flowers102(root)
    (root / "flowers-102" / "setid.mat").write_text("not a mat file")
    with pytest.raises(CorruptDataError, match=r"setid.mat: not a readable MATLAB file"):
        load_transfer_splits("flowers102", root, verify=False)

    write_gtsrb(root)
    (root / "gtsrb" / "GTSRB" / "Training" / "00001").rename(root / "gtsrb" / "GTSRB" / "Training" / "00007")
    with pytest.raises(CorruptDataError, match="class folders must be 00000..00002 without gaps"):
        load_transfer_splits("gtsrb", root, verify=False)


def test_cifar10_batch_in_place_of_cifar100_is_refused(tmp_path):
    from fixtures_data import write_cifar10

    root = tmp_path / "mixed"
    write_cifar100(root)
    write_cifar10(root)
    shutil.copy(root / "cifar-10-batches-py" / "data_batch_1", root / "cifar-100-python" / "train")
    with pytest.raises(CorruptDataError, match="has no 'fine_labels'.*CIFAR-10 batch"):
        load_transfer_splits("cifar100", root, verify=False)


def test_cli_transfer(run_dir, data_root, capsys):
    root, _ = data_root
    code = main(["transfer", "--run", str(run_dir), "--datasets", "gtsrb,cifar100", "--data-root", str(root),
                 "--no-verify", "--epochs", "2", "--no-progress", "--threads", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "gtsrb" in out and "cifar100" in out and "transfer.json" in out
    assert main(["transfer", "--run", str(run_dir), "--datasets", "cifar100", "--data-root", str(root),
                 "--no-progress", "--threads", "1"]) == 2         # md5 checks stay on without --no-verify
    assert "does not match the official md5" in capsys.readouterr().err
    assert main(["transfer", "--run", str(run_dir), "--datasets", "svhn", "--data-root", str(root)]) == 2
