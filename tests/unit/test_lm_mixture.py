"""Forward against reverse KL on a mixture of two Gaussians (kdlab/lm/mixture.py) and its widget."""

import math

import numpy as np
import pytest

from kdlab.lm import mixture


def grid_kls(mu, sigma, d, w):
    x = np.linspace(-d / 2 - 12, d / 2 + 12, 200001)
    dx = x[1] - x[0]
    lp, lq = mixture.mixture_log_pdf(x, d, w), mixture.gaussian_log_pdf(x, mu, sigma)
    return float((np.exp(lp) * (lp - lq)).sum() * dx), float((np.exp(lq) * (lq - lp)).sum() * dx)


def test_the_kls_agree_with_a_brute_force_integral():
    for mu, sigma, d, w in [(0.0, 1.0, 0.0, 0.5), (1.0, 2.0, 4.0, 0.6), (-3.0, 0.7, 6.0, 0.3)]:
        fwd, rev = grid_kls(mu, sigma, d, w)
        assert mixture.forward_kl(mu, sigma, d, w) == pytest.approx(fwd, abs=1e-6)
        assert mixture.reverse_kl(mu, sigma, d, w) == pytest.approx(rev, abs=1e-6)


@pytest.mark.parametrize("d,w", [(1.0, 0.5), (4.0, 0.6), (6.0, 0.5), (7.0, 0.3)])
def test_each_fit_minimizes_its_own_direction(d, w):
    for fit, kl in ((mixture.fit_forward, mixture.forward_kl), (mixture.fit_reverse, mixture.reverse_kl)):
        mu, sigma = fit(d, w)
        best = kl(mu, sigma, d, w)
        for dm in (-0.2, 0.0, 0.2):
            for ds in (0.9, 1.0, 1.1):
                assert kl(mu + dm, sigma * ds, d, w) >= best - 1e-9


def test_mode_covering_against_mode_seeking():
    # close modes: one bump, the two fits nearly agree
    near = mixture.frame(1.0, 0.5)
    assert near.forward[1] == pytest.approx(near.reverse[1], rel=0.02)
    # far modes: the forward fit straddles both (peak in the valley), the reverse fit sits on one mode
    far = mixture.frame(6.0, 0.6)
    assert far.forward[1] == pytest.approx(math.sqrt(1 + 0.24 * 36))
    assert far.reverse[0] == pytest.approx(-3.0, abs=0.05) and far.reverse[1] == pytest.approx(1.0, abs=0.05)
    assert far.p_at_forward_peak < 0.1
    # each fit wins in its own direction and loses in the other
    assert far.forward_fit_kls[0] < far.reverse_fit_kls[0] and far.reverse_fit_kls[1] < far.forward_fit_kls[1]
    s = mixture.sweep([0.0, 2.0, 4.0, 6.0, 8.0], weight=0.5)
    assert s["forward_sigma"] == sorted(s["forward_sigma"])            # the forward fit keeps widening
    assert s["reverse_sigma"][-1] == pytest.approx(1.0, abs=0.02)      # the reverse fit returns to one mode
    assert abs(s["reverse_mu"][-1]) == pytest.approx(4.0, abs=0.02)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError):
        mixture.frame(-1.0)
    with pytest.raises(ValueError):
        mixture.fit_forward(2.0, 1.0)


def test_the_explorer_builds_and_redraws(monkeypatch):
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: plt.close("all"))
    box = mixture.explorer(separation=5.0, weight=0.6)
    sliders = box.children[0].children
    text = box.children[2]
    assert "d = 5.00" in text.value
    sliders[0].value = 7.0
    assert "d = 7.00" in text.value and "reverse fit" in text.value


def test_the_plot_title_agrees_with_the_slider_and_the_axes_stay_put(monkeypatch):
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []

    def show(*a, **k):   # what the learner would see: each redraw's title and axis limits
        ax = plt.gcf().axes[0]
        shown.append((ax.get_title(), ax.get_xlim(), ax.get_ylim()))
        plt.close("all")

    monkeypatch.setattr(plt, "show", show)
    box = mixture.explorer(separation=4.0, weight=0.6)
    d_slider, w_slider = box.children[0].children
    for d in (0.75, 8.0, 0.0, 2.25):
        d_slider.value = d
    w_slider.value = 0.35
    assert d_slider.readout_format == w_slider.readout_format == mixture.VALUE_FORMAT
    # the slider shows format(value, readout_format); the title must say the same number
    assert [t for t, _, _ in shown] == [
        f"separation d = {format(d, mixture.VALUE_FORMAT)}, left weight w = {format(w, mixture.VALUE_FORMAT)}"
        for d, w in [(4.0, 0.6), (0.75, 0.6), (8.0, 0.6), (0.0, 0.6), (2.25, 0.6), (2.25, 0.35)]]
    assert "d = 0.75," in shown[1][0]
    # one x range and one y range for every separation: nothing rescales while the slider moves
    assert {lim for _, lim, _ in shown} == {mixture.x_limits(d_slider.max)}
    assert {lim for _, _, lim in shown} == {(0.0, 0.45)}
    # and the widest setting still fits: p's modes at +-d/2 lie well inside it
    lo, hi = mixture.x_limits(d_slider.max)
    assert lo <= -d_slider.max / 2 - 4 and hi >= d_slider.max / 2 + 4
