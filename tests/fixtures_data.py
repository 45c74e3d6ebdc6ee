"""Write small datasets in the exact on-disk formats users download, so tests load them through the user path.

Each writer returns what it wrote (pixels as uint8 HWC arrays, 0-based labels), so tests can check that loading
gives back the same pixels in the same orientation. Pixels are random noise: any transposition shows up.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def _images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def write_cifar10(root, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: pickle protocol 2 dicts with str keys,
    'data' uint8 [n, 3072] (1024 R, then G, then B values, row-major) and 'labels' a list of ints."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    written = {"train": ([], []), "test": ([], [])}

    def batch(path: Path, label: str, n: int, split: str):
        images = _images(rng, n, 32)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        data = images.transpose(0, 3, 1, 2).reshape(n, 3072)       # HWC -> CHW, flattened as in the release
        entry = {"batch_label": label, "labels": labels, "data": data,
                 "filenames": [f"img_{i:05d}.png" for i in range(n)]}
        with open(path, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[split][0].append(images)
        written[split][1].extend(labels)

    for b in range(1, 6):
        batch(folder / f"data_batch_{b}", f"training batch {b} of 5", per_batch, "train")
    batch(folder / "test_batch", "testing batch 1 of 1", n_test, "test")
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": CIFAR10_CLASSES, "num_vis": 3072}, f, protocol=2)
    return {split: (np.concatenate(imgs), labels) for split, (imgs, labels) in written.items()} | {"folder": folder}


def _stl_bytes(images: np.ndarray) -> bytes:
    # STL-10 stores each image channel by channel, each channel column-major: [n, 3, W, H] in C order.
    return np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes()


def write_stl10(root, n_train: int = 6, n_test: int = 4, n_unlabeled: int = 5, seed: int = 0) -> dict:
    """root/stl10_binary/: {train,test,unlabeled}_X.bin (uint8 3x96x96 column-major), {train,test}_y.bin (uint8,
    1-based labels), class_names.txt, fold_indices.txt (10 lines of 0-based train indices)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n, labelled in (("train", n_train, True), ("test", n_test, True), ("unlabeled", n_unlabeled, False)):
        images = _images(rng, n, 96)
        (folder / f"{split}_X.bin").write_bytes(_stl_bytes(images))
        labels = [int(v) for v in rng.integers(0, 10, size=n)] if labelled else [-1] * n
        if labelled:
            (folder / f"{split}_y.bin").write_bytes((np.asarray(labels, dtype=np.uint8) + 1).tobytes())
        written[split] = (images, labels)
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    folds = [" ".join(str(i) for i in rng.permutation(n_train)[: max(1, n_train // 2)]) + " " for _ in range(10)]
    (folder / "fold_indices.txt").write_text("\n".join(folds) + "\n")
    written["folder"] = folder
    return written


def write_imagefolder(root, classes=("cat", "dog", "frog"), per_class: int = 3, splits=("train", "test"),
                      sizes=((20, 14), (9, 9), (33, 25)), seed: int = 0) -> dict:
    """root/<split>/<class>/<i>.png (root/<class>/... when splits is empty): PNGs of mixed sizes; per class, the
    first image is grayscale (mode L), the second RGBA, the rest RGB. Returns {split: [(path, label), ...]}."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    written = {}
    for split in (splits or [None]):
        base = root / split if split else root
        items = []
        for label, name in enumerate(sorted(classes)):
            (base / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                w, h = sizes[i % len(sizes)]
                if i == 0:
                    image = Image.fromarray(rng.integers(0, 256, size=(h, w), dtype=np.uint8))
                elif i == 1:
                    image = Image.fromarray(rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8))
                else:
                    image = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
                path = base / name / f"{i:03d}.png"
                image.save(path)
                items.append((path, label))
        written[split or "all"] = items
    return written


# --- idx (MNIST / Fashion-MNIST) and SVHN ---------------------------------------------------------------------------

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """The idx format: big-endian int32 magic (2051 images, 2049 labels), one big-endian int32 per dimension, then
    the uint8 values in C order."""
    header = np.asarray([magic, *array.shape], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(root, layout: str = "torchvision", folder: str = "FashionMNIST", files: str = "gz", n_train: int = 12,
              n_test: int = 8, seed: int = 0) -> dict:
    """MNIST-format idx files: ``layout`` "torchvision" puts them in root/<folder>/raw/, "flat" directly in root
    (Debian's package: the four .gz files); ``files`` "gz", "raw" or "both" (torchvision keeps both).  Images are
    uint8 [n, 28, 28] noise, labels cycle through 0..9.  Returns {split: (images, labels), "folder": where}."""
    import gzip

    rng = np.random.default_rng(seed)
    where = Path(root) / folder / "raw" if layout == "torchvision" else Path(root)
    where.mkdir(parents=True, exist_ok=True)
    written = {"folder": where}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for name, content in zip(IDX_FILES[split], (idx_bytes(images, 2051), idx_bytes(labels, 2049))):
            if files in ("raw", "both"):
                (where / name).write_bytes(content)
            if files in ("gz", "both"):
                with gzip.open(where / f"{name}.gz", "wb") as f:
                    f.write(content)
        written[split] = (images, labels.tolist())
    return written


def write_svhn(root, n_train: int = 10, n_test: int = 6, seed: int = 0) -> dict:
    """root/{train,test}_32x32.mat as the release (scipy.io.savemat): 'X' uint8 [32, 32, 3, n] (H, W, C, N) and
    'y' uint8 [n, 1] with labels 1..10, 10 standing for the digit 0.  Returns 0-based labels."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = _images(rng, n, 32)                                # [n, 32, 32, 3]
        digits = (np.arange(n) % 10).astype(np.uint8)               # 0..9; the file says 10 for 0
        savemat(Path(root) / f"{split}_32x32.mat", {"X": images.transpose(1, 2, 3, 0),
                                                    "y": np.where(digits == 0, 10, digits)[:, None]})
        written[split] = (images, digits.tolist())
    return written
