"""Feature distillation: logit KD, FitNets hints, attention transfer and all three, same student, same budget.

Lesson 7's comparison. On Fashion-MNIST by default: on MNIST a thin CNN
trained alone is already within a few dozen test errors of the teacher, so
four methods land within seed noise of each other; Fashion-MNIST leaves
several points between teacher and student for a method to recover.

Every student has the same architecture (:func:`kdlab.features.cnn_student`,
a 4x thinner copy of the teacher's two conv blocks), starts from the same
initial weights, sees the same batches for the same number of epochs with
the same optimizer; only the loss differs (:data:`kdlab.features.METHODS`).
The teacher is the course's CNN trained for 8 epochs (recipe
``cnn-teacher-long``, added to :mod:`kdlab.zoo`'s recipes here and cached
like the others).

    kdlab experiment feature-kd --seed 0 --json runs/feature-kd.json
"""

from __future__ import annotations

import time

import torch

from .. import settings, zoo
from ..data import load
from ..features import (CNN_BLOCKS, METHODS, attention_map, cnn_student, feature_distill, forward_with_features,
                        teacher_targets)
from ..models import count_params
from ..train import evaluate
from . import Option, register

TEACHER_RECIPE = "cnn-teacher-long"
zoo.RECIPES.setdefault(TEACHER_RECIPE, dict(arch="cnn-small", epochs=8, lr=0.05, batch_size=128, jitter=0))

DEFAULTS = dict(dataset="fashion-mnist", channels=(4, 8), hidden=32, epochs=3, lr=0.05, temperature=4.0,
                alpha=0.9, hint_weight=1.0, at_weight=1.0, p=2, clip=None)


def teacher_for(data, seed: int = 0, progress: bool = True):
    """The lesson's teacher for ``data`` (trained once per data set, then cached)."""
    return zoo.pretrained(TEACHER_RECIPE, data, seed=seed, progress=progress)


@torch.no_grad()
def attention_gap(student, teacher, x, layers=CNN_BLOCKS, p: float = 2, batch_size: int = 1000) -> dict:
    """Mean over images of ||Q_student - Q_teacher||^2 at each layer: how far the attention maps are apart."""
    student.eval()
    teacher.eval()
    totals = {name: 0.0 for name in layers}
    for i in range(0, len(x), batch_size):
        _, fs = forward_with_features(student, x[i:i + batch_size], layers)
        _, ft = forward_with_features(teacher, x[i:i + batch_size], layers)
        for name, a, b in zip(layers, fs, ft):
            totals[name] += float((attention_map(a, p) - attention_map(b, p)).pow(2).sum())
    return {name: total / len(x) for name, total in totals.items()}


def student_for(seed: int, channels=DEFAULTS["channels"], hidden: int = DEFAULTS["hidden"]):
    """A fresh student whose initial weights depend only on ``seed``."""
    torch.manual_seed(seed)
    return cnn_student(channels=channels, hidden=hidden)


def experiment(seed: int = 0, *, dataset: str = DEFAULTS["dataset"], epochs: int | None = None,
               methods=None, progress: bool = True, data=None, teacher=None, keep_models: bool = False) -> dict:
    """Train one student per method; returns the table rows and the settings (JSON-ready).

    Each row: method, params, test_errors, test_accuracy, train_seconds,
    attention_gap (per layer, on the test images). ``keep_models=True`` adds
    the trained students, the teacher and the data (not JSON).
    """
    start = time.perf_counter()
    device = settings.default_device()
    data = (data if data is not None else load(dataset)).to(device)
    epochs = epochs if epochs is not None else int(settings.pick(DEFAULTS["epochs"], 4))
    methods = list(methods or METHODS)
    t0 = time.perf_counter()
    teacher = (teacher if teacher is not None else teacher_for(data, seed, progress)).to(device).eval()
    teacher_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    targets = teacher_targets(teacher, data.x_train, p=DEFAULTS["p"])
    targets_seconds = time.perf_counter() - t0
    rows, students = [], {}
    for method in methods:
        student = student_for(seed)
        out = feature_distill(student, teacher, data, **METHODS[method], T=DEFAULTS["temperature"],
                              hint_weight=DEFAULTS["hint_weight"], at_weight=DEFAULTS["at_weight"],
                              p=DEFAULTS["p"], epochs=epochs, lr=DEFAULTS["lr"], clip=DEFAULTS["clip"], seed=seed,
                              targets=targets,
                              device=device, progress=progress, desc=method)
        gap = attention_gap(student, teacher, data.x_test)
        rows.append({"method": method, **{k: out[k] for k in ("params", "test_errors", "test_accuracy",
                                                             "train_seconds")},
                     "attention_gap": {k: round(v, 5) for k, v in gap.items()}})
        students[method] = student
    t_metrics = evaluate(teacher, data.x_test, data.y_test)
    result = {
        "rows": rows,
        "teacher": {"recipe": TEACHER_RECIPE, "arch": getattr(teacher, "arch", "cnn-small"),
                    "params": count_params(teacher), **t_metrics},
        "student_arch": students[methods[0]].arch,
        "dataset": data.name, "train_size": len(data.y_train), "test_size": len(data.y_test),
        "seed": seed, "epochs": epochs, "lr": DEFAULTS["lr"], "temperature": DEFAULTS["temperature"],
        "alpha": METHODS["logit KD"]["alpha"], "hint_weight": DEFAULTS["hint_weight"],
        "at_weight": DEFAULTS["at_weight"], "p": DEFAULTS["p"], "hint_layer": CNN_BLOCKS[0],
        "at_layers": list(CNN_BLOCKS),
        "seconds": {"teacher": round(teacher_seconds, 1), "teacher_targets": round(targets_seconds, 1),
                    "total": round(time.perf_counter() - start, 1)},
        "fast_mode": settings.fast_mode(), "device": str(device),
    }
    if keep_models:
        result.update(students=students, teacher_model=teacher, data=data, targets=targets)
    return result


def table(result: dict) -> str:
    t = result["teacher"]
    head = ("method", "params", "test errors", "test acc", "AT gap b1", "AT gap b2", "seconds")
    b1, b2 = result["at_layers"]
    rows = [head] + [(r["method"], f"{r['params']:,}", f"{r['test_errors']:,}", f"{100 * r['test_accuracy']:.2f}%",
                      f"{r['attention_gap'][b1]:.4f}", f"{r['attention_gap'][b2]:.4f}", f"{r['train_seconds']:.0f}")
                     for r in result["rows"]]
    rows.append((f"teacher ({t['arch']})", f"{t['params']:,}", f"{t['test_errors']:,}",
                 f"{100 * t['test_accuracy']:.2f}%", "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def summarize(result: dict) -> str:
    return "\n".join([
        f"feature-kd: {result['dataset']} ({result['train_size']:,} train / {result['test_size']:,} test"
        + (", KDLAB_FAST slice" if result["fast_mode"] else "") + f"), student {result['student_arch']}, "
        f"{result['epochs']} epochs each, seed {result['seed']}",
        "", table(result), "",
        "AT gap: mean squared distance between the student's and the teacher's attention maps (test images)",
        f"whole run {result['seconds']['total']:.0f} s",
    ])


@register("feature-kd", "logit KD vs FitNets hints vs attention transfer vs all three: same student, same budget",
          options=[Option("dataset", str, DEFAULTS["dataset"], "fashion-mnist (default) or mnist"),
                   Option("epochs", int, None, f"epochs per student (default {DEFAULTS['epochs']}, 4 under KDLAB_FAST)")],
          summarize=summarize)
def run(seed: int = 0, progress: bool = True, dataset: str = DEFAULTS["dataset"],
        epochs: int | None = None) -> dict:
    return experiment(seed, dataset=dataset, epochs=epochs, progress=progress)
