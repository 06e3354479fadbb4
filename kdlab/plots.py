"""Plots the lessons and the ``kdlab`` command share."""

from __future__ import annotations

import matplotlib

if not matplotlib.get_backend().lower().startswith(("module://", "nbagg", "widget", "ipympl")):
    # Outside a notebook there may be no display: draw to files.
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401

ROLE_LABELS = {"teacher": "teacher", "student_scratch": "student alone", "student_distilled": "student distilled"}


def training_curves(results: dict, title: str | None = None):
    """Test errors after each epoch, against epoch and against training seconds.

    ``results`` is the main job's result dict (``kdlab.jobs.run_distill``).
    """
    fig, (ax_epoch, ax_time) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for role, label in ROLE_LABELS.items():
        entry = results.get(role)
        if not entry or not entry.get("history"):
            continue
        h = entry["history"]
        pairs = [(e, s, err) for e, s, err in zip(h["epochs"], h["seconds"], h["test_errors"]) if err is not None]
        if not pairs:
            continue
        epochs, seconds, errors = zip(*pairs)
        name = f"{label} ({entry['arch']}): {entry['test_errors']} errors"
        ax_epoch.plot(epochs, errors, marker="o", label=name)
        ax_time.plot(seconds, errors, marker="o", label=name)
    for ax, xlabel in ((ax_epoch, "epoch"), (ax_time, "training seconds")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test errors")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(True, which="both", alpha=0.3)
    ax_epoch.legend(fontsize=8)
    fig.suptitle(title or (f"{results.get('dataset', '')}: preset {results.get('preset', '')}, "
                           f"T={results.get('temperature')}, alpha={results.get('alpha')}, "
                           f"seed {results.get('seed')}"))
    return fig
