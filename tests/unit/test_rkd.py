"""kdlab.features' relational KD (Park et al., 2019): RKD-D and RKD-A against hand-computed cases, their
invariances, gradients, the authors' normalization, and the term the training engine adds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdlab import features
from kdlab.models import build
from kdlab.train import Batch


def t(rows, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


def rand(*shape, seed=0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) <= 1 else abs(x) - 0.5


# ----------------------------------------------------------------------------- distances, by hand

def test_distances_are_divided_by_their_mean():
    # A 3-4-5 triangle: distances 3, 4, 5 (pairs (0,1), (0,2), (1,2)), mean 4.
    d = features.rkd_distances(t([[0, 0], [3, 0], [0, 4]]))
    assert torch.allclose(d, t([0.75, 1.0, 1.25]))


def test_rkd_distance_loss_by_hand():
    s = t([[0, 0], [3, 0], [0, 4]])          # normalized 0.75, 1, 1.25
    teacher = t([[0], [1], [3]])             # distances 1, 3, 2, mean 2: normalized 0.5, 1.5, 1
    want = (huber(0.25) + huber(-0.5) + huber(0.25)) / 3
    assert want == pytest.approx(0.0625)
    assert float(features.rkd_distance_loss(s, teacher)) == pytest.approx(want, abs=1e-12)


def test_rkd_distance_loss_huber_is_linear_beyond_one():
    # Teacher: five corners of a regular simplex, every normalized distance 1. Student: four examples at 0 and
    # one at 1: six distances 0 and four 1, mean 0.4, normalized 0 (differences -1) and 2.5 (differences +1.5).
    teacher = torch.eye(5, dtype=torch.float64)
    s = t([[0], [0], [0], [0], [1]])
    want = (6 * huber(-1.0) + 4 * huber(1.5)) / 10
    assert want == pytest.approx(0.7)
    assert float(features.rkd_distance_loss(s, teacher)) == pytest.approx(want, abs=1e-12)
    loss = features.rkd_distance_loss(s.requires_grad_(), teacher)
    loss.backward()
    assert torch.isfinite(s.grad).all()       # coinciding embeddings: a finite gradient


# ----------------------------------------------------------------------------- angles, by hand

def test_angles_are_the_cosines_at_each_vertex():
    # A right isosceles triangle: 90 degrees at example 0, 45 at examples 1 and 2.
    cos = features.rkd_angles(t([[0, 0], [1, 0], [0, 1]]))
    assert cos.shape == (3, 3, 3)
    assert float(cos[0, 1, 2]) == pytest.approx(0.0, abs=1e-12) and float(cos[0, 2, 1]) == pytest.approx(0.0, abs=1e-12)
    for j, i, k in [(1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]:
        assert float(cos[j, i, k]) == pytest.approx(1 / math.sqrt(2))
    degenerate = [(j, i, k) for j in range(3) for i in range(3) for k in range(3) if len({i, j, k}) < 3]
    assert all(float(cos[c]) == 0.0 for c in degenerate)


def test_rkd_angle_loss_by_hand():
    s = t([[0, 0], [1, 0], [0, 1]])
    teacher = t([[0, 0], [2, 0], [1, math.sqrt(3)]])       # equilateral: every cosine 1/2
    want = (2 * huber(0.0 - 0.5) + 4 * huber(1 / math.sqrt(2) - 0.5)) / 6
    assert float(features.rkd_angle_loss(s, teacher)) == pytest.approx(want, abs=1e-12)


def test_rkd_angle_loss_of_a_square_against_a_line():
    # Four collinear teacher points: every angle 0 or 180 degrees (cosine +1 or -1). A square student: cosines 0
    # (the corners' right angles) and 1/sqrt(2) (the diagonals). 24 triplets.
    teacher = t([[0], [1], [2], [3]])
    s = t([[0, 0], [1, 0], [1, 1], [0, 1]])
    cs, ct = features.rkd_angles(s), features.rkd_angles(teacher)
    triplets = [(j, i, k) for j in range(4) for i in range(4) for k in range(4) if len({i, j, k}) == 3]
    assert len(triplets) == 24
    assert {round(float(ct[c])) for c in triplets} == {-1, 1}
    want = sum(huber(float(cs[c]) - float(ct[c])) for c in triplets) / 24
    assert float(features.rkd_angle_loss(s, teacher)) == pytest.approx(want, abs=1e-12)


# ----------------------------------------------------------------------------- invariances

def test_rkd_distance_is_invariant_to_scaling_translation_and_rotation():
    s, teacher = rand(7, 4, seed=1), rand(7, 9, seed=2)
    base = features.rkd_distance_loss(s, teacher)
    q, _ = torch.linalg.qr(rand(4, 4, seed=3))
    for moved in (3.7 * s, 0.01 * s, s + rand(1, 4, seed=4), s @ q):
        assert torch.allclose(features.rkd_distance_loss(moved, teacher), base, atol=1e-12)
    assert torch.allclose(features.rkd_distance_loss(s, 42.0 * teacher), base, atol=1e-12)
    # ... but not to stretching one axis: the loss sees the shape, not only the scale.
    stretched = s * t([1.0, 1.0, 1.0, 5.0])
    assert not torch.allclose(features.rkd_distance_loss(stretched, teacher), base, atol=1e-6)


def test_rkd_angle_is_invariant_to_scaling_translation_and_rotation():
    s, teacher = rand(6, 3, seed=5), rand(6, 8, seed=6)
    base = features.rkd_angle_loss(s, teacher)
    q, _ = torch.linalg.qr(rand(3, 3, seed=7))
    for moved in (5.0 * s, 0.2 * s + rand(1, 3, seed=8), s @ q):
        assert torch.allclose(features.rkd_angle_loss(moved, teacher), base, atol=1e-12)
    assert torch.allclose(features.rkd_angle_loss(s, 0.3 * teacher - 2.0), base, atol=1e-12)
    stretched = s * t([1.0, 1.0, 4.0])
    assert not torch.allclose(features.rkd_angle_loss(stretched, teacher), base, atol=1e-6)


def test_identical_relations_cost_nothing_whatever_the_widths():
    s = rand(8, 5, seed=9)
    teacher = torch.cat([3 * s, torch.zeros(8, 11, dtype=s.dtype)], dim=1)     # same shape, wider, scaled
    assert float(features.rkd_distance_loss(s, teacher)) == pytest.approx(0.0, abs=1e-12)
    assert float(features.rkd_angle_loss(s, teacher)) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("loss", [features.rkd_distance_loss, features.rkd_angle_loss])
def test_gradients_match_finite_differences_and_spare_the_teacher(loss):
    s, teacher = rand(6, 4, seed=10).requires_grad_(), rand(6, 7, seed=11).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: loss(x, teacher), (s,))
    loss(s, teacher).backward()
    assert teacher.grad is None
    # Scale and translation invariance, seen in the gradient: nothing along the embeddings themselves (the mean
    # distance is differentiated too) and nothing along a common shift.
    assert float((s.grad * s.detach()).sum()) == pytest.approx(0.0, abs=1e-10)
    assert torch.allclose(s.grad.sum(dim=0), torch.zeros(4, dtype=s.dtype), atol=1e-10)


def test_a_detached_mean_would_change_the_gradient_not_the_value():
    s, teacher = rand(5, 3, seed=12).requires_grad_(), rand(5, 6, seed=13)
    features.rkd_distance_loss(s, teacher).backward()

    def detached_mean(x):
        d = F.pdist(x)              # the pairs i < j, in the order of rkd_distances
        return F.huber_loss(d / d.mean().detach(), features.rkd_distances(teacher))

    x = s.detach().clone().requires_grad_()
    value = detached_mean(x)
    value.backward()
    assert float(value.detach()) == pytest.approx(float(features.rkd_distance_loss(s, teacher).detach()), abs=1e-12)
    assert not torch.allclose(x.grad, s.grad, atol=1e-6)


# ----------------------------------------------------------------------------- the authors' normalization

def _authors_distance(student, teacher):
    """Their RkdDistance: an N x N distance matrix (zero diagonal), over the mean of its positive entries,
    smooth L1 averaged over all N^2 entries."""
    def normalized(e):
        d = torch.cdist(e, e)
        return d / d[d > 0].mean()
    return F.smooth_l1_loss(normalized(student), normalized(teacher))


def _authors_angle(student, teacher):
    """Their RKdAngle: the N^3 cosines of unit difference vectors, i == k included, smooth L1 over all."""
    def cosines(e):
        unit = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
        return torch.bmm(unit, unit.transpose(1, 2)).reshape(-1)
    return F.smooth_l1_loss(cosines(student), cosines(teacher))


def test_the_authors_means_differ_by_constants_only():
    n = 9
    s, teacher = rand(n, 4, seed=14), rand(n, 10, seed=15)
    assert float(_authors_distance(s, teacher)) == pytest.approx(
        (n - 1) / n * float(features.rkd_distance_loss(s, teacher)), rel=1e-10)
    assert float(_authors_angle(s, teacher)) == pytest.approx(
        (n - 1) * (n - 2) / n ** 2 * float(features.rkd_angle_loss(s, teacher)), rel=1e-8)


# ----------------------------------------------------------------------------- errors

def test_bad_shapes_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="same examples"):
        features.rkd_distance_loss(rand(4, 3), rand(5, 3))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        features.rkd_distance_loss(rand(4, 3, 2), rand(4, 3))
    with pytest.raises(ValueError, match="at least 3"):
        features.rkd_angle_loss(rand(2, 3), rand(2, 3))
    with pytest.raises(ValueError, match="at least 2"):
        features.rkd_distance_loss(rand(1, 3), rand(1, 3))


# ----------------------------------------------------------------------------- the engine's term

def test_teacher_targets_hold_the_penultimate_embeddings():
    torch.manual_seed(0)
    teacher = build("cnn-small").eval()
    x = torch.rand(5, 1, 28, 28)
    targets = features.teacher_targets(teacher, x, batch_size=2)
    with features.capture(teacher, [features.EMBEDDING_LAYER]) as feats:
        teacher(x)
    assert targets["embedding"].shape == (5, 128)
    assert torch.allclose(targets["embedding"], feats[features.EMBEDDING_LAYER], atol=1e-6)
    # The last Linear reads exactly these (the dropout between them is the identity in eval mode).
    assert torch.allclose(teacher.head[-1](targets["embedding"]), targets["logits"], atol=1e-5)
    assert features.teacher_targets(teacher, x, embedding_layer=None)["embedding"] is None


def test_the_relation_term_is_the_reference_losses_on_the_batch():
    torch.manual_seed(0)
    teacher, student = build("cnn-small").eval(), features.cnn_student().eval()
    x = torch.rand(6, 1, 28, 28)
    idx = torch.tensor([4, 0, 2, 5, 1, 3])
    embeddings = features.teacher_targets(teacher, x)["embedding"]
    with features.capture(student, [features.EMBEDDING_LAYER]) as feats:
        logits = student(x[idx])
    batch = Batch(x[idx], torch.zeros(6, dtype=torch.long), idx, logits, dict(feats))
    term = features.RelationTerm(embeddings, distance_weight=2.0, angle_weight=3.0)
    assert term.layers == (features.EMBEDDING_LAYER,)
    s, tb = feats[features.EMBEDDING_LAYER], embeddings[idx]
    want = 2.0 * features.rkd_distance_loss(s, tb) + 3.0 * features.rkd_angle_loss(s, tb)
    assert torch.allclose(term(batch), want, atol=1e-6)
    only_distance = features.RelationTerm(embeddings, distance_weight=1.0, angle_weight=0.0)
    assert torch.allclose(only_distance(batch), features.rkd_distance_loss(s, tb), atol=1e-6)
