"""Tiny GRU language models over the bracket language, and their exact sequence probabilities.

A model reads ``BOS x_1 ... x_{t}`` and gives logits for the next token among
the four symbols and EOS. Strings stop at EOS or at ``max_len`` symbols: at
``max_len`` the end is forced, so a model's probability of a string is

    q(x) = prod_{t < |x|} q(x_{t+1} | x_{<=t}) * (q(EOS | x) if |x| < max_len else 1),

a proper distribution over the strings of length 0..max_len. Because that set
is small, :func:`string_log_probs` computes ``log q(x)`` of *every* string
exactly, by walking the tree of prefixes one level at a time (one GRU step per
prefix, all prefixes of a level in one batch).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from .language import BOS, EOS, N_INPUTS, N_OUTPUTS


@contextlib.contextmanager
def one_thread():
    """Run the block on one torch thread: these GRUs are so small that a second thread only waits for the first,
    and on a busy machine the two spin against other jobs, many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class GRULM(nn.Module):
    """Embedding -> GRU -> linear head over the next token (four symbols and EOS)."""

    def __init__(self, hidden: int = 64, embed: int = 16, layers: int = 1):
        super().__init__()
        self.hidden, self.embed_dim, self.layers = hidden, embed, layers
        self.embed = nn.Embedding(N_INPUTS, embed)
        self.rnn = nn.GRU(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, N_OUTPUTS)

    def forward(self, inputs: torch.Tensor, state: torch.Tensor | None = None):
        """``inputs`` (B, T) token ids -> (logits (B, T, 5), final state)."""
        out, state = self.rnn(self.embed(inputs), state)
        return self.head(out), state

    @property
    def name(self) -> str:
        return f"gru-{self.hidden}" + (f"x{self.layers}" if self.layers > 1 else "")


def inputs_and_targets(tokens: torch.Tensor, lengths: torch.Tensor):
    """A padded batch -> (inputs, targets, mask), each (B, max_len).

    ``inputs`` is BOS followed by the first max_len - 1 tokens; ``targets`` the
    tokens followed by EOS; ``mask`` marks the positions that are predicted:
    ``t <= length`` (the EOS after a string of max_len symbols is forced, not predicted).
    """
    tokens = tokens.long()
    B, L = tokens.shape
    positions = torch.arange(L)
    targets = torch.where(positions < lengths[:, None], tokens, torch.full_like(tokens, EOS))
    inputs = torch.cat([torch.full((B, 1), BOS, dtype=torch.long), targets[:, :-1]], dim=1)
    mask = positions <= lengths[:, None]
    return inputs, targets, mask


def sequence_logits(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor):
    """The model's logits at every position of a batch: (logits (B, L, 5), targets, mask)."""
    inputs, targets, mask = inputs_and_targets(tokens, lengths)
    logits, _ = model(inputs)
    return logits, targets, mask


@torch.no_grad()
def sample(model: nn.Module, n: int, max_len: int, generator: torch.Generator | None = None,
           temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` strings from the model (ancestral sampling): ``(tokens (n, max_len) padded with EOS, lengths)``."""
    return ancestral((model,), lambda logits: torch.softmax(logits[0] / temperature, dim=-1), n, max_len, generator)


@torch.no_grad()
def ancestral(models, next_probs, n: int, max_len: int, generator: torch.Generator | None = None):
    """``n`` strings, each token drawn from ``next_probs([each model's last logits])`` given the string so far.

    The models run in eval mode, each with its own recurrent state, and are put back in their modes after.
    """
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    tokens = torch.full((n, max_len), EOS, dtype=torch.long)
    lengths = torch.full((n,), max_len, dtype=torch.long)
    alive = torch.ones(n, dtype=torch.bool)
    current = torch.full((n, 1), BOS, dtype=torch.long)
    states = [None] * len(models)
    for t in range(max_len):
        last = []
        for i, m in enumerate(models):
            logits, states[i] = m(current, states[i])
            last.append(logits[:, -1])
        nxt = torch.multinomial(next_probs(last), 1, generator=generator).squeeze(1)
        ended = alive & (nxt == EOS)
        lengths[ended] = t
        alive &= ~ended
        tokens[:, t] = torch.where(alive, nxt, torch.full_like(nxt, EOS))
        current = tokens[:, t:t + 1].clone()
        if not alive.any():
            break
    for m, mode in zip(models, modes):
        m.train(mode)
    return tokens, lengths


@torch.no_grad()
def string_log_probs(model: nn.Module, max_len: int, chunk: int = 65536) -> np.ndarray:
    """log q(x) of every string of length 0..max_len, in the language's index order (float64).

    Level by level: the states of all 4^l prefixes of length l, one GRU step
    each, give their next-token log-probabilities; a string of length l < max_len
    ends with EOS, one of max_len ends there. The result sums to 1 in probability.
    """
    return string_log_probs_tensor(model, max_len, chunk).numpy()


def string_log_probs_tensor(model: nn.Module, max_len: int, chunk: int = 65536) -> torch.Tensor:
    """:func:`string_log_probs` as a float64 tensor that autograd can differentiate (outside ``no_grad``).

    The exact gradient of any sum over all strings (a sequence-level KL, say) is then one ``backward``.
    """
    was_training = model.training
    model.eval()
    out = []
    prefix_lp = torch.zeros(1, dtype=torch.float64)
    last = torch.full((1, 1), BOS, dtype=torch.long)
    state = None
    for level in range(max_len + 1):
        if level == max_len:
            out.append(prefix_lp)
            break
        logps, states = [], []
        for start in range(0, len(last), chunk):
            s = None if state is None else state[:, start:start + chunk].contiguous()
            logits, s_new = model(last[start:start + chunk], s)
            logps.append(torch.log_softmax(logits[:, -1].double(), dim=-1))
            states.append(s_new)
        logp = torch.cat(logps)
        state = torch.cat(states, dim=1)
        out.append(prefix_lp + logp[:, EOS])
        prefix_lp = (prefix_lp[:, None] + logp[:, :EOS]).reshape(-1)       # child = prefix * 4 + symbol
        if level + 1 < max_len:                                              # the last level needs no states
            state = state.repeat_interleave(4, dim=1)
            last = torch.arange(4).repeat(len(logp))[:, None]
    model.train(was_training)
    return torch.cat(out)


def all_strings_batch(max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every string of length 0..max_len as one padded batch ``(tokens, lengths)``, in the language's index order.

    For enumerating small cases (4^max_len rows at the last level): exact expectations over all strings.
    """
    rows, lengths = [], []
    for n in range(max_len + 1):
        digits = torch.arange(4 ** n)
        level = torch.stack([(digits // 4 ** (n - 1 - j)) % 4 for j in range(n)], dim=1) if n else \
            torch.zeros(1, 0, dtype=torch.long)
        rows.append(torch.cat([level, torch.full((len(level), max_len - n), EOS, dtype=torch.long)], dim=1))
        lengths.append(torch.full((len(level),), n, dtype=torch.long))
    return torch.cat(rows), torch.cat(lengths)
