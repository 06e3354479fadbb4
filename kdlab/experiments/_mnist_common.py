"""Shared pieces of part 2's experiments (omitted-digit, few-labels, temperature-vs-width).

* :func:`teacher_and_data`: MNIST (a small slice under KDLAB_FAST=1) and the
  course's CNN teacher from :mod:`kdlab.zoo` (trained once, then cached), with
  its logits on the training and test images computed once.
* :func:`fit`: a student trained from *cached* teacher logits, where the hard
  labels may cover only some of the images (``labeled`` mask) and the soft
  targets may be absent (``teacher_logits=None``). The engine in
  :mod:`kdlab.train` recomputes the teacher's logits on every call; a sweep of
  20 students reuses one set here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import settings
from ..data import Dataset, batch_indices, load
from ..losses import _kd_kl
from ..train import evaluate, make_optimizer, predict_logits, warmup_cosine
from ..zoo import pretrained

TEACHER_RECIPE = "cnn-teacher"


@dataclass
class TeacherAndData:
    data: Dataset
    teacher: nn.Module
    train_logits: torch.Tensor   # the teacher's logits on data.x_train (eval mode, no grad)
    test_logits: torch.Tensor    # ... and on data.x_test
    logits_seconds: float        # time to compute both

    @property
    def teacher_test_errors(self) -> int:
        return int((self.test_logits.argmax(-1) != self.data.y_test).sum())


def teacher_and_data(seed: int = 0, progress: bool = True, data: Dataset | None = None,
                     device=None) -> TeacherAndData:
    """MNIST, the cached CNN teacher (trained here on first use) and its logits on every image."""
    device = settings.default_device(device)
    data = (data if data is not None else load("mnist")).to(device)
    teacher = pretrained(TEACHER_RECIPE, data, seed=seed, device=device, progress=progress).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    start = time.perf_counter()
    train_logits = predict_logits(teacher, data.x_train)
    test_logits = predict_logits(teacher, data.x_test)
    return TeacherAndData(data, teacher, train_logits, test_logits, time.perf_counter() - start)


def fit(model: nn.Module, x: torch.Tensor, *, y: torch.Tensor | None = None, labeled: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None, T: float = 4.0, alpha: float = 0.9, epochs: int = 5,
        lr: float = 0.05, batch_size: int = 128, seed: int = 0, x_test=None, y_test=None,
        progress: bool = True, desc: str = "student") -> dict:
    """Train ``model`` in place on ``x``; returns ``{"train_seconds", "test_errors"}``.

    Loss per batch: ``alpha * kd_kl(student, teacher, T)`` over every image of
    the batch plus ``(1 - alpha) * CE`` over the images whose label may be used
    (``labeled``, default all; ``y`` None means no labels at all). Without
    ``teacher_logits`` it is plain cross-entropy on the labeled images. SGD with
    Nesterov momentum and warm-up + cosine decay, as in :func:`kdlab.train.train`.
    """
    if teacher_logits is None and y is None:
        raise ValueError("fit needs labels, teacher logits, or both")
    device = x.device
    n = len(x)
    if labeled is None:
        labeled = torch.ones(n, dtype=torch.bool, device=device) if y is not None else None
    if teacher_logits is None:
        alpha = 0.0
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    steps_per_epoch = math.ceil(n / batch_size)
    opt = make_optimizer(model, "sgd", lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(epochs * steps_per_epoch, steps_per_epoch // 2))

    from tqdm.auto import tqdm

    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=0.5)
    start = time.perf_counter()
    try:
        for _ in range(epochs):
            model.train()
            for idx in batch_indices(n, batch_size, generator=generator, device=device):
                logits = model(x[idx])
                loss = torch.zeros((), device=device)
                if alpha > 0:
                    loss = loss + alpha * _kd_kl(logits, teacher_logits[idx], T)
                if alpha < 1 and labeled is not None:
                    mask = labeled[idx]
                    if bool(mask.any()):
                        loss = loss + (1 - alpha) * F.cross_entropy(logits[mask], y[idx][mask])
                if not loss.requires_grad:  # a batch with no label and no soft target
                    bar.update(1)
                    continue
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    out = {"train_seconds": round(seconds, 2)}
    if x_test is not None:
        out["test_errors"] = evaluate(model, x_test, y_test)["test_errors"]
    return out


def seeded_student(arch: str, seed: int) -> nn.Module:
    """A fresh student whose initial weights depend only on ``seed``."""
    from ..models import build

    torch.manual_seed(seed)
    return build(arch)


def pick_epochs(full: int, fast: int = 1) -> int:
    return int(settings.pick(full, fast))


# ----------------------------------------------------------------------------- plots for the lessons

def mistakes_gallery(images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
                     temperatures=(1.0, 4.0), columns: int = 6):
    """Cards of misclassified images: the image (true digit, prediction) above its soft labels.

    Bars: the soft label at the first temperature (filled, the prediction in red, the true digit
    in green) and at the others (outlined steps).
    """
    import matplotlib.pyplot as plt

    from ..losses import softmax_t

    n = len(images)
    cols = min(columns, max(1, n))
    rows = max(1, -(-n // cols))
    fig = plt.figure(figsize=(2.1 * cols, 3.3 * rows))
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[1.15, 1] * rows, hspace=0.45, wspace=0.3)
    classes = list(range(logits.shape[-1]))
    for k in range(n):
        r, c = divmod(k, cols)
        truth, guess = int(labels[k]), int(logits[k].argmax())
        ax = fig.add_subplot(grid[2 * r, c])
        ax.imshow(images[k].reshape(28, 28).cpu(), cmap="gray_r")
        ax.set_title(f"true {truth}, said {guess}", fontsize=9)
        ax.axis("off")
        ax = fig.add_subplot(grid[2 * r + 1, c])
        first = softmax_t(logits[k].float(), temperatures[0])
        colors = ["tab:red" if i == guess else "tab:green" if i == truth else "tab:gray" for i in classes]
        ax.bar(classes, first.tolist(), color=colors, label=f"T={temperatures[0]:g}")
        for j, T in enumerate(temperatures[1:]):
            ax.step(classes, softmax_t(logits[k].float(), T).tolist(), where="mid", color=f"C{j}",
                    linewidth=1.2, label=f"T={T:g}")
        ax.set_xticks(classes)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 1)
        ax.grid(False)
        if k == 0:
            ax.legend(fontsize=6, loc="upper right")
    fig.suptitle("The teacher's mistakes and its soft labels (red: its answer, green: the truth)", fontsize=10)
    return fig
