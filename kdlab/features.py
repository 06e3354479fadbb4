r"""Feature distillation: FitNets hints and attention transfer, with the hooks that expose hidden layers.

Reference implementations (one each; lesson 7's exercises are the learner's own):

* :func:`hint_loss` (Romero et al., 2015, "FitNets"): the mean squared error
  between a regressor applied to the student's *guided* layer and the
  teacher's *hint* layer,

  .. math:: L_{hint} = \operatorname{mean}\big( (r(v_S) - u_T)^2 \big)

  averaged over every element (``F.mse_loss``); the teacher side is detached.
  FitNets writes :math:`\tfrac12\lVert u_T - r(v_S)\rVert^2`; the constant
  goes into the loss weight.
* :func:`attention_map` (Zagoruyko and Komodakis, 2017): a feature map
  :math:`A \in \mathbb{R}^{C\times H\times W}` becomes the spatial map
  :math:`\sum_c |A_c|^p`, flattened to :math:`H W` values and scaled to unit
  L2 norm, one per example: shape ``(N, H*W)``.
* :func:`attention_transfer_loss`: the squared L2 distance between the
  student's and the teacher's attention maps, summed over positions and
  averaged over the batch (the course's ``batchmean`` convention). The
  authors' code takes ``.pow(2).mean()``, which also divides by :math:`HW`:
  the same loss up to a constant that goes into :math:`\beta`.

Helpers: :class:`capture` (forward hooks that record named layers' outputs),
:func:`cnn_student` (a thin CNN student), :class:`HintTerm` and
:class:`AttentionTerm` (the two losses as extra terms of :func:`kdlab.train.train`)
and :func:`feature_distill` (logit KD, hints, attention transfer or any mix of
them, trained by the engine).
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from . import settings
from .data import Dataset
from .losses import check_alpha, check_temperature
from .models import SmallCNN
from .train import Batch, History, train

# In kdlab's SmallCNN, ``features`` is conv-pool-relu, conv-pool-relu (pooling first: see
# models.SmallCNN): the outputs of the two ReLUs (indices 2 and 5) are the two "blocks"
# (C x 14 x 14, then C x 7 x 7), the same values as relu-then-pool would give.
CNN_BLOCKS = ("features.2", "features.5")


# -- exposing hidden layers ------------------------------------------------------------------

class capture(contextlib.AbstractContextManager):
    """Record the outputs of named submodules during forward passes.

    ::

        with capture(model, ["features.2", "features.5"]) as feats:
            logits = model(x)
        block1, block2 = feats["features.2"], feats["features.5"]

    The hooks are removed on exit. Outputs keep their autograd graph, so a loss
    on them trains the layers below.
    """

    def __init__(self, model: nn.Module, layers):
        modules = dict(model.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            raise ValueError(f"no layer named {', '.join(map(repr, missing))}; "
                             f"the model has {', '.join(n for n in modules if n)}")
        self.layers = list(layers)
        self._modules = [modules[name] for name in self.layers]
        self._handles = []
        self.outputs: dict[str, torch.Tensor] = {}

    def __enter__(self) -> dict:
        for name, module in zip(self.layers, self._modules):
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self.outputs

    def _hook(self, name):
        def hook(module, inputs, output):
            self.outputs[name] = output
        return hook

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return False


def forward_with_features(model: nn.Module, x: torch.Tensor, layers=CNN_BLOCKS):
    """``(logits, [output of each layer in layers])`` from one forward pass."""
    with capture(model, layers) as feats:
        logits = model(x)
    return logits, [feats[name] for name in layers]


def cnn_student(channels=(8, 16), hidden: int = 32, dropout: float = 0.1) -> nn.Module:
    """A thin version of the course's CNN: same two blocks and spatial sizes, 4x fewer channels."""
    model = SmallCNN(channels=tuple(channels), hidden=hidden, dropout=dropout)
    model.arch = f"cnn-{channels[0]}-{channels[1]}-h{hidden}"
    return model


def block_channels(model: nn.Module, layers=CNN_BLOCKS, shape=(1, 1, 28, 28)) -> list[int]:
    """Channels of each layer's output (one dummy forward pass in eval mode)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            _, feats = forward_with_features(model, torch.zeros(shape, device=device), layers)
    finally:
        model.train(was_training)
    return [f.shape[1] for f in feats]


def make_regressor(student_channels: int, teacher_channels: int) -> nn.Module:
    """FitNets' regressor: a 1x1 convolution from the student's channels to the teacher's."""
    return nn.Conv2d(student_channels, teacher_channels, kernel_size=1)


# -- the reference losses ----------------------------------------------------------------------

def _check_features(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a feature map of shape (N, C, H, W), got {got}")
    return x


def hint_loss(student_features: torch.Tensor, teacher_features: torch.Tensor,
              regressor: nn.Module) -> torch.Tensor:
    """FitNets' hint loss: ``mean((regressor(student_features) - teacher_features)**2)``.

    The teacher's features are a fixed target (detached); the gradient reaches
    the regressor and, through it, the student.
    """
    guided = regressor(student_features)
    target = teacher_features.detach()
    if guided.shape != target.shape:
        raise ValueError(f"the regressor maps the student's features to {tuple(guided.shape)}, "
                         f"but the teacher's are {tuple(target.shape)}")
    return F.mse_loss(guided, target, reduction="mean")


def attention_map(features: torch.Tensor, p: float = 2) -> torch.Tensor:
    r"""Spatial attention ``sum_c |A_c|^p``, flattened and scaled to unit L2 norm per example: ``(N, H*W)``.

    An all-zero feature map gives an all-zero map (no division by zero).
    """
    _check_features(features, "features")
    if not p > 0:
        raise ValueError(f"p must be positive, got {p!r}")
    a = features.abs().pow(p).sum(dim=1).flatten(1)
    return F.normalize(a, p=2, dim=1, eps=1e-12)


def attention_transfer_loss(student_features: torch.Tensor, teacher_features: torch.Tensor,
                            p: float = 2) -> torch.Tensor:
    r"""``mean over the batch of || Q_S - Q_T ||_2^2`` with ``Q = attention_map(., p)``.

    Channel counts may differ (the maps sum over channels); the spatial sizes
    must agree. The teacher side is detached.
    """
    _check_features(student_features, "student_features")
    _check_features(teacher_features, "teacher_features")
    s, t = student_features.shape, teacher_features.shape
    if s[0] != t[0] or s[2:] != t[2:]:
        raise ValueError(f"student features {tuple(s)} and teacher features {tuple(t)} must share "
                         "the batch size and the spatial size (H, W)")
    return _map_distance(attention_map(student_features, p), attention_map(teacher_features.detach(), p))


def _map_distance(q_s: torch.Tensor, q_t: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between attention maps, summed over positions, mean over the batch."""
    return (q_s - q_t).pow(2).sum(dim=1).mean()


# -- training with feature losses ---------------------------------------------------------------

class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted layer has run."""


def features_upto(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of ``layer``, running the model only as far as that layer (the rest is skipped)."""
    module = dict(model.named_modules())[layer]
    box = {}

    def hook(mod, inputs, output):
        box["out"] = output
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "out" not in box:
        raise RuntimeError(f"layer {layer!r} did not run in the forward pass")
    return box["out"]


class HintTerm(nn.Module):
    """FitNets' hint as an extra term of :func:`kdlab.train.train`: ``weight * hint_loss``.

    The teacher's ``layer`` is computed per batch (the teacher runs only up to
    it, under no_grad); the 1x1-conv ``regressor`` is a submodule, so it trains
    with the student and is thrown away afterwards.
    """

    def __init__(self, teacher: nn.Module, regressor: nn.Module, layer: str = CNN_BLOCKS[0],
                 weight: float = 1.0):
        super().__init__()
        self.regressor, self.weight, self.layers = regressor, weight, (layer,)
        # A function, not a submodule: the teacher must not join the optimizer or follow .train().
        self.teacher_features = functools.partial(features_upto, teacher, layer=layer)

    def forward(self, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            target = self.teacher_features(batch.x)
        return self.weight * hint_loss(batch.features[self.layers[0]], target, self.regressor)


class AttentionTerm:
    """Attention transfer as an extra term: ``weight * sum over layers of ||Q_S - Q_T||^2`` (batch mean).

    ``maps`` holds the teacher's attention maps on every training image, per
    layer (:func:`teacher_targets`), indexed by the batch's rows.
    """

    def __init__(self, maps: dict, layers=CNN_BLOCKS, p: float = 2, weight: float = 1.0):
        self.maps, self.layers, self.p, self.weight = maps, tuple(layers), p, weight

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.weight * sum(_map_distance(attention_map(batch.features[name], self.p), self.maps[name][batch.idx])
                                 for name in self.layers)


@torch.no_grad()
def teacher_targets(teacher: nn.Module, x: torch.Tensor, *, at_layers=CNN_BLOCKS, p: float = 2,
                    batch_size: int = 500) -> dict:
    """The teacher's logits and attention maps on every row of ``x``, computed once (eval mode).

    Both are small (10 and H*W numbers per image), so a training loop can reuse
    them every epoch instead of running the teacher on every batch.
    """
    was_training = teacher.training
    teacher.eval()
    logits, maps = [], {name: [] for name in at_layers}
    try:
        for i in range(0, len(x), batch_size):
            out, feats = forward_with_features(teacher, x[i:i + batch_size], at_layers)
            logits.append(out)
            for name, f in zip(at_layers, feats):
                maps[name].append(attention_map(f, p))
    finally:
        teacher.train(was_training)
    return {"logits": torch.cat(logits), "at": {k: torch.cat(v) for k, v in maps.items()}}


METHODS = {
    # name: the switches of feature_distill (alpha on the logit KD term; hint and at turn those terms on)
    "student alone": dict(alpha=0.0, hint=False, at=False),
    "logit KD": dict(alpha=0.9, hint=False, at=False),
    "hints (FitNets)": dict(alpha=0.0, hint=True, at=False),
    "attention transfer": dict(alpha=0.0, hint=False, at=True),
    "KD + hints + AT": dict(alpha=0.9, hint=True, at=True),
}


def feature_distill(student: nn.Module, teacher: nn.Module | None, data: Dataset, *, alpha: float = 0.0,
                    T: float = 4.0, hint: bool = False, at: bool = False, hint_weight: float = 1.0,
                    at_weight: float = 1.0, hint_layer: str = CNN_BLOCKS[0], at_layers=CNN_BLOCKS,
                    p: float = 2, epochs: int = 3, lr: float = 0.05, batch_size: int = 128, seed: int = 0,
                    clip: float | None = None, warmup_steps: int | None = None, targets: dict | None = None,
                    device=None, progress: bool = True, desc: str = "student") -> History:
    r"""Train ``student`` in place with any mix of logit KD, a FitNets hint and attention transfer.

    Per batch the loss is

    .. math:: \alpha\,\mathrm{KD}_T + (1-\alpha)\,\mathrm{CE}
              + [\text{hint}]\, w_h\, L_{hint} + [\text{at}]\, w_{at} \sum_{\ell} L_{AT,\ell}

    The hint joins the student's ``hint_layer`` to the same layer of the
    teacher through a 1x1-conv regressor (:class:`HintTerm`); attention
    transfer compares every layer in ``at_layers`` (:class:`AttentionTerm`).
    The teacher's logits and attention maps come from :func:`teacher_targets`
    (computed once, or passed in as ``targets`` to share them between runs).
    :func:`kdlab.train.train` runs the loop: SGD with Nesterov momentum, a
    warm-up of half an epoch but at least 100 steps (unless ``warmup_steps``),
    cosine decay; ``clip`` caps the gradient norm. Returns the run's History.
    """
    alpha = check_alpha(alpha)
    T = check_temperature(T)
    if (alpha > 0 or hint or at) and teacher is None:
        raise ValueError("logit KD, hints and attention transfer need a teacher")
    device = settings.default_device(device) if not isinstance(device, torch.device) else device
    student.to(device)
    terms = []
    if teacher is not None:
        teacher.to(device).eval()
        for p_ in teacher.parameters():
            p_.requires_grad_(False)
        if (alpha > 0 or at) and targets is None:
            targets = teacher_targets(teacher, data.x_train.to(device), at_layers=at_layers, p=p)
    if hint:
        channels = block_channels(student, [hint_layer])[0], block_channels(teacher, [hint_layer])[0]
        torch.manual_seed(seed + 7919)   # the regressor's initial weights depend on the seed alone
        terms.append(HintTerm(teacher, make_regressor(*channels), hint_layer, hint_weight))
    if at:
        terms.append(AttentionTerm(targets["at"], at_layers, p, at_weight))
    # At initialization the feature terms' gradients are hundreds of times the cross-entropy's (a faint
    # student map, once normalized, amplifies its gradient): a warm-up of at least 100 steps keeps them
    # from wrecking a small student when an epoch has few steps.
    if warmup_steps is None:
        warmup_steps = max(math.ceil(len(data.y_train) / batch_size) // 2, 100)
    return train(student, data, teacher_logits=targets["logits"] if alpha > 0 else None, extra_loss=terms,
                 T=T, alpha=alpha, epochs=epochs, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                 clip=clip, seed=seed, device=device, evaluate_every_epoch=False, progress=progress, desc=desc)
