"""GTSRB (German Traffic Sign Recognition Benchmark), torchvision's layout, read by torchvision's GTSRB after our
checks.

    gtsrb   ROOT/gtsrb/GTSRB/Training/<00000..00042>/*.ppm, ROOT/gtsrb/GTSRB/Final_Test/Images/*.ppm,
            ROOT/gtsrb/GT-final_test.csv          splits: train, test

verify=True checks the md5 of the three zips torchvision downloads and keeps (the extracted images are covered only
through them).  Both modes check the class folders (00000.. without gaps) and that the test table names existing
images and known classes.
"""
from __future__ import annotations

import csv
from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets

from .base import ArchiveSource, corrupt

__all__ = ["GTSRB"]


class _GTSRB(tv_datasets.GTSRB):
    """torchvision's GTSRB; an unreadable image raises CorruptDataError naming the file."""

    def __getitem__(self, index):
        try:
            return super().__getitem__(index)
        except OSError as exc:
            raise corrupt("gtsrb", self._samples[index][0], f"cannot read image ({exc})") from exc


class GtsrbSource(ArchiveSource):
    name = "gtsrb"
    splits = ("train", "test")
    transfer_splits = (("train",), "test")
    layout = ("ROOT/gtsrb/GTSRB/Training/<00000..00042>/*.ppm, ROOT/gtsrb/GTSRB/Final_Test/Images/*.ppm and "
              "ROOT/gtsrb/GT-final_test.csv; verify also needs ROOT/gtsrb/{GTSRB-Training_fixed.zip, "
              "GTSRB_Final_Test_Images.zip, GTSRB_Final_Test_GT.zip}")
    # md5s of the archives torchvision downloads (torchvision 0.29 sources: inside GTSRB.download)
    md5 = {"gtsrb/GTSRB-Training_fixed.zip": "513f3c79a4c5141765e10e952eaa2478",
           "gtsrb/GTSRB_Final_Test_Images.zip": "c7e4e6327067d32654124b0fe9e82185",
           "gtsrb/GTSRB_Final_Test_GT.zip": "fe31e9c9270bbcd7b84b7f21a9d9d9e5"}

    def required_files(self, root: Path) -> list:
        base = root / "gtsrb"
        return [base / "GTSRB" / "Training", base / "GTSRB" / "Final_Test" / "Images", base / "GT-final_test.csv"]

    def download(self, root: Path) -> None:
        tv_datasets.GTSRB(str(root), split="train", download=True)
        tv_datasets.GTSRB(str(root), split="test", download=True)

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        self.checked_root(root, download, verify)
        base = root / "gtsrb"
        training = base / "GTSRB" / "Training"
        folders = sorted(p.name for p in training.iterdir() if p.is_dir())
        # torchvision numbers the training folders in sorted order, the test csv by ClassId: they agree only if
        # the folders are 00000, 00001, ... without gaps
        if folders != [f"{i:05d}" for i in range(len(folders))] or not folders:
            raise corrupt("gtsrb", training, f"class folders must be 00000..{len(folders) - 1:05d} without gaps, "
                                             f"found {folders[:5]}{'...' if len(folders) > 5 else ''}")
        for folder in folders:
            if not any(p.suffix == ".ppm" for p in (training / folder).iterdir()):
                raise corrupt("gtsrb", training / folder, "holds no .ppm image")
        table = base / "GT-final_test.csv"
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";", skipinitialspace=True))
        if not rows or not {"Filename", "ClassId"} <= set(rows[0]):
            raise corrupt("gtsrb", table, "must be a ';'-separated table with Filename and ClassId columns")
        images = base / "GTSRB" / "Final_Test" / "Images"
        for number, row in enumerate(rows, 2):
            if not (images / row["Filename"]).is_file():
                raise corrupt("gtsrb", table, f"row {number} names {images / row['Filename']}, which does not exist")
            if not row["ClassId"].strip().isdigit() or int(row["ClassId"]) >= len(folders):
                raise corrupt("gtsrb", table, f"row {number}: ClassId {row['ClassId']!r} is not one of the "
                                              f"{len(folders)} training classes")
        return _GTSRB(str(root), split=split)


GTSRB = GtsrbSource()
