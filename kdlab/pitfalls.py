r"""Lesson 3's pitfalls lab: the ten KD bugs of docs/course.md as runnable losses, and their measured effects.

Each :class:`Pitfall` holds a *deliberately wrong* distillation loss with the
signature of :func:`kdlab.losses.distillation_loss`,
``loss(student_logits, teacher_logits, labels, T, alpha)``, next to the
correct one (:func:`correct_loss`). Two measurements show what each bug does:

* :func:`loss_effects`: the loss value and the size of its gradient on the
  student's logits, relative to the correct loss, on one batch, plus the value
  on a batch of huge logits (where overflow shows);
* :func:`short_run`: a small student trained for a few hundred steps with the
  buggy loss; its test errors against the correct loss's run.

Bug 8 is not in the formula but in the training loop: the teacher runs in
train mode, without ``no_grad``, and its parameters sit in the optimizer (the
"one module holding student and teacher" pattern), so the loss's gradient
reaches the teacher and training changes it. ``Pitfall.teacher_in_graph``
marks it; :func:`short_run` then trains that way, on a copy of the teacher.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, batch_indices
from .losses import distillation_loss
from .models import build
from .train import evaluate, predict_logits


def correct_loss(s, t, y, T, alpha):
    """alpha * T^2 * KL(p_T || q_T) (batchmean) + (1 - alpha) * CE at T = 1: kdlab's reference."""
    return distillation_loss(s, t, y, float(T), float(alpha), validate=False)


def _blend(soft, s, y, alpha):
    return alpha * soft + (1 - alpha) * F.cross_entropy(s, y)


def _kl(log_q, log_p, n):
    """sum p (log p - log q) / n from log-probabilities (the correct KL core)."""
    return (log_p.exp() * (log_p - log_q)).sum() / n


def bug1_probabilities_in_kl(s, t, y, T, alpha):
    q = F.softmax(s / T, dim=-1)                                   # BUG: probabilities, not log q
    p = F.softmax(t.detach() / T, dim=-1)
    return _blend(F.kl_div(q, p, reduction="batchmean") * T * T, s, y, alpha)


def bug2_mean_reduction(s, t, y, T, alpha):
    log_q = F.log_softmax(s / T, dim=-1)
    p = F.softmax(t.detach() / T, dim=-1)
    with warnings.catch_warnings():  # torch warns about exactly this bug; the lab measures it instead
        warnings.simplefilter("ignore")
        soft = F.kl_div(log_q, p, reduction="mean")                # BUG: / (batch * classes)
    return _blend(soft * T * T, s, y, alpha)


def bug3_no_t_squared(s, t, y, T, alpha):
    log_q = F.log_softmax(s / T, dim=-1)
    p = F.softmax(t.detach() / T, dim=-1)
    return _blend(F.kl_div(log_q, p, reduction="batchmean"), s, y, alpha)      # BUG: no * T**2


def bug4_temperature_one_side(s, t, y, T, alpha):
    log_q = F.log_softmax(s, dim=-1)                               # BUG: student at T = 1
    p = F.softmax(t.detach() / T, dim=-1)
    return _blend(F.kl_div(log_q, p, reduction="batchmean") * T * T, s, y, alpha)


def bug5_reversed_kl(s, t, y, T, alpha):
    log_q = F.log_softmax(s / T, dim=-1)
    log_p = F.log_softmax(t.detach() / T, dim=-1)
    kl = (log_q.exp() * (log_q - log_p)).sum() / len(s)            # BUG: KL(student || teacher)
    return _blend(kl * T * T, s, y, alpha)


def bug6_alpha_on_hard(s, t, y, T, alpha):
    log_q = F.log_softmax(s / T, dim=-1)
    log_p = F.log_softmax(t.detach() / T, dim=-1)
    soft = _kl(log_q, log_p, len(s)) * T * T
    return (1 - alpha) * soft + alpha * F.cross_entropy(s, y)     # BUG: alpha weights the hard term


def bug7_softened_cross_entropy(s, t, y, T, alpha):
    log_q = F.log_softmax(s / T, dim=-1)
    log_p = F.log_softmax(t.detach() / T, dim=-1)
    soft = _kl(log_q, log_p, len(s)) * T * T
    return alpha * soft + (1 - alpha) * F.cross_entropy(s / T, y)  # BUG: CE on softened logits


def bug8_teacher_not_detached(s, t, y, T, alpha):
    log_q = F.log_softmax(s / T, dim=-1)
    log_p = F.log_softmax(t / T, dim=-1)                           # BUG: no .detach(): gradient reaches the teacher
    return _blend(_kl(log_q, log_p, len(s)) * T * T, s, y, alpha)


def _naive_softmax(z, dim=-1):
    e = torch.exp(z)                                               # BUG: overflows to inf for z > 88 (float32)
    return e / e.sum(dim=dim, keepdim=True)


def bug9_overflowing_softmax(s, t, y, T, alpha):
    q = _naive_softmax(s / T)
    p = _naive_softmax(t.detach() / T)
    soft = (p * (torch.log(p) - torch.log(q))).sum() / len(s) * T * T
    return _blend(soft, s, y, alpha)


def bug10_softmax_over_batch(s, t, y, T, alpha):
    log_q = F.log_softmax(s / T, dim=0)                            # BUG: dim=0 normalizes over the batch
    log_p = F.log_softmax(t.detach() / T, dim=0)
    return _blend(_kl(log_q, log_p, len(s)) * T * T, s, y, alpha)


@dataclass(frozen=True)
class Pitfall:
    number: int
    title: str
    loss: Callable
    teacher_in_graph: bool = False


PITFALLS = [
    Pitfall(1, "probabilities instead of log-probabilities in the KL", bug1_probabilities_in_kl),
    Pitfall(2, 'reduction="mean" instead of batchmean', bug2_mean_reduction),
    Pitfall(3, "T\u00b2 factor missing", bug3_no_t_squared),
    Pitfall(4, "temperature on one side only", bug4_temperature_one_side),
    Pitfall(5, "KL direction reversed", bug5_reversed_kl),
    Pitfall(6, "alpha weights the hard term", bug6_alpha_on_hard),
    Pitfall(7, "cross-entropy on softened logits", bug7_softened_cross_entropy),
    Pitfall(8, "teacher trains: not detached, train mode, in the optimizer", bug8_teacher_not_detached,
            teacher_in_graph=True),
    Pitfall(9, "softmax that overflows on large logits", bug9_overflowing_softmax),
    Pitfall(10, "softmax over the batch dimension", bug10_softmax_over_batch),
]


def _value_and_grad(loss_fn, s, t, y, T, alpha):
    s = s.detach().clone().requires_grad_(True)
    t = t.detach().clone().requires_grad_(True)
    loss = loss_fn(s, t, y, T, alpha)
    if loss.requires_grad:
        loss.backward()
    s_grad = s.grad if s.grad is not None else torch.zeros_like(s)
    t_grad = t.grad if t.grad is not None else torch.zeros_like(t)
    return float(loss.detach()), s_grad, float(t_grad.norm())


def loss_effects(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                 T: float = 4.0, alpha: float = 0.9, huge: float = 1000.0) -> list[dict]:
    """One row per pitfall (row 0: the correct loss) on one batch.

    ``loss``: its value; ``grad_ratio``: |d loss / d student logits| relative to
    the correct loss's; ``grad_cosine``: cosine between the two gradients;
    ``teacher_grad``: norm of the gradient that reaches the teacher's logits;
    ``huge_loss``: the value when both sets of logits are scaled by ``huge``.
    """
    ok_loss, ok_grad, _ = _value_and_grad(correct_loss, student_logits, teacher_logits, labels, T, alpha)
    rows = []
    for pitfall in [None] + PITFALLS:
        fn = correct_loss if pitfall is None else pitfall.loss
        value, grad, teacher_grad = _value_and_grad(fn, student_logits, teacher_logits, labels, T, alpha)
        with torch.no_grad():
            huge_value = float(fn(student_logits * huge, teacher_logits * huge, labels, T, alpha))
        rows.append(dict(
            number=0 if pitfall is None else pitfall.number,
            title="correct" if pitfall is None else pitfall.title,
            loss=value, loss_ratio=value / ok_loss,
            grad_ratio=float(grad.norm() / ok_grad.norm()),
            grad_cosine=float(F.cosine_similarity(grad.flatten(), ok_grad.flatten(), dim=0)),
            teacher_grad=teacher_grad, huge_loss=huge_value))
    return rows


def short_run(loss_fn: Callable, data: Dataset, teacher: nn.Module, *, teacher_in_graph: bool = False,
              student_arch: str = "mlp-100x2", steps: int = 300, T: float = 4.0, alpha: float = 0.9,
              lr: float = 0.05, batch_size: int = 128, seed: int = 0, teacher_logits: torch.Tensor | None = None) -> dict:
    """Train a fresh student for ``steps`` SGD steps with ``loss_fn``; report test errors.

    With ``teacher_in_graph`` (bug 8) a copy of the teacher runs in train mode
    on every batch, with gradients, and sits in the optimizer; the result then
    also holds the copy's test errors after the run. ``teacher_logits`` (the
    teacher's logits on ``data.x_train``) may be passed to skip recomputing them.
    """
    flush = torch.set_flush_denormal(True)  # some buggy losses drive weights into denormals: 30x slower
    try:
        return _short_run(loss_fn, data, teacher, teacher_in_graph, student_arch, steps, T, alpha, lr, batch_size,
                          seed, teacher_logits)
    finally:
        if flush:
            torch.set_flush_denormal(False)


def _short_run(loss_fn, data, teacher, teacher_in_graph, student_arch, steps, T, alpha, lr, batch_size, seed,
               teacher_logits) -> dict:
    torch.manual_seed(seed)
    student = build(student_arch)
    params = list(student.parameters())
    if teacher_in_graph:
        teacher = copy.deepcopy(teacher).train()
        for p in teacher.parameters():
            p.requires_grad_(True)
        params += list(teacher.parameters())
    elif teacher_logits is None:
        teacher_logits = predict_logits(teacher, data.x_train)
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    x, y = data.x_train, data.y_train
    start = time.perf_counter()
    done, losses, diverged = 0, [], False
    student.train()
    while done < steps and not diverged:
        for idx in batch_indices(len(y), batch_size, generator=g):
            s = student(x[idx])
            t = teacher(x[idx]) if teacher_in_graph else teacher_logits[idx]
            loss = loss_fn(s, t, y[idx], T, alpha)
            if not torch.isfinite(loss.detach()):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            done += 1
            if done == steps:
                break
    seconds = time.perf_counter() - start
    result = dict(steps=done, diverged=diverged, seconds=seconds,
                  final_loss=sum(losses[-20:]) / max(1, len(losses[-20:])),
                  test_errors=evaluate(student, data.x_test, data.y_test)["test_errors"])
    if teacher_in_graph:
        result["teacher_test_errors_after"] = evaluate(teacher, data.x_test, data.y_test)["test_errors"]
    return result


# ----------------------------------------------------------------------------- lesson 3's fix_kd_step

def kd_step_networks(seed: int, scale: float = 1.0) -> tuple[nn.Module, nn.Module]:
    """(student, teacher) on which to check a KD training step: small, seeded, plain torch modules.

    The teacher's output depends on its mode (batch norm with non-trivial running statistics, then dropout),
    and it is returned in evaluation mode; ``scale`` multiplies both output layers' weights (huge logits).
    The global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 5))
        teacher = nn.Sequential(nn.Flatten(), nn.Linear(12, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Dropout(0.5),
                                nn.Linear(24, 5))
        with torch.no_grad():
            teacher[2].running_mean.normal_(0.0, 0.5)
            teacher[2].running_var.uniform_(0.5, 2.0)
            student[-1].weight.mul_(scale)
            teacher[-1].weight.mul_(scale)
    return student, teacher.eval()


def kd_step_reference(student: nn.Module, teacher: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                      y: torch.Tensor, T: float, alpha: float) -> tuple[float, list[torch.Tensor]]:
    """Lesson 3's training step done right, on copies (the arguments are left untouched).

    Returns the loss before the step and the student's parameters after one step of an optimizer of
    ``optimizer``'s kind and settings over the student's parameters alone. The student trains; the teacher
    runs in evaluation mode without a graph; the loss is :func:`correct_loss`."""
    student, teacher = copy.deepcopy(student).train(), copy.deepcopy(teacher).eval()
    with torch.no_grad():
        teacher_logits = teacher(x)
    loss = correct_loss(student(x), teacher_logits, y, T, alpha)
    opt = type(optimizer)(student.parameters(), **optimizer.defaults)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item(), [p.detach().clone() for p in student.parameters()]
