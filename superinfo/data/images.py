"""Reading images: any PIL image as 8-bit RGB (``to_rgb``), an image file as RGB with a clear error when it is
unreadable (``load_rgb``), and a header pass over a folder before training (``check_image_headers``)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from mi_toolkit.errors import ArgumentTypeError

from .integrity import CorruptDataError

__all__ = ["HEADER_CHECK_LIMIT", "check_image_headers", "load_rgb", "to_rgb"]

HEADER_CHECK_LIMIT = 50_000     # folders up to this many images have every header read before training


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, RGBA and 16-bit images become 8-bit RGB (models always see 3 channels)."""
    if not isinstance(image, Image.Image):
        raise ArgumentTypeError(f"image must be a PIL.Image, got {type(image).__name__}")
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # PIL's convert clips 16-bit values to 255; rescale to the 8-bit range instead.
        array = np.asarray(image, dtype=np.float64)
        peak = float(array.max()) if array.size else 0.0
        if peak > 255:
            array = array * (255.0 / peak)
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return image.convert("RGB")


def load_rgb(path: str) -> Image.Image:
    """ImageFolder loader: any PIL-readable image as RGB; an unreadable file raises CorruptDataError naming it."""
    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            image.load()
    except OSError as exc:      # PIL.UnidentifiedImageError and truncated files are OSErrors
        raise CorruptDataError(f"cannot read image {path}: {exc}") from exc
    return to_rgb(image)


def check_image_headers(paths, limit: int = HEADER_CHECK_LIMIT) -> None:
    """Read each image's header (not its pixels: about 0.1 ms a file) so an empty, non-image or unreadable file is
    reported before training starts instead of mid-run; skipped above ``limit`` files (ImageNet), where the loader
    still names a bad file when it reaches it."""
    if len(paths) > limit:
        return
    for path in paths:
        try:
            with Image.open(path) as image:
                image.size      # noqa: B018 -- parsed from the header
        except (OSError, SyntaxError, ValueError) as exc:   # UnidentifiedImageError is an OSError
            raise CorruptDataError(f"cannot read image {path}: {exc}; remove or replace the file") from None
