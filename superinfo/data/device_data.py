"""Data sets that fit on the device: their uint8 images moved there once, batches drawn by index and augmented
there (``device_augment``), so a training step reads no image from the host and waits on no CPU worker.

    images, labels = uint8_images(pretrain_ds)            # [N, 3, H, W] uint8 and int64 labels, on the CPU
    batches = DeviceBatches(images.to(dev), labels, batch_size, DeviceAugment(preset, dev),
                            order=torch.Generator().manual_seed(seed),
                            augment=torch.Generator(device=dev).manual_seed(seed))
    for v1, v2, y in batches: ...                          # y on the device; batch.labelled: its labelled rows

Which data sets (``fits``): CIFAR-10/100, STL-10 (its stored 96 px images), MNIST and Fashion-MNIST (28 px,
the gray channel repeated to RGB), SVHN, digits, the synthetic images, any source dataset that declares how its
uint8 ``data`` is stored (``uint8_layout``: "NCHW", "NHWC" or "NHW"), and an
ImageFolder of at most ``FOLDER_MAX_IMAGES`` images (each stored at the crop size, shorter side resized, centre
cropped), when the uint8 tensor takes at most ``MAX_BYTES`` and at most ``MAX_MEMORY_SHARE`` of the GPU's memory.
ImageNet-scale folders stay on the DataLoader.

The order of each epoch is a permutation drawn from the rank's CPU generator (the DataLoader's, whose state the
checkpoint already holds) and copied to the device once per epoch: the host keeps it, so it knows how many rows
of each batch carry a label (the probe skips a batch without one) without reading anything back from the device.
Under torch.distributed the permutation is (seed, epoch)'s, each rank taking every W-th index, as
``DistributedSampler(drop_last=True)``.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .augment import to_rgb
from .device_augment import DeviceAugment

__all__ = ["FOLDER_MAX_IMAGES", "MAX_BYTES", "MAX_MEMORY_SHARE", "DeviceBatch", "DeviceBatches", "fits",
           "stored_bytes", "uint8_images"]

MAX_BYTES = 8 * 2**30           # 8 GiB of uint8 images (CIFAR-10: 150 MiB, STL-10 unlabelled: 1.3 GiB)
MAX_MEMORY_SHARE = 0.25         # and at most a quarter of the GPU's memory
FOLDER_MAX_IMAGES = 200_000     # an ImageFolder is decoded once, on the CPU: beyond this, the DataLoader


# how a source's dataset stores ``.data`` (declared as its ``uint8_layout``): the axes that give [N, C, H, W]
_LAYOUTS = {"NCHW": None, "NHWC": (0, 3, 1, 2), "NHW": None}


def _array_images(base) -> torch.Tensor:
    """A source's uint8 ``data`` as [N, 3, H, W]: channels last moved first, one channel (grayscale) repeated."""
    array = np.asarray(base.data)
    if base.uint8_layout == "NHW":
        array = np.repeat(array[:, None], 3, axis=1)
    elif _LAYOUTS[base.uint8_layout] is not None:
        array = array.transpose(_LAYOUTS[base.uint8_layout])
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.uint8))


def _base(dataset):
    return _base_and_rows(dataset)[0]


def _base_and_rows(dataset):
    """The stored data set under the wrappers (views, transforms, fixed subsets) and the rows of it they keep (None:
    all of them): a holdout subset's indices, composed through every level, so that the device holds the train
    split only and never the images held out for testing."""
    rows = None
    while hasattr(dataset, "base") and not hasattr(dataset, "images_uint8"):
        if hasattr(dataset, "indices"):
            index = torch.as_tensor(dataset.indices, dtype=torch.int64)
            rows = index if rows is None else index[rows]
        dataset = dataset.base
    return dataset, rows


def _kind(base) -> str | None:
    from torchvision.datasets import CIFAR10, STL10, ImageFolder

    from .sources.digits import DigitsDataset
    if hasattr(base, "images_uint8"):
        return "tensor"
    if getattr(base, "uint8_layout", None) in _LAYOUTS:       # a source's own array (MNIST, SVHN, ...)
        return "array"
    if isinstance(base, CIFAR10):
        return "cifar"
    if isinstance(base, STL10):
        return "stl"
    if isinstance(base, DigitsDataset):
        return "digits"
    if isinstance(base, ImageFolder):
        return "folder"
    return None


def stored_bytes(dataset, image_size: int) -> int | None:
    """The size of ``uint8_images(dataset)`` without decoding anything; None when it cannot be built (an in-memory
    data set of float views, an ImageNet-size folder)."""
    base, rows = _base_and_rows(dataset)
    kept = 1.0 if rows is None else len(rows) / max(len(base), 1)
    size = _stored_bytes_of(base, image_size)
    return None if size is None else int(round(size * kept))


def _stored_bytes_of(base, image_size: int) -> int | None:
    kind = _kind(base)
    if kind == "tensor":
        return base.images_uint8.numel()
    if kind in ("cifar", "stl"):
        return int(np.prod(base.data.shape))
    if kind == "array":
        return int(np.prod(base.data.shape)) * (3 if base.uint8_layout == "NHW" else 1)
    if kind == "digits":
        return len(base) * 3 * base.image_size ** 2
    if kind == "folder" and len(base) <= FOLDER_MAX_IMAGES:
        return len(base) * 3 * image_size ** 2
    return None


def fits(dataset, image_size: int, device: torch.device) -> bool:
    """``--data-pipeline auto``'s rule: a CUDA device, a data set ``uint8_images`` can hold, and its bytes at most
    ``MAX_BYTES`` and ``MAX_MEMORY_SHARE`` of the GPU's memory."""
    if device.type != "cuda":
        return False
    size = stored_bytes(dataset, image_size)
    if size is None:
        return False
    total = torch.cuda.get_device_properties(device).total_memory
    return size <= min(MAX_BYTES, MAX_MEMORY_SHARE * total)


def _pil_to_uint8(image: Image.Image, size: int | None) -> np.ndarray:
    image = to_rgb(image)
    if size is not None and image.size != (size, size):
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def uint8_images(dataset, image_size: int | None = None):
    """``(images, labels)``: uint8 [N, 3, H, W] and int64 [N] CPU tensors of a pre-training data set (a ``TwoViews``
    of CIFAR-10/100, STL-10, MNIST, Fashion-MNIST, SVHN, digits, synthetic images or an ImageFolder; or
    anything with ``images_uint8`` and ``labels``, or with uint8 ``data``, ``targets`` and ``uint8_layout``).
    Stored arrays keep their stored size (the crop is taken from it, as on the CPU; grayscale repeated to 3
    channels); folder
    images are stored at ``image_size`` (shorter side resized, centre crop)."""
    base, rows = _base_and_rows(dataset)
    if rows is not None and _kind(base) in ("digits", "folder"):      # decode only the kept images
        images, labels = _decoded(base, _kind(base), image_size, rows.tolist())
        return images, labels
    images, labels = _all_uint8_images(base, image_size)
    return (images, labels) if rows is None else (images[rows], labels[rows])


def _decoded(base, kind: str, image_size, rows) -> tuple:
    if kind == "folder" and len(rows) > FOLDER_MAX_IMAGES:
        raise ValueError(f"{len(rows)} images: more than FOLDER_MAX_IMAGES = {FOLDER_MAX_IMAGES} to decode "
                         "into memory; use the DataLoader pipeline")
    items = [base[i] for i in rows]
    size = None if kind == "digits" else image_size
    images = np.stack([_pil_to_uint8(im, size) for im, _ in items])
    return torch.from_numpy(images), torch.as_tensor([y for _, y in items], dtype=torch.int64)


def _all_uint8_images(base, image_size):
    kind = _kind(base)
    if kind == "tensor":
        return base.images_uint8, torch.as_tensor(base.labels, dtype=torch.int64)
    if kind == "cifar":
        images = torch.from_numpy(np.ascontiguousarray(base.data.transpose(0, 3, 1, 2)))
        return images, torch.as_tensor(base.targets, dtype=torch.int64)
    if kind == "stl":
        return torch.from_numpy(np.ascontiguousarray(base.data)), torch.as_tensor(base.labels, dtype=torch.int64)
    if kind == "array":
        return _array_images(base), torch.as_tensor(base.targets, dtype=torch.int64)
    if kind in ("digits", "folder"):
        return _decoded(base, kind, image_size, range(len(base)))
    raise ValueError(f"a {type(base).__name__} cannot be held as uint8 images on the device (CIFAR-10/100, STL-10, "
                     "MNIST, Fashion-MNIST, SVHN, digits, synthetic and ImageFolder data sets can); use the "
                     "DataLoader pipeline")


class DeviceBatch(tuple):
    """``(view1, view2, labels)`` on the device, with ``labelled``: the number of labels >= 0, known on the host."""

    labelled: int

    def __new__(cls, views1, views2, labels, labelled: int):
        batch = super().__new__(cls, (views1, views2, labels))
        batch.labelled = labelled
        return batch


def _count_labelled_per_batch(labels: torch.Tensor, order: torch.Tensor, batch: int, steps: int) -> list:
    """Labelled rows of each batch of this epoch: host tensors only (the CPU permutation and labels)."""
    keep = (labels[order[:steps * batch]] >= 0).view(steps, batch).sum(dim=1)
    return keep.tolist()


class DeviceBatches:
    """An epoch's batches of two augmented views from images on the device (``DataLoader(drop_last=True)``'s
    length and ``set_epoch``)."""

    sampler = None

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, augment: DeviceAugment, *,
                 order: torch.Generator, augment_generator: torch.Generator, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        self.images, self.labels = images, labels.cpu()
        self.labels_device = self.labels.to(images.device)
        self.batch_size, self.augment = batch_size, augment
        self.order, self.augment_generator = order, augment_generator
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        self.per_rank = len(self.labels) // world_size
        self.dataset = images       # len(loader.dataset), as a DataLoader

    def __len__(self):
        return self.per_rank // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _permutation(self) -> torch.Tensor:
        n = len(self.labels)
        if self.world_size == 1:
            return torch.randperm(n, generator=self.order)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(n, generator=g)[:self.per_rank * self.world_size][self.rank::self.world_size]

    def __iter__(self):
        steps, b = len(self), self.batch_size
        order = self._permutation()
        labelled = _count_labelled_per_batch(self.labels, order, b, steps)
        if self.images.device.type == "cuda":
            order = order.pin_memory()
        order = order.to(self.images.device, non_blocking=True)
        for i in range(steps):
            idx = order[i * b:(i + 1) * b]
            x = self.images.index_select(0, idx)
            views = self.augment(torch.cat([x, x]), self.augment_generator)    # both views in one pass
            yield DeviceBatch(views[:b], views[b:], self.labels_device.index_select(0, idx), labelled[i])
