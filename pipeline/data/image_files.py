"""Decoding one image file into the pipeline's uint8 ``[C, H, W]`` layout: the one reader behind
``dataset=image_folder`` and ``dataset=lines_folder`` (which asks for an exact size and RGB only).

Policy (every refusal is a reason string, never an exception, so a folder reader can list them all):

* 4-channel images (RGBA, CMYK, palette with alpha, ...) are refused: what the alpha channel
  means is the user's business; save the images as RGB or greyscale.
* ``channels=3``: greyscale images are repeated into 3 channels (``grey_ok=False`` refuses them);
  ``channels=1``: RGB images are converted with ITU-R 601-2 luma (Pillow's ``"L"``);
  palette and 16-bit/float greyscale images are converted first.
* ``size``: a square side; ``resize=True`` resizes any other size with Pillow's **bilinear**
  filter (antialiased when shrinking: Pillow widens the filter support by the scale factor),
  stretching a non-square image to a square; ``resize=False`` refuses other sizes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
ALPHA_MODES = {"RGBA", "RGBa", "RGBX", "CMYK", "PA", "LA", "La"}
RESAMPLING = "bilinear"   # what the README names; Image.Resampling.BILINEAR below

__all__ = ["IMAGE_SUFFIXES", "RESAMPLING", "image_kind", "read_image"]


def image_kind(path: Path) -> tuple[str | None, str | None]:
    """``("grey" | "rgb" | "alpha", None)`` from the file's header only (nothing decoded), or
    ``(None, reason)`` when it cannot be opened as an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode == "P":
                mode = "PA" if "transparency" in im.info else "RGB"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"cannot be read as an image ({type(exc).__name__}: {exc})"
    if mode in ALPHA_MODES:
        return "alpha", None
    return ("grey" if mode in GREY_MODES else "rgb"), None


def _grey_u8(im) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode != "F" and a.max() > 255 else (1.0 if im.mode == "F" else 255.0)
        return np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
    return np.asarray(im.convert("L"), dtype=np.uint8)


def read_image(path: Path, size: int, channels: int = 3, *, resize: bool = True,
               grey_ok: bool = True) -> tuple[np.ndarray | None, str | None]:
    """``(uint8 [channels, size, size], None)`` or ``(None, reason)``; see the module docstring."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode, (w, h) = im.mode, im.size
            if mode == "P":
                mode = "PA" if "transparency" in im.info else "P"
            problems = []
            if (w, h) != (size, size) and not resize:
                problems.append(f"{w}x{h} pixels, must be {size}x{size}")
            if mode in GREY_MODES and mode not in ALPHA_MODES and not grey_ok:
                problems.append(f"greyscale image (mode {mode}): a line's colour (red/blue) cannot be read from "
                                f"it; save it as RGB")
            elif mode in ALPHA_MODES:
                kind = "alpha-channel" if mode in ("LA", "La", "PA") else "4-channel"
                problems.append(f"{kind} image (mode {mode}); save it as RGB (or greyscale) without alpha")
            if problems:
                return None, "; ".join(problems)
            if (w, h) != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR) if im.mode not in ("1", "P") \
                    else im.convert("RGB" if im.mode == "P" else "L").resize((size, size), Image.Resampling.BILINEAR)
            if channels == 1:
                arr = _grey_u8(im)[:, :, None]
            elif mode in GREY_MODES:
                arr = np.repeat(_grey_u8(im)[:, :, None], 3, axis=2)
            else:
                arr = np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"cannot be read as an image ({type(exc).__name__}: {exc})"
    if arr.shape != (size, size, channels):
        return None, f"decodes to an array of shape {arr.shape}, expected {size}x{size} with {channels} channel(s)"
    return np.ascontiguousarray(arr.transpose(2, 0, 1)), None
