r"""Reference token-level divergences between a teacher's and a student's next-token distributions.

The one implementation of each in kdlab (lesson 9's exercises are the learner's own).
Every function takes logits of the same shape ``(..., V)``: each row along the
last dimension is the next-token distribution at one position (of one
sequence), and the result is the divergence **averaged over every position**
(all leading dimensions), a 0-dimensional tensor. ``P`` is the teacher's
distribution ``softmax(teacher_logits)``, ``Q`` the student's. All are computed
from log-probabilities (``log_softmax``), and the teacher side is detached:
no gradient flows into the teacher.

* :func:`forward_kl`: ``KL(P || Q) = sum_v P(v) (log P(v) - log Q(v))``,
  the supervised KD loss (mode covering);
* :func:`reverse_kl`: ``KL(Q || P) = sum_v Q(v) (log Q(v) - log P(v))``
  (mode seeking);
* :func:`generalized_jsd`: the generalized Jensen-Shannon divergence of GKD
  (Agarwal et al., 2024), for ``0 < beta < 1``:

  ``JSD(beta) = beta KL(P || M) + (1 - beta) KL(Q || M)``, ``M = beta P + (1 - beta) Q``.

  ``beta = 0.5`` is the ordinary Jensen-Shannon divergence (at most log 2).
  Near ``beta = 0`` it behaves like ``beta * KL(P || Q)`` (forward KL), near
  ``beta = 1`` like ``(1 - beta) * KL(Q || P)`` (reverse KL); at ``beta = 0`` or
  ``1`` exactly the formula is 0 for every pair, so those values are rejected
  (use :func:`forward_kl` or :func:`reverse_kl`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _log_probs(teacher_logits: torch.Tensor, student_logits: torch.Tensor):
    for name, z in (("teacher_logits", teacher_logits), ("student_logits", student_logits)):
        if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.dim() == 0:
            raise ValueError(f"{name} must be a floating-point tensor with a vocabulary dimension")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits {tuple(teacher_logits.shape)} and student_logits "
                         f"{tuple(student_logits.shape)} differ in shape")
    return F.log_softmax(teacher_logits.detach(), dim=-1), F.log_softmax(student_logits, dim=-1)


def _positions(z: torch.Tensor) -> int:
    return max(1, z.numel() // z.shape[-1])


def forward_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(P_teacher || Q_student) at each position, averaged over every position."""
    log_p, log_q = _log_probs(teacher_logits, student_logits)
    return (log_p.exp() * (log_p - log_q)).sum() / _positions(log_q)


def reverse_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(Q_student || P_teacher) at each position, averaged over every position."""
    log_p, log_q = _log_probs(teacher_logits, student_logits)
    return (log_q.exp() * (log_q - log_p)).sum() / _positions(log_q)


def check_beta(beta) -> float:
    if isinstance(beta, torch.Tensor):
        beta = float(beta)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 < beta < 1.0:
        raise ValueError(f"beta must lie strictly between 0 and 1, got {beta!r} "
                         "(at 0 and 1 the generalized JSD is 0 for every pair: use forward_kl or reverse_kl)")
    return float(beta)


def generalized_jsd(teacher_logits: torch.Tensor, student_logits: torch.Tensor, beta: float) -> torch.Tensor:
    """beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q, averaged over every position."""
    beta = check_beta(beta)
    log_p, log_q = _log_probs(teacher_logits, student_logits)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log1p(-beta)]), dim=0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    return (beta * kl_pm + (1 - beta) * kl_qm).sum() / _positions(log_q)
