r"""Lesson 3: how big is the soft term's gradient, with and without the T² factor, from T = 1 to 64?

The soft term's gradient with respect to one example's student logits is
$\frac{1}{T}(q - p)$ without the factor and $T\,(q - p)$ with it
($q = \mathrm{softmax}(z/T)$, $p = \mathrm{softmax}(v/T)$). Once $T$ is large
against the logit gaps, $q - p \approx (\bar z - \bar v)/(NT)$ for centred
logits, so the first shrinks like $1/T^2$ and the second tends to
$(\bar z - \bar v)/N$: the T² factor makes the gradient's size independent of
T *in that limit*. At the temperatures people use (1 to 8) T is not large
against a trained teacher's logit gaps, and this experiment measures how much
the size still moves.

On lesson 3's teacher (kdlab.zoo's ``mlp-teacher``, the 1200-1200 MLP of
lessons 2-3) and two of its students, both lesson 3's ``mlp-100x2``: *fresh*
(its initial weights, as in lesson 3's section 4) and *trained* (the same
initial weights after one epoch of the course's KD loss at T = 4,
alpha = 0.9, lesson 3's settings). For each T it reports the per-example
gradient norm, $\lVert T(q-p)\rVert_2$ and $\lVert (q-p)/T\rVert_2$, averaged over
the test images, from autograd of ``kdlab.losses.kd_kl`` (checked against the
closed form).

    kdlab experiment t-squared --seed 0 --json runs/t-squared.json
"""

from __future__ import annotations

import math

import torch

from .. import losses
from ..data import Dataset
from ..models import count_params
from ..train import evaluate, predict_logits, train
from . import Option, comma_list, register
from .contract import Outcome, Run, fast_note, format_table
from .mnist import CachedTeacher, cached_teacher, seeded_student

DEFAULTS = {"temperatures": (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0),
            "arch": "mlp-100x2", "images": 10_000, "epochs": 1, "temperature": 4.0, "alpha": 0.9, "lr": 0.05}
FAST: dict = {}   # the fast data slice is enough
TEACHER_RECIPE = "mlp-teacher"   # lessons 2-3's teacher
STUDENTS = ("fresh", "trained")
RATIO_BETWEEN = (1.0, 8.0)       # the ratio the lesson and the cheat sheet quote


def gradient_sizes(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperatures) -> dict:
    """Mean per-example norm of the soft term's gradient w.r.t. the student logits, with and without T².

    ``with_t2[i]`` averages $\\lVert T(q-p)\\rVert_2$ over the rows at ``temperatures[i]``
    (autograd of ``kd_kl``, whose batch mean is undone), ``without_t2[i]`` the
    same gradient divided by T²; ``closed_form_error`` is the largest gap to
    $T(q-p)$ computed directly.
    """
    with_t2, without_t2, worst = [], [], 0.0
    for T in temperatures:
        s = student_logits.detach().clone().requires_grad_(True)
        # kd_kl = T^2 * mean over rows of KL: times the row count, each row's gradient is T^2 * (q - p) / T
        (grad,) = torch.autograd.grad(losses.kd_kl(s, teacher_logits, T) * len(s), s)
        closed = T * T * losses.kd_logit_grad(student_logits, teacher_logits, T)
        worst = max(worst, float((grad - closed).abs().max()))
        with_t2.append(float(grad.norm(dim=-1).mean()))
        without_t2.append(float((grad / (T * T)).norm(dim=-1).mean()))
    return {"with_t2": with_t2, "without_t2": without_t2, "closed_form_error": worst}


def high_t_limit(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Mean norm of $(\\bar z - \\bar v)/N$ (centred logits): where $T(q - p)$ goes as $T \\to \\infty$."""
    z = student_logits - student_logits.mean(-1, keepdim=True)
    v = teacher_logits - teacher_logits.mean(-1, keepdim=True)
    return float(((z - v) / z.shape[-1]).norm(dim=-1).mean())


def logit_gaps(logits: torch.Tensor) -> dict:
    """Mean gap between the top two logits, and mean range (largest minus smallest), per example."""
    top2 = logits.topk(2, dim=-1).values
    return {"top2_mean": float((top2[:, 0] - top2[:, 1]).mean()),
            "range_mean": float((logits.max(-1).values - logits.min(-1).values).mean())}


def _slope(ts, ys, lo, hi) -> float:
    i, j = ts.index(lo), ts.index(hi)
    return math.log(ys[j] / ys[i]) / math.log(hi / lo)


def _ratio(ts, ys, a, b):
    return ys[ts.index(b)] / ys[ts.index(a)] if a in ts and b in ts else None


def summarize(r: dict) -> str:
    ts = r["temperatures"]
    s = r["students"]
    head = (f"t-squared: the soft term's gradient w.r.t. the student's logits, mean per-example L2 norm over "
            f"{r['images']:,} test images; teacher {r['teacher']['arch']} ({r['teacher']['test_errors']} test errors), "
            f"students {r['arch']}" + fast_note(r))
    rows = [(f"{t:g}", *(f"{s[k][m][i]:.4f}" for k in STUDENTS for m in ("with_t2", "without_t2")))
            for i, t in enumerate(ts)]
    limit = ("T -> inf", *(x for k in STUDENTS for x in (f"{s[k]['high_t_limit']:.4f}", "0")))
    table = format_table(("T", "fresh: with T²", "without", "trained: with T²", "without"), rows, footer=limit)
    a, b = RATIO_BETWEEN
    foot = []
    for k in STUDENTS:
        x = s[k]
        ratio = "" if x["ratio_with_t2"] is None else (
            f"with T² the gradient at T = {b:g} is {x['ratio_with_t2']:.2f}x the one at T = {a:g} "
            f"(without T²: {x['ratio_without_t2']:.4f}x); ")
        slope = x["slope"]
        slope = "" if slope["with_t2"] is None else (
            f"log-log slope from T = {slope['from']:g} to {slope['to']:g}: {slope['with_t2']:+.2f} with T², "
            f"{slope['without_t2']:+.2f} without (large-T theory: 0 and -2)")
        foot.append(f"{k} student ({x['description']}, {x['test_errors']} test errors): {ratio}{slope}")
    gaps = r["teacher"]["logit_gaps"]
    foot.append(f"the teacher's logits: top-two gap {gaps['top2_mean']:.1f}, range {gaps['range_mean']:.1f} on average "
                f"(T is 'large' only against these); autograd against T(q - p): max difference "
                f"{max(s[k]['closed_form_error'] for k in STUDENTS):.1e}")
    foot.append(f"whole run {r['seconds']['total']:.1f} s")
    return "\n".join([head, "", table, "", *foot])


def plot(result: dict, ax=None):
    """Gradient size against T (log-log), with and without T², one colour per student; the large-T limits dashed."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    ts = result["temperatures"]
    for i, key in enumerate(STUDENTS):
        x = result["students"][key]
        ax.loglog(ts, x["with_t2"], "o-", color=f"C{i}", label=f"{key} student, with T² (kd_kl)")
        ax.loglog(ts, x["without_t2"], "s:", color=f"C{i}", label=f"{key} student, without T²")
        ax.axhline(x["high_t_limit"], color=f"C{i}", linestyle="--", linewidth=0.8)
    ax.set_xticks(ts)
    ax.set_xticklabels([f"{t:g}" for t in ts])
    ax.set_xlabel("temperature T")
    ax.set_ylabel("mean ‖∂ soft term / ∂ student logits‖")
    ax.set_title("the soft term's gradient against T (dashed: the large-T limit of T(q - p))", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


@register("t-squared", "lesson 3: the soft term's gradient against T (1 to 64), with and without the T² factor, "
          "on lesson 3's MLP teacher and a fresh and a trained student",
          options=[Option("temperatures", comma_list(float), help="temperatures to measure"),
                   Option("images", int, help="average over the first N test images (all of them when the test set is smaller)"),
                   Option("epochs", int, help="epochs of KD for the trained student")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
               progress: bool = True, temperatures=None, images: int | None = None, epochs: int | None = None,
               teacher: CachedTeacher | None = None) -> Outcome:
    """Measure both students' soft gradients at every temperature; ``models`` holds the teacher and both students."""
    run = Run("t-squared", seed=seed, fast=fast, device=device)
    cfg = run.config(DEFAULTS, FAST, temperatures=temperatures, images=images, epochs=epochs)
    ts = sorted({float(t) for t in cfg["temperatures"]})
    if not ts or ts[0] <= 0 or not all(math.isfinite(t) for t in ts):
        raise ValueError(f"temperatures must be positive numbers, got {cfg['temperatures']!r}")
    if teacher is not None and data is not None and data is not teacher.data:
        raise ValueError("pass data or a cached teacher (which carries its data), not both")
    with run.timed("teacher"):   # loading the data and the teacher, or training it on first use
        td = teacher if teacher is not None else cached_teacher(
            seed=seed, fast=run.fast, data=data, device=run.device, recipe=TEACHER_RECIPE, progress=progress)
    data = td.data
    n = min(int(cfg["images"]), len(data.y_test))
    if n < 1:
        raise ValueError(f"images must be at least 1, got {cfg['images']!r}")
    t_logits = td.test_logits[:n]

    students = {"fresh": seeded_student(cfg["arch"], seed)}
    with run.timed("train"):
        students["trained"] = seeded_student(cfg["arch"], seed)
        train(students["trained"], data, teacher_logits=td.train_logits, T=cfg["temperature"], alpha=cfg["alpha"],
              epochs=cfg["epochs"], lr=cfg["lr"], seed=seed, device=run.device, evaluate_every_epoch=False,
              progress=progress, desc="the trained student")
    descriptions = {"fresh": "initial weights, lesson 3's section 4",
                    "trained": f"{cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''} of KD, T = {cfg['temperature']:g}, alpha = {cfg['alpha']:g}"}
    a, b = RATIO_BETWEEN
    hi = ts[-1]
    lo = max([t for t in ts if t <= hi / 4] or [ts[0]])
    out = {}
    with run.timed("measure"):
        for key, model in students.items():
            model.to(run.device)
            s_logits = predict_logits(model, data.x_test[:n])
            sizes = gradient_sizes(s_logits, t_logits, ts)
            out[key] = {
                "description": descriptions[key],
                "test_errors": evaluate(model, data.x_test, data.y_test)["test_errors"],
                **sizes,
                "high_t_limit": high_t_limit(s_logits, t_logits),
                "ratio_with_t2": _ratio(ts, sizes["with_t2"], a, b),
                "ratio_without_t2": _ratio(ts, sizes["without_t2"], a, b),
                "slope": {"from": lo, "to": hi,
                          "with_t2": _slope(ts, sizes["with_t2"], lo, hi) if lo < hi else None,
                          "without_t2": _slope(ts, sizes["without_t2"], lo, hi) if lo < hi else None},
                "logit_gaps": logit_gaps(s_logits),
            }
    return run.finish({
        "arch": cfg["arch"], "temperatures": ts, "images": n, "ratio_between": list(RATIO_BETWEEN),
        "students": out,
        "ratio_with_t2": {k: out[k]["ratio_with_t2"] for k in STUDENTS},
        "trained_student": {"epochs": cfg["epochs"], "temperature": cfg["temperature"], "alpha": cfg["alpha"],
                            "lr": cfg["lr"]},
        "train_size": len(data.y_train), "test_size": len(data.y_test),
    }, teacher={**td.describe(), "params": count_params(td.model), "logit_gaps": logit_gaps(t_logits)},
        models={"teacher": td.model, **students})
