r"""Continuing prompts: sampling, greedy decoding and beam search, for the tiny GRU language models.

A *prompt* is the beginning of a string (``(tokens, lengths)`` as everywhere in :mod:`kdlab.lm`, the tokens
after ``lengths`` being padding); a *continuation* writes the rest, up to ``max_len`` symbols in all, where the
end is forced (as in :func:`kdlab.lm.models.string_log_probs`). Every function returns whole strings
``(tokens, lengths)``, prompt included, and the model's log-probability of the continuation given the prompt.

* :func:`continue_prompts` with ``how="sample"``: each token drawn from the model (temperature 1);
* ``how="greedy"``: each token the most probable one (EOS included), one string per prompt;
* :func:`beam_search`: the ``width`` most probable unfinished continuations are kept at every length, every
  finished one (EOS, or ``max_len`` reached) is a candidate, and the most probable candidate is returned. With a
  width of at least :math:`4^{\text{max\_len}}` nothing is pruned and it is the exact most probable continuation
  (:func:`exhaustive_best`, the test). Kim and Rush (2016) train the student on the teacher's beam output.

Prompts of different lengths are decoded in groups of equal length (one batch per group).
"""

from __future__ import annotations

import torch
from torch import nn

from .language import BOS, EOS


def _prompt_states(model: nn.Module, prompts: torch.Tensor):
    """The model's next-token log-probabilities after ``BOS + prompt`` and its state there, for equal-length prompts."""
    inputs = torch.cat([torch.full((len(prompts), 1), BOS, dtype=torch.long), prompts.long()], dim=1)
    logits, state = model(inputs)
    return torch.log_softmax(logits[:, -1].double(), -1), state


def _groups(lengths: torch.Tensor):
    for k in torch.unique(lengths).tolist():
        yield k, (lengths == k).nonzero().squeeze(1)


@torch.no_grad()
def continue_prompts(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, max_len: int, how: str = "greedy",
                     generator: torch.Generator | None = None):
    """Each prompt continued by ``how`` (``"greedy"`` or ``"sample"``): ``(tokens, lengths, log q(continuation))``."""
    if how not in ("greedy", "sample"):
        raise ValueError(f"how must be 'greedy' or 'sample', got {how!r}")
    was_training = model.training
    model.eval()
    n = len(tokens)
    out = torch.full((n, max_len), EOS, dtype=torch.long)
    out_len = lengths.clone().long()
    score = torch.zeros(n, dtype=torch.float64)
    for k, rows in _groups(lengths):
        text = tokens[rows, :k].long()
        out[rows, :k] = text
        if k == max_len:
            continue
        logp, state = _prompt_states(model, text)
        alive = torch.ones(len(rows), dtype=torch.bool)
        for t in range(k, max_len):
            nxt = logp.argmax(-1) if how == "greedy" else \
                torch.multinomial(logp.exp().float(), 1, generator=generator).squeeze(1)
            score[rows] += torch.where(alive, logp.gather(1, nxt[:, None]).squeeze(1), torch.zeros_like(score[rows]))
            ended = alive & (nxt == EOS)
            out_len[rows[ended]] = t
            alive &= ~ended
            out[rows, t] = torch.where(alive, nxt, torch.full_like(nxt, EOS))
            if not alive.any():
                break
            out_len[rows[alive]] = t + 1
            if t + 1 < max_len:
                logits, state = model(out[rows, t:t + 1], state)
                logp = torch.log_softmax(logits[:, -1].double(), -1)
    model.train(was_training)
    return out, out_len, score


@torch.no_grad()
def beam_search(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, max_len: int, width: int = 5):
    """Each prompt's most probable continuation found by a beam of ``width``: ``(tokens, lengths, log q(continuation))``.

    No length normalization: the score is the continuation's log-probability, EOS included (the end at
    ``max_len`` is forced and costs nothing), as in the sequence-level KD of Kim and Rush (2016).
    """
    if not (isinstance(width, int) and width >= 1):
        raise ValueError(f"width must be a positive integer, got {width!r}")
    was_training = model.training
    model.eval()
    n = len(tokens)
    out = torch.full((n, max_len), EOS, dtype=torch.long)
    out_len = lengths.clone().long()
    best = torch.zeros(n, dtype=torch.float64)
    for k, rows in _groups(lengths):
        B = len(rows)
        prompt = tokens[rows, :k].long()
        out[rows, :k] = prompt
        if k == max_len:
            continue
        logp, state = _prompt_states(model, prompt)                    # (B, 5), state (layers, B, H)
        beams = prompt[:, None, :].expand(B, 1, k)                     # (B, beams, length so far)
        scores = torch.zeros(B, 1, dtype=torch.float64)
        logp = logp[:, None, :]                                          # (B, beams, 5)
        best_score = torch.full((B,), float("-inf"), dtype=torch.float64)
        best_text = torch.full((B, max_len), EOS, dtype=torch.long)
        best_len = torch.full((B,), k, dtype=torch.long)
        for t in range(k, max_len):
            ended = scores + logp[..., EOS]                              # finishing every beam here, with EOS
            top, which = ended.max(1)
            better = top > best_score
            if better.any():
                rows_b = better.nonzero().squeeze(1)
                best_score[rows_b] = top[rows_b]
                best_text[rows_b, :t] = beams[rows_b, which[rows_b]]
                best_text[rows_b, t:] = EOS
                best_len[rows_b] = t
            grown = (scores[..., None] + logp[..., :EOS]).reshape(B, -1)  # (B, beams * 4): every beam, every symbol
            keep = min(width, grown.shape[1])
            scores, flat = grown.topk(keep, dim=1)
            parent, symbol = flat // EOS, flat % EOS
            beams = torch.cat([beams.gather(1, parent[..., None].expand(B, keep, beams.shape[2])),
                               symbol[..., None]], dim=2)
            if t + 1 == max_len:                                         # the end is forced: finished as they are
                top, which = scores.max(1)
                better = top > best_score
                rows_b = better.nonzero().squeeze(1)
                best_score[rows_b] = top[rows_b]
                best_text[rows_b] = beams[rows_b, which[rows_b]]
                best_len[rows_b] = max_len
                break
            if bool((best_score >= scores.max(1).values).all()):        # nothing left can beat what is finished
                break
            layers = state.shape[0]
            h = state.reshape(layers, B, -1, state.shape[-1])
            h = h.gather(2, parent[None, :, :, None].expand(layers, B, keep, state.shape[-1]))
            state = h.reshape(layers, B * keep, -1).contiguous()
            logits, state = model(symbol.reshape(B * keep, 1), state)
            logp = torch.log_softmax(logits[:, -1].double(), -1).reshape(B, keep, -1)
        out[rows] = best_text
        out_len[rows] = best_len
        best[rows] = best_score
    model.train(was_training)
    return out, out_len, best


@torch.no_grad()
def continuation_log_probs(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, prompt_lengths: torch.Tensor):
    """log q(continuation | prompt) of whole strings whose first ``prompt_lengths`` tokens are the prompt."""
    from .models import sequence_logits

    was_training = model.training
    model.eval()
    logits, targets, mask = sequence_logits(model, tokens, lengths)
    model.train(was_training)
    per_token = torch.log_softmax(logits.double(), -1).gather(-1, targets[..., None]).squeeze(-1)
    positions = torch.arange(tokens.shape[1])
    return (per_token * (mask & (positions >= prompt_lengths[:, None]))).sum(1)


def exhaustive_best(model: nn.Module, prompt: list[int], max_len: int) -> tuple[list[int], float]:
    """The most probable continuation of one prompt, by scoring every string that starts with it (small cases)."""
    from .models import all_strings_batch

    tokens, lengths = all_strings_batch(max_len)
    k = len(prompt)
    rows = (lengths >= k) & (tokens[:, :k] == torch.tensor(prompt, dtype=torch.long)).all(1) if k else \
        torch.ones(len(tokens), dtype=torch.bool)
    tokens, lengths = tokens[rows], lengths[rows]
    scores = continuation_log_probs(model, tokens, lengths, torch.full((len(tokens),), k))
    i = int(scores.argmax())
    return tokens[i, :lengths[i]].tolist(), float(scores[i])
