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
:func:`cnn_student` (a thin CNN student), :func:`feature_distill` (one
training loop for logit KD, hints, attention transfer and any mix of them).
"""

from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from . import settings
from .data import Dataset, batch_indices
from .losses import _check_alpha, _check_temperature, _kd_kl
from .models import SmallCNN, count_params
from .train import evaluate, make_optimizer, warmup_cosine

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
                    clip: float | None = None, warmup_steps: int | None = None, targets: dict | None = None, device=None, progress: bool = True,
                    desc: str = "student") -> dict:
    r"""Train ``student`` in place with any mix of logit KD, a FitNets hint and attention transfer.

    Per batch the loss is

    .. math:: \alpha\,\mathrm{KD}_T + (1-\alpha)\,\mathrm{CE}
              + [\text{hint}]\, w_h\, L_{hint} + [\text{at}]\, w_{at} \sum_{\ell} L_{AT,\ell}

    The hint joins the student's ``hint_layer`` to the same layer of the
    teacher through a 1x1-conv regressor that trains with the student and is
    thrown away afterwards; attention transfer compares every layer in
    ``at_layers``. The teacher's logits and attention maps come from
    :func:`teacher_targets` (computed once, or passed in as ``targets`` to
    share them between runs); its hint-layer features are computed per batch
    by running the teacher only up to that layer. SGD with Nesterov momentum,
    warm-up (half an epoch, at least 100 steps) and cosine decay, as in
    :func:`kdlab.train.train`; ``clip`` caps the gradient norm. Returns params,
    test errors and accuracy, training seconds and the per-epoch mean loss.
    """
    alpha = _check_alpha(alpha)
    T = _check_temperature(T)
    if (alpha > 0 or hint or at) and teacher is None:
        raise ValueError("logit KD, hints and attention transfer need a teacher")
    device = settings.default_device(device) if not isinstance(device, torch.device) else device
    student.to(device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    start = time.perf_counter()
    if teacher is not None:
        teacher.to(device).eval()
        for p_ in teacher.parameters():
            p_.requires_grad_(False)
        if (alpha > 0 or at) and targets is None:
            targets = teacher_targets(teacher, x, at_layers=at_layers, p=p)
    s_layers = sorted(set(([hint_layer] if hint else []) + (list(at_layers) if at else [])))

    params = list(student.parameters())
    regressor = None
    if hint:
        s_ch = block_channels(student, [hint_layer])[0]
        t_ch = block_channels(teacher, [hint_layer])[0]
        torch.manual_seed(seed + 7919)
        regressor = make_regressor(s_ch, t_ch).to(device)
        params += list(regressor.parameters())

    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(y) / batch_size)
    total = epochs * steps_per_epoch
    opt = make_optimizer(nn.ParameterList(params), "sgd", lr)
    # At initialization the feature terms' gradients are hundreds of times the cross-entropy's (a faint
    # student map, once normalized, amplifies its gradient): a warm-up of at least 100 steps keeps them
    # from wrecking a small student when an epoch has few steps.
    warmup = max(steps_per_epoch // 2, 100) if warmup_steps is None else warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup))

    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, dynamic_ncols=True, mininterval=0.5)
    losses = []
    try:
        for _ in range(epochs):
            student.train()
            if regressor is not None:
                regressor.train()
            loss_sum = torch.zeros((), device=device)
            for idx in batch_indices(len(y), batch_size, generator=generator, device=device):
                xb = x[idx]
                logits, feats = forward_with_features(student, xb, s_layers)
                feats = dict(zip(s_layers, feats))
                loss = F.cross_entropy(logits, y[idx])
                if alpha > 0:
                    loss = alpha * _kd_kl(logits, targets["logits"][idx], T) + (1 - alpha) * loss
                if hint:
                    with torch.no_grad():
                        hint_target = features_upto(teacher, xb, hint_layer)
                    loss = loss + hint_weight * hint_loss(feats[hint_layer], hint_target, regressor)
                if at:
                    loss = loss + at_weight * sum(_map_distance(attention_map(feats[name], p),
                                                                targets["at"][name][idx]) for name in at_layers)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    nn.utils.clip_grad_norm_(params, clip)
                opt.step()
                sched.step()
                loss_sum += loss.detach() * len(idx)
                bar.update(1)
            losses.append(float(loss_sum) / len(y))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    student.eval()
    result = evaluate(student, data.x_test, data.y_test)
    return {"params": count_params(student), "test_errors": result["test_errors"],
            "test_accuracy": result["test_accuracy"], "train_seconds": round(seconds, 2),
            "train_loss": losses}
