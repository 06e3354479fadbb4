import gzip

import numpy as np
import pytest

from kdlab.errors import DataError
from kdlab.idx import encode_idx, parse_idx, read_idx


def test_round_trip_images_and_labels():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    labels = np.array([3, 7], dtype=np.uint8)
    assert np.array_equal(parse_idx(encode_idx(images), source="x", ndim=3), images)
    assert np.array_equal(parse_idx(encode_idx(labels), source="x", ndim=1), labels)


def test_header_is_lecun_format():
    raw = encode_idx(np.zeros((5, 28, 28), np.uint8))
    assert raw[:4] == bytes([0, 0, 8, 3])
    assert int.from_bytes(raw[4:8], "big") == 5


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r[:-1], "truncated"),
    (lambda r: r + b"\0", "trailing"),
    (lambda r: b"\x01" + r[1:], "magic"),
    (lambda r: r[:2] + b"\x0d" + r[3:], "type code"),
    (lambda r: r[:3] + b"\x02" + r[4:], "dimensions"),
    (lambda r: r[:2], "too short"),
    (lambda r: r[:10], "truncated IDX header"),
])
def test_bad_files_are_named_errors(mutate, message):
    raw = encode_idx(np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(DataError, match=message) as info:
        parse_idx(mutate(raw), source="/data/train-images-idx3-ubyte", ndim=3)
    assert "/data/train-images-idx3-ubyte" in str(info.value)


def test_truncated_gzip_names_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    noise = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    path.write_bytes(gzip.compress(encode_idx(noise))[:3000])
    with pytest.raises(DataError, match="truncated gzip") as info:
        read_idx(path, ndim=3)
    assert str(path) in str(info.value)


def test_garbage_gzip_names_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match="not a valid gzip") as info:
        read_idx(path, ndim=1)
    assert str(path) in str(info.value)
