"""MNIST and Fashion-MNIST: the idx format (big-endian header, then uint8 pixels), raw or gzipped, in either of two
layouts:

    torchvision's   ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]   (FashionMNIST/raw/ likewise)
    flat            ROOT/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] directly, e.g. Debian's package
                    (--data-root /usr/share/datasets/fashion-mnist)
    splits: train, test (60000 and 10000 grayscale 28 x 28 images, labels 0..9)

Integrity.  torchvision's layout with verify=True: the four ``.gz`` archives torchvision downloads must match its
md5 list, and a raw file next to its archive must equal the decompressed archive (a missing archive is an error,
not a skipped check).  The flat layout's archives are not those bytes (Debian recompresses them), so no md5 can
be checked there: with verify=True its content is checked instead (idx magic numbers, 28 x 28 images, 60000 and
10000 images, labels 0..9), and a warning says so.  Both layouts and both modes check the structure: magic
numbers, sizes against the header, 28 x 28 images, one label in 0..9 per image.  Failures raise CorruptDataError /
IntegrityError / MissingDataError naming the file.
"""
from __future__ import annotations

import gzip
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets

from ..integrity import IntegrityError, MissingDataError
from ..preset import DataPreset
from .base import NO_VERIFY_HINT, Source, corrupt, verify_md5

__all__ = ["FASHIONMNIST", "MNIST", "IdxImages", "OFFICIAL_COUNTS", "read_idx"]

STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
OFFICIAL_COUNTS = {"train": 60_000, "test": 10_000}   # checked in the flat layout with verify=True
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049                 # 0x0803: uint8, 3 dims; 0x0801: uint8, 1 dim
SIDE = 28
_WARNED = set()


class IdxImages(Dataset):
    """Grayscale images from idx files as (PIL image of mode L, label); ``data`` uint8 [N, 28, 28], ``targets``.
    ``uint8_layout`` tells ``superinfo.data.device_data`` how ``data`` is stored (one channel: repeated to 3)."""

    uint8_layout = "NHW"

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes, integrity: str = ""):
        self.data = images
        self.targets = [int(v) for v in labels]
        self.classes = list(classes)
        self.integrity = integrity

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return Image.fromarray(self.data[index], mode="L"), self.targets[index]


def _content(name: str, path: Path) -> bytes:
    """The file's bytes, decompressed when it ends in .gz."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:      # gzip.BadGzipFile is an OSError; truncated: EOFError
        raise corrupt(name, path, f"not a readable gzip file ({type(exc).__name__}: {exc}); the download is "
                                  f"truncated or corrupt, re-download it") from exc


def read_idx(name: str, path: Path, magic: int, content: bytes | None = None) -> np.ndarray:
    """An idx file (raw or .gz) as a uint8 array of its header's shape; CorruptDataError naming the file when its
    magic number or size is wrong."""
    content = _content(name, path) if content is None else content
    dims = magic & 0xFF
    header = 4 * (dims + 1)
    kind = "image" if dims == 3 else "label"
    if len(content) < header:
        raise corrupt(name, path, f"{len(content)} bytes: too short for an idx {kind} header ({header} bytes)")
    values = np.frombuffer(content[:header], dtype=">u4")
    if int(values[0]) != magic:
        raise corrupt(name, path, f"idx magic number is {int(values[0])}, expected {magic} (not an MNIST-format "
                                  f"{kind} file)")
    shape = tuple(int(v) for v in values[1:])
    expected = header + int(np.prod(shape))
    if len(content) != expected:
        raise corrupt(name, path, f"{len(content)} bytes{' decompressed' if path.suffix == '.gz' else ''}, but "
                                  f"its header {shape} needs {expected}; the file is truncated or corrupt")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape).copy()


class MnistSource(Source):
    """MNIST's idx files, in torchvision's layout or flat (see the module docstring)."""

    name = "mnist"
    folder = "MNIST"                  # torchvision's: ROOT/MNIST/raw
    tv_class = tv_datasets.MNIST
    splits = ("train", "test")
    pretrain_split = "train"
    eval_splits = ("train", "test")
    transfer_splits = (("train",), "test")
    # the digits are centred strokes: mild crops, no flips (as for scikit-learn's digits)
    preset = DataPreset(28, (0.1307,) * 3, (0.3081,) * 3, crop_scale=(0.7, 1.0), blur=False, jitter_strength=0.5,
                        flip_prob=0.0)

    @property
    def layout(self) -> str:
        return (f"ROOT/{self.folder}/raw/{{train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                f"t10k-labels-idx1-ubyte}} (or their .gz; verify also needs the four .gz archives next to them), or "
                f"the four {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz directly in ROOT (e.g. Debian's "
                f"--data-root /usr/share/datasets/fashion-mnist; content-checked, as no official md5 covers them)")

    def __init__(self):
        # the archives torchvision downloads (an attribute, so a test can stand its own sums in)
        self.md5 = {f"{self.folder}/raw/{f}": md5 for f, md5 in self.tv_class.resources}

    @property
    def classes(self) -> list:
        return list(self.tv_class.classes)

    def files(self, root: Path) -> tuple:
        """``(layout, {stem: path})``: torchvision's layout unless only ROOT itself holds idx files; each file as
        it is present (raw before .gz), else its raw name in torchvision's layout."""
        stems = [s for pair in STEMS.values() for s in pair]
        raw = root / self.folder / "raw"

        def present(folder):
            return {s: next((p for p in (folder / s, folder / f"{s}.gz") if p.is_file()), None) for s in stems}
        found = present(raw)
        if not any(found.values()):
            flat = present(root)
            if any(flat.values()):
                return "flat", {s: p or root / f"{s}.gz" for s, p in flat.items()}
        return "torchvision", {s: p or raw / s for s, p in found.items()}

    def required_files(self, root: Path) -> list:
        return list(self.files(root)[1].values())

    def download(self, root: Path) -> None:
        self.tv_class(str(root), download=True)     # into ROOT/<folder>/raw, archives kept

    def integrity_note(self, root: Path, verify: bool) -> str:
        if not verify:
            return super().integrity_note(root, verify)
        if self.files(root)[0] == "flat":
            return ("content checked, not md5 (flat layout: its archives are not the files torchvision's md5 list "
                    "covers): idx magic numbers, 28x28 images, 60000/10000 images, labels 0..9")
        return super().integrity_note(root, verify) + "; the raw files equal the decompressed archives"

    def _read(self, root: Path, layout: str, files: dict, stem: str, magic: int, verify: bool) -> np.ndarray:
        """One idx file; in torchvision's layout with verify, through its md5-checked archive."""
        path, content = files[stem], None
        if layout == "torchvision" and verify:
            rel = f"{self.folder}/raw/{stem}.gz"
            verify_md5(self.name, root, {rel: self.md5[rel]})
            archive = root / rel
            content = _content(self.name, archive)
            plain = archive.with_name(stem)
            if plain.is_file() and plain.read_bytes() != content:
                raise IntegrityError(f"{self.name}: {plain} differs from the decompressed official archive "
                                     f"{archive}; {NO_VERIFY_HINT}")
        return read_idx(self.name, path, magic, content)

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        if download and not all(p.is_file() for p in self.required_files(root)):
            root.mkdir(parents=True, exist_ok=True)
            self.download(root)
        layout, files = self.files(root)
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise MissingDataError(f"{self.name} data not found: missing {', '.join(missing)}; {self.how(root)}")
        image_stem, label_stem = STEMS[split]
        images = self._read(root, layout, files, image_stem, IMAGE_MAGIC, verify)
        labels = self._read(root, layout, files, label_stem, LABEL_MAGIC, verify)
        image_path, label_path = files[image_stem], files[label_stem]
        if images.shape[1:] != (SIDE, SIDE):
            raise corrupt(self.name, image_path, f"images are {images.shape[1]}x{images.shape[2]}, expected "
                                                 f"{SIDE}x{SIDE}")
        if len(labels) != len(images):
            raise corrupt(self.name, label_path, f"{len(labels)} labels for {len(images)} images in "
                                                 f"{image_path.name}")
        if len(labels) and labels.max() >= len(self.classes):
            raise corrupt(self.name, label_path, f"labels must be 0..{len(self.classes) - 1}, found "
                                                 f"{int(labels.max())}")
        note = self.integrity_note(root, verify)
        if layout == "flat" and verify:
            if len(images) != OFFICIAL_COUNTS[split]:
                raise corrupt(self.name, image_path, f"{len(images)} images, the official {split} split has "
                                                     f"{OFFICIAL_COUNTS[split]}: the file is not the official release "
                                                     f"(verify=False / --no-verify accepts other sizes)")
            if (self.name, str(root)) not in _WARNED:
                _WARNED.add((self.name, str(root)))
                warnings.warn(f"{self.name}: {root} holds the idx files directly (not torchvision's layout); {note}",
                              stacklevel=4)
        return IdxImages(images, labels, self.classes, note)


class FashionMnistSource(MnistSource):
    name = "fashionmnist"
    folder = "FashionMNIST"
    tv_class = tv_datasets.FashionMNIST
    # clothes are mirror-symmetric enough to flip; centred, so crops stay moderate
    preset = DataPreset(28, (0.2860,) * 3, (0.3530,) * 3, crop_scale=(0.2, 1.0), blur=False, jitter_strength=0.5)


MNIST = MnistSource()
FASHIONMNIST = FashionMnistSource()
