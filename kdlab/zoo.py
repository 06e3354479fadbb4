"""Trained teachers for the lessons: trained on first use, then cached on disk.

Nothing binary is committed: the first call trains (seconds to a minute on two
CPU cores) and saves the weights under ``~/.cache/kdlab/models``; later calls
load them. The cache key holds every setting that changes the weights, and the
data set's size, so a KDLAB_FAST run never reuses a full-data teacher.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from . import settings
from .data import Dataset, cache_dir, load
from .models import build
from .train import evaluate, train

# Recipes that lessons ask for by name: architecture and training settings.
RECIPES = {
    # Lesson 2: a good MLP teacher in about half a minute on 2 CPU cores.
    "mlp-teacher": dict(arch="mlp-1200x2", epochs=4, lr=0.05, batch_size=128, jitter=0),
    # Lessons 4-6, 8 and 10: the CNN teacher (about 99% test accuracy after 3 epochs).
    "cnn-teacher": dict(arch="cnn-small", epochs=3, lr=0.05, batch_size=128, jitter=0),
    # Lesson 7 (Fashion-MNIST): the same CNN trained longer, so the thin students have room to gain.
    "cnn-teacher-long": dict(arch="cnn-small", epochs=8, lr=0.05, batch_size=128, jitter=0),
    # Lesson 6 (capacity gap): a weak teacher, small and trained briefly.
    "mlp-teacher-small": dict(arch="mlp-300x2", epochs=1, lr=0.05, batch_size=128, jitter=0),
    # Lesson 6 (label smoothing): cnn-teacher's recipe with labels smoothed by eps = 0.1 (Mueller et al. 2019).
    "cnn-teacher-ls": dict(arch="cnn-small", epochs=3, lr=0.05, batch_size=128, jitter=0, label_smoothing=0.1),
}


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def settings_of(recipe: str, *, epochs: int | None = None, fast: bool | None = None) -> dict:
    """The training settings ``pretrained`` uses for ``recipe``: ``epochs`` if given, else 1 in fast mode."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    fast = settings.fast_mode() if fast is None else fast
    cfg = {"label_smoothing": 0.0, **RECIPES[recipe]}
    if epochs is not None:
        cfg["epochs"] = epochs
    elif fast:
        cfg["epochs"] = 1
    return cfg


def cache_file(recipe: str, data: Dataset, *, seed: int = 0, epochs: int | None = None,
               fast: bool | None = None) -> Path:
    """Where ``pretrained`` keeps the model of ``recipe`` trained on ``data`` (there or not yet)."""
    cfg = settings_of(recipe, epochs=epochs, fast=fast)
    # Label smoothing joins the key only when used: the keys of the other recipes stay as they were.
    smoothing = f"-ls{cfg['label_smoothing']:g}" if cfg["label_smoothing"] else ""
    key = (f"{data.name}-{recipe}-{cfg['arch']}-e{cfg['epochs']}-lr{cfg['lr']}{smoothing}-s{seed}"
           f"-n{len(data.y_train)}")
    return cache_dir() / "models" / f"{key}.pt"


def pretrained(recipe: str = "mlp-teacher", data: Dataset | None = None, *, dataset: str = "mnist",
               seed: int = 0, epochs: int | None = None, fast: bool | None = None, device=None,
               progress: bool = True, retrain: bool = False) -> nn.Module:
    """A trained model from ``RECIPES[recipe]``, loaded from the cache or trained now.

    ``data`` defaults to ``load(dataset)``. In fast mode (``fast``, default
    KDLAB_FAST) that is a small slice and the recipe trains for one epoch. The
    model comes back in eval mode with ``model.metrics`` holding its test
    errors and accuracy.
    """
    fast = settings.fast_mode() if fast is None else fast
    cfg = settings_of(recipe, epochs=epochs, fast=fast)
    data = data if data is not None else load(dataset, fast=fast)
    path = cache_file(recipe, data, seed=seed, epochs=epochs, fast=fast)
    torch.manual_seed(seed)
    model = build(cfg["arch"])
    if path.is_file() and not retrain:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["state_dict"])
            model.metrics = saved["metrics"]
            return model.to(settings.default_device(device)).eval()
        except Exception:  # noqa: BLE001 - a corrupt cache entry is retrained, never fatal
            path.unlink(missing_ok=True)
    train(model, data, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"], jitter=cfg["jitter"],
          label_smoothing=cfg["label_smoothing"], seed=seed, device=device, progress=progress,
          desc=f"training {recipe}", evaluate_every_epoch=False)
    model.metrics = evaluate(model, data.x_test, data.y_test)
    _atomic_save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                  "metrics": model.metrics}, path)
    return model.eval()
