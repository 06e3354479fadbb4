"""The training engine: train a model, distill a student, evaluate.

Why it is fast on a CPU: the whole data set is one tensor on the device and
batches are index slices of it (no DataLoader, no per-sample Python); the
teacher runs once over the training set and its logits are reused every epoch
whenever the batches are not augmented; when they are jittered, its logits are
cached on K fixed jittered views (``teacher_views``), or else it runs once per
batch under ``no_grad``, in eval mode. Each phase of a step is a named
``torch.profiler`` range (``kdlab.batch``, ``kdlab.forward``, ...), so a profile
says where the time goes (``benchmarks/profile_hinton.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.profiler import record_function as span

from . import settings
from .data import Dataset, batch_indices, jitter as jitter_batch, random_shifts
from .losses import _check_alpha, _check_temperature, _distillation_loss


@dataclass
class History:
    """Per-epoch record of one training run."""

    epochs: list = field(default_factory=list)          # 1, 2, ...
    train_loss: list = field(default_factory=list)      # mean loss over the epoch
    test_errors: list = field(default_factory=list)     # after each epoch (None if not evaluated)
    seconds: list = field(default_factory=list)         # cumulative training time, evaluation excluded
    teacher_seconds: float = 0.0                        # time spent caching teacher logits

    @property
    def train_seconds(self) -> float:
        return self.seconds[-1] if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"epochs": self.epochs, "train_loss": self.train_loss,
                "test_errors": self.test_errors, "seconds": self.seconds}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The model's logits for every row of ``x``, in eval mode (mode restored after)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> dict:
    """``{"test_errors": int, "test_accuracy": float}`` of ``model`` on (x, y)."""
    device = next(model.parameters()).device
    logits = predict_logits(model, x.to(device), batch_size)
    errors = int((logits.argmax(dim=-1) != y.to(device)).sum())
    return {"test_errors": errors, "test_accuracy": 1.0 - errors / max(1, len(y))}


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0,
                               weight_decay=weight_decay, foreach=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {name!r}: use sgd, adam or adamw")


def warmup_cosine(total_steps: int, warmup_steps: int):
    """LR multiplier: linear warm-up, then cosine decay to zero."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def train(model: nn.Module, data: Dataset, *, teacher: nn.Module | None = None,
          T: float = 4.0, alpha: float = 0.9, epochs: int = 10, batch_size: int = 128,
          lr: float = 0.1, optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
          warmup_epochs: float = 0.5, jitter: int = 0, teacher_views: int = 0, seed: int = 0, device=None,
          evaluate_every_epoch: bool = True, progress: bool = True, desc: str = "train") -> History:
    """Train ``model`` on ``data`` in place; with a ``teacher``, distill from it.

    Without a teacher the loss is cross-entropy. With one it is
    :func:`kdlab.losses.distillation_loss` at temperature ``T`` with weight
    ``alpha`` on the soft term; the teacher stays in eval mode under no_grad.
    ``jitter`` > 0 translates each training batch by up to that many pixels.
    With a teacher and jitter, ``teacher_views`` = K > 0 fixes K jittered copies of
    every training image up front and caches the teacher's logits on each; every
    step then draws one of the K copies per image, so the teacher never runs
    inside the loop. With ``teacher_views=0`` the teacher sees every fresh batch.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if teacher is not None:
        T = _check_temperature(T)
        alpha = _check_alpha(alpha)
    device = settings.default_device(device) if not isinstance(device, torch.device) else device
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    history = History()

    cached = view_shifts = None
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        start = time.perf_counter()
        with span("kdlab.teacher_logits"):
            if not jitter:
                cached = predict_logits(teacher, x)
            elif teacher_views:
                view_shifts, cached = _teacher_views(teacher, x, jitter, teacher_views, generator)
        _sync(device)
        history.teacher_seconds = time.perf_counter() - start

    steps_per_epoch = math.ceil(len(y) / batch_size)
    total = epochs * steps_per_epoch
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, warmup_cosine(total, int(warmup_epochs * steps_per_epoch)))

    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=True,
               dynamic_ncols=True, mininterval=0.5)
    elapsed = history.teacher_seconds
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            for idx in batch_indices(len(y), batch_size, generator=generator, device=device):
                with span("kdlab.batch"):
                    xb, yb = x[idx], y[idx]
                    t_logits = None
                    if view_shifts is not None:
                        view = torch.randint(teacher_views, (len(idx),), generator=generator).to(device)
                        xb = jitter_batch(xb, jitter, shifts=view_shifts[view, :, idx].T)
                        t_logits = cached[view, idx]
                    elif jitter:
                        xb = jitter_batch(xb, jitter, generator)
                    elif cached is not None:
                        t_logits = cached[idx]
                if teacher is not None and t_logits is None:
                    with span("kdlab.teacher_forward"), torch.no_grad():
                        t_logits = teacher(xb)
                with span("kdlab.forward"):
                    logits = model(xb)
                with span("kdlab.loss"):
                    loss = (nn.functional.cross_entropy(logits, yb) if teacher is None
                            else _distillation_loss(logits, t_logits, yb, T, alpha))
                with span("kdlab.backward"):
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                with span("kdlab.optimizer"):
                    opt.step()
                    sched.step()
                    loss_sum += loss.detach() * len(idx)
                bar.update(1)
            _sync(device)
            elapsed += time.perf_counter() - start
            history.epochs.append(epoch)
            history.train_loss.append(float(loss_sum) / len(y))
            history.seconds.append(elapsed)
            if evaluate_every_epoch or epoch == epochs:
                with span("kdlab.evaluate"):
                    errors = evaluate(model, x_test, y_test)["test_errors"]
                history.test_errors.append(errors)
                bar.set_postfix(epoch=epoch, loss=f"{history.train_loss[-1]:.3f}", test_errors=errors)
            else:
                history.test_errors.append(None)
    finally:
        bar.close()
    model.eval()
    return history


@torch.no_grad()
def _teacher_views(teacher: nn.Module, x: torch.Tensor, max_shift: int, views: int,
                   generator: torch.Generator, chunk: int = 4096) -> tuple:
    """K jittered copies of ``x`` (as shifts, (K, 2, N)) and the teacher's logits on each (K, N, C)."""
    shifts = torch.stack([random_shifts(len(x), max_shift, generator) for _ in range(views)]).to(x.device)
    logits = torch.stack([
        torch.cat([predict_logits(teacher, jitter_batch(x[i:i + chunk], max_shift, shifts=shifts[v, :, i:i + chunk]))
                   for i in range(0, len(x), chunk)])
        for v in range(views)])
    return shifts, logits


def distill(student: nn.Module, teacher: nn.Module, data: Dataset, **kwargs) -> History:
    """Shorthand for ``train(student, data, teacher=teacher, **kwargs)``."""
    return train(student, data, teacher=teacher, **kwargs)
