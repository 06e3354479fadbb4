"""kdlab: the helper package of the knowledge-distillation course.

Modules: ``data`` (MNIST / Fashion-MNIST tensors), ``losses`` (reference KD
losses), ``models`` (Hinton's MLPs, a small CNN), ``train`` (the engine),
``plots``, ``widgets``, ``jobs`` (the ``kdlab distill`` main job), ``cli``.
"""

__version__ = "0.1.0"

from .errors import DataError, KdlabError  # noqa: F401
