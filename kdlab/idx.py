"""A strict reader for the IDX files that MNIST and Fashion-MNIST ship in.

The format (LeCun's): two zero bytes, a type code (0x08 = uint8), the number of
dimensions, then one big-endian uint32 per dimension, then the data. We check
all of it, because a truncated download otherwise becomes a silently short
data set.
"""

import gzip
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError

_UINT8 = 0x08


def read_bytes(path: Path) -> bytes:
    """The file's uncompressed bytes (gunzipped when it ends in .gz)."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except EOFError:
        raise DataError(f"{path}: truncated gzip stream (the download was cut short?)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: not a valid gzip file ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def parse_idx(raw: bytes, *, source: str, ndim: int) -> np.ndarray:
    """Parse IDX bytes into a uint8 array with ``ndim`` dimensions, or raise DataError."""
    if len(raw) < 4:
        raise DataError(f"{source}: only {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{source}: bad magic number {raw[:4].hex()} (not an IDX file)")
    if raw[2] != _UINT8:
        raise DataError(f"{source}: IDX type code 0x{raw[2]:02x}, expected 0x08 (uint8)")
    if raw[3] != ndim:
        raise DataError(f"{source}: {raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) < expected:
        raise DataError(f"{source}: truncated: {len(raw)} bytes, the header {dims} needs {expected}")
    if len(raw) > expected:
        raise DataError(f"{source}: {len(raw) - expected} unexpected trailing bytes after the data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read and validate one IDX file (optionally gzipped)."""
    return parse_idx(read_bytes(path), source=str(path), ndim=ndim)


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes for a uint8 array (used to write samples and test fixtures)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, _UINT8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return head + array.tobytes()
