"""What a model costs to run: parameters, multiply-accumulates per image, batch-1 CPU latency.

Parameters measure what a model weighs; multiply-accumulates (MACs) and
latency measure what it costs to *run*, and the two need not agree: the
course's CNN teacher has a third of the 800-800 MLP student's parameters but
does three times its MACs, because each convolution weight is reused at every
position of the image.

* :func:`macs` counts the multiply-accumulates of one image through the layers
  that do the arithmetic: a ``Linear`` layer with n inputs and m outputs costs
  n * m per row it sees; a ``Conv2d`` costs (in_channels / groups) * kh * kw
  per output element. Biases, activations, pooling and dropout are not counted
  (a few thousand operations against millions here). The count comes from one
  forward pass with hooks, so it follows the shapes the model really computes.
* :func:`latency_ms` is the median wall-clock time of a batch-1 forward pass
  on the CPU, in inference mode, on one thread, after warm-up
  (:func:`kdlab.compress.latency_ms`, lesson 8's), on a copy of the model: the
  model itself stays on its device and in its mode.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .compress import latency_ms as _latency_ms
from .models import count_params

__all__ = ["LATENCY", "MNIST_IMAGE", "latency_ms", "macs", "model_costs"]

MNIST_IMAGE = (1, 28, 28)
# Enough forwards for a stable median, little enough to add well under a second per MNIST model.
LATENCY = {"batch_size": 1, "threads": 1, "repeats": 200, "warmup": 20, "statistic": "median"}


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def macs(model: nn.Module, input_shape=MNIST_IMAGE) -> int:
    """Multiply-accumulates of ``Linear`` and ``Conv2d`` layers for one input of ``input_shape``."""
    total = 0

    def linear(module, _inputs, output):
        nonlocal total
        total += output.numel() * module.in_features

    def conv(module, _inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    hooks = [m.register_forward_hook(linear if isinstance(m, nn.Linear) else conv)
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=_device(model)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total


def latency_ms(model: nn.Module, input_shape=MNIST_IMAGE, *, repeats: int = LATENCY["repeats"],
               warmup: int = LATENCY["warmup"], threads: int = LATENCY["threads"]) -> float:
    """Median milliseconds of one batch-1 forward pass on the CPU (a copy of the model; it is not moved)."""
    cpu_copy = copy.deepcopy(model).cpu()
    return _latency_ms(cpu_copy, torch.zeros(1, *input_shape), repeats=repeats, warmup=warmup, threads=threads)


def model_costs(model: nn.Module, input_shape=MNIST_IMAGE) -> dict:
    """``params``, ``macs`` (per image) and ``latency_ms`` (batch 1, CPU, one thread), JSON-ready."""
    return {"params": count_params(model), "macs": macs(model, input_shape),
            "latency_ms": round(latency_ms(model, input_shape), 4)}
