"""Notebook plumbing shared by the lessons: the setup cell and ``#| experiment`` cells.

Every lesson starts with::

    from kdlab.lessons import setup
    setup()

A code cell whose first line is ``#| experiment`` runs a demo or an experiment:
it runs as ordinary Python when you work through the lesson, and is skipped
(replaced by ``pass``) while nbgrader executes the notebook to grade or
validate it. Grading then runs only the setup, your answers and their tests,
which keeps it to seconds and never depends on data or training.
"""

from __future__ import annotations

import os
import time

import torch

from . import settings

EXPERIMENT_MARKER = "#| experiment"


def grading() -> bool:
    """True while nbgrader executes the notebook (``nbgrader autograde`` or ``validate``)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def skip_experiments(lines: list[str]) -> list[str]:
    """IPython input transformer: an ``#| experiment`` cell becomes ``pass``."""
    for line in lines:
        if line.strip():
            if line.strip().startswith(EXPERIMENT_MARKER):
                return ["pass  # experiment cell: skipped while grading\n"]
            break
    return lines


def is_experiment(source: str) -> bool:
    """Whether a cell's source is an ``#| experiment`` cell."""
    return skip_experiments(source.splitlines(keepends=True)) != source.splitlines(keepends=True)


def setup(seed: int = 0) -> None:
    """Seed torch, set plot defaults, say which mode runs; under nbgrader, skip experiment cells."""
    torch.manual_seed(seed)
    settings.freeze_heap_at_exit()
    if grading():
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - lessons always run in IPython
            get_ipython = lambda: None  # noqa: E731
        shell = get_ipython()
        if shell is not None and skip_experiments not in shell.input_transformers_cleanup:
            shell.input_transformers_cleanup.append(skip_experiments)
        print("nbgrader is executing this notebook: experiment cells are skipped")
        return
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.figsize": (7.5, 3.6), "figure.dpi": 100, "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})
    mode = "KDLAB_FAST=1: small data, few epochs" if settings.fast_mode() else "full data"
    print(f"kdlab lesson setup: {mode}; torch {torch.__version__} on {settings.default_device()}")


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``: wall-clock time of a block."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False
