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

import time

from . import Option, register
from ._mnist_common import TeacherAndData, fit, pick_epochs, seeded_student, teacher_and_data
from ..models import count_params

WIDTHS = (30, 100, 300, 800)
TEMPERATURES = (1.0, 2.5, 4.0, 8.0, 20.0)
DEFAULTS = dict(alpha=0.9, epochs=3, lr=0.05)


def _parse_list(text, cast):
    if isinstance(text, str):
        return tuple(cast(v) for v in text.replace(" ", "").split(",") if v)
    return tuple(cast(v) for v in text)


def experiment(seed: int = 0, *, widths=WIDTHS, temperatures=TEMPERATURES, alpha: float = DEFAULTS["alpha"],
               epochs: int | None = None, progress: bool = True, shared: TeacherAndData | None = None) -> dict:
    start = time.perf_counter()
    widths, temperatures = _parse_list(widths, int), _parse_list(temperatures, float)
    if not widths or not temperatures or min(widths) < 1 or min(temperatures) <= 0:
        raise ValueError("widths must be positive integers and temperatures positive numbers")
    td = shared or teacher_and_data(seed, progress)
    data = td.data
    epochs = epochs if epochs is not None else pick_epochs(DEFAULTS["epochs"], 1)
    common = dict(y=data.y_train, epochs=epochs, lr=DEFAULTS["lr"], seed=seed, x_test=data.x_test,
                  y_test=data.y_test, progress=False)

    from tqdm.auto import tqdm

    errors, alone, params, seconds = {}, {}, {}, {}
    runs = [(w, T) for w in widths for T in (None, *temperatures)]
    for w, T in tqdm(runs, desc="students (width, T)", disable=not progress):
        student = seeded_student(f"mlp-{w}x2", seed)
        params[str(w)] = count_params(student)
        if T is None:
            out = fit(student, data.x_train, **common)
            alone[str(w)] = out["test_errors"]
        else:
            out = fit(student, data.x_train, teacher_logits=td.train_logits, T=T, alpha=alpha, **common)
            errors.setdefault(str(w), {})[f"{T:g}"] = out["test_errors"]
        seconds[str(w)] = round(seconds.get(str(w), 0.0) + out["train_seconds"], 2)
    best = {w: float(min(errs, key=lambda t: (errs[t], float(t)))) for w, errs in errors.items()}
    return {
        "seed": seed, "widths": list(widths), "temperatures": list(temperatures), "alpha": alpha,
        "epochs": epochs, "test_errors": errors, "best_temperature": best,
        "student_alone_test_errors": alone, "params": params, "train_seconds": seconds,
        "teacher_test_errors": td.teacher_test_errors, "train_size": len(data.y_train),
        "test_size": len(data.y_test), "fast_mode": _fast(),
        "hinton_2015": "30 units: T of 2.5 to 4 best; 300 or more units: all T above 8 similar",
        "seconds": round(time.perf_counter() - start, 1),
    }


def _fast() -> bool:
    from ..settings import fast_mode

    return fast_mode()


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
    rows = [("width", "params", "alone", *[f"T={t}" for t in temps], "best T")]
    for w in map(str, r["widths"]):
        rows.append((f"{w}-{w}", f"{r['params'][w]:,}", str(r["student_alone_test_errors"][w]),
                     *[str(r["test_errors"][w][t]) for t in temps], f"{r['best_temperature'][w]:g}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(wd) for c, wd in zip(row, widths)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    head = (f"temperature-vs-width: test errors of distilled MLP students (alpha={r['alpha']:g}, "
            f"{r['epochs']} epochs, {r['test_size']:,} test images; teacher {r['teacher_test_errors']} errors)"
            + (" (KDLAB_FAST slice)" if r.get("fast_mode") else ""))
    return "\n".join([head, "", *lines, "", f"Hinton 2015: {r['hinton_2015']}", f"whole run {r['seconds']:.0f} s"])


@register("temperature-vs-width", "the best distillation temperature for MLP students of widths 30 to 800",
          options=[Option("widths", str, ",".join(map(str, WIDTHS)), "comma-separated hidden-layer widths"),
                   Option("temperatures", str, ",".join(f"{t:g}" for t in TEMPERATURES),
                          "comma-separated temperatures"),
                   Option("epochs", int, None, "epochs per student (default 3, 1 under KDLAB_FAST)")],
          summarize=summarize)
def run(seed: int = 0, progress: bool = True, widths=WIDTHS, temperatures=TEMPERATURES,
        epochs: int | None = None) -> dict:
    return experiment(seed, widths=widths, temperatures=temperatures, epochs=epochs, progress=progress)
