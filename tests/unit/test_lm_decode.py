"""Lesson 9's decoding: greedy, sampling and beam search, checked against exhaustive search on tiny cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.lm import decode, models, seqkd
from kdlab.lm.language import EOS

L = 5
PROMPTS = [[], [0], [2], [0, 2], [1, 1], [0, 1, 2, 3, 0]]


def batch(prompts, max_len=L):
    tokens = torch.full((len(prompts), max_len), EOS, dtype=torch.long)
    for i, p in enumerate(prompts):
        tokens[i, :len(p)] = torch.tensor(p, dtype=torch.long)
    return tokens, torch.tensor([len(p) for p in prompts])


def model(seed: int):
    """A random GRU whose strings are long enough for greedy decoding to miss the most probable one."""
    torch.manual_seed(seed)
    m = models.GRULM(16, embed=8)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
        m.head.bias[EOS] -= 1.0
    return m


def rows(tokens, lengths):
    return [t[:n].tolist() for t, n in zip(tokens, lengths)]


@pytest.mark.parametrize("seed", range(4))
def test_a_beam_wide_enough_is_exhaustive_search(seed):
    m = model(seed)
    tokens, prompts = batch(PROMPTS)
    out, lengths, scores = decode.beam_search(m, tokens, prompts, L, width=4 ** L)
    best = [decode.exhaustive_best(m, p, L) for p in PROMPTS]
    assert rows(out, lengths) == [b for b, _ in best]
    assert scores.numpy() == pytest.approx([s for _, s in best], abs=1e-5)
    # the score is the log-probability of the continuation given the prompt
    assert scores.numpy() == pytest.approx(decode.continuation_log_probs(m, out, lengths, prompts).numpy(), abs=1e-5)


def test_greedy_misses_the_most_probable_string_and_a_narrow_beam_can_too():
    found_greedy_miss = found_narrow_miss = False
    tokens, prompts = batch(PROMPTS)
    for seed in range(10):
        m = model(seed)
        best = [b for b, _ in (decode.exhaustive_best(m, p, L) for p in PROMPTS)]
        greedy = rows(*decode.continue_prompts(m, tokens, prompts, L, how="greedy")[:2])
        narrow = rows(*decode.beam_search(m, tokens, prompts, L, width=1)[:2])
        wide = rows(*decode.beam_search(m, tokens, prompts, L, width=4 ** L)[:2])
        found_greedy_miss |= greedy != best
        found_narrow_miss |= narrow != best
        assert wide == best
    assert found_greedy_miss and found_narrow_miss


def test_greedy_takes_the_most_probable_token_every_time():
    m = model(1)
    tokens, prompts = batch(PROMPTS)
    out, lengths, scores = decode.continue_prompts(m, tokens, prompts, L, how="greedy")
    for p, row in zip(PROMPTS, rows(out, lengths)):
        text = list(p)
        while len(text) < L:
            logits, _ = m(torch.tensor([[5] + text]))
            nxt = int(logits[0, -1].argmax())
            if nxt == EOS:
                break
            text.append(nxt)
        assert row == text
    assert scores.numpy() == pytest.approx(decode.continuation_log_probs(m, out, lengths, prompts).numpy(), abs=1e-5)
    assert rows(out, lengths)[-1] == PROMPTS[-1]          # a prompt of max_len symbols is already finished


def test_sampled_continuations_follow_the_models_conditional_distribution():
    m, max_len, prompt = model(2), 3, [2]
    tokens, prompts = batch([prompt] * 20000, max_len)
    out, lengths, scores = decode.continue_prompts(m, tokens, prompts, max_len, how="sample",
                                                   generator=torch.Generator().manual_seed(0))
    texts = [tuple(r) for r in rows(out, lengths)]
    assert all(t[:1] == (2,) for t in texts)
    every, every_len = models.all_strings_batch(max_len)
    keep = (every_len >= 1) & (every[:, 0] == 2)
    probs = decode.continuation_log_probs(m, every[keep], every_len[keep], torch.ones(int(keep.sum()), dtype=torch.long)).exp()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    counts = {t: texts.count(t) / len(texts) for t in set(texts)}
    for row, p in zip(rows(every[keep], every_len[keep]), probs.tolist()):
        assert abs(counts.get(tuple(row), 0.0) - p) < 0.012


def test_bad_settings_are_refused_and_prompt_lengths_stay_inside_the_sentence():
    m = model(0)
    tokens, prompts = batch(PROMPTS)
    with pytest.raises(ValueError, match="width"):
        decode.beam_search(m, tokens, prompts, L, width=0)
    with pytest.raises(ValueError, match="how"):
        decode.continue_prompts(m, tokens, prompts, L, how="top-k")
    lengths = torch.tensor([0, 1, 2, 5, 10] * 200)
    k = seqkd.prompt_lengths(lengths, torch.Generator().manual_seed(0))
    assert (k[lengths == 0] == 0).all() and ((k >= 1) & (k <= lengths))[lengths > 0].all()
    assert set(np.unique(k[lengths == 5].numpy())) == {1, 2, 3, 4, 5}
