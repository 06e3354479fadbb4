"""The course's networks: Hinton et al.'s MLPs and a small CNN, built by name.

Architecture names (used in tables, JSON and the CLI):
``mlp-1200x2-dropout`` (the paper's teacher), ``mlp-800x2`` (the paper's
student), ``mlp-30x2`` (a tiny student), and ``cnn-small`` / ``cnn-wide``.
"""

import re

import torch
from torch import nn


class MLP(nn.Sequential):
    """Flatten, then Linear-ReLU(-Dropout) per hidden layer, then a Linear to the classes."""

    def __init__(self, hidden=(800, 800), dropout: float = 0.0, input_dropout: float = 0.0,
                 in_features: int = 784, n_classes: int = 10):
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout:
            layers.append(nn.Dropout(input_dropout))
        prev = in_features
        for width in hidden:
            layers += [nn.Linear(prev, width), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            prev = width
        layers.append(nn.Linear(prev, n_classes))
        super().__init__(*layers)
        self.hidden = tuple(hidden)


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks with max-pooling, then a dropout MLP head (about 99.3% on MNIST)."""

    def __init__(self, channels=(32, 64), hidden: int = 128, dropout: float = 0.3, n_classes: int = 10):
        super().__init__()
        c1, c2 = channels
        # Pooling before the ReLU gives the same outputs and gradients (max commutes with ReLU)
        # while the ReLU and its backward touch a quarter of the elements: a teacher epoch runs 1.13x
        # faster (benchmarks/profile_hinton.py).
        # The conv layers keep their indices (features.0, features.3): saved weights still load.
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c2 * 49, hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        # channels_last convolutions: 2.15x faster inference passes on CPU (benchmarks/profile_hinton.py).
        self.features.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.view(-1, 1, 28, 28)
        return self.head(self.features(x.contiguous(memory_format=torch.channels_last)))


_MLP_NAME = re.compile(r"^mlp-(\d+)x(\d+)(-dropout)?$")


def build(arch: str) -> nn.Module:
    """A fresh model from its architecture name, e.g. ``build("mlp-800x2")``."""
    m = _MLP_NAME.match(arch)
    if m:
        width, depth, dropout = int(m.group(1)), int(m.group(2)), bool(m.group(3))
        if width < 1 or depth < 1:
            raise ValueError(f"bad architecture {arch!r}: width and depth must be >= 1")
        # Hinton et al.: dropout 0.5 on hidden units, 0.2 on inputs.
        model = MLP((width,) * depth, dropout=0.5 if dropout else 0.0, input_dropout=0.2 if dropout else 0.0)
    elif arch == "cnn-small":
        model = SmallCNN()
    elif arch == "cnn-wide":
        model = SmallCNN(channels=(64, 128), hidden=256)
    else:
        raise ValueError(f"unknown architecture {arch!r}: use mlp-<width>x<depth>[-dropout], cnn-small or cnn-wide")
    model.arch = arch
    return model


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those that require gradients)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
