"""Lesson 9's gradient estimators of the sequence-level reverse KL, checked against its exact gradient.

On a tiny case (strings of at most 3 symbols: 85 of them) every expectation over strings is a finite sum, so an
estimator's *expected* gradient is computed exactly, by weighting its value on every string by that string's
probability under its sampler; the sampled estimates are then checked against it too.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from kdlab.lm import models, policy
from kdlab.lm.models import sequence_logits

L = 3


@pytest.fixture(scope="module")
def pair():
    """A small student and a sharper teacher (random GRUs, the teacher's weights scaled up)."""
    torch.manual_seed(0)
    student, teacher = models.GRULM(6, embed=4), models.GRULM(8, embed=4)
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(3.0)
    return student, teacher


def flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1).double() for g in grads])


def sampler_log_probs(student, teacher, tokens, lengths, mix: float) -> torch.Tensor:
    """log of the sampler's probability of each string: q, or the per-token mixture mix p + (1 - mix) q."""
    with torch.no_grad():
        s_logits, targets, mask = sequence_logits(student, tokens, lengths)
        t_logits, _, _ = sequence_logits(teacher, tokens, lengths)
        log_q, log_p = torch.log_softmax(s_logits.double(), -1), torch.log_softmax(t_logits.double(), -1)
        log_s = torch.logaddexp(math.log(mix) + log_p, math.log1p(-mix) + log_q) if mix else log_q
        return (log_s.gather(-1, targets[..., None]).squeeze(-1) * mask).sum(1)


def expected(student, teacher, how) -> torch.Tensor:
    """The estimator's expectation over its sampler, exactly: every string weighted by its probability."""
    est = policy.estimator(how)
    tokens, lengths = models.all_strings_batch(L)
    weights = sampler_log_probs(student, teacher, tokens, lengths, est.mix).exp()
    assert math.isclose(float(weights.sum()), 1.0, rel_tol=1e-9)
    value = (policy.surrogate(student, teacher, tokens, lengths, est) * weights).sum()
    return flat(torch.autograd.grad(value, list(student.parameters())))


@pytest.fixture(scope="module")
def exact(pair):
    student, teacher = pair
    kl, grads = policy.exact_gradient(student, models.string_log_probs(teacher, L), L)
    return kl, flat(grads)


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


def test_the_exact_gradient_is_the_gradient_of_the_enumerated_kl(pair, exact):
    student, teacher = pair
    kl, g = exact
    log_q, log_p = models.string_log_probs(student, L), models.string_log_probs(teacher, L)
    assert math.isclose(kl, float(np.sum(np.exp(log_q) * (log_q - log_p))), rel_tol=1e-9)
    # finite differences along a random direction agree with it
    direction = [torch.randn_like(p) for p in student.parameters()]
    eps = 1e-3
    values = []
    for sign in (1, -1):
        moved = models.GRULM(6, embed=4)
        moved.load_state_dict(student.state_dict())
        with torch.no_grad():
            for p, d in zip(moved.parameters(), direction):
                p.add_(sign * eps * d)
        values.append(policy.exact_gradient(moved, log_p, L)[0])
    numeric = (values[0] - values[1]) / (2 * eps)
    assert numeric == pytest.approx(float(g @ flat(direction)), rel=2e-2)
    assert g.norm() > 0


@pytest.mark.parametrize("how", ["score-function", "decomposed"])
def test_the_policy_gradient_estimators_are_unbiased(pair, exact, how):
    """E_q[(log q - log p) grad log q] is the gradient: the estimator's expectation, summed exactly, is it."""
    student, teacher = pair
    assert rel(expected(student, teacher, how), exact[1]) < 1e-5


def test_gkd_drops_the_long_term_term_and_is_biased(pair, exact):
    """The single-step part alone (GKD's gradient) is not the gradient; adding the long-term part makes it so."""
    student, teacher = pair
    single = expected(student, teacher, "single-step")
    assert rel(single, exact[1]) > 0.05
    long_term = expected(student, teacher, "decomposed") - single
    assert rel(single + long_term, exact[1]) < 1e-5 and long_term.norm() > 0.05 * exact[1].norm()


def test_teacher_mixed_sampling_is_unbiased_with_whole_string_weights_and_not_with_minillms_per_token_ones(pair, exact):
    student, teacher = pair
    token = policy.Estimator(mix=0.2)
    assert rel(expected(student, teacher, dataclasses.replace(token, weights="sequence")), exact[1]) < 1e-5
    assert rel(expected(student, teacher, token), exact[1]) > 1e-3
    assert rel(expected(student, teacher, "length-norm"), exact[1]) > 1e-3     # averaged, not summed: biased too


def test_sampled_batches_average_to_the_expectation(pair, exact):
    """Real samples: the mean of many batch estimates lands within its sampling noise of the exact gradient."""
    student, teacher = pair
    gen = torch.Generator().manual_seed(1)
    batches = torch.stack([flat(policy.batch_gradient(student, teacher, "decomposed", 256, L, gen))
                           for _ in range(30)])
    noise = float(((batches - batches.mean(0)).norm(dim=1) ** 2).mean().sqrt()) / math.sqrt(len(batches))
    assert float((batches.mean(0) - exact[1]).norm()) < 4 * noise
    quality = policy.gradient_quality(student, teacher, models.string_log_probs(teacher, L), L,
                                      ["decomposed", "single-step"], batch_size=256, n_batches=12, seed=2)
    d, s = quality["estimators"]["decomposed"], quality["estimators"]["single-step"]
    assert d["cosine_of_mean"] > 0.95 and s["bias"] > d["bias"]
    assert math.isclose(quality["kl"], exact[0], rel_tol=1e-9)


def test_mixed_sampling_draws_from_the_mixture(pair):
    student, teacher = pair
    tokens, lengths = policy.sample_mixed(student, teacher, 20000, L, 0.3, generator=torch.Generator().manual_seed(0))
    from kdlab.lm.language import BracketLanguage

    idx = BracketLanguage(max_len=L).batch_index(tokens, lengths).numpy()
    freq = np.bincount(idx, minlength=models.all_strings_batch(L)[0].shape[0]) / len(idx)
    want = sampler_log_probs(student, teacher, *models.all_strings_batch(L), 0.3).exp().numpy()
    assert np.abs(freq - want).max() < 0.012


def test_the_surrogate_leaves_the_teacher_alone_and_the_settings_are_checked(pair):
    student, teacher = pair
    tokens, lengths = models.sample(student, 16, L, generator=torch.Generator().manual_seed(0))
    policy.surrogate(student, teacher, tokens, lengths, "minillm").sum().backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    student.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="unknown estimator"):
        policy.estimator("reinforce")
    with pytest.raises(ValueError, match="mix"):
        policy.Estimator(mix=1.0)
    with pytest.raises(ValueError, match="score-function"):
        policy.Estimator(kind="score-function", length_norm=True)


def test_every_string_in_index_order_and_differentiable_probabilities(pair):
    student, _ = pair
    from kdlab.lm.language import BracketLanguage

    tokens, lengths = models.all_strings_batch(4)
    assert (BracketLanguage(max_len=4).batch_index(tokens, lengths).numpy() == np.arange(len(tokens))).all()
    log_q = models.string_log_probs_tensor(student, L)
    assert log_q.requires_grad and np.array_equal(log_q.detach().numpy(), models.string_log_probs(student, L))
    grads = torch.autograd.grad(log_q.exp().sum(), list(student.parameters()))   # the probabilities sum to 1
    assert max(float(g.abs().max()) for g in grads) < 1e-6
