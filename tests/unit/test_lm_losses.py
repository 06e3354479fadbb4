"""The reference token-level divergences of lesson 9 (kdlab/lm/losses.py)."""

import math

import pytest
import torch

from kdlab.lm.losses import forward_kl, generalized_jsd, reverse_kl


def rand(*shape, seed=0, scale=2.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def kl_rows(log_a, log_b):
    return (log_a.exp() * (log_a - log_b)).sum(-1)


def test_forward_and_reverse_kl_are_the_two_directions_averaged_over_positions():
    t, s = rand(3, 4, 5, seed=1), rand(3, 4, 5, seed=2)
    lp, lq = torch.log_softmax(t, -1), torch.log_softmax(s, -1)
    assert torch.allclose(forward_kl(t, s), kl_rows(lp, lq).mean())
    assert torch.allclose(reverse_kl(t, s), kl_rows(lq, lp).mean())
    assert torch.allclose(forward_kl(t, s), reverse_kl(s, t))
    assert not torch.allclose(forward_kl(t, s), reverse_kl(t, s))
    # the same as torch's kl_div on flattened rows with batchmean
    flat_t, flat_s = t.reshape(-1, 5), s.reshape(-1, 5)
    ref = torch.nn.functional.kl_div(torch.log_softmax(flat_s, -1), torch.log_softmax(flat_t, -1),
                                     reduction="batchmean", log_target=True)
    assert torch.allclose(forward_kl(t, s), ref)
    assert forward_kl(t, t).abs() < 1e-12 and reverse_kl(s, s).abs() < 1e-12


def test_divergences_are_stable_and_leave_the_teacher_alone():
    t = torch.tensor([[1e4, 0.0, -1e4]], dtype=torch.float64)
    s = torch.tensor([[0.0, 1e4, -1e4]], dtype=torch.float64, requires_grad=True)
    tt = t.clone().requires_grad_(True)
    for fn in (forward_kl, reverse_kl, lambda a, b: generalized_jsd(a, b, 0.3)):
        value = fn(tt, s)
        assert torch.isfinite(value)
        value.backward()
        assert tt.grad is None or tt.grad.abs().max() == 0
        assert s.grad is not None and torch.isfinite(s.grad).all()
        s.grad = None


def test_generalized_jsd_definition_and_limits():
    t, s = rand(6, 7, seed=3), rand(6, 7, seed=4)
    lp, lq = torch.log_softmax(t, -1), torch.log_softmax(s, -1)
    for beta in (0.1, 0.5, 0.9):
        m = beta * lp.exp() + (1 - beta) * lq.exp()
        want = (beta * kl_rows(lp, m.log()) + (1 - beta) * kl_rows(lq, m.log())).mean()
        assert torch.allclose(generalized_jsd(t, s, beta), want)
    # beta = 0.5 is the ordinary JSD: symmetric, at most log 2
    assert torch.allclose(generalized_jsd(t, s, 0.5), generalized_jsd(s, t, 0.5))
    far = generalized_jsd(torch.tensor([[50.0, -50.0]]), torch.tensor([[-50.0, 50.0]]), 0.5)
    assert far <= math.log(2) and far == pytest.approx(math.log(2), rel=1e-6)
    # the limits: JSD(beta) / beta -> forward KL as beta -> 0, JSD(beta) / (1 - beta) -> reverse KL as beta -> 1
    eps = 1e-5
    assert float(generalized_jsd(t, s, eps) / eps) == pytest.approx(float(forward_kl(t, s)), rel=1e-3)
    assert float(generalized_jsd(t, s, 1 - eps) / eps) == pytest.approx(float(reverse_kl(t, s)), rel=1e-3)
    for beta in (0, 1, -0.5, 1.5, True):
        with pytest.raises(ValueError):
            generalized_jsd(t, s, beta)


def test_shapes_are_checked():
    with pytest.raises(ValueError):
        forward_kl(rand(2, 5), rand(2, 4))
    with pytest.raises(ValueError):
        reverse_kl(torch.tensor(1.0), torch.tensor(2.0))
