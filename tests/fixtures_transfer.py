"""Write tiny copies of the transfer datasets in the exact on-disk layouts torchvision 0.29 reads (its sources in
torchvision/datasets/{mnist,cifar,dtd,flowers102,gtsrb}.py), so tests load them through the user path.

Each writer returns what it wrote: images as uint8 HWC arrays (or sizes, for JPEGs, which are lossy) and 0-based
labels, per split.  Pixels are random noise, so a transposed or shifted read shows up.
"""
from __future__ import annotations

import csv
import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from fixtures_data import write_cifar10  # noqa: F401  (re-exported: the suite's CIFAR-10 fixture)

DTD_CLASSES = ["banded", "blotchy", "braided"]


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    # idx format: big-endian int32 magic (0x0000 08 nd), one big-endian int32 per dimension, then uint8 data
    header = np.asarray([magic, *array.shape], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(root, folder: str = "MNIST", n_train: int = 12, n_test: int = 8, archives: bool = False,
                seed: int = 0) -> dict:
    """root/<folder>/raw/{train,t10k}-images-idx3-ubyte (uint8 [n, 28, 28]) and -labels-idx1-ubyte (uint8 [n]);
    ``archives``: also the .gz files torchvision downloads (gzip of the same bytes)."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {"raw": raw}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 3
        files = {f"{prefix}-images-idx3-ubyte": _idx_bytes(images, 2051),
                 f"{prefix}-labels-idx1-ubyte": _idx_bytes(labels, 2049)}
        for name, content in files.items():
            (raw / name).write_bytes(content)
            if archives:
                with gzip.open(raw / f"{name}.gz", "wb") as f:
                    f.write(content)
        written[split] = (images, labels.tolist())
    return written


def write_cifar100(root, n_train: int = 12, n_test: int = 8, seed: int = 0) -> dict:
    """root/cifar-100-python/{train, test, meta}: pickle protocol 2 dicts with str keys; 'data' uint8 [n, 3072]
    (R plane, G plane, B plane, row-major), 'fine_labels' and 'coarse_labels' lists; meta has the 100
    'fine_label_names' and 20 'coarse_label_names'."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    written = {"folder": folder}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        fine = [int(v) for v in np.arange(n) % 4 * 25]        # classes 0, 25, 50, 75: sparse, as any subset is
        entry = {"filenames": [f"img_{i}.png" for i in range(n)], "batch_label": f"{split} batch",
                 "fine_labels": fine, "coarse_labels": [v // 5 for v in fine],
                 "data": images.transpose(0, 3, 1, 2).reshape(n, 3072)}
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[split] = (images, fine)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"fine_{i}" for i in range(100)],
                     "coarse_label_names": [f"coarse_{i}" for i in range(20)]}, f, protocol=2)
    return written


def _random_image(rng, width: int, height: int, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "L": 1}[mode]
    array = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(array[..., 0] if channels == 1 else array)


def write_dtd(root, classes=DTD_CLASSES, per_split: int = 2, seed: int = 0) -> dict:
    """root/dtd/dtd/images/<class>/<class>_NNNN.jpg (mixed sizes, one grayscale) and root/dtd/dtd/labels/
    {train,val,test}1.txt, each line '<class>/<file>'; labels are the sorted class index."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "dtd" / "dtd"
    (base / "labels").mkdir(parents=True, exist_ok=True)
    written, counter = {}, 0
    for split in ("train", "val", "test"):
        lines, labels = [], []
        for label, name in enumerate(sorted(classes)):
            (base / "images" / name).mkdir(parents=True, exist_ok=True)
            for _ in range(per_split):
                counter += 1
                file = f"{name}_{counter:04d}.jpg"
                mode = "L" if counter == 1 else "RGB"
                _random_image(rng, 20 + counter % 7, 18 + counter % 5, mode).save(base / "images" / name / file)
                lines.append(f"{name}/{file}")
                labels.append(label)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
        written[split] = labels
    written["folder"] = base
    return written


def write_flowers102(root, n_images: int = 18, classes: int = 3, seed: int = 0) -> dict:
    """root/flowers-102/jpg/image_00001.jpg ..., imagelabels.mat ('labels': 1-based [1, n]) and setid.mat
    ('trnid', 'valid', 'tstid': 1-based image ids [1, k]), written with scipy.io.savemat as in the release."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    base = Path(root) / "flowers-102"
    (base / "jpg").mkdir(parents=True, exist_ok=True)
    for i in range(1, n_images + 1):
        _random_image(rng, 24 + i % 5, 20 + i % 3).save(base / "jpg" / f"image_{i:05d}.jpg")
    labels = (np.arange(n_images) // 3 % classes + 1).astype(np.uint8)   # 1-based, as in the release
    ids = np.arange(1, n_images + 1, dtype=np.uint16)
    split_ids = {"trnid": ids[0::3], "valid": ids[1::3], "tstid": ids[2::3]}
    savemat(base / "imagelabels.mat", {"labels": labels[None, :]})
    savemat(base / "setid.mat", {k: v[None, :] for k, v in split_ids.items()})
    label_of = {int(i): int(labels[i - 1]) - 1 for i in ids}
    return {"folder": base, **{split: [label_of[int(i)] for i in split_ids[key]]
                               for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid"))}}


def write_gtsrb(root, classes: int = 3, per_class: int = 3, n_test: int = 6, seed: int = 0) -> dict:
    """root/gtsrb/GTSRB/Training/<00000..>/NNNNN_NNNNN.ppm + GT-<class>.csv, root/gtsrb/GTSRB/Final_Test/Images/
    NNNNN.ppm + GT-final_test.test.csv (no ClassId), and root/gtsrb/GT-final_test.csv (';'-separated, with
    ClassId), as the official zips extract.  PPM is lossless: pixels come back exactly."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "gtsrb"
    header = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]
    written = {"train": ([], []), "test": ([], [])}
    for c in range(classes):
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(per_class):
            image = rng.integers(0, 256, size=(15 + i, 17 + c, 3), dtype=np.uint8)
            name = f"00000_{i:05d}.ppm"
            Image.fromarray(image).save(folder / name)
            rows.append([name, image.shape[1], image.shape[0], 1, 1, image.shape[1] - 1, image.shape[0] - 1, c])
            written["train"][0].append(image)
            written["train"][1].append(c)
        _write_csv(folder / f"GT-{c:05d}.csv", header, rows)
    images = base / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_test):
        image = rng.integers(0, 256, size=(16, 18, 3), dtype=np.uint8)
        name = f"{i:05d}.ppm"
        Image.fromarray(image).save(images / name)
        rows.append([name, 18, 16, 1, 1, 17, 15, i % classes])
        written["test"][0].append(image)
        written["test"][1].append(i % classes)
    _write_csv(images / "GT-final_test.test.csv", header[:-1], [r[:-1] for r in rows])
    _write_csv(base / "GT-final_test.csv", header, rows)
    written["folder"] = base
    return written


def _write_csv(path: Path, header, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(header)
        writer.writerows(rows)


def write_all(root, seed: int = 0) -> dict:
    """Every transfer dataset under one root (CIFAR-10 through tests/fixtures_data.py)."""
    return {"dtd": write_dtd(root, seed=seed), "mnist": write_mnist(root, "MNIST", seed=seed),
            "fashionmnist": write_mnist(root, "FashionMNIST", seed=seed + 1),
            "flowers102": write_flowers102(root, seed=seed), "gtsrb": write_gtsrb(root, seed=seed),
            "cifar10": write_cifar10(root, seed=seed), "cifar100": write_cifar100(root, seed=seed)}


class _StandInViews:
    """(view1, view2, label) of random 3-class images: enough for one training step (no scikit-learn import)."""

    num_classes = 3

    def __init__(self, n: int = 16, size: int = 16, seed: int = 0):
        import torch
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.noise = 0.1 * torch.randn(2, n, 3, size, size, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + self.noise[0, i], self.x[i] + self.noise[1, i], i % 3


def make_run(out, *, arch: str = "resnet18", width: int = 8, cifar_stem: bool = True, image_size: int = 16,
             steps: int = 1) -> Path:
    """A real run folder (config.json, checkpoint.pt with the online probe) after ``steps`` training steps, so
    BatchNorm statistics and the probe are trained values.  Its config names the digits preset, whose input
    normalisation transfer and export read."""
    from superinfo.trainer import TrainConfig, train

    cfg = TrainConfig(dataset="digits", out=str(out), arch=arch, width=width, cifar_stem=cifar_stem,
                      image_size=image_size, epochs=1, batch_size=8, max_steps_per_epoch=steps, num_workers=0,
                      warmup_epochs=0.0, progress=False, final_eval="none", log_every=1)
    train(cfg, pretrain_data=_StandInViews(size=image_size), num_classes=3)
    return Path(out)
