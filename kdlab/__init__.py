"""kdlab: the helper package of the knowledge-distillation course.

Modules: ``data`` (MNIST / Fashion-MNIST tensors, downloads with checksums),
``losses`` (reference KD losses), ``models`` (Hinton's MLPs, a small CNN),
``zoo`` (cached teachers), ``train`` (the engine), ``features`` (hint and
attention transfer), ``compress`` (int8, pruning, size and latency), ``lm``
(language-model distillation on a synthetic language), ``pitfalls`` (the ten
KD bugs, runnable), ``experiments`` (the lessons' experiments), ``checks`` and
``quiz`` (exercise checks and quizzes), ``grading`` (``kdlab grade``),
``plots``, ``lesson_plots``, ``widgets``, ``jobs`` (``kdlab distill``),
``paths`` and ``settings``, ``cli``.
"""

__version__ = "0.1.0"

from .errors import DataError, KdlabError  # noqa: F401
