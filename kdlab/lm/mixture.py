r"""Forward against reverse KL, on the smallest example that shows the difference.

The "teacher" is a mixture of two unit-variance Gaussians at :math:`\pm d/2`,

.. math::  p(x) = w\,\mathcal N(x; -d/2, 1) + (1 - w)\,\mathcal N(x; d/2, 1),

and the "student" a single Gaussian :math:`q = \mathcal N(\mu, \sigma^2)`: too
simple to copy ``p`` once the two bumps separate. Which ``q`` is best depends
on the direction of the KL:

* minimizing the **forward** KL(p || q) matches the moments (closed form:
  :math:`\mu = \mathbb E_p[x]`, :math:`\sigma^2 = \mathrm{Var}_p[x] = 1 + w(1 - w)d^2`):
  ``q`` spreads over both modes and puts its peak in the valley between them
  (**mode covering**);
* minimizing the **reverse** KL(q || p) (no closed form: numerical, from
  several starts) makes ``q`` sit on one mode with :math:`\sigma \approx 1`
  once ``d`` is large (**mode seeking**): it pays dearly for mass where ``p``
  has none and nothing for the mode it ignores.

The logic is in plain functions (:func:`fit_forward`, :func:`fit_reverse`,
:func:`frame`, :func:`sweep`); :func:`explorer` wires a separation slider and a
weight slider to a plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# E_{N(mu, sigma^2)}[f] = sum_i W_i f(mu + sigma Z_i): the rectangle rule on a fine grid of the standard normal,
# spectrally accurate for the smooth, fast-decaying integrands here (error far below 1e-9).
_Z = np.linspace(-12.0, 12.0, 4801)
_W = np.exp(-0.5 * _Z ** 2) / math.sqrt(2 * math.pi) * (_Z[1] - _Z[0])

# The explorer's range of separations, and the format its sliders, plot title and text share (".2f": the
# slider's 0.75 is the title's 0.75, not 0.8).
D_MAX = 8.0
VALUE_FORMAT = ".2f"


def _check(separation: float, weight: float) -> tuple[float, float]:
    if not (math.isfinite(separation) and separation >= 0):
        raise ValueError(f"the separation must be a finite number >= 0, got {separation!r}")
    if not 0 < weight < 1:
        raise ValueError(f"the weight of the left mode must lie strictly between 0 and 1, got {weight!r}")
    return float(separation), float(weight)


def mixture_log_pdf(x, separation: float, weight: float = 0.5):
    """log p(x) of the two-Gaussian mixture (numpy or torch input, same kind out)."""
    lib = torch if isinstance(x, torch.Tensor) else np
    c = -0.5 * math.log(2 * math.pi)
    a = math.log(weight) + c - 0.5 * (x + separation / 2) ** 2
    b = math.log1p(-weight) + c - 0.5 * (x - separation / 2) ** 2
    return lib.logaddexp(a, b)


def gaussian_log_pdf(x, mu: float, sigma: float):
    return -0.5 * math.log(2 * math.pi) - math.log(sigma) - 0.5 * ((x - mu) / sigma) ** 2


def fit_forward(separation: float, weight: float = 0.5) -> tuple[float, float]:
    """argmin over (mu, sigma) of KL(p || q): the mixture's mean and standard deviation (moment matching)."""
    d, w = _check(separation, weight)
    mu = w * (-d / 2) + (1 - w) * (d / 2)
    var = 1.0 + w * (1 - w) * d * d
    return mu, math.sqrt(var)


def _reverse_kl_torch(mu, log_sigma, d: float, w: float):
    sigma = log_sigma.exp()
    x = mu + sigma * torch.as_tensor(_Z, dtype=torch.float64)
    expect_log_p = (torch.as_tensor(_W, dtype=torch.float64) * mixture_log_pdf(x, d, w)).sum()
    entropy = 0.5 * math.log(2 * math.pi * math.e) + log_sigma
    return -entropy - expect_log_p


def reverse_kl(mu: float, sigma: float, separation: float, weight: float = 0.5) -> float:
    """KL(q || p) for q = N(mu, sigma^2), by quadrature over q (error below 1e-9)."""
    d, w = _check(separation, weight)
    return float(_reverse_kl_torch(torch.tensor(float(mu), dtype=torch.float64),
                                   torch.tensor(math.log(sigma), dtype=torch.float64), d, w))


def forward_kl(mu: float, sigma: float, separation: float, weight: float = 0.5) -> float:
    """KL(p || q) for q = N(mu, sigma^2): E_p[log p] - E_p[log q], each mode by quadrature."""
    d, w = _check(separation, weight)
    total = 0.0
    for centre, mass in ((-d / 2, w), (d / 2, 1 - w)):
        x = centre + _Z
        f = mixture_log_pdf(x, d, w) - gaussian_log_pdf(x, mu, sigma)
        total += mass * float((_W * f).sum())
    return total


def fit_reverse(separation: float, weight: float = 0.5, starts=None) -> tuple[float, float]:
    """argmin over (mu, sigma) of KL(q || p), by L-BFGS from a start at each mode and one in between."""
    d, w = _check(separation, weight)
    starts = starts if starts is not None else (-d / 2, 0.0, d / 2)
    best = None
    for mu0 in starts:
        mu = torch.tensor(float(mu0), dtype=torch.float64, requires_grad=True)
        log_sigma = torch.tensor(math.log(fit_forward(d, w)[1]) if mu0 == 0 else 0.0, dtype=torch.float64,
                                 requires_grad=True)
        opt = torch.optim.LBFGS([mu, log_sigma], lr=1, max_iter=100, tolerance_grad=1e-12,
                                tolerance_change=1e-14, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = _reverse_kl_torch(mu, log_sigma, d, w)
            loss.backward()
            return loss

        opt.step(closure)
        value = float(_reverse_kl_torch(mu.detach(), log_sigma.detach(), d, w))
        if best is None or value < best[0] - 1e-12:
            best = (value, float(mu.detach()), float(log_sigma.detach().exp()))
    return best[1], best[2]


@dataclass
class Frame:
    """What the explorer shows for one (separation, weight)."""

    separation: float
    weight: float
    forward: tuple           # (mu, sigma) minimizing KL(p || q)
    reverse: tuple           # (mu, sigma) minimizing KL(q || p)
    forward_fit_kls: tuple   # (KL(p || q), KL(q || p)) of the forward fit
    reverse_fit_kls: tuple   # the same for the reverse fit
    p_at_forward_peak: float  # p's density at the forward fit's peak, relative to p's highest density

    def describe(self) -> str:
        (mf, sf), (mr, sr) = self.forward, self.reverse
        return (f"d = {self.separation:.2f}, w = {self.weight:.2f}:  forward fit N({mf:+.2f}, {sf:.2f}²)  "
                f"KL(p||q) {self.forward_fit_kls[0]:.3f}, KL(q||p) {self.forward_fit_kls[1]:.3f};  "
                f"reverse fit N({mr:+.2f}, {sr:.2f}²)  KL(p||q) {self.reverse_fit_kls[0]:.3f}, "
                f"KL(q||p) {self.reverse_fit_kls[1]:.3f}")


def frame(separation: float, weight: float = 0.5) -> Frame:
    d, w = _check(separation, weight)
    fwd, rev = fit_forward(d, w), fit_reverse(d, w)
    grid = np.linspace(-d / 2 - 4, d / 2 + 4, 2001)
    p = np.exp(mixture_log_pdf(grid, d, w))
    peak = float(np.exp(mixture_log_pdf(np.array([fwd[0]]), d, w))[0] / p.max())
    return Frame(d, w, fwd, rev,
                 (forward_kl(*fwd, d, w), reverse_kl(*fwd, d, w)),
                 (forward_kl(*rev, d, w), reverse_kl(*rev, d, w)), peak)


def sweep(separations, weight: float = 0.5) -> dict:
    """The two fits over a range of separations: lists keyed mu/sigma of each, and their KLs."""
    out = {k: [] for k in ("separation", "forward_mu", "forward_sigma", "reverse_mu", "reverse_sigma",
                           "forward_fit_forward_kl", "forward_fit_reverse_kl",
                           "reverse_fit_forward_kl", "reverse_fit_reverse_kl")}
    for d in separations:
        f = frame(float(d), weight)
        out["separation"].append(float(d))
        out["forward_mu"].append(f.forward[0])
        out["forward_sigma"].append(f.forward[1])
        out["reverse_mu"].append(f.reverse[0])
        out["reverse_sigma"].append(f.reverse[1])
        out["forward_fit_forward_kl"].append(f.forward_fit_kls[0])
        out["forward_fit_reverse_kl"].append(f.forward_fit_kls[1])
        out["reverse_fit_forward_kl"].append(f.reverse_fit_kls[0])
        out["reverse_fit_reverse_kl"].append(f.reverse_fit_kls[1])
    return out


def x_limits(d_max: float = D_MAX) -> tuple[float, float]:
    """The plot's x range: wide enough for every separation up to ``d_max``, so it stays put while d changes."""
    half = max(d_max, 2.0) / 2 + 4.5
    return -half, half


def draw(ax, f: Frame, d_max: float = D_MAX) -> None:
    """Plot the mixture and both fits of a frame on a matplotlib axis (fixed axes for separations up to d_max)."""
    d, w = f.separation, f.weight
    lo, hi = x_limits(max(d_max, d))
    x = np.linspace(lo, hi, 600)
    ax.clear()
    ax.fill_between(x, np.exp(mixture_log_pdf(x, d, w)), color="0.85", label="p: the mixture (teacher)")
    ax.plot(x, np.exp(gaussian_log_pdf(x, *f.forward)), color="#1f77b4", lw=2,
            label=f"argmin KL(p‖q): covers (σ = {f.forward[1]:.2f})")
    ax.plot(x, np.exp(gaussian_log_pdf(x, *f.reverse)), color="#d62728", lw=2, ls="--",
            label=f"argmin KL(q‖p): seeks (σ = {f.reverse[1]:.2f})")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, 0.45)   # every density here peaks below 1/sqrt(2 pi) = 0.399
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"separation d = {d:{VALUE_FORMAT}}, left weight w = {w:{VALUE_FORMAT}}")


def explorer(separation: float = 4.0, weight: float = 0.6):
    """A separation slider and a weight slider over the mixture; the plot and the fits' KLs redraw."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    d_slider = widgets.FloatSlider(value=separation, min=0.0, max=D_MAX, step=0.25, description="separation d",
                                   readout_format=VALUE_FORMAT, continuous_update=False,
                                   style={"description_width": "initial"})
    w_slider = widgets.FloatSlider(value=weight, min=0.05, max=0.95, step=0.05, description="left weight w",
                                   readout_format=VALUE_FORMAT, continuous_update=False,
                                   style={"description_width": "initial"})
    out = widgets.Output()
    text = widgets.HTML()

    def redraw(*_):
        f = frame(d_slider.value, w_slider.value)
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7.5, 3.2))
            draw(ax, f, d_slider.max)
            plt.show()
        text.value = (f"<code>{f.describe()}</code><br>p's density at the forward fit's peak: "
                      f"{100 * f.p_at_forward_peak:.0f}% of its highest")

    d_slider.observe(redraw, names="value")
    w_slider.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([d_slider, w_slider]), out, text])
    display(box)
    return box
