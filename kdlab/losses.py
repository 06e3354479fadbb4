r"""Reference distillation losses: the one implementation of each in kdlab.

Conventions (docs/course.md):

* ``softmax_t(z, T) = softmax(z / T)`` over the last dimension;
* ``kd_kl = T^2 * KL(p_teacher,T || p_student,T)``, averaged over the batch
  (``batchmean``), computed from log-probabilities;
* ``distillation_loss = alpha * kd_kl + (1 - alpha) * CE(student_logits, labels)``
  with the cross-entropy at T = 1: ``alpha`` weights the *soft* term.

The training engine calls the same functions with ``validate=False``: it checks
T and alpha once (:func:`check_temperature`, :func:`check_alpha`), not on every
batch.
"""

import math

import torch
import torch.nn.functional as F


def check_temperature(T) -> float:
    """``T`` as a float; ValueError unless it is a positive finite number."""
    if isinstance(T, torch.Tensor):
        T = float(T)
    if not isinstance(T, (int, float)) or isinstance(T, bool) or not math.isfinite(T) or T <= 0:
        raise ValueError(f"temperature T must be a positive finite number, got {T!r}")
    return float(T)


def _check_logits(z, name: str) -> torch.Tensor:
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.dim() == 0:
        raise ValueError(f"{name} must have a class dimension, got a scalar")
    if not z.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {z.dtype}")
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return z


def _check_pair(student_logits, teacher_logits) -> None:
    _check_logits(student_logits, "student_logits")
    _check_logits(teacher_logits, "teacher_logits")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")


def _batch_size(z: torch.Tensor) -> int:
    """Number of distributions: every leading dimension counts as batch."""
    return max(1, z.numel() // z.shape[-1])


def softmax_t(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Softmax of ``logits / T`` over the last dimension; stable for huge logits."""
    T = check_temperature(T)
    return F.softmax(_check_logits(logits, "logits") / T, dim=-1)


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float, *,
          validate: bool = True) -> torch.Tensor:
    r"""T^2 * KL(p_teacher,T || p_student,T), summed over classes, averaged over the batch.

    The teacher side is detached: gradients never flow into the teacher.
    ``validate=False`` skips the input checks (the engine's hot path; T must
    then be a float already checked).
    """
    if validate:
        T = check_temperature(T)
        _check_pair(student_logits, teacher_logits)
    log_q = F.log_softmax(student_logits / T, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach() / T, dim=-1)
    kl = F.kl_div(log_q, log_p, reduction="sum", log_target=True) / _batch_size(student_logits)
    return kl * (T * T)


def check_alpha(alpha) -> float:
    """``alpha`` as a float; ValueError unless it lies in [0, 1]."""
    if isinstance(alpha, torch.Tensor):
        alpha = float(alpha)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1] (the weight of the soft term), got {alpha!r}")
    return float(alpha)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      T: float, alpha: float, *, labeled: torch.Tensor | None = None,
                      validate: bool = True) -> torch.Tensor:
    """alpha * kd_kl(T) + (1 - alpha) * cross-entropy(student_logits, labels) at T = 1.

    ``labeled`` (a boolean mask shaped like ``labels``) limits the cross-entropy
    to the rows whose label may be used, the soft term still covering every
    row; a batch with no labeled row keeps only ``alpha * kd_kl``.
    ``validate=False`` skips the input checks (the engine's hot path).
    """
    if validate:
        alpha = check_alpha(alpha)
        _check_pair(student_logits, teacher_logits)
        _check_labels(labels, student_logits)
        T = check_temperature(T)
        if labeled is not None and (not isinstance(labeled, torch.Tensor) or labeled.dtype != torch.bool
                                    or labeled.shape != labels.shape):
            raise ValueError(f"labeled must be a boolean mask of shape {tuple(labels.shape)}")
    loss = alpha * kd_kl(student_logits, teacher_logits, T, validate=False) if alpha > 0 else None
    if alpha < 1:
        if labeled is not None:
            if not bool(labeled.any()):
                return loss
            student_logits, labels = student_logits[labeled], labels[labeled]
        hard = F.cross_entropy(student_logits.reshape(-1, student_logits.shape[-1]), labels.reshape(-1))
        loss = hard if loss is None else loss + (1.0 - alpha) * hard
    return loss


def _check_labels(labels, student_logits: torch.Tensor) -> None:
    if not isinstance(labels, torch.Tensor) or labels.shape != student_logits.shape[:-1]:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must have shape {tuple(student_logits.shape[:-1])}, got {got}")
    if labels.is_floating_point():
        raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
    n_classes = student_logits.shape[-1]
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes - 1}]")


def kd_logit_grad(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    r"""Closed-form gradient of one example's soft loss KL(p_T || q_T) w.r.t. the student logits.

    Hinton et al. (2015), eq. 2: dC/dz_i = (1/T) (q_i - p_i), with q = softmax(z/T)
    for the student and p = softmax(v/T) for the teacher; one row per example.
    For large T and zero-mean logits it tends to (z_i - v_i) / (N T^2), N classes:
    logit matching. The T^2 in :func:`kd_kl` undoes this 1/T^2 shrinkage, so
    ``kd_kl``'s gradient is ``T**2 * kd_logit_grad(...) / batch_size``.
    """
    T = check_temperature(T)
    _check_pair(student_logits, teacher_logits)
    q = softmax_t(student_logits.detach(), T)
    p = softmax_t(teacher_logits.detach(), T)
    return (q - p) / T
