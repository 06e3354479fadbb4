"""Lesson 1's temperature explorer (kdlab/widgets.py): Play continues from the slider, and the numbers agree.

The widget is driven as the browser drives it: ipywidgets' Play sets ``playing``
before its first tick, each tick adds 1 to ``value`` (wrapping to 0 with
repeat), and Stop sets ``playing`` to False, then ``value`` to 0.
"""

import math

import pytest

from kdlab import widgets

LOGITS = [5, 2, 1, 0.5, -1]
RATIO = (widgets.T_MAX / widgets.T_MIN) ** (1 / (widgets.N_FRAMES - 1))


def test_a_play_step_multiplies_t_by_the_sweeps_factor_and_wraps():
    assert widgets.next_temperature(11.5) == pytest.approx(11.5 * RATIO)
    assert widgets.next_temperature(99.0) == widgets.T_MAX            # capped at the end of the range
    assert widgets.next_temperature(widgets.T_MAX) == widgets.T_MIN   # then back to the start
    # from T_MIN, the steps are the sweep the lesson prints (play_temperatures)
    t, seen = widgets.T_MIN, [widgets.T_MIN]
    for _ in range(widgets.N_FRAMES - 1):
        t = widgets.next_temperature(t)
        seen.append(t)
    assert seen == pytest.approx(widgets.play_temperatures())
    with pytest.raises(ValueError):
        widgets.next_temperature(1.0, n_frames=1)


def tick(play):
    """One tick of the browser's Play loop."""
    play.value = play.min if play.value >= play.max else play.value + 1


def test_play_continues_from_the_slider_not_from_its_own_counter():
    pytest.importorskip("ipywidgets")
    parts = widgets.temperature_explorer(LOGITS, T=1.0).explorer
    slider, play, view = parts["slider"], parts["play"], parts["view"]
    for _ in range(3):   # play a little from T = 1, then pause
        play.playing = True
        tick(play)
    play.playing = False
    slider.value = 11.5   # the learner sets T = 11.5, then presses Play
    play.playing = True
    tick(play)
    assert slider.value == pytest.approx(11.5 * RATIO)
    assert "T = 12.9 " in view.value
    tick(play)
    assert slider.value == pytest.approx(11.5 * RATIO ** 2)
    # at the counter's end it wraps, and T still steps from where it is
    play.value = play.max
    before = slider.value
    tick(play)
    assert play.value == 0 and slider.value == pytest.approx(before * RATIO)
    # Stop: playing off, then the counter back to 0, which rewinds T to the sweep's start
    play.playing = False
    play.value = 0 if play.value else 1
    play.value = 0
    assert slider.value == pytest.approx(widgets.T_MIN)


def test_the_slider_readout_and_the_text_write_t_alike():
    pytest.importorskip("ipywidgets")
    parts = widgets.temperature_explorer(LOGITS, T=1.0).explorer
    # d3-format with no type trims trailing zeros, like Python's "g"; ".3g" in d3 would show "1.00"
    assert parts["slider"].readout_format == widgets.T_READOUT_FORMAT == ".3"
    assert "T = 1 &nbsp;" in parts["view"].value
    for t, shown in [(1.0, "1"), (11.5, "11.5"), (0.1, "0.1"), (100.0, "100"), (2.0, "2"), (0.125893, "0.126")]:
        assert widgets.format_T(t) == shown
        parts["slider"].value = t
        assert f"T = {shown} &nbsp;" in parts["view"].value
    for t in widgets.play_temperatures():   # never a trailing zero, never e-notation, within the slider's range
        text = widgets.format_T(t)
        assert "e" not in text and not ("." in text and text.endswith("0")), text


def test_the_entropy_gauge_says_100_percent_only_when_it_is():
    near = widgets.temperature_frame(LOGITS, 20.0)   # H = 1.604 of log 5 = 1.609 nats
    assert 0.99 < near.entropy / near.max_entropy < 0.9995
    page = widgets.render_frame(near)
    assert "(100%)" not in page and "(99.7%)" in page
    assert "(100%)" in widgets.render_frame(widgets.temperature_frame([3, 3, 3], 1.0))   # uniform: really 100%
    cold = widgets.render_frame(widgets.temperature_frame([1000, 0, 0], 0.1))
    assert "(0%)" in cold or "(<0.1%)" in cold
    cases = {0.0: "0%", 1.0: "100%", 0.42: "42%", 0.9969: "99.7%", 0.9999: ">99.9%", 0.0004: "<0.1%",
             0.004: "0.4%", 0.995: "99.5%", 0.5: "50%"}
    assert {share: widgets.percent_text(share) for share in cases} == cases
    for share in [i / 1000 for i in range(1, 1000)]:   # strictly between: never rounds to an end
        assert widgets.percent_text(share) not in ("0%", "100%")
    assert widgets.percent_text(math.nextafter(1.0, 0.0)) == "100%"   # float rounding of a uniform entropy
