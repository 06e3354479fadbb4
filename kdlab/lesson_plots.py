"""Plotting helpers for the lessons (matplotlib; each returns its figure)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


def softmax_bars(probs_by_T: dict, labels=None, title: str = ""):
    """One bar chart per temperature, side by side: ``probs_by_T`` maps T to a 1-D tensor."""
    temps = list(probs_by_T)
    fig, axes = plt.subplots(1, len(temps), figsize=(2.6 * len(temps), 2.6), sharey=True)
    axes = [axes] if len(temps) == 1 else list(axes)
    for ax, T in zip(axes, temps):
        p = torch.as_tensor(probs_by_T[T]).detach().float()
        names = labels or [str(i) for i in range(len(p))]
        colors = ["#d62728" if i == int(p.argmax()) else "#1f77b4" for i in range(len(p))]
        ax.bar(range(len(p)), p.tolist(), color=colors)
        ax.set_xticks(range(len(p)), names)
        ax.set_ylim(0, 1)
        ax.set_title(f"T = {T:g}")
    axes[0].set_ylabel("probability")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def digits_with_soft_labels(images, probs_by_T: dict, titles=None, classes=None, log_scale: bool = True):
    """Rows of examples: the image, then its soft label at each temperature.

    ``images`` is (n, 1, 28, 28); ``probs_by_T`` maps T to an (n, C) tensor.
    A log-scale y axis shows the small probabilities that carry dark knowledge.
    """
    temps = list(probs_by_T)
    n = len(images)
    fig, axes = plt.subplots(n, 1 + len(temps), figsize=(2.4 * (1 + len(temps)), 1.9 * n), squeeze=False)
    n_classes = probs_by_T[temps[0]].shape[1]
    classes = classes or [str(c) for c in range(n_classes)]
    for r in range(n):
        axes[r][0].imshow(images[r].reshape(28, 28), cmap="gray_r")
        axes[r][0].set_xticks([])
        axes[r][0].set_yticks([])
        axes[r][0].grid(False)
        if titles:
            axes[r][0].set_title(titles[r], fontsize=9)
        for c, T in enumerate(temps, start=1):
            p = probs_by_T[T][r].detach().float()
            ax = axes[r][c]
            ax.bar(range(n_classes), p.tolist(),
                   color=["#d62728" if i == int(p.argmax()) else "#1f77b4" for i in range(n_classes)])
            ax.set_xticks(range(n_classes), classes, fontsize=7)
            if log_scale:
                ax.set_yscale("log")
                ax.set_ylim(1e-8, 1.5)
            else:
                ax.set_ylim(0, 1)
            if r == 0:
                ax.set_title(f"T = {T:g}")
    fig.tight_layout()
    return fig


def similarity_heatmap(similarity, classes=None, title: str = "", mask_diagonal: bool = True):
    """Heatmap of a (C, C) class-similarity matrix; the diagonal is masked so the rest is visible."""
    S = torch.as_tensor(similarity).detach().float().clone()
    if mask_diagonal:
        S.fill_diagonal_(float("nan"))
    classes = classes or [str(c) for c in range(S.shape[0])]
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(S.numpy(), cmap="viridis")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("soft-label class j")
    ax.set_ylabel("true class k")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="mean probability" + (" (diagonal masked)" if mask_diagonal else ""))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
