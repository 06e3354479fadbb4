"""Training a tiny language model five ways, on the same budget.

Every method takes the same number of optimizer steps on batches of the same
number of sequences, from the same initial weights, with the same optimizer:

``data``
    maximum likelihood on the training sentences alone (cross-entropy of the
    next token), no teacher;
``forward-kl``
    token-level KD: at every position of the training sentences, the student's
    next-token distribution is pulled towards the teacher's with KL(P || Q);
``reverse-kl``
    the same positions, the other direction: KL(Q || P);
``seq-kd``
    sequence-level KD (Kim and Rush, 2016): maximum likelihood on sentences the
    *teacher* generates (fresh ones at every step);
``gkd``
    on-policy distillation (GKD, Agarwal et al., 2024): the *student* generates
    the sentences, the teacher scores every position, and the loss is the
    generalized JSD(beta) between the two next-token distributions.

And one more, outside the five of lesson 9's first table:

``seq-rkl``
    the sequence-level reverse KL, KL(q || p) over whole strings, followed by one of
    the gradient estimators of :mod:`kdlab.lm.policy` (``estimator``): ``single-step``
    is GKD with the reverse KL (the student's samples as fixed data), ``minillm``
    keeps MiniLLM's policy-gradient term.

The teacher's logits on the training sentences are computed once (as in lesson
5); methods that sample pay for the sampling in their training seconds.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import losses, policy
from .models import inputs_and_targets, sample, sequence_logits

METHODS = ("data", "forward-kl", "reverse-kl", "seq-kd", "gkd")
ALL_METHODS = METHODS + ("seq-rkl",)
DESCRIPTIONS = {
    "data": "the training sentences alone (maximum likelihood)",
    "forward-kl": "token-level KD, KL(teacher || student) on the training sentences",
    "reverse-kl": "token-level KD, KL(student || teacher) on the training sentences",
    "seq-kd": "sequence-level KD: maximum likelihood on the teacher's samples",
    "gkd": "on-policy: the student's own samples, scored by the teacher with JSD(beta)",
    "seq-rkl": "the sequence-level reverse KL KL(q || p), by a gradient estimator of kdlab.lm.policy",
}


@dataclass
class Budget:
    """The training budget every method gets."""

    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-2


@dataclass
class TrainLog:
    method: str
    seconds: float
    losses: list = field(default_factory=list)


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """Index batches over ``n`` examples, reshuffled every epoch."""
    order = torch.randperm(n, generator=generator)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=generator), 0
        yield order[pos:pos + batch_size]
        pos += batch_size


def cross_entropy_loss(model, tokens, lengths) -> torch.Tensor:
    """Mean next-token cross-entropy over the predicted positions of a batch."""
    logits, targets, mask = sequence_logits(model, tokens, lengths)
    return F.cross_entropy(logits[mask], targets[mask])


@torch.no_grad()
def teacher_logits_for(teacher, tokens, lengths) -> torch.Tensor:
    """The teacher's logits at every position of every sentence (computed once)."""
    teacher.eval()
    logits, _, _ = sequence_logits(teacher, tokens, lengths)
    return logits


def train(model, method: str, data: tuple, *, teacher=None, teacher_logits=None, budget: Budget | None = None,
          beta: float = 0.5, lmbda: float = 1.0, seed: int = 0, progress: bool = False, desc: str | None = None,
          divergence=None, estimator="minillm") -> TrainLog:
    """Train ``model`` in place with ``method`` (one of :data:`METHODS`) on ``data = (tokens, lengths)``.

    ``teacher_logits``: the teacher's logits on ``data`` (computed here if not given). ``beta`` is GKD's
    JSD(beta) and ``lmbda`` the fraction of its steps on the student's own samples (the rest on the data).
    ``divergence(teacher_logits, student_logits)`` replaces the reference KL of ``forward-kl`` or
    ``reverse-kl`` (a learner's own, say); it receives the logits of the predicted positions, shape (N, 5).
    ``estimator``: ``seq-rkl``'s gradient estimator (a name of :data:`kdlab.lm.policy.ESTIMATORS`, or one).
    """
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(ALL_METHODS)}")
    est = policy.estimator(estimator) if method == "seq-rkl" else None
    budget = budget or Budget()
    tokens, lengths = data
    max_len = tokens.shape[1]
    needs_teacher = method != "data"
    if needs_teacher and teacher is None:
        raise ValueError(f"method {method!r} needs a teacher")
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(          # cosine decay to 0 over the budget
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, budget.steps) / budget.steps)))
    log = TrainLog(method, 0.0)
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if method in ("forward-kl", "reverse-kl", "gkd") and teacher_logits is None:
        teacher_logits = teacher_logits_for(teacher, tokens, lengths)
    model.train()
    batches = _batches(len(tokens), budget.batch_size, budget.steps, g)
    for step in tqdm(range(budget.steps), desc=desc or method, disable=not progress, leave=False,
                     mininterval=0.5, dynamic_ncols=True):
        on_policy = method == "gkd" and float(torch.rand((), generator=g)) < lmbda
        if method in ("data", "forward-kl", "reverse-kl") or (method == "gkd" and not on_policy):
            idx = next(batches)
            x, n = tokens[idx], lengths[idx]
            logits, targets, mask = sequence_logits(model, x, n)
            if method == "data":
                loss = F.cross_entropy(logits[mask], targets[mask])
            else:
                t_logits = teacher_logits[idx][mask]
                if method == "gkd":
                    loss = losses.generalized_jsd(t_logits, logits[mask], beta)
                else:
                    kd = divergence or (losses.forward_kl if method == "forward-kl" else losses.reverse_kl)
                    loss = kd(t_logits, logits[mask])
        elif method == "seq-kd":
            x, n = sample(teacher, budget.batch_size, max_len, generator=g)
            loss = cross_entropy_loss(model, x, n)
        elif method == "seq-rkl":   # strings from the estimator's sampler; the surrogate's gradient is its estimate
            if est.mix > 0:
                x, n = policy.sample_mixed(model, teacher, budget.batch_size, max_len, est.mix, generator=g)
            else:
                x, n = sample(model, budget.batch_size, max_len, generator=g)
            loss = policy.surrogate(model, teacher, x, n, est).mean()
        else:  # gkd: the student's own samples (no gradient through the sampling), scored by the teacher
            x, n = sample(model, budget.batch_size, max_len, generator=g)
            inputs, _, mask = inputs_and_targets(x, n)
            with torch.no_grad():
                t_logits, _ = teacher(inputs)
            s_logits, _ = model(inputs)
            loss = losses.generalized_jsd(t_logits[mask], s_logits[mask], beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        log.losses.append(float(loss.detach()))
    model.eval()
    log.seconds = time.perf_counter() - start
    return log


def fresh_copy(model):
    """An independent copy (same initial weights for every method)."""
    return copy.deepcopy(model)
