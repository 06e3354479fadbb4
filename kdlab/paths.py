"""Where the ``kdlab`` commands write and read: checked before any work starts, written all or nothing.

Every subcommand checks its output paths, input folders, device and seed
with these functions *before* it trains or downloads anything, so a typo
costs a second, not a training run; each problem is one ``KdlabError`` line.
:func:`atomic_write` writes a file beside its target and renames it, and
removes the temporary file on any failure (Ctrl-C included), so nothing is
ever left half-written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import KdlabError


def _folder_can_be_made(folder: Path, label: str) -> None:
    """``folder`` exists or can be made: its nearest existing ancestor is a folder we can write in.

    A file is created and removed there: the only sure test (permissions, read-only mounts, /proc)."""
    base = folder
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise KdlabError(f"{label}: {base} is a file, so no folder can be made there")
    try:
        fd, tmp = tempfile.mkstemp(dir=base, prefix=".kdlab-check-")
    except OSError as e:
        raise KdlabError(f"{label}: cannot write in {base} ({e.strerror or e})") from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)


def check_output_file(path, option: str) -> Path:
    """``path`` can be written as a file (its folder exists or can be made, and is writable)."""
    path = Path(path).expanduser()
    label = f"{option} {path}"
    if path.is_dir():
        raise KdlabError(f"{label} is a folder: give a file name, for example {path / 'results.json'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise KdlabError(f"{label}: the file exists and cannot be written")
    _folder_can_be_made(path.parent, label)
    return path


def check_output_dir(path, option: str) -> Path:
    """``path`` is a folder that exists or can be made, and is writable."""
    path = Path(path).expanduser()
    label = f"{option} {path}"
    if path.exists() and not path.is_dir():
        raise KdlabError(f"{label} is a file, not a folder")
    _folder_can_be_made(path, label)
    return path


def check_input_dir(path, option: str) -> Path:
    """``path`` is an existing folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise KdlabError(f"{option} {path}: no such folder")
    if not path.is_dir():
        raise KdlabError(f"{option} {path} is a file, not a folder")
    return path


def check_seed(seed: int, option: str = "--seed") -> int:
    if seed < 0:
        raise KdlabError(f"{option} must be 0 or more, got {seed}")
    return seed


def check_device(device: str | None, option: str = "--device") -> str | None:
    """A device this torch can use, or a one-line error saying why not."""
    if device is None:
        return None
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise KdlabError(f"{option} {device}: not a device name (cpu, cuda, cuda:1, mps)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        why = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise KdlabError(f"{option} {device}: {why}; use --device cpu, or leave --device out")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise KdlabError(f"{option} {device}: Apple's MPS is not available here; use --device cpu")
    return device


def atomic_write(path, data: bytes | str, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it; on any failure nothing is left behind.

    The file gets ``mode`` or, by default, what a newly created file gets under the umask (not 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
