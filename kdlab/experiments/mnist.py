"""What the MNIST experiments share (lessons 6, 8 and 10): the cached teacher and seeded students.

:func:`cached_teacher` returns MNIST (a small slice in fast mode), the
course's CNN teacher from :mod:`kdlab.zoo` (trained once, then cached on disk)
and its logits on every training and test image, computed once: a sweep of
twenty students passes them to :func:`kdlab.train.train` as
``teacher_logits`` instead of running the teacher twenty times. Lesson 6
builds one and hands it to its three experiments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from .. import settings
from ..data import Dataset, load
from ..models import build
from ..train import predict_logits
from ..zoo import cache_file, pretrained

TEACHER_RECIPE = "cnn-teacher"


@dataclass
class CachedTeacher:
    """A trained teacher and its logits on every image of ``data`` (eval mode, no grad)."""

    model: nn.Module
    recipe: str
    data: Dataset
    train_logits: torch.Tensor   # on data.x_train, row for row
    test_logits: torch.Tensor    # on data.x_test
    logits_seconds: float        # time to compute both

    @property
    def test_errors(self) -> int:
        return int((self.test_logits.argmax(-1) != self.data.y_test).sum())

    def describe(self) -> dict:
        """The ``teacher`` entry of an experiment's result."""
        return {"arch": getattr(self.model, "arch", type(self.model).__name__), "recipe": self.recipe,
                "test_errors": self.test_errors}


def cached_teacher(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
                   dataset: str = "mnist", recipe: str = TEACHER_RECIPE, progress: bool = True) -> CachedTeacher:
    """``dataset`` (or ``data``), the teacher of ``recipe`` (trained here on first use), its logits on every image."""
    device = device if isinstance(device, torch.device) else settings.default_device(device)
    data = (data if data is not None else load(dataset, fast=fast)).to(device)
    teacher = pretrained(recipe, data, seed=seed, fast=fast, device=device, progress=progress).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    start = time.perf_counter()
    train_logits = predict_logits(teacher, data.x_train)
    test_logits = predict_logits(teacher, data.x_test)
    return CachedTeacher(teacher, recipe, data, train_logits, test_logits, time.perf_counter() - start)


def timed_teacher(recipe: str, data: Dataset, run, progress: bool) -> tuple[CachedTeacher, dict]:
    """:func:`cached_teacher` of ``recipe`` on ``data`` for ``run``, and ``{"was_cached", "seconds"}``: whether
    its weights were on disk before, and how long it took (training it, or loading it, and its logits)."""
    was_cached = cache_file(recipe, data, seed=run.seed, fast=run.fast).is_file()
    start = time.perf_counter()
    teacher = cached_teacher(seed=run.seed, fast=run.fast, data=data, device=run.device, recipe=recipe,
                             progress=progress)
    return teacher, {"was_cached": was_cached, "seconds": round(time.perf_counter() - start, 1)}


def teacher_for_run(teacher: CachedTeacher | None, data: Dataset | None, run, progress: bool,
                dataset: str = "mnist") -> CachedTeacher:
    """The experiment's teacher: the one the caller passed (with its data), else :func:`cached_teacher`."""
    if teacher is not None:
        if data is not None and data is not teacher.data:
            raise ValueError("pass data or a cached teacher (which carries its data), not both")
        return teacher
    with run.timed("teacher"):
        return cached_teacher(seed=run.seed, fast=run.fast, data=data, device=run.device, dataset=dataset,
                              progress=progress)


def seeded_student(arch: str, seed: int) -> nn.Module:
    """A fresh student whose initial weights depend only on ``seed``."""
    torch.manual_seed(seed)
    return build(arch)
