"""The training engine: every model of the lessons and experiments trains in :func:`train`.

One loop for every case: a model alone (cross-entropy), distilled from a
teacher or from cached teacher logits, with labels on only some images
(``labeled``), with extra loss terms on hidden layers (hints, attention,
relations: ``extra_loss``), with smoothed labels (``label_smoothing``), with
callbacks for curves (``on_epoch_end``).

Why it is fast on a CPU: the whole data set is one tensor on the device and
batches are index slices of it (no DataLoader, no per-sample Python); the
teacher runs once over the training set and its logits are reused every epoch
whenever the batches are not augmented (or the caller passes them in, to share
them between runs); when they are jittered, its logits are cached on K fixed
jittered views (``teacher_views``), or else it runs once per batch under
``no_grad``, in eval mode. Each phase of a step is a named ``torch.profiler``
range (``kdlab.batch``, ``kdlab.forward``, ...), so a profile says where the
time goes (``benchmarks/profile_hinton.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function as span

from . import settings
from .data import Dataset, batch_indices, jitter as jitter_batch, random_shifts
from .losses import check_alpha, check_temperature, distillation_loss


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

    @property
    def final_test_errors(self) -> int | None:
        return self.test_errors[-1] if self.test_errors else None

    def as_dict(self) -> dict:
        return {"epochs": self.epochs, "train_loss": self.train_loss,
                "test_errors": self.test_errors, "seconds": self.seconds}


@dataclass
class Batch:
    """What an extra loss term sees at each step (see ``extra_loss`` in :func:`train`)."""

    x: torch.Tensor        # the images as the student saw them (jittered, if the run jitters)
    y: torch.Tensor        # their labels (``labeled`` says which of them the run may use)
    idx: torch.Tensor      # their rows in data.x_train: index per-image targets cached up front
    logits: torch.Tensor   # the student's
    features: dict         # the student's output at each layer the terms name in ``layers``


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


def make_optimizer(params, name: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The engine's optimizer over a model's (or a list of) trainable parameters: sgd (Nesterov), adam, adamw."""
    params = [p for p in (params.parameters() if isinstance(params, nn.Module) else params) if p.requires_grad]
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
          teacher_logits: torch.Tensor | None = None, labeled: torch.Tensor | None = None,
          extra_loss=None, label_smoothing: float = 0.0, T: float = 4.0, alpha: float = 0.9, epochs: int = 10,
          batch_size: int = 128,
          lr: float = 0.1, optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
          warmup_epochs: float = 0.5, warmup_steps: int | None = None, clip: float | None = None,
          jitter: int = 0, teacher_views: int = 0, seed: int = 0, device=None,
          evaluate_every_epoch: bool = True, on_epoch_end=None, progress: bool = True,
          desc: str = "train") -> History:
    """Train ``model`` on ``data`` in place; with soft targets, distill.

    The loss of a batch is :func:`kdlab.losses.distillation_loss` at temperature
    ``T`` with weight ``alpha`` on the soft term when there are soft targets,
    else cross-entropy, plus every extra term:

    * soft targets come from ``teacher`` (kept in eval mode, under no_grad;
      its logits are computed once unless the batches are jittered) or from
      ``teacher_logits``, the teacher's logits on ``data.x_train`` computed by
      the caller (to share them between runs; no jitter then);
    * ``labeled``: a boolean mask over ``data.x_train``; the cross-entropy
      covers only the labeled images of a batch, the soft term all of them. A
      batch with nothing to learn from (no labeled image, no soft target, no
      extra term) is skipped: no optimizer or scheduler step;
    * ``extra_loss``: a term or a list of terms, each called as
      ``term(batch) -> scalar tensor`` with a :class:`Batch` and added to the
      loss in order. A term's ``layers`` attribute names the student's layers
      whose outputs it reads (``batch.features``, from the same forward pass);
      a term that is an ``nn.Module`` trains alongside the model (the FitNets
      regressor): its parameters join the optimizer;
    * ``label_smoothing`` = eps in [0, 1): the cross-entropy's target puts
      1 - eps on the label and spreads eps evenly over all classes (Szegedy et
      al. 2016; ``F.cross_entropy(..., label_smoothing=eps)``). It smooths
      labels when there are no soft targets: with a teacher, the soft term
      already is the smoothed target, so the two are not combined.

    ``jitter`` > 0 translates each training batch by up to that many pixels.
    With a teacher and jitter, ``teacher_views`` = K > 0 fixes K jittered copies
    of every training image up front and caches the teacher's logits on each;
    every step then draws one of the K copies per image, so the teacher never
    runs inside the loop. With ``teacher_views=0`` the teacher sees every fresh
    batch.

    SGD with Nesterov momentum (or ``optimizer``), a linear warm-up over
    ``warmup_steps`` (default ``warmup_epochs`` of the steps) then cosine decay
    to zero; ``clip`` caps the gradients' norm. ``on_epoch_end`` (a callable or
    a list) is called with the :class:`History` after every epoch, for curves.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    n = len(data.y_train)
    if teacher is not None and teacher_logits is not None:
        raise ValueError("pass a teacher or its cached teacher_logits, not both")
    if teacher_logits is not None:
        if teacher_logits.dim() != 2 or len(teacher_logits) != n:
            raise ValueError(f"teacher_logits must hold one row of logits per training image, "
                             f"shape ({n}, classes); got {tuple(teacher_logits.shape)}")
        if jitter:
            raise ValueError("cached teacher_logits belong to the plain images: with jitter, pass the teacher "
                             "(and teacher_views to cache its logits on jittered copies)")
    if labeled is not None and (labeled.dtype != torch.bool or labeled.shape != (n,)):
        raise ValueError(f"labeled must be a boolean mask over the {n} training images")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
    if label_smoothing and (teacher is not None or teacher_logits is not None):
        raise ValueError("label_smoothing smooths the labels of a model trained without a teacher; with soft "
                         "targets, distill instead (the teacher's soft targets are the smoothed labels)")
    smoothing = float(label_smoothing)
    terms = [] if extra_loss is None else list(extra_loss) if isinstance(extra_loss, (list, tuple)) else [extra_loss]
    soft = teacher is not None or teacher_logits is not None
    if soft:
        T = check_temperature(T)
        alpha = check_alpha(alpha)
    elif labeled is not None and not bool(labeled.any()) and not terms:
        raise ValueError("no labeled image, no soft target and no extra term: nothing to learn from")
    callbacks = [] if on_epoch_end is None else [on_epoch_end] if callable(on_epoch_end) else list(on_epoch_end)

    device = settings.default_device(device) if not isinstance(device, torch.device) else device
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    modules = [t.to(device) for t in terms if isinstance(t, nn.Module)]
    x, y = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    mask = labeled.to(device) if labeled is not None else None
    layers = sorted({name for t in terms for name in getattr(t, "layers", ())})
    if layers:
        from .features import capture  # kdlab.features builds on this module: imported here, not at the top
    history = History()

    cached = view_shifts = None
    if teacher_logits is not None:
        cached = teacher_logits.detach().to(device)
    elif teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        start = time.perf_counter()
        with span("kdlab.teacher_logits"):
            if not jitter:
                cached = predict_logits(teacher, x)
            elif teacher_views:
                view_shifts, cached = cache_teacher_views(teacher, x, jitter, teacher_views, generator)
        _sync(device)
        history.teacher_seconds = time.perf_counter() - start

    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    params = [*model.parameters(), *(p for m in modules for p in m.parameters())]
    opt = make_optimizer(params, optimizer, lr, momentum, weight_decay)
    warmup = int(warmup_epochs * steps_per_epoch) if warmup_steps is None else warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup))

    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=True,
               dynamic_ncols=True, mininterval=0.5)
    elapsed = history.teacher_seconds
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            for m in modules:
                m.train()
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            for idx in batch_indices(n, batch_size, generator=generator, device=device):
                with span("kdlab.batch"):
                    xb, yb = x[idx], y[idx]
                    mb = mask[idx] if mask is not None else None
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
                    if layers:
                        with capture(model, layers) as feats:
                            logits = model(xb)
                    else:
                        logits, feats = model(xb), {}
                with span("kdlab.loss"):
                    if soft:
                        loss = distillation_loss(logits, t_logits, yb, T, alpha, labeled=mb, validate=False)
                    elif mb is None:
                        loss = F.cross_entropy(logits, yb, label_smoothing=smoothing)
                    else:
                        loss = F.cross_entropy(logits[mb], yb[mb], label_smoothing=smoothing) \
                            if bool(mb.any()) else None
                    if terms:
                        batch = Batch(xb, yb, idx, logits, feats)
                        for term in terms:
                            value = term(batch)
                            loss = value if loss is None else loss + value
                if loss is None:    # nothing to learn from in this batch
                    bar.update(1)
                    continue
                with span("kdlab.backward"):
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                with span("kdlab.optimizer"):
                    if clip:
                        nn.utils.clip_grad_norm_(params, clip)
                    opt.step()
                    sched.step()
                    loss_sum += loss.detach() * len(idx)
                bar.update(1)
            _sync(device)
            elapsed += time.perf_counter() - start
            history.epochs.append(epoch)
            history.train_loss.append(float(loss_sum) / n)
            history.seconds.append(elapsed)
            errors = None
            if evaluate_every_epoch or epoch == epochs:
                with span("kdlab.evaluate"):
                    errors = evaluate(model, x_test, y_test)["test_errors"]
            history.test_errors.append(errors)
            bar.set_postfix(epoch=epoch, loss=f"{history.train_loss[-1]:.3f}",
                            **({} if errors is None else {"test_errors": errors}))
            for callback in callbacks:
                callback(history)
    finally:
        bar.close()
    model.eval()
    for m in modules:
        m.eval()
    return history


@torch.no_grad()
def cache_teacher_views(teacher: nn.Module, x: torch.Tensor, max_shift: int, views: int,
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
