"""Shared fixtures: an isolated cache per test, and small IDX data sets the tests write."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from kdlab.data import SPLITS
from kdlab.idx import encode_idx

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty user cache, so nothing leaks into ~/.cache."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    return cache


# The lessons' kernels inherit this process's environment (tests/test_part*_course.py).
@pytest.fixture(scope="module")
def kernel_cache(tmp_path_factory):
    """One cache for the module's kernels: the teacher is trained once for all its lessons."""
    return tmp_path_factory.mktemp("kdlab_kernel_cache")


@pytest.fixture
def lesson_env(kernel_cache, isolated_cache, monkeypatch):
    """Kernels run in fast mode with the module's cache.

    Function-scoped and after ``isolated_cache`` on purpose: that autouse fixture clears
    KDLAB_FAST and sets its own cache for every test, which would undo a module-scoped setting.
    """
    monkeypatch.setenv("KDLAB_FAST", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(kernel_cache))
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


def full_data_dir():
    """$KDLAB_DATA (or ../shared/datasets) when it holds the full MNIST, else None."""
    for candidate in (os.environ.get("KDLAB_DATA"), SHARED_DATA):
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


@pytest.fixture
def small_data_root(tmp_path):
    """A KDLAB_DATA-style folder with a small mnist/ inside."""
    write_dataset(tmp_path / "data" / "mnist")
    return tmp_path / "data"
