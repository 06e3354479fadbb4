"""Which temperature is best for which student size?

Hinton et al. (2015, section 3): with 300 or more units per hidden layer, all
temperatures above 8 gave similar results; with only 30 units, temperatures of
2.5 to 4 worked much better than higher or lower ones. A tiny student cannot
match every logit of the teacher, and a high T asks it to match the very
negative ones too; a moderate T lets it ignore them.

This experiment distills 784-W-W-10 MLP students, W in (30, 100, 300, 800),
from the course's CNN teacher at several temperatures (one shared set of
cached teacher logits), and also trains each width alone for reference.

    kdlab experiment temperature-vs-width --seed 0 --json runs/temperature-vs-width.json
"""

from __future__ import annotations

from . import Option, comma_list, register
from .contract import Outcome, Run, fast_note, format_table
from .mnist import CachedTeacher, seeded_student, teacher_for_run
from ..data import Dataset
from ..models import count_params
from ..train import train

DEFAULTS = dict(widths=(30, 100, 300, 800), temperatures=(1.0, 2.5, 4.0, 8.0, 20.0), alpha=0.9, epochs=3, lr=0.05)
# A smoke run: one epoch, a narrow and a wide student, and the temperatures the lesson reads back.
FAST = dict(epochs=1, widths=(30, 300), temperatures=(2.5, 4.0, 8.0, 20.0))
HINTON = {"text": "30 units: T of 2.5 to 4 best; 300 or more units: all T above 8 similar",
          "small_width": 30, "small_width_best_temperatures": [2.5, 4.0], "large_widths_from": 300,
          "large_widths_similar_above_temperature": 8.0}


def plot(result: dict, ax=None):
    """Test errors against temperature, one line per width, the best T of each marked."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for i, w in enumerate(result["test_errors"]):
        errs = result["test_errors"][w]
        ts = sorted(errs, key=float)
        color = f"C{i}"
        ax.plot([float(t) for t in ts], [errs[t] for t in ts], marker="o", color=color,
                label=f"{w}-{w} ({result['params'][w]:,} params)")
        best = result["best_temperature"][w]
        ax.plot([best], [errs[f"{best:g}"]], marker="*", markersize=16, color=color)
        if w in result.get("student_alone_test_errors", {}):
            ax.axhline(result["student_alone_test_errors"][w], color=color, linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xticks(result["temperatures"])
    ax.set_xticklabels([f"{t:g}" for t in result["temperatures"]])
    ax.set_yscale("log")
    import matplotlib.ticker

    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("temperature T")
    ax.set_ylabel("test errors")
    ax.set_title(f"Distilled MLP students of several widths ({result['epochs']} epochs; "
                 f"star = best T, dotted = the student alone)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax.figure


def summarize(r: dict) -> str:
    temps = [f"{t:g}" for t in r["temperatures"]]
    rows = [(f"{w}-{w}", f"{r['params'][w]:,}", r["student_alone_test_errors"][w],
             *[r["test_errors"][w][t] for t in temps], f"{r['best_temperature'][w]:g}") for w in map(str, r["widths"])]
    head = (f"temperature-vs-width: test errors of distilled MLP students (alpha={r['alpha']:g}, "
            f"{r['epochs']} epochs, {r['test_size']:,} test images; teacher {r['teacher']['test_errors']} errors)"
            + fast_note(r))
    table = format_table(("width", "params", "alone", *[f"T={t}" for t in temps], "best T"), rows, left=0)
    return "\n".join([head, "", table, "", f"Hinton 2015: {r['hinton_2015']['text']}",
                      f"whole run {r['seconds']['total']:.0f} s"])


@register("temperature-vs-width", "the best distillation temperature for MLP students of widths 30 to 800",
          options=[Option("widths", comma_list(int), help="comma-separated hidden-layer widths"),
                   Option("temperatures", comma_list(float), help="comma-separated temperatures"),
                   Option("epochs", int, help="epochs per student")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
               progress: bool = True, widths=None, temperatures=None, alpha: float | None = None,
               epochs: int | None = None, teacher: CachedTeacher | None = None) -> Outcome:
    """Distill every width at every temperature from one set of cached teacher logits, and train each alone.

    ``models``: the students, by ``(width, T)`` (T None: the student alone).
    """
    run = Run("temperature-vs-width", seed=seed, fast=fast, device=device)
    cfg = run.config(DEFAULTS, FAST, widths=widths, temperatures=temperatures, alpha=alpha, epochs=epochs)
    widths, temperatures = tuple(map(int, cfg["widths"])), tuple(map(float, cfg["temperatures"]))
    if not widths or not temperatures or min(widths) < 1 or min(temperatures) <= 0:
        raise ValueError("widths must be positive integers and temperatures positive numbers")
    td = teacher_for_run(teacher, data, run, progress)
    data = td.data
    common = dict(epochs=cfg["epochs"], lr=cfg["lr"], seed=seed, device=run.device, evaluate_every_epoch=False,
                  progress=False)

    from tqdm.auto import tqdm

    errors, alone, params, seconds, models = {}, {}, {}, {}, {}
    runs = [(w, T) for w in widths for T in (None, *temperatures)]
    for w, T in tqdm(runs, desc="students (width, T)", disable=not progress):
        student = models[w, T] = seeded_student(f"mlp-{w}x2", seed)
        params[str(w)] = count_params(student)
        if T is None:
            history = train(student, data, **common)
            alone[str(w)] = history.final_test_errors
        else:
            history = train(student, data, teacher_logits=td.train_logits, T=T, alpha=cfg["alpha"], **common)
            errors.setdefault(str(w), {})[f"{T:g}"] = history.final_test_errors
        seconds[str(w)] = round(seconds.get(str(w), 0.0) + round(history.train_seconds, 2), 2)
    best = {w: float(min(errs, key=lambda t: (errs[t], float(t)))) for w, errs in errors.items()}
    return run.finish({
        "widths": list(widths), "temperatures": list(temperatures), "alpha": cfg["alpha"],
        "epochs": cfg["epochs"], "test_errors": errors, "best_temperature": best,
        "student_alone_test_errors": alone, "params": params, "train_seconds": seconds,
        "train_size": len(data.y_train), "test_size": len(data.y_test), "hinton_2015": HINTON,
    }, teacher=td.describe(), models=models)
