"""Files that are either the old version or the complete new one, never half-written: write ``PATH.tmp``, then
``os.replace`` it over ``PATH`` (atomic on POSIX and Windows).  Checkpoints, run configs, eval/transfer/sweep
results all go through here, so a run killed mid-write never loses work."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, IO

__all__ = ["write_atomically", "write_json_atomically"]


def write_atomically(path, write: Callable[[IO[bytes]], None], *, fsync: bool = False) -> Path:
    """``write(f)`` into ``PATH.tmp`` (opened ``"wb"``), then replace ``path`` with it.  ``fsync``: flush to disk
    before the rename (checkpoints: a power cut must not leave an empty file behind the new name)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_json_atomically(path, data, *, sort_keys: bool = False) -> Path:
    """``data`` as indented JSON with a final newline."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys) + "\n"
    return write_atomically(path, lambda f: f.write(text.encode()))
