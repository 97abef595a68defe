"""A folder of images with declared preprocessing, decoded one by one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepress.errors import UserError, choices
from edgepress.runtime.layout import to_nchw

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp")
LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes an input tensor: pixels/255, resize, (x - mean) / std, layout."""

    resize: tuple | None = None  # (H, W); None: the model input's own H, W
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    layout: str = "nchw"

    def describe(self, hw) -> dict:
        return {"pixels": "RGB or L by channel count, scaled to [0, 1]",
                "resize": list(self.resize or hw), "resample": "bilinear",
                "mean": list(self.mean), "std": list(self.std), "layout": self.layout.upper()}


def reader(folder: Path, specs, pre: Preprocess):
    if len(specs) != 1 or len(specs[0].shape) != 4:
        raise UserError(f"an image folder ({str(folder)!r}) feeds a model with one 4-D image "
                        f"input; this model's inputs are: {', '.join(s.describe() for s in specs)}")
    if pre.layout not in LAYOUTS:
        raise choices("image layout", pre.layout, LAYOUTS)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"image folder {str(folder)!r} holds no images "
                        f"({', '.join(IMAGE_SUFFIXES)})")
    spec = specs[0]
    _, c, h, w = spec.shape if pre.layout == "nchw" else (spec.shape[0], spec.shape[3],
                                                          *spec.shape[1:3])
    if c not in (1, 3):
        raise UserError(f"image input {spec.name!r} {list(spec.shape)} ({pre.layout.upper()}) has "
                        f"{c} channels; images give 1 (grayscale) or 3 (RGB)")
    for what, values in (("mean", pre.mean), ("std", pre.std)):
        if len(values) not in (1, c):
            raise UserError(f"image {what} {list(values)}: give 1 or {c} values")
    if any(v == 0 for v in pre.std):
        raise UserError(f"image std {list(pre.std)}: values must be non-zero")

    def read():
        for p in files:
            yield {spec.name: _load_image(p, c, pre.resize or (h, w), pre)}, None
    return read, pre.describe((h, w))


def _load_image(path: Path, channels: int, hw, pre: Preprocess) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((hw[1], hw[0]),
                                                                     Image.BILINEAR)
            x = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"image {str(path)!r} cannot be read ({type(e).__name__}: {e})") from None
    x = x.reshape(hw[0], hw[1], channels)  # (H, W, C)
    x = (x - np.float32(pre.mean)) / np.float32(pre.std)
    x = x[None].astype(np.float32)  # (1, H, W, C)
    return to_nchw(x) if pre.layout == "nchw" else x
