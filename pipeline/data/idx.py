"""Reading and writing IDX files (the format of MNIST and Fashion-MNIST).

An IDX file is a 4-byte magic number -- two zero bytes, a type code and the number of
dimensions -- followed by one big-endian uint32 per dimension and then the items, big-endian,
in C order. Files may be gzipped; gzip is detected by its first two bytes (0x1f 0x8b), never
by the file name.

Every problem with a file's content raises :class:`IDXError`, whose message names the file,
what is wrong and what was expected.
"""

from __future__ import annotations

import errno
import gzip
import os
import tempfile
import zlib
from pathlib import Path
from typing import Union

import numpy as np

from pipeline.leftovers import partial_prefix

__all__ = [
    "IDXError",
    "IDX_TYPE_CODES",
    "read_idx",
    "read_idx_bytes",
    "parse_idx",
    "encode_idx",
    "write_idx",
]

PathLike = Union[str, "os.PathLike[str]"]

GZIP_MAGIC = b"\x1f\x8b"

#: IDX type code -> numpy dtype (big-endian, as stored in the file).
IDX_TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
_DTYPE_TO_CODE = {np.dtype(name): code for code, name in _TYPE_NAMES.items()}
_VALID_CODES = ", ".join(f"0x{c:02X} ({n})" for c, n in _TYPE_NAMES.items())


class IDXError(ValueError):
    """A file is not a valid IDX file (or not a valid gzipped one).

    ``path`` names the file (or data) and ``problem`` says what is wrong; the message is
    ``"<path>: <problem>"``.
    """

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem

    def __reduce__(self):
        return (type(self), (self.path, self.problem))


def _describe(source: object) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else str(source)


def read_idx_bytes(path: PathLike) -> bytes:
    """Return the (decompressed) bytes of an IDX file, gzipped or not.

    Raises ``FileNotFoundError`` (with the path) when the file does not exist and
    :class:`IDXError` when it is empty or its gzip stream is corrupt.
    """
    name = _describe(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "IDX file not found", name) from None
    if not data:
        raise IDXError(name, f"file is empty (0 bytes); expected an IDX file (a 4-byte magic number, "
                       "dimensions and data), optionally gzipped")
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXError(name, f"corrupt gzip stream ({type(exc).__name__}: {exc}); the file starts with "
                           "the gzip signature 0x1f 0x8b but cannot be decompressed -- it is probably truncated "
                           "or damaged, download it again") from None
        if not data:
            raise IDXError(name, f"gzip stream decompresses to 0 bytes; expected an IDX file")
    return data


def _parse_header(data: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(data) < 4:
        raise IDXError(name, f"file is too short ({len(data)} bytes); expected at least a 4-byte IDX "
                       "magic number")
    if data[0] != 0 or data[1] != 0:
        raise IDXError(name, f"bad magic number: first two bytes are 0x{data[0]:02X} 0x{data[1]:02X}, expected "
                       "0x00 0x00 -- not an IDX file (or a compressed format other than gzip)")
    code, ndim = data[2], data[3]
    if code not in IDX_TYPE_CODES:
        raise IDXError(name, f"unknown IDX type code 0x{code:02X} (third byte); expected one of {_VALID_CODES}")
    if ndim == 0:
        raise IDXError(name, f"number of dimensions (fourth byte) is 0; expected at least 1")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IDXError(name, f"header truncated: {ndim} dimensions need a {header_len}-byte header, "
                       f"but the file has only {len(data)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_TYPE_CODES[code], dims, header_len


def parse_idx(data: bytes, source: object = "<bytes>") -> np.ndarray:
    """Parse the (decompressed) bytes of an IDX file into a native-endian, writable array.

    ``source`` names the data in error messages (usually the file's path).
    """
    name = _describe(source)
    dtype, dims, header_len = _parse_header(data, name)
    count = 1
    for d in dims:
        count *= d
    expected = count * dtype.itemsize
    got = len(data) - header_len
    shape = "x".join(map(str, dims))
    if got < expected:
        raise IDXError(name, f"truncated data: shape {shape} of {dtype.name} needs {expected} bytes after "
                       f"the {header_len}-byte header, got {got} bytes ({expected - got} missing)")
    if got > expected:
        raise IDXError(name, f"{got - expected} trailing bytes: shape {shape} of {dtype.name} needs exactly "
                       f"{expected} bytes after the {header_len}-byte header, got {got} bytes")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header_len).reshape(dims)
    # astype always copies: the result is native-endian and writable (frombuffer's view of
    # immutable bytes is not).
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzipped, detected by content) into a native-endian numpy array."""
    return parse_idx(read_idx_bytes(path), path)


def encode_idx(array: np.ndarray, source: object = "<array>") -> bytes:
    """Return the uncompressed IDX encoding of ``array``."""
    arr = np.asarray(array)
    name = _describe(source)
    code = _DTYPE_TO_CODE.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise IDXError(name, f"cannot write dtype {arr.dtype} as IDX; supported dtypes: "
                       f"{', '.join(_TYPE_NAMES.values())}")
    if not 1 <= arr.ndim <= 255:
        raise IDXError(name, f"cannot write a {arr.ndim}-dimensional array as IDX; expected 1 to 255 dimensions")
    if any(d > 0xFFFFFFFF for d in arr.shape):
        raise IDXError(name, f"shape {arr.shape} has a dimension above 2**32-1, which IDX cannot store")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(arr, dtype=IDX_TYPE_CODES[code]).tobytes()


def write_idx(path: PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file, gzipped when ``compress`` (default: path ends with ``.gz``).

    The file is written to a temporary file next to it and moved into place, so an
    interrupted write never leaves a file that looks whole.
    """
    path = Path(path)
    if compress is None:
        compress = path.name.endswith(".gz")
    data = encode_idx(array, path)
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=partial_prefix(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
