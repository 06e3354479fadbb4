"""Lesson 1's temperature explorer: edit logits, drag T, press Play.

The logic is plain functions (tested without a browser); the widget only wires
them to ipywidgets:

* :func:`parse_logits` reads the editable text box;
* :func:`temperature_frame` computes what one frame shows (the softmax at T,
  its entropy, the largest possible entropy);
* :func:`next_temperature` is one Play step from the slider's current T
  (geometric, so each step changes T by the same factor, wrapping from T_MAX
  back to T_MIN); :func:`play_temperatures` lists a whole sweep;
* :func:`format_T` and :func:`percent_text` write T and the entropy share the
  way the slider's readout and the gauge show them;
* :func:`render_frame` draws a frame as HTML bars (no plotting library, so a
  redraw is instant).

:func:`temperature_explorer` builds the widget: a text box, a log-scale T
slider, a Play control whose ticks step the slider from wherever it is (Stop
rewinds T to T_MIN), and the bars.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass

import torch

from .analysis import entropy
from .losses import softmax_t

T_MIN, T_MAX = 0.1, 100.0
N_FRAMES = 61
# The slider's readout, in d3-format (the browser side). ".3" (no type) is d3's "~.3g": 3 significant digits,
# trailing zeros trimmed, which is what Python's ".3g" writes (format_T) for every T in [T_MIN, T_MAX]:
# "1", "11.5", "0.1", "100". (".3g" in d3 keeps the zeros: "1.00"; ipywidgets' Python side refuses "~".)
T_READOUT_FORMAT = ".3"


def parse_logits(text: str) -> list[float]:
    """Numbers separated by commas or spaces, e.g. ``"5, 2, 1, 0.5, -1"``.

    Raises ValueError (with a message fit to show the learner) for anything
    else, for fewer than two numbers, and for non-finite values.
    """
    parts = [p for p in re.split(r"[,\s;]+", text.strip().strip("[]()")) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not _is_number(p))
        raise ValueError(f"{bad!r} is not a number: type logits like 5, 2, 1, 0.5, -1") from None
    if len(values) < 2:
        raise ValueError("type at least two logits, e.g. 5, 2, 1")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("logits must be finite numbers")
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


@dataclass
class Frame:
    """What the widget shows for one (logits, T)."""

    logits: list[float]
    T: float
    probs: list[float]
    entropy: float          # nats
    max_entropy: float      # log N: the entropy of the uniform distribution

    @property
    def argmax(self) -> int:
        return max(range(len(self.probs)), key=self.probs.__getitem__)


def temperature_frame(logits, T: float) -> Frame:
    """Softmax of ``logits / T`` and its entropy, via kdlab's reference functions."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    p = softmax_t(z, T)
    return Frame(logits=[float(v) for v in z], T=float(T), probs=[float(v) for v in p],
                 entropy=float(entropy(p)), max_entropy=math.log(len(p)))


def play_temperatures(n_frames: int = N_FRAMES, t_min: float = T_MIN, t_max: float = T_MAX) -> list[float]:
    """The T of each Play frame: ``n_frames`` values from t_min to t_max, evenly spaced in log T."""
    if n_frames < 2 or not 0 < t_min < t_max:
        raise ValueError("need n_frames >= 2 and 0 < t_min < t_max")
    ratio = math.log(t_max / t_min)
    return [t_min * math.exp(ratio * i / (n_frames - 1)) for i in range(n_frames)]


def next_temperature(T: float, n_frames: int = N_FRAMES, t_min: float = T_MIN, t_max: float = T_MAX) -> float:
    """One Play step from ``T``: T times the sweep's constant factor, capped at t_max; from t_max, back to t_min.

    Play steps from the slider's value (not from a frame counter of its own), so it continues from
    wherever the learner left T.
    """
    if n_frames < 2 or not 0 < t_min < t_max:
        raise ValueError("need n_frames >= 2 and 0 < t_min < t_max")
    if not (math.isfinite(T) and T > 0) or T >= t_max * (1 - 1e-9):
        return t_min
    return min(T * (t_max / t_min) ** (1 / (n_frames - 1)), t_max)


def format_T(T: float) -> str:
    """T as the text and the slider's readout show it: 3 significant digits, no trailing zeros ("1", "11.5")."""
    return f"{T:.3g}"


def percent_text(share: float) -> str:
    """A share in [0, 1] as a percentage that reads 100% or 0% only when it is exactly that.

    Rounding 1.604 of 1.609 nats to "100%" would claim the uniform distribution; near the ends one
    decimal is kept instead ("99.7%"), and "<0.1%" / ">99.9%" beyond that.
    """
    p = 100 * share
    if p <= 0:
        return "0%"
    if p >= 100 * (1 - 1e-9):   # the uniform distribution, up to float rounding of the entropy
        return "100%"
    if p < 0.1:
        return "<0.1%"
    if p >= 99.95:
        return ">99.9%"
    if p < 1 or p >= 99:
        return f"{p:.1f}%"
    return f"{p:.0f}%"


def nearest_frame(T: float, temperatures: list[float]) -> int:
    """Index of the Play frame whose T is closest to ``T`` in log scale."""
    return min(range(len(temperatures)), key=lambda i: abs(math.log(temperatures[i] / T)))


def render_frame(frame: Frame, labels: list[str] | None = None) -> str:
    """HTML: one bar per class (width = probability), then the entropy gauge."""
    labels = labels or [str(i) for i in range(len(frame.probs))]
    rows = []
    for i, (label, z, p) in enumerate(zip(labels, frame.logits, frame.probs)):
        color = "#d62728" if i == frame.argmax else "#1f77b4"
        rows.append(
            "<div style='display:flex;align-items:center;gap:6px;font-family:monospace;margin:1px 0'>"
            f"<span style='width:9em;text-align:right'>{html.escape(label)} (z={z:g})</span>"
            "<span style='width:300px;background:#eee;height:14px;display:inline-block'>"
            f"<span style='width:{100 * p:.2f}%;background:{color};height:14px;display:block'></span></span>"
            f"<span>{p:.4f}</span></div>")
    share = frame.entropy / frame.max_entropy if frame.max_entropy > 0 else 0.0
    gauge = ("<div style='font-family:monospace;margin-top:6px'>"
             f"T = {format_T(frame.T)} &nbsp; entropy H = {frame.entropy:.3f} nats of at most log N = "
             f"{frame.max_entropy:.3f} ({percent_text(share)})<br>"
             "<span style='width:300px;background:#eee;height:10px;display:inline-block'>"
             f"<span style='width:{100 * share:.1f}%;background:#2ca02c;height:10px;display:block'></span>"
             "</span></div>")
    return "<div>" + "".join(rows) + gauge + "</div>"


def temperature_explorer(logits=(5.0, 2.0, 1.0, 0.5, -1.0), T: float = 1.0, labels: list[str] | None = None,
                         interval_ms: int = 120):
    """The widget: edit the logits, drag T (log scale), or press Play to sweep T.

    Returns the ``VBox``; its ``.explorer`` attribute holds the parts (text,
    slider, play, view, message) for tests and for linking more controls.
    """
    import ipywidgets as w

    temperatures = play_temperatures()
    text = w.Text(value=", ".join(f"{v:g}" for v in logits), description="logits",
                  layout=w.Layout(width="420px"), continuous_update=False)
    slider = w.FloatLogSlider(value=T, base=10, min=math.log10(T_MIN), max=math.log10(T_MAX), step=0.01,
                              description="T", readout_format=T_READOUT_FORMAT, layout=w.Layout(width="420px"))
    # While playing, Play's value is only a tick counter (it repeats forever): each tick steps T from the
    # slider's value. Set while not playing (Stop rewinds it to 0), the value is a frame: T jumps there.
    play = w.Play(value=nearest_frame(T, temperatures), min=0, max=len(temperatures) - 1, step=1,
                  interval=interval_ms, description="Play T", repeat=True, show_repeat=False)
    view = w.HTML()
    message = w.HTML()
    state = {"logits": list(map(float, logits))}

    def redraw(*_):
        view.value = render_frame(temperature_frame(state["logits"], slider.value), labels)

    def on_text(change):
        try:
            state["logits"] = parse_logits(change["new"])
            message.value = ""
        except ValueError as err:
            message.value = f"<span style='color:#d62728'>{html.escape(str(err))}</span>"
            return
        redraw()

    def on_play(change):
        slider.value = next_temperature(slider.value) if play.playing else temperatures[change["new"]]

    text.observe(on_text, names="value")
    slider.observe(redraw, names="value")
    play.observe(on_play, names="value")
    redraw()
    box = w.VBox([text, w.HBox([play, slider]), message, view])
    box.explorer = dict(text=text, slider=slider, play=play, view=view, message=message,
                        temperatures=temperatures)
    return box
