"""Paths and small IDX data sets that the tests write: imported by tests (conftest.py is pytest's, not a module)."""

import gzip
import os
from pathlib import Path

import numpy as np

from kdlab.data import SPLITS
from kdlab.idx import encode_idx

ROOT = Path(__file__).resolve().parent.parent


def full_data_dir():
    """$KDLAB_DATA when it holds the full MNIST (CI points it at the real data sets), else None."""
    candidate = os.environ.get("KDLAB_DATA")
    if candidate and (Path(candidate) / "mnist" / "train-images-idx3-ubyte.gz").exists():
        return Path(candidate)
    return None


def make_arrays(n_train=60, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_dataset(folder: Path, arrays=None, gz=True) -> Path:
    """Write the four IDX files of a small fake data set into ``folder``."""
    arrays = arrays or make_arrays()
    folder.mkdir(parents=True, exist_ok=True)
    for key, (stem, _) in SPLITS.items():
        raw = encode_idx(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw, mtime=0))
        else:
            (folder / stem).write_bytes(raw)
    return folder
