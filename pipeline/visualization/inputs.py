"""Which images a visualize run looks at: test-set indices, image files, or a default spread.

``select_images(image_spec, test_split, ...)`` returns a :class:`Selection` (float images in
[0,1] shaped as the model takes them, labels, ground-truth masks where the dataset has them,
and a source string per image). Every problem is reported before any work starts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pipeline.errors import CnnvisError

log = logging.getLogger(__name__)


class ImageInputError(CnnvisError, ValueError):
    """An image argument that cannot be used; the message says which and why."""


@dataclass
class Selection:
    images: torch.Tensor          # float32 [N, C, H, W] in [0, 1]
    labels: torch.Tensor          # int64 [N], -1 when unknown (a user's file)
    sources: list[str]            # "test[42]" or the file path
    masks: torch.Tensor | None    # bool [N, H, W] when every image has a ground-truth mask

    def __len__(self) -> int:
        return len(self.labels)


def spread_indices(labels: torch.Tensor, count: int, num_classes: int) -> list[int]:
    """``count`` test indices, deterministic, spread over the classes: classes evenly spaced
    from the first to the last class present (both included: for the 96 lines classes and 6 images,
    0, 19, 38, 57, 76, 95 -- both colours, lengths and widths, six angles), the first test image of
    each (then the next ones, when ``count`` exceeds the number of classes present)."""
    labels = labels.cpu().numpy()
    present = [c for c in range(num_classes) if (labels == c).any()]
    if not present:
        raise ImageInputError("the test split is empty: no image to show")
    step = (len(present) - 1) / (count - 1) if count > 1 else 0.0
    classes = dict.fromkeys(present[int(round(i * step))] for i in range(count))
    members = {c: np.flatnonzero(labels == c) for c in classes}  # unique classes, in order
    picks: list[int] = []
    rank = 0
    while len(picks) < count and rank < len(labels):
        for idx in members.values():
            if rank < len(idx) and len(picks) < count and int(idx[rank]) not in picks:
                picks.append(int(idx[rank]))
        rank += 1
    return picks


#: greyscale modes with more than 8 bits per pixel, and their full-scale value
_DEEP_GREY = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


def _open_checked(path: Path):
    """``Image.open`` with Pillow's decompression-bomb check turned into a clear refusal."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageInputError(
                f"image={path}: refused: the image is too large to decode safely ({exc}; a decompression bomb?). "
                f"Give a small image (the model sees 28x28 pixels; anything larger is resized anyway).") from None


def _pixels(im, path: Path, channels: int, size: int) -> np.ndarray:
    """[H, W] or [H, W, 3] float32 in [0, 1], scaled by the image's bit depth, resized to ``size``."""
    from PIL import Image

    w, h = im.size
    if im.mode in _DEEP_GREY:  # 16-bit greyscale: scale by 65535 (convert("L") would clip it at 255)
        grey = Image.fromarray(np.asarray(im, dtype=np.float32) / _DEEP_GREY[im.mode], mode="F")
        if (w, h) != (size, size):
            log.warning("image=%s is %dx%d; resized to %dx%d", path, w, h, size, size)
            grey = grey.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.clip(np.asarray(grey, dtype=np.float32), 0.0, 1.0)
        return arr if channels == 1 else np.repeat(arr[..., None], 3, axis=2)
    if im.mode in ("I", "F"):
        raise ImageInputError(f"image={path}: the image has 32-bit {'integer' if im.mode == 'I' else 'float'} pixels, "
                              f"which have no fixed range; save it as an 8- or 16-bit PNG, or a JPEG")
    im = im.convert("L" if channels == 1 else "RGB")  # 8-bit grey/RGB/palette/bilevel; 16-bit RGB arrives as RGB
    if (w, h) != (size, size):
        log.warning("image=%s is %dx%d; resized to %dx%d", path, w, h, size, size)
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def load_image_file(path: str | Path, channels: int, size: int) -> torch.Tensor:
    """A PNG/JPEG as float [channels, size, size] in [0, 1]; grey <-> RGB converted, 16-bit
    greyscale scaled by its depth, other sizes resized (with a warning). Rejects missing/unreadable
    files, zero-size images, images with an alpha channel (4 channels) and images too large to
    decode safely (a decompression bomb)."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ImageInputError(f"image={path} is a directory, not an image file: give one PNG/JPEG file (or several as "
                              f"image=[a.png,b.png]), or test-set indices like image=[3,17]")
    if not path.is_file():
        raise ImageInputError(f"image={path}: no such file (give a PNG/JPEG path, or test-set indices like image=[3,17]; "
                              f"a path with spaces goes in quotes: 'image=\"my digit.png\"')")
    if path.stat().st_size == 0:
        raise ImageInputError(f"image={path}: the file is empty (zero size); give a PNG or JPEG image")
    try:
        with _open_checked(path) as im:
            im.load()
            mode, (w, h) = im.mode, im.size
            if w == 0 or h == 0:
                raise ImageInputError(f"image={path}: the image has zero size ({w}x{h})")
            bands = len(im.getbands())
            if bands == 4 or mode in ("RGBA", "LA", "PA", "CMYK", "La", "RGBa"):
                raise ImageInputError(
                    f"image={path}: the image has 4 channels ({mode}); the model takes "
                    f"{'greyscale' if channels == 1 else 'RGB'} images: save it without alpha (RGB or greyscale)")
            arr = _pixels(im, path, channels, size)
    except ImageInputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageInputError(f"image={path}: cannot read it as an image ({exc}); use a PNG or JPEG file") from exc
    if arr.size == 0:
        raise ImageInputError(f"image={path}: the image has zero size")
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.unsqueeze(0) if channels == 1 else t.permute(2, 0, 1).contiguous()


def _as_list(spec) -> list:
    if spec is None:
        return []
    if isinstance(spec, (str, int, Path)):
        return [spec]
    return list(spec)


def select_images(spec, test_images: torch.Tensor, test_labels: torch.Tensor,
                  test_masks: torch.Tensor | None, num_classes: int, count: int = 6) -> Selection:
    """``spec``: None (``count`` images spread over the classes), an index, a path, or a list
    mixing test-set indices and paths."""
    channels, size = int(test_images.shape[1]), int(test_images.shape[-1])
    items = _as_list(spec)
    if not items:
        if count < 1:
            raise ImageInputError(f"num_images={count} is invalid: it must be a positive integer")
        items = spread_indices(test_labels, count, num_classes)
    images, labels, sources, masks = [], [], [], []
    n_test = len(test_labels)
    for item in items:
        if isinstance(item, bool):
            raise ImageInputError(f"image={item!r} is neither a test-set index nor a file path")
        if isinstance(item, int) or (isinstance(item, str) and item.lstrip("-").isdigit()):
            i = int(item)
            if not 0 <= i < n_test:
                raise ImageInputError(f"image index {i} is out of range: the test split has {n_test} images "
                                      f"(valid indices 0..{n_test - 1})")
            images.append(test_images[i].float() / 255.0)
            labels.append(int(test_labels[i]))
            sources.append(f"test[{i}]")
            masks.append(test_masks[i] if test_masks is not None else None)
        else:
            images.append(load_image_file(item, channels, size))
            labels.append(-1)
            sources.append(str(item))
            masks.append(None)
    mask_t = torch.stack(masks) if all(m is not None for m in masks) else None
    return Selection(torch.stack(images), torch.tensor(labels, dtype=torch.long), sources, mask_t)
