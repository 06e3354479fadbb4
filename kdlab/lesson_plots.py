"""Plotting helpers for the lessons (matplotlib; each returns its figure)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .losses import softmax_t


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


def mistakes_gallery(images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
                     temperatures=(1.0, 4.0), columns: int = 6):
    """Cards of misclassified images: the image (true digit, prediction) above its soft labels.

    Bars: the soft label at the first temperature (filled, the prediction in red, the true digit
    in green) and at the others (outlined steps).
    """
    n = len(images)
    cols = min(columns, max(1, n))
    rows = max(1, -(-n // cols))
    fig = plt.figure(figsize=(2.1 * cols, 3.3 * rows))
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[1.15, 1] * rows, hspace=0.45, wspace=0.3)
    classes = list(range(logits.shape[-1]))
    for k in range(n):
        r, c = divmod(k, cols)
        truth, guess = int(labels[k]), int(logits[k].argmax())
        ax = fig.add_subplot(grid[2 * r, c])
        ax.imshow(images[k].reshape(28, 28).cpu(), cmap="gray_r")
        ax.set_title(f"true {truth}, said {guess}", fontsize=9)
        ax.axis("off")
        ax = fig.add_subplot(grid[2 * r + 1, c])
        first = softmax_t(logits[k].float(), temperatures[0])
        colors = ["tab:red" if i == guess else "tab:green" if i == truth else "tab:gray" for i in classes]
        ax.bar(classes, first.tolist(), color=colors, label=f"T={temperatures[0]:g}")
        for j, T in enumerate(temperatures[1:]):
            ax.step(classes, softmax_t(logits[k].float(), T).tolist(), where="mid", color=f"C{j}",
                    linewidth=1.2, label=f"T={T:g}")
        ax.set_xticks(classes)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 1)
        ax.grid(False)
        if k == 0:
            ax.legend(fontsize=6, loc="upper right")
    fig.suptitle("The teacher's mistakes and its soft labels (red: its answer, green: the truth)", fontsize=10)
    return fig
