"""Reference tools for reading soft labels: entropy and the class-similarity matrix.

The one implementation of each in kdlab (lessons 1 and 2 use them for their
demos and the widget; the exercises are the learner's own versions):

* ``entropy(p)``: ``-sum_i p_i log p_i`` over the last dimension, in nats,
  with ``0 log 0 = 0``;
* ``class_similarity(probs, labels)``: row ``k`` is the mean soft label of the
  examples whose true class is ``k`` (a row of zeros for a class with none);
* ``most_similar_pairs(similarity, k)``: the ``k`` pairs of distinct classes
  ``(i, j)``, ``i < j``, with the largest ``(S[i, j] + S[j, i]) / 2``.
"""

from __future__ import annotations

import torch


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of the distributions along the last dimension of ``p``."""
    if not isinstance(p, torch.Tensor) or p.dim() == 0:
        raise ValueError("p must be a tensor with a class dimension")
    return torch.special.entr(p).sum(dim=-1)


def class_similarity(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(C, C) matrix: row k is the mean of ``probs`` over the examples labelled k.

    ``probs`` is (N, C), ``labels`` is (N,) integer classes in [0, C). A class
    without examples gets a row of zeros.
    """
    if not isinstance(probs, torch.Tensor) or probs.dim() != 2:
        raise ValueError("probs must be an (N, C) tensor")
    if not isinstance(labels, torch.Tensor) or labels.shape != probs.shape[:1] or labels.is_floating_point():
        raise ValueError(f"labels must be {probs.shape[0]} integer classes")
    n_classes = probs.shape[1]
    labels = labels.long()
    sums = torch.zeros(n_classes, n_classes, dtype=probs.dtype, device=probs.device)
    sums.index_add_(0, labels, probs)
    counts = torch.bincount(labels, minlength=n_classes).to(probs.dtype).clamp_min(1)
    return sums / counts[:, None]


def most_similar_pairs(similarity: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """The ``k`` most similar pairs of distinct classes, most similar first.

    The similarity of a pair is ``(S[i, j] + S[j, i]) / 2``; each pair comes
    once, as ``(i, j)`` with ``i < j``; ties keep (i, j) order. Fewer than
    ``k`` pairs come back when the matrix has fewer.
    """
    if not isinstance(similarity, torch.Tensor) or similarity.dim() != 2 \
            or similarity.shape[0] != similarity.shape[1]:
        raise ValueError("similarity must be a square (C, C) tensor")
    sym = (similarity + similarity.T) / 2
    i, j = torch.triu_indices(*sym.shape, offset=1)
    scores = sym[i, j]
    order = sorted(range(len(scores)), key=lambda n: -float(scores[n]))  # stable: ties keep (i, j) order
    return [(int(i[n]), int(j[n])) for n in order[:max(0, int(k))]]
