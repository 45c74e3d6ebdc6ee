"""DTD (Describable Textures), torchvision's layout, read by torchvision's DTD after our checks.

    dtd   ROOT/dtd/dtd/images/<class>/<image>.jpg, ROOT/dtd/dtd/labels/{train,val,test}1.txt (lines
          '<class>/<image>.jpg')      splits: train, val, test (partition 1); transfer: train1+val1 / test1

verify=True checks the archive torchvision downloads and keeps (ROOT/dtd/dtd-r1.0.1.tar.gz; torchvision has no
per-image sums, so the extracted images are covered only through it).  Both modes check that every listed image
exists and the three listings name the same classes.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets

from ..images import load_rgb
from .base import ArchiveSource, corrupt

__all__ = ["DTD", "DTD_PARTITION"]

DTD_PARTITION = 1           # torchvision's default; the InfoCL / Kornblith et al. protocol reports partition 1


class DtdSource(ArchiveSource):
    name = "dtd"
    splits = ("train", "val", "test")
    transfer_splits = (("train", "val"), "test")
    layout = ("ROOT/dtd/dtd/images/<class>/<image>.jpg and ROOT/dtd/dtd/labels/{train,val,test}1.txt (lines "
              "'<class>/<image>.jpg'); verify also needs ROOT/dtd/dtd-r1.0.1.tar.gz")
    md5 = {"dtd/dtd-r1.0.1.tar.gz": tv_datasets.DTD._MD5}

    def required_files(self, root: Path) -> list:
        labels = root / "dtd" / "dtd" / "labels"
        return [root / "dtd" / "dtd" / "images"] + [labels / f"{s}{DTD_PARTITION}.txt" for s in self.splits]

    def download(self, root: Path) -> None:
        tv_datasets.DTD(str(root), download=True)

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        self.checked_root(root, download, verify)
        folder = root / "dtd" / "dtd"
        classes = {}
        for part in self.splits:
            listing = folder / "labels" / f"{part}{DTD_PARTITION}.txt"
            names = set()
            for number, line in enumerate(listing.read_text().splitlines(), 1):
                parts = line.strip().split("/")
                if len(parts) != 2 or not all(parts):
                    raise corrupt("dtd", listing, f"line {number} is {line!r}, expected '<class>/<image>.jpg'")
                if not (folder / "images" / parts[0] / parts[1]).is_file():
                    raise corrupt("dtd", listing, f"line {number} lists {folder / 'images' / line.strip()}, which "
                                                  f"does not exist")
                names.add(parts[0])
            if not names:
                raise corrupt("dtd", listing, "lists no images")
            classes[part] = sorted(names)
        if not classes["train"] == classes["val"] == classes["test"]:
            # torchvision numbers the classes of each split file on its own: they must hold the same classes
            raise corrupt("dtd", folder / "labels", f"train/val/test{DTD_PARTITION}.txt must list the same classes "
                                                    f"(got {len(classes['train'])}, {len(classes['val'])}, "
                                                    f"{len(classes['test'])})")
        return tv_datasets.DTD(str(root), split=split, partition=DTD_PARTITION, loader=load_rgb)


DTD = DtdSource()
