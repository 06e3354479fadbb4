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
* :func:`rkd_distance_loss` and :func:`rkd_angle_loss` (Park et al., 2019,
  "Relational Knowledge Distillation", arXiv:1904.05068): on a batch of
  embeddings (the penultimate layer, ``(N, D)``), the student's *relations*
  between examples should match the teacher's. Distance-wise, the distance of
  every pair divided by the mean distance over the batch's pairs,

  .. math:: \psi_D(t_i, t_j) = \frac{\lVert t_i - t_j\rVert_2}{\mu},\qquad
            \mu = \frac{1}{|P|}\sum_{(i,j)\in P} \lVert t_i - t_j\rVert_2 ;

  angle-wise, the cosine of the angle at :math:`t_j` of every triangle
  :math:`(t_i, t_j, t_k)` of three distinct examples,

  .. math:: \psi_A(t_i, t_j, t_k) = \Big\langle \frac{t_i - t_j}{\lVert t_i - t_j\rVert_2},
            \frac{t_k - t_j}{\lVert t_k - t_j\rVert_2} \Big\rangle ;

  each matched with the Huber loss :math:`\ell_1` (``F.huber_loss``, delta 1)
  and averaged over the pairs :math:`P` (:math:`i \ne j`) or the triplets of
  distinct examples. The paper sums; the authors' code averages over all
  :math:`N^2` pairs and :math:`N^3` triplets, the degenerate ones included,
  whose terms are zero on both sides: the same losses times :math:`(N-1)/N`
  and :math:`(N-1)(N-2)/N^2`, constants that go into the weights. The
  teacher's side is detached; the student's mean distance is not (the loss is
  invariant to the student's scale, and so is its gradient's direction).
  Distances and angles are numbers, whatever the embeddings' widths: no
  regressor is needed.

Helpers: :class:`capture` (forward hooks that record named layers' outputs),
:func:`cnn_student` (a thin CNN student), :class:`HintTerm`,
:class:`AttentionTerm` and :class:`RelationTerm` (the losses as extra terms of
:func:`kdlab.train.train`) and :func:`feature_distill` (logit KD, hints,
attention transfer, relational KD or any mix of them, trained by the engine).
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
# The penultimate embedding: the ReLU after the head's hidden Linear (head = flatten, dropout, linear, relu,
# dropout, linear), read before the student's dropout; the teacher runs in eval mode, where the dropout is identity.
EMBEDDING_LAYER = "head.3"


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


def _check_embeddings(student: torch.Tensor, teacher: torch.Tensor, at_least: int) -> None:
    for name, e in (("student_embeddings", student), ("teacher_embeddings", teacher)):
        if not isinstance(e, torch.Tensor) or e.dim() != 2:
            got = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise ValueError(f"{name} must be a batch of embeddings of shape (N, D), got {got}")
    if len(student) != len(teacher):
        raise ValueError(f"the student has {len(student)} embeddings and the teacher {len(teacher)}: "
                         "they must be of the same examples")
    if len(student) < at_least:
        raise ValueError(f"relations need at least {at_least} examples in the batch, got {len(student)}")


def rkd_distances(embeddings: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    r"""RKD's distance potential: ``||e_i - e_j|| / mu`` for every pair ``i < j``, shape ``(N(N-1)/2,)``.

    ``mu`` is the mean of those distances (a mean over the ordered pairs
    ``i != j`` is the same number), never less than ``eps``; the pairs come
    in ``torch.triu_indices`` order.
    """
    i, j = torch.triu_indices(len(embeddings), len(embeddings), offset=1, device=embeddings.device)
    # The norm of a difference, never sqrt(sum of squares): its gradient is finite when two embeddings coincide.
    d = (embeddings[i] - embeddings[j]).norm(dim=1)
    return d / d.mean().clamp_min(eps)


def rkd_angles(embeddings: torch.Tensor) -> torch.Tensor:
    r"""RKD's angle potential: ``cos[j, i, k]``, the cosine of the angle at ``e_j`` in the triangle ``(e_i, e_j, e_k)``.

    Shape ``(N, N, N)``: the cosine between the unit vectors from ``e_j`` to
    ``e_i`` and from ``e_j`` to ``e_k``, for the ``N(N-1)(N-2)`` triplets of
    distinct examples; 0 where two of ``i, j, k`` coincide (no angle there,
    so those entries add nothing to a loss that compares two such tensors).
    """
    n = len(embeddings)
    diff = embeddings.unsqueeze(0) - embeddings.unsqueeze(1)      # diff[j, i] = e_i - e_j
    unit = F.normalize(diff, p=2, dim=2)                          # zero where i == j (no division by zero)
    cos = torch.bmm(unit, unit.transpose(1, 2))                   # cos[j, i, k] = <unit[j, i], unit[j, k]>
    # i == k is a segment's angle with itself (cos 1 on both sides): set to 0 like the rest. Dense tensors and no
    # boolean indexing: the N^3 entries are the whole cost, and an index would copy them.
    return cos * (1 - torch.eye(n, dtype=cos.dtype, device=cos.device))


def rkd_distance_loss(student_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor) -> torch.Tensor:
    r"""RKD-D: ``mean over the pairs i < j of huber(psi_D(s_i, s_j) - psi_D(t_i, t_j))`` (delta 1).

    ``psi_D`` is :func:`rkd_distances` (each network's distances over its own
    mean). The embeddings may have different widths ``(N, D_s)``, ``(N, D_t)``;
    the teacher's side is detached. Invariant to a common scaling (and any
    translation or rotation) of either side's embeddings.
    """
    _check_embeddings(student_embeddings, teacher_embeddings, 2)
    return F.huber_loss(rkd_distances(student_embeddings), rkd_distances(teacher_embeddings.detach()),
                        reduction="mean", delta=1.0)


def rkd_angle_loss(student_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor) -> torch.Tensor:
    r"""RKD-A: ``mean over the triplets of distinct examples of huber(psi_A(s) - psi_A(t))`` (delta 1).

    ``psi_A`` is :func:`rkd_angles` (the Huber terms of its zero entries are
    zero: the sum is divided by the ``N(N-1)(N-2)`` real triplets). Widths may
    differ; the teacher's side is detached. Invariant to scaling, translation
    and rotation of either side. Costs ``O(N^3 D)`` per batch.
    """
    _check_embeddings(student_embeddings, teacher_embeddings, 3)
    n = len(student_embeddings)
    total = F.huber_loss(rkd_angles(student_embeddings), rkd_angles(teacher_embeddings.detach()),
                         reduction="sum", delta=1.0)
    return total / (n * (n - 1) * (n - 2))


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


class RelationTerm:
    """Relational KD as an extra term: ``distance_weight * RKD-D + angle_weight * RKD-A`` on the embeddings.

    The student's embeddings are its ``layer`` output in the same forward pass
    (``batch.features``, flattened to ``(N, D)``); ``embeddings`` holds the
    teacher's on every training image (:func:`teacher_targets`), indexed by the
    batch's rows. The relations are those among the batch's examples.
    """

    def __init__(self, embeddings: torch.Tensor, layer: str = EMBEDDING_LAYER, distance_weight: float = 25.0,
                 angle_weight: float = 50.0):
        self.embeddings, self.layers = embeddings, (layer,)
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def __call__(self, batch: Batch) -> torch.Tensor:
        s, t = batch.features[self.layers[0]].flatten(1), self.embeddings[batch.idx]
        loss = s.new_zeros(())
        if self.distance_weight:
            loss = loss + self.distance_weight * rkd_distance_loss(s, t)
        if self.angle_weight:
            loss = loss + self.angle_weight * rkd_angle_loss(s, t)
        return loss


@torch.no_grad()
def teacher_targets(teacher: nn.Module, x: torch.Tensor, *, at_layers=CNN_BLOCKS, p: float = 2,
                    embedding_layer: str | None = EMBEDDING_LAYER, batch_size: int = 500) -> dict:
    """The teacher's logits, attention maps and embeddings on every row of ``x``, computed once (eval mode).

    All are small (10, H*W and D numbers per image), so a training loop can
    reuse them every epoch instead of running the teacher on every batch.
    ``embedding_layer=None`` leaves the embeddings out (``"embedding"`` is None).
    """
    was_training = teacher.training
    teacher.eval()
    layers = list(at_layers) + ([embedding_layer] if embedding_layer else [])
    logits, maps, embeddings = [], {name: [] for name in at_layers}, []
    try:
        for i in range(0, len(x), batch_size):
            out, feats = forward_with_features(teacher, x[i:i + batch_size], layers)
            logits.append(out)
            for name, f in zip(at_layers, feats):
                maps[name].append(attention_map(f, p))
            if embedding_layer:
                embeddings.append(feats[-1].flatten(1))
    finally:
        teacher.train(was_training)
    return {"logits": torch.cat(logits), "at": {k: torch.cat(v) for k, v in maps.items()},
            "embedding": torch.cat(embeddings) if embeddings else None}


METHODS = {
    # name: the switches of feature_distill (alpha on the logit KD term; hint, at and rkd turn those terms on)
    "student alone": dict(alpha=0.0, hint=False, at=False, rkd=False),
    "logit KD": dict(alpha=0.9, hint=False, at=False, rkd=False),
    "hints (FitNets)": dict(alpha=0.0, hint=True, at=False, rkd=False),
    "attention transfer": dict(alpha=0.0, hint=False, at=True, rkd=False),
    "relational KD (RKD)": dict(alpha=0.0, hint=False, at=False, rkd=True),
    "KD + hints + AT": dict(alpha=0.9, hint=True, at=True, rkd=False),
    "KD + RKD": dict(alpha=0.9, hint=False, at=False, rkd=True),
}


def feature_distill(student: nn.Module, teacher: nn.Module | None, data: Dataset, *, alpha: float = 0.0,
                    T: float = 4.0, hint: bool = False, at: bool = False, rkd: bool = False,
                    hint_weight: float = 1.0, at_weight: float = 1.0, rkd_distance_weight: float = 25.0,
                    rkd_angle_weight: float = 50.0, hint_layer: str = CNN_BLOCKS[0], at_layers=CNN_BLOCKS,
                    embedding_layer: str = EMBEDDING_LAYER, p: float = 2, epochs: int = 3, lr: float = 0.05,
                    batch_size: int = 128, seed: int = 0, clip: float | None = None,
                    warmup_steps: int | None = None, targets: dict | None = None, device=None,
                    progress: bool = True, desc: str = "student") -> History:
    r"""Train ``student`` in place with any mix of logit KD, a FitNets hint, attention transfer and RKD.

    Per batch the loss is

    .. math:: \alpha\,\mathrm{KD}_T + (1-\alpha)\,\mathrm{CE}
              + [\text{hint}]\, w_h\, L_{hint} + [\text{at}]\, w_{at} \sum_{\ell} L_{AT,\ell}
              + [\text{rkd}]\, (w_D\, L_{RKD-D} + w_A\, L_{RKD-A})

    The hint joins the student's ``hint_layer`` to the same layer of the
    teacher through a 1x1-conv regressor (:class:`HintTerm`); attention
    transfer compares every layer in ``at_layers`` (:class:`AttentionTerm`);
    relational KD compares the distances and angles among the batch's
    embeddings at ``embedding_layer`` (:class:`RelationTerm`; the weights 25
    and 50 are Park et al.'s for classification).
    The teacher's logits, attention maps and embeddings come from :func:`teacher_targets`
    (computed once, or passed in as ``targets`` to share them between runs).
    :func:`kdlab.train.train` runs the loop: SGD with Nesterov momentum, a
    warm-up of half an epoch but at least 100 steps (unless ``warmup_steps``),
    cosine decay; ``clip`` caps the gradient norm. Returns the run's History.
    """
    alpha = check_alpha(alpha)
    T = check_temperature(T)
    if (alpha > 0 or hint or at or rkd) and teacher is None:
        raise ValueError("logit KD, hints, attention transfer and relational KD need a teacher")
    device = settings.default_device(device) if not isinstance(device, torch.device) else device
    student.to(device)
    terms = []
    if teacher is not None:
        teacher.to(device).eval()
        for p_ in teacher.parameters():
            p_.requires_grad_(False)
        if (alpha > 0 or at or rkd) and targets is None:
            targets = teacher_targets(teacher, data.x_train.to(device), at_layers=at_layers, p=p,
                                      embedding_layer=embedding_layer)
    if hint:
        channels = block_channels(student, [hint_layer])[0], block_channels(teacher, [hint_layer])[0]
        torch.manual_seed(seed + 7919)   # the regressor's initial weights depend on the seed alone
        terms.append(HintTerm(teacher, make_regressor(*channels), hint_layer, hint_weight))
    if at:
        terms.append(AttentionTerm(targets["at"], at_layers, p, at_weight))
    if rkd:
        if targets.get("embedding") is None:
            raise ValueError("relational KD needs the teacher's embeddings: teacher_targets(..., embedding_layer=...)")
        terms.append(RelationTerm(targets["embedding"], embedding_layer, rkd_distance_weight, rkd_angle_weight))
    # At initialization the feature terms' gradients are hundreds of times the cross-entropy's (a faint
    # student map, once normalized, amplifies its gradient): a warm-up of at least 100 steps keeps them
    # from wrecking a small student when an epoch has few steps.
    if warmup_steps is None:
        warmup_steps = max(math.ceil(len(data.y_train) / batch_size) // 2, 100)
    return train(student, data, teacher_logits=targets["logits"] if alpha > 0 else None, extra_loss=terms,
                 T=T, alpha=alpha, epochs=epochs, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                 clip=clip, seed=seed, device=device, evaluate_every_epoch=False, progress=progress, desc=desc)
