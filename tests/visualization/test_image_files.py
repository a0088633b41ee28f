"""image=file: pixel values scaled by the file's bit depth (8/16-bit grey and RGB, palette), a
decompression bomb refused before decoding, and paths with spaces passed through Hydra."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import CnnvisError
from pipeline.visualization.inputs import ImageInputError, load_image_file
from tests.conftest import compose_cfg

RAMP = np.linspace(0.0, 1.0, 28 * 28).reshape(28, 28)  # mean 0.5


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(path: Path, width: int, height: int, depth: int, colour: int, rows: bytes) -> Path:
    """A PNG written by hand (Pillow cannot write 16-bit RGB)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows))
                     + _chunk(b"IEND", b""))
    return path


def _grey16(path: Path) -> Path:
    a = np.round(RAMP * 65535).astype(">u2")
    return _png(path, 28, 28, 16, 0, b"".join(b"\x00" + row.tobytes() for row in a))


def _rgb16(path: Path) -> Path:
    a = np.round(np.stack([RAMP, RAMP / 2, 1 - RAMP], -1) * 65535).astype(">u2")
    return _png(path, 28, 28, 16, 2, b"".join(b"\x00" + row.tobytes() for row in a))


def _grey8(path: Path) -> Path:
    Image.fromarray(np.round(RAMP * 255).astype(np.uint8), "L").save(path)
    return path


def _rgb8(path: Path) -> Path:
    Image.fromarray(np.round(np.stack([RAMP, RAMP / 2, 1 - RAMP], -1) * 255).astype(np.uint8), "RGB").save(path)
    return path


def _palette(path: Path) -> Path:
    Image.open(_grey8(path.with_name("src.png"))).convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path)
    return path


@pytest.mark.parametrize("make,mode", [(_grey8, "L"), (_grey16, "I;16"), (_rgb8, "RGB"), (_rgb16, "RGB"),
                                       (_palette, "P")])
def test_pixel_values_are_scaled_by_the_bit_depth(tmp_path, make, mode):
    path = make(tmp_path / "image.png")
    assert Image.open(path).mode == mode
    grey = load_image_file(path, channels=1, size=28)
    rgb = load_image_file(path, channels=3, size=28)
    assert grey.shape == (1, 28, 28) and rgb.shape == (3, 28, 28)
    assert 0.0 <= float(grey.min()) and float(grey.max()) <= 1.0
    if make in (_grey8, _grey16, _palette):
        np.testing.assert_allclose(grey[0].numpy(), RAMP, atol=3 / 255)  # 16-bit: 0.5 mean, not saturated at 1
        np.testing.assert_allclose(rgb.numpy(), np.broadcast_to(RAMP, (3, 28, 28)), atol=3 / 255)
    else:
        np.testing.assert_allclose(rgb.numpy(), np.stack([RAMP, RAMP / 2, 1 - RAMP]), atol=1 / 255)
        assert abs(float(grey.mean()) - float((0.299 * RAMP + 0.587 * RAMP / 2 + 0.114 * (1 - RAMP)).mean())) < 0.01


def test_a_16_bit_image_of_another_size_is_resized_in_full_precision(tmp_path):
    a = np.round(np.full((40, 36), 0.25) * 65535).astype(">u2")
    path = _png(tmp_path / "big.png", 36, 40, 16, 0, b"".join(b"\x00" + row.tobytes() for row in a))
    np.testing.assert_allclose(load_image_file(path, 1, 28).numpy(), 0.25, atol=1e-4)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    # the header claims 20000 x 20000 pixels; the data is a few bytes
    bomb = _png(tmp_path / "bomb.png", 20000, 20000, 8, 0, b"\x00" * 16)
    with pytest.raises(ImageInputError, match="too large to decode safely") as info:
        load_image_file(bomb, 1, 28)
    assert isinstance(info.value, CnnvisError) and str(bomb) in str(info.value)
    # a smaller one that only triggers Pillow's warning is refused too
    warn = _png(tmp_path / "warn.png", 10000, 10000, 8, 0, b"\x00" * 16)
    with pytest.raises(ImageInputError, match="too large to decode safely"):
        load_image_file(warn, 1, 28)


def test_32_bit_images_are_refused_with_a_reason(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(RAMP.astype(np.float32), "F").save(path)
    with pytest.raises(ImageInputError, match="32-bit float pixels"):
        load_image_file(path, 1, 28)


@pytest.mark.parametrize("override,expected", [
    ("image=my digit.png", "my digit.png"),                                   # spaces alone: no Hydra quotes needed
    ('image="scans/digit (1), copy.png"', "scans/digit (1), copy.png"),       # ( ) , need Hydra's quotes
    ("image=['a b.png','c (2).png']", ["a b.png", "c (2).png"]),              # a list of such paths
])
def test_paths_with_spaces_as_the_readme_quotes_them(tmp_path, override, expected):
    cfg = compose_cfg(tmp_path, [override], config_name="visualize")
    value = cfg.image if isinstance(cfg.image, str) else list(cfg.image)
    assert value == expected
    for name in [expected] if isinstance(expected, str) else expected:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        path = _grey8(tmp_path / name)
        assert load_image_file(path, 1, 28).shape == (1, 28, 28)
