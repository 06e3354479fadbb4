"""Feature distillation: logit KD, FitNets hints, attention transfer, relational KD, same student, same budget.

Lesson 7's comparison. On Fashion-MNIST by default: on MNIST a thin CNN
trained alone is already within a few dozen test errors of the teacher, so
the methods land within seed noise of each other; Fashion-MNIST leaves
several points between teacher and student for a method to recover.

Every student has the same architecture (:func:`kdlab.features.cnn_student`,
a 4x thinner copy of the teacher's two conv blocks), starts from the same
initial weights, sees the same batches for the same number of epochs with
the same optimizer; only the loss differs (:data:`kdlab.features.METHODS`).
The teacher is the course's CNN trained for 8 epochs (:mod:`kdlab.zoo`'s
recipe ``cnn-teacher-long``, cached like the others).

    kdlab experiment feature-kd --seed 0 --json runs/feature-kd.json
"""

from __future__ import annotations

import torch
from torch import nn

from .. import zoo
from ..data import Dataset, load
from ..features import (CNN_BLOCKS, EMBEDDING_LAYER, METHODS, attention_map, capture, cnn_student, feature_distill,
                        forward_with_features, rkd_angle_loss, rkd_distance_loss, teacher_targets)
from ..models import count_params
from ..train import evaluate
from . import Option, register
from .contract import Outcome, Run, fast_note, format_table

TEACHER_RECIPE = "cnn-teacher-long"

DEFAULTS = dict(dataset="fashion-mnist", channels=(4, 8), hidden=32, epochs=3, lr=0.05, temperature=4.0,
                alpha=METHODS["logit KD"]["alpha"], hint_weight=1.0, at_weight=1.0, p=2, clip=None,
                # Park et al.'s weights for classification (their code: 25 and 50 on the penultimate embedding)
                rkd_distance_weight=25.0, rkd_angle_weight=50.0)
FAST = dict(epochs=1)   # a smoke run: the fast slice is too small for the ranking to mean anything


def teacher_for(data: Dataset, seed: int = 0, progress: bool = True, fast: bool | None = None) -> nn.Module:
    """The lesson's teacher for ``data`` (trained once per data set, then cached)."""
    return zoo.pretrained(TEACHER_RECIPE, data, seed=seed, fast=fast, progress=progress)


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


@torch.no_grad()
def relation_gap(student, teacher, x, layer: str = EMBEDDING_LAYER, batch_size: int = 128) -> dict:
    """RKD-D and RKD-A between the student's and the teacher's embeddings, averaged over batches of ``x``.

    How far apart the two networks' relations among examples are, on fixed
    consecutive batches of ``batch_size`` (the training batch size: relations
    depend on the batch); the last, smaller batch is left out (all of ``x``
    is one batch when it holds fewer).
    """
    student.eval()
    teacher.eval()
    totals, batches = {"distance": 0.0, "angle": 0.0}, 0
    for i in range(0, max(len(x) - batch_size, 0) + 1, batch_size):
        xb = x[i:i + batch_size]
        (s,), (t,) = (_embedding(model, xb, layer) for model in (student, teacher))
        totals["distance"] += float(rkd_distance_loss(s, t))
        totals["angle"] += float(rkd_angle_loss(s, t))
        batches += 1
    return {k: v / max(1, batches) for k, v in totals.items()}


def _embedding(model, x, layer):
    with capture(model, [layer]) as feats:
        model(x)
    return (feats[layer].flatten(1),)


def student_for(seed: int, channels=DEFAULTS["channels"], hidden: int = DEFAULTS["hidden"]):
    """A fresh student whose initial weights depend only on ``seed``."""
    torch.manual_seed(seed)
    return cnn_student(channels=channels, hidden=hidden)


def table(result: dict) -> str:
    t = result["teacher"]
    b1, b2 = result["at_layers"]
    rows = [(r["method"], f"{r['params']:,}", f"{r['test_errors']:,}", f"{100 * r['test_accuracy']:.2f}%",
             f"{r['attention_gap'][b1]:.4f}", f"{r['attention_gap'][b2]:.4f}",
             f"{r['relation_gap']['distance']:.4f}", f"{r['relation_gap']['angle']:.4f}", f"{r['train_seconds']:.0f}")
            for r in result["rows"]]
    return format_table(("method", "params", "test errors", "test acc", "AT gap b1", "AT gap b2", "RKD-D gap",
                         "RKD-A gap", "seconds"), rows,
                        footer=(f"teacher ({t['arch']})", f"{t['params']:,}", f"{t['test_errors']:,}",
                                f"{100 * t['test_accuracy']:.2f}%", "", "", "", "", ""))


def summarize(result: dict) -> str:
    return "\n".join([
        f"feature-kd: {result['dataset']} ({result['train_size']:,} train / {result['test_size']:,} test"
        + fast_note(result, ", KDLAB_FAST slice") + f"), student {result['student_arch']}, "
        f"{result['epochs']} epochs each, seed {result['seed']}",
        "", table(result), "",
        "AT gap: mean squared distance between the student's and the teacher's attention maps (test images)",
        ("RKD-D / RKD-A gap: the distance and angle losses between the student's and the teacher's embeddings "
         "(test images, batches of 128)"),
        f"whole run {result['seconds']['total']:.0f} s",
    ])


@register("feature-kd", "logit KD vs FitNets hints vs attention transfer vs relational KD: same student, same budget",
          options=[Option("dataset", str, help="fashion-mnist or mnist"),
                   Option("epochs", int, help="epochs per student")],
          summarize=summarize, defaults=DEFAULTS, fast=FAST)
def experiment(*, seed: int = 0, fast: bool | None = None, data: Dataset | None = None, device=None,
               progress: bool = True, dataset: str | None = None, epochs: int | None = None, methods=None,
               teacher: nn.Module | None = None) -> Outcome:
    """Train one student per method (:data:`kdlab.features.METHODS`); the result has one row per method.

    Each row: method, params, test_errors, test_accuracy, train_seconds,
    attention_gap (per layer, on the test images), relation_gap (RKD-D and
    RKD-A on the test images' embeddings, :func:`relation_gap`). ``data`` and ``teacher``
    replace the data set and the cached teacher; ``models`` holds the trained
    students by method, the teacher, the data and the teacher's targets.
    """
    run = Run("feature-kd", seed=seed, fast=fast, device=device)
    cfg = run.config(DEFAULTS, FAST, dataset=dataset, epochs=epochs)
    data = (data if data is not None else load(cfg["dataset"], fast=run.fast)).to(run.device)
    methods = list(methods or METHODS)
    with run.timed("teacher"):
        if teacher is None:
            teacher = teacher_for(data, seed, progress, run.fast)
        teacher = teacher.to(run.device).eval()
    with run.timed("teacher_targets"):
        targets = teacher_targets(teacher, data.x_train, p=cfg["p"], embedding_layer=EMBEDDING_LAYER)
    rows, students = [], {}
    for method in methods:
        student = students[method] = student_for(seed, cfg["channels"], cfg["hidden"])
        history = feature_distill(student, teacher, data, **METHODS[method], T=cfg["temperature"],
                                  hint_weight=cfg["hint_weight"], at_weight=cfg["at_weight"],
                                  rkd_distance_weight=cfg["rkd_distance_weight"],
                                  rkd_angle_weight=cfg["rkd_angle_weight"], p=cfg["p"],
                                  epochs=cfg["epochs"], lr=cfg["lr"], clip=cfg["clip"], seed=seed, targets=targets,
                                  device=run.device, progress=progress, desc=method)
        errors = history.final_test_errors
        gap = attention_gap(student, teacher, data.x_test)
        relations = relation_gap(student, teacher, data.x_test)
        rows.append({"method": method, "params": count_params(student), "test_errors": errors,
                     "test_accuracy": 1.0 - errors / len(data.y_test), "train_seconds": round(history.train_seconds, 2),
                     "attention_gap": {k: round(v, 5) for k, v in gap.items()},
                     "relation_gap": {k: round(v, 5) for k, v in relations.items()}})
    t_metrics = evaluate(teacher, data.x_test, data.y_test)
    return run.finish({
        "rows": rows, "student_arch": students[methods[0]].arch,
        "dataset": data.name, "train_size": len(data.y_train), "test_size": len(data.y_test),
        "epochs": cfg["epochs"], "lr": cfg["lr"], "temperature": cfg["temperature"], "alpha": cfg["alpha"],
        "hint_weight": cfg["hint_weight"], "at_weight": cfg["at_weight"], "p": cfg["p"], "hint_layer": CNN_BLOCKS[0],
        "at_layers": list(CNN_BLOCKS), "rkd_distance_weight": cfg["rkd_distance_weight"],
        "rkd_angle_weight": cfg["rkd_angle_weight"], "embedding_layer": EMBEDDING_LAYER,
    }, teacher={"arch": getattr(teacher, "arch", "cnn-small"), "recipe": TEACHER_RECIPE,
                "params": count_params(teacher), **t_metrics},
        models={"students": students, "teacher": teacher, "data": data, "targets": targets})
