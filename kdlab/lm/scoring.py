r"""Scoring a language model against the truth, exactly.

With ``log p`` (the truth, :meth:`BracketLanguage.log_probs`) and ``log q`` (the
model, :func:`kdlab.lm.models.string_log_probs`) known for every string of
length 0..max_len, the two KL divergences are finite sums, not estimates:

* ``kl_truth_to_model = KL(p || q) = sum_x p(x) log(p(x) / q(x))``: what the
  model loses, in nats per sentence, on text from the truth (its log-loss minus
  the truth's entropy). Large when the model misses strings the truth says;
* ``kl_model_to_truth = KL(q || p) = sum_x q(x) log(q(x) / p(x))``: how
  surprised the truth is by what the model says. Large when the model says
  things the truth (almost) never does: the noise floor makes it finite.

And from the model's own outputs:

* ``valid_mass``: the model's exact probability of a grammatical string; the
  ``sample_validity`` is the fraction of ``n_samples`` sampled strings that are
  grammatical (its unbiased estimate);
* ``diversity = exp(H(q))``: the exponential of the entropy of the model's
  distribution over all strings, the *effective number of different strings*
  it says (a model that always says the same string scores 1; the truth's value
  is the reference). Like the sample-based diversity metrics of the literature
  (distinct n-grams) it counts every string, valid or not; so also
* ``valid_diversity = exp(H(q | grammatical))``: the same over the grammatical
  strings only (renormalized), the effective number of different *sentences*;
* ``distinct_samples``: the fraction of distinct strings among the samples.

The two are tied by the chain rule of entropy: with ``m`` the valid mass,
``H(q) = h(m) + m H(q | valid) + (1 - m) H(q | invalid)``, ``h`` the binary
entropy: a model that spreads a little mass over many invalid strings gains a
lot of diversity that is not worth having.
"""

from __future__ import annotations

import numpy as np
import torch

from .language import BracketLanguage
from .models import sample, string_log_probs


def kl(log_a: np.ndarray, log_b: np.ndarray) -> float:
    """KL(a || b) = sum a (log a - log b) of two full distributions given by their logs (float64)."""
    a = np.exp(log_a)
    return float(np.sum(a * (log_a - log_b)))


def effective_sentences(log_q: np.ndarray, valid: np.ndarray) -> float:
    """exp of the entropy of q restricted to the valid strings and renormalized."""
    lv = log_q[valid]
    lv = lv - np.logaddexp.reduce(lv)
    return float(np.exp(-np.sum(np.exp(lv) * lv)))


def score_log_probs(lang: BracketLanguage, log_q: np.ndarray) -> dict:
    """The exact scores of a distribution over all strings given as ``log q`` (index order)."""
    log_p = lang.log_probs()
    valid = lang.valid
    q = np.exp(log_q)
    return {
        "kl_truth_to_student": kl(log_p, log_q),
        "kl_student_to_truth": kl(log_q, log_p),
        "valid_mass": float(q[valid].sum()),
        "diversity": float(np.exp(-(q * log_q).sum())),
        "valid_diversity": effective_sentences(log_q, valid),
        "entropy": float(-(q * log_q).sum()),
        "mean_length": float((q * lang.lengths()).sum()),
    }


def score_model(model, lang: BracketLanguage, n_samples: int = 2000, seed: int = 0,
                teacher_log_probs: np.ndarray | None = None) -> dict:
    """Exact KLs both ways, validity (exact and sampled), diversity of ``model``.

    With ``teacher_log_probs`` (log p of every string, by the teacher) also the sequence-level KLs to the teacher:
    ``kl_student_to_teacher`` = KL(q || p_teacher), the objective of MiniLLM, and ``kl_teacher_to_student``.
    """
    log_q = string_log_probs(model, lang.max_len)
    scores = score_log_probs(lang, log_q)
    if teacher_log_probs is not None:
        scores["kl_student_to_teacher"] = kl(log_q, teacher_log_probs)
        scores["kl_teacher_to_student"] = kl(teacher_log_probs, log_q)
    g = torch.Generator().manual_seed(seed)
    tokens, lengths = sample(model, n_samples, lang.max_len, generator=g)
    idx = lang.batch_index(tokens, lengths).numpy()
    scores["sample_validity"] = float(lang.valid[idx].mean())
    scores["distinct_samples"] = float(len(np.unique(idx)) / len(idx))
    return scores


def score_truth(lang: BracketLanguage, n_samples: int = 2000, seed: int = 0) -> dict:
    """The truth scored like a model: the reference row of every table."""
    scores = score_log_probs(lang, lang.log_probs())
    tokens, lengths = lang.sample(n_samples, seed=seed)
    idx = lang.batch_index(tokens, lengths).numpy()
    scores["sample_validity"] = float(lang.valid[idx].mean())
    scores["distinct_samples"] = float(len(np.unique(idx)) / len(idx))
    return scores
