"""Lesson 9's language with known probabilities, the tiny GRU models and exact scoring."""

import math

import numpy as np
import pytest
import torch

from kdlab.lm import models, scoring
from kdlab.lm.language import EOS, BracketLanguage, decode, encode, is_grammatical, n_strings


@pytest.fixture(scope="module")
def small():
    return BracketLanguage(max_len=6, p_round=0.3, p_square=0.15, noise=1e-3)


def catalan(n):
    return math.comb(2 * n, n) // (n + 1)


def test_grammatical_strings_are_counted_and_checked(small):
    # Dyck-2 strings with k pairs: Catalan(k) shapes times 2^k bracket kinds
    assert len(small.sentences) == sum(catalan(k) * 2 ** k for k in range(1, 4))
    assert len(BracketLanguage(max_len=10).sentences) == sum(catalan(k) * 2 ** k for k in range(1, 6))
    assert all(is_grammatical(s) for s in small.sentences)
    for bad in ["", "(", ")(", "(]", "([)]", "(((", "()]"]:
        assert not is_grammatical(bad)
    for good in ["()", "[]", "([])", "()[]", "[()()]"]:
        assert is_grammatical(good)
    assert decode(encode("([])")) == "([])"


def test_grammar_probabilities_follow_the_derivation(small):
    # an unambiguous grammar: p_G(x) is proportional to p_round^r p_square^s p_stop^(r+s+1)
    pg = dict(zip(small.sentences, np.exp(small.grammar_log_probs)))
    assert math.isclose(sum(pg.values()), 1.0, rel_tol=1e-12)
    ratio = pg["()"] / pg["[]"]
    assert math.isclose(ratio, 0.3 / 0.15, rel_tol=1e-9)
    assert math.isclose(pg["(())"] / pg["()()"], 1.0, rel_tol=1e-9)
    assert math.isclose(pg["(())"] / pg["()"], 0.3 * small.p_stop, rel_tol=1e-9)
    assert small.sentences[0] == "()"


def test_truth_is_a_distribution_with_a_noise_floor(small):
    logp = small.log_probs()
    assert logp.shape == (n_strings(6),) == (small.size,)
    assert math.isclose(np.exp(logp).sum(), 1.0, rel_tol=1e-10)
    assert np.isfinite(logp).all()                       # every string has p > 0: reverse KL is finite
    valid = small.valid
    assert math.isclose(np.exp(logp[~valid]).sum(), small.noise * (1 - np.exp(small.noise_log_probs()[valid]).sum()),
                        rel_tol=1e-9)
    strings = small.all_strings()
    assert len(strings) == small.size and strings[small.index("([])")] == "([])"
    assert [strings[i] for i in small.sentence_index[:3]] == small.sentences[:3]


def test_sampling_matches_the_truth(small):
    tokens, lengths = small.sample(20000, seed=0)
    assert tokens.shape == (20000, 6) and (tokens[torch.arange(6) >= lengths[:, None]] == EOS).all()
    idx = small.batch_index(tokens, lengths).numpy()
    freq = np.bincount(idx, minlength=small.size) / len(idx)
    p = np.exp(small.log_probs())
    top = small.sentence_index[:5]
    assert np.abs(freq[top] - p[top]).max() < 0.015
    assert small.is_valid_batch(tokens, lengths).float().mean() > 0.99
    assert [small.index(decode(t, n)) for t, n in zip(tokens[:50], lengths[:50])] == list(idx[:50])


def test_exact_string_probabilities_of_a_model_agree_with_its_logits(small):
    torch.manual_seed(0)
    model = models.GRULM(hidden=12, embed=4)
    logq = models.string_log_probs(model, small.max_len)
    assert logq.shape == (small.size,) and math.isclose(np.exp(logq).sum(), 1.0, rel_tol=1e-9)
    tokens, lengths = small.sample(64, seed=1)
    tokens[:4] = torch.tensor([[1, 1, 1, 1, 1, 1]] * 4)          # ungrammatical strings, some of full length
    lengths[:4] = torch.tensor([0, 1, 5, 6])
    logits, targets, mask = models.sequence_logits(model, tokens, lengths)
    per_token = torch.log_softmax(logits.double(), -1).gather(-1, targets[..., None]).squeeze(-1)
    direct = (per_token * mask).sum(1).detach().numpy()
    assert np.allclose(direct, logq[small.batch_index(tokens, lengths).numpy()], atol=1e-6)


def test_sampling_from_a_model_follows_its_probabilities(small):
    torch.manual_seed(0)
    model = models.GRULM(hidden=8, embed=4)
    logq = models.string_log_probs(model, small.max_len)
    tokens, lengths = models.sample(model, 20000, small.max_len, generator=torch.Generator().manual_seed(0))
    assert (lengths <= small.max_len).all()
    idx = small.batch_index(tokens, lengths).numpy()
    freq = np.bincount(idx, minlength=small.size) / len(idx)
    top = np.argsort(-logq)[:5]
    assert np.abs(freq[top] - np.exp(logq[top])).max() < 0.01


def test_scores_of_the_truth_and_of_a_random_model(small):
    truth = scoring.score_truth(small, n_samples=500)
    assert truth["kl_truth_to_student"] == 0 and truth["kl_student_to_truth"] == 0
    assert truth["valid_mass"] > 0.99 and truth["sample_validity"] > 0.97
    assert truth["valid_diversity"] == pytest.approx(
        math.exp(-(np.exp(small.grammar_log_probs) * small.grammar_log_probs).sum()), rel=1e-3)  # noise: ~nothing
    assert truth["diversity"] == pytest.approx(math.exp(small.entropy()))
    # the chain rule of entropy ties diversity, valid diversity and the valid mass together
    logp, m = small.log_probs(), truth["valid_mass"]
    p_inv = np.exp(logp[~small.valid]) / (1 - m)
    h_inv = -(p_inv * np.log(p_inv)).sum()
    h_bin = -(m * math.log(m) + (1 - m) * math.log(1 - m))
    assert small.entropy() == pytest.approx(h_bin + m * math.log(truth["valid_diversity"]) + (1 - m) * h_inv)
    torch.manual_seed(0)
    model = models.GRULM(hidden=8, embed=4)
    s = scoring.score_model(model, small, n_samples=500)
    assert s["kl_truth_to_student"] > 1 and s["kl_student_to_truth"] > 1 and s["valid_mass"] < 0.2
    assert 0 <= s["sample_validity"] <= 1 and 0 < s["distinct_samples"] <= 1
    # KL(p||q) = cross-entropy - entropy: check against a direct sum
    logp, logq = small.log_probs(), models.string_log_probs(model, small.max_len)
    assert s["kl_truth_to_student"] == pytest.approx(-(np.exp(logp) * logq).sum() - small.entropy(), rel=1e-9)


def test_language_rejects_bad_settings():
    with pytest.raises(ValueError):
        BracketLanguage(noise=0)
    with pytest.raises(ValueError):
        BracketLanguage(max_len=20)
    with pytest.raises(ValueError):
        BracketLanguage(p_round=0.6, p_square=0.5)
    with pytest.raises(ValueError):
        encode("(x)")
