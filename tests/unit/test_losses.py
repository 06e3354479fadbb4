import math

import pytest
import torch
import torch.nn.functional as F

from kdlab.losses import distillation_loss, kd_kl, kd_logit_grad, softmax_t



@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons need double precision; restored after each test."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# ----------------------------------------------------------------------------- softmax_t

def test_softmax_t_hand_computed():
    # softmax([0, ln 3] / 1) = [1/4, 3/4]; at T = 2: [1, sqrt 3] / (1 + sqrt 3)
    z = torch.tensor([0.0, math.log(3.0)])
    assert torch.allclose(softmax_t(z, 1.0), torch.tensor([0.25, 0.75]))
    s3 = math.sqrt(3.0)
    assert torch.allclose(softmax_t(z, 2.0), torch.tensor([1 / (1 + s3), s3 / (1 + s3)]))


def test_softmax_t_limits_and_ranking():
    z = torch.tensor([3.0, 1.0, 0.2, -2.0])
    assert torch.allclose(softmax_t(z, 1e-3), F.one_hot(torch.tensor(0), 4).double(), atol=1e-12)
    assert torch.allclose(softmax_t(z, 1e6), torch.full((4,), 0.25), atol=1e-5)
    for T in (0.5, 1, 4, 20):
        assert torch.equal(softmax_t(z, T).argsort(), z.argsort())


def test_softmax_t_stable_on_huge_logits_any_batch_shape():
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    p = softmax_t(z, 1.0)
    assert torch.isfinite(p).all()
    assert torch.allclose(p[0], torch.tensor([1.0, 0.0, 0.0])) and torch.allclose(p[1], torch.full((3,), 1 / 3))
    z3 = torch.randn(2, 3, 5)
    assert torch.allclose(softmax_t(z3, 3.0), torch.softmax(z3 / 3.0, dim=-1))
    assert torch.allclose(softmax_t(z3, 3.0).sum(-1), torch.ones(2, 3))


@pytest.mark.parametrize("T", [0, -1, float("nan"), float("inf"), "2", True])
def test_bad_temperature(T):
    with pytest.raises(ValueError, match="temperature"):
        softmax_t(torch.zeros(3), T)


def test_non_finite_logits_rejected():
    with pytest.raises(ValueError, match="NaN or infinite"):
        softmax_t(torch.tensor([0.0, float("nan")]), 1.0)
    with pytest.raises(ValueError, match="scalar"):
        softmax_t(torch.tensor(1.0), 1.0)


# ----------------------------------------------------------------------------- kd_kl

def test_kd_kl_hand_computed():
    # One example, teacher p = [1/4, 3/4], student q = [1/2, 1/2], T = 1:
    # KL = 1/4 ln(1/2) + 3/4 ln(3/2)
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[0.0, math.log(3.0)]])
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert kd_kl(s, t, 1.0).item() == pytest.approx(expected, rel=1e-12)
    # At T = 2 the logits are halved and the result is scaled by T^2 = 4.
    p = torch.tensor([1.0, math.sqrt(3.0)]) / (1 + math.sqrt(3.0))
    assert kd_kl(s, t, 2.0).item() == pytest.approx(4 * float((p * (p / 0.5).log()).sum()), rel=1e-12)


def test_kd_kl_matches_torch_kl_div_batchmean():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g) * 3
    for T in (1.0, 2.0, 8.0):
        ref = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T * T
        assert torch.allclose(kd_kl(s, t, T), ref)


def test_kd_kl_properties():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    assert kd_kl(t, t, 3.0).abs() < 1e-12                      # zero at the teacher
    assert kd_kl(s, t, 3.0) > 0                                 # positive elsewhere
    assert not torch.allclose(kd_kl(s, t, 3.0), kd_kl(t, s, 3.0))  # direction matters
    # batchmean: duplicating the batch leaves the value unchanged
    assert torch.allclose(kd_kl(s, t, 3.0), kd_kl(torch.cat([s, s]), torch.cat([t, t]), 3.0))
    # any leading shape: (2, 4, 10) is 8 distributions
    assert torch.allclose(kd_kl(s.view(2, 4, 10), t.view(2, 4, 10), 3.0), kd_kl(s, t, 3.0))


def test_kd_kl_gradient_stops_at_teacher():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    kd_kl(s, t, 4.0).backward()
    assert s.grad is not None and t.grad is None


def test_kd_kl_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        kd_kl(torch.zeros(4, 10), torch.zeros(4, 9), 2.0)


# ----------------------------------------------------------------------------- distillation_loss

def test_distillation_loss_blend_and_alpha_semantics():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    ce = F.cross_entropy(s, y)
    soft = kd_kl(s, t, 4.0)
    assert torch.allclose(distillation_loss(s, t, y, 4.0, 0.0), ce)         # alpha = 0: hard labels only
    assert torch.allclose(distillation_loss(s, t, y, 4.0, 1.0), soft)       # alpha = 1: soft targets only
    assert torch.allclose(distillation_loss(s, t, y, 4.0, 0.3), 0.3 * soft + 0.7 * ce)
    # the hard term is at T = 1, whatever T is
    assert torch.allclose(distillation_loss(s, t, y, 20.0, 0.0), ce)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), None])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 2.0, alpha)


def test_bad_labels():
    s = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="labels must have shape"):
        distillation_loss(s, s, torch.zeros(3, dtype=torch.long), 2.0, 0.5)
    with pytest.raises(ValueError, match="lie in"):
        distillation_loss(s, s, torch.tensor([0, 3]), 2.0, 0.5)
    with pytest.raises(ValueError, match="integer"):
        distillation_loss(s, s, torch.tensor([0.0, 1.0]), 2.0, 0.5)


def test_a_label_mask_keeps_the_cross_entropy_to_the_labeled_rows():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    m = torch.tensor([True, False, False, True, True, False, False, False])
    soft = kd_kl(s, t, 4.0)
    assert torch.allclose(distillation_loss(s, t, y, 4.0, 0.7, labeled=m),
                          0.7 * soft + 0.3 * F.cross_entropy(s[m], y[m]))
    assert torch.allclose(distillation_loss(s, t, y, 4.0, 0.7, labeled=torch.ones(8, dtype=torch.bool)),
                          distillation_loss(s, t, y, 4.0, 0.7))
    assert torch.allclose(distillation_loss(s, t, y, 4.0, 0.7, labeled=torch.zeros(8, dtype=torch.bool)), 0.7 * soft)
    assert distillation_loss(s, t, y, 4.0, 0.0, labeled=torch.zeros(8, dtype=torch.bool)) is None  # nothing left
    with pytest.raises(ValueError, match="boolean mask"):
        distillation_loss(s, t, y, 4.0, 0.7, labeled=m.long())


def test_validate_false_skips_the_checks_not_the_arithmetic():
    from kdlab.losses import check_alpha, check_temperature

    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    y = torch.randint(0, 7, (5,), generator=g)
    for T, alpha in [(1.0, 0.0), (4.0, 0.9), (2.0, 1.0)]:
        assert torch.equal(distillation_loss(s, t, y, T, alpha, validate=False), distillation_loss(s, t, y, T, alpha))
        assert torch.equal(kd_kl(s, t, T, validate=False), kd_kl(s, t, T))
    assert check_temperature(torch.tensor(2)) == 2.0 and check_alpha(1) == 1.0
    with pytest.raises(ValueError, match="temperature"):
        check_temperature(0)
    with pytest.raises(ValueError, match="alpha"):
        check_alpha(1.5)


# ----------------------------------------------------------------------------- kd_logit_grad

def test_closed_form_gradient_matches_autograd():
    g = torch.Generator().manual_seed(3)
    for T in (1.0, 3.0, 20.0):
        s = torch.randn(5, 10, generator=g, requires_grad=True)
        t = torch.randn(5, 10, generator=g)
        # Sum of per-example KLs: each row's gradient is that example's own.
        (kd_kl(s, t, T) * len(s) / T ** 2).backward()
        assert torch.allclose(kd_logit_grad(s, t, T), s.grad, atol=1e-12)


def test_high_temperature_limit_is_logit_matching():
    # Hinton et al. section 2.1: for zero-mean logits, (1/T)(q - p) -> (z - v) / (N T^2).
    g = torch.Generator().manual_seed(4)
    z, v = torch.randn(3, 10, generator=g), torch.randn(3, 10, generator=g)
    z, v = z - z.mean(-1, keepdim=True), v - v.mean(-1, keepdim=True)
    n = z.shape[-1]
    errors = []
    for T in (10.0, 100.0, 1000.0):
        limit = (z - v) / (n * T ** 2)
        rel = float((kd_logit_grad(z, v, T) - limit).norm() / limit.norm())
        errors.append(rel)
    assert errors[0] < 0.2 and errors[1] < errors[0] / 5 and errors[2] < 1e-3
    # And there, with T large against the logit gaps (logits of size 1, T >= 10), the T^2 factor keeps the kd_kl
    # gradient at one scale; at T = 1 to 8 it is not (lesson 3, kdlab experiment t-squared).
    scaled = [float((T ** 2 * kd_logit_grad(z, v, T)).norm()) for T in (10.0, 100.0, 1000.0)]
    assert max(scaled) / min(scaled) < 1.3
