r"""The sequence-level reverse KL, its exact gradient, and the estimators of that gradient from samples.

The objective of MiniLLM (Gu et al., 2023) and of on-policy GKD with the reverse KL (Agarwal et al., 2023) is the
reverse KL between the student's and the teacher's distributions over *whole strings*,

.. math::  J(\theta) = \mathrm{KL}(q_\theta \,\|\, p) = \sum_y q_\theta(y) \log\frac{q_\theta(y)}{p(y)} .

Its gradient has a score-function (policy-gradient) form, because the strings are drawn from the model being trained:

.. math::  \nabla J = \mathbb{E}_{y\sim q}\big[(\log q(y) - \log p(y))\,\nabla\log q(y)\big]
           \;+\; \underbrace{\mathbb{E}_{y\sim q}[\nabla \log q(y)]}_{=\,0} .

With :math:`\rho_t = \log q(y_t \mid y_{<t}) - \log p(y_t \mid y_{<t})` and causality (a log-ratio at :math:`s < t`
is uncorrelated with the score at :math:`t`), it splits into a *single-step* part and a *long-term* part:

.. math::  \nabla J = \mathbb{E}_{y\sim q}\Big[\sum_t \nabla\,\mathrm{KL}\big(q(\cdot\mid y_{<t}) \,\|\, p(\cdot\mid y_{<t})\big)\Big]
           + \mathbb{E}_{y\sim q}\Big[\sum_t \Big(\sum_{s>t} \rho_s\Big) \nabla \log q(y_t \mid y_{<t})\Big] .

GKD treats the sampled strings as fixed data and follows the first part only (token-level reverse KL on the
student's own prefixes); MiniLLM keeps both, with three variance-reduction tricks: the single-step
decomposition above (the first part computed exactly over the vocabulary, not sampled), length normalization (the
future log-ratios averaged, not summed) and teacher-mixed sampling (strings drawn from
:math:`\tilde p = \alpha p + (1 - \alpha) q`, each position reweighted by :math:`q(y_t)/\tilde p(y_t)`).

Every estimator here is a *surrogate*: a per-string value whose autograd gradient is the estimate
(:func:`surrogate`); :func:`exact_gradient` is the true :math:`\nabla J`, from every string enumerated;
:func:`gradient_quality` measures each estimator against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .models import ancestral, sequence_logits, string_log_probs_tensor


@dataclass(frozen=True)
class Estimator:
    """How a batch of sampled strings becomes a gradient of the sequence-level reverse KL.

    ``kind``: ``"score-function"`` (the whole string's log-ratio times its whole score) or ``"decomposed"`` (the
    single-step part exactly, plus the long-term part if ``long_term``). ``length_norm``: the future log-ratios
    averaged instead of summed (MiniLLM). ``mix``: the teacher's share in the sampler (MiniLLM's alpha; 0 = on-policy).
    ``weights``: how samples from the mixture are reweighted: ``"token"`` (MiniLLM: q/p~ at the position itself,
    biased, low variance) or ``"sequence"`` (the exact ratio q(y)/p~(y) of the whole string, unbiased).
    """

    kind: str = "decomposed"
    long_term: bool = True
    length_norm: bool = False
    mix: float = 0.0
    weights: str = "token"

    def __post_init__(self):
        if self.kind not in ("score-function", "decomposed"):
            raise ValueError(f"kind must be 'score-function' or 'decomposed', got {self.kind!r}")
        if not 0.0 <= self.mix < 1.0:
            raise ValueError(f"mix (the teacher's share in the sampler) must lie in [0, 1), got {self.mix!r}")
        if self.weights not in ("token", "sequence"):
            raise ValueError(f"weights must be 'token' or 'sequence', got {self.weights!r}")
        if self.kind == "score-function" and (self.length_norm or not self.long_term or self.mix):
            raise ValueError("the score-function estimator is the plain one: no length_norm, long_term=False or mix")


ESTIMATORS = {
    "score-function": Estimator(kind="score-function"),
    "decomposed": Estimator(),
    "single-step": Estimator(long_term=False),
    "length-norm": Estimator(length_norm=True),
    "teacher-mix": Estimator(mix=0.2),
    "minillm": Estimator(length_norm=True, mix=0.2),
}
DESCRIPTIONS = {
    "score-function": "(log q(y) - log p(y)) grad log q(y): unbiased, the whole string's log-ratio on every token",
    "decomposed": "single-step part exact + long-term policy gradient (future log-ratios): unbiased",
    "single-step": "the single-step part only, the student's samples as fixed data: GKD with the reverse KL",
    "length-norm": "decomposed, the future log-ratios averaged instead of summed (MiniLLM's length normalization)",
    "teacher-mix": "decomposed, strings from 0.2 p + 0.8 q, per-token weights q/p~ (MiniLLM's teacher-mixed sampling)",
    "minillm": "decomposed + length normalization + teacher-mixed sampling (MiniLLM, without PPO clipping or the LM loss)",
}


def estimator(name_or_estimator) -> Estimator:
    if isinstance(name_or_estimator, Estimator):
        return name_or_estimator
    if name_or_estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name_or_estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name_or_estimator]


# ------------------------------------------------------------------------------------------------ sampling

def sample_mixed(student: nn.Module, teacher: nn.Module, n: int, max_len: int, mix: float,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` strings, each token drawn from ``mix * p_teacher + (1 - mix) * q_student`` given the string so far."""
    return ancestral((student, teacher),
                     lambda last: mix * torch.softmax(last[1], -1) + (1 - mix) * torch.softmax(last[0], -1),
                     n, max_len, generator)


# ------------------------------------------------------------------------------------------------ the estimators

def _future_sums(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position t: the sum of ``values`` over the masked positions s > t, and how many there are."""
    v = values * mask
    after = v.flip(1).cumsum(1).flip(1) - v
    counts = mask.long().flip(1).cumsum(1).flip(1) - mask.long()
    return after, counts


def surrogate(student: nn.Module, teacher: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor,
              how="decomposed") -> torch.Tensor:
    """One value per string whose gradient (autograd, summed over strings) is ``how``'s estimate for that string.

    The mean over a batch drawn from the estimator's sampler is a batch estimate of the gradient of
    KL(q || p) over whole strings. No gradient reaches the teacher; the sampled tokens carry none.
    """
    est = estimator(how)
    logits, targets, mask = sequence_logits(student, tokens, lengths)
    with torch.no_grad():
        t_logits, _, _ = sequence_logits(teacher, tokens, lengths)
    log_q = torch.log_softmax(logits.double(), -1)
    log_p = torch.log_softmax(t_logits.double(), -1)
    mask_f = mask.double()
    chosen = log_q.gather(-1, targets[..., None]).squeeze(-1)                 # log q(y_t | y_<t), with gradient
    rho = (chosen - log_p.gather(-1, targets[..., None]).squeeze(-1)).detach()
    if est.mix > 0:        # the importance weights of strings drawn from p~ = mix p + (1 - mix) q
        log_mixed = torch.logaddexp(math.log(est.mix) + log_p, math.log1p(-est.mix) + log_q.detach())
        log_w = (chosen.detach() - log_mixed.gather(-1, targets[..., None]).squeeze(-1)) * mask_f
        weights = log_w.exp() if est.weights == "token" else log_w.sum(1, keepdim=True).exp().expand_as(log_w)
    else:
        weights = torch.ones_like(mask_f)
    if est.kind == "score-function":                                        # (log q(y) - log p(y)) log q(y)
        return (rho * mask_f).sum(1) * (chosen * mask_f).sum(1)
    single = (log_q.exp() * (log_q - log_p)).sum(-1)                        # KL(q(.|y_<t) || p(.|y_<t)), exact
    terms = single
    if est.long_term:
        future, count = _future_sums(rho, mask_f)
        if est.length_norm:
            future = future / count.clamp(min=1)
        terms = terms + future * chosen
    return (weights * terms * mask_f).sum(1)


def exact_gradient(student: nn.Module, teacher_log_probs, max_len: int) -> tuple[float, list[torch.Tensor]]:
    """KL(q || p) over every string of length 0..max_len, and its exact gradient with respect to the student.

    ``teacher_log_probs``: log p of every string in index order (:func:`kdlab.lm.models.string_log_probs`).
    """
    log_p = torch.as_tensor(np.asarray(teacher_log_probs), dtype=torch.float64)
    log_q = string_log_probs_tensor(student, max_len)
    kl = (log_q.exp() * (log_q - log_p)).sum()
    grads = torch.autograd.grad(kl, list(student.parameters()))
    return float(kl.detach()), [g.detach() for g in grads]


def batch_gradient(student: nn.Module, teacher: nn.Module, how, batch_size: int, max_len: int,
                   generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """One batch estimate: ``batch_size`` strings from the estimator's sampler, the mean of their surrogates."""
    from .models import sample

    est = estimator(how)
    if est.mix > 0:
        tokens, lengths = sample_mixed(student, teacher, batch_size, max_len, est.mix, generator=generator)
    else:
        tokens, lengths = sample(student, batch_size, max_len, generator=generator)
    value = surrogate(student, teacher, tokens, lengths, est).mean()
    return [g.detach() for g in torch.autograd.grad(value, list(student.parameters()))]


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1).double() for g in grads])


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()).clamp(min=1e-300))


def gradient_quality(student: nn.Module, teacher: nn.Module, teacher_log_probs, max_len: int, estimators,
                     batch_size: int = 64, n_batches: int = 100, seed: int = 0, progress: bool = False) -> dict:
    """Each estimator's batch estimates against the exact gradient of KL(q || p), at the student's current weights.

    Per estimator: ``cosine`` (the mean cosine between one batch estimate and the exact gradient: what a step
    follows), ``cosine_of_mean`` (of the mean of ``n_batches`` estimates: its bias shows), ``bias`` (the norm of
    that mean minus the exact gradient, over the exact gradient's norm; its sampling noise alone is about
    ``error / sqrt(n_batches)``), ``error`` (the root-mean-square distance of one batch estimate from the exact
    gradient, over the exact gradient's norm).
    """
    from tqdm.auto import tqdm

    kl, exact = exact_gradient(student, teacher_log_probs, max_len)
    g = _flat(exact)
    out = {"kl": kl, "exact_norm": float(g.norm()), "batch_size": batch_size, "n_batches": n_batches, "estimators": {}}
    for name in tqdm(list(estimators), desc="estimators", disable=not progress, leave=False):
        gen = torch.Generator().manual_seed(seed)
        flats = torch.stack([_flat(batch_gradient(student, teacher, name, batch_size, max_len, gen))
                             for _ in range(n_batches)])
        mean = flats.mean(0)
        out["estimators"][name] = {
            "cosine": float(np.mean([_cos(f, g) for f in flats])),
            "cosine_of_mean": _cos(mean, g),
            "bias": float((mean - g).norm() / g.norm()),
            "error": float(((flats - g).norm(dim=1) ** 2).mean().sqrt() / g.norm()),
        }
    return out
